//! The dispatcher driven by simulated workers on a virtual clock: the scheduling
//! invariants (docs/ARCHITECTURE.md, "The scheduling invariant") checked over random
//! workloads (durations spread over four orders of magnitude, crashes, external kills,
//! timeouts, retries, a terminate mid-run) without a process or a sleep.
//!
//! A simulated worker behaves as a real one does towards its page: it claims each call
//! with the real compare-and-swap (`Progress::claim`) before running it, logs each
//! finished answer, and sends it a moment later; a death loses what was not sent yet.

mod breaking;
mod cases;
mod checks;
mod packed;
mod scripted;
mod stopping;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use supervisor_worker::codec;
use supervisor_worker::progress::Progress;
use supervisor_worker::protocol::{FromChild, TaskOutcome, Timing, ToChild};

use super::super::job::{HandleState, Unit};
use super::super::ports::{Io, WorkerLink};
use super::super::running::Clocks;
use crate::exit::{ExitStatus, Signal};
use crate::launch::Spec;
use crate::reaper::Exit;
use crate::StartMethod;

/// Page clock readings are this many ns after the simulation's start (never 0).
const OFFSET: u64 = 1_000_000_000;
const START_NS: u64 = 300_000;
const LATENCY_NS: u64 = 5_000;
const TERM_NS: u64 = 100_000;
const TASK: &str = "sim";

/// What one call of the workload does.
#[derive(Clone, Copy, Debug)]
struct Script {
    duration: u64,
    crashes: bool,
    /// Memory its worker's tree holds while it runs, beyond what the worker holds.
    memory_kib: u64,
    /// Memory it leaves its worker holding (a leak).
    leaves_kib: u64,
    /// Memory it holds for a moment, shorter than any look: only its worker's
    /// high-water mark shows it (`WorkerConfig::memory_limit`).
    spike_kib: u64,
}

struct Proc {
    pid: u32,
    worker: Option<u64>,
    page: Rc<Progress>,
    dies_at: Option<u64>,
    exit: Option<Exit>,
    ignores_term: bool,
    /// Its link was closed: it exits once it has finished and sent what it has.
    closed: bool,
    unit: Option<(u64, Vec<u64>)>,
    /// The unit is a timed chunk: answered packed, each call with its own timing.
    timed: bool,
    next: u32,
    claim_at: Option<u64>,
    /// The running call: position, job id, start, end.
    current: Option<(u32, u64, u64, u64)>,
    /// Answers finished but not sent yet: (send at, message).
    outbox: Vec<(u64, FromChild)>,
    /// A unit that ended: its answer log is emptied once its answers are sent, as a
    /// real worker empties it after its unit's last message.
    ended: Option<u64>,
    /// Memory it holds between calls (what earlier calls leaked).
    held_kib: u64,
    /// As a real worker does (`WorkerConfig::retire_above`): above this, it claims no
    /// more calls of its unit and gives the rest back.
    retire_above: Option<u64>,
    /// As a real worker does (`WorkerConfig::memory_limit`): a call whose spike goes
    /// over it answers `MemoryExceeded`, and the worker claims nothing more.
    memory_limit: Option<u64>,
    /// A call of it was charged for a spike.
    spent: bool,
}

enum Due {
    Started { seat: usize, pid: u32 },
    Message { worker: u64, msg: FromChild },
    Gone { worker: u64 },
}

#[derive(Default)]
struct Record {
    starts: u32,
    finished: u32,
    /// (start, duration) of its last run.
    last: Option<(u64, u64)>,
    /// When its worker was told to stop while it ran, and since when it had run.
    stopped: Vec<(u64, u64)>,
    /// The pid of the worker of each run.
    pids: Vec<u32>,
}

struct World {
    ns: u64,
    base: Instant,
    wall: SystemTime,
    rng: u64,
    procs: Vec<Proc>,
    due: Vec<(u64, Due)>,
    scripts: HashMap<u64, Script>,
    records: HashMap<u64, Record>,
    /// One worker in this many ignores SIGTERM (0: none).
    stubborn: u64,
    /// The parent's reading of a worker's own memory shows nothing (as when it freed
    /// memory between giving back its unit and the reading).
    memory_reads_low: bool,
    /// Timed chunks sent to workers.
    chunks_sent: usize,
    /// Units sent since the dispatcher's last round was checked: the worker's pid and
    /// the first call's id.
    fed: Vec<(u32, u64)>,
}

