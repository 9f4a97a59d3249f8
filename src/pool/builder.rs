//! Building a pool: its options, their defaults and checks, and the start of its
//! dispatcher thread.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use supervisor_worker::codec;
use supervisor_worker::Call;

use super::dispatcher::Dispatcher;
use super::hub::Hub;
use super::live::{Live, LiveHub};
use super::shutdown::{FinishOnDrop, Finished};
use super::{resolve, Pool, Shared};
use crate::error::{Error, ErrorKind};
use crate::sync::shipped::{self, Shipped};
use crate::StartMethod;

/// When restarts mean a storm: more than `max` workers that die (or cannot be started)
/// before finishing anything, within `within` and with no call answered in between,
/// break the pool. A worker that dies while running a call never counts: that is the
/// call's failure (or retry). Between such deaths, replacements back off (10 ms,
/// doubling up to 1 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartLimit {
    /// Deaths before finishing anything allowed in the window.
    pub max: u32,
    /// The window.
    pub within: Duration,
}

impl Default for RestartLimit {
    /// 10 within 60 seconds (with the back-off, a pool whose workers cannot come up
    /// breaks after about 3 s).
    fn default() -> Self {
        RestartLimit {
            max: 10,
            within: Duration::from_secs(60),
        }
    }
}

pub(crate) struct Config {
    pub(super) name: String,
    pub(super) procs: usize,
    pub(super) method: StartMethod,
    pub(super) nice: Option<i32>,
    pub(super) initializer: Option<(&'static str, Vec<u8>)>,
    /// The objects the initializer's argument names, kept for as long as the pool
    /// runs: every new worker decodes that argument again.
    #[expect(
        dead_code,
        reason = "held, never read: dropping it lets the objects go"
    )]
    pub(super) initializer_shipped: Shipped,
    pub(super) max_tasks_per_child: Option<u64>,
    pub(super) task_timeout: Option<Duration>,
    pub(super) grace: Duration,
    pub(super) retries: u32,
    /// A call that returns `Err` is retried too (within `retries`).
    pub(super) retry_errors: bool,
    pub(super) restart_limit: RestartLimit,
    pub(super) env_allowlist: Option<Vec<String>>,
    pub(super) keep_task_children: bool,
    /// Bytes of resident memory a worker with its descendants may use while a task runs.
    pub(super) memory_limit: Option<u64>,
    /// Bytes of resident memory a worker may be left with after a task.
    pub(super) max_memory_per_child: Option<u64>,
    /// Set once the pool breaks (read by `Pool::broken` without asking the
    /// dispatcher).
    pub(super) broken: Arc<AtomicBool>,
}

/// The most workers a pool can have ([`PoolBuilder::procs`]): far more than one
/// machine runs well (each is a process with its own sockets and threads), few enough
/// that the pool's tables for them are sized without overflow.
pub const MAX_WORKERS: usize = 1 << 16;

/// How long after the grace period a worker that ends its task's children itself is
/// given to reap them and die, before it and its group get SIGKILL: the children get
/// the whole grace from the worker (SIGTERM at the stop, SIGKILL at its end).
const CHILDREN_MARGIN: Duration = Duration::from_millis(500);

impl Config {
    /// From a stop (SIGTERM) to the worker's SIGKILL: the grace period, plus, when the
    /// worker ends its task's children itself, [`CHILDREN_MARGIN`] for it to do so.
    pub(super) fn escalation(&self) -> Duration {
        if self.keep_task_children {
            self.grace
        } else {
            self.grace.saturating_add(CHILDREN_MARGIN)
        }
    }
}

/// How far `imap` reads ahead, as asked.
#[derive(Debug, Clone, Copy)]
enum ReadAhead {
    Total(usize),
    PerWorker(usize),
}

/// Builds a [`Pool`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolBuilder {
    procs: Option<usize>,
    method: StartMethod,
    nice: Option<i32>,
    initializer: Option<Result<(&'static str, Vec<u8>), Error>>,
    initializer_shipped: Shipped,
    max_tasks_per_child: Option<u64>,
    task_timeout: Option<Duration>,
    grace: Duration,
    retries: u32,
    retry_errors: bool,
    restart_limit: RestartLimit,
    read_ahead: Option<ReadAhead>,
    max_held: usize,
    hold_in_memory: usize,
    name: String,
    env_allowlist: Option<Vec<String>>,
    keep_task_children: bool,
    memory_limit: Option<u64>,
    max_memory_per_child: Option<u64>,
}

impl PoolBuilder {
    /// The defaults.
    pub(super) fn new() -> PoolBuilder {
        PoolBuilder {
            procs: None,
            method: StartMethod::default(),
            nice: None,
            initializer: None,
            initializer_shipped: Shipped::default(),
            max_tasks_per_child: None,
            task_timeout: None,
            grace: Duration::from_secs(5),
            retries: 0,
            retry_errors: false,
            restart_limit: RestartLimit::default(),
            read_ahead: None,
            max_held: super::held::DEFAULT_MAX_HELD,
            hold_in_memory: super::held::DEFAULT_HOLD_IN_MEMORY,
            name: "pool".into(),
            env_allowlist: None,
            keep_task_children: false,
            memory_limit: None,
            max_memory_per_child: None,
        }
    }

