//! The dispatcher's state and the events that change it directly (submissions,
//! cancels, close, terminate, worker starts); answers, deaths, deadlines and handing
//! out work are in the sibling files.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use supervisor_worker::progress::Snapshot;
use supervisor_worker::protocol::{TaskRequest, ToChild};

use super::super::event::{Event, Gate};
use super::super::hub::Machine;
use super::super::job::{Job, Unit};
use super::super::ports::{Io, WorkerLink};
use super::super::running::Running;
use super::super::stats::{PoolStats, WorkerStats};
use super::super::storm::{Storm, Verdict};
use super::super::{Config, RestartLimit};
use super::group_kill::GroupKill;
use crate::error::{resource_limit, BrokenReason, Error, ErrorKind, StormDeath};
use crate::launch::Spec;

/// How long to wait, after a worker exited, for its channel to close before settling
/// its jobs: its reader may still be decoding a large last result. A grandchild holding
/// the channel open does not make us wait this long: our end is shut for reading at the
/// exit (`WorkerLink::end_input`), so the link ends once what the worker sent is read;
/// this is the fallback where that could not be done.
pub(super) const EXIT_SETTLE: Duration = Duration::from_secs(1);
/// Message id of the initializer.
pub(super) const INIT_SEQ: u64 = 0;
/// Exited workers remembered for `stats()`.
pub(super) const MAX_HISTORY: usize = 1_000;

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

/// The one owner of a pool's state (see the module docs).
pub(crate) struct Dispatcher<X: Io> {
    pub(super) cfg: Config,
    pub(super) io: X,
    pub(super) seats: Vec<Seat<X::Link>>,
    pub(super) queue: VecDeque<Unit>,
    pub(super) closing: bool,
    pub(super) terminating: bool,
    pub(super) broken: Option<BrokenReason>,
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
    /// How often (see `memory::look_every`).
    pub(super) memory_look_every: Duration,
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
            memory_look_every: crate::memory::MEMORY_LOOK,
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

    fn cancel(&mut self, id: u64) -> bool {
        for i in 0..self.queue.len() {
            if let Some(pos) = self.queue[i].jobs.iter().position(|j| j.id == id) {
                let job = self.queue[i].jobs.remove(pos);
                let task = job.task().to_string();
                job.complete(Err(ErrorKind::Cancelled { task }.into()));
                if self.queue[i].jobs.is_empty() {
                    self.queue.remove(i);
                }
                return true;
            }
        }
        false
    }

