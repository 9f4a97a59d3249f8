//! GNU parallel as the oracle: the same command lines given to `parallel` and to
//! `supervisor run` print the same bytes. GNU parallel is installed by `.ci/setup`,
//! which these tests run first (it does nothing when parallel is there); if it cannot
//! be installed, they fail, they never skip.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{isolated, Ran};

const BIN: &str = env!("CARGO_BIN_EXE_supervisor");
const DEADLINE: Duration = Duration::from_secs(120);

/// Installs GNU parallel if it is missing (once per test binary).
fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/setup");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .expect("bash runs .ci/setup");
        assert!(
            out.status.success(),
            "{} could not install GNU parallel, which these tests compare with: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Runs `program args` with `stdin`, in `dir` (see [`common::run_program`]).
fn run(program: &str, args: &[&str], stdin: &[u8], dir: &Path) -> Ran {
    setup();
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    common::run_program(program, &args, dir, stdin, |_| {})
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("supervisor-parallel-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("f1"), "l1\nl2\n").unwrap();
    std::fs::write(dir.join("f2"), "m1\nm2\n").unwrap();
    dir
}

/// One case: arguments after `parallel` / `supervisor run`, and stdin.
struct Case {
    args: &'static [&'static str],
    stdin: &'static [u8],
    /// Whether the exit codes must agree too (parallel exits with the number of
    /// failures; we exit 1 for any number: they agree for 0 and 1).
    same_code: bool,
}

const fn case(args: &'static [&'static str], stdin: &'static [u8]) -> Case {
    Case {
        args,
        stdin,
        same_code: true,
    }
}

