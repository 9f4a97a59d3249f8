//! Reused shared memory for the big messages of a busy link.
//!
//! A fresh shared-memory region per big message costs more than copying the message:
//! the kernel allocates, zeroes and maps new pages on both sides, then frees them again
//! (profiled: over half the time of a 1 MiB round trip). So each direction of a pool
//! link keeps one region, its arena: the sender creates it when a big message first
//! needs it (or a bigger one), hands it over once in the frame that carries that
//! message (`adopt`), and then writes later big messages straight into it.
//!
//! The arena's first word says whose turn it is. The sender writes only while it is
//! `FREE` and then marks it `FULL`; the receiver copies the message out into memory
//! of its own (one `memcpy`) and marks the arena free again at once. If the receiver is
//! behind, the message travels in a one-off region as before. Nobody ever waits on the
//! word, so a peer that never frees the arena only costs speed.
//!
//! The decoder never reads the shared mapping: a peer (buggy or hostile) may write
//! there at any time, whatever the turn word says, and bytes that change while they
//! are decoded (a length checked, then read again) are a data race. The private copy
//! is decoded by the bounded codec like any other message.

use std::sync::atomic::{AtomicU32, Ordering};

use ipc_channel::ipc::{IpcSender, IpcSharedMemory};
use serde::{de::DeserializeOwned, Serialize};
use serde_bytes::ByteBuf;

use crate::codec::{self, CodecError};
use crate::protocol::{send_frame, Frame, LinkError, INLINE_LIMIT};

/// Bytes before the message: the turn word, padded to a cache line.
const HEADER: usize = 64;
/// The sender may write.
const FREE: u32 = 0;
/// The receiver has a message to read.
const FULL: u32 = 1;
/// The smallest arena made (a message just over the inline limit gets room to grow).
const MIN_ARENA: usize = 1 << 20;
/// Messages bigger than this travel in one-off regions: a worker that once returned a
/// huge value should not keep that much memory mapped for the rest of its life.
const MAX_ARENA: usize = 64 << 20;

struct Arena(IpcSharedMemory);

impl Arena {
    /// The turn word and the message area. `None` if the region is too small to be an
    /// arena (a peer sent a bad one).
    fn split(&mut self) -> Option<(&AtomicU32, &mut [u8])> {
        // SAFETY: the region is shared with exactly one peer, which follows the turn
        // protocol above; the bytes are plain data that we only write whole or copy
        // out whole (never decode in place), so a peer that breaks the protocol can
        // only garble a message, which the codec rejects.
        let all = unsafe { self.0.deref_mut() };
        if all.len() < HEADER {
            return None;
        }
        let (head, data) = all.split_at_mut(HEADER);
        // SAFETY: mappings are page aligned, so the first 4 bytes are an aligned u32;
        // it lives as long as the borrow of `self`, and both processes only ever access
        // it atomically.
        let turn = unsafe { &*head.as_mut_ptr().cast::<AtomicU32>() };
        Some((turn, data))
    }
}

/// The sending half of a link's arena.
#[derive(Default)]
pub struct Outbox {
    arena: Option<Arena>,
}

impl Outbox {
    /// An outbox without an arena yet.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Encodes `msg` into a frame: inline if small, else into the arena when it is free
    /// and big enough, else into a new arena or (when the receiver is behind, or the
    /// message is huge) a one-off region.
    pub fn frame<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<Frame, CodecError> {
        let size = codec::encoded_size(msg)?;
        if size <= INLINE_LIMIT {
            // Its size is known: one buffer of it, not one grown by doubling (the
            // reallocations were a tenth of a pool's reader threads under `apply_async`).
            let mut bytes = Vec::with_capacity(size);
            codec::encode_append(msg, &mut bytes)?;
            return Ok(Frame::from_bytes(bytes));
        }
        let own_frame = || one_off(msg, size);
        if size > MAX_ARENA - HEADER {
            return own_frame();
        }
        if let Some((turn, data)) = self.arena.as_mut().and_then(Arena::split) {
            if turn.load(Ordering::Acquire) != FREE {
                return own_frame();
            }
            if data.len() >= size {
                let len = codec::encode_into(msg, &mut data[..size])?;
                turn.store(FULL, Ordering::Release);
                let mut frame = Frame::parts(ByteBuf::new(), None);
                frame.arena_len = Some(len as u64);
                return Ok(frame);
            }
        }
        // No arena yet, or one too small: make a new one and hand it over.
        let room = (size + size / 4).max(MIN_ARENA);
        let capacity = (HEADER + room).next_multiple_of(4096).min(MAX_ARENA);
        let mut arena = Arena(IpcSharedMemory::from_byte(0, capacity));
        let Some((turn, data)) = arena.split() else {
            return own_frame();
        };
        let len = codec::encode_into(msg, &mut data[..size])?;
        turn.store(FULL, Ordering::Release);
        let mut frame = Frame::parts(ByteBuf::new(), Some(arena.0.clone()));
        frame.arena_len = Some(len as u64);
        frame.adopt = true;
        self.arena = Some(arena);
        Ok(frame)
    }

