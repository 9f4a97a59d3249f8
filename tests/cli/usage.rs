//! Usage errors: exit 2 with one line (or two, with the hint) and nothing started, also
//! for lowering nice without privilege.

use super::*;

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
