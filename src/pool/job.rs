//! Jobs (one task call each), units (what one message to a worker carries) and sinks
//! (where a job's result goes).
//!
//! Every job delivers exactly one result: `complete` sends it, and a job dropped without
//! completing (the dispatcher stopped, even by a panic) sends an error from `Drop`. So
//! no caller waits forever.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::thread::ThreadId;
use std::time::{Duration, Instant, SystemTime};

use atomic_waker::AtomicWaker;
use supervisor_worker::poll::{self, poll_until};

use super::wake;

use crate::error::{Error, ErrorKind, Violation};
use crate::sync::shipped::Shipped;
use crate::trace;

/// A worker's link lent to the caller of an `apply` (see `reader.rs`).
pub(crate) trait LentLink: Send + Sync {
    /// Reads and posts the worker's messages until `done`, then gives the link back.
    fn serve_until(&self, done: &dyn Fn() -> bool);
}

/// What a finished job yields before typed decoding: the encoded return value.
pub(crate) type JobResult = Result<Vec<u8>, Error>;

/// Where and how a job ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobMeta {
    /// The worker that ran it last (0 if it never ran).
    pub pid: u32,
    /// Runs, counting retries (0 if it never ran).
    pub attempts: u32,
    /// When its last run started (wall clock).
    pub started: Option<SystemTime>,
    /// How long its last run took, as its worker measured it.
    pub duration: Duration,
}

/// The waiting side of one `apply_async` / `submit`.
pub(crate) struct HandleState {
    inner: Mutex<HandleInner>,
    ready: Condvar,
    /// Set, under the lock, once the result is in place; a spinning waiter reads it
    /// without the lock.
    done: AtomicBool,
    /// For `apply`: the thread that waits for the result as soon as it has submitted
    /// the task, and may read the worker's reply itself (see `reader.rs`).
    caller: Option<ThreadId>,
    /// The task awaiting the handle, woken by whichever thread sets the result.
    waker: AtomicWaker,
}

struct HandleInner {
    /// The result, and the pid of the worker that ran the task (0 if none did).
    result: Option<(JobResult, u32)>,
    watchers: Vec<(wake::Sender<usize>, usize)>,
    /// The link of the worker running the task, lent to `caller`.
    lent: Option<Arc<dyn LentLink>>,
    /// Threads asleep on `ready`: without one, setting the result wakes nobody (a
    /// notify is a system call even then).
    sleepers: usize,
}

impl HandleState {
    pub(crate) fn new() -> Arc<HandleState> {
        HandleState::build(None)
    }

    /// The state of a task whose submitting thread waits for it at once (`apply`).
    pub(crate) fn for_caller() -> Arc<HandleState> {
        HandleState::build(Some(std::thread::current().id()))
    }

    fn build(caller: Option<ThreadId>) -> Arc<HandleState> {
        Arc::new(HandleState {
            inner: Mutex::new(HandleInner {
                result: None,
                watchers: Vec::new(),
                lent: None,
                sleepers: 0,
            }),
            ready: Condvar::new(),
            done: AtomicBool::new(false),
            caller,
            waker: AtomicWaker::new(),
        })
    }

    /// Hands the caller the link its task's reply will come on.
    pub(crate) fn borrow_link(&self, reader: Arc<dyn LentLink>) {
        let mut inner = self.lock();
        // Lent only while the caller posts, and taken before it reads.
        debug_assert!(inner.lent.is_none(), "a link lent twice at once");
        inner.lent = Some(reader);
    }

