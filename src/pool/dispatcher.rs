//! The dispatcher: the one owner of a pool's state.
//!
//! Everything else talks to it through [`Event`]s posted to the hub (`hub.rs`):
//! callers (submit, cancel, close, terminate, stats), worker starters, one reader
//! thread per worker (its messages, then `LinkClosed`), and the reaper (`Exited`).
//! Deadlines (task timeouts, kill-after-grace, exit settling, delayed restarts) are the
//! hub's timer thread's business: it calls [`Dispatcher::on_timers`].
//!
//! A worker runs one unit at a time: one call, a batch of calls of one task, or a chunk
//! of a `map`. Every call stays the dispatcher's until the worker claims it on its
//! progress page (`supervisor_worker::progress`), so the dispatcher always knows which
//! call runs and since when, and takes unstarted calls back when another worker is
//! idle, when the running call times out, or when the worker dies. The decisions are
//! in `running.rs` (time limits, deaths, take-backs) and `storm.rs` (restarts).

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{mpsc, Arc, Weak};
use std::time::{Duration, Instant};

use ipc_channel::ipc::IpcSender;
use supervisor_worker::arena::Outbox;
use supervisor_worker::progress::{Logged, Progress};
use supervisor_worker::protocol::{
    send_frame, Frame, FromChild, Link, TaskOutcome, TaskRequest, TaskRequestRef, Timing, ToChild,
    ToChildRef,
};

use super::hub::{post_to, Hub};
use super::job::{Deliveries, Job, JobMeta, JobResult, PackedResults, Unit};
use super::reader::LinkReader;
use super::running::{
    death_split, timeout_step, Clocks, Running, TimeoutStep, ANSWER_LOOK, ANSWER_WAIT,
};
use super::stats::{PoolStats, WorkerState, WorkerStats};
use super::storm::{Storm, Verdict};
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
/// Tasks whose calls take less than this (a moving average per task) have queued
/// single calls merged into one batch, to hide round trips. Merging never changes what
/// a call sees (each is claimed, timed and answered on its own); it is only not worth
/// it for slow tasks.
const FAST_JOB: Duration = Duration::from_millis(1);
/// How long a call must have run before an idle worker takes the unstarted calls
/// queued behind it on its worker: about the cost of moving them (a round trip).
const STEAL_AFTER: Duration = Duration::from_micros(100);
/// Most jobs merged into one message.
const MERGE_MAX: usize = 256;
/// Exited workers remembered for `stats()`.
const MAX_HISTORY: usize = 1_000;

