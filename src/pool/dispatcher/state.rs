//! The dispatcher's state and the events that change it directly (submissions,
//! close, stats, a worker's channel closing or its exit); a worker as the dispatcher
//! sees it is in `worker.rs`, starting workers in `start.rs`, cancelling calls in
//! `cancel.rs`, stopping the pool in `shutdown.rs`; answers, deaths, deadlines and
//! handing out work are in the other sibling files.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::super::event::{Event, Gate, OnBroken};
use super::super::hub::Machine;
use super::super::job::Unit;
use super::super::ports::{Io, WorkerLink};
use super::super::stats::{PoolStats, WorkerStats};
use super::super::storm::Storm;
use super::super::Config;
use super::group_kill::GroupKill;
use super::worker::{Seat, Worker};
use crate::error::{BrokenCall, BrokenReason, ErrorKind};

/// How long to wait, after a worker exited, for its channel to close before settling
/// its jobs: its reader may still be decoding a large last result. A grandchild holding
/// the channel open does not make us wait this long: our end is shut for reading at the
/// exit (`WorkerLink::end_input`), so the link ends once what the worker sent is read;
/// this is the fallback where that could not be done.
pub(super) const EXIT_SETTLE: Duration = Duration::from_secs(1);
/// Message id of the initializer.
pub(super) const INIT_SEQ: u64 = supervisor_worker::protocol::INIT_ID;
/// Exited workers remembered for `stats()`.
pub(super) const MAX_HISTORY: usize = 1_000;

/// The one owner of a pool's state (see the module docs).
pub(crate) struct Dispatcher<X: Io> {
    pub(super) cfg: Config,
    pub(super) io: X,
    pub(super) seats: Vec<Seat<X::Link>>,
    pub(super) queue: VecDeque<Unit>,
    pub(super) closing: bool,
    pub(super) terminating: bool,
    pub(super) broken: Option<BrokenReason>,
    /// `Pool::when_broken`'s callbacks, called when it breaks.
    pub(super) when_broken: Vec<OnBroken>,
    pub(super) storm: Storm,
    pub(super) next_worker: u64,
    pub(super) next_seq: u64,
    pub(super) done: u64,
    pub(super) failed: u64,
    pub(super) restarts: u32,
    /// Per task: a moving average of the time one call takes (unknown = slow).
    pub(super) job_time: HashMap<&'static str, Duration>,
    /// Workers that have exited, most recent last.
    pub(super) exited: VecDeque<WorkerStats>,
    /// Process groups of stopped workers that died before their grace period ended
    /// while something of the group still ran: what they left behind (commands
    /// ignoring SIGTERM) gets SIGKILL on time, unless it ends first.
    pub(super) group_kills: Vec<GroupKill<X::Link>>,
    /// When busy workers' memory is looked at next (`memory_limit` only; `None`: no
    /// worker was busy at the last look).
    pub(super) memory_look_at: Option<Instant>,
    /// `Pool::cancel_pending_when`'s condition, and the counts it last saw.
    pub(super) gate: Option<(Gate, (u64, u64))>,
}

impl<X: Io> Dispatcher<X> {
    pub(crate) fn new(cfg: Config, io: X) -> Dispatcher<X> {
        let seats = (0..cfg.procs).map(|_| Seat::default()).collect();
        let storm = Storm::new(cfg.restart_limit);
        Dispatcher {
            cfg,
            io,
            seats,
            queue: VecDeque::new(),
            closing: false,
            terminating: false,
            broken: None,
            when_broken: Vec::new(),
            storm,
            next_worker: 1,
            next_seq: 1,
            done: 0,
            failed: 0,
            restarts: 0,
            job_time: HashMap::new(),
            exited: VecDeque::new(),
            group_kills: Vec::new(),
            memory_look_at: None,
            gate: None,
        }
    }

    /// Closed and drained, or terminated: nothing left to do.
    pub(crate) fn finished(&self) -> bool {
        self.closing
            && self.queue.is_empty()
            && self.group_kills.is_empty()
            && self.seats.iter().all(|s| s.worker.is_none() && !s.starting)
    }