    /// For the caller: while a link is lent, reads it until the result is in, and gives
    /// it back. Another link can be lent meanwhile: the worker died, and the task's
    /// retry went to another worker from this thread (while it posted the death).
    pub(crate) fn serve_lent_link(&self) {
        loop {
            let lent = self.lock().lent.take();
            let Some(reader) = lent else { return };
            reader.serve_until(&|| self.is_done());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HandleInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, result: JobResult, pid: u32) {
        let mut inner = self.lock();
        if self.is_done() {
            return;
        }
        inner.result = Some((result, pid));
        self.done.store(true, Ordering::Release);
        let watchers = std::mem::take(&mut inner.watchers);
        let sleepers = inner.sleepers;
        drop(inner);
        if sleepers > 0 {
            self.ready.notify_all();
        }
        self.waker.wake();
        for (tx, index) in watchers {
            tx.send(index);
        }
    }

    /// Polls `done` for at most a [`poll::WINDOW`] (or until `deadline`): a quick task's
    /// result usually arrives within it, and a waiter that is not asleep needs no
    /// wake-up.
    fn spin(&self, deadline: Option<Instant>) {
        let start = Instant::now();
        let until = deadline.map_or(start + poll::WINDOW, |d| d.min(start + poll::WINDOW));
        poll_until(until, 64, || self.is_done());
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Waits until done or `deadline`; takes the result (once).
    pub(crate) fn take_until(&self, deadline: Option<Instant>) -> Option<Option<(JobResult, u32)>> {
        self.spin(deadline);
        let mut inner = self.lock();
        while !self.is_done() {
            let left = match deadline {
                None => None,
                Some(d) => Some(d.checked_duration_since(Instant::now())?),
            };
            inner.sleepers += 1;
            inner = match left {
                None => self.ready.wait(inner).unwrap_or_else(|p| p.into_inner()),
                Some(left) => {
                    self.ready
                        .wait_timeout(inner, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            inner.sleepers -= 1;
        }
        Some(inner.result.take())
    }

    /// Takes the result (once) if it is in; otherwise registers the task of `cx` to be
    /// woken when it is set. Never blocks: the lock is only held for a move.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Option<(JobResult, u32)>> {
        if !self.is_done() {
            self.waker.register(cx.waker());
            // Set between the look and the registration: nobody woke us.
            if !self.is_done() {
                return Poll::Pending;
            }
        }
        Poll::Ready(self.lock().result.take())
    }

    /// Sends `index` on `tx` once done (at once if already done).
    pub(crate) fn watch(&self, tx: wake::Sender<usize>, index: usize) {
        let mut inner = self.lock();
        if self.is_done() {
            drop(inner);
            tx.send(index);
        } else {
            inner.watchers.push((tx, index));
        }
    }
}

/// Where a job's result goes.
pub(crate) enum Sink {
    /// A handle from `apply_async` / `submit`.
    Handle(Arc<HandleState>),
    /// The result channel of a `map`/`imap` call (`stream` identifies the call), tagged
    /// with the input position.
    Stream {
        stream: u64,
        index: usize,
        tx: wake::Sender<Delivery>,
    },
}

/// A result on a stream: input position, result, how it ran.
pub(crate) type Delivered = (usize, JobResult, JobMeta);

/// What a result stream carries: results one by one, or a whole chunk's at once.
pub(crate) enum Delivery {
    Items(Vec<Delivered>),
    Packed(PackedResults),
}

impl Delivery {
    /// One entry per result (a chunk's values copied out one by one); result
    /// iterators use `arrived::receive`, which copies nothing.
    #[cfg(test)]
    pub(crate) fn into_items(self) -> Vec<Delivered> {
        match self {
            Delivery::Items(items) => items,
            Delivery::Packed(packed) => {
                let mut items = Vec::with_capacity(packed.lens.len());
                packed.for_each(|index, result, meta| {
                    items.push((index, result.map(<[u8]>::to_vec), meta));
                });
                items
            }
        }
    }
}

/// The results of a chunk: plain values back to back in `data` (item `i`'s being
/// `lens[i]` bytes long), every other outcome in `others` by position.
pub(crate) struct PackedResults {
    pub(crate) first_index: usize,
    pub(crate) lens: Vec<u32>,
    pub(crate) data: Vec<u8>,
    pub(crate) others: Vec<(u32, JobResult)>,
    /// How the chunk ran (its duration shared evenly by its items), for the items
    /// without a record of their own in `each`.
    pub(crate) meta: JobMeta,
    /// A timed chunk's: how each item ran, by position (its own start and duration).
    pub(crate) each: Vec<JobMeta>,
}

/// Where a packed item's value is: a range of the chunk's data, or bytes of its own.
pub(crate) enum Part {
    Data(std::ops::Range<usize>),
    Own(Vec<u8>),
}

/// A packed item: input position, where its value is (or its error), record.
pub(crate) type PackedItem = (usize, Result<Part, Error>, JobMeta);

impl PackedResults {
    /// Gives `f` each item's input position, value (or error) and record, with the
    /// data its ranges index, and returns the data; every range lies within it (an
    /// item whose length would reach past it is an error: a worker lied about it).
    fn walk(self, mut f: impl FnMut(&[u8], PackedItem)) -> Vec<u8> {
        let PackedResults {
            first_index,
            lens,
            data,
            others,
            meta,
            each,
        } = self;
        let mut others = others.into_iter().peekable();
        let mut at = 0usize;
        for (i, len) in lens.iter().enumerate() {
            let end = at.saturating_add(*len as usize);
            let index = first_index + i;
            let own = each.get(i).copied().unwrap_or(meta);
            let part = match others.next_if(|(pos, _)| *pos as usize == i) {
                Some((_, Err(e))) => Err(e),
                Some((_, Ok(bytes))) => Ok(Part::Own(bytes)),
                None if end <= data.len() => Ok(Part::Data(at..end)),
                None => Err(ErrorKind::Protocol {
                    pid: meta.pid,
                    violation: Violation::ChunkBeyond { position: i },
                }
                .into()),
            };
            f(&data, (index, part, own));
            at = end;
        }
        data
    }

    /// Its data, and each item's input position, value (a range of the data, or
    /// bytes of its own) or error, and record.
    pub(crate) fn into_parts(self) -> (Vec<u8>, Vec<PackedItem>) {
        let mut parts = Vec::with_capacity(self.lens.len());
        let data = self.walk(|_, item| parts.push(item));
        (data, parts)
    }

    /// Calls `f` with each item's input position, value bytes (or its error) and
    /// record.
    pub(crate) fn for_each(self, mut f: impl FnMut(usize, Result<&[u8], Error>, JobMeta)) {
        self.walk(|data, (index, part, meta)| match part {
            Ok(Part::Data(range)) => f(index, Ok(&data[range]), meta),
            Ok(Part::Own(bytes)) => f(index, Ok(&bytes), meta),
            Err(e) => f(index, Err(e), meta),
        });
    }
}

impl Sink {
    fn deliver(self, result: JobResult, meta: JobMeta) {
        match self {
            Sink::Handle(state) => state.set(result, meta.pid),
            Sink::Stream { index, tx, .. } => {
                tx.send(Delivery::Items(vec![(index, result, meta)]));
            }
        }
    }
}

/// One task call.
pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) arg: Vec<u8>,
    /// Retries used: runs that ended with the worker dying or timing out (or an `Err`,
    /// with `retry_errors`) and were run again. (Its `JobMeta::attempts`, the runs in all, is this plus its last run.)
    pub(crate) retried: u32,
    /// Its own time limit (the cluster agent's per-task `--timeout` of a run); the
    /// pool's limit applies too, the shorter wins.
    pub(crate) limit: Option<std::time::Duration>,
    sink: Option<Sink>,
    task: &'static str,
    /// The objects its argument ships handles of, kept open until the job ends: a retry
    /// decodes the same bytes again (the caller may have dropped its own handles).
    pub(crate) shipped: Shipped,
}

impl Job {
    pub(crate) fn new(id: u64, task: &'static str, arg: Vec<u8>, sink: Sink) -> Job {
        Job {
            id,
            arg,
            retried: 0,
            limit: None,
            sink: Some(sink),
            task,
            shipped: Shipped::default(),
        }
    }

    pub(crate) fn task(&self) -> &'static str {
        self.task
    }

    /// Its time limit under the pool's `pool`: the shorter of the two.
    pub(crate) fn limit_under(
        &self,
        pool: Option<std::time::Duration>,
    ) -> Option<std::time::Duration> {
        match (self.limit, pool) {
            (Some(own), Some(pool)) => Some(own.min(pool)),
            (own, pool) => own.or(pool),
        }
    }

    /// The result stream it reports to (`map`/`imap`), if any.
    pub(crate) fn stream(&self) -> Option<u64> {
        match &self.sink {
            Some(Sink::Stream { stream, .. }) => Some(*stream),
            _ => None,
        }
    }

    /// Drops the job without a result: its stream's reader is gone.
    pub(crate) fn forget(mut self) {
        self.sink = None;
    }

    /// Delivers a result of a job that never ran; the job is finished.
    pub(crate) fn complete(self, result: JobResult) {
        let meta = JobMeta {
            attempts: self.retried,
            ..JobMeta::default()
        };
        self.complete_with(result, meta);
    }

    /// Delivers the result and how the job ran; the job is finished.
    pub(crate) fn complete_with(mut self, result: JobResult, meta: JobMeta) {
        if let Some(sink) = self.sink.take() {
            self.trace(&result, &meta);
            sink.deliver(result, meta);
        }
    }

    fn trace(&self, result: &JobResult, meta: &JobMeta) {
        trace::task_finished(
            self.task,
            self.id,
            result,
            meta.pid,
            meta.attempts,
            meta.duration,
        );
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            let err = Err(ErrorKind::Terminated {
                task: self.task.to_string(),
            }
            .into());
            self.trace(&err, &JobMeta::default());
            sink.deliver(err, JobMeta::default());
        }
    }
}

