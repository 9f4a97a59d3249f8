//! Stopping the pool: breaking it, terminating it, killing it.

use std::collections::VecDeque;

use super::super::ports::{Io, WorkerLink};
use super::state::Dispatcher;
use super::worker::Stop;
use crate::error::{BrokenReason, ErrorKind};

impl<X: Io> Dispatcher<X> {
    /// Breaks the pool for `reason` (also used by the hub when handling an event
    /// panicked: every waiter then gets `PoolBroken`, not `Terminated`).
    pub(crate) fn break_pool(&mut self, reason: BrokenReason) {
        if self.broken.is_some() {
            return;
        }
        self.broken = Some(reason.clone());
        self.closing = true;
        for unit in self.queue.drain(..) {
            unit.fail(|_| ErrorKind::PoolBroken {
                reason: reason.clone(),
            });
        }
        let grace = self.cfg.escalation();
        let now = self.io.clocks().now;
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            if let Some(run) = worker.running.take() {
                run.unit.fail(|_| ErrorKind::PoolBroken {
                    reason: reason.clone(),
                });
            }
            worker.stop(Stop::Shutdown, grace, now);
        }
    }

    /// Stops now: queued calls and calls that have not started fail as terminated;
    /// running calls are stopped with their workers and settled when those are gone
    /// (as `Stopped`, with their pid, start and duration; finished ones are delivered).
    pub(super) fn terminate(&mut self) {
        self.terminating = true;
        self.closing = true;
        let mut unstarted = VecDeque::new();
        let grace = self.cfg.escalation();
        let now = self.io.clocks().now;
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            // If the page changed under us, whatever it runs is settled at its exit.
            let _ = worker.take_back_unstarted(&mut unstarted);
            worker.stop(Stop::Shutdown, grace, now);
        }
        for unit in self.queue.drain(..).chain(unstarted) {
            unit.fail(|task| ErrorKind::Terminated {
                task: task.to_string(),
            });
        }
    }

    /// Terminates, and kills every worker's group at once.
    pub(super) fn kill(&mut self) {
        self.terminate();
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            worker.kill_at = None;
            worker.link.kill();
        }
        for kill in self.group_kills.drain(..) {
            kill.link.kill();
        }
    }
}
