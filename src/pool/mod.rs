//! `Pool`: N reusable worker processes behind the API of Python's
//! `multiprocessing.Pool` and `concurrent.futures.ProcessPoolExecutor`, supervised so
//! that a dying worker fails (or retries) only its own task and never hangs anyone.
//!
//! One dispatcher owns the pool's state (`dispatcher/`), reached through the hub
//! (`hub.rs`); the methods here only post it events and wait on results. The
//! dispatcher decides; `live.rs` carries its decisions out on real processes.

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
mod pack;
mod ports;
mod reader;
mod reorder;
mod running;
mod shutdown;
mod stats;
mod storm;
mod wake;

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use serde::{de::DeserializeOwned, Serialize};
use supervisor_worker::codec::{self, CodecError, BATCH_BYTES};
use supervisor_worker::registry::{self, RegistryError};
use supervisor_worker::Call;

pub use builder::{PoolBuilder, RestartLimit, MAX_WORKERS};
pub use handle::{as_completed, AsCompleted, AsCompletedStream, TaskHandle};
pub use held::{DEFAULT_HOLD_IN_MEMORY, DEFAULT_MAX_HELD};
pub use iter::{Imap, ImapStream, MapHandle, Report, ReportStream, Reports};
pub use job::JobMeta;
pub use shutdown::Shutdown;
pub use stats::{PoolStats, WorkerState, WorkerStats};

use builder::Config;
use event::Event;
use iter::Feed;
use job::{Chunk, Delivery, HandleState, Job, Sink, Unit};
use live::LiveHub;
use shutdown::Finished;

use crate::error::{Error, ErrorKind};
use crate::sync::shipped;

/// Largest chunk `map` picks on its own (bounds the work redone one by one if a
/// chunk's worker dies).
const MAX_AUTO_CHUNK: usize = 65_536;

/// What callers, handles and iterators share with the dispatcher.
pub(crate) struct Shared {
    pub(in crate::pool) hub: Arc<LiveHub>,
    pub(in crate::pool) next_id: AtomicU64,
    pub(in crate::pool) closed: AtomicBool,
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

/// A call made with `Pool::start_encoded`: its id, and its result to wait for.
#[cfg(feature = "cluster")]
pub(crate) struct EncodedCall {
    pub(crate) id: u64,
    task: String,
    state: Arc<HandleState>,
    /// Refused before it was submitted (an unknown task).
    early: Option<Error>,
}

#[cfg(feature = "cluster")]
impl std::future::Future for EncodedCall {
    type Output = (Result<Vec<u8>, Error>, u32);

    /// The encoded value or the typed error, and the pid that ran it (0 if none did);
    /// no thread waits for it: the task is woken by whoever settles the job (see
    /// `HandleState::poll_take`).
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        if let Some(e) = self.early.take() {
            return std::task::Poll::Ready((Err(e), 0));
        }
        self.state.poll_take(cx).map(|taken| match taken {
            Some((result, pid)) => (result, pid),
            None => (
                Err(ErrorKind::ResultTaken {
                    task: self.task.clone(),
                }
                .into()),
                0,
            ),
        })
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

    /// Runs `task` on every input; one result per input, in input order. Chunk size
    /// chosen by [`Pool::auto_chunksize`].
    pub fn map<F, M>(
        &self,
        task: F,
        inputs: impl IntoIterator<Item = F::Arg>,
    ) -> Vec<Result<F::Out, Error>>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
        F::Out: DeserializeOwned,
    {
        self.map_async(task, inputs).wait()
    }

    /// [`Pool::map`] with an explicit chunk size.
    pub fn map_chunked<F, M>(
        &self,
        task: F,
        inputs: impl IntoIterator<Item = F::Arg>,
        chunksize: usize,
    ) -> Vec<Result<F::Out, Error>>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
        F::Out: DeserializeOwned,
    {
        self.map_async_chunked(task, inputs, chunksize).wait()
    }

    /// Python's `starmap`: a task with several parameters over tuples of arguments.
    /// (In Rust this is [`Pool::map`]: a multi-parameter task takes a tuple.)
    pub fn starmap<F, M>(
        &self,
        task: F,
        inputs: impl IntoIterator<Item = F::Arg>,
    ) -> Vec<Result<F::Out, Error>>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
        F::Out: DeserializeOwned,
    {
        self.map(task, inputs)
    }

