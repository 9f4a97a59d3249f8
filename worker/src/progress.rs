//! A pool worker's progress page: which call of its unit it runs, since when, and how
//! far it may go. The dispatcher owns every call until the worker claims it here.
//!
//! One page of shared memory per pool worker, made by the parent and handed over once
//! (`ToChild::Progress`). Its words:
//!
//! - `seq`: the unit the claim word is about (written by the parent before it sends
//!   the unit; the worker is idle then, so nobody else touches the page).
//! - `claim`: `tag << 48 | next << 24 | limit`, `tag` being the unit's `seq` modulo
//!   2^16. Call `i` of unit `seq` may start only by moving `next` from `i` to `i + 1`
//!   while `i < limit` and the tag is `seq`'s (one compare-and-swap): a unit taken back
//!   whole while its message still sat unread cannot run under its successor's claim. The parent
//!   takes unstarted calls back by lowering `limit` to no less than `next`, with the
//!   same kind of swap. So each call is either started by the worker or taken back by
//!   the parent, never both, and no system call is made on either side.
//! - `started`: a `CLOCK_MONOTONIC` time, in nanoseconds, no earlier than the start of
//!   the worker's last claim that the page allowed (the coarse clock plus its tick, at
//!   most about 4 ms late; the precise clock costs 25 ns a read on this kind of
//!   machine, a quarter of a tiny task). Written before the claim, so a parent that
//!   sees `next = i + 1` reads a time no earlier than call `i`'s start: a deadline
//!   computed from it is never early. A claim the page refuses as it stands (taken
//!   back, another unit) writes nothing, so the start of a call that finished while
//!   being stopped is not moved to the worker's attempt at the next one; only a
//!   take-back landing between that look and the swap leaves the refused attempt's
//!   (later) time.
//!
//! - The answer log, after the first 4 KiB: the answers of calls that finished but
//!   have not been sent yet, each as `[position u32][kind << 31 | len u32][bytes]`
//!   (8-aligned), with `log_seq` (the unit) and `log_end` (bytes written, published
//!   after the bytes). The worker appends each finished call's answer there as well as
//!   to the message it will send, and empties the log once that message is sent. If
//!   the worker dies, the parent reads from the log what finished but never arrived: a
//!   finished call is delivered, never run again. Plain memory writes, no system call.
//!
//! Everything a peer writes here is a number the parent checks against what it sent;
//! a lying worker can only hurt its own calls. The log is read only once its writer
//! is dead, and copied out before anything is decoded.

use std::sync::atomic::{AtomicU64, Ordering};

use ipc_channel::ipc::IpcSharedMemory;

use crate::os;

const SEQ: usize = 0;
const CLAIM: usize = 1;
const STARTED: usize = 2;
const LOG_SEQ: usize = 3;
const LOG_END: usize = 4;
const WORDS: usize = 5;
/// Where the answer log starts, and its size.
const LOG_AT: usize = 4096;
const LOG_BYTES: usize = 64 << 10;
/// Record kinds: a packed chunk's plain value, or an encoded outcome.
const KIND_VALUE: u32 = 0;
const KIND_OUTCOME: u32 = 1 << 31;

/// One answer read back from a dead worker's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logged {
    /// A chunk call's plain value (its encoding).
    Value(Vec<u8>),
    /// An encoded `(TaskOutcome, Timing)`.
    Outcome(Vec<u8>),
}

/// What the page says at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// The unit the claim is about.
    pub seq: u64,
    /// Calls claimed (started) so far.
    pub next: u32,
    /// Calls the worker may claim in all.
    pub limit: u32,
    /// `CLOCK_MONOTONIC` nanoseconds of the latest claim the page allowed (see the
    /// module docs): no earlier than call `next - 1`'s start.
    pub started_ns: u64,
}

/// One side's mapping of a progress page.
pub struct Progress(IpcSharedMemory);

/// Most calls in one unit.
pub const MAX_CALLS: u32 = (1 << 24) - 1;

fn tag(seq: u64) -> u64 {
    seq & 0xffff
}

fn pack(seq: u64, next: u32, limit: u32) -> u64 {
    (tag(seq) << 48) | (u64::from(next & MAX_CALLS) << 24) | u64::from(limit & MAX_CALLS)
}

