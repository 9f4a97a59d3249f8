//! Taking unstarted calls back from a worker whose running call has run
//! [`STEAL_AFTER`]: for an idle worker, before it gets later inputs from the queue
//! (`steal`), and from a busy worker holding later inputs while earlier ones wait
//! behind another worker's call (`give_back_later`). The decisions are the pure
//! functions [`take_from`], [`give_back`] and [`next_look`]; the claim protocol on the
//! progress page makes every take-back exact (a call is started by its worker or taken
//! back, never both).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::super::job::Unit;
use super::super::ports::{Io, WorkerLink};
use super::super::running::Clocks;
use super::state::Dispatcher;
use super::worker::Worker;

/// How long a call must have run before the unstarted calls queued behind it on its
/// worker may be taken back: about the cost of moving them (a round trip).
pub(super) const STEAL_AFTER: Duration = Duration::from_micros(100);

/// The unstarted calls waiting behind one worker's running call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Behind {
    pub(super) seat: usize,
    /// The id of the first of them: ids follow submission, so input, order.
    pub(super) first_id: u64,
    pub(super) calls: u32,
    /// When the running call has run [`STEAL_AFTER`]: from then on they may be taken.
    pub(super) due: Instant,
}

/// Whose unstarted calls an idle worker takes (`None`: take the queue's head, or
/// nothing), given what waits behind each running call and the id of the queue's
/// first call (`None`: nothing queued): of those due, the ones whose first is the
/// oldest (of equals, the most calls), if it is older than everything queued. So an
/// idle worker never runs a later input while an earlier one, sent ahead, waits
/// behind a call that has run [`STEAL_AFTER`].
pub(super) fn take_from(behind: &[Behind], queue_head: Option<u64>, now: Instant) -> Option<usize> {
    let oldest = behind
        .iter()
        .filter(|b| b.due <= now)
        .min_by_key(|b| (b.first_id, std::cmp::Reverse(b.calls)))?;
    queue_head
        .is_none_or(|head| oldest.first_id < head)
        .then_some(oldest.seat)
}

/// Whose unstarted calls go back to the queue while no worker is idle: every due
/// one but the oldest. The worker then ends its unit with its running call, and,
/// idle, takes the oldest (`take_from`) before these, which wait in the queue: a
/// busy worker does not go on with later inputs sent ahead to it while an earlier
/// one waits behind another's slow call.
pub(super) fn give_back(behind: &[Behind], now: Instant) -> Vec<usize> {
    let due = || behind.iter().filter(|b| b.due <= now);
    let Some(oldest) = due().map(|b| b.first_id).min() else {
        return Vec::new();
    };
    due()
        .filter(|b| b.first_id > oldest)
        .map(|b| b.seat)
        .collect()
}

/// When to look again (`None`: no need). With a worker idle and nothing queued:
/// when the first of `behind` is due, or at `between` (a worker between calls, whose
/// next may be slow). Otherwise only if some are due already (a call is stuck): when
/// a later one behind another call, or an older one, becomes due, so that
/// [`give_back`] acts then. Nothing is looked at for calls that all run briefly, so
/// a run of fast calls costs no wake-up.
pub(super) fn next_look(
    behind: &[Behind],
    between: Option<Instant>,
    idle_and_empty: bool,
    now: Instant,
) -> Option<Instant> {
    if idle_and_empty {
        // (One due already was taken, or its worker moved on: its next event tells.)
        let later = behind.iter().map(|b| b.due).filter(|due| *due > now);
        return later.chain(between).min();
    }
    let due = behind.iter().filter(|b| b.due <= now);
    let (oldest, newest) = due.fold((u64::MAX, 0), |(lo, hi), b| {
        (lo.min(b.first_id), hi.max(b.first_id))
    });
    if oldest == u64::MAX {
        return None;
    }
    behind
        .iter()
        .filter(|b| b.due > now && (b.first_id > oldest || b.first_id < newest))
        .map(|b| b.due)
        .min()
}

impl<X: Io> Dispatcher<X> {
    /// What waits behind each running call, and the earliest look a worker between
    /// calls asks for.
    fn behind(&self, clocks: &Clocks) -> (Vec<Behind>, Option<Instant>) {
        let mut behind = Vec::new();
        let mut between = None;
        for (seat, s) in self.seats.iter().enumerate() {
            let Some(w) = s.worker.as_ref() else { continue };
            match waiting(w, seat, clocks) {
                Ok(b) => behind.push(b),
                Err(Some(at)) => between = Some(between.map_or(at, |b: Instant| b.min(at))),
                Err(None) => {}
            }
        }
        (behind, between)
    }

