//! Handles to single submitted tasks, and waiting on several at once.

use std::marker::PhantomData;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use supervisor_worker::codec;

use super::job::{HandleState, JobResult};
use super::Shared;
use crate::error::{Error, ErrorKind};

/// A task submitted with `apply_async` / `submit`: Python's `AsyncResult`, Rust-typed.
pub struct TaskHandle<R> {
    pub(crate) state: Arc<HandleState>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) id: u64,
    pub(crate) task: &'static str,
    pub(crate) result: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> TaskHandle<R> {
    /// Waits for the result: the value, or the typed error of the task (panicked,
    /// crashed, timed out, cancelled, pool terminated or broken). The result can be
    /// taken once; later calls return [`ErrorKind::ResultTaken`].
    pub fn wait(&self) -> Result<R, Error> {
        match self.state.take_until(None) {
            Some(result) => self.decode(result),
            None => unreachable!("a wait without a deadline always completes"),
        }
    }

    /// Waits at most `timeout`; `None` if the task has not finished by then (it goes on).
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<R, Error>> {
        self.state
            .take_until(Instant::now().checked_add(timeout))
            .map(|r| self.decode(r))
    }

    fn decode(&self, result: Option<(JobResult, u32)>) -> Result<R, Error> {
        match result {
            Some((Ok(bytes), pid)) => codec::decode(&bytes).map_err(|source| {
                ErrorKind::DecodeResult {
                    task: self.task.to_string(),
                    pid,
                    source,
                }
                .into()
            }),
            Some((Err(e), _)) => Err(e),
            None => Err(ErrorKind::ResultTaken {
                task: self.task.to_string(),
            }
            .into()),
        }
    }
}

impl<R> TaskHandle<R> {
    /// Whether the task has finished (a result is waiting).
    pub fn is_ready(&self) -> bool {
        self.state.is_done()
    }

    /// Cancels the task if it has not started; true if it was cancelled (its result is
    /// then [`ErrorKind::Cancelled`]).
    pub fn cancel(&self) -> bool {
        let (tx, rx) = mpsc::sync_channel(1);
        self.shared
            .hub
            .post(super::event::Event::Cancel(self.id, tx));
        rx.recv().unwrap_or(false)
    }

    /// The job id (as shown in [`crate::WorkerState::Busy`]).
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// Yields the handles as their tasks finish, in completion order
/// (`concurrent.futures.as_completed`).
pub fn as_completed<R>(handles: impl IntoIterator<Item = TaskHandle<R>>) -> AsCompleted<R> {
    let (tx, rx) = mpsc::channel();
    let handles: Vec<Option<TaskHandle<R>>> = handles.into_iter().map(Some).collect();
    for (i, h) in handles.iter().enumerate() {
        if let Some(h) = h {
            h.state.watch(tx.clone(), i);
        }
    }
    AsCompleted {
        left: handles.len(),
        handles,
        rx,
    }
}

/// Iterator returned by [`as_completed`].
pub struct AsCompleted<R> {
    handles: Vec<Option<TaskHandle<R>>>,
    rx: mpsc::Receiver<usize>,
    left: usize,
}

impl<R> Iterator for AsCompleted<R> {
    type Item = TaskHandle<R>;

    fn next(&mut self) -> Option<TaskHandle<R>> {
        if self.left == 0 {
            return None;
        }
        // Every handle's job delivers exactly one result (see `job.rs`), so this recv
        // always returns.
        let index = self.rx.recv().ok()?;
        self.left -= 1;
        self.handles.get_mut(index)?.take()
    }
}
