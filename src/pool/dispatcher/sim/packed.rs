//! The simulation with calls submitted as `imap_reports` submits them, packed in timed
//! chunks: the same invariants hold (each call's own limit, start and duration, at
//! most once, nothing waits while a worker could run it), whether a chunk travels
//! whole, split in fair shares, taken back in part, or unpacked into single calls.

use std::time::Duration;

use super::super::super::job::{Chunk, Delivery, Unit};
use super::super::super::wake;
use super::cases::{case, scripted, simulate};
use super::checks::check;
use super::TASK;
use crate::error::ErrorKind;

/// The calls `ids` in timed chunks of 1 to 40 consecutive calls, as `imap_reports`
/// packs them; a call's id is its position (as for single calls here).
pub(super) fn packed_units(ids: std::ops::Range<usize>, tx: &wake::Sender<Delivery>) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut at = ids.start;
    while at < ids.end {
        let size = (1 + (at * 7 + 3) % 40).min(ids.end - at);
        let mut chunk = Chunk::new(TASK, at as u64, at, 1, tx.clone()).with_timings();
        chunk.lens = vec![0; size];
        units.push(Unit::chunk(chunk));
        at += size;
    }
    units
}

/// The random workloads of `scheduling_invariants_hold_for_random_workloads` (calls
/// of 10 µs to 400 ms, crashes, external kills, timeouts, retries, terminations),
/// packed; and again with every tenth call 1000 times longer than drawn.
#[test]
fn scheduling_invariants_hold_for_random_packed_workloads() {
    let mut chunks = 0;
    for seed in 0..400 {
        let mut case = case(seed);
        case.packed = true;
        if seed % 2 == 1 {
            for script in case.scripts.iter_mut().step_by(10) {
                script.duration = (script.duration * 1000).min(2_000_000_000);
            }
        }
        let (results, world) = simulate(&case);
        check(&case, &results, &world);
        chunks += world.chunks_sent;
    }
    assert!(
        chunks > 400,
        "only {chunks} chunks went out whole or in shares"
    );
}

/// Two fast calls, then six of 700 ms under a 500 ms limit, packed: the fast ones
/// succeed once, each slow one times out at its own limit, nothing runs twice.
#[test]
fn each_packed_call_keeps_its_own_time_limit() {
    let mut durations = vec![0, 0];
    durations.extend([700; 6]);
    let mut case = scripted(&durations, 2, Some(Duration::from_millis(500)));
    case.packed = true;
    let (results, world) = simulate(&case);
    check(&case, &results, &world);
    for (i, (result, _)) in results.iter().enumerate() {
        let timed_out = matches!(result, Err(e) if matches!(e.kind(), ErrorKind::TimedOut { .. }));
        assert_eq!(timed_out, i >= 2, "call {i}: {result:?}");
        assert_eq!(world.records[&(i as u64)].starts, 1, "call {i}");
    }
}

/// Fast calls, one slow call among them, packed, on two workers (the task known to
/// be fast by then, so the chunks go out whole): every fast call after the slow one
/// finishes before it does, on the other worker.
#[test]
fn packed_fast_calls_never_wait_behind_a_slow_one() {
    let mut durations = vec![0; 100];
    durations.push(2_000);
    durations.extend([0; 60]);
    let mut case = scripted(&durations, 2, None);
    case.packed = true;
    let (results, world) = simulate(&case);
    check(&case, &results, &world);
    assert!(world.chunks_sent > 0, "nothing went out packed");
    let slow = world.records[&100].last.expect("it ran");
    for i in 101..161u64 {
        let (start, duration) = world.records[&i].last.expect("it ran");
        assert!(
            start + duration < slow.0 + slow.1,
            "call {i} waited behind the slow one"
        );
    }
}

/// The issue's `(0ms, 0ms, 30 x 100ms)` on two workers, packed: both workers share
/// the slow calls (about 1.5 s, not 3 s on one).
#[test]
fn packed_slow_calls_spread_over_the_workers() {
    let mut durations = vec![0, 0];
    durations.extend([100; 30]);
    let mut case = scripted(&durations, 2, None);
    case.packed = true;
    let (results, world) = simulate(&case);
    check(&case, &results, &world);
    let end = (0..32u64)
        .map(|i| {
            let (start, duration) = world.records[&i].last.expect("it ran");
            start + duration
        })
        .max()
        .unwrap_or(0);
    assert!(end < 1_700_000_000, "the calls ended after {end} ns");
}

/// The adversarial pass's case (issue 14, F2): a task known to be fast, then one call
/// of 3 s and a hundred of 10 ms on two workers, packed and not, so that the slow
/// call's worker holds 10 ms calls sent ahead behind it, and the other worker later
/// ones. No 10 ms call waits behind the slow one while the other worker runs later
/// inputs: before each starts, at most one later input has (the one the other worker
/// was running when the slow call passed `STEAL_AFTER`). The old rule (take back only
/// once nothing is queued) let 29 to 40 later inputs go first.
#[test]
fn no_call_waits_behind_a_slow_one_while_later_inputs_run() {
    for packed in [false, true] {
        let mut durations = vec![0; 20];
        durations.push(3_000);
        durations.extend([10; 100]);
        let mut case = scripted(&durations, 2, None);
        case.packed = packed;
        let (results, world) = simulate(&case);
        check(&case, &results, &world);
        let start = |i: u64| world.records[&i].last.expect("it ran").0;
        for i in 21..121u64 {
            let overtaken = (i + 1..121).filter(|j| start(*j) < start(i)).count();
            assert!(
                overtaken <= 1,
                "packed {packed}: {overtaken} later inputs started before call {i}"
            );
        }
    }
}
