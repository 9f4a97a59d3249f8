//! Stress and chaos: many processes terminated at once, workers that ignore SIGTERM or
//! are stopped and continued, and a map under a killer that SIGKILLs a random busy
//! worker every 100 ms. Quick versions run in CI; `SUPERVISOR_LONG_CHAOS=1` runs the
//! 100,000-task chaos run of the reliability plan.

#[path = "../common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{each_method, isolated};
use supervisor::{Error, ErrorKind, Pool, Process, StartMethod, WorkerState};

const DEADLINE: Duration = Duration::from_secs(120);

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
supervisor::task!(sleep_ms);

/// About `micros` of CPU work, then `x + 1`.
fn spin(x: u64, micros: u64) -> u64 {
    let t = Instant::now();
    while t.elapsed() < Duration::from_micros(micros) {
        std::hint::spin_loop();
    }
    x + 1
}
supervisor::task!(spin);

/// Ignores SIGTERM, then hangs.
fn stubborn(_: ()) -> u64 {
    // SAFETY: installing SIG_IGN for SIGTERM is always sound.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    loop {
        std::thread::park();
    }
}
supervisor::task!(stubborn);

/// Leaves a chain of sessions ignoring SIGTERM (see the common helper), prints the
/// pid of its last process, and runs on until the worker dies.
fn chain_and_run_on(levels: u32) -> u32 {
    let last = common::leave_a_chain_out_of_the_group(levels);
    println!("{last}");
    loop {
        std::thread::park();
    }
}
supervisor::task!(chain_and_run_on);

mod chaos;
mod limits;
mod parent_death;
mod signals;
mod support;