    /// Submits every input now and returns at once; [`MapHandle::wait`] collects.
    pub fn map_async<F, M>(
        &self,
        task: F,
        inputs: impl IntoIterator<Item = F::Arg>,
    ) -> MapHandle<F::Out>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
        F::Out: DeserializeOwned,
    {
        let inputs = inputs.into_iter();
        match inputs.size_hint() {
            // The length is known: no need to hold every input first.
            (low, Some(high)) if low == high => {
                let chunksize = self.auto_chunksize(low);
                self.map_async_chunked(task, inputs, chunksize)
            }
            _ => {
                let inputs: Vec<F::Arg> = inputs.collect();
                let chunksize = self.auto_chunksize(inputs.len());
                self.map_async_chunked(task, inputs, chunksize)
            }
        }
    }

    /// [`Pool::map_async`] with an explicit chunk size.
    pub fn map_async_chunked<F, M>(
        &self,
        _task: F,
        inputs: impl IntoIterator<Item = F::Arg>,
        chunksize: usize,
    ) -> MapHandle<F::Out>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
        F::Out: DeserializeOwned,
    {
        let (tx, rx) = wake::channel();
        let stream = self.shared.next_id();
        let name = match resolve::<F>() {
            Ok(name) => name,
            Err(e) => {
                // Every input fails alike; nothing is sent.
                let items: Vec<_> = inputs
                    .into_iter()
                    .enumerate()
                    .map(|(index, _)| (index, Err(iter::same_error(&e)), JobMeta::default()))
                    .collect();
                let len = items.len();
                tx.send(Delivery::Items(items));
                return MapHandle::new("?", len, rx);
            }
        };
        // A unit holds at most `MAX_CALLS` calls (see `supervisor_worker::progress`).
        let chunksize = chunksize.clamp(1, supervisor_worker::progress::MAX_CALLS as usize);
        let new_chunk = |first_index: usize| {
            let first_id = self.shared.next_ids(chunksize);
            Chunk::new(name, first_id, first_index, stream, tx.clone())
        };
        let submit = |chunk: Option<Chunk>| {
            if let Some(chunk) = chunk {
                self.shared.submit(vec![Unit::chunk(chunk)]);
            }
        };
        let mut chunk: Option<Chunk> = None;
        let mut len = 0;
        for (index, input) in inputs.into_iter().enumerate() {
            len += 1;
            let current = chunk.get_or_insert_with(|| new_chunk(index));
            let start = current.data.len();
            let (encoded, shipped) =
                shipped::collecting(|| codec::encode_value_append(&input, &mut current.data));
            current.shipped.add(shipped);
            let encoded = encoded.and_then(|n| {
                // A chunk records each argument's length in 32 bits.
                u32::try_from(n).map_err(|_| {
                    current.data.truncate(start);
                    CodecError::TooLong {
                        type_name: std::any::type_name::<F::Arg>(),
                        len: n,
                    }
                })
            });
            match encoded {
                Ok(n) => {
                    current.lens.push(n);
                    if current.len() == chunksize || current.data.len() > BATCH_BYTES {
                        // Submitted at once: workers start while the rest is encoded.
                        submit(chunk.take());
                    }
                }
                Err(source) => {
                    // Chunks hold consecutive inputs: close this one, fail the input.
                    submit(chunk.take().filter(|c| c.len() > 0));
                    let err = ErrorKind::EncodeArgument {
                        task: name.to_string(),
                        source,
                    }
                    .into();
                    tx.send(Delivery::Items(vec![(index, Err(err), JobMeta::default())]));
                }
            }
        }
        submit(chunk.take());
        MapHandle::new(name, len, rx)
    }

    /// Lazily runs `task` over `inputs`, yielding results in input order, one task per
    /// input. Memory stays bounded for endless inputs (see [`PoolBuilder::read_ahead`]);
    /// behind a slow task the workers go on with the inputs after it, and their
    /// results wait, encoded, for their turn (see [`PoolBuilder::max_held`] and
    /// [`PoolBuilder::hold_in_memory`]).
    pub fn imap<F, M, I>(&self, task: F, inputs: I) -> Imap<F::Out, I::IntoIter>
    where
        F: Call<M> + 'static,
        I: IntoIterator<Item = F::Arg>,
        F::Arg: Serialize,
    {
        self.imap_with(task, inputs, 1, true)
    }

    /// [`Pool::imap`] yielding results as they finish.
    pub fn imap_unordered<F, M, I>(&self, task: F, inputs: I) -> Imap<F::Out, I::IntoIter>
    where
        F: Call<M> + 'static,
        I: IntoIterator<Item = F::Arg>,
        F::Arg: Serialize,
    {
        self.imap_with(task, inputs, 1, false)
    }

