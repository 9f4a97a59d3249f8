//! The packets below our frames, checked before ipc-channel reads them.
//!
//! ipc-channel 0.23.1 (unix) sends a message as one `SOCK_SEQPACKET` packet: a header
//! of two native-endian `usize`s (the packet's own length, the whole message's length),
//! then the data, with descriptors attached (`SCM_RIGHTS`). A message too big for one
//! packet sends its first part so, with a dedicated channel attached for the rest. Its
//! receive trusts that header: it reserves the announced total up front (a peer that
//! announces 1 TiB and attaches a descriptor makes it try, and abort the process on, a
//! 1 TiB allocation), it waits for more packets when the first is shorter than its
//! header says (a hang), and it panics on some other inconsistencies.
//!
//! So every receive first waits for a packet with `poll`, peeks at its header on the raw
//! descriptor (`MSG_PEEK`: nothing is taken, and without a control buffer no attached
//! descriptor is installed here) and refuses, as a [`PacketError`], a packet whose header
//! does not describe it or whose message would exceed [`MAX_MESSAGE`]. Only then does
//! ipc-channel read it. A refused packet stays queued: the link is broken for good,
//! and the peer is killed by whoever owns it.
//!
//! [`MAX_MESSAGE`] is far above anything we send: every message bigger than the
//! protocol's inline limit (`protocol::INLINE_LIMIT`) travels in shared memory, so a frame on the socket carries at most
//! that much data plus a few bytes of envelope. A fragmented message within the limit is
//! allowed (ipc-channel fragments when the kernel refuses a big buffer); its allocation
//! is bounded by the limit.
//!
//! ipc-channel does not expose a receiver's descriptor. Its `Debug` output does
//! (`IpcReceiver { os_receiver: OsIpcReceiver { fd: Cell { value: N } }, .. }`), so
//! `receiver_fd` reads it from there; the crate is pinned (`=0.23.1` in Cargo.toml),
//! the first descriptor found is checked to be a `SOCK_SEQPACKET` socket, and a unit
//! test fails if the layout changes.

use std::fmt::{self, Debug, Write as _};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use ipc_channel::ipc::IpcReceiver;

use crate::os::{self, Readiness};

/// The largest message a peer may announce: 1 MiB, sixteen times the inline limit.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Length of ipc-channel's packet header: packet length, message length.
pub const HEADER_LEN: usize = 2 * std::mem::size_of::<usize>();

/// Why a packet was refused before ipc-channel read it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// A packet with no bytes from a peer that is still connected.
    #[error("empty packet")]
    Empty,
    /// Too short to hold the header.
    #[error("{len}-byte packet is shorter than the {HEADER_LEN}-byte header")]
    Short {
        /// The packet's length.
        len: usize,
    },
    /// The header's packet length is not the packet's.
    #[error("header says the packet has {announced} bytes, it has {len}")]
    Length {
        /// What the header says.
        announced: usize,
        /// What arrived.
        len: usize,
    },
    /// The announced message is bigger than [`MAX_MESSAGE`].
    #[error("header announces a {total}-byte message, the limit is {MAX_MESSAGE}")]
    TooBig {
        /// The announced length.
        total: usize,
    },
    /// The announced message is smaller than the data in its first packet.
    #[error("header announces a {total}-byte message, its first packet has {data} bytes")]
    TooSmall {
        /// The announced length.
        total: usize,
        /// The data in this packet.
        data: usize,
    },
}

/// Checks the header of a packet of `len` bytes that starts with `head` (its first
/// `min(len, HEADER_LEN)` bytes, or more).
pub fn check_header(len: usize, head: &[u8]) -> Result<(), PacketError> {
    if len == 0 {
        return Err(PacketError::Empty);
    }
    if len < HEADER_LEN || head.len() < HEADER_LEN {
        return Err(PacketError::Short { len });
    }
    let word = |at: usize| {
        const WORD: usize = std::mem::size_of::<usize>();
        let mut bytes = [0u8; WORD];
        bytes.copy_from_slice(&head[at..at + WORD]);
        usize::from_ne_bytes(bytes)
    };
    let (announced, total) = (word(0), word(HEADER_LEN / 2));
    if announced != len {
        return Err(PacketError::Length { announced, len });
    }
    if total > MAX_MESSAGE {
        return Err(PacketError::TooBig { total });
    }
    let data = len - HEADER_LEN;
    if total < data {
        return Err(PacketError::TooSmall { total, data });
    }
    Ok(())
}

/// Why [`await_packet`] returned without a packet for ipc-channel to read.
#[derive(Debug)]
pub(crate) enum NotReady {
    /// The time ran out first.
    Timeout,
    /// The descriptor could not be watched or peeked at.
    Io(std::io::Error),
    /// The next packet's header was refused.
    Refused(PacketError),
}

