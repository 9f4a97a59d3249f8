//! Scripted workloads on simulated workers, one behaviour each.

use std::time::Duration;

use super::cases::{scripted, simulate, MIB};
use super::checks::check;
use crate::error::ErrorKind;

/// The case: two fast calls then six of 700 ms, limit 500 ms, no retries: the
/// fast ones succeed once, each slow one times out at its own limit, nothing runs twice.
#[test]
fn each_call_keeps_its_own_time_limit_in_a_batch() {
    let mut durations = vec![0, 0];
    durations.extend([700; 6]);
    let case = scripted(&durations, 2, Some(Duration::from_millis(500)));
    let (results, world) = simulate(&case);
    check(&case, &results, &world);
    for (i, (result, _)) in results.iter().enumerate() {
        let timed_out = matches!(result, Err(e) if matches!(e.kind(), ErrorKind::TimedOut { .. }));
        assert_eq!(timed_out, i >= 2, "call {i}: {result:?}");
        assert_eq!(world.records[&(i as u64)].starts, 1, "call {i}");
    }
}

/// One slow call, then fifty fast ones on two workers: every fast one finishes before
/// the slow one does.
#[test]
fn fast_calls_never_wait_behind_a_slow_one() {
    let mut durations = vec![2_000];
    durations.extend([0; 50]);
    let case = scripted(&durations, 2, None);
    let (results, world) = simulate(&case);
    check(&case, &results, &world);
    let slow = world.records[&0].last.expect("it ran");
    for i in 1..51u64 {
        let (start, duration) = world.records[&i].last.expect("it ran");
        assert!(
            start + duration < slow.0 + slow.1,
            "call {i} waited behind the slow one"
        );
    }
}

/// The memory decisions on simulated workers: a call whose worker goes over
/// `memory_limit` fails as `MemoryExceeded` (once, or after its retries), within two
/// looks of its start; the calls around it succeed, none runs twice.
#[test]
fn a_call_over_the_memory_limit_fails_alone_and_the_pool_goes_on() {
    for retries in [0, 1] {
        let mut durations = vec![500];
        durations.extend([0; 100]);
        let mut case = scripted(&durations, 2, None);
        case.retries = retries;
        case.memory_limit = Some(100 * MIB);
        case.scripts[0].memory_kib = 200 * 1024;
        let (results, world) = simulate(&case);
        check(&case, &results, &world);
        let Err(e) = &results[0].0 else {
            panic!("the greedy call succeeded")
        };
        assert!(
            matches!(e.kind(), ErrorKind::MemoryExceeded { limit, .. } if *limit == 100 * MIB),
            "{e}"
        );
        assert_eq!(results[0].1.attempts, retries + 1);
        let greedy = &world.records[&0];
        assert_eq!(greedy.starts, retries + 1);
        assert_eq!(greedy.pids.len(), retries as usize + 1);
        for (i, (result, _)) in results.iter().enumerate().skip(1) {
            assert!(result.is_ok(), "call {i}: {result:?}");
            assert_eq!(world.records[&(i as u64)].starts, 1, "call {i}");
        }
    }
}

/// `max_memory_per_child`: the call that leaves its worker above the limit is
/// delivered; the worker starts nothing more (it gives back the rest of its batch,
/// which the dispatcher queues again), a new one runs the rest; every call runs once
/// and succeeds.
#[test]
fn a_worker_left_above_max_memory_per_child_is_recycled_losing_nothing() {
    // Fast calls, so they travel in batches: the rest of the leaky call's batch must
    // be taken back. Whether or not the parent's own reading shows the memory, the
    // worker's give-back retires it (else the calls it gave back would never come).
    for memory_reads_low in [false, true] {
        recycled_losing_nothing(memory_reads_low);
    }
}

fn recycled_losing_nothing(memory_reads_low: bool) {
    let mut case = scripted(&[0; 300], 1, None);
    case.max_memory_per_child = Some(100 * MIB);
    case.memory_reads_low = memory_reads_low;
    case.scripts[150].leaves_kib = 200 * 1024;
    let (results, world) = simulate(&case);
    check(&case, &results, &world);
    let pid = |i: u64| world.records[&i].pids.clone();
    let first = pid(0)[0];
    assert_eq!(
        pid(150),
        vec![first],
        "the leaky call ran on the first worker once"
    );
    for (i, (result, meta)) in results.iter().enumerate() {
        assert!(result.is_ok(), "call {i}: {result:?}");
        assert_eq!(world.records[&(i as u64)].starts, 1, "call {i}");
        assert_eq!(meta.pid, pid(i as u64)[0], "call {i}");
    }
    // The worker gave back the rest of its batch before claiming the next call (as a
    // real one does: `WorkerConfig::retire_above`); it ran on the replacement.
    assert!((151..300u64).all(|i| pid(i)[0] != first));
    // The replacement holds nothing: it is not recycled again.
    let pids: std::collections::BTreeSet<u32> = (0..300u64).map(|i| pid(i)[0]).collect();
    assert_eq!(pids.len(), 2, "{pids:?}");
}

