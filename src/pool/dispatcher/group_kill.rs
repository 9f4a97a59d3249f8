//! A dead worker's process group that must still be emptied on time.

use std::time::{Duration, Instant};

use super::super::ports::WorkerLink;

/// How often a stopped worker's leftover process group is looked at, at first and at
/// most, while it waits for its SIGKILL (the pool cannot finish before it is empty).
const GROUP_CHECK: Duration = Duration::from_millis(1);
const GROUP_CHECK_MAX: Duration = Duration::from_millis(50);

/// A dead worker's process group, SIGKILLed at the end of the grace period unless it
/// empties first (looked at with a growing interval).
pub(super) struct GroupKill<L> {
    kill_at: Instant,
    check_at: Instant,
    every: Duration,
    /// SIGKILL was sent: `kill_at` is then when to stop waiting for it to empty.
    killed: bool,
    /// The dead worker, for its process group.
    pub(super) link: L,
}

impl<L: WorkerLink> GroupKill<L> {
    pub(super) fn new(kill_at: Instant, link: L, now: Instant) -> GroupKill<L> {
        GroupKill {
            kill_at,
            check_at: now + GROUP_CHECK,
            every: GROUP_CHECK,
            killed: false,
            link,
        }
    }

    pub(super) fn next_wake(&self) -> Instant {
        self.kill_at.min(self.check_at)
    }

    /// Acts on what is due at `now`; false once nothing is left to do.
    pub(super) fn pending(&mut self, now: Instant) -> bool {
        if !self.killed && self.kill_at <= now {
            self.link.kill();
            // Looked at until its members are gone (they die a moment after the
            // signal), for a bounded time: the pool's end waits for that.
            self.killed = true;
            self.kill_at = now + crate::group_sweep::GONE_WITHIN;
            self.every = GROUP_CHECK;
            self.check_at = now + GROUP_CHECK;
            return true;
        }
        if self.killed && self.kill_at <= now {
            return false;
        }
        if self.check_at > now {
            return true;
        }
        if !self.link.group_runs() {
            return false;
        }
        self.every = (self.every * 2).min(GROUP_CHECK_MAX);
        self.check_at = now + self.every;
        true
    }
}
