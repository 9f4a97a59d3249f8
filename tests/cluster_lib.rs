//! The library face of the cluster: a program made an agent with one call
//! (`Agent::serve`), and `RemotePool`'s map / imap / imap_unordered / submit /
//! as_completed against it, on a real nats-server.

#![cfg(feature = "cluster")]

mod cluster_support;
mod common;

use std::cell::Cell;
use std::path::Path;
use std::process::Child;
use std::rc::Rc;
use std::time::{Duration, Instant};

use supervisor::cluster::{as_completed, Agent, Connect, RemoteOptions, RemotePool, RemoteReports};

const DEADLINE: Duration = Duration::from_secs(120);
const URL_ENV: &str = "SUPERVISOR_TEST_NATS_URL";
/// A file the first `held_head` task waits for (the test makes it).
const GATE_ENV: &str = "SUPERVISOR_TEST_GATE";

fn square(x: u64) -> u64 {
    x * x
}
supervisor::task!(square);

/// Input 0 waits until the gate file exists (60 s at most); the others return at once.
fn held_head(x: u64) -> u64 {
    if x == 0 {
        let gate = std::env::var(GATE_ENV).expect("the gate's path");
        let until = Instant::now() + Duration::from_secs(60);
        while !Path::new(&gate).exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    x
}
supervisor::task!(held_head);

fn agent(url: &str, gate: &Path) -> Killed {
    Killed(
        common::scenario("cluster_agent")
            .env(URL_ENV, url)
            .env(GATE_ENV, gate)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the agent starts"),
    )
}

fn agent_scenario() {
    let url = std::env::var(URL_ENV).expect("the server's URL");
    let pool = supervisor::Pool::new(2).expect("a pool");
    Agent::new(Connect::new(url))
        .host("lib-agent")
        .serve(pool)
        .expect("serves");
}

#[linkme::distributed_slice(common::SCENARIOS)]
static AGENT: common::Scenario = common::Scenario {
    name: "cluster_agent",
    run: agent_scenario,
};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_program_is_an_agent_for_its_registered_tasks_and_remote_pool_runs_them() {
    common::isolated(DEADLINE, || {
        let server = cluster_support::Server::start(&[]);
        let url = server.url();
        let agent = agent(&url, Path::new("/nonexistent"));
        let pool = RemotePool::new(Connect::new(&url));
        let squares: Vec<u64> = pool
            .map(square, 1..=20)
            .into_iter()
            .map(|r| r.expect("a square"))
            .collect();
        assert_eq!(squares, (1..=20u64).map(|x| x * x).collect::<Vec<_>>());
        let in_order: Vec<u64> = pool.imap(square, [3, 4]).map(Result::unwrap).collect();
        assert_eq!(in_order, [9, 16]);
        let mut any: Vec<u64> = pool
            .imap_unordered(square, 1..=10)
            .map(Result::unwrap)
            .collect();
        any.sort_unstable();
        assert_eq!(any, (1..=10u64).map(|x| x * x).collect::<Vec<_>>());
        let handles: Vec<_> = (1..=5u64).map(|x| pool.submit(square, x)).collect();
        let mut done: Vec<u64> = as_completed(handles).map(|h| h.wait().unwrap()).collect();
        done.sort_unstable();
        assert_eq!(done, [1, 4, 9, 16, 25]);
        drop(agent);
    });
}

#[test]
fn a_remote_pool_without_a_server_gives_each_input_the_error() {
    common::isolated(DEADLINE, || {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pool = RemotePool::new(Connect::new(format!("nats://127.0.0.1:{port}")));
        let got = pool.map(square, [1, 2, 3]);
        assert_eq!(got.len(), 3);
        for r in got {
            let e = r.unwrap_err();
            assert!(
                e.to_string().starts_with(&format!(
                    "cannot connect to the NATS server at nats://127.0.0.1:{port}"
                )),
                "{e}"
            );
        }
    });
}

#[test]
fn quick_results_held_behind_a_slow_first_task_do_not_count_against_the_read_ahead() {
    common::isolated(DEADLINE, || {
        let server = cluster_support::Server::start(&[]);
        let url = server.url();
        let gate = std::env::temp_dir().join(format!("held-gate-{}", std::process::id()));
        let agent = agent(&url, &gate);
        // Past the read-ahead (10,000): before, the run stopped publishing once that
        // many quick results waited for the first one, which waited for them all.
        let quick = 10_100;
        let arrived = Rc::new(Cell::new(0usize));
        let when_head = Rc::new(Cell::new(None));
        let (count, head, open) = (arrived.clone(), when_head.clone(), gate.clone());
        let reports = RemoteReports::<u64, _>::start(
            RemoteOptions::new(Connect::new(&url)),
            "held_head",
            0..=quick as u64,
        )
        .expect("the run starts")
        .on_arrival(move |index, _, _, _| {
            if index == 0 {
                head.set(Some(count.get()));
                return;
            }
            count.set(count.get() + 1);
            if count.get() == quick {
                std::fs::write(&open, b"").expect("the gate opens");
            }
        });
        let got: Vec<u64> = reports.map(|r| r.result.expect("a value")).collect();
        let _ = std::fs::remove_file(&gate);
        assert_eq!(
            when_head.get(),
            Some(quick),
            "every quick task finishes while the first one runs"
        );
        assert_eq!(got, (0..=quick as u64).collect::<Vec<_>>());
        drop(agent);
    });
}
