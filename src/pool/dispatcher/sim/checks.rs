//! What is checked of a simulated run: at each round, that no call waits while a
//! worker could run it; at the end, each call's one result against what its
//! simulated worker did.

use std::time::Duration;

use super::super::super::job::{JobMeta, JobResult};
use super::super::super::ports::WorkerLink;
use super::super::super::running::ANSWER_WAIT;
use super::super::take_back::STEAL_AFTER;
use super::super::Dispatcher;
use super::cases::Case;
use super::{SimIo, World};
use crate::error::{BrokenCall, ErrorKind};
use crate::memory::MEMORY_LOOK;

/// Checks that no call waits while a worker could run it: with a worker idle, nothing
/// is queued, and no unstarted call waits behind a call that has run [`STEAL_AFTER`].
pub(super) fn check_nothing_waits(d: &Dispatcher<SimIo>, now_ns: u64, seed: u64) {
    if d.terminating || d.broken.is_some() || !d.workers().any(|w| w.takes_work()) {
        return;
    }
    assert!(
        d.queue.is_empty(),
        "seed {seed}: calls queued while a worker idles"
    );
    for w in d.workers() {
        let Some(run) = &w.running else { continue };
        let seen = w.link.page().snapshot();
        let claimed = run.claimed(&seen);
        let waiting = w.stop.is_none()
            && run.stopping_at.is_none()
            && seen.seq == run.seq
            && claimed > run.answered
            && run.limit > claimed
            && seen.started_ns + STEAL_AFTER.as_nanos() as u64 <= now_ns;
        assert!(
            !waiting,
            "seed {seed}: {} calls wait behind a slow one while a worker idles",
            run.limit - claimed
        );
    }
}

/// Checks that no worker was given a call while an earlier one waited unstarted behind
/// another worker's call that has run [`STEAL_AFTER`]: `fed` are the units sent in the
/// round just made (the worker's pid, the first call's id), all at `now_ns`.
pub(super) fn check_no_later_call_goes_first(
    d: &Dispatcher<SimIo>,
    fed: &[(u32, u64)],
    now_ns: u64,
    seed: u64,
) {
    if d.terminating || d.broken.is_some() {
        return;
    }
    for w in d.workers() {
        let Some(run) = &w.running else { continue };
        let seen = w.link.page().snapshot();
        let claimed = run.claimed(&seen);
        let behind = w.stop.is_none()
            && run.stopping_at.is_none()
            && seen.seq == run.seq
            && claimed > run.answered
            && run.limit > claimed
            && seen.started_ns + STEAL_AFTER.as_nanos() as u64 <= now_ns;
        let Some(waiting) = run
            .unit
            .id_at((claimed - run.answered) as usize)
            .filter(|_| behind)
        else {
            continue;
        };
        for (pid, first) in fed {
            assert!(
                *pid == w.link.pid() || *first < waiting,
                "seed {seed}: worker {pid} was given call {first} while call {waiting} \
                 waited behind a running one on worker {}",
                w.link.pid()
            );
        }
    }
}

