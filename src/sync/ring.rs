//! A byte ring of length-prefixed messages in shared memory, used under the region's
//! mutex by [`crate::Queue`] and [`crate::Pipe`].
//!
//! Crash safety comes from the order of writes: a writer copies the whole message in
//! and only then advances `tail` (a writer that dies mid-copy leaves nothing visible); a
//! reader copies the message out and only then advances `head` (a reader that dies
//! mid-copy loses nothing). `count` is derived data: [`Ring::repair`] recounts it.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use super::fault::{self, Fault};
use super::region::SharedState;
use crate::error::{Error, ErrorKind};

/// Frame header: payload length (u32 LE) and a marker; frames are 8-byte aligned.
const FRAME_HEADER: usize = 8;
const MARK: u32 = 0x5155_4555;

/// The shared part of a ring.
#[repr(C)]
pub(crate) struct RingState {
    /// Byte positions since creation (never wrapped; modulo the size for addresses).
    head: AtomicU64,
    tail: AtomicU64,
    /// Messages in the ring.
    count: AtomicU64,
    /// Most messages allowed at once; 0: only the byte size limits.
    capacity: AtomicU64,
    closed: AtomicU32,
    /// Bumped on every get / put / close; what blocked putters / getters sleep on.
    pub(crate) not_full: AtomicU32,
    pub(crate) not_empty: AtomicU32,
    pub(crate) putters: AtomicU32,
    pub(crate) getters: AtomicU32,
}

// SAFETY: repr(C), only atomics, valid when zeroed.
unsafe impl SharedState for RingState {}

/// A ring: its shared state and data area, as mapped in this process.
pub(crate) struct Ring<'a> {
    pub(crate) state: &'a RingState,
    data: *mut u8,
    size: usize,
    kind: &'static str,
}

/// The smallest data area a ring works in.
pub(crate) const MIN_SIZE: usize = 64;

/// The bytes a frame of `payload` bytes takes (`payload` is at most a ring's size, so
/// this cannot overflow).
fn frame_len(payload: usize) -> usize {
    FRAME_HEADER + payload.div_ceil(8) * 8
}

impl<'a> Ring<'a> {
    /// `data` must point to `size` bytes of the same mapping as `state`, used by
    /// nothing else. A size that cannot hold a ring (under [`MIN_SIZE`] or not a
    /// multiple of 8: a region whose header was relabelled) makes a ring on which every
    /// operation fails with [`ErrorKind::Corrupt`] and no byte is touched.
    pub(crate) fn new(
        state: &'a RingState,
        data: *mut u8,
        size: usize,
        kind: &'static str,
    ) -> Self {
        Ring {
            state,
            data,
            size,
            kind,
        }
    }

    pub(crate) fn set_capacity(&self, capacity: u64) {
        self.state.capacity.store(capacity, Ordering::Relaxed);
    }

    pub(crate) fn capacity(&self) -> Option<u64> {
        Some(self.state.capacity.load(Ordering::Relaxed)).filter(|&c| c > 0)
    }

    /// Messages in the ring, read without the lock: approximate.
    pub(crate) fn len(&self) -> usize {
        self.state.count.load(Ordering::Relaxed) as usize
    }

    /// The largest payload the ring can hold.
    pub(crate) fn max_message(&self) -> usize {
        self.size.saturating_sub(FRAME_HEADER)
    }

    /// Whether the data area can hold a ring at all (see [`Ring::new`]).
    fn usable(&self) -> Result<(), Error> {
        if self.size < MIN_SIZE || !self.size.is_multiple_of(8) {
            return Err(self.corrupt(format!(
                "a buffer of {} bytes cannot hold a ring",
                self.size
            )));
        }
        Ok(())
    }

    fn corrupt(&self, detail: String) -> Error {
        ErrorKind::Corrupt {
            kind: self.kind,
            detail,
        }
        .into()
    }

    /// Encodes a message for this ring: one that cannot fit is refused as soon as its
    /// encoding outgrows the ring (then measured, storing nothing, for the error), so a
    /// huge item put in a small queue is never copied whole.
    pub(crate) fn encode<T: serde::Serialize + ?Sized>(&self, msg: &T) -> Result<Vec<u8>, Error> {
        use supervisor_worker::codec::{self, CodecError};
        let kind = self.kind;
        let limit = self.max_message().min(u32::MAX as usize);
        match codec::encode_within(msg, limit) {
            Ok(bytes) => Ok(bytes),
            Err(CodecError::TooLarge { .. }) => Err(match codec::encoded_size(msg) {
                Ok(size) => ErrorKind::MessageTooLarge {
                    kind,
                    size,
                    limit: self.max_message(),
                },
                Err(source) => ErrorKind::EncodeMessage { kind, source },
            }
            .into()),
            Err(source) => Err(ErrorKind::EncodeMessage { kind, source }.into()),
        }
    }

