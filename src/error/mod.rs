//! The one error catalogue of the library: [`ErrorKind`], behind the one-pointer
//! [`Error`].
//!
//! Messages are lowercase fragments; an underlying error is in `source()`, never
//! repeated in the message. Every error about a process names its pid.

use std::io;

use supervisor_worker::codec::CodecError;
use supervisor_worker::registry::RegistryError;
use supervisor_worker::setup::SetupStep;

use crate::exit::Signal;

mod bootstrap;
mod boxed;
mod command;
mod facts;
mod reasons;
mod words;

pub use bootstrap::BootstrapFailure;
pub use boxed::Error;
pub use command::{CommandError, OsError};
pub use reasons::{BrokenCall, BrokenReason, ResourceLimit, StormDeath, Violation};

pub(crate) use facts::{known_word, resource_limit};
use words::{at, kib, wire_mismatch};

/// Everything that can go wrong when starting, running or joining a process.
///
/// A task's failure is data: match on the kind to tell what happened and where.
///
/// ```
/// use supervisor::{ErrorKind, Pool};
///
/// fn check(x: i64) -> i64 {
///     match x {
///         0 => panic!("zero is not allowed"),
///         1 => std::process::abort(),
///         _ => x,
///     }
/// }
/// supervisor::task!(check);
///
/// fn main() -> Result<(), supervisor::Error> {
///     supervisor::init();
///     let pool = Pool::new(2)?;
///     for result in pool.map(check, [0, 1, 2]) {
///         match result {
///             Ok(x) => assert_eq!(x, 2),
///             Err(e) => match e.kind() {
///                 ErrorKind::Panicked { message, pid, .. } => {
///                     assert_eq!(message, "zero is not allowed");
///                     assert_eq!(e.pid(), Some(*pid));
///                 }
///                 ErrorKind::Crashed { signal, .. } => assert_eq!(signal.to_string(), "SIGABRT"),
///                 other => panic!("unexpected: {other}"),
///             },
///         }
///     }
///     pool.join();
///     Ok(())
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A task failed on an agent of a cluster run (see `supervisor::cluster`): the
    /// agent's own error, as its pool saw it, with the host it ran on.
    #[error("{message} (on host {host})")]
    Remote {
        /// The host of the agent.
        host: String,
        /// The pid of the worker on that host (0 if none ran the task).
        pid: u32,
        /// The kind of the agent's error, as the CLI names kinds (`crashed`, `timed_out`...).
        kind: String,
        /// The agent's error with its causes.
        message: String,
        /// The signal that ended the worker, if one did.
        signal: Option<i32>,
        /// The worker's exit code, if it exited.
        exit_code: Option<i32>,
        /// The worker's peak memory, where the agent's error recorded it.
        peak_rss_kib: Option<u64>,
    },
    /// A cluster task failed on every delivery the run allowed (its delivery limit,
    /// `--retries` + 1): its worker died, it timed out or (command mode) it failed.
    #[error("task `{task}` failed on every one of its {deliveries} deliveries: {reason} (hosts: {})", hosts.join(", "))]
    DeliveryLimit {
        /// The task's name.
        task: String,
        /// How many times the server delivered it.
        deliveries: u32,
        /// The hosts it ran on, one per delivery seen.
        hosts: Vec<String>,
        /// What ended the last run (`its worker was killed by SIGSEGV`...).
        reason: String,
        /// The signal that ended the last run, if one did.
        signal: Option<Signal>,
        /// The last run's exit code, if its worker exited.
        exit_code: Option<i32>,
        /// The last run's kind ([`ErrorKind::word`] of its error: `crashed`,
        /// `timed_out`...; `lost` when no agent finished any delivery).
        kind: &'static str,
    },
    /// The NATS server refused to store a task or a result (its stream or its store
    /// is full, a limit of the account...): the task fails at once instead of running
    /// again and again.
    #[error("the NATS server refused to store {what}: {reason}")]
    ServerRefused {
        /// What it refused (`task 3` or `task 3's result`, the stream).
        what: String,
        /// The server's words (`insufficient resources`, `maximum bytes exceeded`...).
        reason: String,
    },
    /// The NATS server could not be reached for longer than the run allows
    /// (`RemoteOptions::server_timeout`, `run --nats-timeout`): the run gave up.
    #[error("the NATS server at {url} has been unreachable for {}s", waited.as_secs())]
    ServerLost {
        /// The server (without credentials).
        url: String,
        /// How long it had been unreachable.
        waited: std::time::Duration,
    },
    /// A cluster run met a program of another version: an agent that cannot read
    /// the run's tasks, or results this program cannot read. Every host must run the
    /// same version of supervisor.
    #[error("{}", wire_mismatch(host.as_deref(), *theirs, *ours))]
    WireMismatch {
        /// The other program's host, where it said.
        host: Option<String>,
        /// Its wire version (`None`: a build from before wire versions).
        theirs: Option<u32>,
        /// This program's wire version.
        ours: u32,
    },
    /// A cluster agent started without `--allow-commands` was sent a command.
    #[error(
        "the agent on host {host} refuses command-mode tasks (start it with --allow-commands)"
    )]
    CommandsRefused {
        /// The agent's host.
        host: String,
    },
    /// A cluster agent refused a task that reaches outside pure computation on its
    /// host (reads or writes its files, starts a program) without the flag that
    /// allows it.
    #[error("the agent on host {host} refuses task `{task}`: {reason}")]
    TaskRefused {
        /// The agent's host.
        host: String,
        /// The task's name.
        task: String,
        /// What the task would do, and the agent's flag that allows it.
        reason: String,
    },
    /// Talking to the NATS server failed (connecting, creating the run's stream or
    /// consumer, publishing).
    #[error("{what}")]
    Cluster {
        /// What was being done, e.g. `cannot connect to the NATS server at nats://...`.
        what: String,
        /// The client's error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The task panicked.
    #[error("task `{task}` panicked in process {pid}{}: {message}", at(location))]
    Panicked {
        /// The task's name.
        task: String,
        /// The worker's pid.
        pid: u32,
        /// The panic message.
        message: String,
        /// `file:line:column` of the panic.
        location: Option<String>,
        /// A backtrace, when `RUST_BACKTRACE` enabled one.
        backtrace: Option<String>,
    },
    /// A signal ended the process before the task returned.
    #[error("process {pid} running task `{task}` was killed by {signal}{} (peak RSS {})", if *core_dumped { " (core dumped)" } else { "" }, kib(*peak_rss_kib))]
    Crashed {
        /// The task's name.
        task: String,
        /// The worker's pid.
        pid: u32,
        /// The signal.
        signal: Signal,
        /// Whether a core was dumped.
        core_dumped: bool,
        /// Peak resident memory of the process, in KiB.
        peak_rss_kib: u64,
    },
    /// The process exited (with any code, 0 included) before the task returned.
    #[error("process {pid} exited with code {code} before task `{task}` returned (peak RSS {})", kib(*peak_rss_kib))]
    Exited {
        /// The task's name.
        task: String,
        /// The worker's pid.
        pid: u32,
        /// The exit code.
        code: i32,
        /// Peak resident memory of the process, in KiB.
        peak_rss_kib: u64,
    },
    /// The process's channel closed without a result and its exit status is unknown.
    #[error("process {pid} running task `{task}` was lost: no result and no exit status")]
    Lost {
        /// The task's name.
        task: String,
        /// The worker's pid.
        pid: u32,
    },
    /// The task finished, but its worker died (or was stopped because a later call in
    /// the same batch ran past its time limit) before the result reached the parent.
    /// It ran, so it is never run again.
    #[error(
        "task `{task}` finished in process {pid}, but its result was lost when the process ended"
    )]
    ResultLost {
        /// The task's name.
        task: String,
        /// The worker's pid.
        pid: u32,
    },
    /// The task was running when the pool was terminated (or the run stopped): its
    /// worker was stopped. It started, so it may have had effects.
    #[error("task `{task}` was stopped in process {pid}: the pool was terminated while it ran")]
    Stopped {
        /// The task's name.
        task: String,
        /// The worker's pid.
        pid: u32,
    },
    /// A size asked for is beyond what the object can have.
    #[error("a {kind} of {requested} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// What was being made.
        kind: &'static str,
        /// The size asked for, in bytes.
        requested: u64,
        /// The largest allowed.
        limit: u64,
    },
    /// A number of elements asked for is beyond what the object can have.
    #[error(
        "a {kind} of {requested} elements of {size} bytes is over the limit of {limit} elements"
    )]
    TooManyElements {
        /// What was being made.
        kind: &'static str,
        /// The number of elements asked for.
        requested: u64,
        /// The size of one element, in bytes.
        size: usize,
        /// The most elements allowed.
        limit: u64,
    },
    /// The worker has no task by this name (parent and worker disagree).
    #[error("process {pid} has no task named `{task}`")]
    UnknownTask {
        /// The name asked for.
        task: String,
        /// The worker's pid.
        pid: u32,
    },
    /// The function or name was not registered with `task!`.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The argument could not be encoded in the parent.
    #[error("cannot encode the argument of task `{task}`")]
    EncodeArgument {
        /// The task's name.
        task: String,
        /// The codec's error.
        #[source]
        source: CodecError,
    },
    /// The worker could not decode the argument.
    #[error("process {pid} could not decode the argument of task `{task}`: {message}")]
    DecodeArgument {
        /// The task's name.
        task: String,
        /// The worker's pid.
        pid: u32,
        /// The worker's decoder message.
        message: String,
    },
    /// The worker could not encode the task's return value.
    #[error("process {pid} could not encode the result of task `{task}`: {message}")]
    EncodeResult {
        /// The task's name.
        task: String,
        /// The worker's pid.
        pid: u32,
        /// The worker's encoder message.
        message: String,
    },
    /// The result bytes did not decode as the task's return type.
    #[error("cannot decode the result of task `{task}` from process {pid}")]
    DecodeResult {
        /// The task's name.
        task: String,
        /// The worker's pid.
        pid: u32,
        /// The codec's error.
        #[source]
        source: CodecError,
    },
    /// A result that waited for its turn in input order out of memory (in the
    /// iterator's spill file) could not be read back.
    #[error(
        "cannot read back the result of task `{task}` from process {pid}, held for input order"
    )]
    HeldResult {
        /// The task's name.
        task: String,
        /// The worker's pid.
        pid: u32,
        /// Why the spill file could not be read.
        #[source]
        source: io::Error,
    },
    /// The worker said something the protocol does not allow.
    #[error("protocol error with process {pid}")]
    Protocol {
        /// The worker's pid.
        pid: u32,
        /// What was wrong.
        #[source]
        violation: Violation,
    },
    /// The operating system refused to create the process.
    #[error("cannot start a worker process")]
    Spawn(#[source] io::Error),
    /// An ipc channel could not be created or used.
    #[error("cannot set up the channel to a worker process")]
    Channel(#[source] io::Error),
    /// A spawned child did not complete the handshake.
    #[error("process {pid} did not complete its bootstrap: {reason}")]
    Bootstrap {
        /// The child's pid.
        pid: u32,
        /// What went wrong.
        reason: BootstrapFailure,
    },
    /// The child could not set itself up (process group, nice, parent-death signal).
    #[error("process {pid} could not set itself up ({step:?})")]
    Setup {
        /// The child's pid.
        pid: u32,
        /// The failing step.
        step: SetupStep,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// Lowering the nice value needs a privilege this process lacks.
    #[error("cannot lower the nice value from {current} to {requested}: this needs CAP_SYS_NICE or a higher RLIMIT_NICE")]
    NiceNotPermitted {
        /// The value asked for.
        requested: i32,
        /// This process's current value.
        current: i32,
    },
    /// A nice value outside -20..=19.
    #[error("nice value {0} is outside -20..=19")]
    NiceOutOfRange(i32),
    /// A pool of more workers than one machine can run
    /// ([`MAX_WORKERS`](crate::MAX_WORKERS)).
    #[error("a pool of {asked} workers is more than the {limit} a pool can have")]
    TooManyWorkers {
        /// The number asked for.
        asked: usize,
        /// The most a pool can have.
        limit: usize,
    },
    /// The fork start method cannot be used in this process.
    #[error("the fork start method is unavailable: {reason}")]
    ForkUnavailable {
        /// Why.
        reason: String,
    },
    /// `supervisor::init()` was not called first in `main`: in this program (`worker`
    /// is `None`; nothing was started), or in a spawned worker, which re-runs `main`
    /// and reached a `Process` or `Pool` before `init()` (it exits at once instead of
    /// starting processes of its own).
    #[error("{}: call supervisor::init() first in main", match worker {
        None => "supervisor::init() was not called before starting a process".to_string(),
        Some(pid) => format!("worker {pid} reached the program's code without supervisor::init()"),
    })]
    NotInitialised {
        /// The spawned worker that ran into the guard, if it was one.
        worker: Option<u32>,
    },
    /// The forkserver could not be started or has died.
    #[error("the forkserver is unavailable")]
    Forkserver(#[source] Error),
    /// A daemon process tried to start a process.
    #[error("daemon process `{name}` may not start processes of its own")]
    DaemonCannotStart {
        /// The daemon's name.
        name: String,
    },
    /// `join` was called again after the result was taken.
    #[error("process {pid} was already joined and its result taken")]
    AlreadyJoined {
        /// The process's pid.
        pid: u32,
    },
    /// The task ran longer than the pool's `task_timeout`; its worker (and the worker's
    /// process group) was stopped.
    #[error("task `{task}` timed out after {limit:?} in process {pid}")]
    TimedOut {
        /// The task's name.
        task: String,
        /// The worker's pid.
        pid: u32,
        /// The limit.
        limit: std::time::Duration,
    },
    /// The task's worker, with every process it started, went over the memory limit
    /// (`memory_limit`, `--memory-limit`) while the task ran: the worker and its
    /// descendants were killed (SIGKILL; `killed`) and a new worker starts; or the
    /// task went over and back under between two looks (`killed` false: the kernel's
    /// high-water marks say so), ran to its end, and what it returned was dropped; its
    /// worker is replaced. Retried like a timeout (`retries`).
    ///
    /// ```
    /// # use supervisor::{Error, ErrorKind};
    /// fn over_by_kib(e: &Error) -> Option<u64> {
    ///     match e.kind() {
    ///         ErrorKind::MemoryExceeded { limit, peak_rss_kib, .. } => {
    ///             Some(peak_rss_kib.saturating_sub(limit / 1024))
    ///         }
    ///         _ => None,
    ///     }
    /// }
    /// ```
    #[error("task `{task}` in process {pid} went over the memory limit of {} (peak RSS {})", kib(*limit / 1024), kib(*peak_rss_kib))]
    MemoryExceeded {
        /// The task's name.
        task: String,
        /// The worker's pid.
        pid: u32,
        /// The limit, in bytes.
        limit: u64,
        /// The largest resident memory seen of the worker with its descendants, in KiB
        /// (for a spike, `killed` false: the high-water mark of the one process that
        /// went over).
        peak_rss_kib: u64,
        /// Whether the task was killed for it (else it ran to its end: a spike).
        killed: bool,
    },
    /// The kernel's OOM killer ended the worker while the task ran (a SIGKILL this
    /// program did not send, and the system says the OOM killer sent it: see
    /// docs/ARCHITECTURE.md, "Memory"). Otherwise the same as [`ErrorKind::Crashed`].
    #[error("process {pid} running task `{task}` was killed by the kernel's OOM killer (peak RSS {})", kib(*peak_rss_kib))]
    OomKilled {
        /// The task's name.
        task: String,
        /// The worker's pid.
        pid: u32,
        /// Peak resident memory of the process, in KiB.
        peak_rss_kib: u64,
    },
    /// The task was cancelled before it started.
    #[error("task `{task}` was cancelled before it started")]
    Cancelled {
        /// The task's name.
        task: String,
    },
    /// Work was submitted after `close()` or `terminate()`.
    #[error("the pool is closed to new work")]
    PoolClosed,
    /// The pool was terminated (or dropped) before the task finished.
    #[error("the pool was terminated before task `{task}` finished")]
    Terminated {
        /// The task's name.
        task: String,
    },
    /// The pool stopped working: its initializer failed or workers died too often.
    /// `call` says what that did to this call: it never started, or it was stopped.
    #[error("{}", call.says())]
    PoolBroken {
        /// Why.
        #[source]
        reason: BrokenReason,
        /// What it did to this call.
        call: BrokenCall,
    },
    /// The result of this task was already taken by an earlier wait.
    #[error("the result of task `{task}` was already taken")]
    ResultTaken {
        /// The task's name.
        task: String,
    },
    /// Sending a signal failed.
    #[error("cannot signal process {pid}")]
    Signal {
        /// The target pid.
        pid: u32,
        /// The system error.
        #[source]
        source: io::Error,
    },

    // ---- Queue, Pipe, shared memory, Lock, Event, Semaphore (`src/sync/`) ----
    /// A shared-memory object could not be created or mapped.
    #[error("cannot create the memory of a {kind}")]
    SharedMemory {
        /// What was being created (`queue`, `pipe`, `lock`, ...).
        kind: &'static str,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// A handle received from another process could not be opened: every process it
    /// names has exited or closed the object, or belongs to another user.
    #[error("cannot open the {kind} shared by process {pid}")]
    OpenShared {
        /// What was being opened.
        kind: &'static str,
        /// The process the handle came from.
        pid: u32,
        /// Why the last attempt failed.
        #[source]
        source: io::Error,
    },
    /// Bytes decoded as a handle (a `Queue<T>`, a `Pipe` end, a `SharedSlice<T>`, ...)
    /// name an object that is not of that type: another kind of object, other message
    /// or element types, another layout, or a role the type does not have. Checked the
    /// same whether the object is open in this process already or not.
    #[error("{kind} handle refused: {reason}")]
    WrongHandle {
        /// The type decoded as (`queue`, `pipe`, `shared memory`, ...).
        kind: &'static str,
        /// What did not match.
        reason: String,
    },
    /// A message could not be encoded.
    #[error("cannot encode a message for the {kind}")]
    EncodeMessage {
        /// The queue or pipe.
        kind: &'static str,
        /// The codec's error.
        #[source]
        source: CodecError,
    },
    /// A message taken from a queue or pipe did not decode as the expected type; the
    /// message is consumed.
    #[error("cannot decode a message from the {kind}")]
    DecodeMessage {
        /// The queue or pipe.
        kind: &'static str,
        /// The codec's error.
        #[source]
        source: CodecError,
    },
    /// An encoded message is larger than the buffer of the queue or pipe can ever hold.
    #[error("a message of {size} bytes does not fit in the {kind}'s buffer of {limit} bytes")]
    MessageTooLarge {
        /// The queue or pipe.
        kind: &'static str,
        /// The encoded size.
        size: usize,
        /// The largest message the buffer takes.
        limit: usize,
    },
    /// The queue was closed: no more puts, and a get finds it empty.
    #[error("the {kind} is closed")]
    Closed {
        /// The queue.
        kind: &'static str,
    },
    /// Waiting is pointless: no other process holds the object (they all dropped or
    /// closed it) and no handle to it is on its way to one.
    #[error(
        "nothing else holds the {kind} any more (no other handle, in this process or another)"
    )]
    PeerClosed {
        /// The queue, pipe end, event or semaphore.
        kind: &'static str,
    },
    /// Waiting is pointless: every other process that held the object has died.
    #[error("every other process holding the {kind} has died (last seen: process {pid})")]
    PeerDied {
        /// The queue, pipe end, event or semaphore.
        kind: &'static str,
        /// One of the dead processes.
        pid: u32,
    },
    /// The shared state was found in an impossible state (written by something other
    /// than this library).
    #[error("the shared state of the {kind} is corrupt: {detail}")]
    Corrupt {
        /// The object.
        kind: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// More processes than the object's holder table has room for hold it at once:
    /// decoding a handle in one more process fails with this. The table has one slot
    /// per process (a process holding both ends of a pipe takes two), 128 in all.
    #[error(
        "the {kind} has {limit} holders already, the most one object can have (one per \
         process, two for a process holding both ends of a pipe)"
    )]
    TooManyHolders {
        /// The object.
        kind: &'static str,
        /// The table's size.
        limit: usize,
    },
    /// A handle was not serialised: this process keeps as many objects open for
    /// handles on their way (serialised, not opened yet, for at most 10 s) as half its
    /// descriptor limit (`RLIMIT_NOFILE`), each holding a descriptor.
    #[error(
        "cannot send a {kind} handle: {kept} objects are kept open for handles on their way \
         that nobody has opened yet (half the descriptor limit, RLIMIT_NOFILE; each goes \
         once opened or 10 s after it was sent)"
    )]
    TooManyInTransit {
        /// The object.
        kind: &'static str,
        /// How many objects are kept.
        kept: usize,
    },
    /// The lock is held by this very thread (locking again would deadlock).
    #[error("this thread already holds the lock")]
    WouldDeadlock,
    /// A shared mutex or futex operation failed.
    #[error("a synchronisation call on the {kind} failed")]
    Sync {
        /// The object.
        kind: &'static str,
        /// The system error.
        #[source]
        source: io::Error,
    },
}

#[cfg(test)]
mod tests;
