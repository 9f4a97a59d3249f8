//! Units (what one message to a worker carries: jobs of one task, or a chunk of a
//! `map`) and chunks.

use std::sync::Arc;
use std::time::Duration;

use super::super::wake;
use super::{Delivery, HandleState, Job, JobMeta, PackedResults, Sink};

use crate::error::ErrorKind;
use crate::sync::shipped::Shipped;
use crate::trace;

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