const CASES: &[Case] = &[
    case(&["-k", "echo", ":::", "a", "b", "c"], b""),
    case(
        &[
            "-k",
            "echo",
            "{}",
            "{.}",
            "{/}",
            "{//}",
            "{/.}",
            ":::",
            "dir.x/a.tar.gz",
            "b",
            ".hidden",
            "/a",
        ],
        b"",
    ),
    case(
        &["-k", "echo", "{1}-{2}", ":::", "a", "b", ":::", "1", "2"],
        b"",
    ),
    case(
        &["-k", "echo", ":::", "a", "b", "c", ":::+", "1", "2", "3"],
        b"",
    ),
    case(&["-k", "-a", "f1", "-a", "f2", "echo"], b""),
    case(&["-k", "echo", "{2}", "{1}", "::::", "f1", ":::", "x"], b""),
    case(
        &["-k", "echo", ":::", "a", ":::", "x", "y", ":::+", "1", "2"],
        b"",
    ),
    case(
        &[
            "-k", "echo", "{1/}", "{1.}", "{2}", ":::", "d/f.t", ":::", "y",
        ],
        b"",
    ),
    case(
        &["-k", "--colsep", ":", "echo", "{3}", "{1}", "{}"],
        b"a:b:c\nd:e:f\n",
    ),
    case(&["-k", "--colsep", ",", "echo"], b"a b,c\n"),
    case(&["-k", "-0", "echo"], b"a\0b c\0"),
    case(&["-k", "-d", ";", "echo", "{}"], b"x,y;z,w;"),
    case(&["-k", "echo"], b"one\ntwo\n\nfour\n"),
    case(&["-k", "echo {} | tr a-z A-Z", ":::", "ab", "cd"], b""),
    case(&["-k", "echo", "{}", ":::", "x; echo INJECTED"], b""),
    case(
        &[
            "-k",
            "echo {}",
            ":::",
            "x; echo INJECTED",
            "$(echo no)",
            "`echo no`",
        ],
        b"",
    ),
    case(&["-k", "--tag", "echo", "hi", ":::", "a", "b c"], b""),
    // A last line without a newline stays so (before: one was added).
    case(&["-k", "--tag", "printf", "x%s", ":::", "a", "b"], b""),
    case(
        &[
            "-k",
            "--dry-run",
            "echo",
            "{}",
            ":::",
            "a b",
            "it's",
            "plain",
        ],
        b"",
    ),
    case(&["-k", "echo", "{#}", ":::", "a", "b", "c"], b""),
    case(&["-k", "echo", "pre{}post", "{a}", ":::", "x"], b""),
    case(&["-k", "-j", "2", "echo", ":::", "1", "2", "3", "4"], b""),
    case(&["-k", "-j", "+1", "echo", ":::", "1", "2"], b""),
    case(&["-k", "-j", "50%", "echo", ":::", "1", "2"], b""),
    case(&["-k", "exit {}", ":::", "0", "0"], b""),
    case(&["-k", "echo {}; exit {}", ":::", "0", "3"], b""),
    case(&["-k", "--timeout", "5", "echo", ":::", "fast"], b""),
    case(
        &["-k", "--keep-order", "--will-cite", "echo", ":::", "x"],
        b"",
    ),
    case(&["-k", "--no-run-if-empty", "echo"], b""),
    // Short options with their value attached, as parallel and xargs users write them
    // (before: "unknown option `-j2`").
    case(&["-k", "-j2", "echo", ":::", "a", "b"], b""),
    case(&["-kj2", "echo", ":::", "a"], b""),
    case(&["-k", "-d,", "echo"], b"x,y"),
    case(&["-k", "-af1", "echo"], b""),
    // The job slot (parallel's --dry-run slots depend on timing: not compared).
    case(&["-k", "-j", "1", "echo", "{%}{}", ":::", "a", "b"], b""),
    // Output as it comes (one task at a time, so the order is known).
    case(&["-j", "1", "--line-buffer", "echo", ":::", "a", "b"], b""),
    case(
        &["-j", "1", "--lb", "--tag", "printf 'x\ny'", ":::", "a", "b"],
        b"",
    ),
    case(&["-j", "1", "-u", "echo", ":::", "a", "b"], b""),
];

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn supervisor_prints_what_gnu_parallel_prints() {
    isolated(DEADLINE, || {
        let dir = scratch("oracle");
        let mut failures = Vec::new();
        for case in CASES {
            let mut theirs_args = vec!["--will-cite"];
            theirs_args.extend(case.args);
            let theirs = run("parallel", &theirs_args, case.stdin, &dir);
            let mut ours_args = vec!["run"];
            ours_args.extend(case.args);
            let ours = run(BIN, &ours_args, case.stdin, &dir);
            if theirs.stdout != ours.stdout || (case.same_code && theirs.code != ours.code) {
                failures.push(format!(
                    "{:?}\n  parallel: {:?} {:?}\n  ours:     {:?} {:?}\n  our stderr: {}",
                    case.args,
                    theirs.code,
                    show(&theirs.stdout),
                    ours.code,
                    show(&ours.stdout),
                    ours.stderr
                ));
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            failures.is_empty(),
            "{} cases differ:\n{}",
            failures.len(),
            failures.join("\n")
        );
    });
}

/// `--results DIR` writes parallel's layout: `DIR/1/VALUE/2/VALUE/{seq,stdout,stderr}`.
#[test]
fn results_directories_are_laid_out_as_parallels() {
    isolated(DEADLINE, || {
        let dir = scratch("results");
        let listing = |root: &Path| -> Vec<(String, Vec<u8>)> {
            let mut files = Vec::new();
            let mut stack = vec![root.to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap().flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else {
                        let rel = p.strip_prefix(root).unwrap().display().to_string();
                        files.push((rel, std::fs::read(&p).unwrap()));
                    }
                }
            }
            files.sort();
            files
        };
        let args = ["echo", "{1}{2}", ":::", "a", "b/c", ":::", "x"];
        let mut theirs_args = vec!["--will-cite", "-k", "--results", "theirs"];
        theirs_args.extend(args);
        let theirs = run("parallel", &theirs_args, b"", &dir);
        let mut ours_args = vec!["run", "-k", "--results", "ours"];
        ours_args.extend(args);
        let ours = run(BIN, &ours_args, b"", &dir);
        assert_eq!(ours.code, 0, "{}", ours.stderr);
        assert_eq!(show(&ours.stdout), show(&theirs.stdout));
        assert_eq!(listing(&dir.join("ours")), listing(&dir.join("theirs")));
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// The job log is parallel's (tab-separated, same columns); `--resume` after a SIGKILLed
/// run runs every input exactly once over both runs.
#[test]
fn resume_after_a_sigkilled_run_runs_every_input_exactly_once() {
    isolated(DEADLINE, || {
        let dir = scratch("resume");
        let done = dir.join("done");
        std::fs::create_dir_all(&done).unwrap();
        let joblog = dir.join("jobs.tsv");
        // Each job appends to a file of its own per run; the last ones are slow, so the
        // kill comes while some have finished and some have not started.
        // The mark is made at the end: a job killed midway leaves none.
        let script = "sleep $(( {} > 10 ? 2 : 0 )); echo {} >> done/{}";
        let inputs: Vec<String> = (1..=20).map(|i| i.to_string()).collect();
        let mut args: Vec<&str> = vec!["run", "-j", "2", "--joblog", "jobs.tsv", script, ":::"];
        args.extend(inputs.iter().map(String::as_str));
        let mut first = Command::new(BIN)
            .args(&args)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        while std::fs::read_to_string(&joblog).map_or(0, |l| l.lines().count()) < 11 {
            assert!(Instant::now() < until, "the first run logged too little");
            std::thread::yield_now();
        }
        first.kill().unwrap();
        first.wait().unwrap();
        let log = std::fs::read_to_string(&joblog).unwrap();
        assert!(log.starts_with(
            "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n"
        ));
        let mut again: Vec<&str> = vec!["run", "-j", "4", "--resume", "--joblog", "jobs.tsv"];
        again.extend(&args[5..]);
        let second = run(BIN, &again, b"", &dir);
        assert_eq!(second.code, 0, "{}", second.stderr);
        for i in &inputs {
            let runs = std::fs::read_to_string(done.join(i)).unwrap_or_default();
            assert_eq!(
                runs.lines().count(),
                1,
                "input {i} ran {} times",
                runs.lines().count()
            );
        }
        let seqs: Vec<u64> = std::fs::read_to_string(&joblog)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split('\t').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            seqs.len(),
            20,
            "each job logged once over both runs: {seqs:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// The job log gets a task's line when it ends, not when its turn to be printed comes:
/// a run SIGKILLed while its first task still runs has logged the nine after it, and
/// `--resume` runs only the first again (before: nothing was logged behind it, and the
/// nine ran twice).
#[test]
fn resume_keeps_the_lines_of_tasks_that_ended_behind_a_slow_one() {
    isolated(DEADLINE, || {
        let dir = scratch("resume-behind");
        std::fs::create_dir_all(dir.join("done")).unwrap();
        let script = "sleep $(( {} == 1 ? 30 : 0 )); echo {} >> done/{}";
        let inputs: Vec<String> = (1..=10).map(|i| i.to_string()).collect();
        let mut args: Vec<&str> = vec!["run", "-j", "2", "--joblog", "jobs.tsv", script, ":::"];
        args.extend(inputs.iter().map(String::as_str));
        let mut first = Command::new(BIN)
            .args(&args)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let joblog = dir.join("jobs.tsv");
        let until = Instant::now() + Duration::from_secs(20);
        while std::fs::read_to_string(&joblog).map_or(0, |l| l.lines().count()) < 10 {
            assert!(
                Instant::now() < until,
                "the nine fast tasks were not logged while the first ran: {:?}",
                std::fs::read_to_string(&joblog)
            );
            std::thread::yield_now();
        }
        first.kill().unwrap();
        first.wait().unwrap();
        let mut again: Vec<&str> = vec!["run", "--resume", "--joblog", "jobs.tsv"];
        // The first task is quick this time.
        let quick = "echo {} >> done/{}";
        again.extend([quick, ":::"]);
        again.extend(inputs.iter().map(String::as_str));
        let second = run(BIN, &again, b"", &dir);
        assert_eq!(second.code, 0, "{}", second.stderr);
        for i in &inputs {
            let runs = std::fs::read_to_string(dir.join("done").join(i)).unwrap_or_default();
            assert_eq!(
                runs.lines().count(),
                1,
                "input {i} ran {} times",
                runs.lines().count()
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// Built-in tasks' job-log lines are written out once per burst of results, not once
/// per line: still, the lines of the tasks that ended behind a slow one are in the file
/// while the run waits for it (a SIGKILL then loses none of them).
#[test]
fn builtin_tasks_lines_are_in_the_job_log_while_the_run_waits() {
    isolated(DEADLINE, || {
        let dir = scratch("builtin-joblog");
        std::fs::create_dir_all(&dir).unwrap();
        let args = ["run", "-j", "2", "--joblog", "jobs.tsv", "--task", "sleep"];
        let mut first = Command::new(BIN)
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let input = format!("30s\n{}", "0ms\n".repeat(9));
        let mut stdin = first.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        drop(stdin);
        let joblog = dir.join("jobs.tsv");
        let until = Instant::now() + Duration::from_secs(20);
        while std::fs::read_to_string(&joblog).map_or(0, |l| l.lines().count()) < 10 {
            assert!(
                Instant::now() < until,
                "the nine fast tasks were not logged while the first ran: {:?}",
                std::fs::read_to_string(&joblog)
            );
            std::thread::yield_now();
        }
        first.kill().unwrap();
        first.wait().unwrap();
        let mut seqs: Vec<u64> = std::fs::read_to_string(&joblog)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split('\t').next().unwrap().parse().unwrap())
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (2..=10).collect::<Vec<u64>>());
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

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
