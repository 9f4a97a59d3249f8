//! The wire protocol between a parent and its workers.
//!
//! ipc-channel moves [`Frame`]s: codec bytes, an optional shared-memory region for big
//! messages, and channel handles. What a frame means is one of the message enums below,
//! encoded by [`crate::codec`]; ipc-channel never sees our types, so every decode of
//! peer data goes through the bounded codec.
//!
//! A spawned worker opens with a fixed-layout [`Hello`] that is checked byte for byte
//! (secret first) before anything else the peer sent is decoded.

use ipc_channel::ipc::{IpcReceiver, IpcSender, IpcSharedMemory};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::cell::Cell;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::codec::{self, CodecError};
use crate::packet::{self, PacketError};
use crate::setup::ChildSetup;

/// Bumped whenever a message below changes shape.
pub const PROTOCOL_VERSION: u32 = 3;

/// Environment variable that marks a re-executed child as a worker; it holds the path
/// of the bootstrap socket. It is removed from the environment as soon as it is read.
pub const ENV_BOOTSTRAP: &str = "__SUPERVISOR_BOOTSTRAP";
/// Environment variable with the per-spawn secret (hex); removed as soon as it is read.
pub const ENV_SECRET: &str = "__SUPERVISOR_SECRET";

/// Messages whose encoding is larger than this travel in shared memory, so that no
/// socket send is ever fragmented (a fragmented send to a dying peer can hang).
pub const INLINE_LIMIT: usize = 64 * 1024;

/// Exit code of a child that was started as a worker but could not become one
/// (bad bootstrap, failed set-up). It ran no task.
pub const EXIT_BOOTSTRAP_FAILED: i32 = 70;

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
        packet::await_packet(self.fd, timeout)
    }

    /// Receives a frame.
    pub fn recv(&self) -> Result<Frame, LinkError> {
        self.await_packet(None)?;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.rx.recv()))
            .map_err(|_| LinkError::Malformed)?
            .map_err(map_ipc_error)
    }

    /// [`Receiver::recv`] with a time limit.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Frame, LinkError> {
        self.await_packet(Some(timeout))?;
        // A checked packet (or the end of the stream) is waiting: this does not wait.
        let received = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.rx.try_recv_timeout(Duration::ZERO)
        }))
        .map_err(|_| LinkError::Malformed)?;
        match received {
            Ok(frame) => Ok(frame),
            Err(ipc_channel::TryRecvError::Empty) => Err(LinkError::Timeout),
            Err(ipc_channel::TryRecvError::IpcError(e)) => Err(map_ipc_error(e)),
        }
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
        ipc_channel::IpcError::Io(io) => LinkError::Io(io),
        ipc_channel::IpcError::SerializationError(s) => {
            LinkError::Io(std::io::Error::other(s.to_string()))
        }
    }
}

/// What a child is asked to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Runs tasks sent to it.
    Worker,
    /// Forks workers on request (the forkserver).
    Server,
}

/// Settings a child learns from its first message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerConfig {
    /// Worker or server.
    pub role: Role,
    /// The process name given by the user (for messages).
    pub name: String,
    /// Daemon processes may not start processes of their own.
    pub daemon: bool,
    /// `Some(names)`: the worker keeps only these environment variables.
    pub env_allowlist: Option<Vec<String>>,
    /// `Some(grace)`: when a task returns, what it started and left running is ended
    /// (SIGTERM, `grace`, SIGKILL) before the next task or the worker's exit. `None`:
    /// a task may leave processes behind.
    pub end_task_children: Option<std::time::Duration>,
}

/// One task to run.
#[derive(Debug, Serialize, Deserialize)]
pub struct TaskRequest {
    /// Chosen by the parent; echoed in the answer.
    pub id: u64,
    /// The registered name of the task.
    pub task: String,
    /// The argument, encoded by the codec.
    #[serde(with = "serde_bytes")]
    pub arg: Vec<u8>,
}

