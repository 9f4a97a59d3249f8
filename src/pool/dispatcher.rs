//! The dispatcher: the one owner of a pool's state.
//!
//! Everything else talks to it through [`Event`]s posted to the hub (`hub.rs`):
//! callers (submit, cancel, close, terminate, stats), worker starters, one reader
//! thread per worker (its messages, then `LinkClosed`), and the reaper (`Exited`).
//! Deadlines (task timeouts, kill-after-grace, exit settling) are the hub's timer
//! thread's business: it calls [`Dispatcher::on_timers`].
//!
//! A worker holds at most `max_in_flight` units; it runs them in order, so on its death
//! the first unanswered unit is the one that was running and the others had not started.
//! A dead worker's running unit fails (or is retried); if it was a batch of several jobs,
//! the culprit is unknown, so each job of the batch is queued again on its own (without
//! using a retry): a job that crashes its worker alone fails alone.

use std::collections::{HashMap, VecDeque};
use std::sync::{mpsc, Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use ipc_channel::ipc::IpcSender;
use supervisor_worker::arena::Outbox;
use supervisor_worker::protocol::{
    Frame, FromChild, Link, TaskOutcome, TaskRequest, TaskRequestRef, ToChild, ToChildRef,
};

use super::hub::{post_to, Hub};
use super::job::{Deliveries, Job, JobMeta, JobResult, PackedResults, Unit};
use super::reader::LinkReader;
use super::stats::{PoolStats, WorkerState, WorkerStats};
use super::{Config, RestartLimit};
use crate::error::{Error, ErrorKind};
use crate::launch::{self, Spec};
use crate::os;
use crate::process::no_result;
use crate::reaper::ChildSlot;

/// How long to wait, after a worker exited, for its channel to close before settling
/// its jobs: its reader may still be decoding a large last result, or a grandchild may
/// hold the channel open (then no more results can come, and this is the delay before
/// its jobs are reported).
const EXIT_SETTLE: Duration = Duration::from_secs(1);
/// How often a stopped worker's leftover process group is looked at, at first and at
/// most, while it waits for its SIGKILL (the pool cannot finish before it is empty).
const GROUP_CHECK: Duration = Duration::from_millis(1);
const GROUP_CHECK_MAX: Duration = Duration::from_millis(50);
/// Message id of the initializer.
const INIT_SEQ: u64 = 0;
/// A worker whose last unit took less than this per job runs "fast" tasks: it gets work
/// ahead of time and queued single tasks merged into batches, to hide round trips.
/// Slower tasks go one unit at a time, so nothing waits behind a long task.
const FAST_JOB: Duration = Duration::from_millis(1);
/// Most jobs merged into one message.
const MERGE_MAX: usize = 256;
/// Most socket-buffer bytes (see [`socket_bytes`]) taken by messages sent to a worker
/// ahead of its running unit: the buffer (about 208 KiB) must never fill, or a send
/// would block whichever thread holds the pool's state, and with it every deadline.
const AHEAD_BYTES: usize = 96 * 1024;
/// What the kernel charges a socket buffer per packet on top of its bytes (the packet's
/// bookkeeping; about 0.7 to 1 KiB on Linux).
const PACKET_COST: usize = 1024;
/// Exited workers remembered for `stats()`.
const MAX_HISTORY: usize = 10_000;

pub(crate) enum Event {
    Submit(Vec<Unit>),
    Cancel(u64, mpsc::SyncSender<bool>),
    Close,
    Terminate,
    Kill,
    Stats(mpsc::SyncSender<PoolStats>),
    Started {
        seat: usize,
        result: Result<(Arc<ChildSlot>, Link), Error>,
    },
    Message {
        worker: u64,
        msg: Result<FromChild, String>,
    },
    LinkClosed {
        worker: u64,
    },
    Exited {
        worker: u64,
    },
}

/// A worker's answer to a unit: one outcome per job, or a chunk's packed results.
enum Answer {
    Outcomes(Vec<TaskOutcome>),
    Packed {
        lens: Vec<u32>,
        data: Vec<u8>,
        others: Vec<(u32, TaskOutcome)>,
    },
}

impl Answer {
    fn len(&self) -> usize {
        match self {
            Answer::Outcomes(outcomes) => outcomes.len(),
            Answer::Packed { lens, .. } => lens.len(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The running unit exceeded its time limit.
    Timeout,
    /// The pool is terminating, broken, or the worker misbehaved.
    Shutdown,
}

struct InFlight {
    seq: u64,
    unit: Unit,
    /// When it became the running unit (the head of the worker's queue).
    since: Option<(Instant, SystemTime)>,
    deadline: Option<Instant>,
}

struct Worker {
    id: u64,
    slot: Arc<ChildSlot>,
    /// `None` once we closed our sender (the worker exits when its queue is empty).
    tx: Option<IpcSender<Frame>>,
    /// Reused shared memory for big messages to this worker.
    outbox: Outbox,
    /// Who reads its messages (`None`: no reader thread could start).
    reader: Option<Arc<LinkReader>>,
    in_flight: VecDeque<InFlight>,
    tasks_done: u64,
    initializing: bool,
    exited: bool,
    link_closed: bool,
    settle_at: Option<Instant>,
    stop: Option<Stop>,
    kill_at: Option<Instant>,
}

impl Worker {
    /// Whether a message or the end of the stream may come: anything but idle and
    /// healthy (a reader thread may park only then).
    fn expects_messages(&self) -> bool {
        !self.in_flight.is_empty()
            || self.initializing
            || self.stop.is_some()
            || self.exited
            || self.tx.is_none()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Forgotten: its reader thread ends (or ends once it has read the stream out).
        if let Some(reader) = &self.reader {
            reader.close();
        }
    }
}

#[derive(Default)]
struct Seat {
    worker: Option<Worker>,
    starting: bool,
    restarts: u32,
}

pub(crate) struct Dispatcher {
    cfg: Config,
    hub: Weak<Hub>,
    seats: Vec<Seat>,
    queue: VecDeque<Unit>,
    closing: bool,
    terminating: bool,
    broken: Option<String>,
    restart_log: VecDeque<Instant>,
    next_worker: u64,
    next_seq: u64,
    done: u64,
    failed: u64,
    restarts: u32,
    /// Per task: a moving average of the time one job takes (unknown = slow).
    job_time: HashMap<&'static str, Duration>,
    /// Workers that have exited, most recent last.
    exited: VecDeque<WorkerStats>,
    /// Process groups of stopped workers that died before their grace period ended
    /// while something of the group still ran: what they left behind (commands
    /// ignoring SIGTERM) gets SIGKILL on time, unless it ends first.
    group_kills: Vec<GroupKill>,
}

impl Dispatcher {
    pub(crate) fn new(cfg: Config, hub: Weak<Hub>) -> Dispatcher {
        let seats = (0..cfg.procs).map(|_| Seat::default()).collect();
        Dispatcher {
            cfg,
            hub,
            seats,
            queue: VecDeque::new(),
            closing: false,
            terminating: false,
            broken: None,
            restart_log: VecDeque::new(),
            next_worker: 1,
            next_seq: 1,
            done: 0,
            failed: 0,
            restarts: 0,
            job_time: HashMap::new(),
            exited: VecDeque::new(),
            group_kills: Vec::new(),
        }
    }

    /// Closed and drained, or terminated: nothing left to do.
    pub(crate) fn finished(&self) -> bool {
        self.closing
            && self.queue.is_empty()
            && self.group_kills.is_empty()
            && self.seats.iter().all(|s| s.worker.is_none() && !s.starting)
    }

    pub(crate) fn handle(&mut self, event: Event) {
        match event {
            Event::Submit(units) => {
                if let Some(reason) = &self.broken {
                    for unit in units {
                        fail_unit(unit, |_| ErrorKind::PoolBroken {
                            reason: reason.clone(),
                        });
                    }
                } else if self.closing {
                    for unit in units {
                        fail_unit(unit, |_| ErrorKind::PoolClosed);
                    }
                } else {
                    self.queue.extend(units);
                }
            }
            Event::Cancel(id, reply) => {
                let _ = reply.send(self.cancel(id));
            }
            Event::Close => self.closing = true,
            Event::Terminate => self.terminate(),
            Event::Kill => {
                self.terminate();
                for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
                    worker.kill_at = None;
                    let _ = worker.slot.signal_group(libc::SIGKILL);
                }
                for kill in self.group_kills.drain(..) {
                    let _ = kill.slot.signal_group(libc::SIGKILL);
                }
            }
            Event::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            Event::Started { seat, result } => self.on_started(seat, result),
            Event::Message { worker, msg } => self.on_message(worker, msg),
            Event::LinkClosed { worker } => {
                if let Some(w) = self.worker_mut(worker) {
                    w.link_closed = true;
                    if w.exited {
                        self.finalize(worker);
                    } else {
                        // Its exit notice usually follows at once; if not, the worker is
                        // alive with a dead channel (see `on_timers`).
                        w.settle_at = Some(Instant::now() + EXIT_SETTLE);
                    }
                }
            }
            Event::Exited { worker } => {
                if let Some(w) = self.worker_mut(worker) {
                    w.exited = true;
                    if w.link_closed {
                        self.finalize(worker);
                    } else {
                        w.settle_at = Some(Instant::now() + EXIT_SETTLE);
                    }
                }
            }
        }
    }

    fn worker_mut(&mut self, id: u64) -> Option<&mut Worker> {
        self.seats
            .iter_mut()
            .filter_map(|s| s.worker.as_mut())
            .find(|w| w.id == id)
    }

    fn seat_of(&self, id: u64) -> Option<usize> {
        self.seats
            .iter()
            .position(|s| s.worker.as_ref().is_some_and(|w| w.id == id))
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

    fn start_worker(&mut self, seat: usize) {
        self.seats[seat].starting = true;
        let spec = Spec {
            method: self.cfg.method,
            nice: self.cfg.nice,
            daemon: true,
            name: format!("{}-{seat}", self.cfg.name),
            env_allowlist: self.cfg.env_allowlist.clone(),
        };
        let hub = self.hub.clone();
        let spawned = std::thread::Builder::new()
            .name("supervisor-start".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let result = launch::start_worker(&spec);
                post_to(&hub, Event::Started { seat, result });
            });
        if let Err(e) = spawned {
            self.seats[seat].starting = false;
            self.break_pool(format!("cannot start a thread to start workers: {e}"));
        }
    }

    fn on_started(&mut self, seat: usize, result: Result<(Arc<ChildSlot>, Link), Error>) {
        self.seats[seat].starting = false;
        let (slot, link) = match result {
            Ok(started) => started,
            Err(e) => {
                let permanent = matches!(
                    e.kind(),
                    ErrorKind::NiceNotPermitted { .. }
                        | ErrorKind::NiceOutOfRange(_)
                        | ErrorKind::ForkUnavailable { .. }
                        | ErrorKind::Registry(_)
                        | ErrorKind::DaemonCannotStart { .. }
                );
                let reason = format!(
                    "cannot start a worker: {}",
                    supervisor_worker::error_chain(&e)
                );
                if permanent {
                    self.break_pool(reason);
                } else if self.count_restart(&reason) && self.wants_workers() {
                    self.start_worker(seat);
                }
                return;
            }
        };
        let id = self.next_worker;
        self.next_worker += 1;
        let reader = LinkReader::start(id, link.rx, self.hub.clone());
        let reading = reader.is_some();
        let hub = self.hub.clone();
        // The reaper runs this: it only leaves the event for the pool thread.
        slot.on_exit(Box::new(move || {
            if let Some(hub) = hub.upgrade() {
                hub.post_later(Event::Exited { worker: id });
            }
        }));
        let mut worker = Worker {
            id,
            slot,
            tx: Some(link.tx),
            outbox: Outbox::new(),
            reader,
            in_flight: VecDeque::new(),
            tasks_done: 0,
            initializing: false,
            exited: false,
            link_closed: false,
            settle_at: None,
            stop: None,
            kill_at: None,
        };
        if let Some((task, arg)) = &self.cfg.initializer {
            let req = ToChild::Task(TaskRequest {
                id: INIT_SEQ,
                task: task.to_string(),
                arg: arg.clone(),
            });
            worker.initializing = true;
            if let Some(tx) = &worker.tx {
                let _ = worker.outbox.send(tx, &req);
            }
        }
        if self.terminating || self.broken.is_some() || !reading {
            // Without a reader nobody would hear from this worker: stop it now.
            worker.link_closed = !reading;
            stop_worker(&mut worker, Stop::Shutdown, self.cfg.grace);
        }
        self.seats[seat].worker = Some(worker);
    }

    fn on_message(&mut self, id: u64, msg: Result<FromChild, String>) {
        let Some(seat) = self.seat_of(id) else { return };
        let now = Instant::now();
        let timeout = self.cfg.task_timeout;
        let max_tasks = self.cfg.max_tasks_per_child;
        let worker = self.seats[seat].worker.as_mut().expect("seat_of found it");
        let pid = worker.slot.pid();
        let (seq, answer) = match msg {
            Ok(FromChild::Done { id, outcome }) => (id, Answer::Outcomes(vec![outcome])),
            Ok(FromChild::BatchDone { first_id, outcomes }) => {
                (first_id, Answer::Outcomes(outcomes))
            }
            Ok(FromChild::PackedDone {
                first_id,
                lens,
                data,
                others,
            }) => {
                if let Err(detail) = check_packed(&lens, data.len(), &others) {
                    return self.protocol_error(seat, detail);
                }
                (
                    first_id,
                    Answer::Packed {
                        lens,
                        data: data.into_vec(),
                        others,
                    },
                )
            }
            Ok(FromChild::SetupFailed(e)) => {
                let reason = format!(
                    "worker {pid} could not set itself up ({:?}, errno {})",
                    e.step, e.errno
                );
                self.break_pool(reason);
                return;
            }
            Ok(other) => return self.protocol_error(seat, format!("unexpected message {other:?}")),
            Err(detail) => return self.protocol_error(seat, detail),
        };
        if worker.initializing {
            let outcomes = match answer {
                Answer::Outcomes(outcomes) if seq == INIT_SEQ && outcomes.len() == 1 => outcomes,
                _ => return self.protocol_error(seat, "expected the initializer's result".into()),
            };
            worker.initializing = false;
            let task = self.cfg.initializer.as_ref().map_or("", |(t, _)| *t);
            match outcomes.into_iter().next() {
                Some(TaskOutcome::Returned { error: None, .. }) => {}
                Some(TaskOutcome::Returned {
                    error: Some(message),
                    ..
                }) => {
                    self.break_pool(format!(
                        "the initializer failed: task `{task}` returned an error in process {pid}: {message}"
                    ));
                }
                Some(outcome) => {
                    let e = match outcome_to_result(task, pid, outcome) {
                        Err(e) => supervisor_worker::error_chain(&e),
                        Ok(_) => format!("task `{task}` returned an error"),
                    };
                    self.break_pool(format!("the initializer failed: {e}"));
                }
                None => {}
            }
            return;
        }
        let Some(mut head) = worker.in_flight.pop_front() else {
            return self.protocol_error(seat, format!("result {seq} for no running task"));
        };
        let packed = matches!(answer, Answer::Packed { .. });
        if head.seq != seq || head.unit.len() != answer.len() || head.unit.chunk.is_some() != packed
        {
            worker.in_flight.push_front(head);
            return self.protocol_error(
                seat,
                format!("result {seq} does not match the running task"),
            );
        }
        let task = head.unit.task;
        let n = answer.len();
        let per_job = head.since.map_or(Duration::ZERO, |(since, _)| {
            now.duration_since(since) / n.max(1) as u32
        });
        if head.since.is_some() {
            let average = self.job_time.entry(task).or_insert(per_job);
            *average = (*average * 7 + per_job * 3) / 10;
        }
        let outcomes = match answer {
            Answer::Outcomes(outcomes) => outcomes,
            Answer::Packed { lens, data, others } => {
                // Checked on arrival: each of `others` is a distinct failed call.
                let failed = others.len() as u64;
                self.failed += failed;
                self.done += n as u64 - failed;
                worker.tasks_done += n as u64;
                let others = others
                    .into_iter()
                    .map(|(i, o)| (i, outcome_to_result(task, pid, o)))
                    .collect();
                if let Some(chunk) = head.unit.chunk.take() {
                    let meta = JobMeta {
                        pid,
                        attempts: 1,
                        started: head.since.map(|(_, wall)| wall),
                        duration: per_job,
                    };
                    let first_index = chunk.first_index;
                    chunk.deliver(PackedResults {
                        first_index,
                        lens,
                        data,
                        others,
                        meta,
                    });
                }
                Vec::new()
            }
        };
        let mut deliveries = Deliveries::default();
        for (i, (job, outcome)) in head.unit.jobs.into_iter().zip(outcomes).enumerate() {
            let failed = !matches!(outcome, TaskOutcome::Returned { error: None, .. });
            if failed {
                self.failed += 1;
            } else {
                self.done += 1;
            }
            let meta = JobMeta {
                pid,
                attempts: job.attempts + 1,
                started: head.since.map(|(_, wall)| wall + per_job * i as u32),
                duration: per_job,
            };
            deliveries.complete(job, outcome_to_result(task, pid, outcome), meta);
            worker.tasks_done += 1;
        }
        deliveries.flush();
        if let Some(next) = worker
            .in_flight
            .front_mut()
            .filter(|_| worker.stop.is_none())
        {
            // A stopped worker's next unit never starts: it must not be blamed for the stop.
            next.since = Some((now, SystemTime::now()));
            next.deadline = deadline(now, timeout, next.unit.len());
        }
        if max_tasks.is_some_and(|max| worker.tasks_done >= max) {
            // Recycle: no more work for this one; it exits once its queue is empty.
            worker.tx = None;
        }
    }

    fn protocol_error(&mut self, seat: usize, detail: String) {
        let grace = self.cfg.grace;
        if let Some(worker) = self.seats[seat].worker.as_mut() {
            let pid = worker.slot.pid();
            for unit in worker.in_flight.drain(..).map(|f| f.unit) {
                let detail = detail.clone();
                fail_unit(unit, move |_| ErrorKind::Protocol {
                    pid,
                    detail: detail.clone(),
                });
            }
            stop_worker(worker, Stop::Shutdown, grace);
        }
    }

    /// A worker's process exited and its channel closed: settle its jobs, replace it.
    fn finalize(&mut self, id: u64) {
        let Some(seat) = self.seat_of(id) else { return };
        let Some(mut worker) = self.seats[seat].worker.take() else {
            return;
        };
        let exit = worker.slot.exit().unwrap_or(crate::reaper::Exit::UNKNOWN);
        let pid = worker.slot.pid();
        let expected = worker.tx.is_none() && worker.in_flight.is_empty() && worker.stop.is_none();
        if let Some(kill_at) = worker.kill_at {
            if worker.slot.group_runs() {
                self.group_kills
                    .push(GroupKill::new(kill_at, worker.slot.clone()));
            }
        }
        self.exited.push_back(WorkerStats {
            pid,
            state: WorkerState::Exited {
                status: exit.status,
            },
            tasks_done: worker.tasks_done,
            restarts: self.seats[seat].restarts,
            cpu_time: exit.cpu_time,
            rss_kib: 0,
            peak_rss_kib: exit.peak_rss_kib,
        });
        if self.exited.len() > MAX_HISTORY {
            self.exited.pop_front();
        }
        if worker.initializing {
            let task = self.cfg.initializer.as_ref().map_or("", |(t, _)| *t);
            let e = no_result(task.to_string(), pid, exit);
            self.break_pool(format!("the initializer failed: {e}"));
            return;
        }
        let mut requeue: Vec<Unit> = Vec::new();
        // A head that never started (the worker was stopped first) is not to blame.
        let started = worker.in_flight.front().is_some_and(|f| f.since.is_some());
        let head = if started {
            worker.in_flight.pop_front()
        } else {
            None
        };
        if let Some(mut head) = head {
            head.unit.explode();
            let task = head.unit.task;
            let cause = |_: &Job| match worker.stop {
                Some(Stop::Timeout) => ErrorKind::TimedOut {
                    task: task.to_string(),
                    pid,
                    limit: self.cfg.task_timeout.unwrap_or_default(),
                }
                .into(),
                _ => no_result(task.to_string(), pid, exit),
            };
            if self.terminating {
                // Terminate already failed in-flight work.
            } else if head.unit.jobs.len() > 1 && worker.stop != Some(Stop::Shutdown) {
                for job in head.unit.jobs {
                    requeue.push(Unit {
                        task,
                        jobs: vec![job],
                        chunk: None,
                        solo: true,
                    });
                }
            } else {
                for mut job in head.unit.jobs {
                    if worker.stop != Some(Stop::Shutdown) && job.attempts < self.cfg.retries {
                        job.attempts += 1;
                        requeue.push(Unit {
                            task,
                            jobs: vec![job],
                            chunk: None,
                            solo: true,
                        });
                    } else {
                        let err = cause(&job);
                        self.failed += 1;
                        let meta = JobMeta {
                            pid,
                            attempts: job.attempts + 1,
                            started: head.since.map(|(_, wall)| wall),
                            duration: head.since.map_or(Duration::ZERO, |(t, _)| t.elapsed()),
                        };
                        job.complete_with(Err(err), meta);
                    }
                }
            }
        }
        requeue.extend(worker.in_flight.drain(..).map(|f| f.unit));
        for unit in requeue.into_iter().rev() {
            self.queue.push_front(unit);
        }
        if !expected && !self.terminating && self.broken.is_none() {
            self.seats[seat].restarts += 1;
            self.restarts += 1;
            let reason = format!("worker {pid} ended with {}", exit.status);
            if !self.count_restart(&reason) {
                return;
            }
        }
        if self.wants_workers() {
            self.start_worker(seat);
        }
    }

    /// Records a restart; breaks the pool (returning false) past the limit.
    fn count_restart(&mut self, reason: &str) -> bool {
        let RestartLimit { max, within } = self.cfg.restart_limit;
        let now = Instant::now();
        self.restart_log.push_back(now);
        while self
            .restart_log
            .front()
            .is_some_and(|t| now.duration_since(*t) > within)
        {
            self.restart_log.pop_front();
        }
        if self.restart_log.len() as u32 > max {
            self.break_pool(format!(
                "{} worker restarts within {within:?} (limit {max}); last: {reason}",
                self.restart_log.len()
            ));
            return false;
        }
        true
    }

    fn wants_workers(&self) -> bool {
        !self.terminating && self.broken.is_none() && (!self.closing || !self.queue.is_empty())
    }

    fn break_pool(&mut self, reason: String) {
        if self.broken.is_some() {
            return;
        }
        self.broken = Some(reason.clone());
        self.closing = true;
        for unit in self.queue.drain(..) {
            fail_unit(unit, |_| ErrorKind::PoolBroken {
                reason: reason.clone(),
            });
        }
        let grace = self.cfg.grace;
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            for unit in worker.in_flight.drain(..).map(|f| f.unit) {
                fail_unit(unit, |_| ErrorKind::PoolBroken {
                    reason: reason.clone(),
                });
            }
            stop_worker(worker, Stop::Shutdown, grace);
        }
    }

    fn terminate(&mut self) {
        self.terminating = true;
        self.closing = true;
        for unit in self.queue.drain(..) {
            fail_unit(unit, |task| ErrorKind::Terminated {
                task: task.to_string(),
            });
        }
        let grace = self.cfg.grace;
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            for unit in worker.in_flight.drain(..).map(|f| f.unit) {
                fail_unit(unit, |task| ErrorKind::Terminated {
                    task: task.to_string(),
                });
            }
            stop_worker(worker, Stop::Shutdown, grace);
        }
    }

    /// The earliest deadline, if any.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let group_kill = self.group_kills.iter().map(GroupKill::next_wake).min();
        self.seats
            .iter()
            .filter_map(|s| s.worker.as_ref())
            .flat_map(|w| {
                let deadline = if w.stop.is_none() {
                    w.in_flight.front().and_then(|f| f.deadline)
                } else {
                    None
                };
                [deadline, w.kill_at, w.settle_at]
            })
            .flatten()
            .chain(group_kill)
            .min()
    }

    /// Acts on every deadline that has passed.
    pub(crate) fn on_timers(&mut self, now: Instant) {
        self.group_kills.retain_mut(|kill| kill.pending(now));
        let grace = self.cfg.grace;
        let mut settle = Vec::new();
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            if worker.stop.is_none()
                && worker
                    .in_flight
                    .front()
                    .and_then(|f| f.deadline)
                    .is_some_and(|d| d <= now)
            {
                stop_worker(worker, Stop::Timeout, grace);
            }
            if worker.kill_at.is_some_and(|k| k <= now) {
                worker.kill_at = None;
                let _ = worker.slot.signal_group(libc::SIGKILL);
            }
            if worker.settle_at.is_some_and(|s| s <= now) {
                worker.settle_at = None;
                settle.push(worker.id);
            }
        }
        for id in settle {
            let alive = self.worker_mut(id).is_some_and(|w| !w.exited);
            if alive {
                // The channel closed but the process lives on: it can never answer.
                if let Some(seat) = self.seat_of(id) {
                    self.protocol_error(seat, "its channel closed while it kept running".into());
                }
            } else {
                self.finalize(id);
            }
        }
    }

    /// Gives queued work to workers that can take it, and tells each worker's reader
    /// whether anything is expected from it.
    pub(crate) fn dispatch(&mut self) {
        self.assign();
        for worker in self.seats.iter().filter_map(|s| s.worker.as_ref()) {
            if let Some(reader) = &worker.reader {
                reader.expect(worker.expects_messages());
            }
        }
    }

    fn assign(&mut self) {
        if self.broken.is_some() || self.terminating {
            return;
        }
        let now = Instant::now();
        let timeout = self.cfg.task_timeout;
        let max_tasks = self.cfg.max_tasks_per_child;
        let workers = self
            .seats
            .iter()
            .filter(|s| s.worker.is_some())
            .count()
            .max(1);
        let fast = |task: &str| self.job_time.get(task).is_some_and(|t| *t < FAST_JOB);
        // Two passes: first one unit per idle worker, then work ahead for fast workers.
        for pass in 0..2 {
            for seat in self.seats.iter_mut() {
                let Some(worker) = seat.worker.as_mut() else {
                    continue;
                };
                if worker.initializing || worker.stop.is_some() || worker.exited {
                    continue;
                }
                let Some(tx) = &worker.tx else { continue };
                let next_fast = self.queue.front().is_some_and(|u| fast(u.task));
                let limit = match pass {
                    0 => 1,
                    _ if next_fast => self.cfg.max_in_flight,
                    _ => 1,
                };
                while worker.in_flight.len() < limit {
                    let queued_jobs: usize = worker.in_flight.iter().map(|f| f.unit.len()).sum();
                    let allowance = max_tasks.map_or(usize::MAX, |max| {
                        (max.saturating_sub(worker.tasks_done) as usize).saturating_sub(queued_jobs)
                    });
                    if allowance == 0 {
                        break;
                    }
                    // Room left in the worker's socket buffer: its running unit has been
                    // read; what was sent ahead may sit there unread.
                    let room = if worker.in_flight.is_empty() {
                        usize::MAX
                    } else {
                        let ahead: usize = worker
                            .in_flight
                            .iter()
                            .skip(1)
                            .map(|f| socket_bytes(&f.unit))
                            .sum();
                        AHEAD_BYTES.saturating_sub(ahead)
                    };
                    if self.queue.front().is_some_and(|u| socket_bytes(u) > room) {
                        break;
                    }
                    let Some(mut unit) = self.queue.pop_front() else {
                        break;
                    };
                    if unit.len() > allowance {
                        // Keep a recycled worker to its task budget: split the unit.
                        unit.explode();
                        let rest = unit.jobs.split_off(allowance);
                        self.queue.push_front(Unit {
                            task: unit.task,
                            jobs: rest,
                            chunk: None,
                            solo: unit.solo,
                        });
                    } else if !unit.solo && unit.chunk.is_none() && fast(unit.task) {
                        // Merge queued single tasks of the same kind into one message,
                        // up to a fair share of the queue.
                        let share = (self.queue.len() / workers).min(MERGE_MAX).min(allowance);
                        let mut bound = encoded_bound(&unit);
                        while unit.jobs.len() < share
                            && self.queue.front().is_some_and(|u| {
                                u.task == unit.task
                                    && u.jobs.len() == 1
                                    && !u.solo
                                    && wire_cost(bound + encoded_bound(u)) <= room
                            })
                        {
                            bound += self.queue.front().map_or(0, encoded_bound);
                            if let Some(next) = self.queue.pop_front() {
                                unit.jobs.extend(next.jobs);
                            }
                        }
                    }
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    match worker.outbox.send(tx, &unit_message(seq, &unit)) {
                        Ok(()) => {
                            // An `apply` caller on this very thread reads the reply
                            // itself if nobody else is reading this worker.
                            if let (Some(caller), Some(reader)) =
                                (unit.waiting_caller(), &worker.reader)
                            {
                                if reader.lend() {
                                    caller.borrow_link(reader.clone());
                                }
                            }
                            let head = worker.in_flight.is_empty();
                            worker.in_flight.push_back(InFlight {
                                seq,
                                since: head.then(|| (now, SystemTime::now())),
                                deadline: if head {
                                    deadline(now, timeout, unit.len())
                                } else {
                                    None
                                },
                                unit,
                            });
                        }
                        Err(_) => {
                            // The worker is going away; its exit will be handled.
                            self.queue.push_front(unit);
                            worker.tx = None;
                            break;
                        }
                    }
                }
                if max_tasks.is_some_and(|max| worker.tasks_done >= max) {
                    worker.tx = None;
                }
            }
        }
        // Nothing left to do: let idle workers exit.
        if self.closing && self.queue.is_empty() {
            for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
                if worker.in_flight.is_empty() && !worker.initializing {
                    worker.tx = None;
                }
            }
        }
        // Refill empty seats (after a recycle) when there is work or the pool is open.
        if self.wants_workers() {
            for seat in 0..self.seats.len() {
                if self.seats[seat].worker.is_none() && !self.seats[seat].starting {
                    self.start_worker(seat);
                }
            }
        }
    }

    /// A snapshot of the pool.
    pub(crate) fn stats(&self) -> PoolStats {
        let workers = self
            .seats
            .iter()
            .filter_map(|s| s.worker.as_ref().map(|w| (s, w)))
            .map(|(seat, w)| {
                let pid = w.slot.pid();
                let (cpu_time, rss_kib, peak_rss_kib) =
                    os::proc_usage(pid as i32).unwrap_or_default();
                let state = if w.stop.is_some() || w.exited {
                    WorkerState::Stopping
                } else if w.initializing {
                    WorkerState::Initializing
                } else if let Some(f) = w.in_flight.front() {
                    WorkerState::Busy {
                        task: f.unit.task.to_string(),
                        job: f.unit.first_id(),
                    }
                } else if w.tx.is_none() {
                    WorkerState::Retiring
                } else {
                    WorkerState::Idle
                };
                WorkerStats {
                    pid,
                    state,
                    tasks_done: w.tasks_done,
                    restarts: seat.restarts,
                    cpu_time,
                    rss_kib,
                    peak_rss_kib,
                }
            })
            .collect();
        let running = self
            .seats
            .iter()
            .filter_map(|s| s.worker.as_ref())
            .flat_map(|w| w.in_flight.front())
            .map(|f| f.unit.len())
            .sum();
        let waiting_in_workers: usize = self
            .seats
            .iter()
            .filter_map(|s| s.worker.as_ref())
            .flat_map(|w| w.in_flight.iter().skip(1))
            .map(|f| f.unit.len())
            .sum();
        PoolStats {
            workers,
            starting: self.seats.iter().filter(|s| s.starting).count(),
            queued: self.queue.iter().map(Unit::len).sum::<usize>() + waiting_in_workers,
            running,
            done: self.done,
            failed: self.failed,
            restarts: self.restarts,
            broken: self.broken.clone(),
            exited: self.exited.iter().cloned().collect(),
        }
    }
}

