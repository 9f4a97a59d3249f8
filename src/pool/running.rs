//! The unit a worker runs, and the pure decisions about it: when its running call
//! times out and what a worker's death means for each of its calls. No process, socket or clock is touched here; the dispatcher
//! reads the worker's progress page and the time, asks, and acts.
//!
//! Positions are a unit's call positions (0 = its first call). A unit of `limit` calls
//! (after take-backs) whose first `answered` results arrived, whose worker has claimed
//! (started) `claimed` calls:
//!
//! ```text
//! 0 ........ answered ........ claimed-1 ........ claimed ........ limit
//! | delivered | finished, answer | running (or just | never started:  |
//! |           | still on its way | finished)        | ours to move    |
//! ```

use std::ops::Range;
use std::time::{Duration, Instant, SystemTime};

use supervisor_worker::progress::Snapshot;
use supervisor_worker::protocol::Timing;

use super::job::Unit;

/// The unit a worker runs.
pub(crate) struct Running {
    pub(crate) seq: u64,
    /// Its calls not answered yet (the first is call `answered`).
    pub(crate) unit: Unit,
    pub(crate) answered: u32,
    /// Calls the worker may run in all; lowered when calls are taken back.
    pub(crate) limit: u32,
    /// When it was sent.
    pub(crate) sent: Instant,
    /// When its time limit is looked at next (`None`: no limit).
    pub(crate) check_at: Option<Instant>,
    /// Its running call passed its time limit and nothing more may start; the worker is
    /// stopped once the calls finished before it are answered, or at this instant.
    pub(crate) stopping_at: Option<Instant>,
    /// The position of the call that passed its time limit: it timed out, so an answer
    /// for it (it may finish as it is being stopped) is not taken.
    pub(crate) expired: Option<u32>,
    /// When that was decided (monotonic ns, the page's clock).
    pub(crate) expired_at_ns: u64,
    /// The call that passed its time limit answered anyway (it finished while being
    /// stopped): its own timing (zero if its answer carried none), for its report.
    pub(crate) expired_answer: Option<Timing>,
    /// Whether that late answer was a success: a task that succeeded is never run
    /// again, one that failed (died of the stop, say) is retried as a timeout.
    pub(crate) expired_succeeded: bool,
}

/// How long a timed-out worker is given to send the answers of calls that finished
/// before the one that timed out (its flusher sends them within a millisecond or two).
pub(crate) const ANSWER_WAIT: Duration = Duration::from_millis(20);
/// How often that wait looks.
pub(crate) const ANSWER_LOOK: Duration = Duration::from_millis(1);

impl Running {
    pub(crate) fn new(seq: u64, unit: Unit, sent: Instant, limit: Option<Duration>) -> Running {
        let calls = unit.len() as u32;
        Running {
            seq,
            unit,
            answered: 0,
            limit: calls,
            sent,
            check_at: limit.and_then(|l| sent.checked_add(l)),
            stopping_at: None,
            expired: None,
            expired_at_ns: 0,
            expired_answer: None,
            expired_succeeded: false,
        }
    }

    /// The time limit of the call running (or the next to start) as `seen`, under
    /// the pool's limit `pool` (each call's own is the shorter of its and the pool's).
    pub(crate) fn call_limit(&self, seen: &Snapshot, pool: Option<Duration>) -> Option<Duration> {
        let claimed = self.claimed(seen);
        let at = claimed.saturating_sub(1).max(self.answered) - self.answered;
        match self.unit.jobs.get(at as usize) {
            Some(job) => job.limit_under(pool),
            None => pool,
        }
    }

    /// The shortest time limit of the calls after the one running as `seen`: none of
    /// them can pass it before that long from now (they start later).
    pub(crate) fn later_limit(&self, seen: &Snapshot, pool: Option<Duration>) -> Option<Duration> {
        let claimed = self.claimed(seen);
        let at = claimed.saturating_sub(1).max(self.answered) - self.answered;
        self.unit
            .jobs
            .iter()
            .skip(at as usize + 1)
            .filter_map(|j| j.limit_under(pool))
            .min()
    }

