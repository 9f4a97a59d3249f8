//! Memory limits: busy workers' memory looked at every `memory::MEMORY_LOOK` (a worker
//! over `memory_limit` is killed with its descendants, its running call charged), and a
//! worker left above a limit by a task recycled (`max_memory_per_child`).

use std::time::Instant;

use super::super::ports::{Io, WorkerLink};
use super::state::Dispatcher;
use super::worker::Stop;
use crate::memory::{after_task, while_running, MemoryVerdict, MEMORY_LOOK};

impl<X: Io> Dispatcher<X> {
    /// A unit was sent: make sure the memory looks run.
    pub(super) fn arm_memory_look(&mut self, now: Instant) {
        if self.cfg.memory_limit.is_some() && self.memory_look_at.is_none() {
            self.memory_look_at = now.checked_add(MEMORY_LOOK);
        }
    }

    /// If a look is due: every busy worker's memory with its descendants, in one look;
    /// one over `memory_limit` is killed at once (its unstarted calls taken back first,
    /// so only the running one is charged).
    pub(super) fn look_at_memory(&mut self) {
        let Some(limit) = self.cfg.memory_limit else {
            return;
        };
        let now = self.io.clocks().now;
        if self.memory_look_at.is_none_or(|at| at > now) {
            return;
        }
        let busy: Vec<(u64, u32)> = self
            .workers()
            .filter(|w| w.running.is_some() && w.stop.is_none() && !w.exited)
            .map(|w| (w.id, w.link.pid()))
            .collect();
        if busy.is_empty() {
            self.memory_look_at = None;
            return;
        }
        let pids: Vec<u32> = busy.iter().map(|(_, pid)| *pid).collect();
        let readings = self.io.tree_rss_kib(&pids);
        // Every MEMORY_LOOK, whatever a look cost: the expensive part (a look at every
        // process, to find new descendants) is spaced by the tree watch itself; spacing
        // every look by the cost of one that was full let a call hold memory over the
        // limit for 100 ms and more unseen with ~470 processes on the machine.
        let after = self.io.clocks().now;
        for ((id, _), kib) in busy.into_iter().zip(readings) {
            let Some(kib) = kib else { continue };
            let Some(worker) = self.worker_mut(id) else {
                continue;
            };
            worker.peak_kib = worker.peak_kib.max(kib);
            if while_running(kib, limit) == MemoryVerdict::Kill {
                // If it moved on meanwhile, what it claimed is settled at its death
                // (the running call charged, the rest queued again).
                let mut back = std::collections::VecDeque::new();
                let _ = worker.take_back_unstarted(&mut back);
                worker.kill_now(Stop::Memory, after);
                while let Some(unit) = back.pop_back() {
                    self.queue.push_front(unit);
                }
            }
        }
        self.memory_look_at = after.checked_add(MEMORY_LOOK);
    }

    /// Worker `id` answered calls: if a task left it above a memory limit, it gets no
    /// more work (what it has not started is taken back) and is replaced once what it
    /// started is answered. Only asked with a limit set (a reading costs a read of
    /// /proc).
    pub(super) fn look_after_task(&mut self, id: u64) {
        let (per_child, limit) = (self.cfg.max_memory_per_child, self.cfg.memory_limit);
        if per_child.is_none() && limit.is_none() {
            return;
        }
        let Some(worker) = self.worker_mut(id) else {
            return;
        };
        if !worker.retiring {
            // The worker gave back the rest of its unit itself: it saw its memory
            // above the limit after a call (`WorkerConfig::retire_above`).
            let gave_back = worker.running.as_ref().is_some_and(|run| {
                let seen = worker.link.page().snapshot();
                seen.seq == run.seq && seen.limit < run.limit
            });
            if !gave_back {
                let Some(kib) = worker.link.rss_kib() else {
                    return;
                };
                worker.peak_kib = worker.peak_kib.max(kib);
                if after_task(kib, per_child, limit) != MemoryVerdict::Retire {
                    return;
                }
            }
            worker.retiring = true;
        }
        let mut back = std::collections::VecDeque::new();
        worker.take_back_all_unstarted(&mut back);
        if worker.running.is_none() {
            worker.link.close();
        }
        while let Some(unit) = back.pop_back() {
            self.queue.push_front(unit);
        }
    }
}