    /// `imap` (ordered) or `imap_unordered` with an explicit chunk size.
    pub fn imap_with<F, M, I>(
        &self,
        _task: F,
        inputs: I,
        chunksize: usize,
        ordered: bool,
    ) -> Imap<F::Out, I::IntoIter>
    where
        F: Call<M> + 'static,
        I: IntoIterator<Item = F::Arg>,
        F::Arg: Serialize,
    {
        Imap(self.feed(resolve::<F>(), inputs.into_iter(), chunksize, ordered))
    }

    /// Runs the task registered under `name` over `inputs` (decoded as `A`, results as
    /// `R`), yielding each result with where and how it ran. For callers that pick tasks
    /// by name, like the CLI.
    pub fn imap_reports<A, R, I>(
        &self,
        name: &str,
        inputs: I,
        chunksize: usize,
        ordered: bool,
    ) -> Reports<R, I::IntoIter>
    where
        I: IntoIterator<Item = A>,
        A: Serialize,
    {
        let task = registry::by_name(name).map(|e| e.name);
        Reports::new(self.feed(task, inputs.into_iter(), chunksize, ordered))
    }

    fn feed<R, I>(
        &self,
        task: Result<&'static str, RegistryError>,
        inputs: I,
        chunksize: usize,
        ordered: bool,
    ) -> Feed<R, I>
    where
        I: Iterator,
        I::Item: Serialize,
    {
        Feed::new(
            self.shared.clone(),
            task,
            inputs,
            chunksize,
            iter::Bounds {
                read_ahead: self.read_ahead,
                max_held: self.max_held,
                hold_in_memory: self.hold_in_memory,
            },
            ordered,
        )
    }

    /// Runs one task and waits for it.
    pub fn apply<F, M>(&self, task: F, arg: F::Arg) -> Result<F::Out, Error>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
        F::Out: DeserializeOwned,
    {
        let handle = self.submit_one(task, arg, HandleState::for_caller());
        // Read the worker's reply on this thread if its link was lent to it: two
        // wake-ups per round trip (the worker's, this thread's) instead of three.
        handle.state.serve_lent_link();
        handle.wait()
    }

    /// Submits one task and returns a handle at once.
    pub fn apply_async<F, M>(&self, task: F, arg: F::Arg) -> TaskHandle<F::Out>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
    {
        self.submit_one(task, arg, HandleState::new())
    }

    fn submit_one<F, M>(&self, _task: F, arg: F::Arg, state: Arc<HandleState>) -> TaskHandle<F::Out>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
    {
        let id = self.shared.next_id();
        let name = resolve::<F>();
        let task = name.as_ref().map_or("?", |n| *n);
        let handle = TaskHandle {
            state: state.clone(),
            shared: self.shared.clone(),
            id,
            task,
            result: PhantomData,
        };
        let (encoded, shipped) = shipped::collecting(|| codec::encode_value(&arg));
        // The caller gave the argument away: a big one is not held beside its encoding
        // while the task is sent.
        drop(arg);
        let job = name.map_err(Error::from).and_then(|name| {
            encoded
                .map(|bytes| {
                    let mut job = Job::new(id, name, bytes, Sink::Handle(state.clone()));
                    job.shipped = shipped;
                    job
                })
                .map_err(|source| {
                    Error::from(ErrorKind::EncodeArgument {
                        task: name.to_string(),
                        source,
                    })
                })
        });
        match job {
            Ok(job) => self.shared.submit(vec![Unit::new(task, vec![job])]),
            Err(e) => Job::new(id, task, Vec::new(), Sink::Handle(state)).complete(Err(e)),
        }
        handle
    }

    /// Submits task `name` with its argument already encoded (the cluster agent's
    /// path: the bytes came over the network), and returns at once: the call's id
    /// (for [`Pool::stop_call`]) and what waits for its result. `limit` is the call's
    /// own time limit (the run's `--timeout`): the shorter of it and the pool's
    /// applies, to this call alone, as the pool's applies to each call.
    #[cfg(feature = "cluster")]
    pub(crate) fn start_encoded(
        &self,
        name: &str,
        bytes: Vec<u8>,
        limit: Option<std::time::Duration>,
    ) -> EncodedCall {
        let state = HandleState::new();
        let id = self.shared.next_id();
        let early = match registry::by_name(name) {
            Ok(entry) => {
                let mut job = Job::new(id, entry.name, bytes, Sink::Handle(state.clone()));
                job.limit = limit;
                self.shared.submit(vec![Unit::new(entry.name, vec![job])]);
                None
            }
            Err(e) => Some(e.into()),
        };
        EncodedCall {
            id,
            task: name.to_string(),
            state,
            early,
        }
    }

