//! Jobs (one task call each), units (what one message to a worker carries) and sinks
//! (where a job's result goes).
//!
//! Every job delivers exactly one result: `complete` sends it, and a job dropped without
//! completing (the dispatcher stopped, even by a panic) sends an error from `Drop`. So
//! no caller waits forever.
//!
//! The waiting side of a handle is in `job/handle_state.rs`, a chunk's packed results
//! in `job/packed.rs`, units and chunks in `job/unit.rs`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::wake;

use crate::error::{Error, ErrorKind};
use crate::sync::shipped::Shipped;
use crate::trace;

mod handle_state;
mod packed;
mod unit;

pub(crate) use handle_state::HandleState;
pub(crate) use packed::{PackedResults, Part};
pub(crate) use unit::{Chunk, Unit};

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

impl Sink {
    /// Delivers `result`; `spare` is the finished job's argument buffer, which a handle's
    /// result is copied into when it fits (see [`in_caller_buffer`]).
    fn deliver(self, result: JobResult, meta: JobMeta, spare: Vec<u8>) {
        match self {
            Sink::Handle(state) => state.set(in_caller_buffer(result, spare), meta.pid),
            Sink::Stream { index, tx, .. } => {
                tx.send(Delivery::Items(vec![(index, result, meta)]));
            }
        }
    }
}

/// Most bytes of an argument's buffer a result copied into it may leave unused, past
/// the result's own size.
const MAX_SPARE_WASTE: usize = 4096;

/// `result`'s bytes in `spare` (the argument's buffer, made by the caller's thread) if
/// they fit. A reader thread delivers most results: without this, the caller's thread
/// freed a buffer the reader made, and the reader one the caller made, and freeing
/// another thread's memory is slow in glibc's allocator (it takes the arena's lock,
/// where the caller's own allocations contend: a sixth of an `apply_async` loop's
/// time). Now each frees what it made. Not into a buffer much bigger than the result,
/// though: a finished call's result waits for its `wait`, and its few bytes must not
/// keep a megabyte argument alive (200 finished calls of 1 MiB arguments and 8-byte
/// results, not waited yet, held 200 MiB).
fn in_caller_buffer(result: JobResult, mut spare: Vec<u8>) -> JobResult {
    match result {
        Ok(bytes)
            if bytes.len() <= spare.capacity()
                && spare.capacity() - bytes.len() <= MAX_SPARE_WASTE.max(bytes.len()) =>
        {
            spare.clear();
            spare.extend_from_slice(&bytes);
            Ok(spare)
        }
        other => other,
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
    /// Workers killed over the memory limit while this call waited at the front of
    /// their unit, unstarted (its argument alone may take that much).
    pub(crate) memory_bounces: u8,
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
            memory_bounces: 0,
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
            sink.deliver(result, meta, std::mem::take(&mut self.arg));
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
            sink.deliver(err, JobMeta::default(), Vec::new());
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
            Some(sink) => sink.deliver(result, meta, std::mem::take(&mut job.arg)),
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
