//! A worker as the dispatcher sees it (what it runs, how it is being stopped), and
//! the seat it fills.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use supervisor_worker::progress::Snapshot;

use super::super::job::Unit;
use super::super::ports::WorkerLink;
use super::super::running::Running;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// The running call exceeded its time limit.
    Timeout,
    /// The worker did not start the work it was sent within the time limit.
    Unresponsive,
    /// The pool is terminating, broken, or the worker misbehaved.
    Shutdown,
    /// It went over the memory limit while running a call: killed at once.
    Memory,
    /// Its running call was asked to stop (`Pool::stop_call`): it ends as stopped.
    Requested,
}

pub(super) struct Worker<L> {
    pub(super) id: u64,
    pub(super) link: L,
    pub(super) running: Option<Running>,
    pub(super) tasks_done: u64,
    pub(super) initializing: bool,
    pub(super) exited: bool,
    pub(super) link_closed: bool,
    pub(super) settle_at: Option<Instant>,
    pub(super) stop: Option<Stop>,
    pub(super) kill_at: Option<Instant>,
    /// The most memory (KiB) it was seen holding with its descendants.
    pub(super) peak_kib: u64,
    /// Left above a memory limit by a task: it gets no more work and is replaced once
    /// what it started is answered.
    pub(super) retiring: bool,
}

impl<L: WorkerLink> Worker<L> {
    /// A worker just started on `link`, with nothing sent to it yet.
    pub(super) fn new(id: u64, link: L) -> Worker<L> {
        Worker {
            id,
            link,
            running: None,
            tasks_done: 0,
            initializing: false,
            exited: false,
            link_closed: false,
            settle_at: None,
            stop: None,
            kill_at: None,
            peak_kib: 0,
            retiring: false,
        }
    }

    /// Whether a message or the end of the stream may come: anything but idle and
    /// healthy (a reader thread may park only then).
    pub(super) fn expects_messages(&self) -> bool {
        self.running.is_some()
            || self.initializing
            || self.stop.is_some()
            || self.exited
            || !self.link.is_open()
    }

    /// Idle, healthy and open for work.
    pub(super) fn takes_work(&self) -> bool {
        self.running.is_none()
            && !self.retiring
            && !self.initializing
            && self.stop.is_none()
            && !self.exited
            && self.link.is_open()
    }

    /// Stops it: no more work, SIGTERM, SIGKILL to its group after `grace`.
    pub(super) fn stop(&mut self, why: Stop, grace: Duration, now: Instant) {
        if self.stop.is_some() {
            return;
        }
        self.stop = Some(why);
        self.link.close();
        self.link.terminate();
        // A grace too long to represent means "never escalate".
        self.kill_at = now.checked_add(grace);
    }

    /// Kills it at once with everything it started (SIGKILL to it, its group and its
    /// descendants): no grace, its memory must not grow any further.
    pub(super) fn kill_now(&mut self, why: Stop, now: Instant) {
        if self.stop.is_some() {
            return;
        }
        self.stop = Some(why);
        self.link.close();
        self.link.kill_tree();
        // What is left of its group (if anything) gets SIGKILL again at once.
        self.kill_at = Some(now);
    }

    /// Takes back every call of its unit that has not started (lowering its limit on
    /// the page), and queues them again at the front, as they were; the unit ends if
    /// everything it started is answered. Returns how many calls had been claimed;
    /// `None` if the worker moved on meanwhile (look again).
    pub(super) fn take_back_unstarted(&mut self, queue: &mut VecDeque<Unit>) -> Option<u32> {
        let seen = self.link.page().snapshot();
        self.take_back_unstarted_as_seen(queue, seen)
    }

    /// [`Self::take_back_unstarted`] until it holds: each look that fails means the
    /// worker started one more call of its unit, so it takes at most as many looks as
    /// the unit has calls.
    pub(super) fn take_back_all_unstarted(&mut self, queue: &mut VecDeque<Unit>) {
        let tries = self.running.as_ref().map_or(0, |run| run.limit) as usize + 2;
        for _ in 0..tries {
            if self.running.is_none() || self.take_back_unstarted(queue).is_some() {
                return;
            }
        }
    }

    /// [`Self::take_back_unstarted`], only if the page is still as `seen` (the look a
    /// decision was made on) says: `None` if the worker claimed anything since. A
    /// decision about its running call then never lands on the next one, which may
    /// have just started.
    pub(super) fn take_back_unstarted_as_seen(
        &mut self,
        queue: &mut VecDeque<Unit>,
        seen: Snapshot,
    ) -> Option<u32> {
        let run = self.running.as_mut()?;
        let claimed = run.claimed(&seen);
        if seen.seq == run.seq {
            let limit = self.link.page().take_back(seen, 0)?;
            debug_assert_eq!(limit, seen.next);
        }
        // A page about another unit: nothing of this one can start any more either.
        let keep = (claimed - run.answered) as usize;
        if claimed < run.limit {
            let rest = run.unit.split_off(keep);
            if rest.len() > 0 {
                queue.push_front(rest);
            }
            run.limit = claimed;
        }
        if run.answered >= run.limit {
            self.running = None;
        }
        Some(claimed)
    }
}

pub(super) struct Seat<L> {
    pub(super) worker: Option<Worker<L>>,
    pub(super) starting: bool,
    /// A replacement starts no earlier than this (restart back-off).
    pub(super) start_at: Option<Instant>,
    pub(super) restarts: u32,
}

impl<L> Default for Seat<L> {
    fn default() -> Self {
        Seat {
            worker: None,
            starting: false,
            start_at: None,
            restarts: 0,
        }
    }
}
