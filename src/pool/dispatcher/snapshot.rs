//! What `stats()` shows of the dispatcher's state.

use std::time::Duration;

use super::super::job::Unit;
use super::super::ports::{Io, WorkerLink};
use super::super::stats::{PoolStats, WorkerState, WorkerStats};
use super::state::Dispatcher;

impl<X: Io> Dispatcher<X> {
    /// A snapshot of the pool. Each worker's CPU time and memory are left for the
    /// caller to read from `/proc`, outside the pool's lock.
    pub(crate) fn stats(&self) -> PoolStats {
        let workers = self
            .seats
            .iter()
            .filter_map(|s| s.worker.as_ref().map(|w| (s, w)))
            .map(|(seat, w)| {
                let pid = w.link.pid();
                let state = if w.stop.is_some() || w.exited {
                    WorkerState::Stopping
                } else if w.initializing {
                    WorkerState::Initializing
                } else if let Some(run) = &w.running {
                    let claimed = run.claimed(&w.link.page().snapshot());
                    let at = claimed.saturating_sub(1).max(run.answered) - run.answered;
                    WorkerState::Busy {
                        task: run.unit.task.to_string(),
                        job: run.unit.first_id() + u64::from(at),
                    }
                } else if !w.link.is_open() {
                    WorkerState::Retiring
                } else {
                    WorkerState::Idle
                };
                WorkerStats {
                    pid,
                    state,
                    tasks_done: w.tasks_done,
                    restarts: seat.restarts,
                    cpu_time: Duration::ZERO,
                    rss_kib: 0,
                    peak_rss_kib: 0,
                }
            })
            .collect();
        let mut running = 0;
        let mut waiting_in_workers = 0;
        for w in self.workers() {
            if let Some(run) = &w.running {
                let claimed = run.claimed(&w.link.page().snapshot());
                let busy = usize::from(claimed > run.answered);
                running += busy;
                waiting_in_workers += (run.limit - claimed) as usize;
            }
        }
        PoolStats {
            workers,
            starting: self.seats.iter().filter(|s| s.starting).count(),
            queued: self.queue.iter().map(Unit::len).sum::<usize>() + waiting_in_workers,
            running,
            done: self.done,
            failed: self.failed,
            restarts: self.restarts,
            broken: self.broken.clone(),
            notes: self.io.notes(self.cfg.method),
            exited: self.exited.iter().cloned().collect(),
        }
    }
}
