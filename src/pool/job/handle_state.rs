//! The waiting side of one `apply_async` / `submit`: where the result is put, and how
//! a caller waits for it (spinning briefly, asleep, or as a task polling).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::thread::ThreadId;
use std::time::Instant;

use atomic_waker::AtomicWaker;
use supervisor_worker::poll::{self, poll_until};

use super::super::wake;
use super::{JobResult, LentLink};

/// The waiting side of one `apply_async` / `submit`.
pub(crate) struct HandleState {
    inner: Mutex<HandleInner>,
    ready: Condvar,
    /// Set, under the lock, once the result is in place; a spinning waiter reads it
    /// without the lock.
    done: AtomicBool,
    /// For `apply`: the thread that waits for the result as soon as it has submitted
    /// the task, and may read the worker's reply itself (see `reader.rs`).
    pub(super) caller: Option<ThreadId>,
    /// The task awaiting the handle, woken by whichever thread sets the result.
    waker: AtomicWaker,
}

struct HandleInner {
    /// The result, and the pid of the worker that ran the task (0 if none did).
    result: Option<(JobResult, u32)>,
    watchers: Vec<(wake::Sender<usize>, usize)>,
    /// The link of the worker running the task, lent to `caller`.
    lent: Option<Arc<dyn LentLink>>,
    /// Threads asleep on `ready`: without one, setting the result wakes nobody (a
    /// notify is a system call even then).
    sleepers: usize,
}

impl HandleState {
    pub(crate) fn new() -> Arc<HandleState> {
        HandleState::build(None)
    }

    /// The state of a task whose submitting thread waits for it at once (`apply`).
    pub(crate) fn for_caller() -> Arc<HandleState> {
        HandleState::build(Some(std::thread::current().id()))
    }

    fn build(caller: Option<ThreadId>) -> Arc<HandleState> {
        Arc::new(HandleState {
            inner: Mutex::new(HandleInner {
                result: None,
                watchers: Vec::new(),
                lent: None,
                sleepers: 0,
            }),
            ready: Condvar::new(),
            done: AtomicBool::new(false),
            caller,
            waker: AtomicWaker::new(),
        })
    }

    /// Hands the caller the link its task's reply will come on.
    pub(crate) fn borrow_link(&self, reader: Arc<dyn LentLink>) {
        let mut inner = self.lock();
        // Lent only while the caller posts, and taken before it reads.
        debug_assert!(inner.lent.is_none(), "a link lent twice at once");
        inner.lent = Some(reader);
    }

    /// For the caller: while a link is lent, reads it until the result is in, and gives
    /// it back. Another link can be lent meanwhile: the worker died, and the task's
    /// retry went to another worker from this thread (while it posted the death).
    pub(crate) fn serve_lent_link(&self) {
        loop {
            let lent = self.lock().lent.take();
            let Some(reader) = lent else { return };
            reader.serve_until(&|| self.is_done());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HandleInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn set(&self, result: JobResult, pid: u32) {
        let mut inner = self.lock();
        if self.is_done() {
            return;
        }
        inner.result = Some((result, pid));
        self.done.store(true, Ordering::Release);
        let watchers = std::mem::take(&mut inner.watchers);
        let sleepers = inner.sleepers;
        drop(inner);
        if sleepers > 0 {
            self.ready.notify_all();
        }
        self.waker.wake();
        for (tx, index) in watchers {
            tx.send(index);
        }
    }

    /// Polls `done` for at most a [`poll::WINDOW`] (or until `deadline`): a quick task's
    /// result usually arrives within it, and a waiter that is not asleep needs no
    /// wake-up.
    fn spin(&self, deadline: Option<Instant>) {
        let start = Instant::now();
        let until = deadline.map_or(start + poll::WINDOW, |d| d.min(start + poll::WINDOW));
        poll_until(until, 64, || self.is_done());
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Waits until done or `deadline`; takes the result (once).
    pub(crate) fn take_until(&self, deadline: Option<Instant>) -> Option<Option<(JobResult, u32)>> {
        self.spin(deadline);
        let mut inner = self.lock();
        while !self.is_done() {
            let left = match deadline {
                None => None,
                Some(d) => Some(d.checked_duration_since(Instant::now())?),
            };
            inner.sleepers += 1;
            inner = match left {
                None => self.ready.wait(inner).unwrap_or_else(|p| p.into_inner()),
                Some(left) => {
                    self.ready
                        .wait_timeout(inner, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            inner.sleepers -= 1;
        }
        Some(inner.result.take())
    }

    /// Takes the result (once) if it is in; otherwise registers the task of `cx` to be
    /// woken when it is set. Never blocks: the lock is only held for a move.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Option<(JobResult, u32)>> {
        if !self.is_done() {
            self.waker.register(cx.waker());
            // Set between the look and the registration: nobody woke us.
            if !self.is_done() {
                return Poll::Pending;
            }
        }
        Poll::Ready(self.lock().result.take())
    }

    /// Sends `index` on `tx` once done (at once if already done).
    pub(crate) fn watch(&self, tx: wake::Sender<usize>, index: usize) {
        let mut inner = self.lock();
        if self.is_done() {
            drop(inner);
            tx.send(index);
        } else {
            inner.watchers.push((tx, index));
        }
    }
}