/// Completes the jobs of one batch, sending the results bound for the same stream as
/// one message (a map of a million items is not a million channel sends).
#[derive(Default)]
pub(crate) struct Deliveries {
    stream: Option<(u64, wake::Sender<Delivery>)>,
    items: Vec<Delivered>,
}

impl Deliveries {
    /// Completes `job`, holding stream results back until [`Deliveries::flush`].
    pub(crate) fn complete(&mut self, mut job: Job, result: JobResult, meta: JobMeta) {
        if job.sink.is_some() {
            job.trace(&result, &meta);
        }
        match job.sink.take() {
            Some(Sink::Stream { stream, index, tx }) => {
                if self.stream.as_ref().is_some_and(|(s, _)| *s != stream) {
                    self.flush();
                }
                if self.stream.is_none() {
                    self.stream = Some((stream, tx));
                }
                self.items.push((index, result, meta));
            }
            Some(sink) => sink.deliver(result, meta),
            None => {}
        }
    }

    /// Sends what is held back.
    pub(crate) fn flush(&mut self) {
        if let Some((_, tx)) = self.stream.take() {
            tx.send(Delivery::Items(std::mem::take(&mut self.items)));
        }
    }
}

impl Drop for Deliveries {
    fn drop(&mut self) {
        self.flush();
    }
}