/// `(tag, next, limit)`.
fn unpack(word: u64) -> (u64, u32, u32) {
    (
        word >> 48,
        ((word >> 24) as u32) & MAX_CALLS,
        (word as u32) & MAX_CALLS,
    )
}

impl Progress {
    /// A new page (parent side), with nothing to claim. Its log's pages are touched
    /// only when used.
    pub fn new() -> Progress {
        Progress(IpcSharedMemory::from_byte(0, LOG_AT + LOG_BYTES))
    }

    /// Adopts a page the parent sent. `None` if it is too small to be one.
    pub fn adopt(shm: IpcSharedMemory) -> Option<Progress> {
        (shm.len() >= WORDS * 8).then_some(Progress(shm))
    }

    /// Another mapping of the same page, to send to the worker.
    pub fn share(&self) -> IpcSharedMemory {
        self.0.clone()
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i < WORDS);
        // SAFETY: the mapping is page aligned and at least `WORDS * 8` bytes long
        // (checked in `adopt`, made so in `new`), so word `i` is an aligned, in-bounds
        // u64 living as long as `self`; both processes only access it atomically.
        unsafe { &*self.0.as_ptr().cast::<AtomicU64>().add(i) }
    }

    /// (Parent) Unit `seq` of `calls` calls (at most [`MAX_CALLS`]) is about to be
    /// sent: nothing of it claimed.
    pub fn begin(&self, seq: u64, calls: u32) {
        debug_assert!(calls <= MAX_CALLS);
        self.word(SEQ).store(seq, Ordering::Relaxed);
        self.word(CLAIM)
            .store(pack(seq, 0, calls.min(MAX_CALLS)), Ordering::Release);
    }

    /// The page now.
    pub fn snapshot(&self) -> Snapshot {
        let (tag_now, next, limit) = unpack(self.word(CLAIM).load(Ordering::Acquire));
        let seq = self.word(SEQ).load(Ordering::Relaxed);
        Snapshot {
            // Only the parent writes both, and never while it reads: a mismatch is a
            // peer scribbling on the page, which then speaks of no unit of ours.
            seq: if tag(seq) == tag_now { seq } else { u64::MAX },
            next,
            limit,
            started_ns: self.word(STARTED).load(Ordering::Acquire),
        }
    }

    /// (Parent) Lowers the limit of unit `seq` to `max(next, keep)`, if the page is
    /// still as `seen` says. Returns the new limit; `None` if the worker moved on (or
    /// the page is about another unit): look again.
    pub fn take_back(&self, seen: Snapshot, keep: u32) -> Option<u32> {
        if self.word(SEQ).load(Ordering::Relaxed) != seen.seq {
            return None;
        }
        let limit = keep.max(seen.next).min(seen.limit);
        self.word(CLAIM)
            .compare_exchange(
                pack(seen.seq, seen.next, seen.limit),
                pack(seen.seq, seen.next, limit),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .ok()
            .map(|_| limit)
    }

    /// (Worker) Claims call `i` of unit `seq`, recording its start. False if the
    /// parent took it back (or the page is about another unit): the unit ends before
    /// it.
    pub fn claim(&self, seq: u64, i: u32, now_ns: u64) -> bool {
        let mut word = self.word(CLAIM).load(Ordering::Acquire);
        let mut written = false;
        loop {
            let (tag_now, next, limit) = unpack(word);
            if tag_now != tag(seq) || next != i || i >= limit {
                return false;
            }
            if !written {
                // Before the swap that publishes the claim (see the module docs).
                self.word(STARTED).store(now_ns, Ordering::Release);
                written = true;
            }
            match self.word(CLAIM).compare_exchange_weak(
                word,
                pack(seq, i + 1, limit),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => word = now,
            }
        }
    }
}

impl Progress {
    /// The log area (after the words), if the region has one.
    fn log_area(&self) -> Option<*mut u8> {
        // SAFETY: `LOG_AT` is within the mapping when it is longer than that; the
        // pointer is only used for in-bounds copies below.
        (self.0.len() >= LOG_AT + LOG_BYTES)
            .then(|| unsafe { self.0.as_ptr().add(LOG_AT) as *mut u8 })
    }

    /// (Worker) Empties the log and dedicates it to unit `seq`.
    pub fn log_reset(&self, seq: u64) {
        self.word(LOG_END).store(0, Ordering::Release);
        self.word(LOG_SEQ).store(seq, Ordering::Release);
    }

