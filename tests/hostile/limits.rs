//! Resource limits set in the child only (`ulimit` in a shell that execs the CLI):
//! every output comes out, or the run names the limit; never a `decode` error on a
//! task that succeeded.

use super::*;

/// Runs the CLI under `ulimit -n {limit}` with `-j 4` on `inputs` commands that print
/// 100 KB each (past the inline limit: their outputs are spooled).
fn run_under_descriptor_limit(limit: u32, inputs: usize) -> common::Ran {
    let exe = env!("CARGO_BIN_EXE_supervisor");
    let script = format!(
        "ulimit -n {limit} && exec \"$0\" run -j 4 -- sh -c \
         'head -c 100000 /dev/zero | tr \"\\0\" x; echo'"
    );
    let stdin: String = (1..=inputs).map(|i| format!("{i}\n")).collect();
    let dir = std::env::temp_dir();
    common::run_program(
        "sh",
        &["-c".as_ref(), script.as_ref(), exe.as_ref()],
        &dir,
        stdin.as_bytes(),
        |_| {},
    )
}

// Issue 14: under `ulimit -n` 24-32 with 4 workers, outputs failed as "cannot open the
// spooled output kept by process N: Too many open files" (the CLI held spools by a
// budget taken before the workers had their descriptors, and a claim that found no
// descriptor was given up at once).
#[test]
fn every_spooled_output_comes_out_under_a_low_descriptor_limit() {
    isolated(Duration::from_secs(240), || {
        let line = format!("{}\n", "x".repeat(100_000));
        for limit in [24, 28, 30, 32] {
            let ran = run_under_descriptor_limit(limit, 200);
            assert!(
                !ran.stderr.contains("decode"),
                "ulimit -n {limit}: {}",
                ran.stderr
            );
            assert_eq!(ran.code, 0, "ulimit -n {limit}: {}", ran.stderr);
            let lines = ran.stdout.split_inclusive(|b| *b == b'\n').count();
            assert_eq!(lines, 200, "ulimit -n {limit}: {}", ran.stderr);
            assert!(
                ran.stdout.chunks(line.len()).all(|c| c == line.as_bytes()),
                "ulimit -n {limit}: an output is not what its command printed"
            );
        }
    });
}

// Under `ulimit -n 24` a pool of 4 has room for 3 workers only; a reader slower than
// the tasks (here 64 KiB every 10 ms) keeps the run going after the last task: the
// seat that cannot be filled was counted as a restart storm, and the pool broke after
// all 200 tasks had succeeded ("the pool broke (11 workers died or failed to start
// within 60s ...: out of file descriptors"), exit 1, 5 of 5 runs. Short of a resource
// while other workers run, the pool goes on with those it has.
#[test]
fn a_seat_short_of_descriptors_while_others_run_does_not_break_the_pool() {
    isolated(Duration::from_secs(120), || {
        use std::io::{Read, Write};
        let exe = env!("CARGO_BIN_EXE_supervisor");
        let script = "ulimit -n 24 && exec \"$0\" run -j 4 -- sh -c \
                      'head -c 100000 /dev/zero | tr \"\\0\" x; echo'";
        let mut child = std::process::Command::new("sh")
            .args(["-c", script, exe])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdin: String = (1..=200).map(|i| format!("{i}\n")).collect();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let mut err = child.stderr.take().unwrap();
        let errs = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut out = child.stdout.take().unwrap();
        let (mut got, mut buf) = (Vec::new(), vec![0u8; 64 << 10]);
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            // A slow consumer (not a synchronisation).
            std::thread::sleep(Duration::from_millis(10));
        }
        let status = child.wait().unwrap();
        let stderr = errs.join().unwrap();
        assert_eq!(status.code(), Some(0), "{stderr}");
        assert_eq!(
            got.split_inclusive(|b| *b == b'\n').count(),
            200,
            "{stderr}"
        );
        assert!(!stderr.contains("broke"), "{stderr}");
    });
}

// Where the pool cannot start at all, the run says the descriptor limit is the cause.
#[test]
fn a_descriptor_limit_too_low_to_start_is_named() {
    isolated(DEADLINE, || {
        let ran = run_under_descriptor_limit(14, 20);
        assert_ne!(ran.code, 0, "{}", ran.stderr);
        assert!(ran.stderr.contains("ulimit -n"), "{}", ran.stderr);
        assert!(!ran.stderr.contains("decode"), "{}", ran.stderr);
        assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
    });
}

// Under a process limit (`ulimit -u`, as a normal user: root ignores it), a run that
// succeeds prints nothing alarming, and one that fails names the limit (before: commands
// failed as "cannot start `echo`: Resource temporarily unavailable").
#[test]
fn a_process_limit_is_named_when_commands_cannot_start() {
    common::require_root("to run the CLI as nobody, under a process limit it does not ignore");
    isolated(DEADLINE, || {
        let exe = env!("CARGO_BIN_EXE_supervisor");
        let stdin: String = (1..=20).map(|i| format!("{i}\n")).collect();
        for limit in [12, 16, 40] {
            let script = format!(
                "ulimit -u {limit} && TMPDIR=/tmp exec setpriv --reuid=65534 --regid=65534 \
                 --clear-groups \"$0\" run --start-method spawn -- echo"
            );
            let ran = common::run_program(
                "bash",
                &["-c".as_ref(), script.as_ref(), exe.as_ref()],
                std::path::Path::new("/"),
                stdin.as_bytes(),
                |_| {},
            );
            let lines = ran.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty());
            if ran.code == 0 {
                assert_eq!(lines.count(), 20, "ulimit -u {limit}: {}", ran.stderr);
                assert_eq!(ran.stderr, "", "ulimit -u {limit}");
            } else {
                let failed = ran.stderr.lines().filter(|l| l.contains("line ")).count();
                assert!(failed > 0, "ulimit -u {limit}: {}", ran.stderr);
                for l in ran.stderr.lines().filter(|l| l.contains("line ")) {
                    assert!(l.contains("ulimit -u"), "ulimit -u {limit}: {l}");
                }
            }
        }
    });
}

// Under an address-space limit too small to run (`ulimit -v` 20-25 MB), the run said
// "memory allocation of 27 bytes failed" and aborted (exit 134), or blamed the process
// limit; it says the address-space limit is the cause now, with exit 2.
#[test]
fn an_address_space_limit_too_small_to_run_is_named() {
    isolated(DEADLINE, || {
        let exe = env!("CARGO_BIN_EXE_supervisor");
        // The test binary is a debug build, which needs 24 MB or more just to load.
        for limit in [30_000, 32_000] {
            let script = format!("ulimit -v {limit} && exec \"$0\" run -- echo");
            let ran = common::run_program(
                "sh",
                &["-c".as_ref(), script.as_ref(), exe.as_ref()],
                &std::env::temp_dir(),
                b"1\n2\n",
                |_| {},
            );
            assert_eq!(ran.code, 2, "ulimit -v {limit}: {}", ran.stderr);
            assert!(
                ran.stderr.contains("ulimit -v") && ran.stderr.contains("RLIMIT_AS"),
                "ulimit -v {limit}: {}",
                ran.stderr
            );
        }
    });
}
