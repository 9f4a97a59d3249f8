//! Stopping a run: the reasons it stops early, the first and second stop request
//! (a signal, `supervisor stop`, `--halt`, an output error) and the signal thread.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use anyhow::Context;
use supervisor::{BrokenCall, BrokenReason, Pool};

use super::exit::{EXIT_SIGHUP, EXIT_SIGINT, EXIT_SIGTERM};

// Why the run stopped early (0: it did not).
/// `--halt` (or `--fail-fast`) was reached.
pub(super) const STOP_HALT: i32 = -1;
/// `--halt soon` was reached: nothing more starts, running tasks finish. A signal
/// after it still stops the run gracefully first (it is not a second stop request).
pub(super) const STOP_HALT_SOON: i32 = -4;
pub(super) const STOP_STDOUT: i32 = -2;
pub(super) const STOP_OUTPUT_ERROR: i32 = -3;
/// `--nats`: the run cannot go on (its server unreachable past `--nats-timeout`).
pub(super) const STOP_CLUSTER: i32 = -5;
/// The pool broke (a restart storm): nothing more is read, so a stalled or endless
/// input does not keep the run.
pub(super) const STOP_POOL_BROKEN: i32 = -6;

/// The exit code of a run stopped by `signal`, if it is one of ours.
pub(super) fn signal_exit_code(signal: i32) -> Option<i32> {
    match signal {
        libc::SIGINT => Some(EXIT_SIGINT),
        libc::SIGTERM => Some(EXIT_SIGTERM),
        libc::SIGHUP => Some(EXIT_SIGHUP),
        _ => None,
    }
}

/// After a second stop request the run ends now: the main thread normally does so at
/// once (the pool is killed); if it cannot (blocked writing to an output nobody reads,
/// which no signal interrupts), the process exits from here a second later, with
/// `code`. A run that ends first takes this thread with it.
pub(super) fn exit_soon_unless_done(code: i32) {
    let _ = std::thread::Builder::new()
        .name("supervisor-exit".into())
        .spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(1));
            super::super::sys::exit_now(code);
        });
}

/// What a stop request is given: why the run stops (a signal number or a `STOP_*`).
pub(super) type RequestStop = Arc<dyn Fn(i32) + Send + Sync>;

/// The run's stop requests, recorded in `stop` (the first reason wins).
/// First SIGINT/SIGTERM/SIGHUP: stop dispatching, stop workers (TERM, grace, KILL).
/// Second: kill them at once.
pub(super) fn requester(stop: &Arc<AtomicI32>, pool: &Option<Arc<Pool>>) -> RequestStop {
    let stop = stop.clone();
    let pool = pool.clone();
    Arc::new(move |why: i32| {
        // Not stopping yet, or only starting nothing more (`--halt soon`): this is
        // the first stop request.
        let first = [0, STOP_HALT_SOON].into_iter().any(|from| {
            stop.compare_exchange(from, why, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        });
        if first {
            let Some(pool) = pool.clone() else { return };
            let stopper = pool.clone();
            let spawned = std::thread::Builder::new()
                .name("supervisor-stop".into())
                .spawn(move || stopper.terminate());
            if spawned.is_err() {
                // No thread to stop on (process limit): stop at once instead.
                pool.kill();
            }
        } else if signal_exit_code(why).is_some() || pool.is_some() {
            // A remote run (no pool here) waits for its agents to stop their tasks:
            // a second signal does not wait (the agents were told at the first).
            if let Some(pool) = &pool {
                pool.kill();
            }
            // The first signal's code (or this one's, if the run was stopping for
            // another reason).
            let first = stop.load(Ordering::SeqCst);
            let code = signal_exit_code(first)
                .unwrap_or_else(|| signal_exit_code(why).unwrap_or(EXIT_SIGTERM));
            exit_soon_unless_done(code);
        }
    })
}

/// Hands SIGINT, SIGTERM and SIGHUP to `request_stop`, on a thread of their own.
pub(super) fn handle_signals(request_stop: &RequestStop) -> anyhow::Result<()> {
    let request_stop = request_stop.clone();
    let mut signals =
        signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM, libc::SIGHUP])
            .context("cannot handle signals")?;
    std::thread::Builder::new()
        .name("supervisor-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                request_stop(signal);
            }
        })
        .map_err(|e| {
            let limit = if e.raw_os_error() == Some(libc::EAGAIN) {
                " (the process limit was reached: raise ulimit -u or pids.max)"
            } else {
                ""
            };
            anyhow::anyhow!("cannot start the signal-handling thread: {e}{limit}")
        })?;
    Ok(())
}

/// The tasks stopped while they ran whose results said otherwise (see
/// `stopped_by_run`), by input position: stopped by the run (`None`), or with the
/// workers of a pool that broke for this reason.
pub(super) type StoppedByRun = std::collections::HashMap<usize, Option<BrokenReason>>;

/// The error of a task stopped while it ran (see `stopped_by_run`): by the run
/// (`broken`: `None`), or with the workers of a pool that broke.
pub(super) fn stopped_error(
    task: &str,
    pid: u32,
    broken: Option<BrokenReason>,
) -> supervisor::Error {
    let task = task.to_string();
    match broken {
        None => supervisor::ErrorKind::Stopped { task, pid }.into(),
        Some(reason) => supervisor::ErrorKind::PoolBroken {
            reason,
            call: BrokenCall::Stopped { task, pid },
        }
        .into(),
    }
}
