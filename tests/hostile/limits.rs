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
