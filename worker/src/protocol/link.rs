//! Sending frames, and receiving them with every packet checked first.

use ipc_channel::ipc::{IpcReceiver, IpcSender};
use serde::{de::DeserializeOwned, Serialize};
use std::cell::Cell;
use std::os::fd::RawFd;
use std::time::Duration;

use super::frame::{Channel, Frame};
use crate::codec::CodecError;
use crate::packet::{self, NotReady, PacketError};

/// Why a link stopped working.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The other end is gone: every sender (or the receiver) was closed.
    #[error("peer closed the channel")]
    Closed,
    /// Nothing arrived in time.
    #[error("timed out waiting for the peer")]
    Timeout,
    /// The operating system refused the send or receive.
    #[error("channel i/o failed")]
    Io(#[source] std::io::Error),
    /// A frame arrived but did not decode as the expected message.
    #[error("malformed message from peer")]
    Codec(#[source] CodecError),
    /// The peer broke the channel's framing.
    #[error("malformed frame from peer")]
    Malformed,
    /// The peer sent a packet whose header lies about its size (see [`crate::packet`]).
    #[error("malformed packet from peer")]
    Packet(#[source] PacketError),
}

/// One end of a duplex link: frames go out on `tx` and come in on `rx`.
pub struct Link {
    /// Outgoing frames.
    pub tx: IpcSender<Frame>,
    /// Incoming frames.
    pub rx: Receiver,
}

impl Link {
    /// Encodes and sends one message.
    pub fn send<T: Serialize>(&self, msg: &T) -> Result<(), LinkError> {
        self.send_with(msg, Vec::new())
    }

    /// Encodes and sends one message with channel handles attached.
    pub fn send_with<T: Serialize>(
        &self,
        msg: &T,
        channels: Vec<Channel>,
    ) -> Result<(), LinkError> {
        let frame = Frame::new(msg, channels).map_err(LinkError::Codec)?;
        send_frame(&self.tx, frame)
    }

    /// Waits for the next frame.
    pub fn recv_frame(&self) -> Result<Frame, LinkError> {
        self.rx.recv()
    }

    /// Waits up to `timeout` for the next frame.
    pub fn recv_frame_timeout(&self, timeout: Duration) -> Result<Frame, LinkError> {
        self.rx.recv_timeout(timeout)
    }

    /// Waits for the next message and decodes it.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T, LinkError> {
        self.recv_frame()?.decode().map_err(LinkError::Codec)
    }
}

/// What a panic of ipc-channel's receive means: out of descriptors, the kernel drops
/// the descriptors a message carries and ipc-channel asserts on what it got instead
/// (an `mmap` that fails); otherwise the peer broke the framing.
fn panicked() -> LinkError {
    if crate::os::descriptors_nearly_exhausted() {
        LinkError::Io(std::io::Error::from_raw_os_error(libc::EMFILE))
    } else {
        LinkError::Malformed
    }
}

/// The receiving end of a link. ipc-channel trusts the peer's framing, so the header of
/// every packet is checked before ipc-channel reads it ([`crate::packet`]), and a panic
/// of ipc-channel on a malformed message is caught and reported as
/// [`LinkError::Malformed`]. The socket's descriptor is looked up once, here.
pub struct Receiver {
    rx: IpcReceiver<Frame>,
    /// `None` if ipc-channel's layout hid it: every receive then fails.
    fd: Option<RawFd>,
    /// [`Receiver::frame_waiting`] has checked the next packet's header: the next
    /// receive need not peek again.
    checked: Cell<bool>,
}

impl Receiver {
    /// Wraps an ipc-channel receiver.
    pub fn new(rx: IpcReceiver<Frame>) -> Receiver {
        let fd = packet::descriptor(&rx);
        Receiver {
            rx,
            fd,
            checked: Cell::new(false),
        }
    }

    /// Waits (at most `timeout`) for a packet whose header passes the check, unless one
    /// was already checked.
    fn await_packet(&self, timeout: Option<Duration>) -> Result<(), LinkError> {
        if self.checked.replace(false) {
            return Ok(());
        }
        packet::await_packet(self.fd, timeout).map_err(|e| match e {
            NotReady::Timeout => LinkError::Timeout,
            NotReady::Io(e) => LinkError::Io(e),
            NotReady::Refused(e) => LinkError::Packet(e),
        })
    }

    /// Receives a frame.
    pub fn recv(&self) -> Result<Frame, LinkError> {
        self.await_packet(None)?;
        crate::quiet_panic::catch(|| self.rx.recv())
            .map_err(|_| panicked())?
            .map_err(map_ipc_error)
    }

    /// [`Receiver::recv`] with a time limit.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Frame, LinkError> {
        self.await_packet(Some(timeout))?;
        // A checked packet (or the end of the stream) is waiting: this does not wait.
        let received = crate::quiet_panic::catch(|| self.rx.try_recv_timeout(Duration::ZERO))
            .map_err(|_| panicked())?;
        match received {
            Ok(frame) => Ok(frame),
            Err(ipc_channel::TryRecvError::Empty) => Err(LinkError::Timeout),
            Err(ipc_channel::TryRecvError::IpcError(e)) => Err(map_ipc_error(e)),
        }
    }

    /// The socket's descriptor (`None` if ipc-channel's layout hid it); open as long as
    /// this receiver lives.
    pub fn descriptor(&self) -> Option<RawFd> {
        self.fd
    }

    /// Whether [`Receiver::recv`] would return at once (a packet, the end of the stream
    /// or an error is waiting); costs one non-blocking system call. A packet it finds
    /// is checked here, once: the receive that follows only reads it.
    pub fn frame_waiting(&self) -> bool {
        match packet::peek_waiting(self.fd) {
            packet::Waiting::Nothing => false,
            packet::Waiting::Checked => {
                self.checked.set(true);
                true
            }
            packet::Waiting::Other => true,
        }
    }
}

