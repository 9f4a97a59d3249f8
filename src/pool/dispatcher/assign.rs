//! Handing out work: one unit to each idle worker (fast single calls of one task
//! merged into one message); taking unstarted calls back is in `take_back.rs`.

use std::collections::VecDeque;
use std::time::Duration;

use supervisor_worker::codec::BATCH_BYTES;

use super::super::job::Unit;
use super::super::ports::{Io, WorkerLink};
use super::super::running::Running;
use super::state::Dispatcher;
use super::worker::Worker;
use crate::error::BrokenReason;

/// Tasks whose calls take less than this (a moving average per task) have queued
/// single calls merged into one batch, to hide round trips. Merging never changes what
/// a call sees (each is claimed, timed and answered on its own); it is only not worth
/// it for slow tasks.
const FAST_JOB: Duration = Duration::from_millis(1);
/// Most jobs merged into one message.
const MERGE_MAX: usize = 256;

impl<X: Io> Dispatcher<X> {
    /// Gives queued work to workers that can take it, and tells each worker's reader
    /// whether anything is expected from it.
    pub(crate) fn dispatch(&mut self) {
        self.assign();
        for worker in self.workers() {
            worker.link.expect(worker.expects_messages());
        }
    }

    fn assign(&mut self) {
        self.look_at_gate();
        if self.broken.is_none() && !self.terminating {
            // While a worker is idle: first the unstarted calls waiting behind a
            // running call that are older than the queue's head (taken back, so they
            // are at its front), then the queue. Every take-back moves at least one
            // call and every hand-out feeds at least one idle worker, so this ends
            // within a pass per idle worker; the bound is a backstop.
            let clocks = self.io.clocks();
            for _ in 0..4 * self.seats.len() + 4 {
                if !self.any_idle() {
                    break;
                }
                if !self.steal(&clocks) && self.queue.is_empty() {
                    break;
                }
                self.hand_out();
            }
            // Nobody idle (or nothing to take): later calls sent ahead behind a call
            // that has run as long go back to the queue, behind the older ones.
            self.give_back_later(&clocks);
        }
        // Nothing left to do: let idle workers exit.
        if self.closing && self.queue.is_empty() {
            for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
                if worker.running.is_none() && !worker.initializing {
                    worker.link.close();
                }
            }
        }
        // Refill empty seats (after a recycle or a death) when there is work or the
        // pool is open, unless a restart back-off holds the seat.
        if self.wants_workers() {
            for seat in 0..self.seats.len() {
                let s = &self.seats[seat];
                if s.worker.is_none() && !s.starting && s.start_at.is_none() {
                    self.start_worker(seat);
                }
            }
        }
    }

    /// Asks `Pool::cancel_pending_when`'s condition about the counts, if they changed
    /// since it was last asked; once it holds, what is pending is cancelled, before
    /// any of it could be handed out.
    fn look_at_gate(&mut self) {
        let counts = (self.done, self.failed);
        let Some((gate, seen)) = self.gate.as_mut() else {
            return;
        };
        if *seen == counts {
            return;
        }
        *seen = counts;
        // The user's code, run on whichever thread handles the event: its panic is
        // the pool's reason to stop, not a panic of the pool (which would end it with
        // every waiter told only that it was terminated).
        let asked =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| gate(counts.0, counts.1)));
        match asked {
            Ok(false) => {}
            Ok(true) => {
                self.gate = None;
                self.cancel_pending();
            }
            Err(panic) => {
                self.gate = None;
                let message = supervisor_worker::serve::panic_message(panic.as_ref());
                self.break_pool(BrokenReason::HaltConditionPanicked { message });
            }
        }
    }

    /// One unit from the queue to each idle worker; to one only while calls wait
    /// behind a running call (the next idle worker may have to take those first,
    /// `steal`, as the queue's head may now be later than them).
    fn hand_out(&mut self) {
        let clocks = self.io.clocks();
        let one_only = self.any_due(&clocks);
        let limit = self.cfg.task_timeout;
        let max_tasks = self.cfg.max_tasks_per_child;
        let workers = self
            .seats
            .iter()
            .filter(|s| s.worker.is_some())
            .count()
            .max(1);
        // Under a gate, one call at a time: it is asked between any two.
        let gated = self.gate.is_some();
        let fast = |task: &str| !gated && self.job_time.get(task).is_some_and(|t| *t < FAST_JOB);
        let mut sent_any = false;
        for seat in self.seats.iter_mut() {
            let Some(worker) = seat.worker.as_mut() else {
                continue;
            };
            if !worker.takes_work() {
                continue;
            }
            let Some(mut unit) = self.queue.pop_front() else {
                break;
            };
            let timed_chunk = unit.chunk.as_ref().is_some_and(|c| c.timed);
            // A call over the memory limit answers so and is retried while it has
            // retries; a chunk's answer cannot act on that.
            let memory_retries = self.cfg.memory_limit.is_some() && self.cfg.retries > 0;
            if unit.chunk.is_some() && memory_retries
                || timed_chunk && (self.cfg.retry_errors || !fast(unit.task))
            {
                // A task not known to be fast (or `retry_errors`, which a chunk's
                // answer cannot act on either): its calls go out as single calls do.
                unit = unpack(unit, &mut self.queue);
            }
            let allowance = max_tasks.map_or(usize::MAX, |max| {
                max.saturating_sub(worker.tasks_done) as usize
            });
            if allowance == 0 {
                self.queue.push_front(unit);
                worker.link.close();
                continue;
            }
            if unit.len() > allowance {
                // Keep a recycled worker to its task budget: split the unit.
                let rest = unit.split_off(allowance);
                self.queue.push_front(rest);
            } else if unit.chunk.as_ref().is_some_and(|c| c.timed) {
                // A fair share of the queued calls, as merged single calls get: the
                // calls of one read of `imap_reports` spread over the workers.
                let queued = queued_calls(&self.queue, MERGE_MAX * workers);
                let share = ((unit.len() + queued) / workers).clamp(1, MERGE_MAX);
                if unit.len() > share {
                    let rest = unit.split_off(share);
                    self.queue.push_front(rest);
                }
            } else if unit.chunk.is_none() && fast(unit.task) {
                // Merge queued single calls of the same task into one message, up to a
                // fair share of the queue.
                let original = unit.jobs.len();
                let share = (self.queue.len() / workers).min(MERGE_MAX).min(allowance);
                let mut bytes: usize = unit.jobs.iter().map(|j| j.arg.len()).sum();
                while unit.jobs.len() < share
                    && bytes <= BATCH_BYTES
                    && self
                        .queue
                        .front()
                        .is_some_and(|u| u.task == unit.task && u.chunk.is_none())
                {
                    if let Some(next) = self.queue.pop_front() {
                        bytes += next.jobs.iter().map(|j| j.arg.len()).sum::<usize>();
                        unit.jobs.extend(next.jobs);
                    }
                }
                if unit.jobs.len() > share.max(original) {
                    let rest = unit.split_off(share.max(original));
                    self.queue.push_front(rest);
                }
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            worker.link.page().begin(seq, unit.len() as u32);
            if worker.link.send_unit(seq, &unit) {
                // An `apply` caller on this very thread reads the reply itself if
                // nobody else is reading this worker.
                if let Some(caller) = unit.waiting_caller() {
                    worker.link.lend_to(caller);
                }
                let limit = Running::shortest_limit(&unit, limit);
                worker.running = Some(Running::new(seq, unit, clocks.now, limit));
                sent_any = true;
                if one_only {
                    break;
                }
            } else {
                // The worker is going away (the link closed itself); its exit will be
                // handled.
                self.queue.push_front(unit);
            }
        }
        if sent_any {
            self.arm_memory_look(clocks.now);
        }
    }

    pub(super) fn any_idle(&self) -> bool {
        self.seats
            .iter()
            .filter_map(|s| s.worker.as_ref())
            .any(Worker::<X::Link>::takes_work)
    }
}

/// The calls of a timed chunk as single calls: the first returned, the others back at
/// the front of `queue`, in order.
fn unpack(mut unit: Unit, queue: &mut VecDeque<Unit>) -> Unit {
    unit.explode();
    let task = unit.task;
    let mut jobs = std::mem::take(&mut unit.jobs);
    let rest = jobs.split_off(jobs.len().min(1));
    for job in rest.into_iter().rev() {
        queue.push_front(Unit::new(task, vec![job]));
    }
    Unit::new(task, jobs)
}

/// The calls queued, counted up to `enough`.
fn queued_calls(queue: &VecDeque<Unit>, enough: usize) -> usize {
    let mut n = 0;
    for unit in queue {
        n += unit.len();
        if n >= enough {
            break;
        }
    }
    n
}