/// A dead worker's process group, SIGKILLed at the end of the grace period unless it
/// empties first (looked at with a growing interval).
struct GroupKill {
    kill_at: Instant,
    check_at: Instant,
    every: Duration,
    slot: Arc<ChildSlot>,
}

impl GroupKill {
    fn new(kill_at: Instant, slot: Arc<ChildSlot>) -> GroupKill {
        GroupKill {
            kill_at,
            check_at: Instant::now() + GROUP_CHECK,
            every: GROUP_CHECK,
            slot,
        }
    }

    fn next_wake(&self) -> Instant {
        self.kill_at.min(self.check_at)
    }

    /// Acts on what is due at `now`; false once nothing is left to do.
    fn pending(&mut self, now: Instant) -> bool {
        if self.kill_at <= now {
            let _ = self.slot.signal_group(libc::SIGKILL);
            return false;
        }
        if self.check_at > now {
            return true;
        }
        if !self.slot.group_runs() {
            return false;
        }
        self.every = (self.every * 2).min(GROUP_CHECK_MAX);
        self.check_at = now + self.every;
        true
    }
}

fn stop_worker(worker: &mut Worker, why: Stop, grace: Duration) {
    if worker.stop.is_some() {
        return;
    }
    worker.stop = Some(why);
    worker.tx = None;
    let _ = worker.slot.signal(libc::SIGTERM, true);
    // A grace too long to represent means "never escalate".
    worker.kill_at = Instant::now().checked_add(grace);
}