impl From<IpcReceiver<Frame>> for Receiver {
    fn from(rx: IpcReceiver<Frame>) -> Receiver {
        Receiver::new(rx)
    }
}

/// Sends a frame, mapping a vanished peer to [`LinkError::Closed`].
pub fn send_frame(tx: &IpcSender<Frame>, frame: Frame) -> Result<(), LinkError> {
    tx.send(frame).map_err(|e| match e {
        ipc_channel::IpcError::Disconnected => LinkError::Closed,
        ipc_channel::IpcError::Io(io) if is_peer_gone(&io) => LinkError::Closed,
        ipc_channel::IpcError::Io(io) => LinkError::Io(io),
        ipc_channel::IpcError::SerializationError(s) => {
            LinkError::Io(std::io::Error::other(s.to_string()))
        }
    })
}

fn is_peer_gone(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPIPE) | Some(libc::ECONNRESET) | Some(libc::ENOTCONN)
    )
}

fn map_ipc_error(e: ipc_channel::IpcError) -> LinkError {
    match e {
        ipc_channel::IpcError::Disconnected => LinkError::Closed,
        ipc_channel::IpcError::Io(io) if is_peer_gone(&io) => LinkError::Closed,
        ipc_channel::IpcError::Io(io) => unless_out_of_descriptors(io),
        ipc_channel::IpcError::SerializationError(s) => {
            unless_out_of_descriptors(std::io::Error::other(s.to_string()))
        }
    }
}

