//! --halt, job slots, percent timeouts and the job log columns, as parallel.

use super::output::{run, scratch, show};
use super::*;

/// `--halt now,fail=1` stops within a second of the failure, not when it is printed.
#[test]
fn halt_now_on_the_first_failure_returns_within_a_second() {
    isolated(DEADLINE, || {
        let dir = scratch("halt");
        let started = Instant::now();
        // In input order the failure (after 1 s) comes after a 30 s job, so waiting for
        // its turn to be printed would take 30 s.
        let out = run(
            BIN,
            &[
                "run",
                "-j",
                "2",
                "--halt",
                "now,fail=1",
                "sleep {}; exit $(( {} < 5 ))",
                ":::",
                "30",
                "1",
            ],
            b"",
            &dir,
        );
        let took = started.elapsed();
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(
            took < Duration::from_millis(2500),
            "took {took:?}: {}",
            out.stderr
        );
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// `{%}` is the job slot, as in parallel: with `-j N` only 1..=N, and two tasks running
/// at once never share one (before: refused as a usage error). Each task holds a lock
/// directory named after its slot while it runs: `mkdir` fails if another running task
/// has it.
#[test]
fn the_job_slot_is_one_to_n_and_never_shared_by_running_tasks() {
    isolated(DEADLINE, || {
        let dir = scratch("slot");
        for program in ["parallel", BIN] {
            let mut args = vec!["-k", "-j", "2", "echo", "{%}", ":::", "1", "2", "3", "4"];
            if program == BIN {
                args.insert(0, "run");
            }
            let out = run(program, &args, b"", &dir);
            assert_eq!(out.code, 0, "{program}: {}", out.stderr);
            let slots: Vec<String> = show(&out.stdout).lines().map(String::from).collect();
            assert_eq!(slots.len(), 4, "{program}: {slots:?}");
            assert!(
                slots.iter().all(|s| s == "1" || s == "2"),
                "{program}: {slots:?}"
            );
        }
        let script = "mkdir lock-{%} || exit 9; echo {%} >> used; sleep 0.02; rmdir lock-{%}";
        let inputs: Vec<String> = (1..=40).map(|i| i.to_string()).collect();
        let mut args = vec!["run", "-j", "3", script, ":::"];
        args.extend(inputs.iter().map(String::as_str));
        let out = run(BIN, &args, b"", &dir);
        assert_eq!(out.code, 0, "a slot was shared: {}", out.stderr);
        let used = std::fs::read_to_string(dir.join("used")).unwrap();
        let mut slots: Vec<&str> = used.lines().collect();
        assert_eq!(slots.len(), 40);
        slots.sort_unstable();
        slots.dedup();
        assert!(
            slots.iter().all(|s| ["1", "2", "3"].contains(s)),
            "{slots:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// `--timeout N%`, as parallel: N% of the median run time of the tasks that succeeded
/// so far, applied to the running ones too; no limit before one has (the first, slow,
/// task is not stopped). Before: refused as a usage error.
#[test]
fn a_timeout_in_percent_follows_the_median_run_time() {
    isolated(DEADLINE, || {
        let dir = scratch("timeout-pct");
        let args = [
            "-k",
            "-j",
            "1",
            "--timeout",
            "200%",
            "sleep {}; echo {}",
            ":::",
            "1",
            "0.3",
            "0.3",
            "0.3",
            "30",
            "0.3",
        ];
        let mut theirs_args = vec!["--will-cite"];
        theirs_args.extend(args);
        let t = Instant::now();
        let theirs = run("parallel", &theirs_args, b"", &dir);
        let mut ours_args = vec!["run"];
        ours_args.extend(args);
        let ours = run(BIN, &ours_args, b"", &dir);
        // Under 30 s: both stopped the `sleep 30` (GNU parallel takes up to 10 s to,
        // under load).
        assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
        assert_eq!(show(&ours.stdout), show(&theirs.stdout), "{}", ours.stderr);
        assert_eq!(show(&ours.stdout), "1\n0.3\n0.3\n0.3\n0.3\n");
        assert_eq!((ours.code, theirs.code), (1, 1), "{}", ours.stderr);
        assert!(ours.stderr.contains("timed out"), "{}", ours.stderr);
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// `--halt`: nothing starts once the condition is met, as in parallel (before, the
/// worker the deciding result freed started the next queued task), and a halt on a
/// success exits 0.
#[test]
fn halt_starts_nothing_after_its_condition_and_exits_as_parallel() {
    isolated(DEADLINE, || {
        let input = b"0.8 1\n2 0\n2 0\n0.1 0\n";
        for halt in ["soon,fail=1", "now,fail=1", "now,success=1"] {
            let mut seen = Vec::new();
            for program in ["parallel", BIN] {
                let dir = scratch("halt-start");
                let mut args = vec![];
                if program == BIN {
                    args.push("run");
                }
                args.extend_from_slice(&[
                    "-j",
                    "2",
                    "--colsep",
                    " ",
                    "--halt",
                    halt,
                    "echo {#} >> started; sleep {1}; exit {2}",
                ]);
                let out = run(program, &args, input, &dir);
                let mut started: Vec<String> = std::fs::read_to_string(dir.join("started"))
                    .unwrap_or_default()
                    .lines()
                    .map(String::from)
                    .collect();
                started.sort();
                seen.push((started, out.code));
                std::fs::remove_dir_all(&dir).unwrap();
            }
            assert_eq!(
                seen[1], seen[0],
                "--halt {halt}: (started, exit code) of supervisor, then of parallel"
            );
        }
    });
}

/// The job log's Exitval and Signal columns are parallel's: a command killed by a
/// signal logs Exitval 0 and the signal, a timed-out one Exitval -1 and Signal 15, a
/// failed one its exit code and 0.
#[test]
fn joblog_exitval_and_signal_columns_are_parallels_for_signals_and_timeouts() {
    isolated(DEADLINE, || {
        let dir = scratch("joblog-columns");
        let columns = |log: &Path| -> Vec<(String, String, String)> {
            let text = std::fs::read_to_string(log).unwrap();
            let mut rows: Vec<(String, String, String)> = text
                .lines()
                .skip(1)
                .map(|l| {
                    let c: Vec<&str> = l.split('\t').collect();
                    (c[0].to_string(), c[6].to_string(), c[7].to_string())
                })
                .collect();
            rows.sort();
            rows
        };
        let args = [
            "--timeout",
            "2",
            "sh",
            "-c",
            "{}",
            ":::",
            "kill -9 $$",
            "kill -15 $$",
            "sleep 30",
            "exit 3",
            "true",
        ];
        let mut theirs_args = vec!["--will-cite", "--joblog", "theirs.tsv"];
        theirs_args.extend(args);
        run("parallel", &theirs_args, b"", &dir);
        let mut ours_args = vec!["run", "--joblog", "ours.tsv"];
        ours_args.extend(args);
        let ours = run(BIN, &ours_args, b"", &dir);
        assert_eq!(ours.code, 1, "{}", ours.stderr);
        let theirs = columns(&dir.join("theirs.tsv"));
        assert_eq!(theirs.len(), 5, "{theirs:?}");
        assert_eq!(columns(&dir.join("ours.tsv")), theirs);
        std::fs::remove_dir_all(&dir).unwrap();
    });
}