    /// Stops call `id` alone: if it has not started (queued, or waiting behind a
    /// running call of its unit, taken back) it is cancelled; if it runs, what waits
    /// behind it in its unit is taken back and its worker is stopped as any is
    /// (SIGTERM to the group, the grace, SIGKILL), and it ends as `Stopped` with its
    /// pid, start and duration (or with its own answer if it gives one first: a task
    /// that handles SIGTERM). A finished call is left alone.
    pub(super) fn stop_call(&mut self, id: u64) {
        if self.cancel(id) {
            return;
        }
        let grace = self.cfg.escalation();
        let now = self.io.clocks().now;
        let mut back = VecDeque::new();
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            let Some(run) = worker.running.as_ref() else {
                continue;
            };
            let Some(pos) = run.unit.jobs.iter().position(|j| j.id == id) else {
                continue;
            };
            if worker.stop.is_some() {
                // Being stopped already: the call ends with it.
                break;
            }
            let call = run.answered + pos as u32;
            // A look that fails means the worker claimed a call since: look again
            // (each failure is progress, so a few are plenty).
            for _ in 0..16 {
                let seen = worker.link.page().snapshot();
                let Some(run) = worker.running.as_ref() else {
                    break;
                };
                let claimed = run.claimed(&seen);
                if call + 1 < claimed {
                    // Finished: its answer is on its way.
                    break;
                }
                if worker
                    .take_back_unstarted_as_seen(&mut back, seen)
                    .is_none()
                {
                    continue;
                }
                if call + 1 == claimed {
                    worker.stop(Stop::Requested, grace, now);
                }
                break;
            }
            break;
        }
        while let Some(unit) = back.pop_back() {
            self.queue.push_front(unit);
        }
        // Taken back before it started: cancelled as a queued call is.
        self.cancel(id);
    }

    /// Drops every call of result stream `stream` that has not started: queued ones,
    /// and those waiting behind a running call (taken back). Running calls finish.
    fn forget_stream(&mut self, stream: u64) {
        let mut back = VecDeque::new();
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            let ours = worker.running.as_ref().is_some_and(|r| {
                r.unit.jobs.iter().any(|j| j.stream() == Some(stream))
                    || r.unit.chunk.as_ref().is_some_and(|c| c.stream() == stream)
            });
            if ours && worker.stop.is_none() {
                let _ = worker.take_back_unstarted(&mut back);
            }
        }
        // What was taken back goes first again, in order.
        while let Some(unit) = back.pop_back() {
            self.queue.push_front(unit);
        }
        for unit in self.queue.iter_mut().filter(|u| u.chunk.is_none()) {
            let (gone, kept): (Vec<Job>, Vec<Job>) = std::mem::take(&mut unit.jobs)
                .into_iter()
                .partition(|j| j.stream() == Some(stream));
            unit.jobs = kept;
            gone.into_iter().for_each(Job::forget);
        }
        // A stream's chunks (`imap_reports`'): gone whole, with nothing delivered.
        for unit in self.queue.iter_mut() {
            if unit.chunk.as_ref().is_some_and(|c| c.stream() == stream) {
                if let Some(chunk) = unit.chunk.take() {
                    chunk.forget();
                }
            }
        }
        self.queue.retain(|u| u.len() > 0);
    }

    pub(super) fn start_worker(&mut self, seat: usize) {
        self.seats[seat].starting = true;
        self.seats[seat].start_at = None;
        let spec = Spec {
            method: self.cfg.method,
            nice: self.cfg.nice,
            daemon: true,
            name: format!("{}-{seat}", self.cfg.name),
            env_allowlist: self.cfg.env_allowlist.clone(),
            end_task_children: (!self.cfg.keep_task_children).then_some(self.cfg.grace),
            retire_above: crate::memory::retire_above(
                self.cfg.max_memory_per_child,
                self.cfg.memory_limit,
            ),
            seat: u32::try_from(seat).ok(),
        };
        if let Err(e) = self.io.start(seat, spec) {
            self.seats[seat].starting = false;
            let death = StormDeath::NoThread {
                limit: resource_limit(&e),
                cause: Arc::new(e),
            };
            self.storm_death(seat, death);
        }
    }

    /// A worker died (or could not start) before it finished anything: a replacement
    /// after a back-off, or the pool breaks.
    pub(super) fn storm_death(&mut self, seat: usize, last: StormDeath) {
        match self.storm.death(self.io.clocks().now) {
            Verdict::RestartAt(at) => self.seats[seat].start_at = Some(at),
            Verdict::Break(deaths) => {
                let RestartLimit { max, within } = self.cfg.restart_limit;
                self.break_pool(BrokenReason::Storm {
                    deaths,
                    max,
                    within,
                    last,
                });
            }
        }
    }

    /// A worker could not be started (or set up) for a reason that may pass: a storm
    /// death, with the resource limit behind it named.
    fn start_failed(&mut self, seat: usize, e: Error) {
        let death = StormDeath::CannotStart {
            limit: resource_limit(&e),
            cause: Arc::new(e),
        };
        self.storm_death(seat, death);
    }

    fn on_started(&mut self, seat: usize, result: Result<X::Started, Error>) {
        self.seats[seat].starting = false;
        let started = match result {
            Ok(started) => started,
            Err(e) => {
                let permanent = matches!(
                    e.kind(),
                    ErrorKind::NiceNotPermitted { .. }
                        | ErrorKind::NiceOutOfRange(_)
                        | ErrorKind::ForkUnavailable { .. }
                        | ErrorKind::Registry(_)
                        | ErrorKind::DaemonCannotStart { .. }
                        | ErrorKind::NotInitialised { .. }
                ) || temp_dir_unfit(&e);
                if permanent {
                    self.break_pool(BrokenReason::CannotStart(Arc::new(e)));
                } else {
                    self.start_failed(seat, e);
                }
                return;
            }
        };
        let id = self.next_worker;
        self.next_worker += 1;
        let link = match self.io.attach(id, started) {
            Ok(link) => link,
            Err(e) => return self.start_failed(seat, e),
        };
        let mut worker = Worker {
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
        };
        if let Some((task, arg)) = &self.cfg.initializer {
            let req = ToChild::Task(TaskRequest {
                id: INIT_SEQ,
                task: task.to_string(),
                arg: arg.clone(),
            });
            worker.initializing = true;
            worker.link.page().begin(INIT_SEQ, 1);
            if worker.link.is_open() {
                // A failed send closes the link: it is going away, and its exit is
                // handled as any other.
                let _ = worker.link.send_init(&req);
            }
        }
        let reading = worker.link.reading();
        if self.terminating || self.broken.is_some() || !reading {
            // Without a reader nobody would hear from this worker: stop it now.
            worker.link_closed = !reading;
            worker.stop(Stop::Shutdown, self.cfg.escalation(), self.io.clocks().now);
        }
        self.seats[seat].worker = Some(worker);
    }

    pub(super) fn wants_workers(&self) -> bool {
        !self.terminating && self.broken.is_none() && (!self.closing || !self.queue.is_empty())
    }

    /// Breaks the pool for `reason` (also used by the hub when handling an event
    /// panicked: every waiter then gets `PoolBroken`, not `Terminated`).
    pub(crate) fn break_pool(&mut self, reason: BrokenReason) {
        if self.broken.is_some() {
            return;
        }
        self.broken = Some(reason.clone());
        self.closing = true;
        for unit in self.queue.drain(..) {
            unit.fail(|_| ErrorKind::PoolBroken {
                reason: reason.clone(),
            });
        }
        let grace = self.cfg.escalation();
        let now = self.io.clocks().now;
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            if let Some(run) = worker.running.take() {
                run.unit.fail(|_| ErrorKind::PoolBroken {
                    reason: reason.clone(),
                });
            }
            worker.stop(Stop::Shutdown, grace, now);
        }
    }

    /// Stops now: queued calls and calls that have not started fail as terminated;
    /// running calls are stopped with their workers and settled when those are gone
    /// (as `Stopped`, with their pid, start and duration; finished ones are delivered).
    fn terminate(&mut self) {
        self.terminating = true;
        self.closing = true;
        let mut unstarted = VecDeque::new();
        let grace = self.cfg.escalation();
        let now = self.io.clocks().now;
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            // If the page changed under us, whatever it runs is settled at its exit.
            let _ = worker.take_back_unstarted(&mut unstarted);
            worker.stop(Stop::Shutdown, grace, now);
        }
        for unit in self.queue.drain(..).chain(unstarted) {
            unit.fail(|task| ErrorKind::Terminated {
                task: task.to_string(),
            });
        }
    }

    /// Closes, and cancels every call that has not started (queued, or sent ahead and
    /// taken back); running calls go on and finish.
    pub(super) fn cancel_pending(&mut self) {
        self.closing = true;
        let mut unstarted = VecDeque::new();
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            if worker.stop.is_none() {
                let _ = worker.take_back_unstarted(&mut unstarted);
            }
        }
        for unit in self.queue.drain(..).chain(unstarted) {
            unit.fail(|task| ErrorKind::Cancelled {
                task: task.to_string(),
            });
        }
    }

    /// Terminates, and kills every worker's group at once.
    fn kill(&mut self) {
        self.terminate();
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            worker.kill_at = None;
            worker.link.kill();
        }
        for kill in self.group_kills.drain(..) {
            kill.link.kill();
        }
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
                    });
                }
            }
        }
    }
}

/// Whether a start failed on a temporary directory no retry can mend, for a spawned
/// worker or the fork server it would be forked from.
fn temp_dir_unfit(e: &Error) -> bool {
    match e.kind() {
        ErrorKind::Channel(io) => crate::os::temp_dir_unfit(io),
        ErrorKind::Forkserver(inner) => temp_dir_unfit(inner),
        _ => false,
    }
}