/// What one message to a worker carries: jobs of the same task, run in order; or a
/// chunk of a `map` (then `jobs` is empty).
pub(crate) struct Unit {
    pub(crate) task: &'static str,
    pub(crate) jobs: Vec<Job>,
    pub(crate) chunk: Option<Chunk>,
}

impl Unit {
    pub(crate) fn new(task: &'static str, jobs: Vec<Job>) -> Unit {
        Unit {
            task,
            jobs,
            chunk: None,
        }
    }

    pub(crate) fn chunk(chunk: Chunk) -> Unit {
        Unit {
            task: chunk.task,
            jobs: Vec::new(),
            chunk: Some(chunk),
        }
    }

    /// Splits off the calls from position `at` on (of those it still holds) as a unit
    /// of their own.
    pub(crate) fn split_off(&mut self, at: usize) -> Unit {
        match &mut self.chunk {
            Some(chunk) => Unit::chunk(chunk.split_off(at)),
            None => Unit::new(self.task, self.jobs.split_off(at.min(self.jobs.len()))),
        }
    }

    /// The handle of a job whose submitting thread is this one and waits for it at
    /// once (an `apply` dispatched while posting its own submission).
    pub(crate) fn waiting_caller(&self) -> Option<&Arc<HandleState>> {
        self.jobs.iter().find_map(|job| match &job.sink {
            Some(Sink::Handle(state))
                if state
                    .caller
                    .is_some_and(|caller| caller == std::thread::current().id()) =>
            {
                Some(state)
            }
            _ => None,
        })
    }

