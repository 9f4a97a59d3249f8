//! What `Pool::stats` reports.

use std::time::Duration;

use crate::error::BrokenReason;

/// What one worker is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerState {
    /// Running the pool's initializer.
    Initializing,
    /// Waiting for work.
    Idle,
    /// Running a task.
    Busy {
        /// The task's name.
        task: String,
        /// The id of the job it is running (the first of a batch).
        job: u64,
    },
    /// Finishing its last tasks before it is replaced (`max_tasks_per_child`) or the
    /// pool closes.
    Retiring,
    /// Being stopped (timeout, terminate).
    Stopping,
    /// Gone (in [`PoolStats::exited`]).
    Exited {
        /// How it ended.
        status: crate::ExitStatus,
    },
}

/// One worker's numbers.
#[derive(Debug, Clone)]
pub struct WorkerStats {
    /// Its pid.
    pub pid: u32,
    /// What it is doing.
    pub state: WorkerState,
    /// Tasks it has finished.
    pub tasks_done: u64,
    /// How many workers in this seat were replaced after dying.
    pub restarts: u32,
    /// User plus system CPU time so far.
    pub cpu_time: Duration,
    /// Resident memory now, in KiB (0 once exited).
    pub rss_kib: u64,
    /// Peak resident memory, in KiB.
    pub peak_rss_kib: u64,
}

/// A snapshot of a pool.
#[derive(Debug, Clone)]
pub struct PoolStats {
    /// Live workers.
    pub workers: Vec<WorkerStats>,
    /// Workers being started.
    pub starting: usize,
    /// Tasks submitted and not started.
    pub queued: usize,
    /// Tasks running now (started by their worker, not just sent to it).
    pub running: usize,
    /// Tasks that returned a value.
    pub done: u64,
    /// Tasks that failed (error, panic, crash, timeout) or returned `Err`.
    pub failed: u64,
    /// Workers replaced after dying, in all.
    pub restarts: u32,
    /// Why the pool is broken, if it is.
    pub broken: Option<BrokenReason>,
    /// Things a user should know about how the pool runs (for example that the fork
    /// zygote died and new workers come from the forkserver).
    pub notes: Vec<String>,
    /// Workers that have exited (replaced, recycled, or at the end), oldest first; the
    /// last 1,000 are kept.
    pub exited: Vec<WorkerStats>,
}