    pub(crate) fn handle(&mut self, event: Event<X::Started>) {
        match event {
            Event::Submit(units) => {
                if let Some(reason) = &self.broken {
                    for unit in units {
                        unit.fail(|_| ErrorKind::PoolBroken {
                            reason: reason.clone(),
                            call: BrokenCall::NotStarted,
                        });
                    }
                } else if self.closing {
                    for unit in units {
                        unit.fail(|_| ErrorKind::PoolClosed);
                    }
                } else {
                    self.queue.extend(units);
                }
            }
            Event::Cancel(id, reply) => {
                let _ = reply.send(self.cancel(id));
            }
            Event::StopCall(id) => self.stop_call(id),
            Event::ForgetStream(stream) => self.forget_stream(stream),
            Event::Close => self.closing = true,
            Event::CancelPending => self.cancel_pending(),
            Event::SetGate(gate) => self.gate = Some((gate, (u64::MAX, u64::MAX))),
            Event::SetTaskTimeout(limit) => self.set_task_timeout(limit),
            Event::WhenBroken(call) => match &self.broken {
                Some(reason) => tell_broken(call, reason),
                None => self.when_broken.push(call),
            },
            Event::Terminate => self.terminate(),
            Event::Kill => self.kill(),
            Event::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            Event::Started { seat, result } => self.on_started(seat, result),
            Event::Message { worker, msg } => self.on_message(worker, msg),
            Event::LinkClosed { worker } => {
                let now = self.io.clocks().now;
                if let Some(w) = self.worker_mut(worker) {
                    w.link_closed = true;
                    if w.exited {
                        self.finalize(worker);
                    } else {
                        // Its exit notice usually follows at once; if not, the worker is
                        // alive with a dead channel (see `on_timers`).
                        w.settle_at = Some(now + EXIT_SETTLE);
                    }
                }
            }
            Event::Exited { worker } => {
                let now = self.io.clocks().now;
                let end_children = !self.cfg.keep_task_children;
                if let Some(w) = self.worker_mut(worker) {
                    w.exited = true;
                    if w.link_closed {
                        self.finalize(worker);
                    } else {
                        // Something else holds its channel open: a child of its task
                        // that inherited it, maybe outside its group (setsid). What is
                        // left of the group goes now, and our end of the channel is
                        // shut for reading: what the worker sent is still read, then
                        // the link ends, so the end is noticed at once, not at the
                        // settling deadline (left as a fallback).
                        if end_children {
                            w.link.terminate_group();
                        }
                        w.link.end_input();
                        w.settle_at = Some(now + EXIT_SETTLE);
                    }
                }
            }
        }
    }

    pub(super) fn worker_mut(&mut self, id: u64) -> Option<&mut Worker<X::Link>> {
        self.seats
            .iter_mut()
            .filter_map(|s| s.worker.as_mut())
            .find(|w| w.id == id)
    }

    pub(super) fn seat_of(&self, id: u64) -> Option<usize> {
        self.seats
            .iter()
            .position(|s| s.worker.as_ref().is_some_and(|w| w.id == id))
    }

    pub(super) fn workers(&self) -> impl Iterator<Item = &Worker<X::Link>> {
        self.seats.iter().filter_map(|s| s.worker.as_ref())
    }
}

impl<X: Io> Machine for Dispatcher<X> {
    type Event = Event<X::Started>;

    fn handle(&mut self, event: Self::Event) {
        Dispatcher::handle(self, event);
    }

    fn dispatch(&mut self) {
        Dispatcher::dispatch(self);
    }

    fn on_timers(&mut self) {
        Dispatcher::on_timers(self);
    }

    fn next_wake(&self) -> Option<Instant> {
        Dispatcher::next_wake(self)
    }

    fn finished(&self) -> bool {
        Dispatcher::finished(self)
    }

    fn break_pool(&mut self, message: String) {
        Dispatcher::break_pool(self, BrokenReason::Panic { message });
        // The dispatcher ends now: its running calls cannot wait for their workers.
        self.settle_running_now();
    }

    fn stats(&self) -> PoolStats {
        Dispatcher::stats(self)
    }

    /// Work submitted to a pool that has ended fails with the reason it broke;
    /// everything else is dropped (jobs fail as terminated, replies close).
    fn refuse(events: Vec<Self::Event>, broken: Option<&BrokenReason>) {
        let Some(reason) = broken else { return };
        for event in events {
            if let Event::Submit(units) = event {
                for unit in units {
                    unit.fail(|_| ErrorKind::PoolBroken {
                        reason: reason.clone(),
                        call: BrokenCall::NotStarted,
                    });
                }
            }
        }
    }
}

/// Calls a `Pool::when_broken` callback: the user's code, whose panic is caught (the
/// pool is broken already; there is nothing more to stop).
pub(super) fn tell_broken(call: OnBroken, reason: &BrokenReason) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(reason)));
}
