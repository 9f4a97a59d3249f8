//! The cluster where it went wrong (found by an adversarial pass): who may take a
//! command, a run nobody serves, a server gone for good, `--retries` and `--halt` as
//! locally, failure kinds carried over, a SIGKILLed submitter's tasks, a full store,
//! exit codes of bad credentials, an agent started before its server, the job log of
//! a duplicate. A real nats-server and real agents, as in tests/cluster.rs.

#![cfg(feature = "cluster")]

#[path = "../cluster_support/mod.rs"]
mod cluster_support;
#[path = "../common/mod.rs"]
mod common;

use std::time::Duration;

use cluster_support::{supervisor, wait_busy, Agent, Live, Server};

const DEADLINE: Duration = Duration::from_secs(120);

fn joblog(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn lines(n: u64) -> Vec<u8> {
    (1..=n)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

mod agents;
mod availability;
mod failures;
mod stopping;
mod wire;
