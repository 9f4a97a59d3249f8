//! Stopping the pool: breaking it, terminating it, killing it.

use std::collections::VecDeque;
use std::time::Duration;

use super::super::job::{JobMeta, Unit};
use super::super::ports::{Io, WorkerLink};
use super::super::running::death_split;
use super::state::Dispatcher;
use super::worker::Stop;
use crate::error::{BrokenCall, BrokenReason, ErrorKind};

impl<X: Io> Dispatcher<X> {
    /// Breaks the pool for `reason` (also used by the hub when handling an event
    /// panicked: every waiter then gets `PoolBroken`, not `Terminated`). Calls that have
    /// not started fail at once as [`BrokenCall::NotStarted`]; running calls are stopped
    /// with their workers and settled when those are gone, as [`BrokenCall::Stopped`]
    /// with their pid, start, duration and attempts (finished ones are delivered).
    pub(crate) fn break_pool(&mut self, reason: BrokenReason) {
        if self.broken.is_some() {
            return;
        }
        self.broken = Some(reason.clone());
        self.cfg
            .broken
            .store(true, std::sync::atomic::Ordering::Release);
        for call in std::mem::take(&mut self.when_broken) {
            super::state::tell_broken(call, &reason);
        }
        for unit in self.stop_every_worker() {
            unit.fail(|_| ErrorKind::PoolBroken {
                reason: reason.clone(),
                call: BrokenCall::NotStarted,
            });
        }
    }

    /// Settles every running call at once, as the pool's break did to it, for a
    /// dispatcher that ends right away (a panic while handling an event): the running
    /// call as stopped (pid, start, attempts), calls that finished unanswered as
    /// results lost, the rest as not started.
    pub(crate) fn settle_running_now(&mut self) {
        let Some(reason) = self.broken.clone() else {
            return;
        };
        let clocks = self.io.clocks();
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            let Some(mut run) = worker.running.take() else {
                continue;
            };
            let pid = worker.link.pid();
            let seen = worker.link.page().snapshot();
            run.unit.explode();
            let split = death_split(&run, run.claimed(&seen));
            let task = run.unit.task;
            let jobs = std::mem::take(&mut run.unit.jobs);
            for (position, job) in (run.answered..).zip(jobs) {
                let meta = JobMeta {
                    pid,
                    attempts: job.retried + 1,
                    started: None,
                    duration: Duration::ZERO,
                };
                if split.lost.contains(&position) {
                    let e = ErrorKind::ResultLost {
                        task: task.to_string(),
                        pid,
                    };
                    job.complete_with(Err(e.into()), meta);
                } else if split.culprit == Some(position) {
                    let since = clocks.instant(seen.started_ns);
                    let meta = JobMeta {
                        started: Some(clocks.wall(seen.started_ns)),
                        duration: clocks.now.saturating_duration_since(since),
                        ..meta
                    };
                    let e = ErrorKind::PoolBroken {
                        reason: reason.clone(),
                        call: BrokenCall::Stopped {
                            task: task.to_string(),
                            pid,
                        },
                    };
                    job.complete_with(Err(e.into()), meta);
                } else {
                    job.complete(Err(ErrorKind::PoolBroken {
                        reason: reason.clone(),
                        call: BrokenCall::NotStarted,
                    }
                    .into()));
                }
            }
        }
    }

    /// Stops now: queued calls and calls that have not started fail as terminated;
    /// running calls are stopped with their workers and settled when those are gone
    /// (as `Stopped`, with their pid, start and duration; finished ones are delivered).
    pub(super) fn terminate(&mut self) {
        self.terminating = true;
        for unit in self.stop_every_worker() {
            unit.fail(|task| ErrorKind::Terminated {
                task: task.to_string(),
            });
        }
    }

    /// Closes the pool and stops every worker; returns the calls that had not started:
    /// the queue's, then those taken back from the workers (a worker whose page changed
    /// under us settles what it runs at its exit).
    fn stop_every_worker(&mut self) -> VecDeque<Unit> {
        self.closing = true;
        let mut unstarted = VecDeque::new();
        let grace = self.cfg.escalation();
        let now = self.io.clocks().now;
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            let _ = worker.take_back_unstarted(&mut unstarted);
            worker.stop(Stop::Shutdown, grace, now);
        }
        // The queue's first, then what the workers gave back (as before).
        let mut all = std::mem::take(&mut self.queue);
        all.extend(unstarted);
        all
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
