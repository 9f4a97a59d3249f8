//! How a spawned start waits for its child: on the thread that called `start`, with no
//! thread of its own, and still not for ever when the child dies first.

mod common;

use std::time::{Duration, Instant};

use common::{isolated, scenario, Scenario, SCENARIOS};
use supervisor::{Process, StartMethod};

const DEADLINE: Duration = Duration::from_secs(120);

fn one(x: u64) -> u64 {
    x + 1
}
supervisor::task!(one);

/// The threads of this process that are blocked in `accept`.
fn threads_in_accept() -> usize {
    let calls = [libc::SYS_accept, libc::SYS_accept4].map(|n| n.to_string());
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("syscall")).ok())
                .filter(|s| {
                    s.split(' ')
                        .next()
                        .is_some_and(|n| calls.contains(&n.to_string()))
                })
                .count()
        })
        .unwrap_or(0)
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// One start (the reaper and the other long-lived threads are there from then on),
/// then a start whose child hangs before connecting: while it waits in `accept`, the
/// process has one thread more than before, the one that called `start`. Then the
/// child is killed, and that start fails at once.
fn a_waiting_start_scenario() {
    let mut p = Process::builder(one, 1)
        .start_method(StartMethod::Spawn)
        .start()
        .unwrap();
    assert_eq!(p.join().unwrap(), 2);
    drop(p);
    let before = thread_count();
    // SAFETY (of the environment edit): no other thread of this scenario reads or
    // writes the environment now; the next start copies it for its child.
    std::env::set_var("SUPERVISOR_FAULT", "hang-before-connect");
    let starter = std::thread::spawn(|| {
        let t = Instant::now();
        let result = Process::builder(one, 1)
            .start_method(StartMethod::Spawn)
            .start()
            .map(drop);
        (result, t.elapsed())
    });
    let waited = Instant::now();
    while threads_in_accept() == 0 {
        assert!(waited.elapsed() < Duration::from_secs(20), "no accept");
        std::thread::yield_now();
    }
    println!("extra threads: {}", thread_count() - before);
    for pid in common::children_of(std::process::id() as i32) {
        if !supervisor::helper_pids().contains(&(pid as u32)) {
            // SAFETY: kill with plain integers; our own hanging child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let (result, took) = starter.join().unwrap();
    println!("start: {}", result.unwrap_err());
    println!("took {} ms", took.as_millis());
}
#[linkme::distributed_slice(SCENARIOS)]
static A_WAITING_START: Scenario = Scenario {
    name: "a_waiting_start",
    run: a_waiting_start_scenario,
};

/// A spawned start used to hand `accept` to a thread of its own (one more thread per
/// start, 256 more for a pool of 256 starting); it now accepts on the calling thread,
/// which the child's exit still wakes at once.
#[test]
fn a_spawned_start_waits_for_its_child_on_the_calling_thread() {
    isolated(DEADLINE, || {
        let out = scenario("a_waiting_start").output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("extra threads: 1\n"), "{stdout}");
        assert!(stdout.contains("before connecting"), "{stdout}");
        let ms: u64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("took ")?.strip_suffix(" ms")?.parse().ok())
            .unwrap();
        assert!(ms < 20_000, "{stdout}");
    });
}
