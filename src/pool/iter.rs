//! Lazy result iterators (`imap`, `imap_unordered`, `imap_reports`) and `map_async`.
//!
//! The input iterator is read on the caller's thread, a little ahead of the results
//! consumed: at most `read_ahead` inputs are in flight (queued or running) or done and
//! ready to be yielded, so `imap` over an endless iterator keeps memory bounded.
//! Results arriving ahead of their turn (ordered mode: an earlier input still runs)
//! are *held for order* and do not count against the read-ahead, so free workers go
//! on behind a slow task; at most `max_held` wait so, and `imap` keeps their bytes in
//! memory up to a budget, past it in a spill file (`held.rs`).

use std::collections::VecDeque;
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
use super::job::{Delivery, Job, JobMeta, JobResult, Sink, Unit};
use super::pack::Packer;
use super::reorder::Reorder;
use super::{wake, Shared};
use crate::error::{Error, ErrorKind};
use crate::sync::shipped;

mod map_handle;
mod reports;

pub use map_handle::MapHandle;
pub use reports::{Report, ReportStream, Reports};

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
