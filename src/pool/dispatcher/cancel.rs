//! Cancelling calls that have not started: one call (`cancel`, `stop_call`, which
//! also stops a running one), a result stream's, or every pending one.

use std::collections::VecDeque;

use super::super::job::Job;
use super::super::ports::{Io, WorkerLink};
use super::state::Dispatcher;
use super::worker::Stop;
use crate::error::ErrorKind;

impl<X: Io> Dispatcher<X> {
    pub(super) fn cancel(&mut self, id: u64) -> bool {
        for i in 0..self.queue.len() {
            if let Some(pos) = self.queue[i].jobs.iter().position(|j| j.id == id) {
                let job = self.queue[i].jobs.remove(pos);
                let task = job.task().to_string();
                job.complete(Err(ErrorKind::Cancelled { task }.into()));
                if self.queue[i].jobs.is_empty() {
                    self.queue.remove(i);
                }
                return true;
            }
        }
        false
    }

    /// Stops call `id` alone: if it has not started (queued, or waiting behind a
    /// running call of its unit, taken back) it is cancelled; if it runs, what waits
    /// behind it in its unit is taken back and its worker is stopped as any is
    /// (SIGTERM to the group, the grace, SIGKILL), and it ends as `Stopped` with its
    /// pid, start and duration (or with its own answer if it gives one first: a task
    /// that handles SIGTERM). A finished call is left alone.
    pub(super) fn stop_call(&mut self, id: u64) {
        if self.cancel(id) {
            return;
        }
        let grace = self.cfg.escalation();
        let now = self.io.clocks().now;
        let mut back = VecDeque::new();
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            let Some(run) = worker.running.as_ref() else {
                continue;
            };
            let Some(pos) = run.unit.jobs.iter().position(|j| j.id == id) else {
                continue;
            };
            if worker.stop.is_some() {
                // Being stopped already: the call ends with it.
                break;
            }
            let call = run.answered + pos as u32;
            // A look that fails means the worker claimed a call since: look again
            // (each failure is progress, so a few are plenty).
            for _ in 0..16 {
                let seen = worker.link.page().snapshot();
                let Some(run) = worker.running.as_ref() else {
                    break;
                };
                let claimed = run.claimed(&seen);
                if call + 1 < claimed {
                    // Finished: its answer is on its way.
                    break;
                }
                if worker
                    .take_back_unstarted_as_seen(&mut back, seen)
                    .is_none()
                {
                    continue;
                }
                if call + 1 == claimed {
                    worker.stop(Stop::Requested, grace, now);
                }
                break;
            }
            break;
        }
        while let Some(unit) = back.pop_back() {
            self.queue.push_front(unit);
        }
        // Taken back before it started: cancelled as a queued call is.
        self.cancel(id);
    }

    /// Drops every call of result stream `stream` that has not started: queued ones,
    /// and those waiting behind a running call (taken back). Running calls finish.
    pub(super) fn forget_stream(&mut self, stream: u64) {
        let mut back = VecDeque::new();
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            let ours = worker.running.as_ref().is_some_and(|r| {
                r.unit.jobs.iter().any(|j| j.stream() == Some(stream))
                    || r.unit.chunk.as_ref().is_some_and(|c| c.stream() == stream)
            });
            if ours && worker.stop.is_none() {
                let _ = worker.take_back_unstarted(&mut back);
            }
        }
        // What was taken back goes first again, in order.
        while let Some(unit) = back.pop_back() {
            self.queue.push_front(unit);
        }
        for unit in self.queue.iter_mut().filter(|u| u.chunk.is_none()) {
            let (gone, kept): (Vec<Job>, Vec<Job>) = std::mem::take(&mut unit.jobs)
                .into_iter()
                .partition(|j| j.stream() == Some(stream));
            unit.jobs = kept;
            gone.into_iter().for_each(Job::forget);
        }
        // A stream's chunks (`imap_reports`'): gone whole, with nothing delivered.
        for unit in self.queue.iter_mut() {
            if unit.chunk.as_ref().is_some_and(|c| c.stream() == stream) {
                if let Some(chunk) = unit.chunk.take() {
                    chunk.forget();
                }
            }
        }
        self.queue.retain(|u| u.len() > 0);
    }

    /// Closes, and cancels every call that has not started (queued, or sent ahead and
    /// taken back); running calls go on and finish.
    pub(super) fn cancel_pending(&mut self) {
        self.closing = true;
        let mut unstarted = VecDeque::new();
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            if worker.stop.is_none() {
                worker.take_back_all_unstarted(&mut unstarted);
            }
        }
        for unit in self.queue.drain(..).chain(unstarted) {
            unit.fail(|task| ErrorKind::Cancelled {
                task: task.to_string(),
            });
        }
    }
}