impl World {
    fn rand(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n.max(1)
    }

    fn clocks(&self) -> Clocks {
        Clocks {
            now: self.base + Duration::from_nanos(self.ns),
            wall: self.wall + Duration::from_nanos(self.ns),
            now_ns: OFFSET + self.ns,
        }
    }

    fn proc(&mut self, pid: u32) -> &mut Proc {
        self.procs
            .iter_mut()
            .find(|p| p.pid == pid)
            .expect("a known pid")
    }

    fn die(&mut self, i: usize, status: ExitStatus) {
        let now = self.ns;
        let p = &mut self.procs[i];
        if p.exit.is_some() {
            return;
        }
        p.exit = Some(Exit {
            status,
            peak_rss_kib: 0,
            cpu_time: Duration::ZERO,
            oom_killed: false,
        });
        p.unit = None;
        p.current = None;
        p.claim_at = None;
        p.outbox.clear();
        if let Some(worker) = p.worker {
            self.due.push((now + LATENCY_NS, Due::Gone { worker }));
        }
    }

    /// Does what every simulated process has due at the current instant.
    fn step(&mut self) {
        let now = self.ns;
        for i in 0..self.procs.len() {
            if self.procs[i].exit.is_some() {
                continue;
            }
            if self.procs[i].dies_at.is_some_and(|at| at <= now) {
                self.die(
                    i,
                    ExitStatus::Signal {
                        signal: Signal::from_number(9),
                        core_dumped: false,
                    },
                );
                continue;
            }
            let worker = self.procs[i].worker;
            let (sent, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.procs[i].outbox)
                .into_iter()
                .partition(|(at, _)| *at <= now);
            self.procs[i].outbox = kept;
            if self.procs[i].outbox.is_empty() {
                if let Some(seq) = self.procs[i].ended.take() {
                    self.procs[i].page.log_reset(seq);
                }
            }
            for (_, msg) in sent {
                let worker = worker.expect("answers only from attached workers");
                self.due
                    .push((now + LATENCY_NS, Due::Message { worker, msg }));
            }
            if let Some((pos, id, start, end)) = self.procs[i].current {
                if end > now {
                    continue;
                }
                let p = &mut self.procs[i];
                p.current = None;
                p.next = pos + 1;
                p.claim_at = Some(now);
                let (seq, ids) = p.unit.clone().expect("a call runs in a unit");
                let value = id.to_le_bytes().to_vec();
                let spike = self.scripts[&id].spike_kib;
                let spiked = !p.spent && p.memory_limit.is_some_and(|l| spike * 1024 > l);
                let outcome = match p.memory_limit.filter(|_| spiked) {
                    Some(limit) => {
                        p.spent = true;
                        TaskOutcome::MemoryExceeded {
                            limit,
                            peak_rss_kib: spike,
                        }
                    }
                    None => TaskOutcome::Returned { value, error: None },
                };
                let timing = Timing {
                    start_ns: OFFSET + start,
                    duration_ns: end - start,
                };
                let msg = if p.timed && !spiked {
                    // As a real worker answers a timed chunk: the value logged with its
                    // timing as a trailer, answered packed with its own timing.
                    let value = id.to_le_bytes().to_vec();
                    let mut logged = value.clone();
                    timing.append_to(&mut logged);
                    p.page.log_value(pos, &logged);
                    FromChild::PackedDone {
                        first_id: seq,
                        from: pos,
                        lens: vec![value.len() as u32],
                        data: serde_bytes::ByteBuf::from(value),
                        others: Vec::new(),
                        timings: vec![timing],
                    }
                } else if p.timed {
                    // A spiked call of a timed chunk: a failed call's answer.
                    let logged = codec::encode(&(&outcome, &timing)).expect("encodes");
                    p.page.log_outcome(pos, &logged);
                    FromChild::PackedDone {
                        first_id: seq,
                        from: pos,
                        lens: vec![0],
                        data: serde_bytes::ByteBuf::new(),
                        others: vec![(0, outcome)],
                        timings: vec![timing],
                    }
                } else if ids.len() == 1 {
                    let logged = codec::encode(&(&outcome, &timing)).expect("encodes");
                    p.page.log_outcome(pos, &logged);
                    FromChild::Done {
                        id: seq,
                        outcome,
                        timing,
                    }
                } else {
                    let logged = codec::encode(&(&outcome, &timing)).expect("encodes");
                    p.page.log_outcome(pos, &logged);
                    FromChild::BatchDone {
                        first_id: seq,
                        from: pos,
                        outcomes: vec![outcome],
                        timings: vec![timing],
                    }
                };
                // Usually at once; sometimes as late as the flusher would; in order.
                let delay = if self.rand(10) == 0 {
                    1_500_000
                } else {
                    self.rand(20_000)
                };
                let after = self.procs[i].outbox.last().map_or(0, |(at, _)| *at);
                self.procs[i].outbox.push(((now + delay).max(after), msg));
                let leaves = self.scripts[&id].leaves_kib;
                self.procs[i].held_kib += leaves;
                if !spiked {
                    // (A spiked call failed: it may run again, within its retries.)
                    self.records.entry(id).or_default().finished += 1;
                }
            }
            let p = &mut self.procs[i];
            if p.claim_at.is_none_or(|at| at > now) {
                continue;
            }
            if p.closed && p.current.is_none() && p.outbox.is_empty() && p.unit.is_none() {
                self.die(i, ExitStatus::Code(0));
                continue;
            }
            let Some((seq, ids)) = p.unit.clone() else {
                // Closed with answers still to send: exit once they are out.
                p.claim_at = p.outbox.last().map(|(at, _)| *at).filter(|_| p.closed);
                continue;
            };
            let pos = p.next;
            if pos > 0 && (p.spent || p.retire_above.is_some_and(|r| p.held_kib * 1024 > r)) {
                let _ = p.page.take_back(p.page.snapshot(), 0);
            }
            if (pos as usize) < ids.len() && p.page.claim(seq, pos, OFFSET + now) {
                assert!(
                    !p.spent,
                    "a call started on worker {} after one of its calls went over the \
                     memory limit",
                    p.pid
                );
                let id = ids[pos as usize];
                let script = self.scripts[&id];
                p.current = Some((pos, id, now, now + script.duration));
                p.claim_at = None;
                if script.crashes {
                    p.dies_at = Some(now + script.duration / 2);
                }
                let record = self.records.entry(id).or_default();
                assert_eq!(
                    record.finished, 0,
                    "call {id} started again after it finished"
                );
                record.starts += 1;
                record.last = Some((now, script.duration));
                record.pids.push(p.pid);
            } else {
                // Taken back (or done): the unit ends here.
                p.unit = None;
                p.ended = Some(seq);
                p.claim_at = p.closed.then_some(now);
            }
        }
    }

