//! The `supervisor` binary, as a user runs it: every option and behaviour of `run`,
//! exit codes, signals, SIGKILL of the supervisor, the daemon, the progress bar.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{has_exited, isolated, stat_fields, wait_exit};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_supervisor");
const DEADLINE: Duration = Duration::from_secs(120);

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

fn start(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("supervisor binary starts")
}

/// Runs the binary with `stdin`; kills it if it outlives 60 s (a hang fails the test).
/// Both output pipes are drained while it runs, so it never blocks on a full pipe.
fn cli(args: &[&str], stdin: &str) -> Out {
    use std::io::Read;
    let mut child = start(args);
    let mut input = child.stdin.take().unwrap();
    let text = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let finished = wait_exit(child.id() as i32, Duration::from_secs(60));
    if !finished {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    writer.join().unwrap();
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(
        finished,
        "supervisor {args:?} did not finish within 60 s; stderr: {stderr}"
    );
    Out {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// Live processes running the supervisor binary (workers included), excluding this one.
fn supervisor_processes() -> Vec<i32> {
    let bin = std::fs::canonicalize(BIN).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == bin))
        .filter(|pid| !has_exited(*pid))
        .collect()
}

/// Every supervisor process (and so every worker) is gone within `within`.
fn assert_all_gone(within: Duration) {
    let deadline = Instant::now() + within;
    for pid in supervisor_processes() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(wait_exit(pid, left), "supervisor process {pid} still alive");
    }
}

/// The worker pid a failure line names (`process N`, or `(pid N)`).
fn records_pid_of(line: &str) -> String {
    let after = line
        .split("process ")
        .nth(1)
        .or_else(|| line.split("(worker ").nth(1))
        .unwrap_or_else(|| panic!("no pid in {line}"));
    after.chars().take_while(|c| c.is_ascii_digit()).collect()
}

/// Milliseconds in a duration printed like `21ms` or `1s 5ms`.
fn humantime_ms(s: &str) -> u64 {
    s.split_whitespace()
        .map(|part| {
            if let Some(ms) = part.strip_suffix("ms") {
                ms.parse::<u64>().unwrap()
            } else if let Some(secs) = part.strip_suffix('s') {
                secs.parse::<u64>().unwrap() * 1000
            } else {
                panic!("not a duration: {s}")
            }
        })
        .sum()
}

fn lines(n: usize, line: &str) -> String {
    (0..n).map(|_| format!("{line}\n")).collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("supervisor-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn procs_8_nice_10_whoami_shows_8_workers_at_nice_10_in_their_own_groups() {
    isolated(DEADLINE, || {
        let out = cli(
            &[
                "run", "--procs", "8", "--nice", "10", "--format", "json", "--task", "whoami",
            ],
            &lines(4000, "x"),
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let records = out.json();
        assert_eq!(records.len(), 4000);
        let mut pids = HashSet::new();
        for r in &records {
            let who = &r["output"];
            assert_eq!(who["nice"], 10, "{r}");
            assert_eq!(who["pgid"], who["pid"], "a worker leads its own group: {r}");
            assert_eq!(r["pid"], who["pid"]);
            pids.insert(who["pid"].as_u64().unwrap());
        }
        assert_eq!(pids.len(), 8, "distinct worker pids: {pids:?}");
        assert_all_gone(Duration::from_secs(5));
    });
}

#[test]
fn output_keeps_input_order_under_random_durations_unless_unordered() {
    isolated(DEADLINE, || {
        let input: String = (0..30).map(|i| format!("0.0{}\n", (i * 7) % 10)).collect();
        let out = cli(
            &["run", "-j", "4", "--", "sh", "-c", "sleep {}; echo {}"],
            &input,
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.stdout, input);
        let out = cli(
            &[
                "run",
                "-j",
                "4",
                "--unordered",
                "--",
                "sh",
                "-c",
                "sleep $0; echo $0",
            ],
            "0.3\n0\n",
        );
        assert_eq!(out.stdout, "0\n0.3\n", "unordered prints as they finish");
    });
}

#[test]
fn a_fault_mix_gives_the_right_kinds_and_exit_1_and_keeps_every_ok_output() {
    isolated(DEADLINE, || {
        let input = "ok\npanic\nok\nsegfault\nabort\nok\nexit 3\nhang\nfail nope\nok\n";
        let out = cli(
            &[
                "run",
                "-j",
                "3",
                "--timeout",
                "1s",
                "--grace",
                "200ms",
                "--format",
                "json",
                "--task",
                "fault",
            ],
            input,
        );
        assert_eq!(out.code, 1);
        let records = out.json();
        let kinds: Vec<String> = records
            .iter()
            .map(|r| {
                if r["ok"] == true {
                    "ok".into()
                } else {
                    r["error"]["kind"].as_str().unwrap().to_string()
                }
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "ok",
                "panicked",
                "ok",
                "crashed",
                "crashed",
                "ok",
                "exited",
                "timed_out",
                "failed",
                "ok"
            ]
        );
        assert_eq!(records[3]["error"]["signal"], 11);
        assert_eq!(records[4]["error"]["signal"], 6);
        assert_eq!(records[6]["error"]["exit_code"], 3);
        for r in records.iter().filter(|r| r["ok"] == true) {
            assert_eq!(r["output"], "ok");
            assert!(r["pid"].as_u64().unwrap() > 0);
        }
        // Text mode: one stderr line per failure naming input, pid and cause.
        let out = cli(&["run", "-j", "2", "--task", "fault"], "ok\nsegfault\nok\n");
        assert_eq!(out.code, 1);
        assert_eq!(out.stdout, "ok\nok\n");
        let line = out.stderr.lines().find(|l| l.contains("segfault")).unwrap();
        let pid = records_pid_of(line);
        assert!(line.contains("SIGSEGV"), "{line}");
        // The pid is said once, not once by the CLI and again by the message.
        assert_eq!(line.matches(&pid).count(), 1, "{line}");
        assert_all_gone(Duration::from_secs(5));
    });
}

#[test]
fn a_malformed_line_fails_with_kind_decode_and_the_run_continues() {
    isolated(DEADLINE, || {
        let out = cli(
            &["run", "--format", "json", "--task", "prime-factors"],
            "12\nabc\n97\n",
        );
        assert_eq!(out.code, 1);
        let r = out.json();
        assert_eq!(r[0]["output"], "2 2 3");
        assert_eq!(r[1]["error"]["kind"], "decode");
        assert!(r[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 2: `abc`"));
        assert_eq!(r[2]["output"], "97");
    });
}

#[test]
fn input_is_never_dropped_and_failed_commands_keep_their_output() {
    isolated(DEADLINE, || {
        // A line that is not UTF-8 is run (converted lossily), not the end of the input.
        let out = cli(&["run", "--", "echo"], "ok1\ncaf\u{e9}\nok2\n");
        assert_eq!(out.code, 0);
        let mut child = start(&["run", "--", "echo"]);
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"ok1\ncaf\xe9\nok2\n").unwrap();
        drop(stdin);
        let got = child.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got.stdout),
            "ok1\ncaf\u{fffd}\nok2\n"
        );
        // A failed command's stdout is still printed, and its stderr reaches ours.
        let out = cli(
            &[
                "run",
                "--",
                "sh",
                "-c",
                "echo partial $0; echo oops >&2; exit 7",
            ],
            "a\n",
        );
        assert_eq!(out.code, 1);
        assert_eq!(out.stdout, "partial a\n");
        assert!(
            out.stderr.contains("oops") && out.stderr.contains("exited with code 7"),
            "{}",
            out.stderr
        );
        let out = cli(
            &["run", "--format", "json", "--", "sh", "-c", "echo err >&2"],
            "a\n",
        );
        assert_eq!(out.stderr, "err\n");
        // Built-in tasks print one line per input, even an empty one.
        let out = cli(&["run", "--task", "prime-factors"], "1\n2\n3\n");
        assert_eq!(out.stdout, "\n2\n3\n");
    });
}

#[test]
fn usage_errors_exit_2_with_one_line_and_start_nothing() {
    isolated(DEADLINE, || {
        for (args, needle) in [
            (vec!["run", "--task", "nope"], "unknown task `nope`"),
            (
                vec!["run", "--timeout", "soon", "--task", "sleep"],
                "--timeout soon: expected a duration",
            ),
            (
                vec!["run", "--input", "/nonexistent/in.txt", "--task", "sleep"],
                "cannot read the input /nonexistent/in.txt",
            ),
            (
                vec!["run", "--nice", "40", "--task", "sleep"],
                "--nice 40 is outside -20..=19",
            ),
            (vec!["run"], "nothing to run"),
            (
                vec!["run", "--pipe", "cat"],
                "does not split stdin into blocks",
            ),
            (vec!["run", "-j", "0", "echo"], "-j 0"),
            // Not silently in completion order (found by the adversarial pass).
            (
                vec!["run", "-k", "--lb", "echo", ":::", "a"],
                "-k with --line-buffer",
            ),
            (vec!["run", "echo", "{= s/a/b/ =}"], "Perl expression"),
            (vec!["run", "echo", ":::+", "a"], "there is none"),
            (
                vec!["run", "--colsep", "(", "echo"],
                "not a regular expression",
            ),
            (vec!["run", "--halt", "later", "echo"], "--halt later"),
            (
                vec!["run", "--task", "sha512-chain", "--arg", "iters=5"],
                "has no --arg `iters`",
            ),
            (
                vec!["run", "--task", "sha512-chain", "--arg", "iterations=abc"],
                "not a whole number",
            ),
            (vec!["run", "--task", "search"], "needs --arg pattern=TEXT"),
            (
                vec!["run", "--input", "/tmp", "--task", "sleep"],
                "it is a directory",
            ),
            (
                vec!["run", "--timeout", "0s", "--task", "sleep"],
                "--timeout must be longer than 0",
            ),
            (
                vec!["run", "-j", "100000", "--task", "sleep"],
                "more than 4096",
            ),
            (
                vec!["run", "--output", "x", "--task", "sleep"],
                "go with --daemon",
            ),
        ] {
            let out = cli(&args, "1ms\n");
            assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
            assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
            assert!(out.stdout.is_empty());
        }
        let out = cli(&["tasks"], "");
        assert_eq!(out.code, 0);
        for name in [
            "sha512-chain",
            "prime-factors",
            "pseudowords",
            "search",
            "sleep",
            "whoami",
            "fault",
        ] {
            assert!(out.stdout.contains(name), "{name}");
        }
    });
}

#[test]
fn lowering_nice_without_privilege_exits_2() {
    common::require_root("to run the binary as `nobody`");
    isolated(DEADLINE, || {
        use std::os::unix::process::CommandExt;
        let out = Command::new(BIN)
            .args(["run", "--nice", "-5", "--task", "sleep"])
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("cannot lower the nice value from 0 to -5"),
            "{stderr}"
        );
    });
}

