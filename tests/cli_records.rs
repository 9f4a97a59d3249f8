//! The records of `supervisor run`, byte for byte, in every form (text, `--format json`,
//! the JSON and TSV job logs), for a mixed run of a built-in task and of a command:
//! whatever form a task's job and output take to the worker and back, and however the
//! lines are written, they are the lines users and their scripts already read.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::isolated;

const BIN: &str = env!("CARGO_BIN_EXE_supervisor");
const DEADLINE: Duration = Duration::from_secs(120);

/// `line` with the numbers that differ from run to run (pids, times, sizes) as `N`.
fn steady(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    let keys = [
        "\"duration_ms\":",
        "\"pid\":",
        "\"start\":",
        "\"peak_rss_kib\":",
        "\"command_pid\":",
    ];
    while let Some((at, key)) = keys
        .iter()
        .filter_map(|k| rest.find(k).map(|at| (at, *k)))
        .min()
    {
        let after = at + key.len();
        out.push_str(&rest[..after]);
        let value = rest[after..]
            .find(|c: char| !(c.is_ascii_digit() || ".e+-".contains(c)))
            .unwrap_or(rest.len() - after);
        out.push_str(if value > 0 { "N" } else { "" });
        rest = &rest[after + value..];
    }
    out.push_str(rest);
    out
}

struct Run {
    code: Option<i32>,
    stdout: String,
    json_log: Vec<String>,
    tsv_log: Vec<String>,
}

/// Runs `supervisor run -j 2 ARGS` over `input` twice: once with `--format json` and the
/// JSON job log, once as text with the TSV job log (whose fields past the sequence
/// number and host are times and sizes: only its commands and exit values are kept).
fn run(dir: &Path, input: &str, args: &[&str]) -> (Run, Run) {
    let file = dir.join("input");
    std::fs::write(&file, input).unwrap();
    let one = |format: &str, log_format: &str| {
        let log = dir.join(format!("log.{log_format}"));
        let out = Command::new(BIN)
            .args(["run", "-j", "2", "--input", file.to_str().unwrap()])
            .args([
                "--format",
                format,
                "--joblog-format",
                log_format,
                "--joblog",
            ])
            .arg(&log)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .unwrap();
        let log = std::fs::read_to_string(&log).unwrap();
        let mut lines: Vec<String> = log.lines().map(steady).collect();
        if log_format == "tsv" {
            // Seq, Exitval, Signal, Command: the rest are times and sizes.
            lines = lines
                .iter()
                .map(|l| {
                    let f: Vec<&str> = l.split('\t').collect();
                    [f[0], f[6], f[7], f[8]].join("\t")
                })
                .collect();
        }
        // In the order the tasks ended: put back in input order.
        lines[usize::from(log_format == "tsv")..].sort_by_key(|l| seq_of(l));
        Run {
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout).unwrap(),
            json_log: if log_format == "json" {
                lines.clone()
            } else {
                Vec::new()
            },
            tsv_log: if log_format == "tsv" {
                lines
            } else {
                Vec::new()
            },
        }
    };
    (one("json", "json"), one("text", "tsv"))
}

