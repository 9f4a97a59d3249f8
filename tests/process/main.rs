//! The Process API under every start method: values, typed failures, signals,
//! timeouts, nice, daemons, handles dropped without join, bootstrap security.

#[path = "../common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

use common::{each_method, isolated, scenario, stat_fields, wait_exit, Scenario, SCENARIOS};
use supervisor::{Error, ErrorKind, Pool, Process, StartMethod};

const DEADLINE: Duration = Duration::from_secs(60);

fn square(x: u64) -> u64 {
    x * x
}
supervisor::task!(square);

fn boom(_: ()) -> u64 {
    panic!("boom at {}", 42)
}
supervisor::task!(boom);

fn segfault(_: ()) -> u64 {
    // SAFETY: none; writing through a null pointer is the point of this task.
    unsafe { std::ptr::null_mut::<u64>().write_volatile(1) };
    0
}
supervisor::task!(segfault);

fn abort(_: ()) -> u64 {
    std::process::abort()
}
supervisor::task!(abort);

fn exit_with(code: i32) -> u64 {
    std::process::exit(code)
}
supervisor::task!(exit_with);

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
supervisor::task!(sleep_ms);

/// (pid, process group, nice of every thread, after starting one more thread).
fn identity(_: ()) -> (u32, i32, Vec<i32>) {
    let helper = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(50)));
    let mut nices = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")
        .expect("task dir")
        .flatten()
    {
        let path = entry.path().join("stat");
        if let Some(stat) = common::stat_fields_of(&path.to_string_lossy()) {
            nices.push(stat.nice);
        }
    }
    helper.join().expect("helper thread");
    let pid = std::process::id();
    let pgrp = stat_fields(pid as i32).expect("own stat").pgrp;
    (pid, pgrp, nices)
}
supervisor::task!(identity);

/// (ignored, caught) signal masks from /proc/self/status.
fn signal_masks(_: ()) -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| u64::from_str_radix(v.trim(), 16).expect("hex mask"))
            .expect("mask line")
    };
    (mask("SigIgn:"), mask("SigCgt:"))
}
supervisor::task!(signal_masks);

/// What happens when this process tries to start a child.
fn try_start_child(_: ()) -> String {
    match Process::builder(square, 3).start() {
        Ok(mut p) => format!("started: {:?}", p.join().map_err(|e| e.to_string())),
        Err(e) => e.to_string(),
    }
}
supervisor::task!(try_start_child);

mod bootstrap;
mod broken_records;
mod daemons;
mod lifecycle;
mod nice_and_signals;
mod task_children;
mod unread_input;
