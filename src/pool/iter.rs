//! Lazy result iterators (`imap`, `imap_unordered`, `imap_reports`) and `map_async`.
//!
//! The input iterator is read on the caller's thread, a little ahead of the results
//! consumed: at most `read_ahead` inputs are submitted but not yet yielded, so `imap`
//! over an endless iterator keeps memory bounded. Results arriving early (ordered
//! mode) wait in a buffer that the same bound limits.

use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;
use std::sync::{mpsc, Arc};

use serde::{de::DeserializeOwned, Serialize};
use supervisor_worker::codec;
use supervisor_worker::registry::RegistryError;

use super::job::{Delivered, Delivery, Job, JobMeta, JobResult, PackedResults, Sink, Unit};
use super::Shared;
use crate::error::{Error, ErrorKind};

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

/// Results with their [`Report`]s, in input order or as they finish.
pub struct Reports<R, I: Iterator> {
    shared: Arc<Shared>,
    task: &'static str,
    input: I,
    input_done: bool,
    chunksize: usize,
    read_ahead: usize,
    ordered: bool,
    /// The task could not be resolved: every input fails with this (read lazily, so an
    /// endless input stays bounded).
    task_error: Option<RegistryError>,
    stream: u64,
    tx: mpsc::Sender<Delivery>,
    rx: mpsc::Receiver<Delivery>,
    /// Received and not yet yielded (unordered) or buffered (ordered).
    pending: VecDeque<Delivered>,
    submitted: usize,
    yielded: usize,
    /// Ordered: results that came ahead of their turn, decoded on arrival (so what
    /// they hold, a handle or a spooled output, is taken from the worker at once).
    buffer: BTreeMap<usize, (Result<R, Error>, JobMeta)>,
    /// Whether reading the next input would return at once (see
    /// [`Reports::input_ready`]).
    input_ready: Option<Box<dyn FnMut() -> bool>>,
    result: PhantomData<fn() -> R>,
}

/// How often a wait for results also looks for input, when the input can say whether
/// it has any (see [`Reports::input_ready`]).
const INPUT_LOOK: std::time::Duration = std::time::Duration::from_millis(2);

