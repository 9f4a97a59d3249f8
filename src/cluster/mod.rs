//! Supervisor across hosts, over NATS JetStream (feature `cluster`, on by default).
//!
//! A submitter ([`RemoteReports`], `supervisor run --nats URL`) publishes each input as
//! a task on the work-queue stream `SV_TASKS`, subject `sv.task.<run>`, and reads the
//! results from the stream `SV_RESULTS`, subject `sv.result.<run>`. Agents ([`Agent`],
//! `supervisor worker --nats URL`) pull the tasks of every run through the run's
//! durable consumer `run-<run>`, run each on their local [`crate::Pool`] (every local
//! supervision rule applies), publish the result, and acknowledge the task only once
//! the server has confirmed the result. The server redelivers what is not acknowledged
//! within the ack wait; the submitter keeps the first result per task. The flow, the
//! settings and the failure semantics are in `docs/ARCHITECTURE.md` ("A remote task").
//!
//! In a program: [`RemotePool`] has the pool's calls with the agents as its workers,
//! and [`Agent::serve`] makes a program an agent for its own registered tasks.
//!
//! The module owns a tokio runtime of its own (two threads, made on first use), so the
//! rest of the crate stays free of any async runtime.

mod agent;
mod agent_task;
mod connect;
mod liveness;
mod open_run;
mod remote_pool;
mod result_batch;
mod status;
mod stream;
mod submit;
mod watchdog;
mod wind_down;
mod wire;

pub use agent::{Agent, AgentStop, FailedWhen, Finish, Log, Refuse};
pub use connect::Connect;
pub use remote_pool::{as_completed, RemoteAsCompleted, RemoteHandle, RemoteImap, RemotePool};
pub use status::{agents, AgentStatus};
pub use submit::{RemoteOptions, RemoteReports};

/// The defaults, documented in `docs/ARCHITECTURE.md`.
pub mod defaults {
    use std::time::Duration;

    /// How long the server waits for an agent's acknowledgement (or in-progress
    /// acknowledgement, sent every third of it while a task runs) before it delivers
    /// the task again.
    pub const ACK_WAIT: Duration = Duration::from_secs(30);
    /// Deliveries the server allows on top of `retries + 1`, for hosts that die or
    /// hang while running the task (their deliveries end in no result at all).
    pub const HOST_LOSSES: u32 = 2;
    /// An agent asks each run's submitter whether it is there every 250 ms and starts
    /// a task only while it answers; one that finds nobody listening ("no responders":
    /// the submitter's connection is gone, as after a SIGKILL) this long drops the
    /// run's remaining tasks.
    pub const GONE_AFTER: Duration = Duration::from_secs(1);
    /// [`GONE_AFTER`] for an agent that reconnected less than this long ago (after a
    /// server restart an agent may be back before the submitter is). Well over the
    /// clients' longest reconnect delay ([`RECONNECT_DELAY_MAX`]).
    pub const ABANDONED_AFTER: Duration = Duration::from_secs(10);
    /// A submitter says so on stderr when its run has tasks waiting and no agent has
    /// taken one for this long (no agent, or none that may run commands).
    pub const IDLE_NOTICE: Duration = Duration::from_secs(10);
    /// A submitter gives up when its server has been unreachable this long
    /// ([`crate::ErrorKind::ServerLost`]; `run --nats` exits 4). `run --nats-timeout`.
    pub const SERVER_TIMEOUT: Duration = Duration::from_secs(60);
    /// A submitter that stops its run (`--halt now`, a signal) waits at most this
    /// long for its agents to stop the tasks they run and report them (their pools'
    /// grace period, 5 s by default, plus the rest); what has not reported by then
    /// is recorded as cancelled. [`crate::cluster::RemoteOptions::stop_wait`].
    pub const STOP_WAIT: Duration = Duration::from_secs(15);
    /// The longest wait between two reconnect attempts (the first attempt, and the
    /// first connect, go at once; each later one waits 250 ms more).
    pub const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(1);
}
