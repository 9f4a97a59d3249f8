//! Results held for input order, and where their bytes wait.
//!
//! An ordered iterator goes on submitting behind a slow task (its read-ahead bounds
//! the tasks in flight, not the results that wait for an earlier one), so the results
//! that wait may be many. `imap` keeps each as the bytes it arrived in and decodes it
//! when its turn comes: up to a budget of bytes in memory
//! ([`crate::PoolBuilder::hold_in_memory`]), past it in one private, unnamed temporary
//! file (`O_TMPFILE`, mode 0600, in `TMPDIR`), read back in order. The file is emptied
//! whenever nothing is left in it, and goes with the iterator.
//!
//! A value that refers to spooled command output (a [`crate::Captured`] past its inline
//! limit) is decoded as it arrives instead, so that it takes its spool file from the
//! worker at once; it then holds a descriptor, so it counts against the read-ahead as
//! any result in flight does, and descriptors stay bounded.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::error::Error;

/// Bytes of waiting results an ordered `imap` keeps in memory by default.
pub const DEFAULT_HOLD_IN_MEMORY: usize = 16 << 20;

/// Results an ordered iterator lets wait for an earlier one by default; past it, it
/// reads no further ahead until the earlier one is in.
pub const DEFAULT_MAX_HELD: usize = 1 << 18;

/// A result that came ahead of its turn.
pub(crate) enum Held<R> {
    /// Decoded already: an error, a [`crate::Reports`] result (decoded on arrival for
    /// its callbacks), or a value referring to spooled output.
    Decoded(Result<R, Error>),
    /// Encoded, in memory.
    Encoded(Vec<u8>),
    /// Encoded, in the spill file.
    Spilled { at: u64, len: usize },
}

/// Where the bytes of held results go: memory up to a budget, then the spill file.
pub(crate) struct Holder {
    budget: usize,
    /// Bytes of [`Held::Encoded`] results.
    in_memory: usize,
    file: Option<File>,
    /// End of what the file holds.
    end: u64,
    /// Results in the file.
    spilled: usize,
}

impl Holder {
    pub(crate) fn new(budget: usize) -> Holder {
        Holder {
            budget,
            in_memory: 0,
            file: None,
            end: 0,
            spilled: 0,
        }
    }

    /// Keeps the bytes of a result; `waits`: it waits for an earlier one (else it is
    /// handed out next, and stays in memory). Also says whether it stayed in memory
    /// past the budget (the file could not be written): such a result must count
    /// against the read-ahead, as one in flight does.
    pub(crate) fn keep<R>(&mut self, bytes: Vec<u8>, waits: bool) -> (Held<R>, bool) {
        let len = bytes.len();
        if !waits || self.in_memory + len <= self.budget {
            self.in_memory += len;
            return (Held::Encoded(bytes), false);
        }
        match self.spill(&bytes) {
            Ok(at) => (Held::Spilled { at, len }, false),
            Err(_) => {
                self.in_memory += len;
                (Held::Encoded(bytes), true)
            }
        }
    }

    fn spill(&mut self, bytes: &[u8]) -> io::Result<u64> {
        let file = match &mut self.file {
            Some(file) => file,
            none => none.insert(crate::os::unlinked_file(&std::env::temp_dir())?),
        };
        let at = self.end;
        file.write_all_at(bytes, at)?;
        self.end += bytes.len() as u64;
        self.spilled += 1;
        Ok(at)
    }

    /// The bytes of an [`Held::Encoded`] result are handed out.
    pub(crate) fn released(&mut self, len: usize) {
        self.in_memory -= len;
    }

    /// Reads back a [`Held::Spilled`] result.
    pub(crate) fn load(&mut self, at: u64, len: usize) -> io::Result<Vec<u8>> {
        self.spilled -= 1;
        let mut out = vec![0; len];
        let read = match &self.file {
            Some(file) => file.read_exact_at(&mut out, at),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no spill file")),
        };
        if self.spilled == 0 {
            if let Some(file) = &self.file {
                // Nothing is left in it: its disk space goes (a failure only keeps it).
                if file.set_len(0).is_ok() {
                    self.end = 0;
                }
            }
        }
        read.map(|()| out)
    }
}

#[cfg(test)]
mod tests {
    use super::{Held, Holder};

    #[test]
    fn waiting_bytes_past_the_budget_go_to_the_file_and_come_back() {
        let mut h = Holder::new(10);
        let (a, pinned) = h.keep::<()>(vec![1; 8], true);
        assert!(matches!(a, Held::Encoded(_)) && !pinned);
        // Over the budget but handed out next: memory.
        let (b, _) = h.keep::<()>(vec![2; 8], false);
        assert!(matches!(b, Held::Encoded(_)));
        let (c, pinned) = h.keep::<()>(vec![3; 5], true);
        let Held::Spilled { at, len } = c else {
            panic!("not spilled")
        };
        assert!(!pinned);
        let (d, _) = h.keep::<()>(vec![4; 3], true);
        let Held::Spilled {
            at: at_d,
            len: len_d,
        } = d
        else {
            panic!("not spilled")
        };
        assert_eq!(h.load(at, len).unwrap(), vec![3; 5]);
        assert_eq!(h.load(at_d, len_d).unwrap(), vec![4; 3]);
        // Emptied: the next one starts at 0 again.
        assert_eq!(h.end, 0);
        h.released(8);
        h.released(8);
        assert_eq!(h.in_memory, 0);
    }
}
