//! The typed payloads of three errors: why a pool broke ([`BrokenReason`]) and what
//! that did to each call ([`BrokenCall`]), how a peer broke the protocol
//! ([`Violation`]), and which resource ran out ([`ResourceLimit`]).

use std::sync::Arc;
use std::time::Duration;

use supervisor_worker::setup::SetupStep;

use super::Error;
use crate::exit::ExitStatus;

/// A resource whose limit stopped a process or a thread from starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceLimit {
    /// The process (or thread) limit: `ulimit -u`, or a cgroup's `pids.max`.
    Processes,
    /// Open file descriptors: `ulimit -n`.
    Descriptors,
    /// Memory.
    Memory,
}

impl ResourceLimit {
    /// The resource behind `e` (or any of its causes), if running out of one caused it.
    pub fn of(e: &(dyn std::error::Error + 'static)) -> Option<ResourceLimit> {
        super::resource_limit(e)
    }
}

impl std::fmt::Display for ResourceLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResourceLimit::Processes => {
                "the process limit was reached: raise ulimit -u or pids.max"
            }
            ResourceLimit::Descriptors => "out of file descriptors: raise ulimit -n",
            ResourceLimit::Memory => "out of memory",
        })
    }
}

/// Why a pool broke. Every waiter of a broken pool gets it, in
/// [`ErrorKind::PoolBroken`](super::ErrorKind::PoolBroken) and `PoolStats::broken`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BrokenReason {
    /// Workers kept dying (or failing to start) before finishing anything, past the
    /// restart limit.
    #[error(
        "{deaths} workers died or failed to start within {within:?} without finishing a task (limit {max})"
    )]
    Storm {
        /// Deaths counted in the window.
        deaths: usize,
        /// The restart limit.
        max: u32,
        /// Its window.
        within: Duration,
        /// The last of them.
        #[source]
        last: StormDeath,
    },
    /// Workers cannot be started, and retrying would not help (a nice value not
    /// permitted, a start method unavailable, a task registry problem).
    #[error("cannot start a worker")]
    CannotStart(#[source] Arc<Error>),
    /// A worker could not set itself up (its nice value, parent-death signal, ...).
    #[error("worker {pid} could not set itself up ({step:?}, errno {errno})")]
    Setup {
        /// The worker's pid.
        pid: u32,
        /// The step that failed.
        step: SetupStep,
        /// The error number.
        errno: i32,
    },
    /// The initializer returned an error.
    #[error("the initializer failed: task `{task}` returned an error in process {pid}: {message}")]
    InitializerReturned {
        /// The initializer's task name.
        task: String,
        /// The worker's pid.
        pid: u32,
        /// The error's message.
        message: String,
    },
    /// The initializer panicked, crashed or exited.
    #[error("the initializer failed")]
    Initializer(#[source] Arc<Error>),
    /// The halt condition given to
    /// [`Pool::cancel_pending_when`](crate::Pool::cancel_pending_when) panicked: the
    /// pool cannot tell whether to go on, so it stops.
    #[error("the halt condition (`cancel_pending_when`) panicked: {message}")]
    HaltConditionPanicked {
        /// The panic's message.
        message: String,
    },
    /// A bug: a panic inside the pool's own code (or a dependency's).
    #[error("a panic inside the pool: {message}")]
    Panic {
        /// The panic's message.
        message: String,
    },
}

/// What breaking the pool did to one call: the `call` of
/// [`ErrorKind::PoolBroken`](super::ErrorKind::PoolBroken). The CLI records the first
/// as `cancelled` (not started), the second as `stopped`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokenCall {
    /// It had not started (or came after the pool broke): it never ran.
    NotStarted,
    /// It was running: its worker was stopped with the pool (SIGTERM, SIGKILL after
    /// the grace period). It started, so it may have had effects.
    Stopped {
        /// The task's name.
        task: String,
        /// The worker's pid.
        pid: u32,
    },
}

impl BrokenCall {
    /// The words [`ErrorKind::PoolBroken`](super::ErrorKind::PoolBroken)'s message
    /// starts with.
    pub(super) fn says(&self) -> String {
        match self {
            BrokenCall::NotStarted => "the pool is broken".to_string(),
            BrokenCall::Stopped { task, pid } => {
                format!("task `{task}` was stopped in process {pid}: the pool is broken")
            }
        }
    }
}

/// One death of a restart storm.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StormDeath {
    /// A worker ended before finishing anything.
    #[error("worker {pid} ended with {status}")]
    Ended {
        /// Its pid.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
    },
    /// A worker could not be started (`limit`: the resource that ran out, if known).
    #[error("cannot start a worker{}", hint(.limit))]
    CannotStart {
        /// The resource that ran out, if that was the cause.
        limit: Option<ResourceLimit>,
        /// The error.
        #[source]
        cause: Arc<Error>,
    },
    /// No thread could be started to start a worker.
    #[error("cannot start a thread to start workers{}", hint(.limit))]
    NoThread {
        /// The resource that ran out, if that was the cause.
        limit: Option<ResourceLimit>,
        /// The error.
        #[source]
        cause: Arc<std::io::Error>,
    },
}

fn hint(limit: &Option<ResourceLimit>) -> String {
    limit.map_or_else(String::new, |l| format!(" ({l})"))
}

/// How a peer broke the protocol.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// A frame whose bytes are not a frame.
    #[error("a malformed frame")]
    Malformed,
    /// A message that did not decode.
    #[error("a message that cannot be read")]
    Unreadable(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The link failed in a way that is not the peer closing it.
    #[error("the link failed")]
    Link(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// A message of a kind not allowed at this point.
    #[error("an unexpected message ({got})")]
    Unexpected {
        /// What came.
        got: &'static str,
    },
    /// A result for a task other than the one running.
    #[error("result {seq} does not match the task it runs")]
    WrongTask {
        /// The id the result carried.
        seq: u64,
    },
    /// A result for calls of the running unit that are not the next to answer.
    #[error("result {seq} (calls {from}..{to}) does not match the running task {running} (calls {answered}..{limit})")]
    Misplaced {
        /// The id the result carried.
        seq: u64,
        /// Its first call.
        from: u64,
        /// Past its last call.
        to: u64,
        /// The running unit's id.
        running: u64,
        /// Its calls answered so far.
        answered: u32,
        /// Its calls in all.
        limit: u32,
    },
    /// A batch's timings that do not match its outcomes one to one.
    #[error("a batch's timings do not match its outcomes")]
    Timings,
    /// A chunk's values that do not add up to its data.
    #[error("a chunk's values add up to {total} bytes, {data} were sent")]
    ChunkLength {
        /// What the lengths add up to.
        total: u64,
        /// What came.
        data: u64,
    },
    /// A chunk's failed call listed out of order, twice, or where a value is.
    #[error("a chunk's outcome {position} is out of place")]
    ChunkOrder {
        /// Its position.
        position: u32,
    },
    /// A chunk's plain value listed as a failure.
    #[error("a chunk's plain value {position} is listed as a failure")]
    ChunkPlain {
        /// Its position.
        position: u32,
    },
    /// A chunk's result beyond its data.
    #[error("result {position} of a chunk lies beyond its data")]
    ChunkBeyond {
        /// Its position.
        position: usize,
    },
    /// The worker's channel closed while the process kept running.
    #[error("its channel closed while it kept running")]
    AliveWithoutChannel,
}
