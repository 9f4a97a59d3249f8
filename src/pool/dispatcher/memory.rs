//! Memory limits: busy workers' memory looked at every `memory::MEMORY_LOOK` (a worker
//! over `memory_limit` is killed with its descendants, its running call charged), and a
//! worker left above a limit by a task recycled (`max_memory_per_child`).

use std::time::Instant;

use super::super::job::{Job, Unit};
use super::super::ports::{Io, WorkerLink};
use super::state::Dispatcher;
use super::worker::Stop;
use crate::memory::{after_task, while_running, MemoryVerdict, MEMORY_LOOK};

/// How many workers may be killed over the memory limit with a call at the front of
/// their unit, unstarted, before that call fails.
const MAX_MEMORY_BOUNCES: u8 = 2;

/// Counts a bounce against the call of the first unit in `back` if it holds one call
/// only, and returns it, taken out, once it reached [`MAX_MEMORY_BOUNCES`]. A unit of
/// several calls (a chunk, a merged batch: what took the memory may be all of them)
/// is split instead, its first call going out alone next, and nothing is counted.
fn blame_first(back: &mut std::collections::VecDeque<Unit>) -> Option<Job> {
    let unit = back.front_mut()?;
    unit.explode();
    if unit.jobs.len() > 1 {
        let rest = unit.split_off(1);
        back.insert(1, rest);
        return None;
    }
    let job = unit.jobs.first_mut()?;
    job.memory_bounces = job.memory_bounces.saturating_add(1);
    if job.memory_bounces < MAX_MEMORY_BOUNCES {
        return None;
    }
    let job = unit.jobs.remove(0);
    if unit.jobs.is_empty() {
        back.pop_front();
    }
    Some(job)
}

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
                let claimed = worker.take_back_unstarted(&mut back);
                let pid = worker.link.pid();
                worker.kill_now(Stop::Memory, after);
                if claimed == Some(0) {
                    // Over the limit before it started anything: what it received
                    // (the arguments) takes that much. Its first call is blamed, and
                    // fails at the second such kill: queued again for ever, it made
                    // the pool kill and restart workers without end (adv19b F1).
                    if let Some(job) = blame_first(&mut back) {
                        self.failed += 1;
                        let task = job.task().to_string();
                        job.complete(Err(crate::error::ErrorKind::MemoryExceeded {
                            task,
                            pid,
                            limit,
                            peak_rss_kib: kib,
                            killed: true,
                        }
                        .into()));
                    }
                }
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
