//! [`Captured`]: what a command wrote on one stream, in memory when small, in a spool
//! file past the command's inline limit.
//!
//! A spool file starts with a random 16-byte tag, then the bytes. It crosses to another
//! process as a reference, never as its bytes: the sender keeps a descriptor to it and
//! ships `(pid, fd, dev, ino, tag, len)`; the receiver opens `/proc/<pid>/fd/<fd>` (same
//! user), checks device, inode and tag (a descriptor number and an inode number are
//! both reused once a file is gone; the tag is not), and marks the file received by
//! changing its mode from 0600 to 0400. A receiver does so as the message arrives
//! ([`claim_spools`], from the thread reading the worker's link: the references carry
//! a magic, so they are found without knowing the value's type), and the decode later
//! takes the file it holds: the sender may exit or be killed in between.
//!
//! The sender lets go of a spool once it sees that mark (it looks before each command
//! it runs, so an idle worker holds the disk space of its last received spools until
//! its next command or its end). It keeps at most a quarter of its descriptor limit
//! (`RLIMIT_NOFILE`), at most [`MAX_KEPT`](spool_ref::MAX_KEPT): past it, or with no
//! descriptor left, a capture's bytes are sent instead of a reference. A receiver holds
//! at most a quarter of its descriptor limit of claimed spools open; past it, and
//! whenever it runs out of descriptors, the oldest moves into its own spill file
//! (see `claimed`): a claimed output is never let go for want of room. A worker that
//! ends waits up to `spool_ref::EXIT_LINGER` for its spools to be received.
//!
//! A receiver that holds many captures for a while (the CLI, behind a slow task in
//! ordered mode) moves them into one [`SpillFile`] ([`Captured::spill_into`]): each is
//! then a region of that file, so they cost neither memory nor a descriptor apiece.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use crate::os;

mod claimed;
mod spool_ref;

pub(crate) use spool_ref::{claim_spools, linger, refers_to_spool, release_received};

/// Bytes of the random tag at the start of a spool file.
const TAG_LEN: u64 = 16;

/// What a command wrote on its standard output or standard error: bytes exactly as
/// written, held in memory up to the command's inline limit
/// ([`crate::Command::inline_limit`], 1 MiB by default) and in a private, unlinked
/// temporary file (mode 0600, in `TMPDIR`) past it, so a command that prints gigabytes
/// costs disk, not memory. A spooled capture travels between processes as a reference
/// to its file, not as its bytes.
///
/// Read it with [`Captured::to_vec`] (all in memory), [`Captured::reader`] or
/// [`Captured::write_to`] (streamed).
#[derive(Debug)]
pub struct Captured(Body);

#[derive(Debug)]
enum Body {
    Inline(Vec<u8>),
    Spooled {
        file: File,
        len: u64,
        /// Held while [`Captured::write_to`] uses the file's offset.
        offset: Mutex<()>,
    },
    /// Moved into a [`SpillFile`].
    Region(Region),
}

/// One private, unnamed temporary file (`O_TMPFILE`, mode 0600, in `TMPDIR`) that many
/// captures can move their bytes into ([`Captured::spill_into`]): however many wait,
/// they hold one descriptor between them and no memory for their bytes. The file is
/// emptied whenever no capture is left in it, and is gone with the last handle.
#[derive(Clone, Debug)]
pub struct SpillFile(Arc<SpillInner>);

#[derive(Debug)]
struct SpillInner {
    file: File,
    /// Held while the file is written or its offset used.
    state: Mutex<SpillState>,
}

#[derive(Debug)]
struct SpillState {
    /// End of the bytes written.
    end: u64,
    /// Captures that are regions of the file.
    live: usize,
}

impl SpillFile {
    /// A new, empty spill file in `TMPDIR`.
    pub fn new() -> io::Result<SpillFile> {
        let file = os::unlinked_file(&std::env::temp_dir())?;
        Ok(SpillFile(Arc::new(SpillInner {
            file,
            state: Mutex::new(SpillState { end: 0, live: 0 }),
        })))
    }

    /// Bytes the file holds now (what the captures in it take on disk, and what is
    /// left of those gone until the last one goes).
    pub fn len(&self) -> u64 {
        self.0.lock().end
    }