/// A retried call that passes its limit on a worker that ignores SIGTERM, and
/// finishes during the grace before SIGKILL: it timed out (its answer, logged on the
/// page, is not taken as a success), and it is not run a third time (found by the
/// random cases once the limit could change while calls run).
#[test]
fn a_call_finishing_during_its_stops_grace_is_timed_out_and_not_run_again() {
    let mut case = scripted(&[183], 1, Some(Duration::from_millis(150)));
    case.stubborn = 4;
    case.retries = 2;
    let (results, world) = simulate(&case);
    check(&case, &results, &world);
    assert!(
        matches!(&results[0].0, Err(e) if matches!(e.kind(), ErrorKind::TimedOut { .. })),
        "{:?}",
        results[0].0
    );
}

/// A call that passes its limit in a batch, on a worker that ignores SIGTERM, and
/// finishes during the grace before SIGKILL: the worker's attempt to claim the next
/// call (taken back, so it fails) must not become the timed-out call's start. On the
/// old page that attempt overwrote the start, and the call was reported as having run
/// from its own end to the kill (17 ms, under its 150 ms limit), with a start 183 ms
/// late (as `tests/scheduling/limits.rs` once saw: a 201 ms task timed out "after 95.8 ms").
#[test]
fn a_timed_out_call_reports_its_own_start_after_a_failed_claim_of_the_next() {
    // A fast call first, so that the dispatcher merges calls 1-3 into one batch.
    let mut case = scripted(&[0, 0, 183, 0, 0], 1, Some(Duration::from_millis(150)));
    case.stubborn = 1;
    let (results, world) = simulate(&case);
    check(&case, &results, &world);
    let timed_out = |i: usize| matches!(&results[i].0, Err(e) if matches!(e.kind(), ErrorKind::TimedOut { .. }));
    assert!(timed_out(2), "{:?}", results[2].0);
    let slow = &world.records[&2];
    assert_eq!(
        (slow.starts, slow.finished),
        (1, 1),
        "it ran once, to its end"
    );
    // It shared its unit with the call after it, which was taken back and ran later.
    assert_eq!(slow.pids, world.records[&1].pids);
    assert!(results[3].0.is_ok(), "{:?}", results[3].0);
    assert_ne!(world.records[&3].pids, slow.pids);
}

/// `Pool::stop_call` (the cluster agent's stop of one task): on one worker, a running
/// call stopped mid-run fails as stopped with its own pid and start, once; a queued
/// call stopped is cancelled and never runs; a call stopped after it finished keeps
/// its value; the worker is replaced and the rest run.
#[test]
fn stop_call_stops_the_running_call_alone_and_cancels_a_queued_one() {
    let mut case = scripted(&[1_000, 1_000, 0, 0], 1, None);
    // Call 3 is stopped after it finished (at 2.5 s it has long been done).
    case.stop_calls = vec![(100_000_000, 0), (100_000_000, 1), (2_500_000_000, 3)];
    let (results, world) = simulate(&case);
    check(&case, &results, &world);
    let kind = |i: usize| results[i].0.as_ref().err().map(|e| e.kind().word());
    assert_eq!(kind(0), Some("stopped"), "{:?}", results[0].0);
    assert_eq!(kind(1), Some("cancelled"), "{:?}", results[1].0);
    assert!(results[2].0.is_ok() && results[3].0.is_ok(), "{results:?}");
    let stopped = &world.records[&0];
    assert_eq!((stopped.starts, stopped.finished), (1, 0));
    assert_eq!(stopped.stopped.len(), 1, "SIGTERM to its worker");
    assert_eq!(results[0].1.pid, stopped.pids[0]);
    assert_eq!(results[0].1.attempts, 1);
    assert!(!world.records.contains_key(&1), "the cancelled call ran");
    assert_ne!(
        world.records[&2].pids, stopped.pids,
        "a replacement ran the rest"
    );
}

/// A call's own time limit (the cluster's per-task `--timeout`, through
/// `Pool::start_encoded`): fast calls first so that the slow ones travel in one batch;
/// the call with a 100 ms limit times out at it, its batch-mates without one (and a
/// pool with none) run their 300 ms to the end, each once.
#[test]
fn a_calls_own_time_limit_stops_it_alone_in_its_batch() {
    let mut case = scripted(&[0, 0, 300, 300, 300], 1, None);
    case.own_limits = vec![(3, Duration::from_millis(100))];
    let (results, world) = simulate(&case);
    for (i, (result, meta)) in results.iter().enumerate() {
        let timed_out = matches!(
            result,
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut { limit, .. } if *limit == Duration::from_millis(100))
        );
        assert_eq!(timed_out, i == 3, "call {i}: {result:?}");
        assert_eq!(world.records[&(i as u64)].starts, 1, "call {i}");
        if i == 3 {
            assert!(meta.duration >= Duration::from_millis(100), "{meta:?}");
            let (at, start) = *world.records[&3].stopped.last().expect("stopped");
            assert!(
                at - start < 150_000_000,
                "stopped {} ns after its start",
                at - start
            );
        }
    }
}
