//! The pure decisions about memory (`memory_limit`, `max_memory_per_child`): when to
//! look, and what a reading means. The pool's dispatcher (through `Io` and
//! `WorkerLink`) and a `Process`'s watchdog read the memory and act.

use std::time::Duration;

/// How often a pool with a `memory_limit` looks at its busy workers' memory (and a
/// `Process` with one at its child's).
pub(crate) const MEMORY_LOOK: Duration = Duration::from_millis(20);
/// What a reading of a worker's memory means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemoryVerdict {
    /// Within every limit.
    Fine,
    /// Over `memory_limit` while a task runs: kill it with everything it started.
    Kill,
    /// Over the recycling limit after a task: no more work for it; it is replaced.
    Retire,
}

fn over(kib: u64, limit_bytes: u64) -> bool {
    kib.saturating_mul(1024) > limit_bytes
}

/// A busy worker's tree (it and its descendants) holds `tree_kib`: over the limit, it
/// is killed.
pub(crate) fn while_running(tree_kib: u64, memory_limit: u64) -> MemoryVerdict {
    if over(tree_kib, memory_limit) {
        MemoryVerdict::Kill
    } else {
        MemoryVerdict::Fine
    }
}

/// The memory above which a worker is recycled after a task: the lower of
/// `max_memory_per_child` and `memory_limit`, if any.
pub(crate) fn retire_above(
    max_memory_per_child: Option<u64>,
    memory_limit: Option<u64>,
) -> Option<u64> {
    match (max_memory_per_child, memory_limit) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A worker holds `kib` after answering a task: above `max_memory_per_child`, or above
/// `memory_limit` (its next task would be charged for memory it did not take), it is
/// recycled.
pub(crate) fn after_task(
    kib: u64,
    max_memory_per_child: Option<u64>,
    memory_limit: Option<u64>,
) -> MemoryVerdict {
    let Some(limit) = retire_above(max_memory_per_child, memory_limit) else {
        return MemoryVerdict::Fine;
    };
    if over(kib, limit) {
        MemoryVerdict::Retire
    } else {
        MemoryVerdict::Fine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_reading_over_a_limit_kills_or_retires_and_at_the_limit_does_not() {
        use MemoryVerdict::*;
        for (kib, limit, want) in [
            (0, 64 * MIB, Fine),
            (64 * 1024, 64 * MIB, Fine),
            (64 * 1024 + 1, 64 * MIB, Kill),
            (u64::MAX, 64 * MIB, Kill),
            (1, 0, Kill),
        ] {
            assert_eq!(while_running(kib, limit), want, "{kib} KiB, limit {limit}");
        }
        for (kib, per_child, limit, want) in [
            (100 * 1024, None, None, Fine),
            (100 * 1024, Some(64 * MIB), None, Retire),
            (100 * 1024, Some(200 * MIB), None, Fine),
            // A worker left above the task limit would charge its next task: recycled.
            (100 * 1024, None, Some(64 * MIB), Retire),
            (100 * 1024, Some(200 * MIB), Some(64 * MIB), Retire),
            (100 * 1024, Some(64 * MIB), Some(200 * MIB), Retire),
            (10 * 1024, Some(64 * MIB), Some(200 * MIB), Fine),
        ] {
            assert_eq!(
                after_task(kib, per_child, limit),
                want,
                "{kib} KiB, per child {per_child:?}, limit {limit:?}"
            );
        }
    }
}
