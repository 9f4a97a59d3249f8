//! How a run stops: SIGKILL after the grace for commands ignoring SIGTERM, fail-fast,
//! exit 130, 143 and 129 on SIGINT, SIGTERM and SIGHUP, a second signal, a signal while
//! waiting for slow input, and SIGINT after halt soon.

use super::*;

#[test]
fn commands_ignoring_sigterm_get_sigkill_after_the_grace_period() {
    isolated(DEADLINE, || {
        let dir = temp_dir("stubborn");
        let pidfile = dir.join("pid");
        // The command ignores SIGTERM and outlives its worker, which SIGTERM ends.
        let script = "trap '' TERM; echo $$ > {}; exec sleep 3600";
        let out = cli(
            &[
                "run",
                "--timeout",
                "500ms",
                "--grace",
                "300ms",
                "--",
                "sh",
                "-c",
                script,
            ],
            &format!("{}\n", pidfile.display()),
        );
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(
            out.stderr.contains("timed out after 500ms"),
            "{}",
            out.stderr
        );
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            wait_exit(pid, Duration::from_secs(2)),
            "command {pid} survived its grace period"
        );
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn fail_fast_stops_after_the_first_failure() {
    isolated(DEADLINE, || {
        let t = Instant::now();
        let input = format!("fail first\n{}", lines(20, "sleep 2s"));
        let out = cli(
            &[
                "run",
                "-j",
                "1",
                "--fail-fast",
                "--grace",
                "100ms",
                "--format",
                "json",
                "--task",
                "fault",
            ],
            &input,
        );
        assert_eq!(out.code, 1);
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        let records = out.json();
        assert_eq!(records[0]["error"]["kind"], "failed");
        assert!(
            records.iter().skip(1).all(|r| r["ok"] == false),
            "nothing more succeeded"
        );
        assert_all_gone(Duration::from_secs(5));
    });
}

/// Starts a run whose first result (a fast task) shows it is up, then signals it; the
/// other tasks sleep in their workers. With the default grace (5 s): workers that end
/// on SIGTERM must not be waited for until it is over.
fn stopped_by(signal: i32) -> (i32, String, Duration) {
    let mut child = start(&["run", "-j", "2", "--unordered", "--task", "fault"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("ok\n{}", lines(10, "sleep 30s")).as_bytes())
        .unwrap();
    drop(stdin);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "ok\n");
    let t = Instant::now();
    // SAFETY: kill with plain integers; our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    assert!(
        wait_exit(child.id() as i32, Duration::from_secs(10)),
        "did not stop"
    );
    let took = t.elapsed();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    )
}

#[test]
fn sigint_sigterm_and_sighup_stop_the_run_with_130_143_and_129() {
    isolated(DEADLINE, || {
        // SIGHUP (the terminal went away) is a stop like SIGTERM: finished results are
        // kept (before: the default action killed the run with them unwritten).
        for (signal, code) in [
            (libc::SIGINT, 130),
            (libc::SIGTERM, 143),
            (libc::SIGHUP, 129),
        ] {
            let (got, stderr, took) = stopped_by(signal);
            assert_eq!(got, code, "{stderr}");
            // The running `sleep 30s` tasks are counted as stopped, the rest as never
            // started: 10 in all.
            let counts = stderr
                .split("stopped by signal: 1 tasks succeeded, 0 failed, ")
                .nth(1)
                .unwrap_or_else(|| panic!("{stderr}"));
            let numbers: Vec<u64> = counts
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .take(2)
                .collect();
            assert!(
                counts.contains("stopped while running") && counts.contains("not started"),
                "{stderr}"
            );
            // (How many had started when the signal came is a race; the library tests
            // pin down that a started task is `Stopped`, one not started `Terminated`.)
            assert_eq!(numbers.iter().sum::<u64>(), 10, "{stderr}");
            assert!(took < Duration::from_secs(3), "{took:?}");
            assert_all_gone(Duration::from_secs(2));
        }
    });
}