    /// Whether any calls are due, looked at without collecting them: in a run of
    /// brief calls (the common case) nothing is, and nothing more is done.
    pub(super) fn any_due(&self, clocks: &Clocks) -> bool {
        self.seats.iter().enumerate().any(|(seat, s)| {
            s.worker
                .as_ref()
                .is_some_and(|w| waiting(w, seat, clocks).is_ok_and(|b| b.due <= clocks.now))
        })
    }

    /// When the calls waiting behind running calls should next be looked at.
    pub(super) fn steal_look(&self, clocks: &Clocks) -> Option<Instant> {
        if self.broken.is_some() || self.terminating {
            return None;
        }
        let idle_and_empty = self.queue.is_empty() && self.any_idle();
        if !idle_and_empty && !self.any_due(clocks) {
            return None;
        }
        let (behind, between) = self.behind(clocks);
        next_look(&behind, between, idle_and_empty, clocks.now)
    }

    /// An idle worker: take every unstarted call waiting behind a running call, from
    /// the worker [`take_from`] names. False if there is nothing to take now.
    pub(super) fn steal(&mut self, clocks: &Clocks) -> bool {
        if !self.any_due(clocks) {
            return false;
        }
        let (behind, _) = self.behind(clocks);
        let head = self.queue.front().map(Unit::first_id);
        let Some(seat) = take_from(&behind, head, clocks.now) else {
            return false;
        };
        // All of them, in order: taking only the later half left the earlier ones
        // behind the slow call while the thief ran ahead. (If the worker moved on
        // meanwhile, the caller looks again.)
        if let Some(worker) = self.seats[seat].worker.as_mut() {
            let _ = worker.take_back_unstarted(&mut self.queue);
        }
        true
    }

    /// Takes back what [`give_back`] names, each into the queue before the first
    /// unit of later calls (so the queue stays in input order).
    pub(super) fn give_back_later(&mut self, clocks: &Clocks) {
        if !self.any_due(clocks) {
            return;
        }
        let (behind, _) = self.behind(clocks);
        for seat in give_back(&behind, clocks.now) {
            let Some(worker) = self.seats[seat].worker.as_mut() else {
                continue;
            };
            let mut taken = VecDeque::new();
            let _ = worker.take_back_unstarted(&mut taken);
            for unit in taken.into_iter().rev() {
                let id = unit.first_id();
                let at = self
                    .queue
                    .iter()
                    .position(|u| u.first_id() > id)
                    .unwrap_or(self.queue.len());
                self.queue.insert(at, unit);
            }
        }
    }
}

