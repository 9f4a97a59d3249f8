//! The `supervisor` binary, as a user runs it: every option and behaviour of `run`,
//! exit codes, signals, SIGKILL of the supervisor, the daemon, the progress bar.

#[path = "../common/mod.rs"]
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

mod daemon;
mod joblog;
mod output_faults;
mod progress;
mod records;
mod resume;
mod run;
mod slow_head;
mod stopping;
mod streaming;
mod supervisor_killed;
mod usage;