/// Waits (at most `timeout`, `None`: no limit) until a packet whose header passes
/// [`check_header`] is next on `rx`, or the peer hung up; ipc-channel's receive then
/// returns at once.
pub(crate) fn await_packet(fd: Option<RawFd>, timeout: Option<Duration>) -> Result<(), NotReady> {
    let fd = fd.ok_or_else(|| {
        NotReady::Io(std::io::Error::other(
            "cannot find the descriptor of an ipc-channel receiver",
        ))
    })?;
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut head = [0u8; HEADER_LEN];
    loop {
        // Without a time limit one blocking peek waits and reads the header at once;
        // with one, a packet already there needs no poll either.
        match os::peek_packet(fd, &mut head, deadline.is_none()).map_err(NotReady::Io)? {
            None => {
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                if let Readiness::TimedOut = os::wait_readable(fd, left).map_err(NotReady::Io)? {
                    return Err(NotReady::Timeout);
                }
                // Readable (or hung up): peek again.
            }
            Some(0) => {
                // End of stream (ipc-channel reports it), unless the peer is still there
                // and sent an empty packet.
                let hung_up = matches!(
                    os::wait_readable(fd, Some(Duration::ZERO)),
                    Ok(Readiness::Readable { hung_up: true })
                );
                return if hung_up {
                    Ok(())
                } else {
                    Err(NotReady::Refused(PacketError::Empty))
                };
            }
            Some(len) => {
                return check_header(len, &head[..len.min(HEADER_LEN)]).map_err(NotReady::Refused)
            }
        }
    }
}

/// What one non-blocking peek found on a receiver (for a caller that polls before it
/// sleeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// Nothing yet.
    Nothing,
    /// A packet whose header passes [`check_header`]: ipc-channel may read it at once.
    Checked,
    /// Something a receive must look at itself: the end of the stream, an error, a
    /// refused header.
    Other,
}

/// Peeks once, without waiting, at what is next on the receiver with descriptor `fd`.
pub(crate) fn peek_waiting(fd: Option<RawFd>) -> Waiting {
    let Some(fd) = fd else {
        return Waiting::Other;
    };
    let mut head = [0u8; HEADER_LEN];
    match os::peek_packet(fd, &mut head, false) {
        Ok(None) => Waiting::Nothing,
        Ok(Some(len)) if len > 0 && check_header(len, &head[..len.min(HEADER_LEN)]).is_ok() => {
            Waiting::Checked
        }
        _ => Waiting::Other,
    }
}

/// The receiver's descriptor, checked to be a `SOCK_SEQPACKET` socket.
pub(crate) fn descriptor<T: Debug>(rx: &IpcReceiver<T>) -> Option<RawFd> {
    receiver_fd(rx).filter(|fd| os::is_seqpacket_socket(*fd))
}

/// The descriptor ipc-channel 0.23.1 keeps in an `IpcReceiver`, read from its `Debug`
/// output (no allocation: formatting stops once the number is in).
pub(crate) fn receiver_fd<T: Debug>(rx: &IpcReceiver<T>) -> Option<RawFd> {
    const PREFIX: &str = "IpcReceiver { os_receiver: OsIpcReceiver { fd: Cell { value: ";
    let mut out = Prefix {
        buf: [0; 96],
        len: 0,
    };
    // An error only means the buffer filled up, which ends formatting early on purpose.
    let _ = write!(out, "{rx:?}");
    let text = std::str::from_utf8(&out.buf[..out.len]).ok()?;
    let rest = text.strip_prefix(PREFIX)?;
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    if !rest[digits..].starts_with(" }") {
        return None;
    }
    rest[..digits].parse().ok().filter(|fd| *fd >= 0)
}

/// The start of a formatted value, in a fixed buffer.
struct Prefix {
    buf: [u8; 96],
    len: usize,
}

impl fmt::Write for Prefix {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet header: the packet's length, the whole message's length.
    fn header(packet: usize, total: usize) -> Vec<u8> {
        let mut h = packet.to_ne_bytes().to_vec();
        h.extend_from_slice(&total.to_ne_bytes());
        h
    }

    #[test]
    fn the_descriptor_is_found_in_ipc_channels_debug_output() {
        // Fails if ipc-channel changes the layout this module reads (see the module docs).
        let (_tx, rx) = ipc_channel::ipc::channel::<()>().unwrap();
        let fd = receiver_fd(&rx).expect("the Debug output names the descriptor");
        assert!(os::is_seqpacket_socket(fd));
        let text = format!("{rx:?}");
        assert!(
            text.contains(&format!("fd: Cell {{ value: {fd} }}")),
            "{text}"
        );
    }

    #[test]
    fn headers_that_describe_their_packet_pass() {
        assert_eq!(
            check_header(HEADER_LEN + 10, &header(HEADER_LEN + 10, 10)),
            Ok(())
        );
        // A fragmented message within the limit.
        assert_eq!(
            check_header(HEADER_LEN + 10, &header(HEADER_LEN + 10, 4096)),
            Ok(())
        );
        assert_eq!(
            check_header(HEADER_LEN, &header(HEADER_LEN, MAX_MESSAGE)),
            Ok(())
        );
    }

    #[test]
    fn lying_headers_are_refused() {
        let len = HEADER_LEN + 8;
        assert_eq!(
            check_header(len, &header(len, 1 << 40)),
            Err(PacketError::TooBig { total: 1 << 40 })
        );
        assert_eq!(
            check_header(len, &header(len + 100, 8)),
            Err(PacketError::Length {
                announced: len + 100,
                len
            })
        );
        assert_eq!(
            check_header(len, &header(len, 3)),
            Err(PacketError::TooSmall { total: 3, data: 8 })
        );
        assert_eq!(check_header(5, &[0; 5]), Err(PacketError::Short { len: 5 }));
        assert_eq!(check_header(0, &[]), Err(PacketError::Empty));
    }
}
