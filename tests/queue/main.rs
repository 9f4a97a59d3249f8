//! Queue across processes under every start method: many producers and consumers,
//! exactly-once delivery, processes killed mid-put and mid-get, timeouts (also with a
//! stopped process holding the queue's mutex), bounded puts, dead peers, threads of one
//! process as producer and consumer, Python's `maxsize=0`.

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{act_while_waiting, each_method, isolated, wait_stopped, watch};
use supervisor::{Error, ErrorKind, Pipe, Pool, Process, Queue, StartMethod};

const DEADLINE: Duration = Duration::from_secs(60);

mod delivery;
mod handles;
mod waiting;
