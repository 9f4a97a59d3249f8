//! Python's `multiprocessing`, done right: run Rust functions in real worker processes.
//!
//! ```no_run
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
//!     Ok(())
//! }
//! ```
//!
//! See `docs/ARCHITECTURE.md` for how a task travels and how each process lives and
//! dies.
#![warn(missing_docs)]

mod command;
mod error;
mod exit;
mod init;
mod launch;
mod linger;
mod memory;
mod os;
mod outcome;
mod pool;
mod process;
mod reaper;
mod start_method;
mod sync;

pub use command::{
    run_command, shell_quote, Captured, Command, CommandOutput, CommandResult, DEFAULT_INLINE_LIMIT,
};
pub use error::{
    BrokenReason, CommandError, Error, ErrorKind, OsError, ResourceLimit, StormDeath, Violation,
};
pub use exit::{ExitStatus, Signal};
pub use init::{ensure_forkserver, helper_pids, init};
pub use pool::{
    as_completed, AsCompleted, Imap, JobMeta, MapHandle, Pool, PoolBuilder, PoolStats, Report,
    Reports, RestartLimit, TaskHandle, WorkerState, WorkerStats,
};
pub use pool::{AsCompletedStream, ImapStream, ReportStream, Shutdown};
pub use process::{Process, ProcessBuilder};
pub use start_method::StartMethod;
pub use supervisor_worker::codec::{CodecError, MAX_VALUE};
pub use supervisor_worker::registry::RegistryError;
pub use supervisor_worker::setup::SetupStep;
pub use supervisor_worker::{context as worker_context, task, WorkerContext};
#[doc(hidden)]
pub use sync::fault::arm as __arm_sync_fault;
pub use sync::{
    Acquired, Event, Lock, LockGuard, Pipe, PipeEnds, Plain, Queue, QueueBuilder, Semaphore,
    SharedMemory, SharedSlice, DEFAULT_QUEUE_BYTES,
};
