//! Lazy result iterators (`imap`, `imap_unordered`, `imap_reports`) and `map_async`.
//!
//! The input iterator is read on the caller's thread, a little ahead of the results
//! consumed: at most `read_ahead` inputs are in flight (queued or running) or done and
//! ready to be yielded, so `imap` over an endless iterator keeps memory bounded.
//! Results arriving ahead of their turn (ordered mode: an earlier input still runs)
//! are *held for order* and do not count against the read-ahead, so free workers go
//! on behind a slow task; at most `max_held` wait so, and `imap` keeps their bytes in
//! memory up to a budget, past it in a spill file (`held.rs`).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};

use futures_core::Stream;
use serde::{de::DeserializeOwned, Serialize};
use supervisor_worker::codec;
use supervisor_worker::registry::RegistryError;

use super::arrived::{self, Arrival, Payload};
use super::held::{Held, Holder};
use super::job::{Delivery, Job, JobMeta, JobResult, PackedResults, Sink, Unit};
use super::pack::Packer;
use super::reorder::Reorder;
use super::{wake, Shared};
use crate::error::{Error, ErrorKind};
use crate::sync::shipped;

/// One finished input of [`crate::Pool::imap_reports`]: its position, its result, and
/// where and how it ran.
#[derive(Debug)]
pub struct Report<R> {
    /// Position of the input (0-based).
    pub index: usize,
    /// The task's value or its typed error.
    pub result: Result<R, Error>,
    /// Worker pid, attempts, start time, duration.
    pub meta: JobMeta,
}

/// The machinery of every lazy result iterator: reads the input a little ahead,
/// submits it, and hands out the results (blocking, or as a task polling).
pub(crate) struct Feed<R, I: Iterator> {
    shared: Arc<Shared>,
    task: &'static str,
    input: I,
    input_done: bool,
    chunksize: usize,
    read_ahead: usize,
    /// Most results held for order that do not count against `read_ahead`.
    max_held: usize,
    ordered: bool,
    /// Decode each result as it arrives ([`Reports`], for its callbacks), rather than
    /// when its turn comes (`imap`, which holds waiting results encoded).
    decode_on_arrival: bool,
    /// The task could not be resolved: every input fails with this (read lazily, so an
    /// endless input stays bounded).
    task_error: Option<RegistryError>,
    stream: u64,
    tx: wake::Sender<Delivery>,
    rx: wake::Receiver<Delivery>,
    /// Received and not yet yielded (unordered) or buffered (ordered).
    pending: VecDeque<Arrival>,
    submitted: usize,
    yielded: usize,
    /// Ordered: results that came ahead of their turn.
    buffer: Reorder<Entry<R>>,
    /// Where the bytes of held results wait.
    holder: Holder,
    /// Held results that count against the read-ahead all the same (they hold a
    /// descriptor, or memory past the budget; see `held.rs`).
    pinned: usize,
    /// `imap_reports`: the inputs go out packed in timed chunks (see `pack.rs`).
    packer: Option<Packer>,
    result: PhantomData<fn() -> R>,
}

/// A result in the reorder buffer.
struct Entry<R> {
    held: Held<R>,
    meta: JobMeta,
    /// Counted in [`Feed::pinned`].
    pinned: bool,
}

/// The limits of one lazy iterator (see [`crate::PoolBuilder`]).
pub(crate) struct Bounds {
    pub(crate) read_ahead: usize,
    pub(crate) max_held: usize,
    pub(crate) hold_in_memory: usize,
}

/// Whether reading the next input would return at once (see [`Reports::input_ready`]).
/// Kept apart from [`Feed`] so that what never has one (`imap`) stays `Send`.
type Ready = Option<Box<dyn FnMut() -> bool>>;

/// Called before the iterator waits for a result that is not in (see
/// [`Reports::on_wait`]).
type Waiting = Box<dyn FnMut()>;

/// Told of each result as it arrives, before it waits for its turn (see
/// [`Reports::on_arrival`]).
type Arrived<R> = Box<dyn FnMut(usize, &Result<R, Error>, &JobMeta)>;

