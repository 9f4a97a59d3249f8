//! Jobs (one task call each), units (what one message to a worker carries) and sinks
//! (where a job's result goes).
//!
//! Every job delivers exactly one result: `complete` sends it, and a job dropped without
//! completing (the dispatcher stopped, even by a panic) sends an error from `Drop`. So
//! no caller waits forever.

use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::error::Error;

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
    /// How long its last run took (a batch's time is shared evenly by its jobs).
    pub duration: Duration,
}

/// The waiting side of one `apply_async` / `submit`.
pub(crate) struct HandleState {
    inner: Mutex<HandleInner>,
    ready: Condvar,
}

struct HandleInner {
    result: Option<JobResult>,
    done: bool,
    watchers: Vec<(mpsc::Sender<usize>, usize)>,
}

impl HandleState {
    pub(crate) fn new() -> Arc<HandleState> {
        Arc::new(HandleState {
            inner: Mutex::new(HandleInner {
                result: None,
                done: false,
                watchers: Vec::new(),
            }),
            ready: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HandleInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, result: JobResult) {
        let mut inner = self.lock();
        if inner.done {
            return;
        }
        inner.result = Some(result);
        inner.done = true;
        let watchers = std::mem::take(&mut inner.watchers);
        drop(inner);
        self.ready.notify_all();
        for (tx, index) in watchers {
            let _ = tx.send(index);
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.lock().done
    }

    /// Waits until done or `deadline`; takes the result (once).
    pub(crate) fn take_until(&self, deadline: Option<Instant>) -> Option<Option<JobResult>> {
        let mut inner = self.lock();
        while !inner.done {
            inner = match deadline {
                None => self.ready.wait(inner).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    self.ready
                        .wait_timeout(inner, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
        Some(inner.result.take())
    }

    /// Sends `index` on `tx` once done (at once if already done).
    pub(crate) fn watch(&self, tx: mpsc::Sender<usize>, index: usize) {
        let mut inner = self.lock();
        if inner.done {
            drop(inner);
            let _ = tx.send(index);
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
        tx: mpsc::Sender<Vec<Delivered>>,
    },
}

/// A result on a stream: input position, result, how it ran.
pub(crate) type Delivered = (usize, JobResult, JobMeta);

impl Sink {
    fn deliver(self, result: JobResult, meta: JobMeta) {
        match self {
            Sink::Handle(state) => state.set(result),
            Sink::Stream { index, tx, .. } => {
                let _ = tx.send(vec![(index, result, meta)]);
            }
        }
    }
}

/// One task call.
pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) arg: Vec<u8>,
    /// Runs that ended with the worker dying or timing out.
    pub(crate) attempts: u32,
    sink: Option<Sink>,
    task: &'static str,
}

impl Job {
    pub(crate) fn new(id: u64, task: &'static str, arg: Vec<u8>, sink: Sink) -> Job {
        Job {
            id,
            arg,
            attempts: 0,
            sink: Some(sink),
            task,
        }
    }

    pub(crate) fn task(&self) -> &'static str {
        self.task
    }

    /// Delivers a result of a job that never ran; the job is finished.
    pub(crate) fn complete(self, result: JobResult) {
        let meta = JobMeta {
            attempts: self.attempts,
            ..JobMeta::default()
        };
        self.complete_with(result, meta);
    }

    /// Delivers the result and how the job ran; the job is finished.
    pub(crate) fn complete_with(mut self, result: JobResult, meta: JobMeta) {
        if let Some(sink) = self.sink.take() {
            sink.deliver(result, meta);
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            let err = Error::Terminated {
                task: self.task.to_string(),
            };
            sink.deliver(Err(err), JobMeta::default());
        }
    }
}

/// Completes the jobs of one batch, sending the results bound for the same stream as
/// one message (a map of a million items is not a million channel sends).
#[derive(Default)]
pub(crate) struct Deliveries {
    stream: Option<(u64, mpsc::Sender<Vec<Delivered>>)>,
    items: Vec<Delivered>,
}

impl Deliveries {
    /// Completes `job`, holding stream results back until [`Deliveries::flush`].
    pub(crate) fn complete(&mut self, mut job: Job, result: JobResult, meta: JobMeta) {
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
            let _ = tx.send(std::mem::take(&mut self.items));
        }
    }
}

impl Drop for Deliveries {
    fn drop(&mut self) {
        self.flush();
    }
}

/// What one message to a worker carries: jobs of the same task, run in order.
pub(crate) struct Unit {
    pub(crate) task: &'static str,
    pub(crate) jobs: Vec<Job>,
    /// Split out of a batch whose worker died: runs alone, never merged again, so a
    /// job that kills its worker fails alone.
    pub(crate) solo: bool,
}

impl Unit {
    pub(crate) fn new(task: &'static str, jobs: Vec<Job>) -> Unit {
        Unit {
            task,
            jobs,
            solo: false,
        }
    }
}
