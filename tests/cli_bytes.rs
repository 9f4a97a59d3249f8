//! The `supervisor` binary's command mode keeps bytes: binary output byte-exact, a
//! file name that is not UTF-8 intact, JSON that says how it encoded what is not
//! UTF-8, shell mode that no input can inject into, and a run whose commands print
//! 500 MB in bounded memory.

mod common;

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::isolated;

const BIN: &str = env!("CARGO_BIN_EXE_supervisor");
const DEADLINE: Duration = Duration::from_secs(120);

use common::Ran as Out;

/// Runs the binary in `dir` with `stdin` (see [`common::run_program`]).
fn run_in(dir: &Path, args: &[&OsStr], stdin: &[u8], watch: impl FnMut(i32)) -> Out {
    common::run_program(BIN, args, dir, stdin, watch)
}

fn run(args: &[&str], stdin: &[u8]) -> Out {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    run_in(&std::env::temp_dir(), &args, stdin, |_| {})
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cli-bytes-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// 100,000 bytes of every value, scrambled.
fn random_bytes() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

#[test]
fn binary_output_through_cat_and_gzip_is_byte_exact() {
    isolated(DEADLINE, || {
        let dir = temp_dir("binary");
        let file = dir.join("rnd.bin");
        let data = random_bytes();
        std::fs::write(&file, &data).unwrap();
        let line = format!("{}\n", file.display());
        let out = run(&["run", "--", "cat", "{}"], line.as_bytes());
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.stdout.len(), data.len());
        assert!(out.stdout == data, "cat's output changed on the way");

        let out = run(&["run", "--", "sh", "-c", "printf hello | gzip -c"], b"x\n");
        assert_eq!(out.code, 0, "{}", out.stderr);
        let mut gunzip = Command::new("gzip")
            .arg("-dc")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        gunzip.stdin.take().unwrap().write_all(&out.stdout).unwrap();
        let back = gunzip.wait_with_output().unwrap();
        assert!(back.status.success(), "gunzip refused the output");
        assert_eq!(back.stdout, b"hello");

        // JSON: not UTF-8, so base64, decoding to the same bytes.
        let out = run(
            &["run", "--format", "json", "--", "cat", "{}"],
            line.as_bytes(),
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(record.get("output").is_none(), "{record}");
        let b64 = record["output_base64"].as_str().unwrap();
        assert!(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap()
                == data
        );
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

#[test]
fn a_file_name_that_is_not_utf8_reaches_the_command_intact() {
    isolated(DEADLINE, || {
        let dir = temp_dir("latin1");
        std::fs::write(dir.join(OsStr::from_bytes(b"caf\xe9.txt")), "bonjour\n").unwrap();
        let args = ["run", "--", "cat", "{}"].map(OsStr::new);
        let out = run_in(&dir, &args, b"caf\xe9.txt\n", |_| {});
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.stdout, b"bonjour\n");
        // Shell mode quotes the same bytes.
        let args = ["run", "--shell", "--", "cat", "{}"].map(OsStr::new);
        let out = run_in(&dir, &args, b"caf\xe9.txt\n", |_| {});
        assert_eq!(out.stdout, b"bonjour\n", "{}", out.stderr);
        // JSON names the input the same way as the output.
        let args = ["run", "--format", "json", "--", "printf", "%s"].map(OsStr::new);
        let out = run_in(&dir, &args, b"caf\xe9.txt\n", |_| {});
        let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(record["input_base64"], "Y2Fm6S50eHQ=");
        assert_eq!(record["output_base64"], "Y2Fm6S50eHQ=");
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

#[test]
fn shell_mode_prints_an_injection_attempt_literally() {
    isolated(DEADLINE, || {
        let input = b"x; echo INJECTED\n$(echo PWNED) `id` 'q' \"d\"\n";
        // One string, as GNU parallel takes it: run by sh, the line quoted.
        let out = run(&["run", "echo {} | tr a-z A-Z"], input);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "X; ECHO INJECTED\n$(ECHO PWNED) `ID` 'Q' \"D\"\n"
        );
        // --shell with several words; the line appended (quoted) when there is no {}.
        let out = run(&["run", "--shell", "--", "echo"], input);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "x; echo INJECTED\n$(echo PWNED) `id` 'q' \"d\"\n"
        );
        // Several words without --shell: argv, no shell at all.
        let out = run(&["run", "--", "echo", "[{}]", "$HOME"], b"a; b\n");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "[a; b] $HOME\n");
    });
}

/// A `kB` field of `/proc/PID/status`.
fn status_kib(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[test]
fn commands_printing_500_mb_run_in_under_100_mb() {
    isolated(DEADLINE, || {
        let mut peak_kib = 0;
        // The line is appended as `$0`.
        let args = [
            "run",
            "-j",
            "2",
            "--stats",
            "--",
            "sh",
            "-c",
            "head -c 100M /dev/zero",
        ]
        .map(OsStr::new);
        let out = run_in(&std::env::temp_dir(), &args, b"1\n2\n3\n4\n5\n", |pid| {
            if let Some(kib) = status_kib(pid, "VmHWM:") {
                peak_kib = peak_kib.max(kib);
            }
        });
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.stdout.len(), 500 << 20);
        assert!(out.stdout.iter().all(|b| *b == 0));
        assert!(peak_kib > 0, "no sample of the supervisor's memory");
        assert!(
            peak_kib < 100 * 1024,
            "the supervisor peaked at {peak_kib} KiB"
        );
        // --stats: one row per worker, its peak RSS in the last column.
        let rows: Vec<u64> = out
            .stderr
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().rev().nth(1)?.parse().ok())
            .collect();
        assert!(!rows.is_empty(), "no --stats rows: {}", out.stderr);
        eprintln!("supervisor peak {peak_kib} KiB; {}", out.stderr);
        for kib in rows {
            assert!(
                kib < 100 * 1024,
                "a worker peaked at {kib} KiB: {}",
                out.stderr
            );
        }
    });
}
