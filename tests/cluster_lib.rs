//! The library face of the cluster: a program made an agent with one call
//! (`Agent::serve`), and `RemotePool`'s map / imap / imap_unordered / submit /
//! as_completed against it, on a real nats-server.

#![cfg(feature = "cluster")]

mod cluster_support;
mod common;

use std::process::Child;
use std::time::Duration;

use supervisor::cluster::{as_completed, Agent, Connect, RemotePool};

const DEADLINE: Duration = Duration::from_secs(120);
const URL_ENV: &str = "SUPERVISOR_TEST_NATS_URL";

fn square(x: u64) -> u64 {
    x * x
}
supervisor::task!(square);

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
        let agent = Killed(
            common::scenario("cluster_agent")
                .env(URL_ENV, &url)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("the agent starts"),
        );
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