/// What waits behind `w`'s running call (at seat `seat`): `Ok` if unstarted calls
/// wait behind a started one; else `Err(when)` to look again then (a worker between
/// calls: its next may be slow), `Err(None)`: nothing could be taken.
fn waiting<L: WorkerLink>(
    w: &Worker<L>,
    seat: usize,
    clocks: &Clocks,
) -> Result<Behind, Option<Instant>> {
    let Some(run) = w.running.as_ref() else {
        return Err(None);
    };
    // A unit of one call left has nothing that could wait behind another.
    if w.stop.is_some() || run.stopping_at.is_some() || run.limit < run.answered + 2 {
        return Err(None);
    }
    let seen = w.link.page().snapshot();
    let claimed = run.claimed(&seen);
    let unstarted = run.limit.saturating_sub(claimed);
    if seen.seq != run.seq || unstarted == 0 {
        return Err(None);
    }
    if claimed <= run.answered {
        // Not started yet, or between calls: it takes its next call itself; look
        // again in case that call turns out slow.
        return Err(Some(clocks.now + STEAL_AFTER));
    }
    let first_id = run
        .unit
        .id_at((claimed - run.answered) as usize)
        .ok_or(None)?;
    Ok(Behind {
        seat,
        first_id,
        calls: unstarted,
        due: clocks.instant(seen.started_ns) + STEAL_AFTER,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, us: u64) -> Instant {
        base + Duration::from_micros(us)
    }

    fn b(base: Instant, seat: usize, first_id: u64, calls: u32, due_us: u64) -> Behind {
        Behind {
            seat,
            first_id,
            calls,
            due: at(base, due_us),
        }
    }

    #[test]
    fn an_idle_worker_takes_the_oldest_due_calls_before_the_queue() {
        let t = Instant::now();
        let now = at(t, 1_000);
        // (what waits, the queue's head, whose calls are taken)
        let table: &[(&[Behind], Option<u64>, Option<usize>)] = &[
            (&[], None, None),
            (&[], Some(5), None),
            // Not due yet: the queue's head (or nothing, and a look later).
            (&[b(t, 0, 1, 9, 1_001)], None, None),
            (&[b(t, 0, 1, 9, 1_001)], Some(50), None),
            // Due and older than the queue's head: taken first (the adversary's case).
            (&[b(t, 0, 1, 9, 1_000)], Some(50), Some(0)),
            (&[b(t, 0, 1, 9, 900)], None, Some(0)),
            // Later than the queue's head (a retried call queued at the front): the
            // queue first.
            (&[b(t, 0, 60, 9, 900)], Some(50), None),
            // The oldest of several, not the most.
            (
                &[b(t, 0, 60, 90, 900), b(t, 1, 20, 3, 900)],
                Some(100),
                Some(1),
            ),
            (
                &[b(t, 0, 60, 90, 900), b(t, 1, 20, 3, 1_200)],
                None,
                Some(0),
            ),
        ];
        for (i, (behind, head, want)) in table.iter().enumerate() {
            assert_eq!(take_from(behind, *head, now), *want, "row {i}");
        }
    }

    #[test]
    fn busy_workers_give_back_later_calls_while_an_older_one_is_stuck() {
        let t = Instant::now();
        let now = at(t, 1_000);
        let table: &[(&[Behind], &[usize])] = &[
            (&[], &[]),
            (&[b(t, 0, 1, 9, 900)], &[]),
            // The stuck worker holds the oldest: the other's later calls go back.
            (&[b(t, 0, 1, 9, 900), b(t, 1, 40, 9, 950)], &[1]),
            (
                &[b(t, 0, 40, 9, 900), b(t, 1, 1, 9, 950), b(t, 2, 70, 1, 1)],
                &[0, 2],
            ),
            // Not due: it goes on with its own (its call may end in a moment).
            (&[b(t, 0, 1, 9, 900), b(t, 1, 40, 9, 1_050)], &[]),
        ];
        for (i, (behind, want)) in table.iter().enumerate() {
            assert_eq!(give_back(behind, now), *want, "row {i}");
        }
    }

    #[test]
    fn looks_are_timed_only_for_idle_workers_or_around_a_stuck_call() {
        let t = Instant::now();
        let now = at(t, 1_000);
        let soon = Some(at(t, 1_100));
        // (what waits, a worker between calls asks, idle with nothing queued, look)
        type Row<'a> = (&'a [Behind], Option<Instant>, bool, Option<Instant>);
        let table: &[Row] = &[
            (&[], None, true, None),
            (&[], soon, true, soon),
            (&[b(t, 0, 1, 9, 1_050)], soon, true, Some(at(t, 1_050))),
            // Busy workers on brief calls: no wake-up.
            (
                &[b(t, 0, 1, 9, 1_050), b(t, 1, 40, 9, 1_070)],
                None,
                false,
                None,
            ),
            // One stuck: when the other's later calls become due.
            (
                &[b(t, 0, 1, 9, 900), b(t, 1, 40, 9, 1_070)],
                None,
                false,
                Some(at(t, 1_070)),
            ),
            // One stuck holding later calls: when the older ones become due.
            (
                &[b(t, 0, 40, 9, 900), b(t, 1, 1, 9, 1_030)],
                None,
                false,
                Some(at(t, 1_030)),
            ),
            // An older one behind a brief call: when it becomes due, the stuck
            // worker's later calls go back.
            (
                &[b(t, 0, 1, 9, 900), b(t, 1, 0, 9, 1_030)],
                None,
                false,
                Some(at(t, 1_030)),
            ),
            // One stuck alone: nothing to look for.
            (&[b(t, 0, 1, 9, 900)], None, false, None),
        ];
        for (i, (behind, between, idle, want)) in table.iter().enumerate() {
            assert_eq!(next_look(behind, *between, *idle, now), *want, "row {i}");
        }
    }
}
