//! `Pool`: N reusable worker processes behind the API of Python's
//! `multiprocessing.Pool` and `concurrent.futures.ProcessPoolExecutor`, supervised so
//! that a dying worker fails (or retries) only its own task and never hangs anyone.
//!
//! One dispatcher owns the pool's state (`dispatcher/`), reached through the hub
//! (`hub.rs`); the methods here only post it events and wait on results. The
//! dispatcher decides; `live.rs` carries its decisions out on real processes.
//!
//! The methods on [`Pool`] are in three more files: `map.rs` (`map`, `map_async`,
//! `imap` and the like), `apply.rs` (`apply`, `submit` and the cluster agent's calls)
//! and `stop.rs` (`close`, `join`, `terminate` and dropping a pool).

mod apply;
mod arrived;
mod builder;
mod dispatcher;
mod event;
mod handle;
mod held;
mod hub;
mod iter;
mod job;
mod live;
mod map;
mod pack;
mod ports;
mod reader;
mod reorder;
mod running;
mod shutdown;
mod stats;
mod stop;
mod storm;
mod wake;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use supervisor_worker::registry::{self, RegistryError};

pub use builder::{PoolBuilder, RestartLimit, MAX_WORKERS};
pub use handle::{as_completed, AsCompleted, AsCompletedStream, TaskHandle};
pub use held::{DEFAULT_HOLD_IN_MEMORY, DEFAULT_MAX_HELD};
pub use iter::{Imap, ImapStream, MapHandle, Report, ReportStream, Reports};
pub use job::JobMeta;
pub use shutdown::Shutdown;
pub use stats::{PoolStats, WorkerState, WorkerStats};

use builder::Config;
use event::Event;
use job::Unit;
use live::LiveHub;
use shutdown::Finished;

use crate::error::{Error, ErrorKind};

/// Largest chunk `map` picks on its own (bounds the work redone one by one if a
/// chunk's worker dies).
const MAX_AUTO_CHUNK: usize = 65_536;

/// What callers, handles and iterators share with the dispatcher.
pub(crate) struct Shared {
    pub(in crate::pool) hub: Arc<LiveHub>,
    pub(in crate::pool) next_id: AtomicU64,
    pub(in crate::pool) closed: AtomicBool,
    /// Set by the dispatcher when the pool breaks.
    pub(in crate::pool) broken: Arc<AtomicBool>,
}

impl Shared {
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The first of `n` consecutive ids.
    fn next_ids(&self, n: usize) -> u64 {
        self.next_id.fetch_add(n as u64, Ordering::Relaxed)
    }

    fn submit(&self, units: Vec<Unit>) {
        if self.closed.load(Ordering::Acquire) {
            for unit in units {
                unit.fail(|_| ErrorKind::PoolClosed);
            }
            return;
        }
        // If the dispatcher is gone the units are dropped, which fails their jobs:
        // nobody waits forever.
        self.hub.post(Event::Submit(units));
    }

    /// Nobody reads result stream `stream` any more: its calls that have not started
    /// are dropped.
    fn forget_stream(&self, stream: u64) {
        self.hub.post(Event::ForgetStream(stream));
    }
}

/// A pool of worker processes.
///
/// Dropping a pool terminates it: queued tasks fail with [`ErrorKind::Terminated`],
/// workers get SIGTERM, then SIGKILL after the grace period; `drop` returns once they
/// are gone, so it blocks its thread up to the grace period. Call [`Pool::join`] first
/// to let queued work finish; from async code, await [`Pool::join_async`] (or
/// [`Pool::terminate_async`]) first, after which `drop` does not block.
///
/// Each task is a registered function (see [`crate::Call`]); each input's result is
/// its own, so one that fails (an error, a panic, a crash, a timeout) fails alone and
/// the pool goes on with a fresh worker where one died.
///
/// ```
/// use std::time::Duration;
///
/// use supervisor::{as_completed, ErrorKind, Pool};
///
/// fn collatz_steps(mut n: u64) -> u32 {
///     let mut steps = 0;
///     while n > 1 {
///         n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
///         steps += 1;
///     }
///     steps
/// }
/// supervisor::task!(collatz_steps);
///
/// fn divide(a: u64, b: u64) -> Result<u64, String> {
///     a.checked_div(b).ok_or_else(|| format!("{a} / 0"))
/// }
/// supervisor::task!(divide);
///
/// fn sleep_ms(ms: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(ms));
///     ms
/// }
/// supervisor::task!(sleep_ms);
///
/// fn main() -> Result<(), supervisor::Error> {
///     supervisor::init(); // first in main
///     let pool = Pool::builder()
///         .procs(2)
///         .task_timeout(Duration::from_secs(1))
///         .build()?;
///
///     // map: one result per input, in input order.
///     let steps = pool.map(collatz_steps, [1, 6, 27]);
///     let steps: Vec<u32> = steps.into_iter().collect::<Result<_, _>>()?;
///     assert_eq!(steps, [0, 8, 111]);
///
///     // Several arguments go as a tuple; a returned `Err` reaches the caller as such.
///     assert_eq!(pool.apply(divide, (7, 2))?, Ok(3));
///     assert_eq!(pool.apply(divide, (7, 0))?, Err("7 / 0".to_string()));
///
///     // submit returns a handle at once; as_completed yields them as their tasks end.
///     let handles = [30, 10, 20].map(|ms| pool.submit(sleep_ms, ms));
///     let mut done = Vec::new();
///     for handle in as_completed(handles) {
///         done.push(handle.wait()?);
///     }
///     done.sort();
///     assert_eq!(done, [10, 20, 30]);
///
///     // Past its time limit a task fails alone: its worker is stopped and replaced.
///     let e = pool.apply(sleep_ms, 60_000).unwrap_err();
///     assert!(matches!(e.kind(), ErrorKind::TimedOut { .. }), "{e}");
///     assert_eq!(pool.apply(collatz_steps, 6)?, 8);
///
///     pool.close(); // no more work
///     pool.join(); // the queued work finishes, the workers exit
///     Ok(())
/// }
/// ```
pub struct Pool {
    pub(in crate::pool) shared: Arc<Shared>,
    pub(in crate::pool) thread: Mutex<Option<JoinHandle<()>>>,
    /// Set when the dispatcher has stopped (every waiter of join/terminate waits for it).
    pub(in crate::pool) finished: Arc<Finished>,
    /// The dispatcher's final statistics, once it has stopped.
    pub(in crate::pool) last_stats: Arc<Mutex<Option<PoolStats>>>,
    pub(in crate::pool) procs: usize,
    pub(in crate::pool) read_ahead: usize,
    /// Most results an ordered iterator lets wait for an earlier one.
    pub(in crate::pool) max_held: usize,
    /// Bytes of waiting results `imap` keeps in memory.
    pub(in crate::pool) hold_in_memory: usize,
    pub(in crate::pool) timeout_set: bool,
}

