//! A worker that writes hostile bytes into its own result channel: the parent reports a
//! protocol error for that worker, kills it, fails its task, and never panics, hangs or
//! allocates what the peer announces.
//!
//! The raw packets imitate ipc-channel 0.23.1's framing (see
//! `supervisor_worker::packet`): a header of two native-endian `usize`s, the packet's
//! length and the message's, then the data, descriptors attached with `SCM_RIGHTS`.

#[path = "../common/mod.rs"]
mod common;

use std::os::fd::RawFd;
use std::time::Duration;

use common::each_method;
use common::{isolated, Scenario, SCENARIOS};
use supervisor::{Error, ErrorKind, Pool, Process};
use supervisor::{Event, Lock, Pipe, Queue, Semaphore, SharedMemory, SharedSlice};
use supervisor_worker::protocol::{FromChild, TaskOutcome};
use supervisor_worker::{codec, fault};

const DEADLINE: Duration = Duration::from_secs(60);

mod adv15;
mod adv16;
mod adv17;
mod handles;
mod limits;
mod protocol;
mod relabellings;
