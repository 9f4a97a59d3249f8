//! [`Spikes`]: a call that took this process (or a descendant it reaped) over
//! `memory_limit` fails as `MemoryExceeded`, however briefly it was over. The parent
//! looks at a busy worker's memory every 20 ms; a call that allocates past the limit
//! and frees it between two looks is caught here, by the kernel's high-water marks.

use std::cell::Cell;

use crate::protocol::TaskOutcome;

/// Whether a call is charged: the peak (KiB) was within `limit` (bytes) before it and
/// is over it after. A peak already over before proves nothing about this call (the
/// mark never goes down), so it is not charged. The worker is recycled after a call
/// that was charged; a mark that went over outside a judged call (an initializer, a
/// huge frame received) leaves its later calls to the parent's looks.
pub(crate) fn charged(before_kib: u64, after_kib: u64, limit: u64) -> bool {
    let over = |kib: u64| kib.saturating_mul(1024) > limit;
    !over(before_kib) && over(after_kib)
}

/// The high-water mark a call is judged by, in KiB: this process's (any thread's
/// memory) and the largest of the descendants it reaped (a command the task ran,
/// what it left that was ended after it). One process over the limit puts the tree
/// over it; a tree over it only in sum is left to the parent's looks.
///
/// Its own `ru_maxrss` (one system call) is the higher of its memory's mark and the
/// mark its process inherited across `exec`: a spawned worker's starts at its parent
/// program's peak. Only when that is over `limit` is its memory's own mark read
/// (`VmHWM`, a read of /proc), so a worker of a program that once held more than the
/// limit still has its calls judged by what they take.
fn peak_kib(limit: u64) -> u64 {
    let mut own = crate::os::peak_rss_kib();
    if own.saturating_mul(1024) > limit {
        own = crate::os::own_mm_peak_kib().unwrap_or(own);
    }
    own.max(crate::os::reaped_children_peak_rss_kib())
}

/// Judges each call by the high-water marks around it (two system calls a call, with
/// a limit set; none without).
pub(crate) struct Spikes {
    limit: Option<u64>,
    /// The peak before the next call (the last call's reading after it).
    before_kib: Cell<u64>,
    /// A call was charged: the marks stay over the limit, so no later call of this
    /// process can be judged; it claims no more calls (the parent recycles it).
    spent: Cell<bool>,
}

impl Spikes {
    pub(crate) fn new(limit: Option<u64>) -> Spikes {
        Spikes {
            limit,
            before_kib: Cell::new(0),
            spent: Cell::new(false),
        }
    }

    /// Before a unit's first call (or a single call).
    pub(crate) fn start(&self) {
        if let Some(limit) = self.limit {
            self.before_kib.set(peak_kib(limit));
        }
    }

    /// After a call (and after what it left running was ended): its outcome, or
    /// `MemoryExceeded` in its place if it took the peak over the limit (what it
    /// returned is dropped: a call over the limit fails, however it ended).
    pub(crate) fn judge(&self, outcome: TaskOutcome) -> TaskOutcome {
        self.exceeded().unwrap_or(outcome)
    }

    /// `Some(MemoryExceeded)` if the call just ended took the peak over the limit. The
    /// reading is the next call's "before".
    pub(crate) fn exceeded(&self) -> Option<TaskOutcome> {
        let limit = self.limit?;
        let after = peak_kib(limit);
        let before = self.before_kib.replace(after);
        if !charged(before, after, limit) {
            return None;
        }
        self.spent.set(true);
        Some(TaskOutcome::MemoryExceeded {
            limit,
            peak_rss_kib: after,
        })
    }

    /// Whether calls are judged (a limit is set).
    pub(crate) fn active(&self) -> bool {
        self.limit.is_some()
    }

    /// A call was charged: this process runs no more.
    pub(crate) fn spent(&self) -> bool {
        self.spent.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_call_is_charged_only_when_it_crossed_the_limit() {
        for (before, after, limit, want) in [
            (10 * 1024, 10 * 1024, 64 * MIB, false),
            (10 * 1024, 64 * 1024, 64 * MIB, false),
            (10 * 1024, 64 * 1024 + 1, 64 * MIB, true),
            (64 * 1024, u64::MAX, 64 * MIB, true),
            // Over before: the mark says nothing about this call.
            (64 * 1024 + 1, 200 * 1024, 64 * MIB, false),
            (0, 1, 0, true),
        ] {
            assert_eq!(
                charged(before, after, limit),
                want,
                "{before} {after} {limit}"
            );
        }
    }

    /// A real spike, allocated, touched and freed within one call, is seen; the next
    /// call (the mark still over) is not charged, and the checker says it is spent.
    #[test]
    fn a_brief_spike_is_charged_once() {
        // Other tests of this binary run on other threads: a margin they never reach,
        // and a spike past it from nothing (the mark may be far above what is held).
        let peak = peak_kib(u64::MAX);
        let limit = (peak + 64 * 1024) * 1024;
        let spikes = Spikes::new(Some(limit));
        spikes.start();
        let mut v = vec![0u8; ((peak + 128 * 1024) * 1024) as usize];
        for page in v.chunks_mut(4096) {
            page[0] = 1;
        }
        drop(std::hint::black_box(v));
        match spikes.exceeded() {
            Some(TaskOutcome::MemoryExceeded {
                limit: l,
                peak_rss_kib,
            }) => {
                assert_eq!(l, limit);
                assert!(peak_rss_kib * 1024 > limit, "{peak_rss_kib}");
            }
            other => panic!("{other:?}"),
        }
        assert!(spikes.spent());
        assert!(
            spikes.exceeded().is_none(),
            "the mark stays over: not charged again"
        );
        assert!(Spikes::new(None).exceeded().is_none());
    }
}