    /// Whether the file holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SpillInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, SpillState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A capture's bytes in a [`SpillFile`].
#[derive(Debug)]
struct Region {
    spill: Arc<SpillInner>,
    at: u64,
    len: u64,
}

impl Drop for Region {
    fn drop(&mut self) {
        let mut state = self.spill.lock();
        state.live -= 1;
        // Nothing is left in it: its disk space goes (a failure only keeps it).
        if state.live == 0 && self.spill.file.set_len(0).is_ok() {
            state.end = 0;
        }
    }
}

impl Captured {
    /// Bytes held in memory.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Captured {
        Captured(Body::Inline(bytes.into()))
    }

    /// A new spool in `TMPDIR`: a private unlinked file, its tag written; the caller
    /// appends the bytes and makes it a capture with [`Captured::spooled`].
    pub(crate) fn new_spool() -> io::Result<File> {
        let mut file = os::unlinked_file(&std::env::temp_dir())?;
        let tag: [u8; TAG_LEN as usize] = os::random_bytes()?;
        file.write_all(&tag)?;
        Ok(file)
    }

    /// A spool made by [`Captured::new_spool`] holding `len` bytes after its tag.
    pub(crate) fn spooled(file: File, len: u64) -> Captured {
        Captured(Body::Spooled {
            file,
            len,
            offset: Mutex::new(()),
        })
    }

    /// How many bytes were captured.
    pub fn len(&self) -> u64 {
        match &self.0 {
            Body::Inline(v) => v.len() as u64,
            Body::Spooled { len, .. } => *len,
            Body::Region(r) => r.len,
        }
    }

    /// Moves the bytes into `spill` (appended to it), out of memory or out of their own
    /// spool file: the capture then holds no memory for them and no descriptor of its
    /// own, and reads as before. Nothing happens to an empty capture or to one in a
    /// spill file already. On an error (the disk is full) the capture is unchanged.
    pub fn spill_into(&mut self, spill: &SpillFile) -> io::Result<()> {
        let inner = &spill.0;
        let len = self.len();
        if len == 0 || matches!(self.0, Body::Region(_)) {
            return Ok(());
        }
        let mut state = inner.lock();
        let at = state.end;
        match &self.0 {
            Body::Inline(v) => inner.file.write_all_at(v, at)?,
            Body::Spooled { file, .. } => {
                // Copied by the kernel (copy_file_range) where it can.
                let mut from: &File = file;
                from.seek(io::SeekFrom::Start(TAG_LEN))?;
                let mut to: &File = &inner.file;
                to.seek(io::SeekFrom::Start(at))?;
                let copied = io::copy(&mut from.take(len), &mut to)?;
                if copied != len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the spool is shorter than {len} bytes"),
                    ));
                }
            }
            Body::Region(_) => unreachable!("returned above"),
        }
        state.end = at + len;
        state.live += 1;
        drop(state);
        self.0 = Body::Region(Region {
            spill: inner.clone(),
            at,
            len,
        });
        Ok(())
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the bytes are in a file (a spool, or a [`SpillFile`]) rather than in
    /// memory.
    pub fn is_spooled(&self) -> bool {
        !matches!(self.0, Body::Inline(_))
    }

    /// Whether the bytes are in a [`SpillFile`] (see [`Captured::spill_into`]).
    pub fn is_spilled(&self) -> bool {
        matches!(self.0, Body::Region(_))
    }

    /// The bytes, if they are in memory.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.0 {
            Body::Inline(v) => Some(v),
            Body::Spooled { .. } | Body::Region(_) => None,
        }
    }

    /// All the bytes, read into memory.
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len().min(1 << 30) as usize);
        self.reader()?.read_to_end(&mut out)?;
        Ok(out)
    }

    /// A reader over the bytes, from the start (each reader has its own position).
    pub fn reader(&self) -> io::Result<Box<dyn Read + '_>> {
        Ok(match &self.0 {
            Body::Inline(v) => Box::new(&v[..]),
            Body::Spooled { file, len, .. } => Box::new(SpoolReader {
                file,
                base: TAG_LEN,
                pos: 0,
                end: *len,
            }),
            Body::Region(r) => Box::new(SpoolReader {
                file: &r.spill.file,
                base: r.at,
                pos: 0,
                end: r.len,
            }),
        })
    }

    /// Writes the bytes to `w`, returning how many were written. A spool is copied by
    /// the kernel where it can (`sendfile`, `splice`: `w` a file, a pipe or standard
    /// output, possibly in a `BufWriter`), else in 64 KiB pieces.
    pub fn write_to<W: Write + ?Sized>(&self, w: &mut W) -> io::Result<u64> {
        match &self.0 {
            Body::Inline(v) => {
                w.write_all(v)?;
                Ok(v.len() as u64)
            }
            Body::Spooled { file, len, offset } => {
                let _offset = offset.lock().unwrap_or_else(|p| p.into_inner());
                let mut f: &File = file;
                f.seek(io::SeekFrom::Start(TAG_LEN))?;
                io::copy(&mut f.take(*len), w)
            }
            Body::Region(r) => {
                let _offset = r.spill.lock();
                let mut f: &File = &r.spill.file;
                f.seek(io::SeekFrom::Start(r.at))?;
                io::copy(&mut f.take(r.len), w)
            }
        }
    }

    /// The last byte, if any.
    pub fn last_byte(&self) -> io::Result<Option<u8>> {
        match &self.0 {
            Body::Inline(v) => Ok(v.last().copied()),
            Body::Spooled { len: 0, .. } => Ok(None),
            Body::Spooled { file, len, .. } => {
                let mut b = [0u8; 1];
                file.read_exact_at(&mut b, TAG_LEN + len - 1)?;
                Ok(Some(b[0]))
            }
            Body::Region(r) => {
                let mut b = [0u8; 1];
                r.spill.file.read_exact_at(&mut b, r.at + r.len - 1)?;
                Ok(Some(b[0]))
            }
        }
    }
}