    /// The shortest time limit among the unit's calls under the pool's `pool`.
    pub(crate) fn shortest_limit(unit: &Unit, pool: Option<Duration>) -> Option<Duration> {
        unit.jobs
            .iter()
            .filter_map(|j| j.limit_under(pool))
            .min()
            .or(pool)
    }

    /// Calls claimed by the worker, as far as they concern this unit (0 if the page is
    /// about another unit; never outside `answered..=limit`, whatever the page says).
    pub(crate) fn claimed(&self, seen: &Snapshot) -> u32 {
        if seen.seq != self.seq {
            return self.answered;
        }
        seen.next.clamp(self.answered, self.limit)
    }
}

/// What to do about a unit's time limit at a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeoutStep {
    /// Nothing is due: look again then.
    LookAt(Instant),
    /// The running call has passed its limit: stop anything more from starting (take
    /// back every unstarted call), then stop the worker.
    Expire,
    /// Nothing of the unit has started within its limit of being sent: the worker is
    /// not taking work. Take everything back and stop it.
    Unresponsive,
}

/// The time-limit decision for `run` given its worker's page `seen` and the instant
/// `started` that the page's `started_ns` stands for. A call's limit runs from its own
/// start; the page never shows a start earlier than the real one, so this is never
/// early.
pub(crate) fn timeout_step(
    run: &Running,
    seen: &Snapshot,
    started: Instant,
    now: Instant,
    limit: Duration,
) -> TimeoutStep {
    let claimed = run.claimed(seen);
    if seen.seq != run.seq || claimed == 0 {
        return match run.sent.checked_add(limit) {
            Some(due) if due > now => TimeoutStep::LookAt(due),
            Some(_) => TimeoutStep::Unresponsive,
            None => TimeoutStep::LookAt(now + Duration::from_secs(3600)),
        };
    }
    if claimed <= run.answered {
        // Between calls: the next one starts no earlier than now.
        return TimeoutStep::LookAt(now + limit);
    }
    match started.checked_add(limit) {
        Some(due) if due > now => TimeoutStep::LookAt(due),
        Some(_) => TimeoutStep::Expire,
        None => TimeoutStep::LookAt(now + Duration::from_secs(3600)),
    }
}

/// What a dead (or stopped) worker's unit comes to, call by call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeathSplit {
    /// Finished, but their answers died with the worker: they ran, so they are never
    /// run again; they fail as lost.
    pub(crate) lost: Range<u32>,
    /// The call that was running: it fails (or is retried) with the death's cause.
    pub(crate) culprit: Option<u32>,
    /// Never started: queued again as they were, no retry used.
    pub(crate) unstarted: Range<u32>,
}

/// Splits `run`'s unanswered calls after its worker died, `claimed` calls having
/// started.
pub(crate) fn death_split(run: &Running, claimed: u32) -> DeathSplit {
    let claimed = claimed.clamp(run.answered, run.limit);
    if claimed == run.answered {
        return DeathSplit {
            lost: run.answered..run.answered,
            culprit: None,
            unstarted: run.answered..run.limit,
        };
    }
    DeathSplit {
        lost: run.answered..claimed - 1,
        culprit: Some(claimed - 1),
        unstarted: claimed..run.limit,
    }
}

/// The wall-clock and monotonic instants of a worker's `CLOCK_MONOTONIC` reading,
/// given one reading of all three clocks now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clocks {
    pub(crate) now: Instant,
    pub(crate) wall: SystemTime,
    pub(crate) now_ns: u64,
}

impl Clocks {
    pub(crate) fn read() -> Clocks {
        Clocks {
            now: Instant::now(),
            wall: SystemTime::now(),
            now_ns: supervisor_worker::progress::monotonic_ns(),
        }
    }

    fn ago(&self, ns: u64) -> Duration {
        Duration::from_nanos(self.now_ns.saturating_sub(ns))
    }

    pub(crate) fn instant(&self, ns: u64) -> Instant {
        self.now.checked_sub(self.ago(ns)).unwrap_or(self.now)
    }

