//! A spooled capture crossing to another process as a reference to its file: the
//! reference's wire form, the sender keeping its spools until received, the receiver
//! claiming them as the message arrives.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::{claimed, Body, Captured, TAG_LEN};
use crate::os;

/// Most spools a process keeps open for receivers that have not opened them yet.
pub(crate) const MAX_KEPT: usize = 256;

/// How long an ending worker waits for its spools to be received.
const EXIT_LINGER: Duration = Duration::from_secs(2);

#[derive(Serialize, Deserialize)]
enum Wire {
    Inline(ByteBuf),
    /// A [`SpoolRef`] in its fixed layout (see [`SpoolRef::to_bytes`]).
    Spooled(ByteBuf),
}

/// First bytes of a [`SpoolRef`] on the wire: what lets a receiver find the spools a
/// message refers to without knowing the type of the value around them (see
/// [`claim_in`]).
const REF_MAGIC: [u8; 16] = *b"\xd7spool-ref\xfe\x01\xfd\x02\xa5\x5a";

/// Bytes of a [`SpoolRef`] on the wire, its magic included.
const REF_LEN: usize = 16 + 4 + 4 + 8 + 8 + 16 + 8;

/// Where a spool kept by another process is: its descriptor there and what to check.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct SpoolRef {
    pid: u32,
    fd: i32,
    dev: u64,
    ino: u64,
    tag: [u8; TAG_LEN as usize],
    len: u64,
}

impl SpoolRef {
    /// Magic, pid, fd, dev, ino (little-endian), tag, len.
    fn to_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REF_LEN);
        out.extend_from_slice(&REF_MAGIC);
        out.extend_from_slice(&self.pid.to_le_bytes());
        out.extend_from_slice(&self.fd.to_le_bytes());
        out.extend_from_slice(&self.dev.to_le_bytes());
        out.extend_from_slice(&self.ino.to_le_bytes());
        out.extend_from_slice(&self.tag);
        out.extend_from_slice(&self.len.to_le_bytes());
        out
    }

    /// The reference at the start of `b` (after its magic, which is not checked).
    fn parse(b: &[u8]) -> Option<SpoolRef> {
        let b = b.get(..REF_LEN)?;
        let tag: [u8; TAG_LEN as usize] = b[40..56].try_into().ok()?;
        Some(SpoolRef {
            pid: u32::from_le_bytes(b[16..20].try_into().ok()?),
            fd: i32::from_le_bytes(b[20..24].try_into().ok()?),
            dev: u64::from_le_bytes(b[24..32].try_into().ok()?),
            ino: u64::from_le_bytes(b[32..40].try_into().ok()?),
            tag,
            len: u64::from_le_bytes(b[56..64].try_into().ok()?),
        })
    }

    /// Opens the spool, checks it, and marks it received.
    fn open(&self) -> io::Result<File> {
        let file = os::open_remote(self.pid, self.fd, self.dev, self.ino)?;
        if tag_of(&file)? != self.tag {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the descriptor now holds another spool",
            ));
        }
        if file.metadata()?.len() < TAG_LEN + self.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the spool is shorter than {} bytes", self.len),
            ));
        }
        os::mark_received(&file)?;
        Ok(file)
    }
}

impl Serialize for Captured {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        match &self.0 {
            Body::Inline(v) => {
                s.serialize_newtype_variant("Wire", 0, "Inline", serde_bytes::Bytes::new(v))
            }
            Body::Spooled { file, len, .. } => {
                let kept = tag_of(file).and_then(|tag| Ok((keep(file)?, tag)));
                let ((fd, dev, ino), tag) = match kept {
                    Ok((Some(kept), tag)) => (kept, tag),
                    // No room to keep it (the descriptor limit): the bytes go inline.
                    Ok((None, _)) => {
                        let bytes = self.to_vec().map_err(|e| {
                            S::Error::custom(format!("cannot read a spooled output: {e}"))
                        })?;
                        return s.serialize_newtype_variant(
                            "Wire",
                            0,
                            "Inline",
                            serde_bytes::Bytes::new(&bytes),
                        );
                    }
                    Err(e) => {
                        return Err(S::Error::custom(format!(
                            "cannot keep a spooled output for its receiver: {e}"
                        )))
                    }
                };
                let r = SpoolRef {
                    pid: std::process::id(),
                    fd,
                    dev,
                    ino,
                    tag,
                    len: *len,
                };
                Wire::Spooled(ByteBuf::from(r.to_bytes())).serialize(s)
            }
            // Only a receiver spills: sent on, the bytes go inline.
            Body::Region(_) => {
                let bytes = self.to_vec().map_err(|e| {
                    S::Error::custom(format!("cannot read a spilled output back: {e}"))
                })?;
                s.serialize_newtype_variant("Wire", 0, "Inline", serde_bytes::Bytes::new(&bytes))
            }
        }
    }
}