/// Checks each call's one result against what the simulated worker did.
pub(super) fn check(case: &Case, results: &[(JobResult, JobMeta)], world: &World) {
    let seed = case.seed;
    for (i, (result, meta)) in results.iter().enumerate() {
        let script = case.scripts[i];
        let id = i as u64;
        let record = world.records.get(&id);
        let starts = record.map_or(0, |r| r.starts);
        assert!(
            starts <= case.retries + 1,
            "seed {seed}: call {i} ran {starts} times with {} retries",
            case.retries
        );
        // A call is never stopped before its own time limit (unless the pool stops).
        if case.terminate_at.is_none() && case.break_at.is_none() && !case.asked_to_stop(id) {
            for (at, start) in record.map_or(&[][..], |r| &r.stopped[..]) {
                let limit = case.shortest_limit().expect("stopped only on a timeout");
                assert!(
                    at - start >= limit.as_nanos() as u64,
                    "seed {seed}: call {i} stopped after {} ns, its limit is {limit:?}",
                    at - start
                );
            }
        }
        match result {
            Ok(value) => {
                let record = record.expect("a result comes from a run");
                let (start, duration) = record.last.expect("it ran");
                assert_eq!(value, &id.to_le_bytes(), "seed {seed}: call {i}'s value");
                assert!(
                    !script.crashes,
                    "seed {seed}: call {i} crashes, yet succeeded"
                );
                assert_eq!(meta.attempts, starts, "seed {seed}: call {i}'s attempts");
                assert_eq!(
                    meta.started,
                    Some(world.wall + Duration::from_nanos(start)),
                    "seed {seed}: call {i}'s start is not its own"
                );
                assert_eq!(
                    meta.duration,
                    Duration::from_nanos(duration),
                    "seed {seed}: call {i}"
                );
                if let Some(limit) = case.longest_limit() {
                    assert!(
                        Duration::from_nanos(duration) <= limit,
                        "seed {seed}: call {i} ran {duration} ns past its limit {limit:?}"
                    );
                }
                if let Some(limit) = case.memory_limit {
                    let looked = Duration::from_nanos(duration) > 2 * MEMORY_LOOK;
                    assert!(
                        !(looked && script.memory_kib * 1024 > limit),
                        "seed {seed}: call {i} ran {duration} ns over the memory limit"
                    );
                    assert!(
                        script.spike_kib * 1024 <= limit,
                        "seed {seed}: call {i} spiked over the memory limit and succeeded"
                    );
                }
            }
            Err(e) => match e.kind() {
                ErrorKind::TimedOut { .. } => {
                    let shortest = case.shortest_limit().expect("a timeout needs a limit");
                    let limit = case.longest_limit().expect("a limit").as_nanos() as u64;
                    assert!(
                        script.duration > shortest.as_nanos() as u64,
                        "seed {seed}: call {i} timed out early"
                    );
                    let record = record.expect("it ran");
                    let (at, start) = *record.stopped.last().expect("it was stopped");
                    // Its report is its own: its start, and at least the limit it ran.
                    assert_eq!(
                        meta.started,
                        Some(world.wall + Duration::from_nanos(start)),
                        "seed {seed}: timed-out call {i}'s start is not its own"
                    );
                    assert!(
                        meta.duration >= shortest,
                        "seed {seed}: timed-out call {i} reports {:?}, under its limit",
                        meta.duration
                    );
                    let late = (ANSWER_WAIT + Duration::from_millis(1)).as_nanos() as u64;
                    assert!(
                        at - start <= limit + late,
                        "seed {seed}: call {i} stopped {} ns after its start",
                        at - start
                    );
                }
                ErrorKind::MemoryExceeded { peak_rss_kib, .. } => {
                    let limit = case.memory_limit.expect("a memory limit");
                    let leaks = case.scripts.iter().any(|s| s.leaves_kib > 0);
                    assert!(
                        script.memory_kib.max(script.spike_kib) * 1024 > limit || leaks,
                        "seed {seed}: call {i} charged for memory it did not take"
                    );
                    assert!(*peak_rss_kib * 1024 > limit, "seed {seed}: call {i}: {e}");
                }
                ErrorKind::Crashed { .. } => assert!(
                    script.crashes || !case.kills.is_empty(),
                    "seed {seed}: call {i} crashed for no reason"
                ),
                ErrorKind::Stopped { .. } | ErrorKind::Cancelled { .. }
                    if case.asked_to_stop(id) =>
                {
                    if matches!(e.kind(), ErrorKind::Cancelled { .. }) {
                        assert_eq!(starts, 0, "seed {seed}: call {i} ran, then was cancelled");
                    } else {
                        let record = record.expect("a stopped call ran");
                        let (start, _) = record.last.expect("it ran");
                        assert_eq!(
                            meta.started,
                            Some(world.wall + Duration::from_nanos(start)),
                            "seed {seed}: stopped call {i}'s start is not its own"
                        );
                        assert!(meta.pid != 0 && meta.attempts >= 1, "seed {seed}: {meta:?}");
                    }
                }
                ErrorKind::PoolBroken { call, .. } => {
                    assert!(case.break_at.is_some(), "seed {seed}: call {i}: {e}");
                    assert_eq!(meta.attempts, starts, "seed {seed}: call {i}'s attempts");
                    match call {
                        BrokenCall::NotStarted => {
                            assert_eq!(meta.pid, 0, "seed {seed}: call {i} never started");
                            assert_eq!(meta.started, None, "seed {seed}: call {i}");
                        }
                        BrokenCall::Stopped { pid, .. } => {
                            let record = record.expect("a stopped call ran");
                            let (start, _) = record.last.expect("it ran");
                            // It finished only past its time limit, in the grace of a
                            // worker that ignored SIGTERM (its value is not taken), or
                            // after a dispatcher that ended at the break settled it.
                            let (_, ran) = record.last.expect("it ran");
                            let limit = case.shortest_limit().map(|l| l.as_nanos() as u64);
                            let settled_at_once = case.break_at.is_some_and(|(_, p)| p);
                            assert!(
                                record.finished == 0
                                    || limit.is_some_and(|l| ran > l)
                                    || settled_at_once,
                                "seed {seed}: call {i} had finished"
                            );
                            assert_eq!(record.pids.last(), Some(pid), "seed {seed}: call {i}");
                            assert_eq!(meta.pid, *pid, "seed {seed}: call {i}");
                            assert_eq!(
                                meta.started,
                                Some(world.wall + Duration::from_nanos(start)),
                                "seed {seed}: stopped call {i}'s start is not its own"
                            );
                        }
                    }
                }
                ErrorKind::Stopped { .. }
                | ErrorKind::Terminated { .. }
                | ErrorKind::PoolClosed => assert!(
                    case.terminate_at.is_some(),
                    "seed {seed}: call {i} stopped with nobody terminating: {e}"
                ),
                _ => panic!("seed {seed}: call {i} failed as {e}"),
            },
        }
    }
}
