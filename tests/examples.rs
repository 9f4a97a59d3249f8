//! Runs the examples (built by `cargo test` alongside the tests) and checks what they
//! print.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{isolated, wait_exit};

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

/// Runs an example with `args` and a 60 s limit (a hung example is killed and fails
/// the test); what it printed and how it exited.
fn run_raw(name: &str, args: &[&str]) -> std::process::Output {
    let path = example(name);
    assert!(
        path.exists(),
        "{} not built (cargo test builds examples)",
        path.display()
    );
    let child = Command::new(&path)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let finished = wait_exit(pid, Duration::from_secs(60));
    if !finished {
        // SAFETY: kill with plain integers; our own child, not yet reaped (the waiter
        // thread reaps it only once it exits).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let out = waiter.join().unwrap();
    assert!(finished, "example {name} hung");
    out
}

/// Runs an example with `args` and a 60 s limit; its stdout. It must succeed.
fn run_with(name: &str, args: &[&str]) -> String {
    let out = run_raw(name, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn run(name: &str) -> String {
    run_with(name, &[])
}

#[test]
fn prime_factors_example_factors_with_map_map_async_and_apply_async() {
    isolated(Duration::from_secs(90), || {
        let out = run("prime_factors");
        assert!(out.contains("map: every result, in input order"), "{out}");
        assert!(out.contains("12 numbers factored"), "{out}");
        assert_eq!(
            out.lines()
                .filter(|l| l.contains(" factors, largest "))
                .count(),
            12,
            "{out}"
        );
    });
}

#[test]
fn daemons_example_shows_join_timeout_terminate_and_the_daemon_rules() {
    isolated(Duration::from_secs(90), || {
        let out = run("daemons");
        assert!(
            out.contains("join_timeout(50ms) on the daemon: still running (alive: true)"),
            "{out}"
        );
        assert!(out.contains("terminate -> exitcode Some(-15)"), "{out}");
        assert!(
            out.contains("a daemon trying to start a child: refused: daemon process"),
            "{out}"
        );
        assert!(
            out.contains("a non-daemon trying to start a child: started a child: Ok("),
            "{out}"
        );
    });
}

#[test]
fn isolation_example_shows_the_parent_unharmed() {
    isolated(Duration::from_secs(90), || {
        let out = run("isolation");
        assert!(out.contains("segfault          -> process"), "{out}");
        assert!(out.contains("killed by SIGSEGV"), "{out}");
        assert!(out.contains("killed by SIGABRT"), "{out}");
        assert!(out.contains("panicked"), "{out}");
        assert!(out.contains("the worker's COUNTER is now 1007"), "{out}");
        assert!(
            out.contains("parent: still running, its COUNTER is 7"),
            "{out}"
        );
    });
}

#[test]
fn pseudowords_example_writes_files_at_nice_19_and_compares_with_serial() {
    isolated(Duration::from_secs(90), || {
        let out = run_with("pseudowords", &["20000"]);
        assert!(out.contains("parallel: 16 files of 20000 words"), "{out}");
        assert!(out.contains("at nice 19"), "{out}");
        assert!(out.contains("serial:   the same files in"), "{out}");
        assert!(out.contains("speedup:"), "{out}");
    });
}

#[test]
fn threads_vs_processes_example_prints_its_table() {
    isolated(Duration::from_secs(90), || {
        let out = run_with("threads_vs_processes", &["500"]);
        for row in [
            "serial (one thread)",
            "Rust threads",
            "supervisor processes (incl. start)",
        ] {
            assert!(out.contains(row), "{row}: {out}");
        }
        let python = Command::new("python3")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert_eq!(out.contains("Python threads"), python, "{out}");
    });
}

#[test]
fn search_example_answers_every_query_and_shuts_down() {
    isolated(Duration::from_secs(90), || {
        let out = run("search");
        assert!(out.contains("64 files split among"), "{out}");
        assert!(out.contains("\"line 42 \": 64 matching lines"), "{out}");
        assert!(out.contains("\"zulu\": 0 matching lines"), "{out}");
        let workers = out
            .lines()
            .filter(|l| l.contains("answered 4 queries, exit code Some(0)"))
            .count();
        assert!(workers >= 2, "{out}");
    });
}

#[test]
fn hash_queue_example_matches_a_serial_run() {
    isolated(Duration::from_secs(90), || {
        let out = run_with("hash_queue", &["2000"]);
        assert!(out.contains("16 strings x 2000 rounds with"), "{out}");
        assert!(out.contains("the same job serially:"), "{out}");
    });
}

#[test]
fn async_tokio_example_awaits_handles_streams_and_the_shutdown() {
    isolated(Duration::from_secs(90), || {
        let out = run("async_tokio");
        assert!(
            out.contains("awaited 8 handles: [400, 1600, 3600, 6400, 10000, 14400, 19600, 25600]"),
            "{out}"
        );
        assert!(out.contains("slow task: 90000"), "{out}");
        assert!(
            out.contains("imap stream (input order): [6400, 100, 1600, 400]"),
            "{out}"
        );
        assert!(
            out.contains("as_completed stream (completion order): [100, 2500, 8100]"),
            "{out}"
        );
        assert!(out.contains("map_async awaited: [9, 4, 1]"), "{out}");
        assert!(out.contains("joined: last task 40000"), "{out}");
        // The ticker ran during the 200 ms shutdown on the runtime's only thread.
        let during: u64 = out
            .lines()
            .find_map(|l| l.strip_suffix(" during the shutdown"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no tick count in {out}"));
        assert!(
            during >= 5,
            "only {during} ticks during the shutdown: {out}"
        );
    });
}

#[test]
fn commands_example_runs_commands_with_bytes_timeouts_and_spooling() {
    isolated(Duration::from_secs(90), || {
        let out = run("commands");
        for want in [
            "cat: 100000 bytes back, identical: true",
            "false: exit code 1",
            "nice: exit code 0",
            "positional: x; echo INJECTED\n",
            "quoted: x; echo INJECTED\n",
            "head -c 50M: 52428800 bytes, spooled to a file: true",
            "sleep 60: task `supervisor::command` timed out after 2s",
            "/no/such/program: cannot start `/no/such/program`: No such file or directory",
            "Process::command uname -s: Linux",
        ] {
            assert!(out.contains(want), "missing {want:?} in:\n{out}");
        }
        // nice 5 applies to the command itself.
        assert!(
            out.lines()
                .any(|l| l.starts_with("nice:") && l.ends_with(" 5")),
            "{out}"
        );
    });
}

/// The pids and parent pids of the processes that ran `main` of `forgot_init`, from
/// what each printed.
fn mains(stdout: &str) -> Vec<(i32, i32)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("main runs in process "))
        .map(|rest| {
            let (pid, parent) = rest.split_once(" (parent ").unwrap();
            (
                pid.parse().unwrap(),
                parent.trim_end_matches(')').parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_program_without_init_is_refused_before_it_starts_anything() {
    isolated(Duration::from_secs(90), || {
        let out = run_raw("forgot_init", &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        for what in ["process", "pool"] {
            assert!(
                stdout.contains(&format!(
                    "{what}: error: supervisor::init() was not called before starting a \
                     process: call supervisor::init() first in main"
                )),
                "{stdout}"
            );
        }
        // Only the program itself ran main: not one worker was started.
        let mains = mains(&stdout);
        assert_eq!(mains.len(), 1, "{stdout}");
        assert_eq!(mains[0].1, std::process::id() as i32, "{stdout}");
    });
}

#[test]
fn workers_that_reach_a_pool_without_init_exit_and_never_start_a_second_generation() {
    isolated(Duration::from_secs(90), || {
        let out = run_raw("forgot_init", &["--late"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
        let mains = mains(&stdout);
        let program = std::process::id() as i32;
        let root: Vec<i32> = mains
            .iter()
            .filter(|(_, parent)| *parent == program)
            .map(|(pid, _)| *pid)
            .collect();
        assert_eq!(root.len(), 1, "{stdout}");
        let workers: Vec<i32> = mains
            .iter()
            .filter(|(_, parent)| *parent != program)
            .map(|(pid, _)| *pid)
            .collect();
        // One generation: every other process that ran main is a worker of the program
        // (a process and a pool of 4), none a worker of a worker.
        assert!(
            mains
                .iter()
                .all(|(_, parent)| *parent == program || *parent == root[0]),
            "{stdout}"
        );
        assert!((2..=5).contains(&workers.len()), "{stdout}");
        // Both name a worker that got there without init(), and the worker said why it
        // exited.
        let named = |line: &str| {
            workers.iter().any(|pid| {
                stdout.contains(&format!(
                    "{line}worker {pid} reached the program's code without \
                     supervisor::init(): call supervisor::init() first in main"
                ))
            })
        };
        assert!(named("process: error: "), "{stdout}");
        assert!(
            named("pool: error: the pool is broken: cannot start a worker: "),
            "{stdout}"
        );
        assert!(
            stderr.contains(
                "was started as a worker, but its main started a process or pool before \
                 calling supervisor::init(); it exits without starting anything"
            ),
            "{stderr}"
        );
        for pid in workers {
            assert!(common::has_exited(pid), "worker {pid} still runs");
        }
    });
}
