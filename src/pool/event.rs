//! What happens to a pool, as the dispatcher hears of it: one enum, so that the
//! dispatcher, the hub and whoever posts (callers, starters, readers, the reaper) share
//! a vocabulary without importing each other.

use std::sync::mpsc;

use supervisor_worker::protocol::FromChild;

use super::job::Unit;
use super::stats::PoolStats;
use crate::error::{Error, Violation};

/// One event; `S` is what a worker starter hands over (a process and its link, or a
/// simulated worker in tests).
pub(crate) enum Event<S> {
    Submit(Vec<Unit>),
    /// Nobody reads this result stream any more (a dropped `imap`).
    ForgetStream(u64),
    Cancel(u64, mpsc::SyncSender<bool>),
    Close,
    /// Close, and cancel what has not started; running calls finish.
    CancelPending,
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
