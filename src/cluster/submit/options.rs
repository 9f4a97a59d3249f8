//! The options of a remote run ([`RemoteOptions`]).

use std::time::Duration;

use super::super::connect::Connect;
use super::super::defaults::{ACK_WAIT, SERVER_TIMEOUT, STOP_WAIT};
#[cfg(doc)]
use super::RemoteReports;
#[cfg(doc)]
use crate::error::ErrorKind;

/// How a remote run goes.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// The server.
    pub connect: Connect,
    /// Deliveries after the first for a task whose worker died or that timed out.
    pub retries: u32,
    /// The server's ack wait (see [`crate::cluster::defaults::ACK_WAIT`]).
    pub ack_wait: Duration,
    /// Results in input order (else as they come).
    pub ordered: bool,
    /// Tasks published but not yet yielded, at most; results of an ordered run that
    /// wait for an earlier task still running (held for order) do not count, up to
    /// `max_held` of them, so the agents go on behind a slow task (as the local
    /// pool's [`crate::PoolBuilder::read_ahead`]).
    pub read_ahead: usize,
    /// Most results of an ordered run that wait for an earlier task beyond the
    /// read-ahead (as [`crate::PoolBuilder::max_held`]; each is held in memory,
    /// decoded). Default: [`crate::DEFAULT_MAX_HELD`]. Results held so are kept in
    /// memory, [`crate::DEFAULT_HOLD_IN_MEMORY`] of values at most: past that, they
    /// count against the read-ahead too (a local pool spills them to a file).
    pub max_held: usize,
    /// The tasks run commands: only agents started with `--allow-commands` take them.
    pub command: bool,
    /// A run that failed (the task returned its error, as a command that exits
    /// non-zero) runs again too, within the same `retries` (the local pool's
    /// [`crate::PoolBuilder::retry_errors`]; agents tell such runs apart with
    /// [`crate::cluster::Agent::failed_when`]).
    pub retry_errors: bool,
    /// The run gives up ([`ErrorKind::ServerLost`]) when the server has been
    /// unreachable this long (see [`crate::cluster::defaults::SERVER_TIMEOUT`]).
    pub server_timeout: Duration,
    /// A run that stops ([`RemoteReports::stopper`], [`RemoteReports::stop_when`])
    /// waits at most this long for the agents to stop its running tasks and report
    /// them (see [`crate::cluster::defaults::STOP_WAIT`]).
    pub stop_wait: Duration,
    /// A time limit per task, which travels with each task: the agent's pool stops a
    /// task past it as a local pool's `task_timeout` does ([`ErrorKind::TimedOut`];
    /// run again within `retries`). An agent's own limit applies too; the shorter wins.
    pub task_timeout: Option<Duration>,
}

impl RemoteOptions {
    /// A run on the server `connect` names, with the defaults.
    pub fn new(connect: Connect) -> RemoteOptions {
        RemoteOptions {
            connect,
            retries: 0,
            ack_wait: ACK_WAIT,
            ordered: true,
            read_ahead: 10_000,
            max_held: crate::DEFAULT_MAX_HELD,
            command: false,
            retry_errors: false,
            server_timeout: SERVER_TIMEOUT,
            stop_wait: STOP_WAIT,
            task_timeout: None,
        }
    }
}
