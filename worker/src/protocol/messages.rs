//! What parent and child say to each other.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::setup::ChildSetup;

/// The id of a pool worker's initializer call: it is not judged against
/// [`WorkerConfig::memory_limit`] (an initializer's memory is not a task's).
pub const INIT_ID: u64 = 0;

/// Bumped whenever a message below changes shape.
pub const PROTOCOL_VERSION: u32 = 4;
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
    /// `Some(bytes)`: a pool worker whose resident memory is above this after a call
    /// claims no more calls of its unit and gives the rest back on its progress page
    /// (the parent then replaces it: `max_memory_per_child`).
    pub retire_above: Option<u64>,
    /// `Some(bytes)`: a call during which this process (or a descendant it reaped)
    /// held more resident memory than this, however briefly, answers
    /// [`TaskOutcome::MemoryExceeded`] in place of what it returned, and the worker
    /// runs no more calls (its memory's high-water mark stays over).
    pub memory_limit: Option<u64>,
    /// A pool worker's seat (0-based): a replacement takes its predecessor's, and two
    /// live workers of a pool never share one. `None` outside a pool.
    pub seat: Option<u32>,
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
        /// What the worker leaves when it dies (its orphans, which the server adopts as
        /// their subreaper) is killed when it is reaped; false for a worker whose tasks
        /// may leave a daemon behind (the server then spares every orphan for good).
        end_orphans: bool,
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
        /// Answer with each call's own [`Timing`] (`imap_reports`, whose reports show
        /// them; a `map` shows none and saves the clock readings).
        timed: bool,
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
        /// See [`ToChild::Packed`].
        timed: bool,
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
    /// The call took the worker (or a descendant it reaped) over
    /// [`WorkerConfig::memory_limit`]: what it returned is dropped.
    MemoryExceeded {
        /// The limit, in bytes.
        limit: u64,
        /// The high-water mark after the call, in KiB.
        peak_rss_kib: u64,
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
        /// Each item's own timing, by position (empty unless the chunk was `timed`).
        timings: Vec<Timing>,
    },
}

impl FromChild {
    /// The message's kind, for error messages (never its contents: they can be large).
    pub fn kind(&self) -> &'static str {
        match self {
            FromChild::Handoff => "handoff",
            FromChild::SetupFailed(_) => "setup failure",
            FromChild::Done { .. } => "result",
            FromChild::BatchDone { .. } => "batch result",
            FromChild::Forked { .. } => "forked",
            FromChild::ForkFailed { .. } => "fork failure",
            FromChild::Reaped { .. } => "reaped",
            FromChild::PackedDone { .. } => "chunk result",
        }
    }
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

impl Timing {
    /// Bytes [`Timing::append_to`] adds.
    pub const TRAILER: usize = 16;

    /// Appends itself as a fixed trailer (a timed chunk's value in the answer log
    /// carries its call's timing so, without an allocation per call).
    pub fn append_to(&self, bytes: &mut Vec<u8>) {
        bytes.extend_from_slice(&self.start_ns.to_le_bytes());
        bytes.extend_from_slice(&self.duration_ns.to_le_bytes());
    }

    /// Splits what [`Timing::append_to`] appended off `bytes`: the bytes before it and
    /// the timing; `None` if `bytes` is too short to hold one.
    pub fn split_from(bytes: &[u8]) -> Option<(&[u8], Timing)> {
        let at = bytes.len().checked_sub(Self::TRAILER)?;
        let (value, trailer) = bytes.split_at(at);
        let (start, duration) = trailer.split_at(8);
        Some((
            value,
            Timing {
                start_ns: u64::from_le_bytes(start.try_into().ok()?),
                duration_ns: u64::from_le_bytes(duration.try_into().ok()?),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    /// A timing appended to a value is split off whole; bytes too short for one are
    /// refused, never read past.
    #[test]
    fn a_timing_trailer_splits_off_its_value() {
        let t = Timing {
            start_ns: u64::MAX - 3,
            duration_ns: 17,
        };
        let mut bytes = vec![1, 2, 3];
        t.append_to(&mut bytes);
        assert_eq!(Timing::split_from(&bytes), Some((&[1u8, 2, 3][..], t)));
        assert_eq!(Timing::split_from(&bytes[3..]), Some((&[][..], t)));
        assert_eq!(Timing::split_from(&bytes[4..]), None);
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
            timed: true,
        };
        let borrowed = ToChildRef::Packed {
            first_id: 5,
            task: "t",
            lens: &lens,
            data: serde_bytes::Bytes::new(&data),
            timed: true,
        };
        assert_eq!(
            codec::encode(&owned).unwrap(),
            codec::encode(&borrowed).unwrap()
        );
    }
}