    fn log_append(&self, position: u32, kind: u32, bytes: &[u8]) -> bool {
        let Some(area) = self.log_area() else {
            return false;
        };
        let end = self.word(LOG_END).load(Ordering::Relaxed) as usize;
        let Ok(len) = u32::try_from(bytes.len()) else {
            return false;
        };
        if len >= KIND_OUTCOME {
            return false;
        }
        let record = (8 + bytes.len()).next_multiple_of(8);
        if end > LOG_BYTES || LOG_BYTES - end < record {
            return false;
        }
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&position.to_le_bytes());
        head[4..].copy_from_slice(&(kind | len).to_le_bytes());
        // SAFETY: `end + record <= LOG_BYTES` (checked above), so both copies stay in
        // the log area of the mapping; only this process (the worker) writes there,
        // and the parent reads only after it died.
        unsafe {
            std::ptr::copy_nonoverlapping(head.as_ptr(), area.add(end), 8);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), area.add(end + 8), bytes.len());
        }
        self.word(LOG_END)
            .store((end + record) as u64, Ordering::Release);
        true
    }

    /// (Worker) Logs a chunk call's plain value; false if the log is full.
    pub fn log_value(&self, position: u32, value: &[u8]) -> bool {
        self.log_append(position, KIND_VALUE, value)
    }

    /// (Worker) Logs an encoded `(TaskOutcome, Timing)`; false if the log is full.
    pub fn log_outcome(&self, position: u32, encoded: &[u8]) -> bool {
        self.log_append(position, KIND_OUTCOME, encoded)
    }

    /// The answers logged for unit `seq`, by call position, copied out: by the parent
    /// once the worker is dead, or by the worker's flusher while the main thread cannot
    /// empty the log (it holds the send lock). A record that does not fit the log ends
    /// the reading.
    pub fn logged(&self, seq: u64) -> Vec<(u32, Logged)> {
        let mut out = Vec::new();
        let Some(area) = self.log_area() else {
            return out;
        };
        if self.word(LOG_SEQ).load(Ordering::Acquire) != seq {
            return out;
        }
        let end = (self.word(LOG_END).load(Ordering::Acquire) as usize).min(LOG_BYTES);
        // SAFETY: `end <= LOG_BYTES`, so the slice lies in the log area; bytes below the
        // published end are never rewritten until the log is emptied, which the caller
        // excludes (the writer is dead, or holds off under the send lock).
        let log = unsafe { std::slice::from_raw_parts(area as *const u8, end) }.to_vec();
        let mut at = 0usize;
        while at + 8 <= log.len() {
            let position = u32::from_le_bytes([log[at], log[at + 1], log[at + 2], log[at + 3]]);
            let word = u32::from_le_bytes([log[at + 4], log[at + 5], log[at + 6], log[at + 7]]);
            let len = (word & !KIND_OUTCOME) as usize;
            let Some(bytes) = log.get(at + 8..at + 8 + len) else {
                break;
            };
            out.push((
                position,
                if word & KIND_OUTCOME != 0 {
                    Logged::Outcome(bytes.to_vec())
                } else {
                    Logged::Value(bytes.to_vec())
                },
            ));
            at += (8 + len).next_multiple_of(8);
        }
        out
    }
}

