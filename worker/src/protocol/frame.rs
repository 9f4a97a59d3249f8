//! [`Frame`]: what one ipc-channel message carries.

use ipc_channel::ipc::{IpcReceiver, IpcSender, IpcSharedMemory};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::codec::{self, CodecError};
use crate::packet;

/// Messages whose encoding is larger than this travel in shared memory, so that no
/// socket send is ever fragmented (a fragmented send to a dying peer can hang).
pub const INLINE_LIMIT: usize = 64 * 1024;
// A frame on the socket (inline data plus a few bytes of envelope) always passes the
// packet check.
const _: () = assert!(packet::MAX_MESSAGE >= 2 * INLINE_LIMIT);

/// One message on an ipc-channel link.
#[derive(Debug, Serialize, Deserialize)]
pub struct Frame {
    data: ByteBuf,
    pub(crate) shm: Option<IpcSharedMemory>,
    channels: Vec<Channel>,
    /// `Some(len)`: the message is the first `len` bytes of the link's arena (see
    /// [`crate::arena`]), not in `data` or `shm`.
    pub(crate) arena_len: Option<u64>,
    /// `shm` is the sender's new arena, to keep for later frames.
    pub(crate) adopt: bool,
    /// A pool worker's progress page (see [`crate::progress`]), sent once.
    page: Option<IpcSharedMemory>,
}

/// A channel handle carried inside a [`Frame`].
#[derive(Debug, Serialize, Deserialize)]
pub enum Channel {
    /// A sending end.
    Sender(IpcSender<Frame>),
    /// A receiving end.
    Receiver(IpcReceiver<Frame>),
}

impl Frame {
    /// Encodes `msg` (and attaches `channels`) into a frame ready to send.
    pub fn new<T: Serialize>(msg: &T, channels: Vec<Channel>) -> Result<Frame, CodecError> {
        let bytes = codec::encode(msg)?;
        let mut frame = Frame::from_bytes(bytes);
        frame.channels = channels;
        Ok(frame)
    }

    /// A frame carrying already encoded bytes (in shared memory if they are big).
    pub(crate) fn from_bytes(bytes: Vec<u8>) -> Frame {
        if bytes.len() > INLINE_LIMIT {
            Frame::parts(ByteBuf::new(), Some(IpcSharedMemory::from_bytes(&bytes)))
        } else {
            Frame::parts(ByteBuf::from(bytes), None)
        }
    }

    pub(crate) fn parts(data: ByteBuf, shm: Option<IpcSharedMemory>) -> Frame {
        Frame {
            data,
            shm,
            channels: Vec::new(),
            arena_len: None,
            adopt: false,
            page: None,
        }
    }

    /// A frame carrying `msg` and a progress page for the worker to keep.
    pub fn with_page<T: Serialize>(msg: &T, page: IpcSharedMemory) -> Result<Frame, CodecError> {
        let mut frame = Frame::new(msg, Vec::new())?;
        frame.page = Some(page);
        Ok(frame)
    }

    /// Takes the progress page out of the frame.
    pub fn take_page(&mut self) -> Option<IpcSharedMemory> {
        self.page.take()
    }

    /// Decodes the message this frame carries. A frame that points into an arena can
    /// only be decoded by the [`crate::arena::Inbox`] that holds it.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        if self.arena_len.is_some() || self.adopt {
            return Err(CodecError::Misplaced {
                type_name: std::any::type_name::<T>(),
            });
        }
        match &self.shm {
            Some(shm) => codec::decode(shm),
            None => codec::decode(&self.data),
        }
    }

    /// Takes the channel handles out of the frame.
    pub fn take_channels(&mut self) -> Vec<Channel> {
        std::mem::take(&mut self.channels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_messages_go_through_shared_memory() {
        let big = vec![3u8; INLINE_LIMIT * 2];
        let frame = Frame::new(&big, Vec::new()).unwrap();
        assert!(frame.shm.is_some() && frame.data.is_empty());
        assert_eq!(frame.decode::<Vec<u8>>().unwrap(), big);
        let small = Frame::new(&5u8, Vec::new()).unwrap();
        assert!(small.shm.is_none());
    }
}
