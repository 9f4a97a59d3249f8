//! The send side, shared by the main thread and the flusher.

use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Condvar, Mutex, MutexGuard};

use ipc_channel::ipc::IpcSender;

use crate::arena::Outbox;
use crate::progress::Progress;
use crate::protocol::{Frame, FromChild, LinkError};

/// The running unit of several calls, as the flusher sees it.
#[derive(Clone, Copy)]
pub(super) struct OpenUnit {
    pub(super) seq: u64,
    pub(super) packed: bool,
    /// A packed unit whose answers carry each call's timing.
    pub(super) timed: bool,
}

/// The send side, shared by the main thread and the flusher.
pub(super) struct Sender {
    pub(super) tx: IpcSender<Frame>,
    pub(super) outbox: Outbox,
    pub(super) open: Option<OpenUnit>,
}

impl Sender {
    pub(super) fn send(&mut self, msg: &FromChild) -> Result<(), LinkError> {
        self.outbox.send(&self.tx, msg)
    }
}

pub(super) struct Shared {
    pub(super) sender: Mutex<Sender>,
    /// Wakes the flusher when a unit of several calls opens.
    pub(super) opened: Condvar,
    pub(super) progress: Option<Progress>,
    /// Positions of the open unit below this have been sent.
    pub(super) sent_to: AtomicU32,
    /// The flusher sleeps until a unit opens (set under the send lock).
    pub(super) flusher_asleep: AtomicBool,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Sender> {
        self.sender.lock().unwrap_or_else(|p| p.into_inner())
    }
}
