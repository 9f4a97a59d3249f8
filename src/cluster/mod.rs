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
mod connect;
mod remote_pool;
mod status;
mod stream;
mod submit;
mod wire;

pub use agent::{Agent, AgentStop, Finish, Log};
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
    /// An agent that finds no submitter answering for its run this long drops the
    /// run's remaining tasks (a SIGKILLed submitter). Well over the clients' longest
    /// reconnect delay ([`RECONNECT_DELAY_MAX`]): after a server restart an agent may
    /// be back before the submitter is.
    pub const ABANDONED_AFTER: Duration = Duration::from_secs(10);
    /// The longest wait between two reconnect attempts (250 ms more per attempt).
    pub const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(1);
}
