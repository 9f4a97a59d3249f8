//! What a pool that breaks says it did to each call: a call that was running is
//! stopped (its pid, start and attempts), a call that had not started never ran.
//! Before: every call pending when the pool broke was `lost`, with pid 0 and attempts
//! 0, and the CLI counted never-started tasks as lost.

use std::io::Write;
use std::process::{Command, Stdio};

use supervisor::{BrokenCall, BrokenReason, WorkerState};

use super::*;
use common::children_of;

const BIN: &str = env!("CARGO_BIN_EXE_supervisor");

/// SIGKILLs every idle worker of `pool` until the restart storm breaks it (or
/// `deadline` passes).
fn kill_idle_workers_until_broken(pool: &Pool, deadline: Instant) {
    while pool.stats().broken.is_none() {
        assert!(Instant::now() < deadline, "the pool never broke");
        for w in pool.stats().workers {
            if matches!(w.state, WorkerState::Idle) {
                // SAFETY: kill with plain integers; an idle worker of this pool.
                unsafe { libc::kill(w.pid as i32, libc::SIGKILL) };
                wait_exit(w.pid as i32, Duration::from_secs(5));
            }
        }
        std::thread::yield_now();
    }
}

#[test]
fn a_broken_pool_stops_its_running_call_and_never_starts_the_rest() {
    each_method(DEADLINE, |method| {
        let pool = Pool::builder()
            .procs(2)
            .start_method(method)
            .restart_limit(3, Duration::from_secs(60))
            .build()
            .unwrap();
        let running = pool.submit(sleep_ms, 60_000);
        let deadline = Instant::now() + Duration::from_secs(30);
        let busy = loop {
            let stats = pool.stats();
            if let Some(w) = stats
                .workers
                .iter()
                .find(|w| matches!(w.state, WorkerState::Busy { .. }))
            {
                break w.pid;
            }
            assert!(Instant::now() < deadline, "the call never started");
            std::thread::yield_now();
        };
        kill_idle_workers_until_broken(&pool, deadline);
        let later = pool.submit(sleep_ms, 1);
        let e = running
            .wait_timeout(Duration::from_secs(20))
            .expect("the running call ends with its worker")
            .unwrap_err();
        match e.kind() {
            ErrorKind::PoolBroken {
                reason: BrokenReason::Storm { .. },
                call: BrokenCall::Stopped { pid, .. },
            } => assert_eq!(*pid, busy, "{e}"),
            other => panic!("expected the running call stopped by the break, got {other:?}"),
        }
        assert_eq!(e.kind().word(), "stopped");
        assert_eq!(e.pid(), Some(busy));
        assert!(
            e.to_string()
                .starts_with(&format!("task `sleep_ms` was stopped in process {busy}")),
            "{e}"
        );
        let e = later.wait().unwrap_err();
        assert!(
            matches!(
                e.kind(),
                ErrorKind::PoolBroken {
                    call: BrokenCall::NotStarted,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.kind().word(), "cancelled");
        assert_eq!(e.pid(), None);
        pool.join();
    });
}

/// The workers of a `supervisor run` (its children whose command line names one).
fn cli_workers(cli: i32) -> Vec<i32> {
    children_of(cli)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(17).any(|w| w == b"supervisor-worker"))
        })
        .collect()
}

/// `supervisor run -j 2 -- sleep {}`: the first input runs for a minute while the
/// input stalls and every idle worker is SIGKILLed until the storm rule breaks the
/// pool. The run ends then, its stdin still open: the task is recorded as stopped (its
/// pid, start and attempts), nothing more is read (before, the run read on and failed
/// every later line as not started, for as long as its input went on), and the
/// summary says where the input was left.
#[test]
fn a_run_whose_pool_broke_records_its_stopped_task_and_reads_no_more() {
    isolated(DEADLINE, || {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.json");
        let mut cli = Command::new(BIN)
            .args([
                "run",
                "-j",
                "2",
                "--restart-limit",
                "3/60s",
                "--format",
                "json",
            ])
            .args([
                "--joblog-format",
                "json",
                "--progress",
                "always",
                "--joblog",
            ])
            .arg(&log)
            .args(["--", "sleep", "{}"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = cli.id() as i32;
        let mut input = cli.stdin.take().unwrap();
        input.write_all(b"60\n").unwrap();
        input.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let has_child = |w: i32| !children_of(w).is_empty();
        // The worker running `sleep 60`.
        let busy = loop {
            if let Some(w) = cli_workers(pid).into_iter().find(|w| has_child(*w)) {
                break w;
            }
            assert!(Instant::now() < deadline, "the task never started");
            std::thread::yield_now();
        };
        // Idle workers die until the pool breaks: then the busy one is stopped.
        let mut kills = 0;
        while !wait_exit(busy, Duration::from_millis(10)) {
            assert!(
                Instant::now() < deadline,
                "the pool never broke ({kills} kills)"
            );
            for w in cli_workers(pid) {
                if w != busy && !has_child(w) {
                    // SAFETY: kill with plain integers; an idle worker of that run.
                    unsafe { libc::kill(w, libc::SIGKILL) };
                    kills += 1;
                    wait_exit(w, Duration::from_secs(5));
                }
            }
        }
        let out = cli.wait_with_output().unwrap();
        drop(input);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
        let records: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let logged: Vec<serde_json::Value> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 1, "{stdout}");
        assert_eq!(logged.len(), 1, "{logged:?}");
        let (first, line) = (&records[0], &logged[0]);
        assert_eq!(first["error"]["kind"], "stopped", "{first}");
        assert_eq!(first["pid"], busy, "{first}");
        assert_eq!(first["attempts"], 1, "{first}");
        let message = first["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("was stopped in process") && message.contains("the pool is broken"),
            "{message}"
        );
        assert_eq!(line["outcome"], "stopped", "{line}");
        assert_eq!(line["pid"], busy, "{line}");
        assert!(line["start"].as_f64().is_some_and(|s| s > 0.0), "{line}");
        assert_eq!(line["attempts"], 1, "{line}");
        let counts = "0 succeeded, 0 failed, 1 stopped while running, 0 not started";
        assert!(stderr.contains(counts), "{stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.ends_with("the input was not read past line 1"),
            "{stderr}"
        );
        assert!(
            stderr.contains("supervisor: the pool broke (") && stderr.contains("workers died"),
            "{stderr}"
        );
    });
}