impl<'de> Deserialize<'de> for Captured {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        match Wire::deserialize(d)? {
            Wire::Inline(v) => Ok(Captured::from_bytes(v.into_vec())),
            Wire::Spooled(b) => {
                let r = SpoolRef::parse(&b)
                    .filter(|_| b.len() == REF_LEN && b[..16] == REF_MAGIC)
                    .ok_or_else(|| D::Error::custom("a malformed reference to a spooled output"))?;
                if let Some(held) = claimed::take(&r) {
                    return Ok(held);
                }
                let file = claimed::open(|| r.open()).map_err(|e| {
                    D::Error::custom(format!(
                        "cannot open the spooled output kept by process {}: {}",
                        r.pid,
                        claimed::explain(e)
                    ))
                })?;
                Ok(Captured::spooled(file, r.len))
            }
        }
    }
}

/// Takes hold, at once, of every spool that encoded message `bytes` from process
/// `pid` refers to: opens it and marks it received, so the sender may let go of it,
/// exit or be killed, and the value still decodes later, however long it waits (a
/// result behind a slow reader). A reference that cannot be opened is left for the
/// decode to report. Cheap when there is none (one scan for the magic).
pub(crate) fn claim_in(pid: u32, bytes: &[u8]) {
    let mut at = 0;
    while let Some(found) = find(&bytes[at..], &REF_MAGIC) {
        let start = at + found;
        at = start + 1;
        let Some(r) = SpoolRef::parse(&bytes[start..]) else {
            break;
        };
        if r.pid != pid {
            continue;
        }
        if let Ok(file) = claimed::open(|| r.open()) {
            claimed::hold(r, Captured::spooled(file, r.len));
            at = start + REF_LEN;
        }
    }
}

/// Whether encoded value `bytes` refers to a spooled output (decoding it takes a file).
pub(crate) fn refers_to_spool(bytes: &[u8]) -> bool {
    bytes.len() >= REF_LEN && find(bytes, &REF_MAGIC).is_some()
}

/// Position of `needle` in `hay`. Every result message of every pool is searched
/// (a byte-by-byte search was 4% of a `map` caller's process, on its reader threads).
fn find(hay: &[u8], needle: &[u8; 16]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// The tag at the start of a spool.
fn tag_of(file: &File) -> io::Result<[u8; TAG_LEN as usize]> {
    let mut tag = [0u8; TAG_LEN as usize];
    file.read_exact_at(&mut tag, 0)?;
    Ok(tag)
}

fn kept() -> std::sync::MutexGuard<'static, Vec<File>> {
    static KEPT: OnceLock<Mutex<Vec<File>>> = OnceLock::new();
    let mut kept = KEPT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    kept.retain(|f| !os::received(f));
    kept
}

/// Most spools kept at once: a quarter of the descriptor limit (`RLIMIT_NOFILE`, read
/// once), at most [`MAX_KEPT`].
fn kept_budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        os::descriptor_limit().map_or(MAX_KEPT, |n| (n / 4).clamp(1, MAX_KEPT as u64) as usize)
    })
}

/// Keeps a descriptor to `file` until its receiver marks it: `(fd, dev, ino)`, or `None`
/// if this process keeps [`kept_budget`] spools already or has no descriptor left to
/// keep one (its bytes are then sent instead: a kept spool is never let go before its
/// receiver has it).
fn keep(file: &File) -> io::Result<Option<(i32, u64, u64)>> {
    let (dev, ino) = os::identity(file)?;
    let mut kept = kept();
    if kept.len() >= kept_budget() {
        return Ok(None);
    }
    let dup = match file.try_clone() {
        Ok(dup) => dup,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let fd = dup.as_raw_fd();
    kept.push(dup);
    drop(kept);
    supervisor_worker::serve::before_exit(crate::linger::before_exit);
    Ok(Some((fd, dev, ino)))
}

/// Lets go of spools that were received (called before each command runs).
pub(crate) fn release_received() {
    drop(kept());
}

/// Waits (at most [`EXIT_LINGER`]) until every spool this process shipped was received.
pub(crate) fn linger() {
    let until = std::time::Instant::now() + EXIT_LINGER;
    while !kept().is_empty() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// [`claim_in`] for every value a worker's message carries.
pub(crate) fn claim_spools(pid: u32, msg: &supervisor_worker::protocol::FromChild) {
    use supervisor_worker::protocol::{FromChild, TaskOutcome};
    let value = |o: &TaskOutcome| {
        if let TaskOutcome::Returned { value, .. } = o {
            claim_in(pid, value)
        }
    };
    match msg {
        FromChild::Done { outcome, .. } => value(outcome),
        FromChild::BatchDone { outcomes, .. } => outcomes.iter().for_each(value),
        FromChild::PackedDone { data, others, .. } => {
            claim_in(pid, data);
            others.iter().for_each(|(_, o)| value(o));
        }
        _ => {}
    }
}
