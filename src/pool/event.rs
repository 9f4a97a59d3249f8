//! What happens to a pool, as the dispatcher hears of it: one enum, so that the
//! dispatcher, the hub and whoever posts (callers, starters, readers, the reaper) share
//! a vocabulary without importing each other.

use std::sync::mpsc;

use supervisor_worker::protocol::FromChild;

use super::job::Unit;
use super::stats::PoolStats;
use crate::error::{Error, Violation};

/// Told how many calls succeeded and failed so far; true: cancel what is pending.
pub(crate) type Gate = Box<dyn FnMut(u64, u64) -> bool + Send>;

/// Called once, when the pool breaks, with why (see [`crate::Pool::when_broken`]).
pub(crate) type OnBroken = Box<dyn FnOnce(&crate::BrokenReason) + Send>;

/// One event; `S` is what a worker starter hands over (a process and its link, or a
/// simulated worker in tests).
pub(crate) enum Event<S> {
    Submit(Vec<Unit>),
    /// Nobody reads this result stream any more (a dropped `imap`).
    ForgetStream(u64),
    Cancel(u64, mpsc::SyncSender<bool>),
    /// Stop this call: cancelled if it has not started, its worker stopped if it
    /// runs (see `Pool::stop_call`).
    StopCall(u64),
    Close,
    /// Close, and cancel what has not started; running calls finish.
    CancelPending,
    /// A halt condition, looked at before any work is handed out (see
    /// [`crate::Pool::cancel_pending_when`]).
    SetGate(Gate),
    /// Called when the pool breaks (at once if it has).
    WhenBroken(OnBroken),
    /// A new time limit per call (`None`: none), for the calls running too.
    SetTaskTimeout(Option<std::time::Duration>),
    Terminate,
    Kill,
    Stats(mpsc::SyncSender<PoolStats>),
    Started {
        seat: usize,
        result: Result<S, Error>,
    },
    Message {
        worker: u64,
        msg: Result<FromChild, Violation>,
    },
    LinkClosed {
        worker: u64,
    },
    Exited {
        worker: u64,
    },
}
