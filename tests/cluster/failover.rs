//! Agents SIGKILLed or stopped, a server restarted mid-run, a SIGKILLed submitter: nothing lost, nothing run twice.

use super::*;

/// Reads the submitter's stdout line by line; `at(n)` is called after line n.
fn run_watching(
    args: &[&str],
    input: Vec<u8>,
    mut at: impl FnMut(usize),
) -> (Option<i32>, Vec<String>, String) {
    run_watching_pid(args, input, |n, _| at(n))
}

/// As [`run_watching`], `at` also given the submitter's pid.
pub(super) fn run_watching_pid(
    args: &[&str],
    input: Vec<u8>,
    mut at: impl FnMut(usize, u32),
) -> (Option<i32>, Vec<String>, String) {
    run_watching_lines(args, input, |n, pid, _| at(n, pid))
}

/// As [`run_watching_pid`], `at` also given line n.
fn run_watching_lines(
    args: &[&str],
    input: Vec<u8>,
    mut at: impl FnMut(usize, u32, &str),
) -> (Option<i32>, Vec<String>, String) {
    use std::io::{Read, Write};
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut err = child.stderr.take().unwrap();
    let errs = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut got = Vec::new();
    let pid = child.id();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        got.push(line);
        at(got.len(), pid, got.last().map_or("", String::as_str));
    }
    let status = child.wait().unwrap();
    let _ = writer.join();
    (status.code(), got, errs.join().unwrap())
}

pub(super) fn joblog(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Whether a SIGKILL of an agent mid-run has tasks to move on depends on the moment:
/// a's workers may both be between tasks then (its next pull not yet answered), so
/// nothing is redelivered. Every run must give every result once, with what a lost
/// run again on b; up to three runs, at least one of them with a redelivery (killed at
/// the 20th line whatever its host, a had nothing in flight in 1 of 3 full-suite runs;
/// killed right after a result of its own, in 1 of 2).
#[test]
fn a_sigkilled_agent_s_tasks_run_on_the_other_host_and_every_result_comes_once() {
    common::isolated(DEADLINE, || {
        let redelivered = (0..3).map(|_| sigkilled_agent_run()).find(|n| *n > 0);
        assert!(
            redelivered.is_some(),
            "agent a's running tasks were never delivered again in 3 runs"
        );
    });
}

/// One run of 200 x 30 ms on agents a and b, a SIGKILLed after the 20th result: every
/// result comes once, and what a lost (if anything) ran on b. Returns how many tasks
/// were delivered again.
fn sigkilled_agent_run() -> usize {
    {
        let server = Server::start(&[]);
        let url = server.url();
        let log = server.dir.join("joblog.json");
        let mut a = Some(Agent::start(&url, "a", 2, &[]));
        let b = Agent::start(&url, "b", 2, &[]);
        // Both serving before the run: on a loaded machine a could still be starting
        // at the 20th result, with nothing to lose.
        wait_listed(&url, &["a", "b"]);
        let input: Vec<u8> = (0..200).map(|_| "30ms\n").collect::<String>().into_bytes();
        // Killed just after a result of its own came (unordered: as it came), from
        // the 20th on: a is taking work then.
        let (code, got, err) = run_watching_lines(
            &[
                "run",
                "--nats",
                &url,
                "--ack-wait",
                "2s",
                "--task",
                "sleep",
                "--unordered",
                "--format",
                "json",
                "--joblog",
                log.to_str().unwrap(),
                "--joblog-format",
                "json",
            ],
            input,
            |n, _, line| {
                if n >= 20 && line.contains(r#""host":"a""#) {
                    if let Some(agent) = a.take() {
                        agent.signal(libc::SIGKILL);
                        drop(agent);
                    }
                }
            },
        );
        assert!(a.is_none(), "a sent no result after the 20th line: {err}");
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(got.len(), 200);
        let all = joblog(&log);
        let duplicates = all.iter().filter(|l| l["duplicate"] == true).count();
        // A task a finished and published just before the kill, but had not yet
        // acknowledged, is delivered again and run by b: b's record is then the
        // duplicate one (its result already came), so redeliveries are looked for
        // among every record, the duplicates too (CI, stop 28: 2 such, 0 others).
        let redelivered: Vec<_> = all
            .iter()
            .filter(|l| l["attempts"].as_u64() > Some(1))
            .cloned()
            .collect();
        let log: Vec<_> = all.into_iter().filter(|l| l["duplicate"] != true).collect();
        let seqs: std::collections::BTreeSet<u64> =
            log.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs.len(), 200);
        assert_eq!(log.len(), 200, "one result line per task");
        println!(
            "{duplicates} duplicate runs noted in the job log, {} redelivered",
            redelivered.len()
        );
        assert!(
            redelivered.iter().all(|l| l["host"] == "b"),
            "{redelivered:?}"
        );
        drop(b);
        redelivered.len()
    }
}

