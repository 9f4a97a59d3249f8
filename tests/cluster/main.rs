//! Supervisor across hosts: a real nats-server with JetStream (started per test on a
//! free loopback port, its store in a temporary directory) and real `supervisor
//! worker` agents; `supervisor run --nats` must print what a local run prints.

#![cfg(feature = "cluster")]

#[path = "../cluster_support/mod.rs"]
mod cluster_support;
#[path = "../common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use cluster_support::{supervisor, wait_busy, wait_listed, Agent, Netns, Server, BIN};

const DEADLINE: Duration = Duration::from_secs(120);

mod agents;
mod failover;
mod results;