/// At most what a unit's message takes in the worker's socket buffer.
fn socket_bytes(unit: &Unit) -> usize {
    wire_cost(encoded_bound(unit))
}

/// What a message of at most `encoded` bytes takes in a socket buffer: its bytes, at
/// most the inline limit (anything bigger travels in shared memory, but a bound over
/// the limit may belong to a message under it), plus the packet's bookkeeping.
fn wire_cost(encoded: usize) -> usize {
    encoded.min(supervisor_worker::protocol::INLINE_LIMIT) + PACKET_COST
}

/// A bound on the encoded size of a unit's message (varint lengths count as their
/// largest; the task name and the message's own fields as 64 bytes more than the name).
fn encoded_bound(unit: &Unit) -> usize {
    let fixed = unit.task.len() + 64;
    match &unit.chunk {
        Some(chunk) => fixed + chunk.data.len() + chunk.lens.len() * 5,
        None => fixed + unit.jobs.iter().map(|j| j.arg.len() + 9).sum::<usize>(),
    }
}

/// When a unit of `jobs` jobs started at `now` times out; `None` without a limit (or
/// with one too long to represent).
fn deadline(now: Instant, limit: Option<Duration>, jobs: usize) -> Option<Instant> {
    let per_unit = limit?.checked_mul(u32::try_from(jobs).ok()?)?;
    now.checked_add(per_unit)
}