    /// Encodes `msg` (see [`Outbox::frame`]) and sends it on `tx`.
    pub fn send<T: Serialize + ?Sized>(
        &mut self,
        tx: &IpcSender<Frame>,
        msg: &T,
    ) -> Result<(), LinkError> {
        send_frame(tx, self.frame(msg).map_err(LinkError::Codec)?)
    }
}

/// A frame carrying `msg` (`size` bytes encoded) in a region of its own, encoded
/// straight into it: a huge message is never also a buffer of ours.
fn one_off<T: Serialize + ?Sized>(msg: &T, size: usize) -> Result<Frame, CodecError> {
    if size > codec::DECODE_LIMIT {
        // What `encode` would refuse, without making the region first.
        return codec::encode(msg).map(Frame::from_bytes);
    }
    let mut region = IpcSharedMemory::from_byte(0, size);
    // SAFETY: the region is new and not shared with anyone yet: nothing else can
    // access its bytes while we write them.
    let data = unsafe { region.deref_mut() };
    match codec::encode_into(msg, data) {
        Ok(len) if len == size => Ok(Frame::parts(ByteBuf::new(), Some(region))),
        // A value whose encoding changed between the passes: send what it is now.
        _ => codec::encode(msg).map(Frame::from_bytes),
    }
}

/// The receiving half of a link's arena.
#[derive(Default)]
pub struct Inbox {
    arena: Option<Arena>,
    /// The last message copied out of the arena (kept to reuse its pages).
    copy: Vec<u8>,
}

impl Inbox {
    /// An inbox without an arena yet.
    pub fn new() -> Inbox {
        Inbox::default()
    }

    /// Decodes the message `frame` carries, wherever it is. A message in the arena is
    /// copied out first and the arena freed for the sender's next message; only the
    /// copy is decoded.
    pub fn decode<T: DeserializeOwned>(&mut self, mut frame: Frame) -> Result<T, CodecError> {
        let misplaced = || CodecError::Misplaced {
            type_name: std::any::type_name::<T>(),
        };
        if frame.adopt {
            self.arena = Some(Arena(frame.shm.take().ok_or_else(misplaced)?));
            frame.adopt = false;
        }
        let Some(len) = frame.arena_len.take() else {
            return frame.decode();
        };
        codec::decode(self.copy_out(len).ok_or_else(misplaced)?)
    }