impl Default for Progress {
    fn default() -> Progress {
        Progress::new()
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: the same clock in every process of the
/// machine, and the one `std::time::Instant` reads on Linux.
pub fn monotonic_ns() -> u64 {
    os::monotonic_ns()
}

/// A `CLOCK_MONOTONIC` time no earlier than now, late by at most a clock tick (about
/// 4 ms), read for a fifth of the cost of [`monotonic_ns`]: what a claim records, so a
/// deadline computed from it is never early.
pub fn monotonic_upper_ns() -> u64 {
    os::monotonic_upper_ns()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Progress, Progress) {
        let parent = Progress::new();
        let worker = Progress::adopt(parent.share()).unwrap();
        (parent, worker)
    }

    #[test]
    fn each_call_is_claimed_by_the_worker_or_taken_back_never_both() {
        let (parent, worker) = pair();
        parent.begin(7, 4);
        assert!(worker.claim(7, 0, 10));
        let seen = parent.snapshot();
        assert_eq!(
            (seen.seq, seen.next, seen.limit, seen.started_ns),
            (7, 1, 4, 10)
        );
        // Keep one more for the worker; calls 2 and 3 come back.
        assert_eq!(parent.take_back(seen, 2), Some(2));
        assert!(worker.claim(7, 1, 20));
        assert!(!worker.claim(7, 2, 30), "taken back");
        let seen = parent.snapshot();
        // The refused claim left call 1's start (it may still run, or be timed out).
        assert_eq!((seen.next, seen.limit, seen.started_ns), (2, 2, 20));
        // Nothing below what was claimed can be taken back.
        assert_eq!(parent.take_back(seen, 0), Some(2));
    }

    #[test]
    fn a_take_back_against_a_stale_snapshot_fails() {
        let (parent, worker) = pair();
        parent.begin(1, 3);
        let seen = parent.snapshot();
        assert!(worker.claim(1, 0, 5));
        assert_eq!(parent.take_back(seen, 0), None);
        let seen = parent.snapshot();
        assert_eq!(parent.take_back(seen, 0), Some(1));
        // Another unit's page.
        parent.begin(2, 3);
        assert_eq!(parent.take_back(seen, 0), None);
    }

    #[test]
    fn claims_out_of_order_are_refused() {
        let (parent, worker) = pair();
        parent.begin(1, 3);
        assert!(!worker.claim(1, 1, 0));
        assert!(worker.claim(1, 0, 0));
        assert!(!worker.claim(1, 0, 0));
        assert!(!worker.claim(1, 5, 0));
        assert!(Progress::adopt(IpcSharedMemory::from_byte(0, 8)).is_none());
    }

    #[test]
    fn the_log_gives_back_what_was_appended_for_its_unit_only() {
        let (parent, worker) = pair();
        worker.log_reset(4);
        assert!(worker.log_value(0, &[1, 2, 3]));
        assert!(worker.log_outcome(1, &[9; 13]));
        assert!(worker.log_value(2, &[]));
        assert_eq!(
            parent.logged(4),
            vec![
                (0, Logged::Value(vec![1, 2, 3])),
                (1, Logged::Outcome(vec![9; 13])),
                (2, Logged::Value(vec![])),
            ]
        );
        assert!(parent.logged(5).is_empty());
        // Full: refused, nothing half written.
        assert!(!worker.log_value(3, &vec![0; LOG_BYTES]));
        assert_eq!(parent.logged(4).len(), 3);
        worker.log_reset(6);
        assert!(parent.logged(6).is_empty());
        // A lying end is clamped, a lying record ends the reading.
        worker.word(LOG_END).store(u64::MAX, Ordering::Release);
        let _ = parent.logged(6);
    }

    /// A unit taken back whole before its message was read: when the worker reads it
    /// after its successor's `begin`, it cannot claim the successor's calls.
    #[test]
    fn a_stale_unit_cannot_run_under_its_successors_claim() {
        let (parent, worker) = pair();
        parent.begin(60, 1);
        let seen = parent.snapshot();
        assert_eq!(parent.take_back(seen, 0), Some(0));
        parent.begin(61, 1);
        assert!(!worker.claim(60, 0, 0), "unit 60 was taken back");
        assert!(worker.claim(61, 0, 0));
    }

    /// Racing claims and take-backs from two threads: every call is started exactly
    /// once or taken back exactly once.
    #[test]
    fn racing_claims_and_take_backs_split_the_calls_exactly() {
        for round in 0..200u32 {
            let (parent, worker) = pair();
            let calls = 1000;
            parent.begin(u64::from(round), calls);
            let runner = std::thread::spawn(move || {
                let mut ran = 0;
                while worker.claim(u64::from(round), ran, 0) {
                    ran += 1;
                }
                ran
            });
            let mut limit = calls;
            loop {
                let seen = parent.snapshot();
                if seen.next >= seen.limit {
                    break;
                }
                if let Some(l) = parent.take_back(seen, seen.next + (seen.limit - seen.next) / 2) {
                    limit = l;
                }
            }
            let ran = runner.join().unwrap();
            assert_eq!(ran, limit, "round {round}");
            assert_eq!(parent.snapshot().limit, limit);
        }
    }
}