/// A worker's packed answer must describe its data exactly: the values' lengths add
/// up to the data, and the failed calls are listed once each, in order, at positions
/// that have no value.
fn check_packed(lens: &[u32], data: usize, others: &[(u32, TaskOutcome)]) -> Result<(), String> {
    let total: u64 = lens.iter().map(|l| u64::from(*l)).sum();
    if total != data as u64 {
        return Err(format!(
            "a chunk's values add up to {total} bytes, {data} were sent"
        ));
    }
    let mut next = 0usize;
    for (pos, outcome) in others {
        let pos = *pos as usize;
        if pos < next || lens.get(pos).is_none_or(|l| *l != 0) {
            return Err(format!("a chunk's outcome {pos} is out of place"));
        }
        if matches!(outcome, TaskOutcome::Returned { error: None, .. }) {
            return Err(format!(
                "a chunk's plain value {pos} is listed as a failure"
            ));
        }
        next = pos + 1;
    }
    Ok(())
}

/// Fails every call of `unit` with the error `error` makes from the task's name.
fn fail_unit(unit: Unit, error: impl Fn(&'static str) -> ErrorKind) {
    unit.fail(error);
}

fn unit_message(seq: u64, unit: &Unit) -> ToChildRef<'_> {
    if let Some(chunk) = &unit.chunk {
        ToChildRef::Packed {
            first_id: seq,
            task: unit.task,
            lens: &chunk.lens,
            data: serde_bytes::Bytes::new(&chunk.data),
        }
    } else if let [job] = unit.jobs.as_slice() {
        ToChildRef::Task(TaskRequestRef {
            id: seq,
            task: unit.task,
            arg: &job.arg,
        })
    } else {
        ToChildRef::Batch {
            first_id: seq,
            task: unit.task,
            args: unit
                .jobs
                .iter()
                .map(|j| serde_bytes::Bytes::new(&j.arg))
                .collect(),
        }
    }
}