    /// Memory limit per task, in bytes: the resident memory (RSS) of the worker plus
    /// every process its task started (their sum, looked at every 20 ms while a task
    /// runs). A task whose worker goes over it is killed with them (SIGKILL) and fails
    /// with [`ErrorKind::MemoryExceeded`] (or is retried, as a timeout is); a new
    /// worker starts, and the pool goes on. A worker left above it between tasks is
    /// replaced before its next task. What this catches and how fast:
    /// docs/ARCHITECTURE.md, "Memory".
    ///
    /// ```no_run
    /// let pool = supervisor::Pool::builder().memory_limit(512 << 20).build()?;
    /// # Ok::<(), supervisor::Error>(())
    /// ```
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Replace a worker after a task that leaves it with more than this resident
    /// memory, in bytes (Celery's `worker_max_memory_per_child`): a leak cannot grow a
    /// worker forever. Nothing is lost: the finished task's result is delivered, and
    /// calls sent to it that have not started are taken back and run elsewhere.
    pub fn max_memory_per_child(mut self, bytes: u64) -> Self {
        self.max_memory_per_child = Some(bytes);
        self
    }

    /// Let tasks leave processes behind (daemons they mean to start). Default: false:
    /// when a task returns, whatever it started and left running (children, and
    /// descendants it orphaned) gets SIGTERM, then SIGKILL after the grace period,
    /// before its worker takes the next task. (Inside a batch of tiny calls this is
    /// checked after any call that took 20 µs or more, and at the batch's end.)
    pub fn keep_task_children(mut self, keep: bool) -> Self {
        self.keep_task_children = keep;
        self
    }

    /// Give the workers only these environment variables (by name). Default: the whole
    /// environment.
    pub fn env_allowlist<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.env_allowlist = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Number of worker processes. Default: the CPUs this process may use (affinity and
    /// cgroup quota aware). More than [`MAX_WORKERS`] is refused by `build`
    /// ([`ErrorKind::TooManyWorkers`]).
    pub fn procs(mut self, procs: usize) -> Self {
        self.procs = Some(procs.max(1));
        self
    }

    /// How workers are created. Default: [`StartMethod::Spawn`].
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = method;
        self
    }

    /// Nice value of the workers (-20..=19); lowering it needs privilege.
    pub fn nice(mut self, nice: i32) -> Self {
        self.nice = Some(nice);
        self
    }

    /// A task every worker runs once before its first task. If it fails (error,
    /// panic, crash) the pool stops with that error; no worker is restarted for it.
    pub fn initializer<F, M>(mut self, task: F, arg: F::Arg) -> Self
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
    {
        let _ = task;
        let (encoded, shipped) = shipped::collecting(|| codec::encode_value(&arg));
        self.initializer_shipped = shipped;
        self.initializer = Some(resolve::<F>().map_err(Error::from).and_then(|name| {
            encoded.map(|bytes| (name, bytes)).map_err(|source| {
                Error::from(ErrorKind::EncodeArgument {
                    task: name.to_string(),
                    source,
                })
            })
        }));
        self
    }

