//! Handles to single submitted tasks, and waiting on several at once, from a thread
//! or from async code.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::Stream;
use serde::de::DeserializeOwned;
use supervisor_worker::codec;

use super::job::{HandleState, JobResult};
use super::{wake, Shared};
use crate::error::{Error, ErrorKind};

/// A task submitted with `apply_async` / `submit`: Python's `AsyncResult`, Rust-typed.
///
/// Wait for it from a thread ([`TaskHandle::wait`]) or `.await` it from async code, in
/// any executor: it is a [`Future`] of the same result, woken by the thread that
/// receives the result (no runtime, no thread blocked; see the README's "From async
/// code"). `(&mut handle).await` leaves the handle usable, e.g. under a timeout.
///
/// Dropping a handle, or a future of it, does not cancel the task: it runs, and its
/// result is dropped. Call [`TaskHandle::cancel`] first to cancel a task that has not
/// started.
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

impl<R: DeserializeOwned> Future for TaskHandle<R> {
    type Output = Result<R, Error>;

    /// Ready with what [`TaskHandle::wait`] would return; never blocks. Polled again
    /// after it was ready, it returns [`ErrorKind::ResultTaken`].
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R, Error>> {
        self.state.poll_take(cx).map(|result| self.decode(result))
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
/// (`concurrent.futures.as_completed`). Dropping it (or its stream) before the end
/// drops the handles left, which, as dropping any [`TaskHandle`], cancels nothing:
/// [`TaskHandle::cancel`] them first if they should not start.
pub fn as_completed<R>(handles: impl IntoIterator<Item = TaskHandle<R>>) -> AsCompleted<R> {
    let (tx, rx) = wake::channel();
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

/// Iterator returned by [`as_completed`]; [`AsCompleted::into_stream`] makes it a
/// [`Stream`].
pub struct AsCompleted<R> {
    handles: Vec<Option<TaskHandle<R>>>,
    rx: wake::Receiver<usize>,
    left: usize,
}

impl<R> AsCompleted<R> {
    /// The same handles as a [`Stream`], for async code: each is yielded when its task
    /// has finished, so `.await` on it is ready at once.
    pub fn into_stream(self) -> AsCompletedStream<R> {
        AsCompletedStream(self)
    }
}

/// [`as_completed`] as a [`Stream`] (see [`AsCompleted::into_stream`]).
pub struct AsCompletedStream<R>(AsCompleted<R>);

impl<R> Stream for AsCompletedStream<R> {
    type Item = TaskHandle<R>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<TaskHandle<R>>> {
        let it = &mut self.get_mut().0;
        if it.left == 0 {
            return Poll::Ready(None);
        }
        // Every handle's job delivers exactly one result (see `job.rs`).
        it.rx.poll_recv(cx).map(|index| {
            it.left -= 1;
            it.handles.get_mut(index?)?.take()
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.0.left, Some(self.0.left))
    }
}

impl<R> Iterator for AsCompleted<R> {
    type Item = TaskHandle<R>;

    fn next(&mut self) -> Option<TaskHandle<R>> {
        if self.left == 0 {
            return None;
        }
        // Every handle's job delivers exactly one result (see `job.rs`), so this recv
        // always returns.
        let index = self.rx.recv()?;
        self.left -= 1;
        self.handles.get_mut(index)?.take()
    }
}