    /// The next instant anything is due in the world.
    fn next(&self) -> Option<u64> {
        let procs = self
            .procs
            .iter()
            .filter(|p| p.exit.is_none())
            .flat_map(|p| {
                let claim = p.claim_at.filter(|_| p.current.is_none());
                [p.dies_at, claim, p.current.map(|c| c.3)]
                    .into_iter()
                    .flatten()
                    .chain(p.outbox.iter().map(|(at, _)| *at))
            });
        procs.chain(self.due.iter().map(|(at, _)| *at)).min()
    }
}

struct SimIo(Rc<RefCell<World>>);

struct SimLink {
    pid: u32,
    page: Rc<Progress>,
    open: bool,
    world: Rc<RefCell<World>>,
}

impl Io for SimIo {
    type Started = u32;
    type Link = SimLink;

    fn start(&mut self, seat: usize, spec: Spec) -> std::io::Result<()> {
        let mut w = self.0.borrow_mut();
        let pid = 1000 + w.procs.len() as u32;
        let stubborn = w.stubborn;
        let ignores_term = stubborn > 0 && w.rand(stubborn) == 0;
        w.procs.push(Proc {
            pid,
            worker: None,
            page: Rc::new(Progress::new()),
            dies_at: None,
            exit: None,
            ignores_term,
            closed: false,
            unit: None,
            timed: false,
            next: 0,
            claim_at: None,
            current: None,
            outbox: Vec::new(),
            ended: None,
            held_kib: 0,
            retire_above: spec.retire_above,
            memory_limit: spec.memory_limit,
            spent: false,
        });
        let at = w.ns + START_NS;
        w.due.push((at, Due::Started { seat, pid }));
        Ok(())
    }

    fn attach(&mut self, id: u64, pid: u32) -> Result<SimLink, crate::Error> {
        let mut w = self.0.borrow_mut();
        let p = w.proc(pid);
        p.worker = Some(id);
        Ok(SimLink {
            pid,
            page: p.page.clone(),
            open: true,
            world: self.0.clone(),
        })
    }