/// The registered name of task function `F`.
pub(in crate::pool) fn resolve<F>() -> Result<&'static str, RegistryError> {
    Ok(registry::by_key(supervisor_worker::call::key_of::<F>())?.name)
}

impl Pool {
    /// A pool builder with the defaults.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    /// A pool of `procs` spawned workers with the other defaults.
    pub fn new(procs: usize) -> Result<Pool, Error> {
        Pool::builder().procs(procs).build()
    }

    /// Number of worker processes.
    pub fn procs(&self) -> usize {
        self.procs
    }

    /// The chunk size `map` uses for `n` inputs: `ceil(n / (4 * procs))`, at most 65,536;
    /// 1 when a task timeout is set (a timeout applies to each task).
    pub fn auto_chunksize(&self, n: usize) -> usize {
        if self.timeout_set {
            return 1;
        }
        n.div_ceil(4 * self.procs).clamp(1, MAX_AUTO_CHUNK)
    }

    /// Changes the time limit per task ([`PoolBuilder::task_timeout`]; `None`: no
    /// limit) for the tasks to come and those running: a running task is measured
    /// from its own start, so one already past the new limit times out at once
    /// ([`ErrorKind::TimedOut`]). For limits that follow the tasks' run times (GNU
    /// parallel's `--timeout 200%`). The chunk size of `map` is not affected.
    pub fn set_task_timeout(&self, limit: Option<std::time::Duration>) {
        self.shared.hub.post(Event::SetTaskTimeout(limit));
    }

    /// Waits until the dispatcher has stopped, whoever else is waiting too.
    fn wait_dispatcher(&self) {
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        self.finished.wait();
    }

    /// Calls `call` once, with why, when the pool breaks ([`ErrorKind::PoolBroken`]),
    /// on the pool's own thread, or at once if it has broken already; never if it does
    /// not break. For a program that must stop feeding a broken pool at once, even
    /// while it waits for input of its own (the CLI stops reading its input so).
    /// `call` should return quickly: the pool's thread waits for it. A panic in it is
    /// caught.
    pub fn when_broken(&self, call: impl FnOnce(&crate::BrokenReason) + Send + 'static) {
        self.shared.hub.post(Event::WhenBroken(Box::new(call)));
    }

    /// Why the pool broke, if it has ([`ErrorKind::PoolBroken`]): `stats().broken`
    /// without reading every worker's usage.
    pub fn broken(&self) -> Option<crate::BrokenReason> {
        // Cheap while it has not: one load, no question to the dispatcher.
        if !self.shared.broken.load(Ordering::Acquire) {
            return None;
        }
        let (tx, rx) = mpsc::sync_channel(1);
        self.shared.hub.post(Event::Stats(tx));
        match rx.recv() {
            Ok(stats) => stats.broken,
            Err(_) => self.stats().broken,
        }
    }

    /// A snapshot: every worker's pid, state, tasks done, restarts, CPU time and RSS;
    /// totals of queued, running, done and failed tasks; workers that have exited. After
    /// `join` or `terminate` it is the pool's final state.
    pub fn stats(&self) -> PoolStats {
        let (tx, rx) = mpsc::sync_channel(1);
        self.shared.hub.post(Event::Stats(tx));
        if let Ok(mut stats) = rx.recv() {
            // Read here, not under the pool's lock.
            for worker in &mut stats.workers {
                let usage = crate::os::proc_usage(worker.pid as i32).unwrap_or_default();
                (worker.cpu_time, worker.rss_kib, worker.peak_rss_kib) = usage;
            }
            return stats;
        }
        // The dispatcher has stopped (after join, terminate, or a break): its last word.
        self.wait_dispatcher();
        let last = self.last_stats.lock().unwrap_or_else(|p| p.into_inner());
        last.clone().unwrap_or(PoolStats {
            workers: Vec::new(),
            starting: 0,
            queued: 0,
            running: 0,
            done: 0,
            failed: 0,
            restarts: 0,
            broken: None,
            notes: Vec::new(),
            exited: Vec::new(),
        })
    }
}
