//! The daemon: status and stop, one run per pidfile, a SIGKILLed daemon's leftovers
//! cleaned, an idle control connection, and another user's run.

use super::*;

#[test]
fn daemon_status_and_stop() {
    isolated(DEADLINE, || {
        let dir = temp_dir("daemon");
        let input = dir.join("in.txt");
        std::fs::write(&input, lines(200, "200ms")).unwrap();
        let pidfile = dir.join("run.pid");
        let output = dir.join("out.txt");
        let log = dir.join("log.txt");
        let out = cli(
            &[
                "run",
                "--daemon",
                "--pidfile",
                pidfile.to_str().unwrap(),
                "--log",
                log.to_str().unwrap(),
                "--output",
                output.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
                "-j",
                "2",
                "--task",
                "sleep",
            ],
            "",
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(
            out.stderr.contains("running in the background as pid"),
            "{}",
            out.stderr
        );
        let status = cli(&["status", "--pidfile", pidfile.to_str().unwrap()], "");
        assert_eq!(status.code, 0, "{}", status.stderr);
        let s: Value = serde_json::from_str(status.stdout.trim()).unwrap();
        assert_eq!(s["running"], true);
        let daemon_pid = s["pid"].as_i64().unwrap() as i32;
        // It is in its own session, detached from us.
        assert_ne!(
            common::stat_fields(daemon_pid).unwrap().ppid,
            std::process::id() as i32
        );
        // The pidfile is the pid alone, so `kill $(cat run.pid)` works.
        assert_eq!(
            std::fs::read_to_string(&pidfile).unwrap(),
            format!("{daemon_pid}\n")
        );
        let stop = cli(
            &["stop", "--wait", "--pidfile", pidfile.to_str().unwrap()],
            "",
        );
        assert_eq!(stop.code, 0, "{}", stop.stderr);
        assert!(
            common::has_exited(daemon_pid),
            "stop --wait waited for the end"
        );
        assert!(!pidfile.exists(), "pidfile removed");
        assert!(
            !dir.join("run.pid.control").exists(),
            "control directory removed"
        );
        let after = cli(&["status", "--pidfile", pidfile.to_str().unwrap()], "");
        assert_eq!(after.code, 2, "no pidfile is an error: {}", after.stderr);
        assert!(
            after.stderr.contains("the pidfile does not exist"),
            "{}",
            after.stderr
        );
        assert!(std::fs::read_to_string(&output).unwrap().lines().count() < 200);
        assert_all_gone(Duration::from_secs(5));
        std::fs::remove_dir_all(dir).unwrap();
    });
}

/// Starts a background run of `sleep` over `n` lines of `each` on `pidfile`.
fn daemon(pidfile: &std::path::Path, input: &std::path::Path) -> Out {
    cli(
        &[
            "run",
            "--daemon",
            "--pidfile",
            pidfile.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--grace",
            "100ms",
            "-j",
            "1",
            "--task",
            "sleep",
        ],
        "",
    )
}

#[test]
fn two_daemons_started_at_once_on_one_pidfile_exactly_one_runs() {
    isolated(Duration::from_secs(300), || {
        let dir = temp_dir("daemon-race");
        let input = dir.join("in.txt");
        std::fs::write(&input, lines(5, "60s")).unwrap();
        let pidfile = dir.join("run.pid");
        for round in 0..100 {
            let racers: Vec<_> = (0..2)
                .map(|_| {
                    let (pidfile, input) = (pidfile.clone(), input.clone());
                    std::thread::spawn(move || daemon(&pidfile, &input))
                })
                .collect();
            let outs: Vec<Out> = racers.into_iter().map(|r| r.join().unwrap()).collect();
            let started: Vec<&Out> = outs.iter().filter(|o| o.code == 0).collect();
            assert_eq!(
                started.len(),
                1,
                "round {round}: {:?}",
                outs.iter().map(|o| (o.code, &o.stderr)).collect::<Vec<_>>()
            );
            let refused = outs.iter().find(|o| o.code != 0).unwrap();
            assert_eq!(refused.code, 2, "{}", refused.stderr);
            assert!(
                refused.stderr.contains("a run is already using"),
                "{}",
                refused.stderr
            );
            let pid: i32 = std::fs::read_to_string(&pidfile)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let stop = cli(
                &["stop", "--wait", "--pidfile", pidfile.to_str().unwrap()],
                "",
            );
            assert_eq!(stop.code, 0, "round {round}: {}", stop.stderr);
            assert!(common::has_exited(pid), "round {round}: the one run ended");
            assert!(!pidfile.exists(), "round {round}: removed by its owner");
        }
        assert_all_gone(Duration::from_secs(5));
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn a_sigkilled_daemons_leftovers_are_cleaned_by_the_next_status_and_its_pidfile_reused() {
    isolated(DEADLINE, || {
        let dir = temp_dir("daemon-killed");
        let input = dir.join("in.txt");
        std::fs::write(&input, lines(5, "60s")).unwrap();
        let pidfile = dir.join("run.pid");
        let control = dir.join("run.pid.control");
        assert_eq!(daemon(&pidfile, &input).code, 0);
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(control.exists());
        // Once its worker runs a task, the run is fully up (its workers connected).
        let up_by = Instant::now() + Duration::from_secs(30);
        loop {
            let status = cli(&["status", "--pidfile", pidfile.to_str().unwrap()], "");
            let s: Value = serde_json::from_str(status.stdout.trim()).unwrap();
            if s["in_progress"] == 1 {
                break;
            }
            assert!(Instant::now() < up_by, "the run never started a task: {s}");
        }
        // SAFETY: a plain kill of the daemon this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        assert!(wait_exit(pid, Duration::from_secs(10)));
        assert_all_gone(Duration::from_secs(10));
        let status = cli(&["status", "--pidfile", pidfile.to_str().unwrap()], "");
        assert_eq!(status.code, 1, "{}", status.stderr);
        assert_eq!(
            status.stdout.trim(),
            format!("{{\"running\":false,\"pid\":{pid}}}")
        );
        assert!(
            !control.exists(),
            "the dead run's control directory is removed"
        );
        assert!(
            !pidfile.exists(),
            "its pidfile too (provably stale: unlocked, its pid gone)"
        );
        let stop = cli(&["stop", "--pidfile", pidfile.to_str().unwrap()], "");
        assert_eq!(stop.code, 2, "{}", stop.stderr);
        assert!(
            stop.stderr.contains("the pidfile does not exist"),
            "{}",
            stop.stderr
        );
        // A stale pidfile the next status did not see is taken over by a new run.
        std::fs::write(&pidfile, format!("{pid}\n")).unwrap();
        assert_eq!(daemon(&pidfile, &input).code, 0);
        let again = cli(
            &["stop", "--wait", "--pidfile", pidfile.to_str().unwrap()],
            "",
        );
        assert_eq!(again.code, 0, "{}", again.stderr);
        assert_all_gone(Duration::from_secs(5));
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn an_idle_control_connection_does_not_delay_status() {
    isolated(DEADLINE, || {
        let dir = temp_dir("daemon-idle");
        let input = dir.join("in.txt");
        std::fs::write(&input, lines(5, "60s")).unwrap();
        let pidfile = dir.join("run.pid");
        assert_eq!(daemon(&pidfile, &input).code, 0);
        let idle: Vec<_> = (0..3)
            .map(|_| {
                std::os::unix::net::UnixStream::connect(dir.join("run.pid.control/sock")).unwrap()
            })
            .collect();
        let started = Instant::now();
        let status = cli(&["status", "--pidfile", pidfile.to_str().unwrap()], "");
        let took = started.elapsed();
        assert_eq!(status.code, 0, "{}", status.stderr);
        // The server gives a silent client 5 s; status must not wait behind them.
        assert!(took < Duration::from_secs(4), "status took {took:?}");
        drop(idle);
        let stop = cli(
            &["stop", "--wait", "--pidfile", pidfile.to_str().unwrap()],
            "",
        );
        assert_eq!(stop.code, 0, "{}", stop.stderr);
        assert_all_gone(Duration::from_secs(5));
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn status_of_another_users_run_says_permission_denied() {
    isolated(DEADLINE, || {
        let dir = temp_dir("daemon-other");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let input = dir.join("in.txt");
        std::fs::write(&input, lines(5, "60s")).unwrap();
        let pidfile = dir.join("run.pid");
        assert_eq!(daemon(&pidfile, &input).code, 0);
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            let out = Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
                .args(["status", "--pidfile", pidfile.to_str().unwrap()])
                .output()
                .expect("setpriv runs");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{stderr}");
            assert!(stderr.contains("Permission denied"), "{stderr}");
        } else {
            eprintln!("not root: another user's view is not checked");
        }
        let stop = cli(
            &[
                "stop",
                "--wait",
                "--timeout",
                "20s",
                "--pidfile",
                pidfile.to_str().unwrap(),
            ],
            "",
        );
        assert_eq!(stop.code, 0, "{}", stop.stderr);
        assert_all_gone(Duration::from_secs(5));
        std::fs::remove_dir_all(dir).unwrap();
    });
}
