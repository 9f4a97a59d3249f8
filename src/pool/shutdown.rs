//! The end of a pool's dispatcher, for threads that wait for it (`join`, `terminate`,
//! `drop`) and for async tasks that await it ([`Shutdown`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// "The dispatcher has stopped", for every waiter.
#[derive(Default)]
pub(super) struct Finished {
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Default)]
struct State {
    done: bool,
    /// Tasks awaiting the end, woken by the pool thread as it ends.
    wakers: Vec<Waker>,
}

impl Finished {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the dispatcher has stopped.
    pub(super) fn is_done(&self) -> bool {
        self.lock().done
    }

    /// Blocks until the dispatcher has stopped.
    pub(super) fn wait(&self) {
        let mut state = self.lock();
        while !state.done {
            state = self.cv.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        if state.done {
            return Poll::Ready(());
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Sets [`Finished`] when dropped: at the end of the dispatcher thread, even by panic.
pub(super) struct FinishOnDrop(pub(super) Arc<Finished>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        let wakers = {
            let mut state = self.0.lock();
            state.done = true;
            std::mem::take(&mut state.wakers)
        };
        self.0.cv.notify_all();
        for waker in wakers {
            waker.wake();
        }
    }
}

/// A pool's shutdown, awaited: returned by [`crate::Pool::join_async`],
/// [`crate::Pool::terminate_async`] and [`crate::Pool::kill_async`].
///
/// The shutdown itself was asked for when the method was called; this future only
/// waits for its end (every worker gone), without blocking a thread: the pool's own
/// thread wakes the awaiting task as it ends. Dropping the future does not undo the
/// shutdown. Once it is ready, dropping the pool does not block either.
#[must_use = "the pool is shutting down; await this to know when it is done"]
pub struct Shutdown {
    pub(super) finished: Arc<Finished>,
}

impl Future for Shutdown {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.finished.poll_done(cx)
    }
}
