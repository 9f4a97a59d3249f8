//! Telling a restart storm from bad luck.
//!
//! A worker that dies while running a call is that call's failure (it uses the call's
//! retries) and never counts here. What counts is a worker that dies, or cannot be
//! started, before it finished anything: at start-up, in set-up, or while idle. Each
//! such death delays the next start (10 ms, doubling up to 1 s: a crash-loop
//! back-off); any call answered by any worker ends the storm. More than `max` such
//! deaths within `within`, with no call answered in between, break the pool.
//!
//! A worker that cannot be started for want of a resource (descriptors, processes,
//! memory) while another worker of the pool runs is not a storm: the pool goes on with
//! the workers it has and tries again after the same back-off ([`Storm::defer`]),
//! never breaking for it, as GNU parallel runs fewer jobs when it is short of
//! descriptors. With no worker running, such failures count as any other.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::RestartLimit;

const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

pub(crate) struct Storm {
    limit: RestartLimit,
    deaths: VecDeque<Instant>,
    backoff: Duration,
}

/// What a death that counts means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Start a replacement no earlier than this.
    RestartAt(Instant),
    /// Too many: the pool is broken (with this many deaths in the window).
    Break(usize),
}

impl Storm {
    pub(crate) fn new(limit: RestartLimit) -> Storm {
        Storm {
            limit,
            deaths: VecDeque::new(),
            backoff: FIRST_BACKOFF,
        }
    }

    /// A worker died (or failed to start) before finishing anything.
    pub(crate) fn death(&mut self, now: Instant) -> Verdict {
        self.deaths.push_back(now);
        while self
            .deaths
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.limit.within)
        {
            self.deaths.pop_front();
        }
        if self.deaths.len() as u64 > u64::from(self.limit.max) {
            return Verdict::Break(self.deaths.len());
        }
        let at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Verdict::RestartAt(at)
    }

    /// A worker could not be started for want of a resource while others run: not a
    /// death that counts, only a back-off before the next try.
    pub(crate) fn defer(&mut self, now: Instant) -> Instant {
        let at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        at
    }

    /// Some worker answered a call: whatever died before was bad luck.
    pub(crate) fn progress(&mut self) {
        if !self.deaths.is_empty() || self.backoff != FIRST_BACKOFF {
            self.deaths.clear();
            self.backoff = FIRST_BACKOFF;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storm(max: u32, secs: u64) -> Storm {
        Storm::new(RestartLimit {
            max,
            within: Duration::from_secs(secs),
        })
    }

    #[test]
    fn deaths_back_off_and_break_the_pool_past_the_limit() {
        let t0 = Instant::now();
        let mut s = storm(3, 60);
        let ms = Duration::from_millis;
        assert_eq!(s.death(t0), Verdict::RestartAt(t0 + ms(10)));
        assert_eq!(s.death(t0 + ms(10)), Verdict::RestartAt(t0 + ms(30)));
        assert_eq!(s.death(t0 + ms(30)), Verdict::RestartAt(t0 + ms(70)));
        assert_eq!(s.death(t0 + ms(70)), Verdict::Break(4));
    }

    #[test]
    fn any_answered_call_ends_the_storm() {
        let t0 = Instant::now();
        let mut s = storm(2, 60);
        for i in 0..100u64 {
            let now = t0 + Duration::from_millis(i);
            assert!(matches!(s.death(now), Verdict::RestartAt(_)));
            assert!(matches!(s.death(now), Verdict::RestartAt(_)));
            s.progress();
        }
        // Back-off starts over too.
        let now = t0 + Duration::from_secs(1);
        assert_eq!(s.death(now), Verdict::RestartAt(now + FIRST_BACKOFF));
    }

    /// Deferred starts back off as deaths do but never break the pool, and do not
    /// count toward a storm that follows.
    #[test]
    fn deferred_starts_back_off_and_never_break_the_pool() {
        let t0 = Instant::now();
        let mut s = storm(2, 60);
        let mut now = t0;
        for i in 0..100u32 {
            let at = s.defer(now);
            let want = (FIRST_BACKOFF * 2u32.saturating_pow(i.min(10))).min(MAX_BACKOFF);
            assert_eq!(at - now, want, "try {i}");
            now = at;
        }
        assert!(matches!(s.death(now), Verdict::RestartAt(_)));
        assert!(matches!(s.death(now), Verdict::RestartAt(_)));
        assert_eq!(s.death(now), Verdict::Break(3));
    }

    #[test]
    fn the_back_off_stops_growing_at_a_second_and_old_deaths_leave_the_window() {
        let t0 = Instant::now();
        let mut s = storm(5, 10);
        let mut now = t0;
        for _ in 0..5 {
            match s.death(now) {
                Verdict::RestartAt(at) => now = at,
                v => panic!("{v:?}"),
            }
        }
        // 10+20+40+80+160 ms later: the next delays are capped at 1 s.
        assert!(matches!(s.death(now), Verdict::Break(6)));
        let mut s = storm(2, 1);
        let mut now = t0;
        for _ in 0..20 {
            assert!(matches!(s.death(now), Verdict::RestartAt(_)));
            now += Duration::from_millis(600);
        }
    }
}