/// Given each result that waits for its turn (see [`Reports::on_hold`]).
type OnHold<R> = Box<dyn FnMut(usize, &mut Result<R, Error>)>;

/// How often a wait for results also looks for input, when the input can say whether
/// it has any (see [`Reports::input_ready`]).
const INPUT_LOOK: std::time::Duration = std::time::Duration::from_millis(2);

impl<R, I> Feed<R, I>
where
    I: Iterator,
    I::Item: Serialize,
{
    pub(crate) fn new(
        shared: Arc<Shared>,
        task: Result<&'static str, RegistryError>,
        input: I,
        chunksize: usize,
        bounds: Bounds,
        ordered: bool,
    ) -> Feed<R, I> {
        let (tx, rx) = wake::channel();
        let stream = shared.next_id();
        let mut it = Feed {
            task_error: None,
            stream,
            pending: VecDeque::new(),
            shared,
            task: task.as_ref().map_or("?", |t| t),
            input,
            input_done: false,
            chunksize: chunksize.clamp(1, supervisor_worker::progress::MAX_CALLS as usize),
            read_ahead: bounds.read_ahead.max(chunksize.max(1)),
            max_held: bounds.max_held,
            ordered,
            decode_on_arrival: false,
            tx,
            rx,
            submitted: 0,
            yielded: 0,
            buffer: Reorder::new(),
            holder: Holder::new(bounds.hold_in_memory),
            pinned: 0,
            packer: None,
            result: PhantomData,
        };
        if let Err(e) = task {
            it.task_error = Some(e);
        }
        it
    }

    /// The next delivered result. Every submitted job delivers exactly one result (see
    /// `job.rs`), so this never waits for nothing.
    fn receive(&mut self, ready: &mut Ready, waiting: Option<&mut Waiting>) -> Option<Arrival> {
        let mut waiting = waiting;
        while self.pending.is_empty() {
            // The input ended while waiting here (see below) with nothing due.
            if self.input_done && self.submitted == self.yielded + self.buffer.len() {
                return None;
            }
            if let Some(waiting) = waiting.as_deref_mut() {
                match self.rx.try_recv() {
                    Ok(delivery) => {
                        arrived::receive(delivery, &mut self.pending);
                        break;
                    }
                    // Nothing is in: whatever waits for a pause goes now.
                    Err(_) => waiting(),
                }
            }
            if ready.is_none() || self.input_done {
                arrived::receive(self.rx.recv()?, &mut self.pending);
                break;
            }
            // Results are due, and input may come meanwhile: look for both.
            match self.rx.recv_timeout(INPUT_LOOK) {
                Ok(delivery) => arrived::receive(delivery, &mut self.pending),
                Err(mpsc::RecvTimeoutError::Timeout) => self.top_up(ready),
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
        self.pending.pop_front()
    }

    /// [`Feed::receive`] for a task: `Pending` (the task woken by the next delivery)
    /// instead of blocking. The input is looked at only when polled.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<Option<Arrival>> {
        while self.pending.is_empty() {
            if self.input_done && self.submitted == self.yielded + self.buffer.len() {
                return Poll::Ready(None);
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(delivery)) => arrived::receive(delivery, &mut self.pending),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(self.pending.pop_front())
    }

    /// The next result: blocking for it without `cx`, else `Pending` while none is in.
    pub(crate) fn next_report(
        &mut self,
        ready: &mut Ready,
        mut waiting: Option<&mut Waiting>,
        mut arrived: Option<&mut Arrived<R>>,
        mut on_hold: Option<&mut OnHold<R>>,
        mut cx: Option<&mut Context<'_>>,
    ) -> Poll<Option<Report<R>>>
    where
        R: DeserializeOwned,
    {
        self.top_up(ready);
        let (index, result, meta) = if self.ordered {
            loop {
                if let Some(entry) = self.buffer.take_next() {
                    let meta = entry.meta;
                    break (self.yielded, self.unhold(entry), meta);
                }
                if self.input_done && self.yielded == self.submitted {
                    return Poll::Ready(None);
                }
                let received = match cx.as_deref_mut() {
                    None => self.receive(ready, waiting.as_deref_mut()),
                    Some(cx) => std::task::ready!(self.poll_receive(cx)),
                };
                let Some((index, r, m)) = received else {
                    return Poll::Ready(None);
                };
                self.hold(index, r, m, arrived.as_deref_mut(), on_hold.as_deref_mut());
                // A result that waits for an earlier one frees its place in the
                // read-ahead: the next inputs go out while the earlier one runs
                // (looked at once the results received are all in place).
                if self.pending.is_empty() {
                    self.top_up(ready);
                }
            }
        } else {
            if self.input_done && self.yielded == self.submitted {
                return Poll::Ready(None);
            }
            let received = match cx {
                None => self.receive(ready, waiting),
                Some(cx) => std::task::ready!(self.poll_receive(cx)),
            };
            match received {
                Some((index, r, m)) => {
                    let r = r.and_then(|bytes| decode_bytes(self.task, bytes.as_slice(), m.pid));
                    if let Some(arrived) = arrived {
                        arrived(index, &r, &m);
                    }
                    (index, r, m)
                }
                None => return Poll::Ready(None),
            }
        };
        self.yielded += 1;
        Poll::Ready(Some(Report {
            index,
            result,
            meta,
        }))
    }

    /// Puts a result that arrived in the reorder buffer: decoded now (reports, errors,
    /// values that refer to spooled output) or kept encoded for its turn.
    fn hold(
        &mut self,
        index: usize,
        result: Result<Payload, Error>,
        meta: JobMeta,
        arrived: Option<&mut Arrived<R>>,
        on_hold: Option<&mut OnHold<R>>,
    ) where
        R: DeserializeOwned,
    {
        let waits = self.buffer.would_wait(index);
        let (held, pinned) = match result {
            Ok(bytes) if self.decode_on_arrival => {
                let mut r = decode_bytes(self.task, bytes.as_slice(), meta.pid);
                // Without an `on_hold` to move it, a waiting value that took a spool
                // file holds its descriptor: it counts against the read-ahead.
                let pinned =
                    waits && on_hold.is_none() && crate::command::refers_to_spool(bytes.as_slice());
                drop(bytes);
                if let Some(arrived) = arrived {
                    arrived(index, &r, &meta);
                }
                if let Some(on_hold) = on_hold.filter(|_| waits) {
                    on_hold(index, &mut r);
                }
                (Held::Decoded(r), pinned)
            }
            Ok(bytes) if crate::command::refers_to_spool(bytes.as_slice()) => {
                // It takes its spool file now, and holds a descriptor while it waits.
                let r = decode_bytes(self.task, bytes.as_slice(), meta.pid);
                (Held::Decoded(r), waits)
            }
            Ok(bytes) => self.holder.keep(bytes.into_vec(), waits),
            Err(e) => {
                let mut r = Err(e);
                if let Some(arrived) = arrived {
                    arrived(index, &r, &meta);
                }
                if let Some(on_hold) = on_hold.filter(|_| waits) {
                    on_hold(index, &mut r);
                }
                (Held::Decoded(r), false)
            }
        };
        self.pinned += usize::from(pinned);
        let entry = Entry { held, meta, pinned };
        if let Err(entry) = self.buffer.insert(index, entry) {
            // Every job delivers once (job.rs): a second result for a position would
            // be a bug of ours; the first one stands.
            drop(self.unhold(entry));
            debug_assert!(false, "a second result for input {index}");
        }
    }

    /// The value of a result taken from the reorder buffer.
    fn unhold(&mut self, entry: Entry<R>) -> Result<R, Error>
    where
        R: DeserializeOwned,
    {
        self.pinned -= usize::from(entry.pinned);
        let pid = entry.meta.pid;
        match entry.held {
            Held::Decoded(r) => r,
            Held::Encoded(bytes) => {
                self.holder.released(bytes.len());
                decode_bytes(self.task, &bytes, pid)
            }
            Held::Spilled { at, len } => match self.holder.load(at, len) {
                Ok(bytes) => decode_bytes(self.task, &bytes, pid),
                Err(source) => Err(ErrorKind::HeldResult {
                    task: self.task.to_string(),
                    pid,
                    source,
                }
                .into()),
            },
        }
    }

    /// Inputs that count against the read-ahead: submitted and not yet yielded, but
    /// for the results held for order (up to `max_held` of them; not those pinned).
    fn outstanding(&self) -> usize {
        let held = self
            .buffer
            .waiting()
            .saturating_sub(self.pinned)
            .min(self.max_held);
        self.submitted - self.yielded - held
    }

    /// Whether the next read of the input could wait.
    fn input_would_wait(ready: &mut Ready) -> bool {
        ready.as_mut().is_some_and(|ready| !ready())
    }

    /// Reads and submits inputs until `read_ahead` are outstanding, once no more than
    /// half of that is: inputs go out in groups the dispatcher can merge, not one per
    /// result consumed (which gave every worker units of one call, a round trip each).
    fn top_up(&mut self, ready: &mut Ready) {
        if self.outstanding() > self.read_ahead / 2 {
            return;
        }
        let mut units = Vec::new();
        // Calls in `units`.
        let mut calls = 0usize;
        let per_unit = if self.packer.is_some() {
            super::pack::PACK_MAX
        } else {
            self.chunksize
        };
        while !self.input_done && self.outstanding() < self.read_ahead {
            let mut jobs = Vec::with_capacity(self.chunksize);
            while jobs.len() + self.packer.as_ref().map_or(0, Packer::len) < per_unit
                && self.outstanding() < self.read_ahead
            {
                if Self::input_would_wait(ready) {
                    // Out with what was read; wait for results rather than for input,
                    // unless no result is due.
                    if !jobs.is_empty() {
                        units.push(Unit::new(self.task, std::mem::take(&mut jobs)));
                    }
                    units.extend(self.packer.as_mut().and_then(Packer::take));
                    if !units.is_empty() {
                        self.shared.submit(std::mem::take(&mut units));
                        calls = 0;
                    }
                    if self.submitted > self.yielded {
                        return;
                    }
                }
                let Some(item) = self.input.next() else {
                    self.input_done = true;
                    break;
                };
                let index = self.submitted;
                self.submitted += 1;
                if let Some(e) = &self.task_error {
                    self.tx.send(Delivery::Items(vec![(
                        index,
                        Err(same_error(e)),
                        JobMeta::default(),
                    )]));
                    continue;
                }
                let (encoded, shipped) = match self.packer.as_mut() {
                    Some(packer) => match packer.push(&self.shared, index, &item) {
                        Ok(()) if packer.full() => break,
                        Ok(()) => continue,
                        Err(source) => {
                            // The chunk ends before the input that failed: its calls
                            // are consecutive inputs.
                            units.extend(packer.take());
                            (Err(source), Default::default())
                        }
                    },
                    None => shipped::collecting(|| codec::encode_value(&item)),
                };
                match encoded {
                    Ok(arg) => {
                        let sink = Sink::Stream {
                            stream: self.stream,
                            index,
                            tx: self.tx.clone(),
                        };
                        let mut job = Job::new(self.shared.next_id(), self.task, arg, sink);
                        job.shipped = shipped;
                        jobs.push(job);
                    }
                    Err(source) => {
                        let err = ErrorKind::EncodeArgument {
                            task: self.task.to_string(),
                            source,
                        }
                        .into();
                        self.tx
                            .send(Delivery::Items(vec![(index, Err(err), JobMeta::default())]));
                    }
                }
            }
            if !jobs.is_empty() {
                calls += jobs.len();
                units.push(Unit::new(self.task, jobs));
            }
            if let Some(unit) = self.packer.as_mut().and_then(Packer::take) {
                calls += unit.len();
                units.push(unit);
            }
            // Out in groups as they are read, not all at the end: a large read-ahead
            // over a slow input must not hold back what was read already.
            if calls >= SUBMIT_EVERY {
                self.shared.submit(std::mem::take(&mut units));
                calls = 0;
            }
        }
        if !units.is_empty() {
            self.shared.submit(units);
        }
    }
}

impl<R, I: Iterator> Drop for Feed<R, I> {
    /// Dropped before the end: the inputs submitted but not started are dropped (only
    /// the calls already running finish), so the pool is free for the next work.
    fn drop(&mut self) {
        if self.yielded < self.submitted {
            self.shared.forget_stream(self.stream);
        }
    }
}

impl<R, I: Iterator> Feed<R, I> {
    /// Whether `next` would return at once (a result is in, or the end is reached):
    /// lets a writer flush its output only when it is about to wait.
    pub(crate) fn ready(&mut self) -> bool {
        while let Ok(delivery) = self.rx.try_recv() {
            arrived::receive(delivery, &mut self.pending);
        }
        if self.input_done && self.yielded == self.submitted {
            return true;
        }
        if self.ordered {
            self.buffer.next_is_in() || self.pending.iter().any(|(i, _, _)| *i == self.yielded)
        } else {
            !self.pending.is_empty()
        }
    }
}

/// Results with their [`Report`]s, in input order or as they finish.
pub struct Reports<R, I: Iterator> {
    feed: Feed<R, I>,
    input_ready: Ready,
    waiting: Option<Waiting>,
    arrived: Option<Arrived<R>>,
    on_hold: Option<OnHold<R>>,
}

impl<R, I: Iterator> Reports<R, I> {
    pub(crate) fn new(mut feed: Feed<R, I>) -> Reports<R, I> {
        feed.decode_on_arrival = true;
        if feed.task_error.is_none() && feed.chunksize == 1 {
            feed.packer = Some(Packer::new(feed.task, feed.stream, feed.tx.clone()));
        }
        Reports {
            feed,
            input_ready: None,
            waiting: None,
            arrived: None,
            on_hold: None,
        }
    }

    /// Tells the iterator whether reading the next input would return at once (a line
    /// is buffered or the descriptor is readable). For a slow input (a pipe fed now and
    /// then, `tail -f`): what was read is submitted before a read that would wait, and
    /// while results are due the iterator waits for them (looking for input every
    /// 2 ms) instead of for the input. Without it, inputs are read in groups of
    /// `read_ahead`, which suits inputs that are all there.
    pub fn input_ready(mut self, ready: impl FnMut() -> bool + 'static) -> Self {
        self.input_ready = Some(Box::new(ready));
        self
    }

    /// Calls `waiting` each time the iterator is about to wait for a result that is
    /// not in (blocking; a [`ReportStream`] does not call it): a caller that buffers
    /// what [`Reports::on_arrival`] writes can flush it then, once per burst of results
    /// rather than once per result, and nothing stays buffered while the run waits.
    pub fn on_wait(mut self, waiting: impl FnMut() + 'static) -> Self {
        self.waiting = Some(Box::new(waiting));
        self
    }

    /// Calls `arrived` with each result (its input's index, the result, its record) as
    /// soon as it is in, before it waits for its turn in input order: a caller can act
    /// on a failure when it happens (stop the run, say) or log each end as it comes,
    /// rather than when the results before it have come.
    pub fn on_arrival(
        mut self,
        arrived: impl FnMut(usize, &Result<R, Error>, &JobMeta) + 'static,
    ) -> Self {
        self.arrived = Some(Box::new(arrived));
        self
    }

    /// Calls `hold` with each result (its input's index and the result) that must wait
    /// for its turn because an earlier input is still running, after
    /// [`Reports::on_arrival`]'s call and before it waits. Results are decoded as they
    /// arrive, so what they hold is in memory (or in descriptors) while they wait, up to
    /// [`crate::PoolBuilder::max_held`] of them behind a slow task: the caller may move
    /// it elsewhere here (the CLI moves a command's output into one spill file past a
    /// budget, see [`crate::Captured::spill_into`]). Without it, a waiting value that
    /// holds spooled command output (a descriptor) counts against the read-ahead, as a
    /// task in flight does, so descriptors stay bounded.
    pub fn on_hold(mut self, hold: impl FnMut(usize, &mut Result<R, Error>) + 'static) -> Self {
        self.on_hold = Some(Box::new(hold));
        self
    }

    /// The same results as a [`Stream`], for async code (see [`ReportStream`]).
    pub fn into_stream(self) -> ReportStream<R, I> {
        ReportStream(Box::new(self))
    }

    /// Whether `next` would return at once (a result is in, or the end is reached):
    /// lets a writer flush its output only when it is about to wait.
    pub fn ready(&mut self) -> bool {
        self.feed.ready()
    }
}

impl<R, I> Iterator for Reports<R, I>
where
    R: DeserializeOwned,
    I: Iterator,
    I::Item: Serialize,
{
    type Item = Report<R>;

    fn next(&mut self) -> Option<Report<R>> {
        match self.feed.next_report(
            &mut self.input_ready,
            self.waiting.as_mut(),
            self.arrived.as_mut(),
            self.on_hold.as_mut(),
            None,
        ) {
            Poll::Ready(report) => report,
            Poll::Pending => unreachable!("a blocking receive is always ready"),
        }
    }
}

/// Units submitted together while reading ahead (enough for the dispatcher to merge
/// tiny calls into messages of this many).
const SUBMIT_EVERY: usize = 256;

/// The error of a task that could not be resolved, once per input.
pub(crate) fn same_error(e: &RegistryError) -> Error {
    ErrorKind::Registry(e.clone()).into()
}

fn decode<R: DeserializeOwned>(task: &str, result: JobResult, pid: u32) -> Result<R, Error> {
    result.and_then(|bytes| decode_bytes(task, &bytes, pid))
}

/// Decodes a value that worker `pid` sent.
fn decode_bytes<R: DeserializeOwned>(task: &str, bytes: &[u8], pid: u32) -> Result<R, Error> {
    codec::decode(bytes).map_err(|source| {
        ErrorKind::DecodeResult {
            task: task.to_string(),
            pid,
            source,
        }
        .into()
    })
}

/// [`Reports`] as a [`Stream`]: the same results in the same order, and while none is
/// in, `poll_next` returns `Pending` and the task is woken by the thread that receives
/// the next one. No executor thread is blocked waiting for a worker; the input
/// iterator, though, is read inside `poll_next` (at most `read_ahead` inputs ahead of
/// the results taken), so it should not block; with [`Reports::input_ready`], input is
/// looked at when the stream is polled, not every 2 ms. Dropped before the end, it
/// drops the inputs that have not started, as the iterator does. Not `Send` (the
/// `input_ready` closure need not be); [`ImapStream`] is.
pub struct ReportStream<R, I: Iterator>(Box<Reports<R, I>>);

impl<R, I> Stream for ReportStream<R, I>
where
    R: DeserializeOwned,
    I: Iterator,
    I::Item: Serialize,
{
    type Item = Report<R>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Report<R>>> {
        let reports = &mut *self.get_mut().0;
        reports.feed.next_report(
            &mut reports.input_ready,
            None,
            reports.arrived.as_mut(),
            reports.on_hold.as_mut(),
            Some(cx),
        )
    }
}

/// Results of `imap` (input order) or `imap_unordered` (completion order).
pub struct Imap<R, I: Iterator>(pub(crate) Feed<R, I>);

impl<R, I: Iterator> Imap<R, I> {
    /// The same results, in the same order, as a [`Stream`] for async code: see
    /// [`ReportStream`] for what blocks and what does not. It is `Send` when the input
    /// is, so a spawned task can own it.
    pub fn into_stream(self) -> ImapStream<R, I> {
        ImapStream(Box::new(self.0))
    }
}

/// [`Imap`] as a [`Stream`] (see [`Imap::into_stream`]).
pub struct ImapStream<R, I: Iterator>(Box<Feed<R, I>>);

impl<R, I> Stream for ImapStream<R, I>
where
    R: DeserializeOwned,
    I: Iterator,
    I::Item: Serialize,
{
    type Item = Result<R, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<R, Error>>> {
        self.get_mut()
            .0
            .next_report(&mut None, None, None, None, Some(cx))
            .map(|report| report.map(|r| r.result))
    }
}

impl<R, I> Iterator for Imap<R, I>
where
    R: DeserializeOwned,
    I: Iterator,
    I::Item: Serialize,
{
    type Item = Result<R, Error>;

    fn next(&mut self) -> Option<Result<R, Error>> {
        match self.0.next_report(&mut None, None, None, None, None) {
            Poll::Ready(report) => report.map(|r| r.result),
            Poll::Pending => unreachable!("a blocking receive is always ready"),
        }
    }
}

/// All results of a `map_async`, in input order, once every task has finished.
///
/// Also a [`Future`] of the same results, for async code: `pool.map_async(f, xs).await`.
pub struct MapHandle<R> {
    task: &'static str,
    len: usize,
    rx: wake::Receiver<Delivery>,
    /// Results decoded so far, in input order (each decoded as soon as everything
    /// before it is in, so decoding overlaps the work still running).
    out: Vec<Result<R, Error>>,
    /// Arrived ahead of their turn, still encoded, by input position.
    packed: BTreeMap<usize, PackedResults>,
    items: BTreeMap<usize, (JobResult, u32)>,
    received: usize,
}

impl<R: DeserializeOwned> MapHandle<R> {
    pub(crate) fn new(
        task: &'static str,
        len: usize,
        rx: wake::Receiver<Delivery>,
    ) -> MapHandle<R> {
        MapHandle {
            task,
            len,
            rx,
            out: Vec::new(),
            packed: BTreeMap::new(),
            items: BTreeMap::new(),
            received: 0,
        }
    }

    /// Whether every task has finished.
    pub fn is_ready(&mut self) -> bool {
        while let Ok(delivery) = self.rx.try_recv() {
            self.store(delivery);
        }
        self.received >= self.len
    }

    fn store(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Items(items) => {
                self.received += items.len();
                for (index, result, meta) in items {
                    if index >= self.out.len() {
                        self.items.insert(index, (result, meta.pid));
                    }
                }
            }
            Delivery::Packed(packed) => {
                self.received += packed.lens.len();
                if packed.first_index >= self.out.len() {
                    self.packed.insert(packed.first_index, packed);
                }
            }
        }
        self.advance();
    }

    /// Decodes whatever is next in input order.
    fn advance(&mut self) {
        let task = self.task;
        if self.out.capacity() == 0 {
            self.out.reserve_exact(self.len);
        }
        loop {
            let i = self.out.len();
            if let Some(chunk) = self.packed.remove(&i) {
                let out = &mut self.out;
                let pid = chunk.meta.pid;
                chunk.for_each(|_, r, _| {
                    out.push(r.and_then(|bytes| decode_bytes(task, bytes, pid)))
                });
            } else if let Some((result, pid)) = self.items.remove(&i) {
                self.out.push(decode(task, result, pid));
            } else {
                break;
            }
        }
    }

    /// Waits for every task; one result per input, in input order.
    pub fn wait(mut self) -> Vec<Result<R, Error>> {
        while self.received < self.len {
            match self.rx.recv() {
                Some(delivery) => self.store(delivery),
                // The pool stopped before the rest ran.
                None => break,
            }
        }
        self.finish()
    }

    /// Every result, once all have arrived (or nothing more will).
    fn finish(&mut self) -> Vec<Result<R, Error>> {
        while self.out.len() < self.len {
            self.advance();
            if self.out.len() < self.len {
                // Nothing will come for this position.
                self.out.push(Err(ErrorKind::Terminated {
                    task: self.task.to_string(),
                }
                .into()));
            }
        }
        self.out.truncate(self.len);
        std::mem::take(&mut self.out)
    }
}

// Nothing in it is pinned: results are moved in and out freely.
impl<R> Unpin for MapHandle<R> {}

impl<R: DeserializeOwned> Future for MapHandle<R> {
    type Output = Vec<Result<R, Error>>;

    /// Ready with what [`MapHandle::wait`] would return; never blocks (results are
    /// decoded as they arrive, on the polling thread).
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<Result<R, Error>>> {
        let this = self.get_mut();
        while this.received < this.len {
            match std::task::ready!(this.rx.poll_recv(cx)) {
                Some(delivery) => this.store(delivery),
                None => break,
            }
        }
        Poll::Ready(this.finish())
    }
}