fn seq_of(line: &str) -> u64 {
    let digits = match line.find("\"seq\":") {
        Some(at) => &line[at + 6..],
        None => line,
    };
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
    digits[..end].parse().unwrap_or(0)
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("supervisor-records-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A built-in task's successes and failures (its compact wire form), and a command's
/// output, stderr, pid and exit code (the full one): the same record, job-log and
/// text lines as they always were.
#[test]
fn a_mixed_run_gives_the_same_lines_in_every_form() {
    isolated(DEADLINE, || {
        let dir = temp_dir();
        let (json, text) = run(
            &dir,
            "ok\nfail boom\nsleep 0ms\nbogus \"q\"\n",
            &["--task", "fault"],
        );
        assert_eq!((json.code, text.code), (Some(1), Some(1)));
        let records: Vec<String> = json.stdout.lines().map(steady).collect();
        assert_eq!(
            records,
            [
                r#"{"attempts":1,"duration_ms":N,"input":"ok","ok":true,"pid":N,"seq":1,"output":"ok"}"#,
                r#"{"attempts":1,"duration_ms":N,"error":{"exit_code":null,"kind":"failed","message":"boom","signal":null},"input":"fail boom","ok":false,"pid":N,"seq":2}"#,
                r#"{"attempts":1,"duration_ms":N,"input":"sleep 0ms","ok":true,"pid":N,"seq":3,"output":"slept 0s"}"#,
                r#"{"attempts":1,"duration_ms":N,"error":{"exit_code":null,"kind":"decode","message":"line 4: unknown fault `bogus` (ok, fail, panic, abort, segfault, exit, hang, sleep, alloc, spawn-grandchild)","signal":null},"input":"bogus \"q\"","ok":false,"pid":N,"seq":4}"#,
            ]
        );
        assert_eq!(
            json.json_log,
            [
                r#"{"attempts":1,"duration_ms":N,"exit_code":null,"input":"ok","outcome":"ok","peak_rss_kib":N,"pid":N,"seq":1,"signal":null,"start":N}"#,
                r#"{"attempts":1,"duration_ms":N,"exit_code":null,"input":"fail boom","outcome":"failed","peak_rss_kib":N,"pid":N,"seq":2,"signal":null,"start":N}"#,
                r#"{"attempts":1,"duration_ms":N,"exit_code":null,"input":"sleep 0ms","outcome":"ok","peak_rss_kib":N,"pid":N,"seq":3,"signal":null,"start":N}"#,
                r#"{"attempts":1,"duration_ms":N,"exit_code":null,"input":"bogus \"q\"","outcome":"decode","peak_rss_kib":N,"pid":N,"seq":4,"signal":null,"start":N}"#,
            ]
        );
        assert_eq!(text.stdout, "ok\nslept 0s\n");
        assert_eq!(
            text.tsv_log,
            [
                "Seq\tExitval\tSignal\tCommand",
                "1\t0\t0\tfault ok",
                "2\t-1\t0\tfault fail boom",
                "3\t0\t0\tfault sleep 0ms",
                "4\t-1\t0\tfault bogus \"q\"",
            ]
        );

        let script = "echo out$1; echo err$1 >&2; test $1 != b";
        let (json, text) = run(&dir, "a\nb\n", &["--", "sh", "-c", script, "sh", "{}"]);
        assert_eq!((json.code, text.code), (Some(1), Some(1)));
        let records: Vec<String> = json.stdout.lines().map(steady).collect();
        assert_eq!(
            records,
            [
                r#"{"attempts":1,"duration_ms":N,"exit_code":0,"input":"a","ok":true,"pid":N,"seq":1,"output":"outa\n"}"#,
                r#"{"attempts":1,"duration_ms":N,"error":{"exit_code":1,"kind":"failed","message":"sh exited with code 1","signal":null},"input":"b","ok":false,"pid":N,"seq":2,"output":"outb\n"}"#,
            ]
        );
        let command = |x: &str| format!("sh -c 'echo out$1; echo err$1 >&2; test $1 != b' sh {x}");
        assert_eq!(
            json.json_log,
            [
                format!(
                    r#"{{"attempts":1,"command":"{}","command_pid":N,"duration_ms":N,"exit_code":0,"input":"a","outcome":"ok","peak_rss_kib":N,"pid":N,"seq":1,"signal":null,"start":N}}"#,
                    command("a")
                ),
                format!(
                    r#"{{"attempts":1,"command":"{}","command_pid":N,"duration_ms":N,"exit_code":1,"input":"b","outcome":"failed","peak_rss_kib":N,"pid":N,"seq":2,"signal":null,"start":N}}"#,
                    command("b")
                ),
            ]
        );
        assert_eq!(text.stdout, "outa\noutb\n");
        assert_eq!(
            text.tsv_log,
            [
                "Seq\tExitval\tSignal\tCommand".to_string(),
                format!("1\t0\t0\t{}", command("a")),
                format!("2\t1\t0\t{}", command("b")),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    });
}