#[test]
fn a_stopped_agent_s_tasks_move_on_after_the_ack_wait() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let log = server.dir.join("joblog.json");
        let a = Agent::start(&url, "a", 1, &[]);
        let args: Vec<String> = [
            "run",
            "--nats",
            &url,
            "--ack-wait",
            "2s",
            "--task",
            "sleep",
            "--joblog",
            log.to_str().unwrap(),
            "--joblog-format",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let submitter = std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_watching(&args, b"3s\n3s\n".to_vec(), |_| {})
        });
        // Agent a holds the first task (its one worker runs it): stop it there.
        wait_busy(&url, "a");
        a.signal(libc::SIGSTOP);
        let b = Agent::start(&url, "b", 2, &[]);
        let (code, got, err) = submitter.join().unwrap();
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(got.len(), 2);
        let log: Vec<_> = joblog(&log)
            .into_iter()
            .filter(|l| l["duplicate"] != true)
            .collect();
        assert_eq!(log.len(), 2);
        let moved: Vec<_> = log
            .iter()
            .filter(|l| l["attempts"].as_u64() > Some(1))
            .collect();
        assert_eq!(
            moved.len(),
            1,
            "the stopped agent's task was delivered again: {log:?}"
        );
        assert_eq!(moved[0]["host"], "b");
        a.signal(libc::SIGCONT);
        drop((a, b));
    });
}

#[test]
fn a_server_restarted_mid_run_loses_nothing() {
    common::isolated(DEADLINE, || {
        let mut server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "a", 2, &[]);
        let input: Vec<u8> = (0..100).map(|_| "20ms\n").collect::<String>().into_bytes();
        let (code, got, err) = run_watching(
            &["run", "--nats", &url, "--task", "sleep", "--ack-wait", "3s"],
            input,
            |n| {
                if n == 20 {
                    server.stop();
                    server.launch(&[]);
                }
            },
        );
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(got.len(), 100);
        drop(a);
    });
}

/// A server SIGKILLed mid-run gives the submitter again the result messages whose
/// acknowledgement it had not stored. The same result read twice is not a second run:
/// every job-log line marked `duplicate` is another run (host, pid or start) than the
/// one kept. Before: after one restart in 100,000 tasks, 16 to 814 duplicate lines,
/// most of them the kept run itself.
#[test]
fn a_result_read_again_after_a_server_restart_is_not_a_duplicate_run() {
    common::isolated(DEADLINE, || {
        let mut server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "a", 2, &[]);
        let dir = std::env::temp_dir().join(format!("reread-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log.json");
        let log_arg = log.display().to_string();
        let n = 20_000;
        let input: Vec<u8> = "0ms\n".repeat(n).into_bytes();
        let (code, got, err) = run_watching(
            &[
                "run",
                "--nats",
                &url,
                "--task",
                "sleep",
                "--ack-wait",
                "3s",
                "--joblog",
                &log_arg,
                "--joblog-format",
                "json",
            ],
            input,
            |seen| {
                if seen == n / 4 {
                    server.kill();
                    server.launch(&[]);
                }
            },
        );
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(got.len(), n);
        let all: Vec<serde_json::Value> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let run_of =
            |l: &serde_json::Value| (l["host"].clone(), l["pid"].clone(), l["start"].clone());
        let kept: std::collections::HashMap<_, _> = all
            .iter()
            .filter(|l| l["duplicate"] != true)
            .map(|l| (l["seq"].clone().to_string(), run_of(l)))
            .collect();
        assert_eq!(kept.len(), n);
        let rereads: Vec<_> = all
            .iter()
            .filter(|l| {
                l["duplicate"] == true && kept.get(&l["seq"].to_string()) == Some(&run_of(l))
            })
            .collect();
        assert!(
            rereads.is_empty(),
            "{} re-reads logged as duplicate runs, e.g. {:?}",
            rereads.len(),
            rereads.first()
        );
        std::fs::remove_dir_all(&dir).unwrap();
        drop(a);
    });
}

#[test]
fn a_sigkilled_submitter_s_remaining_tasks_are_dropped_by_the_agents() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "a", 2, &[]);
        let input: Vec<u8> = (0..300).map(|_| "200ms\n").collect::<String>().into_bytes();
        let (code, got, _) = {
            let mut pid = None;
            let r = run_watching_pid(
                &["run", "--nats", &url, "--task", "sleep"],
                input,
                |n, child| {
                    if n == 4 {
                        pid.get_or_insert(child);
                        // SAFETY: our child, not yet reaped.
                        unsafe { libc::kill(child as i32, libc::SIGKILL) };
                    }
                },
            );
            r
        };
        assert_eq!(code, None, "killed");
        assert!(got.len() >= 4);
        let line = a.expect_line("its submitter is gone", Duration::from_secs(40));
        let dropped: u64 = line
            .split("; ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(dropped > 100, "{line}");
        // Nothing runs any more: the listing shows the agent idle.
        let idle = (0..100).any(|_| {
            let out = supervisor(&["workers", "--nats", &url, "--format", "json"], b"");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            if v[0]["busy"] == 0 && v[0]["host"] == "a" {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
            false
        });
        assert!(idle);
        drop(a);
    });
}
