//! Python's `multiprocessing`, done right: run Rust functions in real worker processes.
//!
//! ```
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//! supervisor::task!(square);
//!
//! fn main() -> Result<(), supervisor::Error> {
//!     supervisor::init(); // first in main: a re-executed worker never returns from it
//!     let mut p = supervisor::Process::builder(square, 7).start()?;
//!     assert_eq!(p.join()?, 49);
//!     assert_eq!(p.exitcode(), Some(0));
//!
//!     let pool = supervisor::Pool::new(2)?;
//!     let squares: Vec<u64> = pool.map(square, 0..10).into_iter().collect::<Result<_, _>>()?;
//!     assert_eq!(squares[9], 81);
//!     pool.join();
//!     Ok(())
//! }
//! ```
//!
//! # `init()` first in `main`
//!
//! A spawned worker is this program started again: it runs `main` from the top until
//! [`init()`] turns it into a worker, so `init()` comes before anything else. Starting
//! a [`Process`] or a [`Pool`] without it fails with [`ErrorKind::NotInitialised`]
//! (and a worker that gets there without it exits at once), never a fork bomb.
//!
//! # What a task is
//!
//! A named `fn` of one to six serde arguments, registered once with [`task!`]; the
//! registration lets every copy of the program find it by name. [`Call`] says exactly
//! what can be one. A closure cannot: one that captures something does not build,
//!
//! ```compile_fail,E0080
//! fn main() {
//!     supervisor::init();
//!     let pool = supervisor::Pool::new(1).unwrap();
//!     let factor = 3;
//!     // error: a task must be a named fn registered with `supervisor::task!(name);`
//!     let _ = pool.apply(move |x: u64| x * factor, 7);
//! }
//! ```
//!
//! and one that captures nothing fails with [`RegistryError::Closure`]. Pass what it
//! would capture as an argument instead (several arguments travel as a tuple):
//!
//! ```
//! fn scale(x: u64, factor: u64) -> u64 {
//!     x * factor
//! }
//! supervisor::task!(scale);
//!
//! fn main() {
//!     supervisor::init();
//!     let pool = supervisor::Pool::new(1).unwrap();
//!     assert_eq!(pool.apply(scale, (7, 3)).unwrap(), 21);
//! }
//! ```
//!
//! # Linux only
//!
//! Workers are watched through pidfds and `/proc`, fed through memfds and woken by
//! futexes: the crate builds only for Linux (5.11 or later, for `close_range`), and a
//! `compile_error!` says so on any other target.
//!
//! # Observability
//!
//! The library emits [`tracing`](https://docs.rs/tracing) events. They cost nothing
//! but a check until the program installs a subscriber (with `tracing-subscriber`,
//! say). Every event has a stable name (`name` in `tracing`'s metadata) and the target
//! `supervisor`, so `RUST_LOG=supervisor=debug` (with `tracing-subscriber`'s
//! `EnvFilter`) shows them all:
//!
//! | name | level | when | fields |
//! |---|---|---|---|
//! | `worker.started` | INFO | a pool worker is up (its handshake done) | `worker`, `pid`, `seat`, `method` |
//! | `worker.restarted` | INFO | the same, for a seat whose worker ended before | `worker`, `pid`, `seat`, `method`, `restarts` |
//! | `worker.start_failed` | WARN | a pool worker could not be started | `worker`, `seat`, `error` |
//! | `worker.exited` | INFO | the reaper collected a pool worker's exit | `worker`, `pid`, `status`, `peak_rss_kib` |
//! | `task.started` | DEBUG | calls were handed to an idle worker, which starts the first at once (a batch's others follow in order) | `task`, `id` (of the first), `calls`, `pid` |
//! | `task.finished` | DEBUG | a call's result was delivered | `task`, `id`, `pid`, `attempts`, `duration_us`, `outcome` (`ok` or the error) |
//! | `tasks.finished` | DEBUG | results of `calls` calls of a `map` chunk were delivered at once | `task`, `id` (of the first), `calls`, `failed`, `pid`, `duration_us` |
//! | `process.started` | INFO | a `Process` is up and has its task | `process` (its name), `pid`, `task` |
//! | `process.exited` | INFO | a `Process`'s exit was collected by `join` | `process`, `pid`, `status` |
//! | `worker.no_cgroup` | WARN | once per process: a spawned worker starts without a cgroup of its own, so what its task leaves in a session of its own is not ended if the worker dies by `abort` or an outside SIGKILL | `reason` |
//!
//! A call's `id` is its [`TaskHandle::id`]; `outcome` is `ok` or the error's message
//! with its sources. `tests/observability.rs` captures them all from a real pool.
//!
//! # How it works
//!
//! [`architecture`] has how a task travels and how each process lives and dies.
#![warn(missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "supervisor runs only on Linux (5.11 or later): it watches processes through pidfds, \
     shares memory through memfds and futexes, and reads /proc"
);

#[doc = include_str!("../docs/ARCHITECTURE.md")]
pub mod architecture {}
#[cfg(feature = "cluster")]
mod cgroup;
pub mod cluster;
mod command;
mod error;
mod exit;
mod group_sweep;
mod init;
mod launch;
mod linger;
mod memory;
mod os;
mod outcome;
mod pool;
mod process;
mod quiet_panic;
mod reaper;
mod start_method;
mod sync;
mod trace;

pub use command::{
    run_command, shell_quote, Captured, Command, CommandOutput, CommandResult, SpillFile,
    DEFAULT_INLINE_LIMIT,
};
pub use error::{
    BootstrapFailure, BrokenCall, BrokenReason, CommandError, Error, ErrorKind, OsError,
    ResourceLimit, StormDeath, Violation,
};
pub use exit::{ExitStatus, Signal};
pub use init::{ensure_forkserver, helper_pids, init};
pub use pool::{
    as_completed, AsCompleted, Imap, JobMeta, MapHandle, Pool, PoolBuilder, PoolStats, Report,
    Reports, RestartLimit, TaskHandle, WorkerState, WorkerStats,
};
pub use pool::{
    AsCompletedStream, ImapStream, ReportStream, Shutdown, DEFAULT_HOLD_IN_MEMORY,
    DEFAULT_MAX_HELD, MAX_WORKERS,
};
pub use process::{Process, ProcessBuilder, ProcessJoin};
pub use start_method::StartMethod;
pub use supervisor_worker::codec::{CodecError, MAX_VALUE};
pub use supervisor_worker::registry::RegistryError;
pub use supervisor_worker::setup::SetupStep;
pub use supervisor_worker::{context as worker_context, task, Call, WorkerContext};
#[doc(hidden)]
pub use sync::fault::arm as __arm_sync_fault;
pub use sync::{
    Acquired, Event, Lock, LockGuard, Pipe, PipeEnds, Plain, Queue, QueueBuilder, Semaphore,
    SharedMemory, SharedSlice, DEFAULT_QUEUE_BYTES,
};