/// A receive that failed while this process is at its descriptor limit failed for
/// that: the kernel dropped the descriptors the message carried, and ipc-channel says
/// only "Serialization/Deserialization error". Said as `EMFILE`, which names the limit.
fn unless_out_of_descriptors(e: std::io::Error) -> LinkError {
    if crate::os::descriptors_nearly_exhausted() {
        LinkError::Io(std::io::Error::from_raw_os_error(libc::EMFILE))
    } else {
        LinkError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os;
    use crate::packet::{receiver_fd, HEADER_LEN};
    use crate::protocol::INLINE_LIMIT;
    use std::time::Instant;

    /// A packet header: the packet's length, the whole message's length.
    fn header(packet: usize, total: usize) -> Vec<u8> {
        let mut h = packet.to_ne_bytes().to_vec();
        h.extend_from_slice(&total.to_ne_bytes());
        h
    }

    /// Sends `bytes` as one raw packet on `fd`, with `attach` attached (SCM_RIGHTS).
    fn send_raw(fd: RawFd, bytes: &[u8], attach: Option<RawFd>) {
        assert_eq!(os::send_packet(fd, bytes, attach).unwrap(), bytes.len());
    }

    /// A channel and the raw descriptor of its sending end (from the sender's `Debug`
    /// output, `.. fd: SharedFileDescriptor(N) ..`).
    fn raw_channel() -> (IpcSender<Frame>, Receiver, RawFd) {
        let (tx, rx) = ipc_channel::ipc::channel::<Frame>().unwrap();
        let text = format!("{tx:?}");
        let at = text.find("SharedFileDescriptor(").unwrap() + "SharedFileDescriptor(".len();
        let end = at + text[at..].find(')').unwrap();
        let fd = text[at..end].parse().unwrap();
        (tx, Receiver::new(rx), fd)
    }

    fn packet(total: usize, data: &[u8]) -> Vec<u8> {
        let mut p = header(HEADER_LEN + data.len(), total);
        p.extend_from_slice(data);
        p
    }

    #[test]
    fn a_huge_announcement_with_a_descriptor_attached_is_refused_unread() {
        let (_tx, rx, raw) = raw_channel();
        let (_other_tx, other_rx) = ipc_channel::ipc::channel::<Frame>().unwrap();
        let attached = receiver_fd(&other_rx).unwrap();
        send_raw(raw, &packet(1 << 40, &[0; 8]), Some(attached));
        for _ in 0..2 {
            // Without the check, ipc-channel would reserve 1 TiB here and abort.
            assert!(matches!(
                rx.recv_timeout(Duration::from_secs(5)),
                Err(LinkError::Packet(PacketError::TooBig { total })) if total == 1 << 40
            ));
        }
    }

    #[test]
    fn a_packet_shorter_than_its_header_says_is_refused_without_waiting_for_more() {
        let (_tx, rx, raw) = raw_channel();
        let mut p = packet(100, &[0; 8]);
        p[..std::mem::size_of::<usize>()].copy_from_slice(&200usize.to_ne_bytes());
        send_raw(raw, &p, None);
        // Without the check, ipc-channel would block here for the missing bytes.
        assert!(matches!(
            rx.recv(),
            Err(LinkError::Packet(PacketError::Length {
                announced: 200,
                ..
            }))
        ));
    }

    #[test]
    fn an_empty_packet_is_refused_and_end_of_stream_is_closed() {
        let (tx, rx, raw) = raw_channel();
        assert!(matches!(
            rx.recv_timeout(Duration::from_millis(1)),
            Err(LinkError::Timeout)
        ));
        send_raw(raw, &[], None);
        assert!(matches!(
            rx.recv(),
            Err(LinkError::Packet(PacketError::Empty))
        ));
        let (tx2, rx2, _) = raw_channel();
        drop(tx2);
        assert!(matches!(rx2.recv(), Err(LinkError::Closed)));
        drop(tx);
    }

    #[test]
    fn a_packet_seen_by_a_poll_is_still_checked_and_read_once() {
        let (tx, rx, raw) = raw_channel();
        assert!(!rx.frame_waiting());
        // A good frame: found, checked by the poll, then read without a second look.
        send_frame(&tx, Frame::new(&7u64, Vec::new()).unwrap()).unwrap();
        assert!(rx.frame_waiting());
        assert!(rx.frame_waiting());
        let frame = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(frame.decode::<u64>().unwrap(), 7);
        assert!(!rx.frame_waiting());
        assert!(matches!(
            rx.recv_timeout(Duration::from_millis(1)),
            Err(LinkError::Timeout)
        ));
        // A lying header: the poll reports it, and the receive still refuses it.
        send_raw(raw, &packet(1 << 40, &[0; 8]), None);
        assert!(rx.frame_waiting());
        assert!(matches!(
            rx.recv(),
            Err(LinkError::Packet(PacketError::TooBig { .. }))
        ));
    }

    #[test]
    fn good_frames_pass_the_check() {
        let (tx, rx, _) = raw_channel();
        for size in [0usize, 1000, INLINE_LIMIT, 4 * INLINE_LIMIT] {
            let msg = vec![7u8; size];
            send_frame(&tx, Frame::new(&msg, Vec::new()).unwrap()).unwrap();
            let frame = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(frame.decode::<Vec<u8>>().unwrap(), msg);
        }
    }

    /// What the check costs per message: `cargo test -p supervisor-worker --release --lib
    /// protocol::link::tests::cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a test"]
    fn cost_of_the_check_per_message() {
        let (tx, rx, _) = raw_channel();
        let (raw_tx, raw_rx) = ipc_channel::ipc::channel::<Frame>().unwrap();
        let frame = || Frame::new(&5u64, Vec::new()).unwrap();
        let n = 20_000u32;
        let (mut raw, mut checked, mut timed) = (Duration::MAX, Duration::MAX, Duration::MAX);
        for _ in 0..7 {
            let t = Instant::now();
            for _ in 0..n {
                send_frame(&raw_tx, frame()).unwrap();
                raw_rx.recv().unwrap();
            }
            raw = raw.min(t.elapsed());
            let t = Instant::now();
            for _ in 0..n {
                send_frame(&tx, frame()).unwrap();
                rx.recv().unwrap();
            }
            checked = checked.min(t.elapsed());
            let t = Instant::now();
            for _ in 0..n {
                send_frame(&tx, frame()).unwrap();
                rx.recv_timeout(Duration::from_secs(1)).unwrap();
            }
            timed = timed.min(t.elapsed());
        }
        println!(
            "send + receive of a small frame (best of 7 x {n}): ipc-channel alone {:?}, \
             checked recv {:?}, checked recv_timeout {:?}",
            raw / n,
            checked / n,
            timed / n
        );
    }
}