/// A run blocked writing to an output nobody reads still ends on a second signal (with
/// the first one's code), within a couple of seconds; before, it hung in the write
/// through any number of signals. And `--grace` is the command's whole grace: a
/// command that traps SIGTERM past its 1 s limit is SIGKILLed `--grace 2s` later
/// (before: half of it).
#[test]
fn a_second_signal_ends_a_run_blocked_on_its_output_and_grace_is_whole() {
    isolated(DEADLINE, || {
        let mut child = start(&["run", "-j", "2", "--", "seq"]);
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(lines(60, "200000").as_bytes()).unwrap();
        drop(stdin);
        // Keep stdout open, never read it: the run fills the pipe and blocks.
        let _stdout = child.stdout.take().unwrap();
        let pid = child.id() as i32;
        let blocked = Instant::now() + Duration::from_secs(30);
        loop {
            let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
            if wchan.contains("pipe_write") {
                break;
            }
            assert!(
                Instant::now() < blocked,
                "the run never blocked on its output ({wchan})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: kill with plain integers; our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        // Let the first be handled first (pending signals are taken in number order,
        // SIGINT before SIGTERM); nothing the run does then can be observed from here
        // while it is blocked on its output.
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let ended = wait_exit(pid, Duration::from_secs(5));
        let took = t.elapsed();
        if !ended {
            child.kill().unwrap();
        }
        let status = child.wait().unwrap();
        assert!(
            ended,
            "the run ignored a second signal while blocked on its output"
        );
        assert_eq!(status.code(), Some(143), "{status:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert_all_gone(Duration::from_secs(2));

        let out = cli(
            &[
                "run",
                "--timeout",
                "1s",
                "--grace",
                "2s",
                "--format",
                "json",
                ": {}; trap '' TERM; sleep 30",
                ":::",
                "x",
            ],
            "",
        );
        let record: Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
        let ms = record["duration_ms"].as_f64().unwrap();
        assert!(
            (2_900.0..6_000.0).contains(&ms),
            "1 s limit + 2 s grace, got {ms} ms: {record}"
        );
    });
}

/// A slow producer: a complete line runs and prints while a partial one waits for its
/// end (before: the partial line held back every result), and SIGINT while the run
/// waits for input stops it at once (before: only at the end of the input).
#[test]
fn a_slow_input_streams_and_a_signal_stops_the_wait_for_it() {
    isolated(DEADLINE, || {
        let start = || {
            Command::new(BIN)
                .args(["run", "--unordered", "--task", "sleep"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let mut child = start();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let t = Instant::now();
        stdin.write_all(b"300ms\n2").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let slept = humantime_ms(line.trim());
        assert!((300..1000).contains(&slept), "{line}");
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t.elapsed()
        );
        stdin.write_all(b"00ms\n").unwrap();
        drop(stdin);
        line.clear();
        stdout.read_line(&mut line).unwrap();
        // The task says how long it slept: 200 ms, or a little more on a busy machine.
        let slept = humantime_ms(line.trim());
        assert!((200..1000).contains(&slept), "{line}");
        assert!(child.wait().unwrap().success());

        let mut child = start();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdin.write_all(b"0ms\n").unwrap();
        stdin.flush().unwrap();
        line.clear();
        stdout.read_line(&mut line).unwrap();
        // SAFETY: kill with plain integers; the child this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let gone = wait_exit(child.id() as i32, Duration::from_secs(2));
        assert!(gone, "the run went on waiting for its input");
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(130));
        drop(stdin);
    });
}

/// `--halt soon` starts nothing more and lets the running tasks finish; a SIGINT after
/// it is still a first stop request: the running command gets SIGTERM (and its trap
/// runs), not SIGKILL at once (before: the halt had set the stop flag, so the signal
/// was taken as the second one and killed).
#[test]
fn a_sigint_after_halt_soon_still_drains() {
    isolated(DEADLINE, || {
        let dir = temp_dir("halt-soon-sigint");
        let fifo = dir.join("go");
        assert!(Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        // `wait` sets its trap, then opens the FIFO, which lets `fail` fail.
        let script = "case $1 in\n\
             fail) cat go >/dev/null; exit 1;;\n\
             wait) trap 'echo TERM > got; kill $! 2>/dev/null; exit 0' TERM; echo > go; sleep 60 & wait;;\n\
             esac\n";
        std::fs::write(dir.join("task.sh"), script).unwrap();
        let mut child = Command::new(BIN)
            .current_dir(&dir)
            .args([
                "run",
                "-j",
                "2",
                "--unordered",
                "--grace",
                "30s",
                "--halt",
                "soon,fail=1",
                "sh",
                "task.sh",
                ":::",
                "fail",
                "wait",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "no failure: {seen}"
            );
            seen.push_str(&line);
            if line.contains("exited with code 1") {
                break;
            }
        }
        // The halt has happened (the failure is printed as it arrives); `wait` runs.
        // SAFETY: kill with plain integers; the child this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        assert!(
            wait_exit(child.id() as i32, Duration::from_secs(20)),
            "did not stop"
        );
        let status = child.wait().unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        assert_eq!(status.code(), Some(130), "{seen}{rest}");
        assert_eq!(
            std::fs::read_to_string(dir.join("got")).unwrap_or_default(),
            "TERM\n",
            "the running command was not given SIGTERM: {seen}{rest}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    });
}