/// Messages from a parent to a child.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToChild {
    /// Always the first message: what to be.
    Config(WorkerConfig),
    /// Run a task and answer with [`FromChild::Done`].
    Task(TaskRequest),
    /// Run the same task on each argument, in order, and answer once with
    /// [`FromChild::BatchDone`].
    Batch {
        /// Id of the first item; item `i` has id `first_id + i`.
        first_id: u64,
        /// The registered name of the task.
        task: String,
        /// The encoded arguments.
        args: Vec<ByteBuf>,
    },
    /// (Server only) fork a worker; the frame carries its receiver and sender.
    Fork {
        /// Set-up the new worker applies before anything else.
        setup: ChildSetup,
    },
    /// (Server only) reap an exited worker and report its status.
    Reap {
        /// The worker's pid.
        pid: i32,
    },
    /// A chunk of a `map`: run the task on each argument, in order, and answer once
    /// with [`FromChild::PackedDone`]. The arguments lie back to back in `data`,
    /// argument `i` being `lens[i]` bytes long: one buffer for the whole chunk.
    Packed {
        /// Id of the first item; item `i` has id `first_id + i`.
        first_id: u64,
        /// The registered name of the task.
        task: String,
        /// Length of each encoded argument.
        lens: Vec<u32>,
        /// The encoded arguments, back to back.
        data: ByteBuf,
    },
    /// (Pool workers) the frame carries the worker's progress page: claim each call
    /// there before running it (see [`crate::progress`]). No answer.
    Progress,
}

/// The borrowing twin of [`ToChild::Task`] and [`ToChild::Batch`]: it encodes to the
/// same bytes without copying the arguments (a test pins the equivalence).
#[derive(Debug, Serialize)]
pub enum ToChildRef<'a> {
    /// Never sent; keeps the variant numbers equal to [`ToChild`]'s.
    Config(()),
    /// See [`ToChild::Task`].
    Task(TaskRequestRef<'a>),
    /// See [`ToChild::Batch`].
    Batch {
        /// Id of the first item.
        first_id: u64,
        /// The registered name of the task.
        task: &'a str,
        /// The encoded arguments.
        args: Vec<&'a serde_bytes::Bytes>,
    },
    /// Never sent; keeps the variant numbers equal to [`ToChild`]'s.
    Fork(()),
    /// Never sent; keeps the variant numbers equal to [`ToChild`]'s.
    Reap(()),
    /// See [`ToChild::Packed`].
    Packed {
        /// Id of the first item.
        first_id: u64,
        /// The registered name of the task.
        task: &'a str,
        /// Length of each encoded argument.
        lens: &'a [u32],
        /// The encoded arguments, back to back.
        data: &'a serde_bytes::Bytes,
    },
    /// Never sent; keeps the variant numbers equal to [`ToChild`]'s.
    Progress(()),
}

/// The borrowing twin of [`TaskRequest`].
#[derive(Debug, Serialize)]
pub struct TaskRequestRef<'a> {
    /// Chosen by the parent; echoed in the answer.
    pub id: u64,
    /// The registered name of the task.
    pub task: &'a str,
    /// The argument, encoded by the codec.
    #[serde(with = "serde_bytes")]
    pub arg: &'a [u8],
}

/// How a task ended, from the worker's point of view.
#[derive(Debug, Serialize, Deserialize)]
pub enum TaskOutcome {
    /// The task returned. `error` holds the message when it returned `Err`, for
    /// accounting; `value` is the whole encoded return value either way.
    Returned {
        /// The encoded return value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// `Some(message)` when the task returned `Err(e)` (the message is `e`'s Display).
        error: Option<String>,
    },
    /// The task panicked.
    Panicked {
        /// The panic payload, when it was a string.
        message: String,
        /// `file:line:column` of the panic.
        location: Option<String>,
        /// A backtrace, when `RUST_BACKTRACE` enabled one.
        backtrace: Option<String>,
    },
    /// The worker has no task by that name.
    UnknownTask {
        /// The name that was asked for.
        name: String,
    },
    /// The argument bytes did not decode as the task's argument type.
    BadArgument {
        /// The decoder's message.
        message: String,
    },
    /// The return value could not be encoded.
    BadResult {
        /// The encoder's message.
        message: String,
    },
}

