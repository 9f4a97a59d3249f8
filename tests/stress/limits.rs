//! Out of processes or descriptors: a start or a pool gives errors, not panics, names
//! the limit, leaves no temporary directory, and the next start works.

use super::*;

#[test]
fn a_start_with_no_thread_to_be_had_names_the_process_limit_and_the_next_one_works() {
    common::require_root(
        "RLIMIT_NPROC binds only a user other than root, so the scenario becomes `nobody` first",
    );
    isolated(DEADLINE, || {
        use std::os::unix::process::CommandExt;
        // The soft limit is low from the program's start, before `init()` (as a shell's
        // `ulimit -S -u` makes it): the reaper's own thread cannot be had either.
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("ulimit -S -u 1; exec '{}'", exe.display()))
            .env(common::SCENARIO_ENV, "reaper_retry")
            .stdin(std::process::Stdio::null())
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        eprintln!("reaper_retry: {stdout}");
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("limit: Some(Processes)"),
            "the first error names no limit: {stdout}"
        );
        assert!(stdout.contains("then: Ok(1)"), "{stdout}");
    });
}

/// Runs scenario `name` with `env` set and waits for it (at most `within`, else the test
/// fails as hung): its exit status, stdout and stderr.
fn run_scenario(
    name: &str,
    env: &[(&str, String)],
    within: Duration,
    what: &str,
) -> (std::process::ExitStatus, String, String) {
    let mut cmd = common::scenario(name);
    for (k, v) in env {
        cmd.env(k, v);
    }
    common::scenario_output(cmd.spawn().unwrap(), what, within)
}

#[test]
fn a_first_start_short_of_descriptors_is_an_error_and_the_next_one_works() {
    isolated(DEADLINE, || {
        for method in StartMethod::ALL {
            for spare in 0..6 {
                let what = format!("{method} {spare} spare");
                let (status, stdout, stderr) = run_scenario(
                    "first_start_short_of_descriptors",
                    &[("METHOD", method.to_string()), ("SPARE", spare.to_string())],
                    Duration::from_secs(60),
                    &what,
                );
                assert!(
                    status.success() && stdout.contains("second: Ok(Ok(0))"),
                    "{what}: {status}\n{stdout}\n{stderr}"
                );
                assert!(
                    !stderr.contains("panicked"),
                    "{method} {spare} spare: {stderr}"
                );
            }
        }
    });
}

/// Before: with 8-12 descriptors to spare, a worker's progress page could not be made
/// and ipc-channel's assertion ("fd >= 0") panicked in the pool's start thread: caught
/// and made a failed start, but printed on stderr by the panic hook, once per start.
#[test]
fn a_pool_short_of_descriptors_prints_no_panic() {
    isolated(DEADLINE, || {
        for spare in 4..16 {
            let (status, stdout, stderr) = run_scenario(
                "pool_short_of_descriptors",
                &[("SPARE", spare.to_string())],
                Duration::from_secs(120),
                &format!("{spare} spare"),
            );
            assert!(status.success(), "{spare} spare: {stdout}\n{stderr}");
            assert!(!stderr.contains("panicked"), "{spare} spare: {stderr}");
        }
    });
}

#[test]
fn a_start_short_of_descriptors_leaves_no_temporary_directory() {
    isolated(DEADLINE, || {
        for spare in 0..8 {
            let (status, stdout, stderr) = run_scenario(
                "few_descriptors",
                &[("SPARE", spare.to_string())],
                Duration::from_secs(60),
                &format!("{spare} spare"),
            );
            eprintln!("{spare} spare: {stdout}");
            assert!(status.success(), "{spare} spare: {stdout}\n{stderr}");
            assert!(
                stdout.contains("error: ") || stdout.contains("started: "),
                "{spare} spare: {stdout}"
            );
        }
    });
}

#[test]
fn running_out_of_descriptors_or_processes_gives_errors_not_panics() {
    common::require_root(
        "RLIMIT_NPROC binds only a user other than root, so the scenario becomes `nobody` first",
    );
    isolated(DEADLINE, || {
        use std::os::unix::process::CommandExt;
        for limit in ["nofile", "nproc"] {
            let mut cmd = common::scenario("exhaust");
            cmd.env("LIMIT", limit);
            if limit == "nproc" {
                // Root ignores RLIMIT_NPROC: run the scenario as `nobody`.
                cmd.uid(65534).gid(65534);
            }
            let child = cmd.spawn().unwrap();
            let pid = child.id() as i32;
            let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
            assert!(
                common::wait_exit(pid, Duration::from_secs(100)),
                "{limit}: the scenario hung"
            );
            let out = waiter.join().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            eprintln!("{limit}: {stdout}");
            assert!(out.status.success(), "{limit}: {stdout}\n{stderr}");
            assert!(
                !stdout.contains("errors 0 "),
                "{limit}: the limit was never reached: {stdout}"
            );
            // The first error names the limit (before, a process limit's errno was lost
            // in the reaper's words, and the error named none).
            let named = if limit == "nproc" {
                "limit: Some(Processes)"
            } else {
                "limit: Some(Descriptors)"
            };
            assert!(stdout.contains(named), "{limit}: {stdout}");
            assert!(stdout.contains("all reaped"), "{limit}: {stdout}");
            // Nothing panicked on the way, not even caught inside a dependency (a
            // worker's page out of descriptors: ipc-channel's assertion was caught, and
            // printed by the panic hook).
            assert!(!stderr.contains("panicked"), "{limit}: {stderr}");
        }
    });
}

/// A spawn start with no descriptor left fails with "too many open files" and leaves
/// nothing in the temp directory. Seen: ipc-channel's one-shot server makes its
/// `.tmpXXXXXX` directory, its `socket()` fails (EMFILE), it binds descriptor -1 (the
/// start fails with "Bad file descriptor"), and the directory is never removed
/// (removing it needs a descriptor): one empty directory per failed start, 11 per pool
/// that breaks on it, which the sweep of dead programs' directories leaves alone.
#[test]
fn a_spawn_start_out_of_descriptors_says_so_and_leaves_no_temp_directory() {
    isolated(DEADLINE, || {
        let out = common::scenario("no-descriptor-left").output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("Too many open files") || stdout.contains("EMFILE"),
            "the start should say it ran out of descriptors: {stdout}"
        );
        // The leak check of `isolated` finds what the scenario left in the shared TMPDIR.
    });
}
