//! Pipe, shared memory, Lock, Event and Semaphore across processes, under every start
//! method: round trips, a dead peer reported, memory written by a child read by the
//! parent, a lock held by a killed process released, an event waking several
//! processes; timed calls on time while a stopped process holds an object's mutex;
//! waiters woken by other threads of their process; the harness's temp-entry check.

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{act_while_waiting, each_method, isolated, wait_stopped, watch};
use supervisor::{
    Acquired, Error, ErrorKind, Event, Lock, Pipe, Process, Semaphore, SharedMemory, SharedSlice,
};

const DEADLINE: Duration = Duration::from_secs(60);

mod objects;
mod sharing;
mod waiting;
