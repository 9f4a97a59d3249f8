//! Nice applied to every worker thread, refused out of range or without privilege; the workers' signal dispositions.

use super::*;

#[test]
fn nice_applies_to_every_thread_of_the_worker_in_its_own_group() {
    each_method(DEADLINE, |method| {
        let mut p = Process::builder(identity, ())
            .nice(10)
            .start_method(method)
            .start()
            .unwrap();
        let pid = p.pid();
        let (child_pid, pgrp, nices) = p.join().unwrap();
        assert_eq!(child_pid, pid);
        assert_eq!(pgrp, pid as i32, "the worker leads its own process group");
        assert!(nices.len() >= 2, "{nices:?}");
        assert!(nices.iter().all(|&n| n == 10), "{nices:?}");
    });
}

#[test]
fn workers_ignore_sigint_catch_sigterm_and_leave_other_signals_at_their_defaults() {
    each_method(DEADLINE, |method| {
        let bit = |sig: i32| 1u64 << (sig - 1);
        for daemon in [false, true] {
            let mut p = Process::builder(signal_masks, ())
                .daemon(daemon)
                .start_method(method)
                .start()
                .unwrap();
            // Standard signals only: glibc keeps 32 and 33 for itself.
            let standard = (1u64 << 31) - 1;
            let (ignored, caught) = p.join().unwrap();
            let (ignored, caught) = (ignored & standard, caught & standard);
            // SIGINT: the parent decides. SIGPIPE: ignored as in every Rust program.
            assert_eq!(
                ignored,
                bit(libc::SIGINT) | bit(libc::SIGPIPE),
                "{ignored:x}"
            );
            // A daemon catches SIGHUP (its parent's death) to end its process group;
            // every worker catches SIGTERM to end its task's children before it dies
            // of it.
            let hup = if daemon { bit(libc::SIGHUP) } else { 0 };
            assert_eq!(
                caught & !(bit(libc::SIGSEGV) | bit(libc::SIGBUS)),
                hup | bit(libc::SIGTERM),
                "{caught:x}"
            );
        }
    });
}

#[test]
fn nice_out_of_range_is_refused_before_anything_starts() {
    isolated(DEADLINE, || {
        let err = Process::builder(square, 1)
            .nice(25)
            .start()
            .map(drop)
            .unwrap_err();
        assert_eq!(err.to_string(), "nice value 25 is outside -20..=19");
    });
}

fn nice_lower_scenario() {
    for method in StartMethod::ALL {
        let err = Process::builder(square, 1)
            .nice(-5)
            .start_method(method)
            .start()
            .map(drop)
            .unwrap_err();
        println!("{method}: {err}");
        assert!(
            matches!(
                err.kind(),
                ErrorKind::NiceNotPermitted {
                    requested: -5,
                    current: 0
                }
            ),
            "{err:?}"
        );
    }
}
#[linkme::distributed_slice(SCENARIOS)]
static NICE_LOWER: Scenario = Scenario {
    name: "nice_lower",
    run: nice_lower_scenario,
};

#[test]
fn lowering_nice_without_privilege_is_a_clear_error() {
    common::require_root("to drop to `nobody`; as a normal user see the scenario");
    isolated(DEADLINE, || {
        use std::os::unix::process::CommandExt;
        let out = scenario("nice_lower")
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.lines().count(), 3, "{stdout}");
        for line in stdout.lines() {
            assert!(
                line.ends_with("cannot lower the nice value from 0 to -5: this needs CAP_SYS_NICE or a higher RLIMIT_NICE"),
                "{line}"
            );
        }
    });
}