pub(crate) enum Event {
    Submit(Vec<Unit>),
    /// Nobody reads this result stream any more (a dropped `imap`).
    ForgetStream(u64),
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

/// A worker's answer to part of a unit: one outcome per call, or a chunk's packed
/// results.
enum Answer {
    Outcomes(Vec<TaskOutcome>, Vec<Timing>),
    Packed {
        lens: Vec<u32>,
        data: Vec<u8>,
        others: Vec<(u32, TaskOutcome)>,
    },
}

impl Answer {
    fn len(&self) -> usize {
        match self {
            Answer::Outcomes(outcomes, _) => outcomes.len(),
            Answer::Packed { lens, .. } => lens.len(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The running call exceeded its time limit.
    Timeout,
    /// The worker did not start the work it was sent within the time limit.
    Unresponsive,
    /// The pool is terminating, broken, or the worker misbehaved.
    Shutdown,
}

struct Worker {
    id: u64,
    slot: Arc<ChildSlot>,
    /// `None` once we closed our sender (the worker exits when its queue is empty).
    tx: Option<IpcSender<Frame>>,
    /// Reused shared memory for big messages to this worker.
    outbox: Outbox,
    /// Where it claims each call before running it.
    progress: Progress,
    /// Who reads its messages (`None`: no reader thread could start).
    reader: Option<Arc<LinkReader>>,
    running: Option<Running>,
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
        self.running.is_some()
            || self.initializing
            || self.stop.is_some()
            || self.exited
            || self.tx.is_none()
    }

    /// Idle, healthy and open for work.
    fn takes_work(&self) -> bool {
        self.running.is_none()
            && !self.initializing
            && self.stop.is_none()
            && !self.exited
            && self.tx.is_some()
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
    /// A replacement starts no earlier than this (restart back-off).
    start_at: Option<Instant>,
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
    storm: Storm,
    next_worker: u64,
    next_seq: u64,
    done: u64,
    failed: u64,
    restarts: u32,
    /// Per task: a moving average of the time one call takes (unknown = slow).
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
        let storm = Storm::new(cfg.restart_limit);
        Dispatcher {
            cfg,
            hub,
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
            Event::ForgetStream(stream) => self.forget_stream(stream),
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

    /// Drops every call of result stream `stream` that has not started: queued ones,
    /// and those waiting behind a running call (taken back). Running calls finish.
    fn forget_stream(&mut self, stream: u64) {
        let mut back = VecDeque::new();
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            let ours = worker
                .running
                .as_ref()
                .is_some_and(|r| r.unit.jobs.iter().any(|j| j.stream() == Some(stream)));
            if ours && worker.stop.is_none() {
                let _ = Dispatcher::take_back_unstarted(worker, &mut back);
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
        self.queue.retain(|u| u.len() > 0);
    }

    fn start_worker(&mut self, seat: usize) {
        self.seats[seat].starting = true;
        self.seats[seat].start_at = None;
        let spec = Spec {
            method: self.cfg.method,
            nice: self.cfg.nice,
            daemon: true,
            name: format!("{}-{seat}", self.cfg.name),
            env_allowlist: self.cfg.env_allowlist.clone(),
            end_task_children: (!self.cfg.keep_task_children).then_some(self.cfg.grace),
        };
        let hub = self.hub.clone();
        let spawned = std::thread::Builder::new()
            .name("supervisor-start".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                // ipc-channel panics where it cannot get descriptors or memory: that is
                // a failed start like any other, never a starter thread that vanishes.
                let result = std::panic::catch_unwind(|| launch::start_worker(&spec))
                    .unwrap_or_else(|panic| Err(dependency_panic(panic.as_ref())));
                post_to(&hub, Event::Started { seat, result });
            });
        if let Err(e) = spawned {
            self.seats[seat].starting = false;
            let mut reason = format!("cannot start a thread to start workers: {e}");
            if let Some(limit) = crate::error::resource_limit(&e) {
                reason.push_str(&format!(" ({limit})"));
            }
            self.storm_death(seat, reason);
        }
    }

    /// A worker died (or could not start) before it finished anything: a replacement
    /// after a back-off, or the pool breaks.
    fn storm_death(&mut self, seat: usize, reason: String) {
        match self.storm.death(Instant::now()) {
            Verdict::RestartAt(at) => self.seats[seat].start_at = Some(at),
            Verdict::Break(deaths) => {
                let RestartLimit { max, within } = self.cfg.restart_limit;
                self.break_pool(format!(
                    "{deaths} workers died or failed to start within {within:?} without \
                     finishing a task (limit {max}); last: {reason}"
                ));
            }
        }
    }

    /// A worker could not be started (or set up) for a reason that may pass: a storm
    /// death, with the resource limit behind it named.
    fn start_failed(&mut self, seat: usize, e: &Error) {
        let mut reason = format!(
            "cannot start a worker: {}",
            supervisor_worker::error_chain(e)
        );
        if let Some(limit) = crate::error::resource_limit(e) {
            reason.push_str(&format!(" ({limit})"));
        }
        self.storm_death(seat, reason);
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
                if permanent {
                    let reason = format!(
                        "cannot start a worker: {}",
                        supervisor_worker::error_chain(&e)
                    );
                    self.break_pool(reason);
                } else {
                    self.start_failed(seat, &e);
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
        let made = std::panic::catch_unwind(|| {
            let progress = Progress::new();
            let page = progress.share();
            (progress, page)
        });
        let Ok((progress, page)) = made else {
            // No shared memory for its page (ipc-channel panics then): this worker
            // cannot be used. It is reaped as any exited child.
            let _ = slot.signal_group(libc::SIGKILL);
            return self.start_failed(seat, &dependency_panic(&"cannot create its page"));
        };
        let page = Frame::with_page(&ToChild::Progress, page);
        let mut worker = Worker {
            id,
            slot,
            tx: Some(link.tx),
            outbox: Outbox::new(),
            progress,
            reader,
            running: None,
            tasks_done: 0,
            initializing: false,
            exited: false,
            link_closed: false,
            settle_at: None,
            stop: None,
            kill_at: None,
        };
        // Sending shared memory makes ipc-channel map it once more, and it panics when
        // that fails (out of descriptors): a failed start, not a broken pool.
        let sent = match (page, &worker.tx) {
            (Ok(frame), Some(tx)) => {
                std::panic::catch_unwind(AssertUnwindSafe(|| send_frame(tx, frame).is_ok()))
            }
            _ => Ok(false),
        };
        let Ok(mut sent) = sent else {
            let _ = worker.slot.signal_group(libc::SIGKILL);
            return self.start_failed(seat, &dependency_panic(&"cannot send its page"));
        };
        if let Some((task, arg)) = &self.cfg.initializer {
            let req = ToChild::Task(TaskRequest {
                id: INIT_SEQ,
                task: task.to_string(),
                arg: arg.clone(),
            });
            worker.initializing = true;
            worker.progress.begin(INIT_SEQ, 1);
            if let Some(tx) = &worker.tx {
                sent = sent && worker.outbox.send(tx, &req).is_ok();
            }
        }
        if !sent {
            // It is going away; its exit is handled as any other.
            worker.tx = None;
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
        let (seq, from, answer) = match msg {
            Ok(FromChild::Done {
                id,
                outcome,
                timing,
            }) => (id, 0, Answer::Outcomes(vec![outcome], vec![timing])),
            Ok(FromChild::BatchDone {
                first_id,
                from,
                outcomes,
                timings,
            }) => {
                if timings.len() != outcomes.len() {
                    return self.protocol_error(seat, "a batch's timings do not match".into());
                }
                (first_id, from, Answer::Outcomes(outcomes, timings))
            }
            Ok(FromChild::PackedDone {
                first_id,
                from,
                lens,
                data,
                others,
            }) => {
                if let Err(detail) = check_packed(&lens, data.len(), &others) {
                    return self.protocol_error(seat, detail);
                }
                (
                    first_id,
                    from,
                    Answer::Packed {
                        lens,
                        data: data.into_vec(),
                        others,
                    },
                )
            }
            Ok(FromChild::SetupFailed(e)) => {
                let pid = self.seats[seat].worker.as_ref().map_or(0, |w| w.slot.pid());
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
        let worker = self.seats[seat].worker.as_mut().expect("seat_of found it");
        if worker.initializing {
            let outcome = match answer {
                Answer::Outcomes(outcomes, _) if seq == INIT_SEQ && outcomes.len() == 1 => {
                    outcomes.into_iter().next()
                }
                _ => return self.protocol_error(seat, "expected the initializer's result".into()),
            };
            worker.initializing = false;
            let pid = worker.slot.pid();
            self.on_initialized(pid, outcome);
            return;
        }
        let fits = worker.running.as_ref().is_some_and(|run| {
            run.seq == seq
                && run.answered == from
                && answer.len() as u64 + u64::from(from) <= u64::from(run.limit)
                && run.unit.chunk.is_some() == matches!(answer, Answer::Packed { .. })
        });
        if !fits {
            let detail = match &worker.running {
                Some(run) => format!(
                    "result {seq} (calls {from}..{}) does not match the running task {} (calls {}..{})",
                    u64::from(from) + answer.len() as u64,
                    run.seq,
                    run.answered,
                    run.limit
                ),
                None => format!("result {seq} for no running task"),
            };
            return self.protocol_error(seat, detail);
        }
        let clocks = Clocks::read();
        let pid = worker.slot.pid();
        let run = worker.running.as_mut().expect("checked to fit");
        let task = run.unit.task;
        let n = answer.len();
        let mut spent = Duration::ZERO;
        let mut deliveries = Deliveries::default();
        match answer {
            Answer::Outcomes(outcomes, timings) => {
                let jobs: Vec<Job> = run.unit.jobs.drain(..n).collect();
                for ((job, outcome), timing) in jobs.into_iter().zip(outcomes).zip(timings) {
                    let failed = !matches!(outcome, TaskOutcome::Returned { error: None, .. });
                    if failed {
                        self.failed += 1;
                    } else {
                        self.done += 1;
                    }
                    let duration = Duration::from_nanos(timing.duration_ns);
                    spent += duration;
                    let meta = JobMeta {
                        pid,
                        attempts: job.attempts + 1,
                        started: Some(clocks.wall(timing.start_ns)),
                        duration,
                    };
                    deliveries.complete(job, outcome_to_result(task, pid, outcome), meta);
                }
            }
            Answer::Packed { lens, data, others } => {
                // Checked on arrival: each of `others` is a distinct failed call.
                let failed = others.len() as u64;
                self.failed += failed;
                self.done += n as u64 - failed;
                spent = clocks.now.saturating_duration_since(run.sent);
                if let Some(chunk) = run.unit.chunk.as_mut() {
                    let others = others
                        .into_iter()
                        .map(|(i, o)| (i, outcome_to_result(task, pid, o)))
                        .collect();
                    let meta = JobMeta {
                        pid,
                        attempts: 1,
                        started: None,
                        duration: spent / n.max(1) as u32,
                    };
                    chunk.deliver(PackedResults {
                        first_index: chunk.next_index(),
                        lens,
                        data,
                        others,
                        meta,
                    });
                }
            }
        }
        deliveries.flush();
        run.answered += n as u32;
        worker.tasks_done += n as u64;
        if n > 0 {
            let per_job = spent / n as u32;
            let average = self.job_time.entry(task).or_insert(per_job);
            *average = (*average * 7 + per_job * 3) / 10;
            self.storm.progress();
        }
        if run.answered >= run.limit {
            worker.running = None;
            if self
                .cfg
                .max_tasks_per_child
                .is_some_and(|max| worker.tasks_done >= max)
            {
                // Recycle: no more work for this one; it exits once we close its link.
                worker.tx = None;
            }
        }
    }

    fn on_initialized(&mut self, pid: u32, outcome: Option<TaskOutcome>) {
        let task = self.cfg.initializer.as_ref().map_or("", |(t, _)| *t);
        match outcome {
            Some(TaskOutcome::Returned { error: None, .. }) | None => {}
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
        }
    }

    fn protocol_error(&mut self, seat: usize, detail: String) {
        let grace = self.cfg.grace;
        if let Some(worker) = self.seats[seat].worker.as_mut() {
            let pid = worker.slot.pid();
            if let Some(run) = worker.running.take() {
                run.unit.fail(move |_| ErrorKind::Protocol {
                    pid,
                    detail: detail.clone(),
                });
            }
            stop_worker(worker, Stop::Shutdown, grace);
        }
    }

    /// Takes back every call of `worker`'s unit that has not started (lowering its
    /// limit on the page), and queues them again at the front, as they were; the unit
    /// ends if everything it started is answered. Returns how many calls had been
    /// claimed; `None` if the worker moved on meanwhile (look again).
    fn take_back_unstarted(worker: &mut Worker, queue: &mut VecDeque<Unit>) -> Option<u32> {
        let run = worker.running.as_mut()?;
        let seen = worker.progress.snapshot();
        let claimed = run.claimed(&seen);
        if seen.seq == run.seq {
            let limit = worker.progress.take_back(seen, 0)?;
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
            worker.running = None;
        }
        Some(claimed)
    }

    /// A worker's process exited and its channel closed: settle its jobs, replace it.
    fn finalize(&mut self, id: u64) {
        let Some(seat) = self.seat_of(id) else { return };
        let Some(mut worker) = self.seats[seat].worker.take() else {
            return;
        };
        let clocks = Clocks::read();
        let exit = worker.slot.exit().unwrap_or(crate::reaper::Exit::UNKNOWN);
        let pid = worker.slot.pid();
        let expected = worker.tx.is_none() && worker.running.is_none() && worker.stop.is_none();
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
        let seen = worker.progress.snapshot();
        let mut ran_a_call = false;
        if let Some(mut run) = worker.running.take() {
            run.unit.explode();
            ran_a_call = self.recover_logged(&worker, &mut run, &clocks);
            let split = death_split(&run, run.claimed(&seen));
            let task = run.unit.task;
            let mut jobs = std::mem::take(&mut run.unit.jobs).into_iter();
            let started = Some(clocks.wall(seen.started_ns));
            for job in jobs.by_ref().take(split.lost.len()) {
                self.failed += 1;
                let meta = JobMeta {
                    pid,
                    attempts: job.attempts + 1,
                    started: None,
                    duration: Duration::ZERO,
                };
                let e = ErrorKind::ResultLost {
                    task: task.to_string(),
                    pid,
                };
                job.complete_with(Err(e.into()), meta);
            }
            let mut retry = None;
            if split.culprit.is_some() {
                ran_a_call = true;
                if let Some(mut job) = jobs.next() {
                    let retries_left = match worker.stop {
                        Some(Stop::Shutdown) => false,
                        _ => job.attempts < self.cfg.retries && !self.terminating,
                    };
                    if retries_left {
                        job.attempts += 1;
                        retry = Some(job);
                    } else {
                        let err = match worker.stop {
                            _ if self.terminating => ErrorKind::Stopped {
                                task: task.to_string(),
                                pid,
                            }
                            .into(),
                            Some(Stop::Timeout) => ErrorKind::TimedOut {
                                task: task.to_string(),
                                pid,
                                limit: self.cfg.task_timeout.unwrap_or_default(),
                            }
                            .into(),
                            _ => no_result(task.to_string(), pid, exit),
                        };
                        self.failed += 1;
                        let since = clocks.instant(seen.started_ns);
                        let meta = JobMeta {
                            pid,
                            attempts: job.attempts + 1,
                            started,
                            duration: clocks.now.saturating_duration_since(since),
                        };
                        job.complete_with(Err(err), meta);
                    }
                }
            }
            // Never started: back to the front of the queue as they were, behind the
            // retried culprit (input order).
            let unstarted: Vec<Job> = jobs.collect();
            if self.terminating || self.broken.is_some() {
                let reason = self.broken.clone();
                Unit::new(task, unstarted).fail(|task| match &reason {
                    Some(reason) => ErrorKind::PoolBroken {
                        reason: reason.clone(),
                    },
                    None => ErrorKind::Terminated {
                        task: task.to_string(),
                    },
                });
            } else if !unstarted.is_empty() {
                self.queue.push_front(Unit::new(task, unstarted));
            }
            if let Some(job) = retry {
                self.queue.push_front(Unit::new(task, vec![job]));
            }
        }
        if self.terminating || self.broken.is_some() {
            return;
        }
        if !expected {
            self.seats[seat].restarts += 1;
            self.restarts += 1;
            let counts = !ran_a_call && worker.stop.is_none();
            if counts {
                let reason = format!("worker {pid} ended with {}", exit.status);
                self.storm_death(seat, reason);
                return;
            }
        }
        if self.wants_workers() {
            self.start_worker(seat);
        }
    }

    /// Delivers the answers a dead worker logged but never sent (see
    /// `supervisor_worker::progress`): those calls finished, so they are never run
    /// again. True if there were any.
    fn recover_logged(&mut self, worker: &Worker, run: &mut Running, clocks: &Clocks) -> bool {
        let pid = worker.slot.pid();
        let task = run.unit.task;
        let mut deliveries = Deliveries::default();
        let mut any = false;
        for (position, logged) in worker.progress.logged(run.seq) {
            if position < run.answered {
                continue;
            }
            if position > run.answered || run.unit.jobs.is_empty() {
                break;
            }
            let (result, timing, failed) = match logged {
                Logged::Value(value) => (Ok(value), Timing::default(), false),
                Logged::Outcome(bytes) => {
                    match supervisor_worker::codec::decode::<(TaskOutcome, Timing)>(&bytes) {
                        Ok((outcome, timing)) => {
                            let failed =
                                !matches!(outcome, TaskOutcome::Returned { error: None, .. });
                            (outcome_to_result(task, pid, outcome), timing, failed)
                        }
                        Err(_) => break,
                    }
                }
            };
            let job = run.unit.jobs.remove(0);
            if failed {
                self.failed += 1;
            } else {
                self.done += 1;
            }
            let meta = JobMeta {
                pid,
                attempts: job.attempts + 1,
                started: (timing.start_ns != 0).then(|| clocks.wall(timing.start_ns)),
                duration: Duration::from_nanos(timing.duration_ns),
            };
            deliveries.complete(job, result, meta);
            run.answered += 1;
            any = true;
        }
        any
    }

    fn wants_workers(&self) -> bool {
        !self.terminating && self.broken.is_none() && (!self.closing || !self.queue.is_empty())
    }

    /// Breaks the pool for `reason` (also used by the hub when handling an event
    /// panicked: every waiter then gets `PoolBroken`, not `Terminated`).
    pub(crate) fn break_pool(&mut self, reason: String) {
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
        let grace = self.cfg.grace;
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            if let Some(run) = worker.running.take() {
                run.unit.fail(|_| ErrorKind::PoolBroken {
                    reason: reason.clone(),
                });
            }
            stop_worker(worker, Stop::Shutdown, grace);
        }
    }

    /// Stops now: queued calls and calls that have not started fail as terminated;
    /// running calls are stopped with their workers and settled when those are gone
    /// (as `Stopped`, with their pid, start and duration; finished ones are delivered).
    fn terminate(&mut self) {
        self.terminating = true;
        self.closing = true;
        let mut unstarted = VecDeque::new();
        let grace = self.cfg.grace;
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            // If the page changed under us, whatever it runs is settled at its exit.
            let _ = Dispatcher::take_back_unstarted(worker, &mut unstarted);
            stop_worker(worker, Stop::Shutdown, grace);
        }
        for unit in self.queue.drain(..).chain(unstarted) {
            unit.fail(|task| ErrorKind::Terminated {
                task: task.to_string(),
            });
        }
    }

    /// The earliest deadline, if any.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let group_kill = self.group_kills.iter().map(GroupKill::next_wake).min();
        let restarts = self.seats.iter().filter_map(|s| s.start_at);
        let steal = self.steal_look(&Clocks::read());
        self.seats
            .iter()
            .filter_map(|s| s.worker.as_ref())
            .flat_map(|w| {
                let look = match (&w.running, w.stop) {
                    (Some(run), None) => run.check_at,
                    _ => None,
                };
                [look, w.kill_at, w.settle_at]
            })
            .flatten()
            .chain(group_kill)
            .chain(restarts)
            .chain(steal)
            .min()
    }

    /// Acts on every deadline that has passed.
    pub(crate) fn on_timers(&mut self, now: Instant) {
        self.group_kills.retain_mut(|kill| kill.pending(now));
        let grace = self.cfg.grace;
        let limit = self.cfg.task_timeout;
        let mut settle = Vec::new();
        for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
            if let Some(limit) = limit {
                Dispatcher::look_at_time_limit(worker, &mut self.queue, now, limit, grace);
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
        for seat in &mut self.seats {
            if seat.start_at.is_some_and(|at| at <= now) {
                seat.start_at = None;
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

    /// Enforces the time limit of `worker`'s running call, if a look is due.
    fn look_at_time_limit(
        worker: &mut Worker,
        queue: &mut VecDeque<Unit>,
        now: Instant,
        limit: Duration,
        grace: Duration,
    ) {
        if worker.stop.is_some() {
            return;
        }
        let Some(run) = worker.running.as_mut() else {
            return;
        };
        if run.check_at.is_none_or(|at| at > now) {
            return;
        }
        if let Some(until) = run.stopping_at {
            // Expired: waiting for the answers of calls finished before the culprit.
            let claimed = run.claimed(&worker.progress.snapshot());
            if run.answered + 1 >= claimed || until <= now {
                stop_worker(worker, Stop::Timeout, grace);
            } else {
                run.check_at = Some((now + ANSWER_LOOK).min(until));
            }
            return;
        }
        let clocks = Clocks::read();
        let seen = worker.progress.snapshot();
        let started = clocks.instant(seen.started_ns);
        match timeout_step(run, &seen, started, now, limit) {
            TimeoutStep::LookAt(at) => run.check_at = Some(at),
            TimeoutStep::Expire => {
                let Some(claimed) = Dispatcher::take_back_unstarted(worker, queue) else {
                    // It moved on to its next call meanwhile: look again at once.
                    if let Some(run) = worker.running.as_mut() {
                        run.check_at = Some(now);
                    }
                    return;
                };
                // Ended if everything it started is answered: nothing to stop.
                let Some(run) = worker.running.as_mut() else {
                    return;
                };
                if run.answered + 1 == claimed {
                    stop_worker(worker, Stop::Timeout, grace);
                } else {
                    run.stopping_at = Some(now + ANSWER_WAIT);
                    run.check_at = Some(now + ANSWER_LOOK);
                }
            }
            TimeoutStep::Unresponsive => {
                if Dispatcher::take_back_unstarted(worker, queue) == Some(0) {
                    stop_worker(worker, Stop::Unresponsive, grace);
                } else if let Some(run) = worker.running.as_mut() {
                    run.check_at = Some(now);
                }
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
        if self.broken.is_none() && !self.terminating {
            // Each round hands the queue out; then an idle worker with nothing queued
            // takes unstarted calls from the busiest one. Every take-back moves at
            // least one call, so this ends; the bound is a backstop.
            let clocks = Clocks::read();
            for _ in 0..4 * self.seats.len() + 4 {
                self.hand_out();
                if !self.queue.is_empty() || !self.any_idle() || !self.steal(&clocks) {
                    break;
                }
            }
            self.hand_out();
        }
        // Nothing left to do: let idle workers exit.
        if self.closing && self.queue.is_empty() {
            for worker in self.seats.iter_mut().filter_map(|s| s.worker.as_mut()) {
                if worker.running.is_none() && !worker.initializing {
                    worker.tx = None;
                }
            }
        }
        // Refill empty seats (after a recycle or a death) when there is work or the
        // pool is open, unless a restart back-off holds the seat.
        if self.wants_workers() {
            for seat in 0..self.seats.len() {
                let s = &self.seats[seat];
                if s.worker.is_none() && !s.starting && s.start_at.is_none() {
                    self.start_worker(seat);
                }
            }
        }
    }

    /// One unit from the queue to each idle worker.
    fn hand_out(&mut self) {
        let clocks = Clocks::read();
        let limit = self.cfg.task_timeout;
        let max_tasks = self.cfg.max_tasks_per_child;
        let workers = self
            .seats
            .iter()
            .filter(|s| s.worker.is_some())
            .count()
            .max(1);
        let fast = |task: &str| self.job_time.get(task).is_some_and(|t| *t < FAST_JOB);
        for seat in self.seats.iter_mut() {
            let Some(worker) = seat.worker.as_mut() else {
                continue;
            };
            if !worker.takes_work() {
                continue;
            }
            let Some(mut unit) = self.queue.pop_front() else {
                break;
            };
            let allowance = max_tasks.map_or(usize::MAX, |max| {
                max.saturating_sub(worker.tasks_done) as usize
            });
            if allowance == 0 {
                self.queue.push_front(unit);
                worker.tx = None;
                continue;
            }
            if unit.len() > allowance {
                // Keep a recycled worker to its task budget: split the unit.
                let rest = unit.split_off(allowance);
                self.queue.push_front(rest);
            } else if unit.chunk.is_none() && fast(unit.task) {
                // Merge queued single calls of the same task into one message, up to a
                // fair share of the queue.
                let original = unit.jobs.len();
                let share = (self.queue.len() / workers).min(MERGE_MAX).min(allowance);
                while unit.jobs.len() < share
                    && self
                        .queue
                        .front()
                        .is_some_and(|u| u.task == unit.task && u.chunk.is_none())
                {
                    if let Some(next) = self.queue.pop_front() {
                        unit.jobs.extend(next.jobs);
                    }
                }
                if unit.jobs.len() > share.max(original) {
                    let rest = unit.split_off(share.max(original));
                    self.queue.push_front(rest);
                }
            }
            let Some(tx) = &worker.tx else { continue };
            let seq = self.next_seq;
            self.next_seq += 1;
            worker.progress.begin(seq, unit.len() as u32);
            match worker.outbox.send(tx, &unit_message(seq, &unit)) {
                Ok(()) => {
                    // An `apply` caller on this very thread reads the reply itself if
                    // nobody else is reading this worker.
                    if let (Some(caller), Some(reader)) = (unit.waiting_caller(), &worker.reader) {
                        if reader.lend() {
                            caller.borrow_link(reader.clone());
                        }
                    }
                    worker.running = Some(Running::new(seq, unit, clocks.now, limit));
                }
                Err(_) => {
                    // The worker is going away; its exit will be handled.
                    self.queue.push_front(unit);
                    worker.tx = None;
                }
            }
        }
    }

    fn any_idle(&self) -> bool {
        self.seats
            .iter()
            .filter_map(|s| s.worker.as_ref())
            .any(Worker::takes_work)
    }

    /// When an idle worker should next look for calls to take (`None`: nothing to
    /// take): as soon as some worker's running call has run [`STEAL_AFTER`] with
    /// unstarted calls behind it.
    fn steal_look(&self, clocks: &Clocks) -> Option<Instant> {
        if !self.queue.is_empty() || !self.any_idle() {
            return None;
        }
        self.seats
            .iter()
            .filter_map(|s| s.worker.as_ref())
            .filter_map(|w| stealable(w, clocks).err().flatten())
            .min()
    }

    /// An idle worker and nothing queued: take every unstarted call waiting behind a
    /// running call, from the worker that has most. False if there
    /// is nothing to take yet.
    fn steal(&mut self, clocks: &Clocks) -> bool {
        let mut best: Option<(usize, u32)> = None;
        for (i, seat) in self.seats.iter().enumerate() {
            let Some(w) = seat.worker.as_ref() else {
                continue;
            };
            if let Ok(unstarted) = stealable(w, clocks) {
                if best.is_none_or(|(_, most)| unstarted > most) {
                    best = Some((i, unstarted));
                }
            }
        }
        let Some((i, _)) = best else { return false };
        // All of them, in order: taking only the later half left the earlier ones
        // behind the slow call while the thief ran ahead. (If the worker moved on
        // meanwhile, the caller looks again.)
        if let Some(worker) = self.seats[i].worker.as_mut() {
            let _ = Dispatcher::take_back_unstarted(worker, &mut self.queue);
        }
        true
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.cfg.method == crate::StartMethod::Fork && launch::zygote::lost() {
            notes
                .push("the fork zygote died: new workers are forked by the forkserver".to_string());
        }
        notes
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
                } else if let Some(run) = &w.running {
                    let claimed = run.claimed(&w.progress.snapshot());
                    let at = claimed.saturating_sub(1).max(run.answered) - run.answered;
                    WorkerState::Busy {
                        task: run.unit.task.to_string(),
                        job: run.unit.first_id() + u64::from(at),
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
        let mut running = 0;
        let mut waiting_in_workers = 0;
        for w in self.seats.iter().filter_map(|s| s.worker.as_ref()) {
            if let Some(run) = &w.running {
                let claimed = run.claimed(&w.progress.snapshot());
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
            notes: self.notes(),
            exited: self.exited.iter().cloned().collect(),
        }
    }
}

/// How many of `w`'s calls an idle worker may take now: `Ok(n)` if `n > 0` unstarted
/// calls wait behind a call that has run at least [`STEAL_AFTER`]; else `Err(when)` to
/// look again then (`Err(None)`: nothing to take at all).
fn stealable(w: &Worker, clocks: &Clocks) -> Result<u32, Option<Instant>> {
    let Some(run) = w.running.as_ref() else {
        return Err(None);
    };
    // A unit of one call left has nothing that could wait behind another.
    if w.stop.is_some() || run.stopping_at.is_some() || run.limit < run.answered + 2 {
        return Err(None);
    }
    let seen = w.progress.snapshot();
    let claimed = run.claimed(&seen);
    let unstarted = run.limit.saturating_sub(claimed);
    if seen.seq != run.seq || unstarted == 0 {
        return Err(None);
    }
    if claimed <= run.answered {
        // Not started yet, or between calls: it takes its next call itself; look
        // again in case that call turns out slow.
        return Err(Some(clocks.now + STEAL_AFTER));
    }
    let due = clocks.instant(seen.started_ns) + STEAL_AFTER;
    if due > clocks.now {
        Err(Some(due))
    } else {
        Ok(unstarted)
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

/// A start that failed by a panic inside ipc-channel (it asserts where a system call
/// fails: out of descriptors, out of memory). Named by the cause when the process is
/// out of descriptors.
fn dependency_panic(panic: &(dyn std::any::Any + Send)) -> Error {
    let message = supervisor_worker::serve::panic_message(panic);
    let source = if os::descriptors_nearly_exhausted() {
        std::io::Error::from_raw_os_error(libc::EMFILE)
    } else {
        std::io::Error::other(format!("ipc-channel panicked: {message}"))
    };
    ErrorKind::Spawn(source).into()
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
