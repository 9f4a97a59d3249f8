//! A run stopped before its input ended says how far it read: the lines never read are
//! in none of its counts (succeeded, failed, stopped, not started), and a user who
//! re-runs the rest must know where it starts. Before, a SIGTERM during a stalled
//! stdin printed "3 tasks succeeded, ... 0 not started" and nothing about the rest.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::*;

const BIN: &str = env!("CARGO_BIN_EXE_supervisor");

/// `supervisor run -j 2 -- sh -c SCRIPT {}`, stdin and stdout piped.
fn run(script: &str) -> Child {
    Command::new(BIN)
        .args(["run", "-j", "2", "--", "sh", "-c", script, "sh", "{}"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// SIGTERMs `cli` and returns its exit code and its stderr's last line.
fn terminate(cli: Child) -> (Option<i32>, String) {
    // SAFETY: kill with plain integers, of our own child.
    unsafe { libc::kill(cli.id() as i32, libc::SIGTERM) };
    let out = cli.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default().to_string();
    (out.status.code(), last)
}

/// Two lines in, their two outputs out, then stdin stalls: a SIGTERM ends the run,
/// and its last line says the input was read to line 2 only.
#[test]
fn a_run_stopped_while_its_input_stalls_says_how_far_it_read() {
    isolated(DEADLINE, || {
        let mut cli = run("echo $1");
        let mut input = cli.stdin.take().unwrap();
        input.write_all(b"1\n2\n").unwrap();
        input.flush().unwrap();
        let mut out = BufReader::new(cli.stdout.take().unwrap());
        for want in ["1", "2"] {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            assert_eq!(line.trim_end(), want);
        }
        let (code, last) = terminate(cli);
        drop(input);
        assert_eq!(code, Some(143), "{last}");
        assert!(
            last.contains("2 tasks succeeded")
                && last.contains("0 not started")
                && last.ends_with("the input was not read past line 2"),
            "{last}"
        );
    });
}

/// Every line read (stdin closed) and a task still running: a SIGTERM's summary says
/// nothing of unread input, as there is none.
#[test]
fn a_run_stopped_after_reading_all_its_input_says_nothing_of_unread_lines() {
    isolated(DEADLINE, || {
        let dir = tempfile::tempdir().unwrap();
        let started = dir.path().join("started");
        let script = format!("touch {}; sleep 30", started.display());
        let mut cli = run(&script);
        cli.stdin.take().unwrap().write_all(b"1\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Path::new(&started).exists() {
            assert!(Instant::now() < deadline, "the task never started");
            std::thread::yield_now();
        }
        let (code, last) = terminate(cli);
        assert_eq!(code, Some(143), "{last}");
        assert!(
            last.contains("1 stopped while running") && !last.contains("not read"),
            "{last}"
        );
    });
}

/// The pool breaks (both idle workers SIGKILLed under `--restart-limit 1/60s`) while
/// stdin stalls: the run ends at once with the break's line and where it stopped
/// reading, exit 1. Before, it read on until its input ended (a stalled pipe kept it
/// for as long as it stalled, `tail -f` for ever), one "the pool is broken" failure
/// per later line.
#[test]
fn a_pool_that_breaks_while_its_input_stalls_ends_the_run() {
    isolated(DEADLINE, || {
        let mut cli = Command::new(BIN)
            .args(["run", "-j", "2", "--start-method", "spawn"])
            .args(["--restart-limit", "1/60s", "--task", "sleep"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = cli.stdin.take().unwrap();
        input.write_all(b"0ms\n0ms\n").unwrap();
        input.flush().unwrap();
        let mut out = BufReader::new(cli.stdout.take().unwrap());
        for _ in 0..2 {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            assert_eq!(line.trim_end(), "0s");
        }
        // Spawned workers are the run's own children.
        let deadline = Instant::now() + Duration::from_secs(30);
        let workers = loop {
            let workers = common::children_of(cli.id() as i32);
            if workers.len() >= 2 {
                break workers;
            }
            assert!(Instant::now() < deadline, "workers: {workers:?}");
            std::thread::yield_now();
        };
        for pid in workers {
            // SAFETY: kill with plain integers, of our own grandchild.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // stdin stays open and silent: only the break can end the run.
        let ended = Instant::now();
        let result = cli.wait_with_output().unwrap();
        let took = ended.elapsed();
        drop(input);
        let stderr = String::from_utf8_lossy(&result.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        assert_eq!(result.status.code(), Some(1), "{stderr}");
        assert!(
            last.starts_with("supervisor: the pool broke (")
                && last.ends_with("the input was not read past line 2"),
            "{stderr}"
        );
        assert!(took < Duration::from_secs(20), "ended after {took:?}");
    });
}