/// Messages from a child to its parent.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromChild {
    /// (Spawned children) sent right after the hello; the frame carries the sender
    /// the parent must use from now on.
    Handoff,
    /// A forked worker could not set itself up and is exiting.
    SetupFailed(crate::setup::SetupError),
    /// A task finished.
    Done {
        /// The task id from the request.
        id: u64,
        /// What happened.
        outcome: TaskOutcome,
        /// When it ran.
        timing: Timing,
    },
    /// Calls `from..from + outcomes.len()` of a batch finished: one outcome per call,
    /// in order. A batch may be answered in several parts (the calls that finished
    /// while a later one runs long are sent on their own), and ends early when the
    /// parent took its unstarted calls back.
    BatchDone {
        /// Id of the batch (its first item).
        first_id: u64,
        /// Position of the first call answered here.
        from: u32,
        /// The outcomes.
        outcomes: Vec<TaskOutcome>,
        /// When each ran.
        timings: Vec<Timing>,
    },
    /// (Server) a worker was forked.
    Forked {
        /// Its pid.
        pid: i32,
    },
    /// (Server) fork failed.
    ForkFailed {
        /// The errno of the failed fork.
        errno: i32,
    },
    /// (Server) a worker was reaped.
    Reaped {
        /// The pid that was asked for.
        pid: i32,
        /// The raw wait status, or `None` when the pid was not a child of the server.
        status: Option<i32>,
        /// Peak resident memory of the worker, in KiB.
        maxrss_kib: u64,
        /// CPU time (user + system) of the worker, in microseconds.
        cpu_micros: u64,
    },
    /// A [`ToChild::Packed`] chunk finished. Item `i` returned plainly (`Ok`) unless
    /// it is listed in `others`; the values of those that did lie back to back in
    /// `data`, item `i`'s being `lens[i]` bytes long (0 for the items in `others`).
    PackedDone {
        /// Id of the chunk (its first item).
        first_id: u64,
        /// Position of the first item answered here (a chunk may be answered in
        /// parts, as a batch is); `others` positions count from it.
        from: u32,
        /// Length of each encoded value.
        lens: Vec<u32>,
        /// The encoded values, back to back.
        data: ByteBuf,
        /// Every other outcome (an `Err` returned, a panic, a bad argument...), by
        /// item position.
        others: Vec<(u32, TaskOutcome)>,
    },
}

/// When one call ran, by the worker's `CLOCK_MONOTONIC` (the same clock in every
/// process of the machine).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// Nanoseconds at its start.
    pub start_ns: u64,
    /// How long it ran, in nanoseconds.
    pub duration_ns: u64,
}

/// The fixed-layout first message of a spawned child. Checked byte for byte, secret
/// first, before anything else the peer sent is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version of the child.
    pub version: u32,
    /// Build id of the child's binary.
    pub build_id: u64,
    /// The child's pid, as it sees itself.
    pub pid: u32,
    /// The per-spawn secret it was given.
    pub secret: [u8; SECRET_LEN],
}

/// Length of the per-spawn secret.
pub const SECRET_LEN: usize = 32;
const HELLO_MAGIC: &[u8; 8] = b"SUPVSR\x00\x01";
/// Length of an encoded [`Hello`].
pub const HELLO_LEN: usize = 8 + 4 + 8 + 4 + SECRET_LEN;