    /// How many task calls it holds (not yet answered).
    pub(crate) fn len(&self) -> usize {
        self.chunk.as_ref().map_or(self.jobs.len(), Chunk::len)
    }

    /// The id of its first call.
    pub(crate) fn first_id(&self) -> u64 {
        match &self.chunk {
            Some(chunk) => chunk.first_id,
            None => self.jobs.first().map_or(0, |j| j.id),
        }
    }

    /// The id of the `k`-th call it still holds (`None` past its end).
    pub(crate) fn id_at(&self, k: usize) -> Option<u64> {
        match &self.chunk {
            Some(chunk) => (k < chunk.len()).then(|| chunk.first_id + (chunk.delivered + k) as u64),
            None => self.jobs.get(k).map(|j| j.id),
        }
    }

    /// Fails every call with the error `error` makes from the task's name (a chunk's
    /// in one message).
    pub(crate) fn fail(self, error: impl Fn(&'static str) -> ErrorKind) {
        if let Some(mut chunk) = self.chunk {
            chunk.fail(&error);
        }
        for job in self.jobs {
            let e = error(job.task);
            job.complete(Err(e.into()));
        }
    }

    /// Turns a chunk into separate jobs, for when its calls must be told apart (its
    /// worker died, or it is split).
    pub(crate) fn explode(&mut self) {
        if let Some(chunk) = self.chunk.take() {
            self.jobs = chunk.into_jobs();
        }
    }
}

/// A chunk of a `map`: consecutive inputs of one task, encoded back to back in one
/// buffer, whose results go to one stream in one message. It costs one allocation per
/// chunk instead of several per input; its calls become separate [`Job`]s only when
/// they must be told apart.
pub(crate) struct Chunk {
    pub(crate) task: &'static str,
    /// Call `i` has id `first_id + i` and input position `first_index + i`.
    pub(crate) first_id: u64,
    pub(crate) first_index: usize,
    /// Length of each encoded argument.
    pub(crate) lens: Vec<u32>,
    /// The encoded arguments, back to back.
    pub(crate) data: Vec<u8>,
    stream: u64,
    /// Calls whose results were delivered (a prefix: a chunk is answered in order,
    /// possibly in parts); `lens` and `data` keep only the calls after them.
    delivered: usize,
    /// Its worker answers each call with its own timing, delivered as each call's own
    /// record (`imap_reports`); else the chunk's time is shared by its calls (`map`).
    pub(crate) timed: bool,
    /// Taken when the chunk is finished; a chunk dropped unfinished fails its
    /// undelivered calls as terminated.
    tx: Option<wake::Sender<Delivery>>,
    /// The objects its arguments ship handles of, kept until its last call ends.
    pub(crate) shipped: Shipped,
}

impl Chunk {
    pub(crate) fn new(
        task: &'static str,
        first_id: u64,
        first_index: usize,
        stream: u64,
        tx: wake::Sender<Delivery>,
    ) -> Chunk {
        Chunk {
            task,
            first_id,
            first_index,
            lens: Vec::new(),
            data: Vec::new(),
            stream,
            delivered: 0,
            timed: false,
            tx: Some(tx),
            shipped: Shipped::default(),
        }
    }

    /// The same chunk, answered with each call's own timing (see [`Chunk::timed`]).
    pub(crate) fn with_timings(mut self) -> Chunk {
        self.timed = true;
        self
    }

    /// The result stream it reports to.
    pub(crate) fn stream(&self) -> u64 {
        self.stream
    }

    /// Drops the chunk without results: its stream's reader is gone.
    pub(crate) fn forget(mut self) {
        self.tx = None;
    }

    /// Calls not delivered yet.
    pub(crate) fn len(&self) -> usize {
        self.lens.len().saturating_sub(self.delivered)
    }

    /// Input position of the first undelivered call.
    pub(crate) fn next_index(&self) -> usize {
        self.first_index + self.delivered
    }