    pub(crate) fn wall(&self, ns: u64) -> SystemTime {
        self.wall.checked_sub(self.ago(ns)).unwrap_or(self.wall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::job::Unit;

    fn running(answered: u32, limit: u32, sent: Instant) -> Running {
        let mut run = Running::new(5, Unit::new("t", Vec::new()), sent, None);
        run.answered = answered;
        run.limit = limit;
        run
    }

    fn seen(seq: u64, next: u32, limit: u32) -> Snapshot {
        Snapshot {
            seq,
            next,
            limit,
            started_ns: 0,
        }
    }

    #[test]
    fn a_call_times_out_at_its_own_start_plus_the_limit_never_earlier() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let limit = ms(100);
        let run = running(1, 4, t0);
        // Call 1 started at 50 ms: due at 150 ms, whatever the unit's send time.
        let started = t0 + ms(50);
        let cases = [
            (ms(120), TimeoutStep::LookAt(t0 + ms(150))),
            (ms(150), TimeoutStep::Expire),
            (ms(900), TimeoutStep::Expire),
        ];
        for (at, want) in cases {
            let got = timeout_step(&run, &seen(5, 2, 4), started, t0 + at, limit);
            assert_eq!(got, want, "at {at:?}");
        }
        // Between calls (everything claimed is answered): look a whole limit later.
        let got = timeout_step(&run, &seen(5, 1, 4), started, t0 + ms(500), limit);
        assert_eq!(got, TimeoutStep::LookAt(t0 + ms(600)));
        // Nothing started within the limit of being sent: unresponsive.
        let fresh = running(0, 4, t0);
        let got = timeout_step(&fresh, &seen(5, 0, 4), t0, t0 + ms(99), limit);
        assert_eq!(got, TimeoutStep::LookAt(t0 + ms(100)));
        let got = timeout_step(&fresh, &seen(5, 0, 4), t0, t0 + ms(100), limit);
        assert_eq!(got, TimeoutStep::Unresponsive);
        // A page about another unit counts as nothing started.
        let got = timeout_step(&fresh, &seen(4, 3, 4), t0, t0 + ms(10), limit);
        assert_eq!(got, TimeoutStep::LookAt(t0 + ms(100)));
    }

    #[test]
    fn a_death_costs_the_running_call_only_and_never_reruns_a_finished_one() {
        let t0 = Instant::now();
        // (answered, limit, claimed) -> (lost, culprit, unstarted)
        let cases = [
            ((0, 4, 0), (0..0, None, 0..4)),
            ((0, 4, 1), (0..0, Some(0), 1..4)),
            ((0, 4, 3), (0..2, Some(2), 3..4)),
            ((2, 4, 3), (2..2, Some(2), 3..4)),
            ((2, 4, 4), (2..3, Some(3), 4..4)),
            ((2, 4, 2), (2..2, None, 2..4)),
            // A page claiming more than exists, or less than answered, is clamped.
            ((1, 3, 99), (1..2, Some(2), 3..3)),
            ((2, 3, 0), (2..2, None, 2..3)),
        ];
        for ((answered, limit, claimed), (lost, culprit, unstarted)) in cases {
            let run = running(answered, limit, t0);
            let split = death_split(&run, claimed);
            assert_eq!(
                split,
                DeathSplit {
                    lost,
                    culprit,
                    unstarted
                },
                "answered {answered}, limit {limit}, claimed {claimed}"
            );
        }
    }

    /// Property: for any unit and any claim count, the split accounts for every
    /// unanswered call exactly once, and only the running call can be charged.
    #[test]
    fn a_death_split_covers_every_unanswered_call_once() {
        let t0 = Instant::now();
        for limit in 0..12u32 {
            for answered in 0..=limit {
                for claimed in 0..=limit + 2 {
                    let run = running(answered, limit, t0);
                    let s = death_split(&run, claimed);
                    let mut all: Vec<u32> = s.lost.clone().collect();
                    all.extend(s.culprit);
                    all.extend(s.unstarted.clone());
                    assert_eq!(all, (answered..limit).collect::<Vec<_>>());
                }
            }
        }
    }
}
