//! A killed or frozen fork zygote, or a killed forkserver, mid-run: it is replaced and
//! nothing fails, stalls or runs twice.

use super::*;

/// Runs a server-fault scenario; the seconds it took from the fault to the end.
fn run_server_fault(name: &str) -> f64 {
    let out = scenario(name).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ok 400"),
        "{:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .split("after ")
        .nth(1)
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no time in {stdout}"))
}

/// A SIGKILLed zygote takes none of its running workers with it: the forkserver makes
/// the new ones, and no task fails or runs twice (retries 0). Before, its workers died
/// with it and their running calls failed.
#[test]
fn a_dead_zygote_is_replaced_by_the_forkserver_and_nothing_fails_or_runs_twice() {
    common::isolated(DEADLINE, || {
        run_server_fault("zygote_killed");
    });
}

/// A SIGSTOPped zygote is found frozen at the first fork it does not answer, killed and
/// replaced: the run goes on within a few seconds (before: 10 s per unanswered request,
/// 22 s and more in all).
#[test]
fn a_frozen_zygote_is_replaced_without_stalling_the_run() {
    common::isolated(DEADLINE, || {
        let took = run_server_fault("zygote_frozen");
        assert!(
            took < 8.0,
            "the run stalled {took:.1} s on the frozen zygote"
        );
    });
}

/// A SIGKILLed forkserver is started again on the next fork; its running workers finish
/// their tasks, and nothing fails or runs twice.
#[test]
fn a_dead_forkserver_is_restarted_and_nothing_fails_or_runs_twice() {
    common::isolated(DEADLINE, || {
        run_server_fault("forkserver_killed");
    });
}
