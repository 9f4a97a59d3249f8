//! The library's `tracing` events, in one place: what a program sees once it installs a
//! subscriber (nothing at all otherwise, at the cost of a load and a branch per event).
//!
//! The catalogue (names, levels, fields) is in the crate docs, "Observability"; keep
//! it in step. The events are emitted where things happen (starter threads, the
//! reaper, the dispatcher's link to a worker, result delivery), never by the pool's
//! decisions.

use std::time::Duration;

use tracing::Level;

use crate::error::Error;
use crate::exit::ExitStatus;
use crate::StartMethod;

const TARGET: &str = "supervisor";

/// A pool worker is up; `restarts` is how many workers its seat had before.
pub(crate) fn worker_started(
    worker: &str,
    pid: u32,
    seat: usize,
    method: StartMethod,
    restarts: u32,
) {
    if restarts == 0 {
        tracing::event!(
            name: "worker.started",
            target: TARGET,
            Level::INFO,
            worker,
            pid,
            seat,
            method = %method,
            "worker started"
        );
    } else {
        tracing::event!(
            name: "worker.restarted",
            target: TARGET,
            Level::INFO,
            worker,
            pid,
            seat,
            method = %method,
            restarts,
            "worker restarted"
        );
    }
}

/// A pool worker could not be started.
pub(crate) fn worker_start_failed(worker: &str, seat: usize, error: &Error) {
    tracing::event!(
        name: "worker.start_failed",
        target: TARGET,
        Level::WARN,
        worker,
        seat,
        error = %supervisor_worker::error_chain(error),
        "worker failed to start"
    );
}

/// The reaper collected a pool worker's exit.
pub(crate) fn worker_exited(worker: &str, pid: u32, status: ExitStatus, peak_rss_kib: u64) {
    tracing::event!(
        name: "worker.exited",
        target: TARGET,
        Level::INFO,
        worker,
        pid,
        status = %status,
        peak_rss_kib,
        "worker exited"
    );
}

/// Whether task events are wanted: callers that would do work to describe them check
/// first.
pub(crate) fn tasks_enabled() -> bool {
    tracing::event_enabled!(target: TARGET, Level::DEBUG)
}

/// `calls` calls from `id` on were handed to worker `pid`.
pub(crate) fn task_started(task: &str, id: u64, calls: usize, pid: u32) {
    tracing::event!(
        name: "task.started",
        target: TARGET,
        Level::DEBUG,
        task,
        id,
        calls,
        pid,
        "task started"
    );
}

/// A call's result was delivered.
pub(crate) fn task_finished<T>(
    task: &str,
    id: u64,
    result: &Result<T, Error>,
    pid: u32,
    attempts: u32,
    duration: Duration,
) {
    if !tasks_enabled() {
        return;
    }
    let outcome = match result {
        Ok(_) => "ok".to_string(),
        Err(e) => supervisor_worker::error_chain(e),
    };
    tracing::event!(
        name: "task.finished",
        target: TARGET,
        Level::DEBUG,
        task,
        id,
        pid,
        attempts,
        duration_us = duration.as_micros() as u64,
        outcome,
        "task finished"
    );
}

/// The results of `calls` calls of a chunk, from `id` on, were delivered.
pub(crate) fn chunk_finished(
    task: &str,
    id: u64,
    calls: usize,
    failed: usize,
    pid: u32,
    duration: Duration,
) {
    tracing::event!(
        name: "tasks.finished",
        target: TARGET,
        Level::DEBUG,
        task,
        id,
        calls,
        failed,
        pid,
        duration_us = duration.as_micros() as u64,
        "tasks finished"
    );
}

/// A `Process` is up and has its task.
pub(crate) fn process_started(name: &str, pid: u32, task: &str) {
    tracing::event!(
        name: "process.started",
        target: TARGET,
        Level::INFO,
        process = name,
        pid,
        task,
        "process started"
    );
}

/// `join` collected a `Process`'s exit.
pub(crate) fn process_exited(name: &str, pid: u32, status: ExitStatus) {
    tracing::event!(
        name: "process.exited",
        target: TARGET,
        Level::INFO,
        process = name,
        pid,
        status = %status,
        "process exited"
    );
}

/// Once per process: a spawned worker starts without a cgroup of its own (`reason`).
pub(crate) fn without_cgroup(reason: &dyn std::fmt::Display) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    tracing::event!(
        name: "worker.no_cgroup",
        target: TARGET,
        Level::WARN,
        reason = %reason,
        "spawned workers start without a cgroup of their own: what a task leaves in a session of its own outlives a worker killed from outside"
    );
}