    /// Delivers the results of the next `results.lens.len()` calls (at
    /// [`Chunk::next_index`]).
    pub(crate) fn deliver(&mut self, results: PackedResults) {
        if trace::tasks_enabled() {
            let failed = results.others.iter().filter(|(_, r)| r.is_err()).count();
            trace::chunk_finished(
                self.task,
                self.first_id + self.delivered as u64,
                results.lens.len(),
                failed,
                results.meta.pid,
                results.meta.duration,
            );
        }
        self.delivered += results.lens.len();
        if let Some(tx) = &self.tx {
            tx.send(Delivery::Packed(results));
        }
        if self.len() == 0 {
            self.tx = None;
        }
    }

    /// Byte offset in `data` of call `i` (counted from the first call).
    fn offset(&self, i: usize) -> usize {
        self.lens[..i.min(self.lens.len())]
            .iter()
            .map(|l| *l as usize)
            .sum()
    }

    /// Splits off the undelivered calls from `at` on (counted from the first
    /// undelivered call) as a chunk of their own.
    pub(crate) fn split_off(&mut self, at: usize) -> Chunk {
        let cut = (self.delivered + at).min(self.lens.len());
        let byte = self.offset(cut);
        let rest = Chunk {
            task: self.task,
            first_id: self.first_id + cut as u64,
            first_index: self.first_index + cut,
            lens: self.lens.split_off(cut),
            data: self.data.split_off(byte.min(self.data.len())),
            stream: self.stream,
            delivered: 0,
            timed: self.timed,
            tx: self.tx.clone(),
            shipped: self.shipped.clone(),
        };
        if self.len() == 0 {
            self.tx = None;
        }
        rest
    }

    fn into_jobs(mut self) -> Vec<Job> {
        let Some(tx) = self.tx.take() else {
            return Vec::new();
        };
        let mut at = self.offset(self.delivered);
        let mut jobs = Vec::with_capacity(self.len());
        for (i, len) in self.lens.iter().enumerate().skip(self.delivered) {
            let end = at + *len as usize;
            let sink = Sink::Stream {
                stream: self.stream,
                index: self.first_index + i,
                tx: tx.clone(),
            };
            let arg = self.data.get(at..end).unwrap_or_default().to_vec();
            let mut job = Job::new(self.first_id + i as u64, self.task, arg, sink);
            job.shipped = self.shipped.clone();
            jobs.push(job);
            at = end;
        }
        jobs
    }

    /// Fails every undelivered call, in one message to the stream.
    fn fail(&mut self, error: &dyn Fn(&'static str) -> ErrorKind) {
        if let Some(tx) = self.tx.take() {
            let left = self.lens.len().saturating_sub(self.delivered);
            let id = self.first_id + self.delivered as u64;
            trace::chunk_finished(self.task, id, left, left, 0, Duration::ZERO);
            let items = (self.delivered..self.lens.len())
                .map(|i| {
                    (
                        self.first_index + i,
                        Err(error(self.task).into()),
                        JobMeta::default(),
                    )
                })
                .collect();
            tx.send(Delivery::Items(items));
        }
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        self.fail(&|task| ErrorKind::Terminated {
            task: task.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk's results from a worker that lies about their lengths: every item gets
    /// a result, the ones beyond the data an error, nothing panics.
    #[test]
    fn packed_results_beyond_their_data_are_errors_not_panics() {
        let packed = PackedResults {
            first_index: 10,
            lens: vec![2, 1, u32::MAX, 1],
            data: vec![1, 2, 3],
            others: vec![(1, Ok(vec![9])), (7, Ok(vec![8]))],
            meta: JobMeta::default(),
            each: Vec::new(),
        };
        let mut seen = Vec::new();
        packed.for_each(|i, r, _| {
            let r = r.map(<[u8]>::to_vec);
            seen.push((i, r.map_err(|e| supervisor_worker::error_chain(&e))));
        });
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[0], (10, Ok(vec![1, 2])));
        assert_eq!(seen[1], (11, Ok(vec![9])));
        assert!(seen[2].1.as_ref().is_err_and(|e| e.contains("beyond")));
        assert!(seen[3].1.as_ref().is_err_and(|e| e.contains("beyond")));
    }
}
