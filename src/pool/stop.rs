//! Closing and stopping a pool: `close`, `cancel_pending`, `join`, `terminate`,
//! `kill`, their async forms, and what dropping a pool does.

use std::sync::atomic::Ordering;

use super::event::Event;
use super::{Pool, Shutdown};

impl Pool {
    /// No new work: later submissions fail with [`ErrorKind::PoolClosed`]; queued and
    /// running tasks finish.
    ///
    /// [`ErrorKind::PoolClosed`]: crate::error::ErrorKind::PoolClosed
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.hub.post(Event::Close);
    }

    /// Closes the pool and cancels every task that has not started (they fail with
    /// [`ErrorKind::Cancelled`]); running tasks finish. GNU parallel's `--halt soon`.
    ///
    /// [`ErrorKind::Cancelled`]: crate::error::ErrorKind::Cancelled
    pub fn cancel_pending(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.hub.post(Event::CancelPending);
    }

    /// Sets a halt condition: before the pool hands out any work, it calls `halt` with
    /// how many tasks have succeeded and failed so far (whenever that changed); once
    /// it returns true, the pool does what [`Pool::cancel_pending`] does, so no task
    /// starts after a result that met the condition (a callback of the results' reader,
    /// such as [`Reports::on_arrival`], runs later, when the next task may already
    /// have started). Queued calls are then handed out one at a time, not merged.
    /// For GNU parallel's `--halt`.
    ///
    /// [`Reports::on_arrival`]: super::Reports::on_arrival
    pub fn cancel_pending_when(&self, halt: impl FnMut(u64, u64) -> bool + Send + 'static) {
        self.shared.hub.post(Event::SetGate(Box::new(halt)));
    }

    /// Closes the pool and waits until every task has finished and every worker has
    /// exited.
    pub fn join(&self) {
        self.close();
        self.wait_dispatcher();
    }

    /// Stops now: tasks that have not started fail with [`ErrorKind::Terminated`];
    /// running tasks are stopped with their workers (SIGTERM and, after the grace
    /// period, SIGKILL) and fail with [`ErrorKind::Stopped`], with their pid, start and
    /// duration. Returns once the workers are gone.
    ///
    /// [`ErrorKind::Terminated`]: crate::error::ErrorKind::Terminated
    /// [`ErrorKind::Stopped`]: crate::error::ErrorKind::Stopped
    pub fn terminate(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.hub.post(Event::Terminate);
        self.wait_dispatcher();
    }

    /// Like [`Pool::terminate`] without the grace period: SIGKILL at once.
    pub fn kill(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.hub.post(Event::Kill);
        self.wait_dispatcher();
    }

    /// [`Pool::join`] for async code: closes the pool now and returns a future that is
    /// ready when every task has finished and every worker has exited. No thread waits
    /// for it (the pool's own thread wakes the task as it ends), so it never blocks an
    /// executor thread; once it is ready, dropping the pool does not block either.
    pub fn join_async(&self) -> Shutdown {
        self.close();
        self.shutdown()
    }

    /// [`Pool::terminate`] for async code: stops now and returns a future that is
    /// ready once the workers are gone (see [`Pool::join_async`]).
    pub fn terminate_async(&self) -> Shutdown {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.hub.post(Event::Terminate);
        self.shutdown()
    }

    /// [`Pool::kill`] for async code (see [`Pool::terminate_async`]).
    pub fn kill_async(&self) -> Shutdown {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.hub.post(Event::Kill);
        self.shutdown()
    }

    fn shutdown(&self) -> Shutdown {
        Shutdown {
            finished: self.finished.clone(),
        }
    }
}

impl Drop for Pool {
    /// Terminates the pool and blocks until its workers are gone (up to the grace
    /// period), unless it has already stopped: after [`Pool::join`], [`Pool::terminate`]
    /// or a [`Shutdown`] that is ready, dropping it returns at once.
    fn drop(&mut self) {
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(thread) = thread else { return };
        if self.finished.is_done() {
            // Its dispatcher is gone; the thread only has its last references left to
            // drop, and ends on its own.
            drop(thread);
            return;
        }
        *self.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
        self.terminate();
    }
}
