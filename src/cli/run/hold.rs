//! Results that wait for their turn to be printed (input order, behind a slow task).
//!
//! The pool goes on running the inputs after a slow one and hands each result over as
//! it arrives (up to `PoolBuilder::max_held` of them may wait so); what a result holds
//! is its captured output, in memory up to the inline limit per stream, or a spool file
//! (a descriptor) past it. While the waiting outputs take at most [`HOLD_IN_MEMORY`]
//! bytes and [`HOLD_FILES`] spool files, they stay as they are; past either, a waiting
//! result's output moves into one spill file (`supervisor::SpillFile`: unnamed, 0600,
//! in `TMPDIR`) and is printed from there in its turn. So a run's memory and
//! descriptors stay bounded however many results wait, and the spill file is emptied
//! whenever nothing waits in it.

use std::collections::HashMap;

use supervisor::{Captured, Error, SpillFile};

use super::super::tasks::{Failure, Outcome};

/// Bytes of waiting outputs kept in memory before they go to the spill file.
pub(super) const HOLD_IN_MEMORY: u64 = 16 << 20;

/// Waiting outputs that keep their own spool file (a descriptor each) before the next
/// ones are copied into the spill file.
pub(super) const HOLD_FILES: usize = 64;

/// What the waiting results keep in memory and in spool files of their own.
#[derive(Default)]
pub(super) struct Holding {
    /// Bytes in memory and spool files of each waiting result that kept some.
    kept: HashMap<usize, (u64, usize)>,
    in_memory: u64,
    files: usize,
    spill: Option<SpillFile>,
}

impl Holding {
    /// Result `index` waits for its turn: it keeps its output where it is within the
    /// bounds, else the output moves into the spill file. Should the spill file fail
    /// (a full disk), the output stays where it is.
    pub(super) fn hold(&mut self, index: usize, result: &mut Result<Outcome, Error>) {
        let mut captures = captures(result);
        let (memory, files) = footprint(&captures);
        if memory == 0 && files == 0 {
            return;
        }
        let fits = self.in_memory + memory <= HOLD_IN_MEMORY && self.files + files <= HOLD_FILES;
        if !fits {
            if self.spill.is_none() {
                self.spill = SpillFile::new().ok();
            }
            if let Some(spill) = &self.spill {
                for c in captures.iter_mut() {
                    let _ = c.spill_into(spill);
                }
            }
        }
        let (memory, files) = if fits {
            (memory, files)
        } else {
            footprint(&captures)
        };
        if memory > 0 || files > 0 {
            self.in_memory += memory;
            self.files += files;
            self.kept.insert(index, (memory, files));
        }
    }

    /// Result `index` is printed (or given up): what it kept is free again.
    pub(super) fn printed(&mut self, index: usize) {
        if let Some((memory, files)) = self.kept.remove(&index) {
            self.in_memory -= memory;
            self.files -= files;
        }
    }
}

/// The captured outputs of a result.
fn captures(result: &mut Result<Outcome, Error>) -> Vec<&mut Captured> {
    match result {
        Ok(Ok(out)) => vec![&mut out.text, &mut out.stderr],
        Ok(Err(Failure::Failed { stdout, stderr, .. })) => vec![stdout, stderr],
        _ => Vec::new(),
    }
}

/// Bytes in memory and spool files of their own that `captures` hold (before any is
/// spilled, a capture is either in memory or in its own spool).
fn footprint(captures: &[&mut Captured]) -> (u64, usize) {
    let mut memory = 0;
    let mut files = 0;
    for c in captures {
        match c.as_bytes() {
            Some(bytes) => memory += bytes.len() as u64,
            None if !c.is_empty() && !c.is_spilled() => files += 1,
            None => {}
        }
    }
    (memory, files)
}
