//! Deadlines: each running call's time limit, kills after a grace period, settling a
//! worker whose exit and channel end did not come together, restart back-offs.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::super::job::Unit;
use super::super::ports::{Io, WorkerLink};
use super::super::running::{timeout_step, Clocks, TimeoutStep, ANSWER_LOOK, ANSWER_WAIT};
use super::group_kill::GroupKill;
use super::state::Dispatcher;
use super::worker::{Stop, Worker};
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
                // A call being stopped keeps its own limit (see `look_at_time_limit`).
                let look = match (&w.running, w.stop) {
                    (Some(run), None | Some(Stop::Shutdown | Stop::Requested)) => run.check_at,
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
                // A call already being stopped for its limit keeps its schedule. (A
                // look finds no limit, the pool's or the call's own: no more looks.)
                if run.stopping_at.is_none() {
                    run.check_at = Some(now);
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
            look_at_time_limit(worker, &mut self.queue, &clocks, limit, grace);
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
    pool_limit: Option<Duration>,
    grace: Duration,
) {
    let now = clocks.now;
    // A worker being shut down (terminate) or asked to stop its call (`stop_call`)
    // may still finish its running call during the grace: that call keeps its own
    // limit, so an answer past it is `TimedOut`, never a success that ran longer than
    // allowed (a stopped call's limit was suspended: found by the simulation).
    let winding_down = matches!(worker.stop, Some(Stop::Shutdown | Stop::Requested));
    if worker.stop.is_some() && !winding_down {
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
    // The running call's own limit (the pool's, or shorter: its own).
    let Some(limit) = run.call_limit(&seen, pool_limit) else {
        // None for this call; a later one of its unit with one is looked at in time.
        run.check_at = run
            .later_limit(&seen, pool_limit)
            .and_then(|l| now.checked_add(l));
        return;
    };
    match timeout_step(run, &seen, started, now, limit) {
        TimeoutStep::LookAt(at) => run.check_at = Some(at),
        TimeoutStep::Expire => {
            // Against the look the decision was made on: if the worker has moved on to
            // its next call since, that call is not the one that passed its limit.
            // A worker being shut down had what it had not started taken back then
            // (the page cannot be lowered again): only the running call is marked.
            let claimed = if winding_down {
                worker.running.as_ref().map(|r| r.claimed(&seen))
            } else {
                worker.take_back_unstarted_as_seen(queue, seen)
            };
            let Some(claimed) = claimed else {
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
            if winding_down {
                // Already being stopped: marked once, looked at no more (a later look
                // would move the expiry past the call's end and take its answer).
                run.check_at = None;
                return;
            }
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::Arc;
    use std::time::SystemTime;

    use supervisor_worker::progress::Progress;
    use supervisor_worker::protocol::ToChild;

    use super::super::super::job::{HandleState, Job, Sink};
    use super::super::super::running::Running;
    use super::*;
    use crate::reaper::Exit;

    /// A worker that, as a real one may, finishes its running call and claims the
    /// next one just after the parent's first look at its page (at its `at`-th look).
    struct Racing {
        page: Progress,
        looks: Cell<u32>,
        at: u32,
        claim: (u64, u32, u64),
        terminated: Cell<bool>,
    }

    impl WorkerLink for Racing {
        fn pid(&self) -> u32 {
            1
        }
        fn page(&self) -> &Progress {
            self.looks.set(self.looks.get() + 1);
            if self.looks.get() == self.at {
                let (seq, i, ns) = self.claim;
                assert!(self.page.claim(seq, i, ns));
            }
            &self.page
        }
        fn is_open(&self) -> bool {
            true
        }
        fn close(&mut self) {}
        fn send_unit(&mut self, _: u64, _: &Unit) -> bool {
            true
        }
        fn send_init(&mut self, _: &ToChild) -> bool {
            true
        }
        fn terminate(&self) {
            self.terminated.set(true);
        }
        fn kill(&self) {}
        fn kill_tree(&self) {}
        fn rss_kib(&self) -> Option<u64> {
            None
        }
        fn terminate_group(&self) {}
        fn exit(&self) -> Option<Exit> {
            None
        }
        fn group_runs(&self) -> bool {
            false
        }
        fn end_input(&self) -> bool {
            false
        }
        fn reading(&self) -> bool {
            true
        }
        fn expect(&self, _: bool) {}
        fn lend_to(&self, _: &Arc<HandleState>) {}
    }

    /// A worker running `run` that makes `claim` at its `at`-th look at `page`.
    fn racing(page: Progress, at: u32, claim: (u64, u32, u64), run: Running) -> Worker<Racing> {
        let link = Racing {
            page,
            looks: Cell::new(0),
            at,
            claim,
            terminated: Cell::new(false),
        };
        let mut worker = Worker::new(1, link);
        worker.running = Some(run);
        worker
    }

    /// Call 0 of a unit of three has run past its limit at the parent's look; the
    /// worker ends it and claims call 1 before the parent takes the rest back. Call 1
    /// just started: it is neither marked as timed out nor stopped; the parent looks
    /// again (on the old code the take-back looked at the page afresh and charged the
    /// timeout to call 1).
    #[test]
    fn a_time_limit_decision_never_lands_on_the_call_that_started_after_its_look() {
        let limit = Duration::from_millis(150);
        let ms = |n: u64| n * 1_000_000;
        let now_ns = ms(10_000);
        let clocks = Clocks {
            now: Instant::now(),
            wall: SystemTime::now(),
            now_ns,
        };
        let jobs = (0..3)
            .map(|id| Job::new(id, "t", Vec::new(), Sink::Handle(HandleState::new())))
            .collect();
        let seq = 9;
        let page = Progress::new();
        page.begin(seq, 3);
        assert!(page.claim(seq, 0, now_ns - ms(200)));
        let sent = clocks.now - Duration::from_millis(201);
        let mut run = Running::new(seq, Unit::new("t", jobs), sent, Some(limit));
        run.check_at = Some(clocks.now);
        let mut worker = racing(page, 2, (seq, 1, now_ns), run);
        let mut queue = VecDeque::new();
        look_at_time_limit(
            &mut worker,
            &mut queue,
            &clocks,
            Some(limit),
            Duration::ZERO,
        );
        let run = worker.running.as_ref().expect("still running");
        assert_eq!(run.expired, None, "the call that just started timed out");
        assert!(worker.stop.is_none() && !worker.link.terminated.get());
        assert_eq!(run.check_at, Some(clocks.now), "looks again at once");
        assert!(queue.is_empty());
        assert_eq!(worker.link.page.snapshot().limit, 3, "nothing taken back");
    }

    /// `cancel_pending` (and a retiring worker) take back what has not started: a
    /// worker that claims its next call between the parent's look and its swap makes
    /// the swap fail, and the parent looks again until nothing more can start (the old
    /// code gave up, and the rest of the unit ran after the cancel).
    #[test]
    fn a_take_back_raced_by_a_claim_looks_again_until_nothing_more_can_start() {
        let jobs = (0..4)
            .map(|id| Job::new(id, "t", Vec::new(), Sink::Handle(HandleState::new())))
            .collect();
        let seq = 3;
        let page = Progress::new();
        page.begin(seq, 4);
        assert!(page.claim(seq, 0, 1));
        let run = Running::new(seq, Unit::new("t", jobs), Instant::now(), None);
        // It claims call 1 at the look of the swap.
        let mut worker = racing(page, 2, (seq, 1, 2), run);
        let mut queue = VecDeque::new();
        worker.take_back_all_unstarted(&mut queue);
        let run = worker.running.as_ref().expect("two calls still to answer");
        assert_eq!(run.limit, 2, "calls 0 and 1 started");
        let back: Vec<usize> = queue.iter().map(Unit::len).collect();
        assert_eq!(back, vec![2], "calls 2 and 3 are the pool's again");
        assert_eq!(worker.link.page.snapshot().limit, 2);
        assert!(!worker.link.page.claim(seq, 2, 3), "nothing more can start");
    }
}