    pub(crate) fn check_size(&self, len: usize) -> Result<(), Error> {
        self.usable()?;
        if len > self.max_message() || len > u32::MAX as usize {
            return Err(ErrorKind::MessageTooLarge {
                kind: self.kind,
                size: len,
                limit: self.max_message(),
            }
            .into());
        }
        Ok(())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.closed.load(Ordering::Acquire) != 0
    }

    /// Under the mutex: marks the ring closed and wakes every sleeper.
    pub(crate) fn close(&self) {
        self.state.closed.store(1, Ordering::Release);
        self.state.not_empty.fetch_add(1, Ordering::SeqCst);
        self.state.not_full.fetch_add(1, Ordering::SeqCst);
    }

    /// Copies `bytes` in at position `pos` (modulo the size, wrapping around the end).
    /// Refuses, touching nothing, a copy longer than the ring or a ring of no size,
    /// whatever the shared positions say.
    fn write_at(&self, pos: u64, bytes: &[u8]) -> Result<(), Error> {
        if self.size == 0 || bytes.len() > self.size {
            return Err(self.corrupt(format!(
                "a copy of {} bytes into a ring of {} bytes",
                bytes.len(),
                self.size
            )));
        }
        let off = (pos % self.size as u64) as usize;
        let first = bytes.len().min(self.size - off);
        // SAFETY: off < size and off + first <= size; the rest is at most
        // len - (size - off) < size bytes from 0 (or none): both copies stay inside the
        // data area of `size` bytes; the source is a live slice.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data.add(off), first);
            std::ptr::copy_nonoverlapping(bytes[first..].as_ptr(), self.data, bytes.len() - first);
        }
        Ok(())
    }

    /// Copies `out.len()` bytes out from position `pos`; the same bounds as `write_at`.
    fn read_at(&self, pos: u64, out: &mut [u8]) -> Result<(), Error> {
        if self.size == 0 || out.len() > self.size {
            return Err(self.corrupt(format!(
                "a copy of {} bytes out of a ring of {} bytes",
                out.len(),
                self.size
            )));
        }
        let off = (pos % self.size as u64) as usize;
        let first = out.len().min(self.size - off);
        let rest = out.len() - first;
        // SAFETY: as in `write_at`, reading into a live buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data.add(off), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(self.data, out[first..].as_mut_ptr(), rest);
        }
        Ok(())
    }

    /// Under the mutex: appends a message if there is room; false if full.
    pub(crate) fn try_push(&self, msg: &[u8]) -> Result<bool, Error> {
        self.check_size(msg.len())?;
        let s = self.state;
        let head = s.head.load(Ordering::Acquire);
        let tail = s.tail.load(Ordering::Acquire);
        let count = s.count.load(Ordering::Relaxed);
        let need = frame_len(msg.len()) as u64;
        let size = self.size as u64;
        // Positions are shared: a peer may have written anything there.
        let used = tail.wrapping_sub(head);
        if used > size {
            return Err(self.corrupt(format!("{used} bytes in use in a ring of {size} bytes")));
        }
        if self.capacity().is_some_and(|c| count >= c) || need > size - used {
            return Ok(false);
        }
        let mut header = [0u8; FRAME_HEADER];
        header[..4].copy_from_slice(&(msg.len() as u32).to_le_bytes());
        header[4..].copy_from_slice(&MARK.to_le_bytes());
        self.write_at(tail, &header)?;
        let half = msg.len() / 2;
        self.write_at(tail.wrapping_add(FRAME_HEADER as u64), &msg[..half])?;
        fault::point(Fault::PutMidCopy);
        self.write_at(
            tail.wrapping_add((FRAME_HEADER + half) as u64),
            &msg[half..],
        )?;
        // Commit: the message is whole before `tail` moves past it.
        fence(Ordering::Release);
        s.tail.store(tail.wrapping_add(need), Ordering::Release);
        s.count.store(count.saturating_add(1), Ordering::Release);
        s.not_empty.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }

    /// Under the mutex: removes and returns the oldest message, if any.
    pub(crate) fn try_pop(&self) -> Result<Option<Vec<u8>>, Error> {
        self.usable()?;
        let s = self.state;
        let head = s.head.load(Ordering::Acquire);
        let tail = s.tail.load(Ordering::Acquire);
        if head == tail {
            return Ok(None);
        }
        let len = self
            .frame_at(head, tail)
            .ok_or_else(|| self.corrupt(format!("bad frame at byte {head}")))?;
        let mut out = vec![0u8; len];
        let half = len / 2;
        self.read_at(head.wrapping_add(FRAME_HEADER as u64), &mut out[..half])?;
        fault::point(Fault::GetMidCopy);
        self.read_at(
            head.wrapping_add((FRAME_HEADER + half) as u64),
            &mut out[half..],
        )?;
        // Commit: the copy is complete before `head` moves past the message.
        fence(Ordering::Release);
        s.head
            .store(head.wrapping_add(frame_len(len) as u64), Ordering::Release);
        let count = s.count.load(Ordering::Relaxed);
        s.count.store(count.saturating_sub(1), Ordering::Release);
        s.not_full.fetch_add(1, Ordering::SeqCst);
        Ok(Some(out))
    }

    /// The payload length of the frame at `pos`, if it is a whole, valid frame that
    /// ends at or before `tail`, within the ring's size (whatever the shared positions
    /// and the frame's header say).
    fn frame_at(&self, pos: u64, tail: u64) -> Option<usize> {
        let mut header = [0u8; FRAME_HEADER];
        // Wrapping, as the positions do (they start anywhere a peer sets them).
        let filled = tail.wrapping_sub(pos);
        if filled < FRAME_HEADER as u64 || filled > self.size as u64 {
            return None;
        }
        self.read_at(pos, &mut header).ok()?;
        let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
        let mark = u32::from_le_bytes(header[4..].try_into().ok()?);
        let fits = len <= self.max_message() && frame_len(len) as u64 <= filled;
        (mark == MARK && fits).then_some(len)
    }

    /// Under the mutex, after its previous holder died: makes head, tail and count
    /// consistent again. Whole frames between head and tail are kept; a torn frame
    /// (which cannot happen with this file's write order) ends the ring.
    pub(crate) fn repair(&self) {
        if self.usable().is_err() {
            return;
        }
        let s = self.state;
        let head = s.head.load(Ordering::Acquire);
        let mut tail = s.tail.load(Ordering::Acquire);
        if tail.wrapping_sub(head) > self.size as u64 {
            tail = head;
        }
        let (mut pos, mut count) = (head, 0u64);
        // A frame ends at or before `tail` (`frame_at`), so `pos` reaches it exactly.
        while pos != tail {
            match self.frame_at(pos, tail) {
                Some(len) => {
                    pos = pos.wrapping_add(frame_len(len) as u64);
                    count += 1;
                }
                None => break,
            }
        }
        s.tail.store(pos, Ordering::Release);
        s.count.store(count, Ordering::Release);
        // Whoever sleeps re-checks.
        s.not_empty.fetch_add(1, Ordering::SeqCst);
        s.not_full.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeroed() -> RingState {
        // SAFETY: RingState is made of atomics, valid when all bytes are zero.
        unsafe { std::mem::zeroed() }
    }

    /// A data area too small for a ring (a relabelled header) and shared positions a
    /// peer rewrote: errors, never a copy outside the buffer, a panic or a division by
    /// zero.
    #[test]
    fn a_ring_refuses_whatever_its_size_or_shared_positions_say() {
        for size in [0usize, 1, 7, 14, 63] {
            let state = zeroed();
            let mut buf = vec![0u8; size];
            let ring = Ring::new(&state, buf.as_mut_ptr(), size, "pipe");
            assert!(ring.check_size(0).is_err(), "{size}");
            assert!(ring.try_push(&[1]).is_err(), "{size}");
            state.tail.store(16, Ordering::Relaxed);
            assert!(ring.try_pop().is_err(), "{size}");
            ring.repair();
        }
        let state = zeroed();
        let mut buf = vec![0u8; 64];
        let ring = Ring::new(&state, buf.as_mut_ptr(), 64, "queue");
        // More in use than the ring holds, or a sum that wraps: corrupt, not a copy.
        for (head, tail) in [(0, 1000), (u64::MAX - 7, 1000), (100, 0)] {
            state.head.store(head, Ordering::Relaxed);
            state.tail.store(tail, Ordering::Relaxed);
            assert!(ring.try_push(&[1; 8]).is_err(), "{head} {tail}");
        }
        // A frame announcing more than the ring: corrupt.
        state.head.store(0, Ordering::Relaxed);
        state.tail.store(64, Ordering::Relaxed);
        buf[..4].copy_from_slice(&0x1000_0051u32.to_le_bytes());
        buf[4..8].copy_from_slice(&MARK.to_le_bytes());
        assert!(ring.try_pop().is_err());
        // Positions near the end of the u64 range wrap instead of overflowing.
        state.head.store(u64::MAX - 7, Ordering::Relaxed);
        state.tail.store(u64::MAX - 7, Ordering::Relaxed);
        assert!(ring.try_push(&[9; 20]).unwrap());
        assert!(ring.try_push(&[8; 4]).unwrap());
        ring.repair();
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.try_pop().unwrap(), Some(vec![9; 20]));
        assert_eq!(ring.try_pop().unwrap(), Some(vec![8; 4]));
        assert_eq!(ring.try_pop().unwrap(), None);
    }
}
