//! A pool that breaks (`break_pool`) says what it did to each call: a running call
//! was stopped (its own pid, start and attempts), the rest never started. Before,
//! every pending call was failed at once alike (`lost`, pid 0, attempts 0).

use super::super::super::job::{JobMeta, JobResult};
use super::cases::{case, scripted, simulate};
use super::checks::check;

/// Each row: calls' durations (ms), workers, when the pool breaks (ms), and each
/// call's word afterwards (`ok` for a success).
const ROWS: &[(&[u64], usize, u64, &[&str])] = &[
    // One worker: the first call runs, the others wait in the queue.
    (
        &[1_000, 1_000, 1_000],
        1,
        100,
        &["stopped", "cancelled", "cancelled"],
    ),
    // Two workers, both busy; the third call waits.
    (
        &[1_000, 1_000, 1_000],
        2,
        100,
        &["stopped", "stopped", "cancelled"],
    ),
    // After two fast calls the slow ones travel to the worker in one batch: the one
    // running is stopped, its batch-mates never start.
    (
        &[0, 0, 300, 300, 300],
        1,
        150,
        &["ok", "ok", "stopped", "cancelled", "cancelled"],
    ),
];

fn words(results: &[(JobResult, JobMeta)]) -> Vec<&'static str> {
    results
        .iter()
        .map(|(r, _)| r.as_ref().map_or_else(|e| e.kind().word(), |_| "ok"))
        .collect()
}

#[test]
fn a_broken_pool_stops_running_calls_and_never_starts_the_rest() {
    for panic in [false, true] {
        for (durations, procs, at_ms, expected) in ROWS {
            let mut case = scripted(durations, *procs, None);
            case.break_at = Some((at_ms * 1_000_000, panic));
            let (results, world) = simulate(&case);
            check(&case, &results, &world);
            assert_eq!(
                words(&results),
                *expected,
                "{durations:?} on {procs} workers, broken at {at_ms} ms (panic: {panic})"
            );
            for (i, (_, meta)) in results.iter().enumerate() {
                let ran = world.records.get(&(i as u64)).map_or(0, |r| r.starts);
                assert!(ran <= 1, "call {i} ran {ran} times");
                if expected[i] == "stopped" {
                    assert!(meta.pid != 0 && meta.attempts == 1, "call {i}: {meta:?}");
                    assert!(meta.started.is_some(), "call {i}: {meta:?}");
                }
            }
        }
    }
}

/// The random workloads of the scheduling simulation, broken at some instant.
#[test]
fn random_workloads_broken_mid_run_say_what_became_of_each_call() {
    for seed in 0..150 {
        let mut case = case(seed);
        case.break_at = Some((seed * 3_700_000 % 400_000_000, seed % 5 == 0));
        let (results, world) = simulate(&case);
        check(&case, &results, &world);
    }
}