    fn clocks(&self) -> Clocks {
        self.0.borrow().clocks()
    }

    fn notes(&self, _: StartMethod) -> Vec<String> {
        Vec::new()
    }

    fn tree_rss_kib(&mut self, pids: &[u32]) -> Vec<Option<u64>> {
        let w = self.0.borrow();
        pids.iter()
            .map(|pid| {
                let p = w.procs.iter().find(|p| p.pid == *pid)?;
                if p.exit.is_some() {
                    return None;
                }
                let running = p
                    .current
                    .map_or(0, |(_, id, _, _)| w.scripts[&id].memory_kib);
                Some(p.held_kib + running)
            })
            .collect()
    }
}

impl WorkerLink for SimLink {
    fn pid(&self) -> u32 {
        self.pid
    }
    fn page(&self) -> &Progress {
        &self.page
    }
    fn is_open(&self) -> bool {
        self.open
    }
    fn close(&mut self) {
        self.open = false;
        let mut w = self.world.borrow_mut();
        let now = w.ns;
        let p = w.proc(self.pid);
        p.closed = true;
        p.claim_at = Some(p.claim_at.map_or(now, |at| at.min(now)));
    }
    fn send_unit(&mut self, seq: u64, unit: &Unit) -> bool {
        let mut w = self.world.borrow_mut();
        let now = w.ns;
        let p = w.proc(self.pid);
        if p.exit.is_some() {
            self.open = false;
            return false;
        }
        assert!(
            p.current.is_none(),
            "a unit sent to a worker running a call"
        );
        p.page.log_reset(seq);
        p.ended = None;
        // A chunk's call ids are its input positions here (see `cases::units`).
        let ids: Vec<u64> = match &unit.chunk {
            Some(chunk) => (0..chunk.len())
                .map(|i| (chunk.next_index() + i) as u64)
                .collect(),
            None => unit.jobs.iter().map(|j| j.id).collect(),
        };
        p.timed = unit.chunk.as_ref().is_some_and(|c| c.timed);
        let first = ids.iter().copied().min();
        p.unit = Some((seq, ids));
        p.next = 0;
        p.claim_at = Some(now + LATENCY_NS);
        w.chunks_sent += usize::from(unit.chunk.as_ref().is_some_and(|c| c.timed));
        if let Some(first) = first {
            w.fed.push((self.pid, first));
        }
        true
    }
    fn send_init(&mut self, _: &ToChild) -> bool {
        unreachable!("the simulation has no initializer")
    }
    fn terminate(&self) {
        let mut w = self.world.borrow_mut();
        let now = w.ns;
        let p = w.proc(self.pid);
        if let Some((_, id, start, _)) = p.current {
            w.records.entry(id).or_default().stopped.push((now, start));
        }
        let p = w.proc(self.pid);
        if !p.ignores_term {
            p.dies_at = Some(p.dies_at.map_or(now + TERM_NS, |d| d.min(now + TERM_NS)));
        }
    }
    fn kill(&self) {
        let mut w = self.world.borrow_mut();
        let now = w.ns;
        let p = w.proc(self.pid);
        p.dies_at = Some(p.dies_at.map_or(now, |d| d.min(now)));
    }
    fn kill_tree(&self) {
        self.kill();
    }
    fn rss_kib(&self) -> Option<u64> {
        let mut w = self.world.borrow_mut();
        let low = w.memory_reads_low;
        let p = w.proc(self.pid);
        p.exit.is_none().then_some(if low { 0 } else { p.held_kib })
    }
    fn terminate_group(&self) {}
    fn exit(&self) -> Option<Exit> {
        self.world.borrow_mut().proc(self.pid).exit
    }
    fn group_runs(&self) -> bool {
        false
    }
    fn end_input(&self) -> bool {
        false
    }
    fn reading(&self) -> bool {
        true
    }
    fn expect(&self, _: bool) {}
    fn lend_to(&self, _: &Arc<HandleState>) {}
}

fn world() -> World {
    World {
        ns: 0,
        base: Instant::now(),
        wall: SystemTime::now(),
        rng: 1,
        procs: Vec::new(),
        due: Vec::new(),
        scripts: HashMap::new(),
        records: HashMap::new(),
        stubborn: 0,
        memory_reads_low: false,
        chunks_sent: 0,
        fed: Vec::new(),
    }
}