    /// Stops one call, by its id, through the pool's own stop path: a call that has
    /// not started is cancelled ([`ErrorKind::Cancelled`]); a running one has its
    /// worker stopped (SIGTERM to its group, the grace period, SIGKILL) and fails as
    /// [`ErrorKind::Stopped`] unless it answers first; the pool starts a replacement
    /// and goes on. A finished call is left alone. (The cluster agent's stop of a
    /// run's running tasks.)
    #[cfg(feature = "cluster")]
    pub(crate) fn stop_call(&self, id: u64) {
        self.shared.hub.post(Event::StopCall(id));
    }

    /// `concurrent.futures` spelling of [`Pool::apply_async`].
    pub fn submit<F, M>(&self, task: F, arg: F::Arg) -> TaskHandle<F::Out>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
    {
        self.apply_async(task, arg)
    }

    /// No new work: later submissions fail with [`ErrorKind::PoolClosed`]; queued and
    /// running tasks finish.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.hub.post(Event::Close);
    }

    /// Closes the pool and cancels every task that has not started (they fail with
    /// [`ErrorKind::Cancelled`]); running tasks finish. GNU parallel's `--halt soon`.
    pub fn cancel_pending(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.hub.post(Event::CancelPending);
    }

    /// Sets a halt condition: before the pool hands out any work, it calls `halt` with
    /// how many tasks have succeeded and failed so far (whenever that changed); once
    /// it returns true, the pool does what [`Pool::cancel_pending`] does, so no task
    /// starts after a result that met the condition (a callback of the results' reader,
    /// such as [`Reports::on_arrival`], runs later, when the next task may already
    /// have started). Queued calls are then handed out one at a time, not merged.
    /// For GNU parallel's `--halt`.
    pub fn cancel_pending_when(&self, halt: impl FnMut(u64, u64) -> bool + Send + 'static) {
        self.shared.hub.post(Event::SetGate(Box::new(halt)));
    }

    /// Changes the time limit per task ([`PoolBuilder::task_timeout`]; `None`: no
    /// limit) for the tasks to come and those running: a running task is measured
    /// from its own start, so one already past the new limit times out at once
    /// ([`ErrorKind::TimedOut`]). For limits that follow the tasks' run times (GNU
    /// parallel's `--timeout 200%`). The chunk size of `map` is not affected.
    pub fn set_task_timeout(&self, limit: Option<std::time::Duration>) {
        self.shared.hub.post(Event::SetTaskTimeout(limit));
    }

    /// Closes the pool and waits until every task has finished and every worker has
    /// exited.
    pub fn join(&self) {
        self.close();
        self.wait_dispatcher();
    }

    /// Stops now: tasks that have not started fail with [`ErrorKind::Terminated`];
    /// running tasks are stopped with their workers (SIGTERM and, after the grace
    /// period, SIGKILL) and fail with [`ErrorKind::Stopped`], with their pid, start and
    /// duration. Returns once the workers are gone.
    pub fn terminate(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.hub.post(Event::Terminate);
        self.wait_dispatcher();
    }

    /// Like [`Pool::terminate`] without the grace period: SIGKILL at once.
    pub fn kill(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.hub.post(Event::Kill);
        self.wait_dispatcher();
    }

    /// [`Pool::join`] for async code: closes the pool now and returns a future that is
    /// ready when every task has finished and every worker has exited. No thread waits
    /// for it (the pool's own thread wakes the task as it ends), so it never blocks an
    /// executor thread; once it is ready, dropping the pool does not block either.
    pub fn join_async(&self) -> Shutdown {
        self.close();
        self.shutdown()
    }

    /// [`Pool::terminate`] for async code: stops now and returns a future that is
    /// ready once the workers are gone (see [`Pool::join_async`]).
    pub fn terminate_async(&self) -> Shutdown {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.hub.post(Event::Terminate);
        self.shutdown()
    }

    /// [`Pool::kill`] for async code (see [`Pool::terminate_async`]).
    pub fn kill_async(&self) -> Shutdown {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.hub.post(Event::Kill);
        self.shutdown()
    }

    fn shutdown(&self) -> Shutdown {
        Shutdown {
            finished: self.finished.clone(),
        }
    }

    /// Waits until the dispatcher has stopped, whoever else is waiting too.
    fn wait_dispatcher(&self) {
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        self.finished.wait();
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

impl Drop for Pool {
    /// Terminates the pool and blocks until its workers are gone (up to the grace
    /// period), unless it has already stopped: after [`Pool::join`], [`Pool::terminate`]
    /// or a [`Shutdown`] that is ready, dropping it returns at once.
    fn drop(&mut self) {
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(thread) = thread else { return };
        if self.finished.is_done() {
            // Its dispatcher is gone; the thread only has its last references left to
            // drop, and ends on its own.
            drop(thread);
            return;
        }
        *self.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
        self.terminate();
    }
}