/// Turns a worker's outcome into a job result (bytes of the value, or a typed error).
pub(crate) fn outcome_to_result(task: &str, pid: u32, outcome: TaskOutcome) -> JobResult {
    if let TaskOutcome::Returned { value, .. } = outcome {
        return Ok(value);
    }
    let task = task.to_string();
    match outcome {
        TaskOutcome::Returned { value, .. } => Ok(value),
        TaskOutcome::Panicked {
            message,
            location,
            backtrace,
        } => Err(ErrorKind::Panicked {
            task,
            pid,
            message,
            location,
            backtrace,
        }
        .into()),
        TaskOutcome::UnknownTask { name } => Err(ErrorKind::UnknownTask { task: name, pid }.into()),
        TaskOutcome::BadArgument { message } => {
            Err(ErrorKind::DecodeArgument { task, pid, message }.into())
        }
        TaskOutcome::BadResult { message } => {
            Err(ErrorKind::EncodeResult { task, pid, message }.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panicked() -> TaskOutcome {
        TaskOutcome::Panicked {
            message: "boom".into(),
            location: None,
            backtrace: None,
        }
    }

    /// A worker's packed answer that does not describe its data exactly is refused
    /// (the worker is then stopped as a protocol offender), so a failure can never be
    /// read as a value.
    #[test]
    fn packed_answers_must_describe_their_data_exactly() {
        assert!(check_packed(&[2, 0, 1], 3, &[(1, panicked())]).is_ok());
        assert!(check_packed(&[], 0, &[]).is_ok());
        // Out of order, repeated, out of range, or where a value is.
        assert!(check_packed(&[0, 0, 0], 0, &[(2, panicked()), (1, panicked())]).is_err());
        assert!(check_packed(&[0, 0], 0, &[(1, panicked()), (1, panicked())]).is_err());
        assert!(check_packed(&[0], 0, &[(1, panicked())]).is_err());
        assert!(check_packed(&[1, 0], 1, &[(0, panicked())]).is_err());
        let plain = TaskOutcome::Returned {
            value: vec![1],
            error: None,
        };
        assert!(check_packed(&[0], 0, &[(0, plain)]).is_err());
        // Lengths that do not add up to the data.
        assert!(check_packed(&[2, 2], 3, &[]).is_err());
        assert!(check_packed(&[u32::MAX, u32::MAX], 10, &[]).is_err());
    }
}