impl<R, I> Reports<R, I>
where
    I: Iterator,
    I::Item: Serialize,
{
    pub(crate) fn new(
        shared: Arc<Shared>,
        task: Result<&'static str, RegistryError>,
        input: I,
        chunksize: usize,
        read_ahead: usize,
        ordered: bool,
    ) -> Reports<R, I> {
        let (tx, rx) = mpsc::channel();
        let stream = shared.next_id();
        let mut it = Reports {
            task_error: None,
            stream,
            pending: VecDeque::new(),
            shared,
            task: task.as_ref().map_or("?", |t| t),
            input,
            input_done: false,
            chunksize: chunksize.clamp(1, supervisor_worker::progress::MAX_CALLS as usize),
            read_ahead: read_ahead.max(chunksize.max(1)),
            ordered,
            tx,
            rx,
            submitted: 0,
            yielded: 0,
            buffer: BTreeMap::new(),
            input_ready: None,
            result: PhantomData,
        };
        if let Err(e) = task {
            it.task_error = Some(e);
        }
        it
    }

    /// The next delivered result. Every submitted job delivers exactly one result (see
    /// `job.rs`), so this never waits for nothing.
    fn receive(&mut self) -> Option<Delivered> {
        while self.pending.is_empty() {
            // The input ended while waiting here (see below) with nothing due.
            if self.input_done && self.submitted == self.yielded + self.buffer.len() {
                return None;
            }
            if self.input_ready.is_none() || self.input_done {
                self.pending.extend(self.rx.recv().ok()?.into_items());
                break;
            }
            // Results are due, and input may come meanwhile: look for both.
            match self.rx.recv_timeout(INPUT_LOOK) {
                Ok(delivery) => self.pending.extend(delivery.into_items()),
                Err(mpsc::RecvTimeoutError::Timeout) => self.top_up(),
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
        self.pending.pop_front()
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

    /// Whether the next read of the input could wait.
    fn input_would_wait(&mut self) -> bool {
        self.input_ready.as_mut().is_some_and(|ready| !ready())
    }

    /// Reads and submits inputs until `read_ahead` are outstanding, once no more than
    /// half of that is: inputs go out in groups the dispatcher can merge, not one per
    /// result consumed (which gave every worker units of one call, a round trip each).
    fn top_up(&mut self) {
        if self.submitted - self.yielded > self.read_ahead / 2 {
            return;
        }
        let mut units = Vec::new();
        while !self.input_done && self.submitted - self.yielded < self.read_ahead {
            let mut jobs = Vec::with_capacity(self.chunksize);
            while jobs.len() < self.chunksize && self.submitted - self.yielded < self.read_ahead {
                if self.input_would_wait() {
                    // Out with what was read; wait for results rather than for input,
                    // unless no result is due.
                    if !jobs.is_empty() {
                        units.push(Unit::new(self.task, std::mem::take(&mut jobs)));
                    }
                    if !units.is_empty() {
                        self.shared.submit(std::mem::take(&mut units));
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
                    let _ = self.tx.send(Delivery::Items(vec![(
                        index,
                        Err(same_error(e)),
                        JobMeta::default(),
                    )]));
                    continue;
                }
                match codec::encode_value(&item) {
                    Ok(arg) => {
                        let sink = Sink::Stream {
                            stream: self.stream,
                            index,
                            tx: self.tx.clone(),
                        };
                        jobs.push(Job::new(self.shared.next_id(), self.task, arg, sink));
                    }
                    Err(source) => {
                        let err = ErrorKind::EncodeArgument {
                            task: self.task.to_string(),
                            source,
                        }
                        .into();
                        let _ = self.tx.send(Delivery::Items(vec![(
                            index,
                            Err(err),
                            JobMeta::default(),
                        )]));
                    }
                }
            }
            if !jobs.is_empty() {
                units.push(Unit::new(self.task, jobs));
            }
            // Out in groups as they are read, not all at the end: a large read-ahead
            // over a slow input must not hold back what was read already.
            if units.len() >= SUBMIT_EVERY {
                self.shared.submit(std::mem::take(&mut units));
            }
        }
        if !units.is_empty() {
            self.shared.submit(units);
        }
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
        self.top_up();
        let (index, result, meta) = if self.ordered {
            loop {
                if let Some((r, m)) = self.buffer.remove(&self.yielded) {
                    break (self.yielded, r, m);
                }
                if self.input_done && self.yielded == self.submitted {
                    return None;
                }
                let (index, r, m) = self.receive()?;
                let r = decode(self.task, r, m.pid);
                self.buffer.insert(index, (r, m));
            }
        } else {
            if self.input_done && self.yielded == self.submitted {
                return None;
            }
            let (index, r, m) = self.receive()?;
            (index, decode(self.task, r, m.pid), m)
        };
        self.yielded += 1;
        Some(Report {
            index,
            result,
            meta,
        })
    }
}

impl<R, I: Iterator> Drop for Reports<R, I> {
    /// Dropped before the end: the inputs submitted but not started are dropped (only
    /// the calls already running finish), so the pool is free for the next work.
    fn drop(&mut self) {
        if self.yielded < self.submitted {
            self.shared.forget_stream(self.stream);
        }
    }
}

impl<R, I: Iterator> Reports<R, I> {
    /// Whether `next` would return at once (a result is in, or the end is reached):
    /// lets a writer flush its output only when it is about to wait.
    pub fn ready(&mut self) -> bool {
        while let Ok(delivery) = self.rx.try_recv() {
            self.pending.extend(delivery.into_items());
        }
        if self.input_done && self.yielded == self.submitted {
            return true;
        }
        if self.ordered {
            self.buffer.contains_key(&self.yielded)
                || self.pending.iter().any(|(i, _, _)| *i == self.yielded)
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
pub struct Imap<R, I: Iterator>(pub(crate) Reports<R, I>);

impl<R, I> Iterator for Imap<R, I>
where
    R: DeserializeOwned,
    I: Iterator,
    I::Item: Serialize,
{
    type Item = Result<R, Error>;

    fn next(&mut self) -> Option<Result<R, Error>> {
        self.0.next().map(|report| report.result)
    }
}

/// All results of a `map_async`, in input order, once every task has finished.
pub struct MapHandle<R> {
    task: &'static str,
    len: usize,
    rx: mpsc::Receiver<Delivery>,
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
        rx: mpsc::Receiver<Delivery>,
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
                chunk.for_each(|_, r| out.push(r.and_then(|bytes| decode_bytes(task, bytes, pid))));
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
                Ok(delivery) => self.store(delivery),
                // The pool stopped before the rest ran.
                Err(_) => break,
            }
        }
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
        self.out
    }
}
