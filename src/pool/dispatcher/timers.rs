//! Deadlines: each running call's time limit, kills after a grace period, settling a
//! worker whose exit and channel end did not come together, restart back-offs.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::super::job::Unit;
use super::super::ports::{Io, WorkerLink};
use super::super::running::{timeout_step, Clocks, TimeoutStep, ANSWER_LOOK, ANSWER_WAIT};
use super::group_kill::GroupKill;
use super::state::{Dispatcher, Stop, Worker};
use crate::error::Violation;

impl<X: Io> Dispatcher<X> {
    /// The earliest deadline, if any.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let group_kill = self.group_kills.iter().map(GroupKill::next_wake).min();
        let restarts = self.seats.iter().filter_map(|s| s.start_at);
        let steal = self.steal_look(&self.io.clocks());
        self.seats
            .iter()
            .filter_map(|s| s.worker.as_ref())
            .flat_map(|w| {
                let look = match (&w.running, w.stop) {
                    (Some(run), None) => run.check_at,
                    _ => None,
                };
                [look, w.kill_at, w.settle_at]
            })
            .flatten()
            .chain(group_kill)
            .chain(self.memory_look_at)
            .chain(restarts)
            .chain(steal)
            .min()
    }

    /// A new time limit for every call, those running included: each running call's
    /// limit is looked at again at once (from its own start, as always).
    pub(super) fn set_task_timeout(&mut self, limit: Option<Duration>) {
        self.cfg.task_timeout = limit;
        let now = self.io.clocks().now;
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            if let Some(run) = worker.running.as_mut() {
                // A call already being stopped for its limit keeps its schedule.
                if run.stopping_at.is_none() {
                    run.check_at = limit.map(|_| now);
                }
            }
        }
    }

    /// Acts on every deadline that has passed.
    pub(crate) fn on_timers(&mut self) {
        let clocks = self.io.clocks();
        let now = clocks.now;
        self.group_kills.retain_mut(|kill| kill.pending(now));
        let grace = self.cfg.escalation();
        let limit = self.cfg.task_timeout;
        let mut settle = Vec::new();
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            if let Some(limit) = limit {
                look_at_time_limit(worker, &mut self.queue, &clocks, limit, grace);
            }
            if worker.kill_at.is_some_and(|k| k <= now) {
                worker.kill_at = None;
                worker.link.kill();
            }
            if worker.settle_at.is_some_and(|s| s <= now) {
                worker.settle_at = None;
                settle.push(worker.id);
            }
        }
        for seat in &mut self.seats {
            if seat.start_at.is_some_and(|at| at <= now) {
                seat.start_at = None;
            }
        }
        self.look_at_memory();
        for id in settle {
            let alive = self.worker_mut(id).is_some_and(|w| !w.exited);
            if alive {
                // The channel closed but the process lives on: it can never answer.
                if let Some(seat) = self.seat_of(id) {
                    self.protocol_error(seat, Violation::AliveWithoutChannel);
                }
            } else {
                self.finalize(id);
            }
        }
    }
}

/// Enforces the time limit of `worker`'s running call, if a look is due.
fn look_at_time_limit<L: WorkerLink>(
    worker: &mut Worker<L>,
    queue: &mut VecDeque<Unit>,
    clocks: &Clocks,
    limit: Duration,
    grace: Duration,
) {
    let now = clocks.now;
    // A worker being shut down (terminate) may still finish its running call during
    // the grace: that call keeps its own limit, so an answer past it is `TimedOut`,
    // never a success that ran longer than allowed.
    if worker
        .stop
        .is_some_and(|why| !matches!(why, Stop::Shutdown))
    {
        return;
    }
    let Some(run) = worker.running.as_mut() else {
        return;
    };
    if run.check_at.is_none_or(|at| at > now) {
        return;
    }
    if let Some(until) = run.stopping_at {
        // Expired: waiting for the answers of calls finished before the culprit.
        let claimed = run.claimed(&worker.link.page().snapshot());
        if run.answered + 1 >= claimed || until <= now {
            worker.stop(Stop::Timeout, grace, now);
        } else {
            run.check_at = Some((now + ANSWER_LOOK).min(until));
        }
        return;
    }
    let seen = worker.link.page().snapshot();
    let started = clocks.instant(seen.started_ns);
    match timeout_step(run, &seen, started, now, limit) {
        TimeoutStep::LookAt(at) => run.check_at = Some(at),
        TimeoutStep::Expire => {
            let Some(claimed) = worker.take_back_unstarted(queue) else {
                // It moved on to its next call meanwhile: look again at once.
                if let Some(run) = worker.running.as_mut() {
                    run.check_at = Some(now);
                }
                return;
            };
            // Ended if everything it started is answered: nothing to stop.
            let Some(run) = worker.running.as_mut() else {
                return;
            };
            run.expired = Some(claimed - 1);
            run.expired_at_ns = clocks.now_ns;
            if run.answered + 1 == claimed {
                worker.stop(Stop::Timeout, grace, now);
            } else {
                run.stopping_at = Some(now + ANSWER_WAIT);
                run.check_at = Some(now + ANSWER_LOOK);
            }
        }
        TimeoutStep::Unresponsive => {
            if worker.take_back_unstarted(queue) == Some(0) {
                worker.stop(Stop::Unresponsive, grace, now);
            } else if let Some(run) = worker.running.as_mut() {
                run.check_at = Some(now);
            }
        }
    }
}