    /// Copies the first `len` bytes of the arena into memory of our own, marks the
    /// arena free and returns the copy. `None` without an arena that long.
    fn copy_out(&mut self, len: u64) -> Option<&[u8]> {
        let (turn, data) = self.arena.as_mut().and_then(Arena::split)?;
        let len = usize::try_from(len).ok().filter(|len| *len <= data.len())?;
        self.copy.clear();
        self.copy.extend_from_slice(&data[..len]);
        turn.store(FREE, Ordering::Release);
        Some(&self.copy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(outbox: &mut Outbox, inbox: &mut Inbox, msg: &Vec<u8>) -> Frame {
        let frame = outbox.frame(msg).unwrap();
        let copy = frame_clone(&frame);
        let back: Vec<u8> = inbox.decode(frame).unwrap();
        assert_eq!(&back, msg);
        copy
    }

    /// What a frame looked like, for assertions (the original is consumed).
    fn frame_clone(frame: &Frame) -> Frame {
        let mut copy = Frame::parts(ByteBuf::new(), None);
        copy.arena_len = frame.arena_len;
        copy.adopt = frame.adopt;
        copy
    }

    #[test]
    fn big_messages_reuse_one_arena_and_small_ones_stay_inline() {
        let (mut outbox, mut inbox) = (Outbox::new(), Inbox::new());
        let small = vec![1u8; 100];
        let f = through(&mut outbox, &mut inbox, &small);
        assert_eq!((f.arena_len, f.adopt), (None, false));
        let big = vec![7u8; 300_000];
        let f = through(&mut outbox, &mut inbox, &big);
        assert!(f.adopt && f.arena_len.is_some());
        for i in 0..5u8 {
            let msg = vec![i; 200_000 + i as usize];
            let f = through(&mut outbox, &mut inbox, &msg);
            assert!(!f.adopt && f.arena_len.is_some(), "reused the arena");
        }
        // Bigger than the arena: a new, bigger one is handed over.
        let bigger = vec![3u8; 3 << 20];
        assert!(through(&mut outbox, &mut inbox, &bigger).adopt);
        assert!(!through(&mut outbox, &mut inbox, &bigger).adopt);
    }

    #[test]
    fn a_full_arena_is_not_overwritten() {
        let (mut outbox, mut inbox) = (Outbox::new(), Inbox::new());
        let first = vec![1u8; 200_000];
        let second = vec![2u8; 200_000];
        let f1 = outbox.frame(&first).unwrap();
        // The receiver has not read the first message yet: the second goes one-off.
        let f2 = outbox.frame(&second).unwrap();
        assert!(f2.arena_len.is_none() && !f2.adopt);
        assert_eq!(inbox.decode::<Vec<u8>>(f1).unwrap(), first);
        assert_eq!(inbox.decode::<Vec<u8>>(f2).unwrap(), second);
        // Freed: the next one reuses the arena.
        let f3 = outbox.frame(&second).unwrap();
        assert!(f3.arena_len.is_some() && !f3.adopt);
        assert_eq!(inbox.decode::<Vec<u8>>(f3).unwrap(), second);
    }

    #[test]
    fn a_message_is_decoded_from_a_copy_the_peer_cannot_change() {
        let (mut outbox, mut inbox) = (Outbox::new(), Inbox::new());
        let first = vec![1u8; 200_000];
        let mut frame = outbox.frame(&first).unwrap();
        inbox.arena = Some(Arena(frame.shm.take().unwrap()));
        let copy = inbox.copy_out(frame.arena_len.unwrap()).unwrap().to_vec();
        // Free at once: the sender writes its next message over the shared bytes...
        let second = vec![2u8; 200_000];
        let f2 = outbox.frame(&second).unwrap();
        assert!(f2.arena_len.is_some() && !f2.adopt, "wrote into the arena");
        // ...and a peer may scribble there whenever it likes.
        let (_, shared) = outbox.arena.as_mut().and_then(Arena::split).unwrap();
        shared.fill(0xff);
        // The message taken out is untouched.
        assert_eq!(
            codec::decode::<Vec<u8>>(inbox.copy.as_slice()).unwrap(),
            first
        );
        assert_eq!(codec::decode::<Vec<u8>>(&copy).unwrap(), first);
    }

    #[test]
    fn a_frame_pointing_outside_the_arena_is_an_error() {
        let mut inbox = Inbox::new();
        let mut frame = Frame::parts(ByteBuf::new(), None);
        frame.arena_len = Some(10);
        assert!(matches!(
            inbox.decode::<Vec<u8>>(frame),
            Err(CodecError::Misplaced { .. })
        ));
        let mut outbox = Outbox::new();
        let big = vec![1u8; 100_000];
        inbox
            .decode::<Vec<u8>>(outbox.frame(&big).unwrap())
            .unwrap();
        let mut frame = Frame::parts(ByteBuf::new(), None);
        frame.arena_len = Some(u64::MAX);
        assert!(matches!(
            inbox.decode::<Vec<u8>>(frame),
            Err(CodecError::Misplaced { .. })
        ));
        // Only an inbox can read an arena frame.
        let mut frame = Frame::parts(ByteBuf::new(), None);
        frame.arena_len = Some(1);
        assert!(frame.decode::<Vec<u8>>().is_err());
    }
}
