//! Faults of the outputs and of resources: a descriptor limit, a full disk on either
//! output, a closed standard output, a read-write /dev/null: reported, never a panic or
//! work quietly missing.

use super::*;

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