impl Hello {
    /// The fixed 56-byte layout.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HELLO_LEN);
        out.extend_from_slice(HELLO_MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.build_id.to_le_bytes());
        out.extend_from_slice(&self.pid.to_le_bytes());
        out.extend_from_slice(&self.secret);
        out
    }

    /// Checks `bytes` against `secret` first (in constant time), then parses the rest.
    pub fn verify(bytes: &[u8], secret: &[u8; SECRET_LEN]) -> Result<Hello, HelloError> {
        if bytes.len() != HELLO_LEN {
            return Err(HelloError::Length(bytes.len()));
        }
        let theirs = &bytes[HELLO_LEN - SECRET_LEN..];
        let diff = theirs
            .iter()
            .zip(secret.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(HelloError::Secret);
        }
        if &bytes[..8] != HELLO_MAGIC {
            return Err(HelloError::Magic);
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let mut build = [0u8; 8];
        build.copy_from_slice(&bytes[12..20]);
        Ok(Hello {
            version: u32_at(8),
            build_id: u64::from_le_bytes(build),
            pid: u32_at(20),
            secret: *secret,
        })
    }
}

/// A hello that was not what we expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// Wrong size.
    #[error("hello has {0} bytes, expected {HELLO_LEN}")]
    Length(usize),
    /// The secret did not match.
    #[error("wrong secret")]
    Secret,
    /// The secret matched but the magic did not.
    #[error("bad magic")]
    Magic,
}

/// Identifies this binary: parent and worker must agree.
///
/// It combines the protocol version, the crate version and the identity of the
/// executable file (device, inode, size, modification time), so a worker started from
/// a different build of the program is refused.
pub fn build_id() -> u64 {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    static ID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ID.get_or_init(|| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        PROTOCOL_VERSION.hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        if let Ok(m) = std::fs::metadata("/proc/self/exe") {
            (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()).hash(&mut h);
        }
        h.finish()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_and_checks_secret_first() {
        let secret = [7u8; SECRET_LEN];
        let hello = Hello {
            version: PROTOCOL_VERSION,
            build_id: 42,
            pid: 1234,
            secret,
        };
        let bytes = hello.to_bytes();
        assert_eq!(bytes.len(), HELLO_LEN);
        assert_eq!(Hello::verify(&bytes, &secret), Ok(hello));
        assert_eq!(
            Hello::verify(&bytes, &[8u8; SECRET_LEN]),
            Err(HelloError::Secret)
        );
        let mut bad_magic = bytes.clone();
        bad_magic[0] ^= 1;
        assert_eq!(Hello::verify(&bad_magic, &secret), Err(HelloError::Magic));
        assert_eq!(
            Hello::verify(&bytes[1..], &secret),
            Err(HelloError::Length(HELLO_LEN - 1))
        );
    }

    #[test]
    fn borrowed_task_messages_encode_like_owned_ones() {
        let arg = vec![1u8, 2, 3];
        let owned = ToChild::Task(TaskRequest {
            id: 9,
            task: "t".into(),
            arg: arg.clone(),
        });
        let borrowed = ToChildRef::Task(TaskRequestRef {
            id: 9,
            task: "t",
            arg: &arg,
        });
        assert_eq!(
            codec::encode(&owned).unwrap(),
            codec::encode(&borrowed).unwrap()
        );
        let args = [vec![4u8], vec![5, 6]];
        let owned = ToChild::Batch {
            first_id: 3,
            task: "t".into(),
            args: args.iter().map(|a| ByteBuf::from(a.clone())).collect(),
        };
        let borrowed = ToChildRef::Batch {
            first_id: 3,
            task: "t",
            args: args.iter().map(|a| serde_bytes::Bytes::new(a)).collect(),
        };
        assert_eq!(
            codec::encode(&owned).unwrap(),
            codec::encode(&borrowed).unwrap()
        );
        let (lens, data) = (vec![1u32, 2], vec![4u8, 5, 6]);
        let owned = ToChild::Packed {
            first_id: 5,
            task: "t".into(),
            lens: lens.clone(),
            data: ByteBuf::from(data.clone()),
        };
        let borrowed = ToChildRef::Packed {
            first_id: 5,
            task: "t",
            lens: &lens,
            data: serde_bytes::Bytes::new(&data),
        };
        assert_eq!(
            codec::encode(&owned).unwrap(),
            codec::encode(&borrowed).unwrap()
        );
    }

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
