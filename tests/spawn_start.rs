//! The spawn start's wait for its child: what ends it (the child's death, a removed
//! socket path, the descriptor limit) and what it leaves behind.

mod common;

use std::time::{Duration, Instant};

use common::{isolated, scenario, Scenario, SCENARIOS};
use supervisor::Process;

const DEADLINE: Duration = Duration::from_secs(120);

fn square(x: u64) -> u64 {
    x * x
}
supervisor::task!(square);

/// The children of this process that are not supervisor's helpers, once there is one
/// (at most `within`).
fn wait_own_children(within: Duration) -> Vec<i32> {
    let until = Instant::now() + within;
    loop {
        let kids: Vec<i32> = common::children_of(std::process::id() as i32)
            .into_iter()
            .filter(|pid| !supervisor::helper_pids().contains(&(*pid as u32)))
            .collect();
        if !kids.is_empty() || Instant::now() > until {
            return kids;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs scenario `name` with `env` and a deadline: its stdout and stderr.
fn run(name: &str, env: &[(&str, &str)], within: Duration) -> (String, String) {
    let mut cmd = scenario(name);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let (status, stdout, stderr) = common::scenario_output(child, name, within);
    assert!(status.success(), "{name}: {status}\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// A start whose child stops right after connecting (`stop-after-connect`) and is then
/// SIGKILLed: prints the milliseconds from the kill to the error, and the error.
fn killed_after_connect_scenario() {
    let starter = std::thread::spawn(|| Process::builder(square, 1).start().map(drop));
    let kids = wait_own_children(Duration::from_secs(20));
    assert_eq!(kids.len(), 1, "{kids:?}");
    assert!(
        common::wait_stopped(kids[0] as u32, Duration::from_secs(20)),
        "the child never stopped after its connect"
    );
    let t = Instant::now();
    // SAFETY: kill with plain integers; our own stopped child.
    unsafe { libc::kill(kids[0], libc::SIGKILL) };
    let err = starter.join().unwrap().unwrap_err();
    println!("{} {err}", t.elapsed().as_millis());
}
#[linkme::distributed_slice(SCENARIOS)]
static KILLED_AFTER_CONNECT: Scenario = Scenario {
    name: "killed_after_connect",
    run: killed_after_connect_scenario,
};

/// Before: "accept failed: Disconnected", the `Debug` text of ipc-channel's error.
#[test]
fn a_child_killed_between_its_connect_and_its_hello_is_reported_in_words() {
    isolated(DEADLINE, || {
        let (out, err) = run(
            "killed_after_connect",
            &[("SUPERVISOR_FAULT", "stop-after-connect")],
            Duration::from_secs(60),
        );
        let (ms, msg) = out.trim().split_once(' ').unwrap();
        assert!(
            msg.contains("did not complete its bootstrap: it died (SIGKILL) after connecting, before it said hello"),
            "{msg}\n{err}"
        );
        assert!(!msg.contains("Disconnected"), "{msg}");
        assert!(ms.parse::<u64>().unwrap() < 5_000, "took {ms} ms: {msg}");
    });
}

/// The threads of this process named like the spawn start's accept thread.
fn accept_threads() -> usize {
    threads_named("supervisor-acce")
}

/// The threads of this process whose name (its first 15 bytes) is `comm`.
fn threads_named(comm: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .count()
}

/// Eight threads start and join five spawned processes each, then twenty more start
/// one after the other: prints the accept threads and the idle ones left (waiting up to
/// 5 s for the accept threads to go idle) and the threads made meanwhile.
fn accept_threads_are_kept_scenario() {
    let run = || {
        assert_eq!(
            Process::builder(square, 3).start().unwrap().join().unwrap(),
            9
        )
    };
    run();
    let tasks = || std::fs::read_dir("/proc/self/task").unwrap().count();
    let runs: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || (0..5).for_each(|_| run())))
        .collect();
    runs.into_iter().for_each(|r| r.join().unwrap());
    let before = tasks();
    for _ in 0..20 {
        run();
    }
    let until = Instant::now() + Duration::from_secs(5);
    while accept_threads() > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    println!(
        "accept {} idle {} made {}",
        accept_threads(),
        threads_named("supervisor-idle"),
        tasks() as i64 - before as i64
    );
}
#[linkme::distributed_slice(SCENARIOS)]
static ACCEPT_THREADS_ARE_KEPT: Scenario = Scenario {
    name: "accept_threads_are_kept",
    run: accept_threads_are_kept_scenario,
};

/// Before: a thread was made for every start's accept and ended with it. Now an idle
/// one takes the next start's, and at most four wait.
#[test]
fn sequential_starts_accept_on_a_kept_thread() {
    isolated(DEADLINE, || {
        let (out, err) = run("accept_threads_are_kept", &[], Duration::from_secs(60));
        let line = out.lines().find(|l| l.starts_with("accept ")).unwrap_or("");
        let words: Vec<&str> = line.split(' ').collect();
        let [_, accept, _, idle, _, made] = words[..] else {
            panic!("{out}\n{err}")
        };
        assert_eq!(accept, "0", "{out}\n{err}");
        let idle: usize = idle.parse().unwrap();
        assert!((1..=4).contains(&idle), "{out}\n{err}");
        // Twenty sequential starts made no thread: the kept ones took them (one of
        // the concurrent starts' threads beyond four may still have ended meanwhile).
        assert!(made.parse::<i64>().unwrap() <= 0, "{out}\n{err}");
    });
}

/// Whether a socket bound to `path` is still open in this system (`/proc/net/unix`
/// keeps the name a socket was bound to after the file is gone).
fn socket_open(path: &str) -> bool {
    std::fs::read_to_string("/proc/net/unix")
        .unwrap()
        .lines()
        .any(|l| l.ends_with(path))
}

/// A start whose socket path is removed while its child hangs before connecting, then
/// whose child is SIGKILLed: once `start` has failed, prints whether the start's
/// accept thread and its listening socket are still there (waiting up to 5 s for them
/// to go).
fn socket_removed_leaves_nothing_scenario() {
    let before = common::bootstrap_dirs();
    let starter = std::thread::spawn(|| Process::builder(square, 1).start().map(drop));
    let dir = common::wait_new_bootstrap_dir(&before, Duration::from_secs(20));
    let socket = format!("{dir}/socket");
    std::fs::remove_file(&socket).unwrap();
    let kids = wait_own_children(Duration::from_secs(20));
    for pid in kids {
        // SAFETY: kill with plain integers; our own hanging child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let err = starter.join().unwrap().unwrap_err();
    println!("start: {err}");
    let until = Instant::now() + Duration::from_secs(5);
    while (accept_threads() > 0 || socket_open(&socket)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    println!(
        "accept threads {} listener open {}",
        accept_threads(),
        socket_open(&socket)
    );
}
#[linkme::distributed_slice(SCENARIOS)]
static SOCKET_REMOVED_LEAVES_NOTHING: Scenario = Scenario {
    name: "socket_removed_leaves_nothing",
    run: socket_removed_leaves_nothing_scenario,
};

/// Before: the accept thread of such a start blocked in `accept` forever (only a
/// connection by the path could wake it), with the listening socket open: one thread
/// and one descriptor per such start, for the program's life.
#[test]
fn a_start_whose_socket_path_was_removed_leaves_no_thread_or_socket_behind() {
    isolated(DEADLINE, || {
        let (out, err) = run(
            "socket_removed_leaves_nothing",
            &[("SUPERVISOR_FAULT", "hang-before-connect")],
            Duration::from_secs(60),
        );
        assert!(out.contains("before connecting"), "{out}\n{err}");
        assert!(
            out.contains("accept threads 0 listener open false"),
            "{out}\n{err}"
        );
    });
}

fn set_descriptor_limit(soft: u64) {
    // SAFETY: a live out-pointer, then the same struct back in.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = soft.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

/// `THREADS` threads each start and join `STARTS` spawned processes, with the
/// descriptor limit `SPARE` above what is open once the reaper runs: prints how many
/// started and how many failed, and the first error.
fn starts_short_of_descriptors_scenario() {
    let var = |k: &str| -> u64 { std::env::var(k).unwrap().parse().unwrap() };
    let (spare, threads, starts) = (var("SPARE"), var("THREADS"), var("STARTS"));
    drop(Process::builder(square, 1).start().unwrap().join());
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64 - 1;
    set_descriptor_limit(open + spare);
    let runs: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let (mut ok, mut errors) = (0, Vec::new());
                for _ in 0..starts {
                    match Process::builder(square, 3).start() {
                        Ok(mut p) => match p.join() {
                            Ok(9) => ok += 1,
                            other => errors.push(format!("join: {other:?}")),
                        },
                        Err(e) => errors.push(supervisor_worker::error_chain(&e)),
                    }
                }
                (ok, errors)
            })
        })
        .collect();
    let (mut ok, mut errors) = (0, Vec::new());
    for run in runs {
        let (o, e) = run.join().unwrap();
        ok += o;
        errors.extend(e);
    }
    set_descriptor_limit(1024);
    println!("started {ok} failed {}", errors.len());
    for e in errors {
        println!("error: {e}");
    }
}

#[linkme::distributed_slice(SCENARIOS)]
static STARTS_SHORT: Scenario = Scenario {
    name: "starts_short_of_descriptors",
    run: starts_short_of_descriptors_scenario,
};

/// Before: about 1 start in 33 of four threads starting processes at the descriptor
/// limit printed ipc-channel's panic ("index out of bounds: the len is 0 but the index
/// is 0", ipc.rs:1027: the kernel dropped the hand-off's descriptor, `MSG_CTRUNC`),
/// caught and reported as a malformed frame (39 panics in 8 runs of 160 starts).
#[test]
fn starts_at_the_descriptor_limit_print_no_panic_and_name_the_limit() {
    isolated(DEADLINE, || {
        let mut named = 0;
        for spare in ["4", "6", "8"] {
            let (out, err) = run(
                "starts_short_of_descriptors",
                &[("SPARE", spare), ("THREADS", "4"), ("STARTS", "40")],
                Duration::from_secs(100),
            );
            assert!(!err.contains("panicked"), "{spare} spare: {err}");
            assert!(!out.contains("malformed"), "{spare} spare: {out}");
            named += out.matches("Too many open files").count();
        }
        // The limit was reached, and said so.
        assert!(named > 0, "no start failed for want of descriptors");
    });
}