/// Reads a spool by position (`pread`), so readers never share a file offset.
struct SpoolReader<'a> {
    file: &'a File,
    /// Where the bytes start in the file.
    base: u64,
    pos: u64,
    end: u64,
}

impl Read for SpoolReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.base + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Default for Captured {
    fn default() -> Self {
        Captured::from_bytes(Vec::new())
    }
}

impl From<Vec<u8>> for Captured {
    fn from(v: Vec<u8>) -> Self {
        Captured::from_bytes(v)
    }
}

impl From<String> for Captured {
    fn from(s: String) -> Self {
        Captured::from_bytes(s.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::{Captured, SpillFile};
    use std::io::{Read, Write};

    fn spool(bytes: &[u8]) -> Captured {
        let mut file = Captured::new_spool().unwrap();
        file.write_all(bytes).unwrap();
        Captured::spooled(file, bytes.len() as u64)
    }

    fn read_all(c: &Captured) -> Vec<u8> {
        let mut via_reader = Vec::new();
        c.reader().unwrap().read_to_end(&mut via_reader).unwrap();
        let mut via_write = Vec::new();
        assert_eq!(c.write_to(&mut via_write).unwrap(), c.len());
        assert_eq!(via_reader, via_write);
        assert_eq!(c.last_byte().unwrap(), via_reader.last().copied());
        via_reader
    }

    #[test]
    fn captures_moved_into_a_spill_file_read_as_before_and_leave_it_empty_when_gone() {
        let spill = SpillFile::new().unwrap();
        let mut inline = Captured::from_bytes(b"hello".to_vec());
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let mut spooled = spool(&big);
        let mut empty = Captured::default();
        inline.spill_into(&spill).unwrap();
        spooled.spill_into(&spill).unwrap();
        empty.spill_into(&spill).unwrap();
        assert!(inline.is_spilled() && spooled.is_spilled() && !empty.is_spilled());
        assert!(inline.as_bytes().is_none() && inline.is_spooled());
        // Moving again is nothing.
        inline.spill_into(&spill).unwrap();
        assert_eq!(spill.len(), 5 + big.len() as u64);
        assert_eq!(read_all(&inline), b"hello");
        assert_eq!(read_all(&spooled), big);
        assert_eq!(read_all(&empty), b"");
        // Sent on, a spilled capture goes inline.
        let bytes = supervisor_worker::codec::encode_value(&inline).unwrap();
        let back: Captured = supervisor_worker::codec::decode(&bytes).unwrap();
        assert_eq!(back.as_bytes(), Some(&b"hello"[..]));
        drop(inline);
        assert_eq!(spill.len(), 5 + big.len() as u64);
        drop(spooled);
        assert!(spill.is_empty());
    }
}