    /// Replace a worker after it finished this many tasks (a leaky task cannot grow a
    /// worker forever). No work is lost.
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks_per_child = Some(n.max(1));
        self
    }

    /// Time limit for each task. On expiry the worker's process group gets SIGTERM,
    /// then SIGKILL after the grace period; the task fails with [`ErrorKind::TimedOut`]
    /// (or is retried) and a new worker starts. `map` then sends tasks one at a time.
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.task_timeout = Some(limit);
        self
    }

    /// Time between SIGTERM and SIGKILL when stopping a worker. Default: 5 s. The
    /// task's children get all of it (SIGTERM at the stop, SIGKILL at its end, from the
    /// worker); unless [`PoolBuilder::keep_task_children`], the worker itself is given
    /// 500 ms more to reap them before it is SIGKILLed too, so a worker that does not
    /// answer (stopped, wedged) dies at grace + 500 ms.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Run a task again, up to `n` more times, when its worker died or it timed out.
    /// Default: 0. (An `Err` or a panic is a result, never retried, unless
    /// [`PoolBuilder::retry_errors`].)
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Also run a task again when it returns `Err`, within the same
    /// [`PoolBuilder::retries`]: one budget of runs for every way a run can fail, and
    /// its result (with [`crate::JobMeta::attempts`]) is its last run's. Calls sent
    /// in chunks (`map` with a chunk size over 1) are not retried on `Err`. Default:
    /// false.
    pub fn retry_errors(mut self, yes: bool) -> Self {
        self.retry_errors = yes;
        self
    }

    /// Restart storm limit (see [`RestartLimit`]). Default: [`RestartLimit::default`].
    pub fn restart_limit(mut self, max: u32, within: Duration) -> Self {
        self.restart_limit = RestartLimit { max, within };
        self
    }

    /// How many inputs `imap` reads ahead of the results consumed: tasks queued or
    /// running, and results ready to be yielded. Results of an ordered iterator that
    /// wait for an earlier input (still running) do not count: the workers go on
    /// behind a slow task (see [`PoolBuilder::max_held`]). Default: 64 per worker (at
    /// least one chunk).
    pub fn read_ahead(mut self, n: usize) -> Self {
        self.read_ahead = Some(ReadAhead::Total(n.max(1)));
        self
    }

    /// [`PoolBuilder::read_ahead`] as so many per worker, whatever the number of
    /// workers turns out to be.
    pub fn read_ahead_per_worker(mut self, n: usize) -> Self {
        self.read_ahead = Some(ReadAhead::PerWorker(n.max(1)));
        self
    }

    /// Most results an ordered iterator (`imap`, `imap_reports`) lets wait for an
    /// earlier input that is still running, beyond its read-ahead; past it, it reads
    /// no further until the earlier one is in (the workers then wait). Each costs
    /// about 100 bytes of memory in `imap` once past [`PoolBuilder::hold_in_memory`].
    /// Default: [`DEFAULT_MAX_HELD`](crate::DEFAULT_MAX_HELD) (262,144).
    pub fn max_held(mut self, n: usize) -> Self {
        self.max_held = n;
        self
    }

    /// Bytes of waiting results (encoded) an ordered `imap` keeps in memory; past
    /// them, the results that wait go to one private, unnamed temporary file (mode
    /// 0600, in `TMPDIR`) and are read back in their turn. `imap_reports` decodes
    /// results as they arrive and leaves their memory to the caller
    /// ([`Reports::on_hold`](crate::Reports::on_hold)). Default:
    /// [`DEFAULT_HOLD_IN_MEMORY`](crate::DEFAULT_HOLD_IN_MEMORY) (16 MiB).
    pub fn hold_in_memory(mut self, bytes: usize) -> Self {
        self.hold_in_memory = bytes;
        self
    }

    /// A name for the workers (`ps` shows `NAME-0`, `NAME-1`, ...). Default: `pool`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Starts the workers (in the background; tasks queue until they are up).
    pub fn build(self) -> Result<Pool, Error> {
        crate::init::ensure_initialised()?;
        if let Some(me) = supervisor_worker::context() {
            if me.daemon {
                return Err(ErrorKind::DaemonCannotStart {
                    name: me.name.clone(),
                }
                .into());
            }
        }
        if let Some(nice) = self.nice {
            crate::process::check_nice(nice)?;
        }
        if self.method == StartMethod::Fork {
            crate::launch::zygote::client()?;
        }
        let initializer = self.initializer.transpose()?;
        let procs = self.procs.unwrap_or_else(default_procs);
        if procs > MAX_WORKERS {
            return Err(ErrorKind::TooManyWorkers {
                asked: procs,
                limit: MAX_WORKERS,
            }
            .into());
        }
        let cfg = Config {
            name: self.name,
            procs,
            method: self.method,
            nice: self.nice,
            initializer,
            initializer_shipped: self.initializer_shipped,
            max_tasks_per_child: self.max_tasks_per_child,
            task_timeout: self.task_timeout,
            grace: self.grace,
            retries: self.retries,
            retry_errors: self.retry_errors,
            restart_limit: self.restart_limit,
            env_allowlist: self.env_allowlist,
            keep_task_children: self.keep_task_children,
            memory_limit: self.memory_limit,
            max_memory_per_child: self.max_memory_per_child,
            broken: Arc::new(AtomicBool::new(false)),
        };
        let broken = cfg.broken.clone();
        let timeout_set = cfg.task_timeout.is_some();
        let hub: Arc<LiveHub> = Hub::new(|hub| Dispatcher::new(cfg, Live::new(hub)));
        let last_stats = Arc::new(Mutex::new(None));
        let last = last_stats.clone();
        let finished = Arc::new(Finished::default());
        let flag = FinishOnDrop(finished.clone());
        let thread = std::thread::Builder::new()
            .name("supervisor-pool".into())
            .spawn({
                let hub = hub.clone();
                move || {
                    let _flag = flag;
                    hub.run(&last)
                }
            })
            .map_err(ErrorKind::Spawn)?;
        Ok(Pool {
            shared: Arc::new(Shared {
                hub,
                next_id: AtomicU64::new(1),
                closed: AtomicBool::new(false),
                broken,
            }),
            thread: Mutex::new(Some(thread)),
            finished,
            last_stats,
            procs,
            read_ahead: match self.read_ahead {
                Some(ReadAhead::Total(n)) => n,
                Some(ReadAhead::PerWorker(n)) => n.saturating_mul(procs),
                None => 64 * procs,
            },
            max_held: self.max_held,
            hold_in_memory: self.hold_in_memory,
            timeout_set,
        })
    }
}

fn default_procs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