#[test]
fn builtin_tasks_compute_what_they_promise() {
    isolated(DEADLINE, || {
        let out = cli(
            &["run", "--task", "sha512-chain", "--arg", "iterations=2"],
            "abc\n",
        );
        // Python: h = b"abc"; twice: h = hashlib.sha512(h).hexdigest().encode()
        assert_eq!(out.stdout.trim(), "ee02b3dd5b2c06e4e61888d141998abac194d57692f77ae7a28d748fdf9b9f28f756d980687f7290f1306857edf3fe01f8ebf4626880d49a33e029399cb2d700");
        assert_eq!(out.code, 0);
        let dir = temp_dir("words");
        let out = cli(
            &[
                "run",
                "--task",
                "pseudowords",
                "--arg",
                "count=100",
                "--arg",
                &format!("out={}", dir.display()),
            ],
            "ka\nzo\n",
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let words = std::fs::read_to_string(dir.join("2.txt")).unwrap();
        assert_eq!(words.lines().count(), 100);
        assert!(words.lines().all(|w| w.starts_with("zo")));
        std::fs::write(dir.join("hay.txt"), "a needle\nnothing\nneedle again\n").unwrap();
        let path = dir.join("hay.txt").display().to_string();
        let out = cli(
            &["run", "--task", "search", "--arg", "pattern=needle"],
            &format!("{path}\n"),
        );
        assert_eq!(
            out.stdout,
            format!("{path}:1:a needle\n{path}:3:needle again\n")
        );
        let out = cli(&["run", "--task", "sleep"], "20ms\n");
        let slept = humantime_ms(out.stdout.trim());
        assert!((20..500).contains(&slept), "{}", out.stdout);
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn joblog_stats_retries_recycling_and_start_methods() {
    isolated(DEADLINE, || {
        let dir = temp_dir("joblog");
        let log = dir.join("jobs.jsonl");
        let out = cli(
            &[
                "run",
                "-j",
                "2",
                "--retries",
                "2",
                "--stats",
                "--joblog-format",
                "json",
                "--joblog",
                log.to_str().unwrap(),
                "--start-method",
                "forkserver",
                "--task",
                "fault",
            ],
            "ok\nsegfault\nsleep 10ms\n",
        );
        assert_eq!(out.code, 1);
        let records: Vec<Value> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 3);
        for key in [
            "seq",
            "input",
            "pid",
            "start",
            "duration_ms",
            "outcome",
            "signal",
            "exit_code",
            "peak_rss_kib",
            "attempts",
        ] {
            assert!(records[0].get(key).is_some(), "joblog lacks {key}");
        }
        let crash = records.iter().find(|r| r["input"] == "segfault").unwrap();
        assert_eq!(crash["outcome"], "crashed");
        assert_eq!(crash["signal"], 11);
        assert_eq!(crash["attempts"], 3, "1 run + 2 retries");
        assert!(crash["peak_rss_kib"].as_u64().unwrap() > 0);
        // --stats: the workers live at the end, then apart those replaced: one per
        // segfault attempt. None to 2 are live: a worker is not started again once
        // nothing is left to run (the last attempt's worker may be the last to die).
        let stats = &out.stderr;
        let live = stats
            .find("supervisor: workers at the end of the run: ")
            .unwrap_or_else(|| panic!("{stats}"));
        let replaced = stats
            .find("supervisor: workers replaced during the run: 3\n")
            .unwrap_or_else(|| panic!("{stats}"));
        assert!(live < replaced, "{stats}");
        let rows = |table: &str| table.lines().filter(|l| l.ends_with(" KiB")).count();
        assert!(rows(&stats[live..replaced]) <= 2, "{stats}");
        assert_eq!(rows(&stats[replaced..]), 3, "{stats}");
        // Recycling: a worker per task; fork start method.
        let out = cli(
            &[
                "run",
                "-j",
                "2",
                "--max-tasks-per-child",
                "1",
                "--start-method",
                "fork",
                "--format",
                "json",
                "--task",
                "whoami",
            ],
            &lines(6, "x"),
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let pids: HashSet<u64> = out
            .json()
            .iter()
            .map(|r| r["pid"].as_u64().unwrap())
            .collect();
        assert_eq!(pids.len(), 6);
        std::fs::remove_dir_all(dir).unwrap();
        assert_all_gone(Duration::from_secs(5));
    });
}

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

/// Starts `run -j 2 --task fault` (plus `extra`) on two `spawn-grandchild` lines and
/// returns it with the pids of the two grandchildren its workers left running.
fn start_with_grandchildren(extra: &[&str]) -> (Child, Vec<i32>) {
    let mut args = vec!["run", "-j", "2", "--task", "fault"];
    args.extend_from_slice(extra);
    let mut child = start(&args);
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"spawn-grandchild\nspawn-grandchild\n")
        .unwrap();
    drop(stdin);
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut grandchildren = Vec::new();
    while grandchildren.len() < 2 {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "{extra:?}: supervisor ended early"
        );
        if let Some(pid) = line
            .strip_prefix("fault: left grandchild ")
            .and_then(|r| r.split_whitespace().next())
        {
            grandchildren.push(pid.parse::<i32>().unwrap());
        }
    }
    (child, grandchildren)
}

#[test]
fn a_sigkilled_supervisor_leaves_no_worker_or_grandchild_behind() {
    isolated(DEADLINE, || {
        let (mut child, grandchildren) = start_with_grandchildren(&[]);
        child.kill().unwrap();
        child.wait().unwrap();
        for pid in grandchildren {
            assert!(
                wait_exit(pid, Duration::from_secs(2)),
                "grandchild {pid} survived"
            );
        }
        assert_all_gone(Duration::from_secs(2));
    });
}

/// The same with the fork server of each server start method SIGKILLed first: its
/// workers outlive it (they watch the run, not the server), and still end, with their
/// commands, when the run is SIGKILLed.
#[test]
fn workers_outliving_their_fork_server_still_end_with_a_sigkilled_supervisor() {
    isolated(DEADLINE, || {
        for method in ["fork", "forkserver"] {
            let (mut child, grandchildren) = start_with_grandchildren(&["--start-method", method]);
            let parent = |pid: i32| stat_fields(pid).map(|s| s.ppid).unwrap_or(0);
            let workers: Vec<i32> = grandchildren.iter().map(|&g| parent(g)).collect();
            let server = parent(workers[0]);
            assert_ne!(
                server,
                child.id() as i32,
                "{method}: workers are the server's"
            );
            // SAFETY: kill with plain integers; the run's own fork server.
            unsafe { libc::kill(server, libc::SIGKILL) };
            assert!(
                wait_exit(server, Duration::from_secs(5)),
                "{method}: server lives"
            );
            for &w in &workers {
                assert!(!has_exited(w), "{method}: worker {w} died with its server");
            }
            child.kill().unwrap();
            child.wait().unwrap();
            for pid in workers.into_iter().chain(grandchildren) {
                assert!(
                    wait_exit(pid, Duration::from_secs(2)),
                    "{method}: {pid} survived the run"
                );
            }
        }
        assert_all_gone(Duration::from_secs(2));
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

#[test]
fn the_progress_bar_shows_on_a_terminal_and_not_when_piped() {
    isolated(DEADLINE, || {
        // Piped: nothing but results.
        let out = cli(&["run", "--task", "sleep"], &lines(5, "50ms"));
        assert_eq!(out.stderr, "");
        // Piped with --progress always: plain progress lines, fit for a log.
        let out = cli(
            &["run", "--progress", "always", "--task", "sleep"],
            &lines(5, "50ms"),
        );
        assert!(
            out.stderr.contains("supervisor: 5 tasks in "),
            "{}",
            out.stderr
        );
        // Under a pseudo-terminal (script(1)), stderr is a terminal: the bar is drawn.
        let dir = temp_dir("tty");
        let input = dir.join("in.txt");
        std::fs::write(&input, lines(10, "100ms")).unwrap();
        let cmd = format!("{BIN} run -j 2 --task sleep --input {}", input.display());
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let screen = String::from_utf8_lossy(&out.stdout);
        assert!(screen.contains("/10 tasks"), "{screen}");
        std::fs::remove_dir_all(dir).unwrap();
    });
}

/// Under a tight descriptor limit a run either does all its work or fails naming the
/// cause; it never exits 0 with work missing (before: `ulimit -n 17..19` gave exit 0
/// and 0 or 1 of 100 lines, after a panic inside ipc-channel broke the pool as
/// "terminated").
#[test]
fn a_descriptor_limit_never_ends_a_run_quietly_with_work_missing() {
    isolated(DEADLINE, || {
        for limit in [17, 18, 19, 20, 24] {
            let script = format!("ulimit -n {limit}; seq 100 | {BIN} run -j 2 -- echo");
            let out = Command::new("bash")
                .args(["-c", &script])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let lines = String::from_utf8_lossy(&out.stdout).lines().count();
            let stderr = String::from_utf8_lossy(&out.stderr);
            match out.status.code() {
                Some(0) => assert_eq!(lines, 100, "ulimit -n {limit}: exit 0 with {lines} lines"),
                Some(1) => assert!(
                    stderr.contains("open files") || stderr.contains("os error 24"),
                    "ulimit -n {limit}: failed without naming the cause: {stderr}"
                ),
                other => panic!("ulimit -n {limit}: exit {other:?}: {stderr}"),
            }
        }
    });
}

/// A full disk on either output is reported, never a panic or a quiet "closed": stderr
/// full loses the messages, not the run (before: exit 101, a panic after 1 of 21
/// results); stdout full stops the run with the cause on stderr and exit 3 (before:
/// 141 and nothing said, as for `| head`).
#[test]
fn a_full_disk_on_either_output_is_reported_not_a_panic() {
    isolated(DEADLINE, || {
        let full = || {
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap()
        };
        let run = |stdout: Stdio, stderr: Stdio, input: &str| {
            let mut child = Command::new(BIN)
                .args(["run", "-j", "1", "--task", "fault"])
                .stdin(Stdio::piped())
                .stdout(stdout)
                .stderr(stderr)
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        };
        let input = format!("fail boom\n{}", "ok\n".repeat(20));
        let out = run(Stdio::piped(), Stdio::from(full()), &input);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 20);
        let out = run(Stdio::from(full()), Stdio::piped(), &input);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains("cannot write the output"), "{stderr}");
        // Nor for the other commands' output (before: `tasks` panicked, exit 101, and
        // `run --help` exited 0 with the help lost).
        for args in [&["tasks"][..], &["run", "--help"], &["--version"]] {
            let out = Command::new(BIN)
                .args(args)
                .stdout(full())
                .stderr(Stdio::piped())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
            assert!(
                stderr.contains("cannot write the output"),
                "{args:?}: {stderr}"
            );
        }
    });
}

/// A standard output closed before the start (`>&-`) is an error said on stderr, with
/// nothing run (before: exit 0, every result thrown away).
#[test]
fn a_closed_standard_output_is_an_error_before_anything_runs() {
    isolated(DEADLINE, || {
        let dir = temp_dir("closed-stdout");
        let marker = dir.join("ran");
        let out = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$@" >&-"#)
            .arg("sh")
            .arg(BIN)
            .args(["run", "--", "touch"])
            .arg(&marker)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains("standard output is closed"), "{stderr}");
        assert!(!marker.exists(), "nothing ran");
        std::fs::remove_dir_all(dir).unwrap();
    });
}

/// A standard output that is `/dev/null` opened read-write (Python's
/// `subprocess.DEVNULL`, `1<>/dev/null`) is an output like any other: the run runs and
/// exits 0 (before: taken for a descriptor closed at the start, exit 3, nothing run).
#[test]
fn a_read_write_dev_null_on_standard_output_is_not_a_closed_one() {
    isolated(DEADLINE, || {
        let dir = temp_dir("rdwr-null");
        let marker = dir.join("ran");
        let out = Command::new("sh")
            .current_dir(&dir)
            .arg("-c")
            .arg(r#"exec "$@" 1<>/dev/null"#)
            .arg("sh")
            .arg(BIN)
            .args(["run", "touch", ":::"])
            .arg(&marker)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(marker.exists(), "the command did not run");
        std::fs::remove_dir_all(dir).unwrap();
    });
}

/// Commands killed at their time limit are all `timed_out`: none is reported as a
/// `failed` command killed by SIGTERM with a duration just under the limit (before:
/// 1-11% of them, as the worker's answer for the stopped call was taken; found by the
/// adversarial pass).
#[test]
fn every_command_past_its_limit_is_timed_out() {
    isolated(DEADLINE, || {
        let out = cli(
            &[
                "run",
                "-j",
                "4",
                "--timeout",
                "200ms",
                "--grace",
                "1s",
                "--format",
                "json",
                "--",
                "sleep",
            ],
            &lines(100, "100"),
        );
        assert_eq!(out.code, 1, "{}", out.stderr);
        let records: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(records.len(), 100, "{}", out.stdout);
        let not_timed_out: Vec<&&str> = records
            .iter()
            .filter(|r| !r.contains("\"kind\":\"timed_out\""))
            .collect();
        assert!(not_timed_out.is_empty(), "{not_timed_out:?}");
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

/// GNU parallel's `--eta` and `--bar` show the progress display (before: accepted and
/// ignored); it ends with a summary line, and on a terminal the bar shows the total
/// of `:::` inputs and a rounded rate.
#[test]
fn eta_and_bar_show_progress_with_a_total_a_rounded_rate_and_a_summary() {
    isolated(DEADLINE, || {
        for option in ["--eta", "--bar"] {
            let out = cli(
                &["run", option, "sh", "-c", "exit $0", ":::", "0", "1", "0"],
                "",
            );
            assert_eq!(out.code, 1, "{}", out.stderr);
            assert!(
                out.stderr.contains("supervisor: 3 tasks in ")
                    && out.stderr.contains(
                        ": 2 succeeded, 1 failed, 0 stopped while running, 0 not started\n"
                    ),
                "{option}: {}",
                out.stderr
            );
        }
        let cmd = format!("{BIN} run -j 2 --bar sleep ::: 0.2 0.2 0.2 0.2 0.2 0.2");
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let screen = String::from_utf8_lossy(&out.stdout);
        assert!(screen.contains("/6 tasks, "), "{screen}");
        let rates: Vec<&str> = screen
            .split("tasks, ")
            .skip(1)
            .filter_map(|s| s.split("/s").next())
            .filter(|r| r.len() < 12)
            .collect();
        assert!(!rates.is_empty(), "{screen}");
        for rate in rates {
            let decimals = rate.split('.').nth(1).map_or(0, str::len);
            assert!(decimals <= 2, "a rate not rounded: {rate:?} in {screen}");
        }
        assert!(
            screen.contains("supervisor: 6 tasks in ") && screen.contains("6 succeeded"),
            "{screen}"
        );
    });
}

/// The JSON job log gets each task's line when it ends, as the TSV one does (before:
/// in print order, so a SIGKILLed run lost the lines of tasks that ended behind a slow
/// one); a line names the command line and the command's own pid beside the worker's,
/// and a command that succeeded has exit code 0, not null.
#[test]
fn the_json_joblog_is_written_as_tasks_end_and_names_the_command() {
    isolated(DEADLINE, || {
        let dir = temp_dir("json-joblog-arrival");
        let log = dir.join("jobs.jsonl");
        let mut child = Command::new(BIN)
            .args([
                "run",
                "-j",
                "2",
                "--joblog-format",
                "json",
                "--joblog",
                log.to_str().unwrap(),
                "sh",
                "-c",
                "[ $0 = slow ] && exec sleep 60; echo $0; exit $1",
                ":::",
                "slow",
                "a",
                "b",
                "c",
                ":::+",
                "-",
                "0",
                "3",
                "0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        let read = || std::fs::read_to_string(&log).unwrap_or_default();
        while read().lines().count() < 3 {
            assert!(
                Instant::now() < until,
                "not logged while the first ran: {}",
                read()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let records: Vec<Value> = read()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(records.len(), 3, "{records:?}");
        for r in &records {
            let worker = r["pid"].as_u64().unwrap();
            let own = r["command_pid"].as_u64().unwrap();
            assert!(worker > 0 && own > 0 && own != worker, "{r}");
            let input = r["input"].as_str().unwrap();
            let (value, code) = input.split_once(' ').unwrap();
            assert_eq!(
                r["command"],
                format!("sh -c '[ $0 = slow ] && exec sleep 60; echo $0; exit $1' {value} {code}"),
                "{r}"
            );
            assert_eq!(r["exit_code"], code.parse::<u64>().unwrap(), "{r}");
            assert_eq!(
                r["outcome"],
                if code == "0" { "ok" } else { "failed" },
                "{r}"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    });
}

/// `--format json`: a failed command's stdout is kept, a successful one's exit code is
/// 0; a failure of a huge input line quotes a bounded prefix of it (before: a 50 MB
/// line made a 100 MB record, the line and the message quoting it).
#[test]
fn json_records_keep_failed_output_and_stay_small_for_a_huge_line() {
    isolated(DEADLINE, || {
        let out = cli(
            &[
                "run",
                "--format",
                "json",
                "sh",
                "-c",
                "echo out $0; exit $0",
                ":::",
                "0",
                "3",
            ],
            "",
        );
        assert_eq!(out.code, 1, "{}", out.stderr);
        let records = out.json();
        assert_eq!(records[0]["exit_code"], 0, "{}", out.stdout);
        assert_eq!(records[0]["output"], "out 0\n");
        assert_eq!(records[1]["error"]["exit_code"], 3, "{}", out.stdout);
        assert_eq!(records[1]["output"], "out 3\n", "{}", out.stdout);

        let huge = format!("{}\n", "7".repeat(50 << 20));
        let dir = temp_dir("huge-line");
        let log = dir.join("jobs.jsonl");
        let out = cli(
            &[
                "run",
                "--format",
                "json",
                "--joblog-format",
                "json",
                "--joblog",
                log.to_str().unwrap(),
                "--task",
                "prime-factors",
            ],
            &huge,
        );
        assert_eq!(out.code, 1);
        assert!(
            out.stdout.len() < 16 << 10,
            "a record of {} bytes",
            out.stdout.len()
        );
        let record = &out.json()[0];
        assert_eq!(record["error"]["kind"], "decode");
        assert!(
            record["input"].as_str().unwrap().starts_with("7777"),
            "{record}"
        );
        assert!(record["input"]
            .as_str()
            .unwrap()
            .ends_with(&format!("({} bytes)", 50 << 20)));
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(
            logged.len() < 16 << 10,
            "a job log line of {} bytes",
            logged.len()
        );
        let text = cli(&["run", "--task", "prime-factors"], &huge);
        assert!(
            text.stderr.len() < 16 << 10,
            "a message of {} bytes",
            text.stderr.len()
        );
        std::fs::remove_dir_all(dir).unwrap();
    });
}

/// `--line-buffer` prints a command's line as soon as it is written and `-u` passes it
/// through as it comes: the command prints a line, then waits on a FIFO that this test
/// writes only after it has read that line on supervisor's stdout (before: output was
/// grouped, so the line came only after the command ended: here, never). Bytes are kept
/// whatever the line lengths.
#[test]
fn line_buffer_and_ungroup_print_output_while_the_command_runs() {
    isolated(DEADLINE, || {
        let dir = temp_dir("line-buffer");
        let fifo = dir.join("fifo");
        for option in ["--line-buffer", "-u"] {
            assert!(Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success());
            let mut child = Command::new(BIN)
                .current_dir(&dir)
                .args([
                    "run",
                    option,
                    "echo first {}; cat fifo; echo third",
                    ":::",
                    "x",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdout = BufReader::new(child.stdout.take().unwrap());
            let (tx, rx) = std::sync::mpsc::channel();
            let reader = std::thread::spawn(move || {
                let mut line = String::new();
                stdout.read_line(&mut line).unwrap();
                tx.send(line).unwrap();
                let mut rest = String::new();
                std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
                rest
            });
            let first = rx.recv_timeout(Duration::from_secs(20));
            // Let the command go on (and end) whatever happened.
            std::fs::write(&fifo, "second\n").unwrap();
            let rest = reader.join().unwrap();
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                first.as_deref(),
                Ok("first x\n"),
                "{option}: the first line did not come while the command ran"
            );
            assert_eq!(rest, "second\nthird\n", "{option}");
            assert!(
                out.status.success(),
                "{option}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::remove_file(&fifo).unwrap();
        }
        // A SIGKILLed --line-buffer run leaves nothing in TMPDIR (the leak check of
        // `isolated` looks): its lock file has no name. Before, its named lock file
        // stayed behind.
        assert!(Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let mut child = Command::new(BIN)
            .current_dir(&dir)
            .args([
                "run",
                "--line-buffer",
                "echo first {}; cat fifo",
                ":::",
                "x",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "first x\n");
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::remove_file(&fifo).unwrap();
        // A worker's start the SIGKILL cut short may have left its bootstrap directory:
        // the next start sweeps what a dead parent left (documented), as here, once it
        // is older than a live start could be (2 s: a sweep never takes a directory a
        // start in another network namespace, whose socket it cannot see, still uses).
        let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                // A bootstrap directory, or the probe that names it (a probe left by
                // the SIGKILL is swept only when as old, too: a CI failure).
                name.starts_with(".tmp") || name.starts_with(".supervisor-probe-")
            })
            .collect();
        for dir in &left {
            let until = Instant::now() + Duration::from_secs(10);
            while dir
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age < Duration::from_millis(2200))
            {
                assert!(Instant::now() < until, "the clock stands still");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let next = cli(&["run", "true", ":::", "x"], "");
        assert_eq!(next.code, 0, "{}", next.stderr);
        // Binary output, with "lines" longer than the line limit, byte for byte.
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(dir.join("data"), &data).unwrap();
        let out = Command::new(BIN)
            .current_dir(&dir)
            .args(["run", "--line-buffer", "cat", ":::", "data"])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(
            out.stdout == data,
            "{} bytes of {}",
            out.stdout.len(),
            data.len()
        );
        // Output errors as for our own output: a full disk says so once and exits 3;
        // a closed pipe (the reader went away) exits 141 quietly.
        for option in ["--line-buffer", "-u"] {
            let out = Command::new(BIN)
                .args(["run", option, "echo", ":::", "hi"])
                .stdout(std::fs::File::create("/dev/full").unwrap())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            if option == "--line-buffer" {
                assert_eq!(out.status.code(), Some(3), "{option}: {stderr}");
                assert_eq!(
                    stderr.matches("cannot write the output").count(),
                    1,
                    "{option}: {stderr}"
                );
            } else {
                // The command itself writes (and fails): its own message and exit code.
                assert_eq!(out.status.code(), Some(1), "{option}: {stderr}");
            }
            let mut child = Command::new(BIN)
                .args(["run", option, "yes", ":::", "y"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdout = BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            assert_eq!(line, "y\n", "{option}");
            drop(stdout);
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(141), "{option}: {stderr}");
            assert_eq!(stderr, "", "{option}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    });
}

/// Waits until `path` holds a number (written by a task), and returns it.
fn wait_number_in(path: &std::path::Path, within: Duration) -> i32 {
    let until = Instant::now() + within;
    loop {
        if let Some(n) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return n;
        }
        assert!(
            Instant::now() < until,
            "{} never got a number",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn spooled_results_outlive_their_workers_while_output_waits_for_a_slow_reader() {
    isolated(DEADLINE, || {
        use std::io::Read;
        let dir = temp_dir("spool-outlives");
        // Each task prints 1.3 MB (past the inline limit: spooled) and says which
        // worker ran it; every worker ends after one task.
        let script = format!("echo $PPID > {}/w.$0; seq 200000", dir.display());
        let mut child = Command::new(BIN)
            .args(["run", "-j", "2", "--max-tasks-per-child", "1"])
            .args(["sh", "-c", &script, ":::", "1", "2", "3", "4"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Nobody reads the output yet: the supervisor is stuck printing task 1's while
        // the other tasks finish and their workers exit.
        for i in 1..=4 {
            let worker = wait_number_in(&dir.join(format!("w.{i}")), Duration::from_secs(30));
            assert!(
                wait_exit(worker, Duration::from_secs(30)),
                "worker {worker} of task {i} did not end"
            );
        }
        let mut stderr = child.stderr.take().unwrap();
        let errs = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = child.wait().unwrap();
        let errs = errs.join().unwrap();
        let one: String = (1..=200000).map(|n| format!("{n}\n")).collect();
        assert_eq!(out.len(), 4 * one.len(), "stderr: {errs}");
        assert_eq!(out, one.repeat(4));
        assert_eq!(status.code(), Some(0), "stderr: {errs}");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// Seq, Exitval and Command of each line of a job log, header left out.
fn joblog_lines(path: &std::path::Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[0].to_string(), c[6].to_string(), c[8].to_string())
        })
        .collect()
}

#[test]
fn resumed_tasks_are_logged_under_their_own_number_and_command_and_never_rerun() {
    isolated(DEADLINE, || {
        let dir = temp_dir("resume-seq");
        let log = dir.join("jobs.tsv");
        let log_arg = log.to_str().unwrap();
        let input = "exit 0\nexit 1\nexit 0\nexit 0\n";
        let run = |extra: &[&str]| {
            let mut args = vec!["run", "-j", "1", "--joblog", log_arg];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["--", "sh", "-c", "echo {#}; {}"]);
            cli(&args, input)
        };
        assert_eq!(run(&[]).code, 1);
        // Keep the lines of inputs 1 and 2 only, as a run killed then would have.
        let text = std::fs::read_to_string(&log).unwrap();
        let kept: Vec<&str> = text.lines().take(3).collect();
        std::fs::write(&log, kept.join("\n") + "\n").unwrap();

        let resumed = run(&["--resume"]);
        assert_eq!(resumed.code, 0, "{}", resumed.stderr);
        assert_eq!(resumed.stdout, "3\n4\n");
        let logged = joblog_lines(&log);
        assert_eq!(
            logged
                .iter()
                .map(|l| (l.0.as_str(), l.1.as_str()))
                .collect::<Vec<_>>(),
            [("1", "0"), ("2", "1"), ("3", "0"), ("4", "0")]
        );
        assert!(
            logged[2].2.contains("exit 0") && logged[3].2.contains("exit 0"),
            "{logged:?}"
        );
        // Nothing is left to run, twice over.
        let again = run(&["--resume"]);
        assert_eq!((again.code, again.stdout.as_str()), (0, ""));
        // `--resume-failed` runs input 2 alone, logged as 2.
        let failed = run(&["--resume-failed"]);
        assert_eq!((failed.code, failed.stdout.as_str()), (1, "2\n"));
        let logged = joblog_lines(&log);
        assert_eq!(logged.len(), 5);
        assert_eq!((logged[4].0.as_str(), logged[4].1.as_str()), ("2", "1"));
        assert!(logged[4].2.contains("exit 1"), "{logged:?}");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn tasks_running_at_a_sigterm_are_stopped_unlogged_and_run_by_resume() {
    isolated(DEADLINE, || {
        let dir = temp_dir("sigterm-resume");
        let log = dir.join("jobs.tsv");
        let d = dir.display();
        // Inputs past 2 take 30 s until `fast` exists; each says when it starts and,
        // in `done.N`, that it finished.
        let script = format!(
            "echo $0 > {d}/start.$0; [ $0 -le 2 ] || [ -e {d}/fast ] || sleep 30; echo $0 >> {d}/done.$0"
        );
        let args = |resume: bool| {
            let mut a = vec!["run", "-j", "2", "--joblog", log.to_str().unwrap()];
            if resume {
                a.push("--resume");
            }
            a.extend_from_slice(&["sh", "-c", &script, ":::", "1", "2", "3", "4", "5", "6"]);
            a.into_iter().map(String::from).collect::<Vec<_>>()
        };
        let first = args(false);
        let mut child = start(&first.iter().map(String::as_str).collect::<Vec<_>>());
        drop(child.stdin.take());
        for i in [3, 4] {
            wait_number_in(&dir.join(format!("start.{i}")), Duration::from_secs(30));
        }
        // SAFETY: a plain kill of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(143), "{stderr}");
        assert!(
            stderr.contains("2 tasks succeeded, 0 failed, 2 stopped while running, 2 not started"),
            "{stderr}"
        );
        let logged: Vec<String> = joblog_lines(&log).into_iter().map(|l| l.0).collect();
        assert_eq!(logged.len(), 2, "{logged:?}");
        assert!(
            logged.contains(&"1".into()) && logged.contains(&"2".into()),
            "{logged:?}"
        );

        std::fs::write(dir.join("fast"), "").unwrap();
        let second = args(true);
        let again = cli(&second.iter().map(String::as_str).collect::<Vec<_>>(), "");
        assert_eq!(again.code, 0, "{}", again.stderr);
        for i in 1..=6 {
            let done = std::fs::read_to_string(dir.join(format!("done.{i}"))).unwrap_or_default();
            assert_eq!(done, format!("{i}\n"), "input {i} ran to its end once");
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn retries_are_one_budget_for_failures_and_timeouts_and_attempts_say_how_many_ran() {
    isolated(DEADLINE, || {
        let dir = temp_dir("retry-budget");
        let d = dir.display();
        // Fails every time (within its limit, or past it on a slow machine: both
        // count).
        let always = format!("echo run >> {d}/always; sleep 0.6; exit 1");
        let out = cli(
            &[
                "run",
                "--retries",
                "2",
                "--timeout",
                "1s",
                "--format",
                "json",
                &always,
            ],
            "a\n",
        );
        assert_eq!(out.code, 1, "{}", out.stderr);
        let runs = std::fs::read_to_string(dir.join("always")).unwrap();
        assert_eq!(
            runs.lines().count(),
            3,
            "--retries 2 runs a command 3 times at most"
        );
        assert_eq!(out.json()[0]["attempts"], 3, "{}", out.stdout);
        // Times out, then fails, then succeeds: three runs of one budget.
        let mixed = format!(
            "echo run >> {d}/mixed; n=$(wc -l < {d}/mixed); [ $n = 1 ] && sleep 30; [ $n = 2 ] && exit 3; echo ok"
        );
        let out = cli(
            &[
                "run",
                "--retries",
                "2",
                "--timeout",
                "2s",
                "--format",
                "json",
                &mixed,
            ],
            "a\n",
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let record = &out.json()[0];
        assert_eq!(
            (record["attempts"].as_u64(), record["output"].as_str()),
            (Some(3), Some("ok a\n"))
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// `--results DIR`: a failed command's stderr goes to its file only (parallel prints
/// it nowhere else), with our one line saying it failed; a full disk under DIR stops
/// the run with exit 3, the output-error code (before: stderr echoed, exit 2).
#[test]
fn results_keep_failed_stderr_in_their_files_and_a_full_disk_exits_3() {
    common::require_root("to mount a small tmpfs");
    isolated(DEADLINE, || {
        let dir = temp_dir("results-stderr");
        let results = dir.join("r");
        let out = cli(
            &[
                "run",
                "--results",
                results.to_str().unwrap(),
                "sh",
                "-c",
                "echo out-{}; echo err-marker-{} >&2; exit 1",
                ":::",
                "a",
            ],
            "",
        );
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(!out.stderr.contains("err-marker"), "{}", out.stderr);
        assert!(out.stderr.contains("exited with code 1"), "{}", out.stderr);
        assert_eq!(
            std::fs::read_to_string(results.join("1/a/stderr")).unwrap(),
            "err-marker-a\n"
        );

        let full = dir.join("full");
        std::fs::create_dir_all(&full).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(&full)
            .status()
            .unwrap();
        assert!(mounted.success());
        let out = cli(
            &[
                "run",
                "-j",
                "1",
                "--results",
                full.to_str().unwrap(),
                "head",
                "-c",
                "400000",
                "/dev/zero",
                ":::",
                "a",
                "b",
                "c",
            ],
            "",
        );
        let unmounted = Command::new("umount").arg(&full).status().unwrap();
        assert!(unmounted.success());
        assert_eq!(out.code, 3, "{}", out.stderr);
        assert!(
            out.stderr.contains("No space left on device"),
            "{}",
            out.stderr
        );
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// A bad option is one line (two with a hint for a GNU parallel option), not clap's
/// six: the message, then the hint or where the options are listed; exit 2.
#[test]
fn a_bad_option_is_a_one_or_two_line_error_with_the_hint() {
    isolated(DEADLINE, || {
        for (args, lines, has) in [
            (
                &["run", "--bogus", "echo"][..],
                1,
                "see `supervisor run --help`",
            ),
            (&["run", "-j"][..], 1, "see `supervisor run --help`"),
            (&["run", "--pipe", "cat"][..], 2, "does not split stdin"),
            (&["bogus"][..], 1, "see `supervisor --help`"),
        ] {
            let out = cli(args, "");
            assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
            assert_eq!(
                out.stderr.lines().count(),
                lines,
                "{args:?}: {}",
                out.stderr
            );
            assert!(out.stderr.starts_with("supervisor: "), "{}", out.stderr);
            assert!(out.stderr.contains(has), "{args:?}: {}", out.stderr);
        }
    });
}

/// A run whose first task waits for a gate, and what was seen while it waited.
struct Gated {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
    /// Start and end (JSON job log: start, start + duration_ms) by seq.
    ends: std::collections::BTreeMap<u64, (f64, f64)>,
    /// Every task behind the gate had ended (its job log line was written) before the
    /// gate opened.
    all_before_gate: bool,
    /// How many had.
    ended_before_gate: usize,
    /// The supervisor's peak RSS (KiB) and open descriptors when they had (or when the
    /// wait for them gave up).
    peak_rss_kib: u64,
    fds: usize,
}

/// Runs `supervisor run -j 2 --joblog-format json --joblog LOG ARGS` on `input` (with at most `nofile`
/// descriptors), waits (at most 90 s) until the job log lists every task but the first,
/// looks at the supervisor's memory and descriptors, then calls `open_gate` (which lets
/// the first task end) and waits for the run.
fn gated_run(
    dir: &std::path::Path,
    args: &[&str],
    input: &[u8],
    nofile: Option<u32>,
    open_gate: impl FnOnce(),
) -> Gated {
    // The JSON job log: it gets each line as the result arrives (parallel's waits for
    // the output to be printed, which here is after the gate).
    let log = dir.join("jobs.jsonl");
    let input_path = dir.join("input");
    std::fs::write(&input_path, input).unwrap();
    let behind = input
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
        - 1;
    let mut cmd = match nofile {
        Some(n) => {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), BIN]);
            c
        }
        None => Command::new(BIN),
    };
    cmd.args(["run", "-j", "2", "--joblog-format", "json", "--joblog"])
        .arg(&log)
        .args(args)
        .stdin(std::fs::File::open(&input_path).unwrap())
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let lines = || {
        std::fs::read_to_string(&log)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    // Generous: on a loaded 2-core machine 10,000 short commands took over 60 s.
    let until = Instant::now() + Duration::from_secs(90);
    let mut ended_before_gate = lines();
    while Instant::now() < until && !has_exited(pid as i32) && ended_before_gate < behind {
        std::thread::sleep(Duration::from_millis(20));
        ended_before_gate = lines();
    }
    let all_before_gate = ended_before_gate >= behind;
    let peak_rss_kib = common::status_kib(&pid.to_string(), "VmHWM");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    eprintln!("waiting: peak RSS {peak_rss_kib} KiB, {fds} descriptors");
    open_gate();
    let finished = wait_exit(pid as i32, Duration::from_secs(60));
    if !finished {
        let _ = child.kill();
    }
    let code = child.wait().unwrap().code().unwrap_or(-1);
    assert!(finished, "the run did not end after the gate opened");
    let ends = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let start = v["start"].as_f64().unwrap();
            let runtime = v["duration_ms"].as_f64().unwrap() / 1000.0;
            (v["seq"].as_u64().unwrap(), (start, start + runtime))
        })
        .collect();
    Gated {
        code,
        stdout: std::fs::read(dir.join("stdout")).unwrap(),
        stderr: std::fs::read_to_string(dir.join("stderr")).unwrap(),
        ends,
        all_before_gate,
        ended_before_gate,
        peak_rss_kib,
        fds,
    }
}

impl Gated {
    /// Every task but the first ended before the first did (job log times).
    fn assert_all_ended_before_the_first(&self) {
        assert!(
            self.all_before_gate,
            "only {} of the {} tasks behind the slow one ended while it ran; stderr: {}",
            self.ended_before_gate,
            self.ends.len() - 1,
            self.stderr
        );
        let (_, head_end) = self.ends[&1];
        let late: Vec<u64> = self
            .ends
            .iter()
            .filter(|(seq, (_, end))| **seq != 1 && *end > head_end)
            .map(|(seq, _)| *seq)
            .collect();
        assert!(late.is_empty(), "tasks ended after the slow one: {late:?}");
    }
}

/// The gate of a command: the first input waits until `go` exists (for at most 120 s,
/// so the run ends whatever happens); every command then prints its input on a line
/// and `bytes` NUL bytes.
fn gate_script(go: &std::path::Path, bytes: usize) -> String {
    format!(
        "if [ \"$0\" = gate ]; then i=0; while [ ! -e {go} ] && [ $i -lt 12000 ]; do sleep 0.01; i=$((i+1)); done; fi; echo \"$0\"; head -c {bytes} /dev/zero",
        go = go.display()
    )
}

/// A built-in task that waits (a `search` of a FIFO nobody writes yet) ahead of 5,000
/// quick ones on 2 workers: the quick ones all run and end while it waits, and the
/// output is still in input order. Before, the run read no more than 1,024 inputs
/// per worker ahead of the output, so about 2,950 of them waited for the slow one
/// while both workers but one sat idle.
#[test]
fn a_slow_built_in_task_at_the_head_does_not_hold_back_the_tasks_behind_it() {
    isolated(DEADLINE, || {
        let dir = temp_dir("held-builtin");
        let fifo = dir.join("gate");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let mut input = format!("{}\n", fifo.display());
        for i in 0..5000 {
            let f = dir.join(format!("f{i}"));
            std::fs::write(&f, format!("x{i}\n")).unwrap();
            input.push_str(&format!("{}\n", f.display()));
        }
        let open_gate = || {
            use std::os::unix::fs::OpenOptionsExt;
            // The waiting task holds the FIFO open for reading: opening it for writing
            // and closing it gives that task its end of file.
            let until = Instant::now() + Duration::from_secs(30);
            while Instant::now() < until {
                let w = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&fifo);
                if w.is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        let run = gated_run(
            &dir,
            &["--task", "search", "--arg", "pattern=x"],
            input.as_bytes(),
            None,
            open_gate,
        );
        run.assert_all_ended_before_the_first();
        let want: String = (0..5000)
            .map(|i| format!("{}:1:x{i}\n", dir.join(format!("f{i}")).display()))
            .collect();
        let out = String::from_utf8(run.stdout).unwrap();
        // The gate's search found nothing: one empty line first.
        assert_eq!(out.strip_prefix('\n'), Some(&*want), "not in input order");
        assert_eq!(run.code, 0, "stderr: {}", run.stderr);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// 4,000 commands of 15 KB of output each behind one that waits, on 2 workers: they
/// all run while it waits (before, 128 did), the supervisor's memory stays bounded
/// although 60 MB of output wait for their turn (past 16 MiB they wait in a spill
/// file), and the output comes in input order, byte for byte.
#[test]
fn outputs_waiting_behind_a_slow_command_keep_the_memory_bounded() {
    isolated(DEADLINE, || {
        let dir = temp_dir("held-memory");
        let go = dir.join("go");
        // 60 MB waiting, in few enough commands to run in a few seconds on 2 cores.
        let (n, size) = (4_000, 15_000);
        let input: String = std::iter::once("gate\n".to_string())
            .chain((1..=n).map(|i| format!("{i}\n")))
            .collect();
        let script = gate_script(&go, size);
        let run = gated_run(
            &dir,
            &["--", "sh", "-c", &script, "{}"],
            input.as_bytes(),
            None,
            || std::fs::write(&go, b"").unwrap(),
        );
        run.assert_all_ended_before_the_first();
        assert!(
            run.peak_rss_kib < 56 * 1024,
            "peak RSS {} KiB with 60 MB of output waiting",
            run.peak_rss_kib
        );
        assert_eq!(run.stdout.len(), input.len() + (n + 1) * size);
        let text: Vec<u8> = run.stdout.iter().copied().filter(|b| *b != 0).collect();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            input,
            "not in input order"
        );
        assert_eq!(run.code, 0, "stderr: {}", run.stderr);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// 400 commands whose 70 KB outputs are spooled (past the 64 KiB kept in memory)
/// behind one that waits, under a limit of 256 descriptors: they all run while it
/// waits, and the waiting spools do not hold a descriptor each (past 64, they are
/// copied into one spill file), so nothing runs out of descriptors; the output is in
/// input order, byte for byte.
#[test]
fn spooled_outputs_waiting_behind_a_slow_command_keep_the_descriptors_bounded() {
    // Under 256 descriptors, and under 64, where the pool's own take a third of them
    // (before: past 64 spools kept their own descriptor, and under `ulimit -n 64`
    // most outputs were lost, "cannot open the spooled output ...: Too many open
    // files"; found by the adversarial pass).
    for nofile in [256, 64] {
        spooled_outputs_behind_a_slow_command(nofile);
    }
}

fn spooled_outputs_behind_a_slow_command(nofile: u32) {
    isolated(DEADLINE, move || {
        let dir = temp_dir("held-fds");
        let go = dir.join("go");
        let n = 400;
        let input: String = std::iter::once("gate\n".to_string())
            .chain((1..=n).map(|i| format!("{i}\n")))
            .collect();
        let script = gate_script(&go, 70_000);
        let run = gated_run(
            &dir,
            &["--", "sh", "-c", &script, "{}"],
            input.as_bytes(),
            Some(nofile),
            || std::fs::write(&go, b"").unwrap(),
        );
        run.assert_all_ended_before_the_first();
        assert!(run.fds < 160, "{} descriptors open", run.fds);
        assert_eq!(run.stdout.len(), input.len() + (n + 1) * 70_000);
        let text: Vec<u8> = run.stdout.iter().copied().filter(|b| *b != 0).collect();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            input,
            "not in input order"
        );
        assert_eq!(run.code, 0, "stderr: {}", run.stderr);
        let _ = std::fs::remove_dir_all(&dir);
    });
}
