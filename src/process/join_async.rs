//! [`Process::join_async`]: a process's join, awaited without blocking the polling
//! thread and without a runtime.
//!
//! Waiting for the child's answer is a blocking receive on its channel, so it runs on a
//! small thread of its own, which takes the channel, receives, wakes the task, then
//! waits for the exit and wakes it again. The task decodes the value as soon as it is
//! in (while the child lingers for handles it returned to be opened, as in `join`) and
//! finishes once the child has exited and (unless the task may keep its children)
//! nothing of its process group runs any more: the thread, not the polling one, waits
//! out the moment SIGKILLed leftovers take to vanish. A future dropped half-way leaves
//! the thread's work to whoever joins next.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use serde::de::DeserializeOwned;
use supervisor_worker::protocol::{self, FromChild};

use super::{receive, Process};
use crate::error::{Error, ErrorKind, Violation};
use crate::reaper::ChildSlot;

/// What the waiting thread hands back: the channel (or `None` once it is done with)
/// and the child's answer, if one came.
pub(super) struct Received {
    pub(super) rx: Option<protocol::Receiver>,
    pub(super) received: Option<Result<FromChild, Violation>>,
}

#[derive(Default)]
struct State {
    /// Set once the answer is in (or none will come); taken by the joiner.
    received: Option<Received>,
    /// Set once the thread is done: the answer is in, the child has exited and its
    /// group is empty (or was waited for as long as `join` would).
    finished: bool,
    waker: Option<Waker>,
}

/// The waiting thread's side, shared with the process handle.
#[derive(Default)]
pub(super) struct Pending {
    state: Mutex<State>,
    changed: Condvar,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the thread that receives on `rx`, then waits for the child's exit and,
    /// with `empty_group`, for its process group to be empty (as `join` does); if no
    /// thread can start, `rx` comes back with the error.
    #[allow(clippy::type_complexity)]
    fn start(
        rx: Option<protocol::Receiver>,
        slot: Arc<ChildSlot>,
        empty_group: bool,
    ) -> Result<Arc<Pending>, (Option<protocol::Receiver>, std::io::Error)> {
        let pending = Arc::new(Pending::default());
        let shared = pending.clone();
        // The channel goes to the thread through a slot we can take it back from.
        let hand_over = Arc::new(Mutex::new(Some(rx)));
        let theirs = hand_over.clone();
        let started = std::thread::Builder::new()
            .name("supervisor-join".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let taken = theirs.lock().unwrap_or_else(|p| p.into_inner()).take();
                let (mut rx, mut received) = (taken.flatten(), None);
                receive(&mut rx, &slot, &mut received, None);
                let answered = matches!(received, Some(Ok(FromChild::Done { .. })));
                shared.update(|s| s.received = Some(Received { rx, received }));
                let exit = slot.wait();
                if empty_group {
                    super::empty_group(&slot, exit.status, answered);
                }
                shared.update(|s| s.finished = true);
            });
        match started {
            Ok(_) => Ok(pending),
            Err(e) => {
                let rx = hand_over.lock().unwrap_or_else(|p| p.into_inner()).take();
                Err((rx.flatten(), e))
            }
        }
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let waker = {
            let mut state = self.lock();
            change(&mut state);
            state.waker.take()
        };
        self.changed.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Blocks until the answer is in (or none will come) and takes it; `None` if the
    /// deadline passed first.
    pub(super) fn wait_until(&self, deadline: Option<Instant>) -> Option<Received> {
        let mut state = self.lock();
        loop {
            if let Some(received) = state.received.take() {
                return Some(received);
            }
            state = match deadline {
                None => self.changed.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let left = deadline.checked_duration_since(Instant::now())?;
                    self.changed
                        .wait_timeout(state, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// The answer if it is in; otherwise `cx` is woken when it is.
    fn poll_received(&self, cx: &mut Context<'_>) -> Poll<Received> {
        let mut state = self.lock();
        match state.received.take() {
            Some(received) => Poll::Ready(received),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Ready once the child has exited; otherwise `cx` is woken when it has.
    fn poll_finished(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        if state.finished {
            return Poll::Ready(());
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// [`Process::join`], awaited: returned by [`Process::join_async`].
///
/// Ready with what `join` would return. Polling never blocks: the wait runs on a small
/// thread of its own (started at the first poll), which wakes the task when the answer
/// arrives and when the child has exited. Dropping the future cancels nothing: the
/// process runs on, and a later `join` or `join_async` takes over where this one was.
/// (Only if no thread can be started at all does it join on the polling thread.)
#[must_use = "a join does nothing unless awaited"]
pub struct ProcessJoin<'a, R> {
    process: &'a mut Process<R>,
    /// Once the answer is in (and decoded): the thread, still to report the exit.
    answered: Option<Arc<Pending>>,
}

impl<R: DeserializeOwned> Process<R> {
    /// [`Process::join`] for async code: `process.join_async().await` gives the task's
    /// value or the typed error saying how it failed, in any executor, without blocking
    /// its threads.
    ///
    /// ```
    /// use supervisor::Process;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// supervisor::task!(square);
    ///
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     use std::task::{Context, Poll, Wake, Waker};
    /// #     struct Unpark(std::thread::Thread);
    /// #     impl Wake for Unpark {
    /// #         fn wake(self: std::sync::Arc<Self>) { self.0.unpark() }
    /// #     }
    /// #     let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&waker)) {
    /// #             return v;
    /// #         }
    /// #         std::thread::park();
    /// #     }
    /// # }
    /// fn main() -> Result<(), supervisor::Error> {
    ///     supervisor::init();
    ///     let mut p = Process::builder(square, 12).start()?;
    ///     // In an async fn: `p.join_async().await?`
    ///     assert_eq!(block_on(p.join_async())?, 144);
    ///     assert_eq!(p.exitcode(), Some(0));
    ///     Ok(())
    /// }
    /// ```
    pub fn join_async(&mut self) -> ProcessJoin<'_, R> {
        ProcessJoin {
            process: self,
            answered: None,
        }
    }
}

impl<R: DeserializeOwned> Future for ProcessJoin<'_, R> {
    type Output = Result<R, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let p = &mut *this.process;
        if p.taken {
            return Poll::Ready(Err(ErrorKind::AlreadyJoined { pid: p.pid() }.into()));
        }
        if this.answered.is_none() {
            if p.pending.is_none() {
                if p.slot.exit().is_some()
                    && (p.received.is_some() || p.rx.is_none())
                    && (p.keep_task_children || !p.slot.group_runs())
                {
                    // Nothing left to wait for: `join` returns at once.
                    return Poll::Ready(p.join());
                }
                let rx = p.rx.take();
                match Pending::start(rx, p.slot.clone(), !p.keep_task_children) {
                    Ok(pending) => p.pending = Some(pending),
                    Err((rx, _)) => {
                        p.rx = rx;
                        return Poll::Ready(p.join());
                    }
                }
            }
            let pending = p.pending.clone().expect("started above");
            let received = match pending.poll_received(cx) {
                Poll::Ready(received) => received,
                Poll::Pending => return Poll::Pending,
            };
            p.take_over(received);
            p.decode_early();
            this.answered = Some(pending);
        }
        if let Some(pending) = &this.answered {
            if pending.poll_finished(cx).is_pending() {
                return Poll::Pending;
            }
        }
        // The answer is in, the child has exited and the thread saw its group empty:
        // `join` does not block.
        Poll::Ready(p.join())
    }
}
