//! The workloads the simulation runs (random and scripted), and the run itself.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::super::super::event::Event;
use super::super::super::hub::Machine;
use super::super::super::job::{Delivery, Job, JobMeta, JobResult, Sink, Unit};
use super::super::super::wake;
use super::super::super::{Config, RestartLimit};
use super::super::Dispatcher;
use super::checks::{check, check_no_later_call_goes_first, check_nothing_waits};
use super::{world, Due, Script, SimIo, World, OFFSET, TASK};
use crate::error::BrokenReason;
use crate::exit::{ExitStatus, Signal};
use crate::StartMethod;

/// One random workload.
#[derive(Debug)]
pub(super) struct Case {
    pub(super) seed: u64,
    pub(super) procs: usize,
    pub(super) scripts: Vec<Script>,
    /// When the second half of the calls is submitted.
    pub(super) second_wave: u64,
    pub(super) retries: u32,
    pub(super) timeout: Option<Duration>,
    /// When the time limit changes (`Pool::set_task_timeout`), and to what: running
    /// calls are held to it as well.
    pub(super) retime: Option<(u64, Duration)>,
    pub(super) kills: Vec<u64>,
    pub(super) terminate_at: Option<u64>,
    /// When the pool breaks (`break_pool`), and whether as the hub breaks it after a
    /// panic (the dispatcher ends at once: running calls are settled then).
    pub(super) break_at: Option<(u64, bool)>,
    /// One worker in this many ignores SIGTERM (0: none).
    pub(super) stubborn: u64,
    pub(super) memory_limit: Option<u64>,
    pub(super) max_memory_per_child: Option<u64>,
    pub(super) memory_reads_low: bool,
    /// `Pool::stop_call`s: when, and which call.
    pub(super) stop_calls: Vec<(u64, u64)>,
    /// Calls' own time limits (`Pool::start_encoded`), by call.
    pub(super) own_limits: Vec<(u64, Duration)>,
    /// Submitted as `imap_reports` submits: consecutive calls packed in timed chunks
    /// (of sizes from 1 to 40; no own limits then).
    pub(super) packed: bool,
}

pub(super) const MIB: u64 = 1 << 20;

pub(super) fn case(seed: u64) -> Case {
    let mut w = World {
        rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        ..world()
    };
    let n = 10 + w.rand(140) as usize;
    let memory_limit = (w.rand(3) == 0).then_some(100 * MIB);
    let max_memory_per_child = (w.rand(4) == 0).then_some(30 * MIB);
    let scripts = (0..n)
        .map(|_| {
            let duration = match w.rand(100) {
                0..=79 => 10_000 + w.rand(290_000),
                80..=94 => 1_000_000 + w.rand(4_000_000),
                _ => 100_000_000 + w.rand(300_000_000),
            };
            Script {
                duration,
                crashes: w.rand(100) < 3,
                memory_kib: if w.rand(100) < 5 { 200 * 1024 } else { 0 },
                leaves_kib: if w.rand(100) < 10 { 10 * 1024 } else { 0 },
                spike_kib: if w.rand(100) < 5 { 150 * 1024 } else { 0 },
            }
        })
        .collect();
    let kills = (0..w.rand(6)).map(|_| w.rand(1_000_000_000)).collect();
    let timeout = (w.rand(2) == 0).then_some(Duration::from_millis(50));
    let retime = (timeout.is_some() && w.rand(3) == 0).then(|| {
        let to = if w.rand(2) == 0 { 20 } else { 150 };
        (w.rand(300_000_000), Duration::from_millis(to))
    });
    let stop_calls = (0..w.rand(3))
        .map(|_| (w.rand(500_000_000), w.rand(n as u64)))
        .collect();
    Case {
        seed,
        stop_calls,
        own_limits: Vec::new(),
        procs: 1 + w.rand(4) as usize,
        scripts,
        second_wave: w.rand(200_000_000),
        retries: if w.rand(2) == 0 { 0 } else { 2 },
        timeout,
        retime,
        kills,
        terminate_at: (w.rand(100) < 15).then(|| w.rand(500_000_000)),
        break_at: None,
        stubborn: if w.rand(10) < 3 { 4 } else { 0 },
        memory_limit,
        max_memory_per_child,
        memory_reads_low: false,
        packed: false,
    }
}

impl Case {
    pub(super) fn asked_to_stop(&self, id: u64) -> bool {
        self.stop_calls.iter().any(|(_, i)| *i == id)
    }

    /// The shortest time limit the run had.
    pub(super) fn shortest_limit(&self) -> Option<Duration> {
        let later = self.retime.map(|(_, l)| l);
        self.timeout.map(|t| later.map_or(t, |l| l.min(t)))
    }

    /// The longest time limit the run had.
    pub(super) fn longest_limit(&self) -> Option<Duration> {
        let later = self.retime.map(|(_, l)| l);
        self.timeout.map(|t| later.map_or(t, |l| l.max(t)))
    }
}

fn config(case: &Case) -> Config {
    Config {
        name: "sim".into(),
        procs: case.procs,
        method: StartMethod::Spawn,
        nice: None,
        initializer: None,
        initializer_shipped: Default::default(),
        max_tasks_per_child: None,
        task_timeout: case.timeout,
        grace: Duration::from_millis(50),
        retries: case.retries,
        retry_errors: false,
        restart_limit: RestartLimit::default(),
        env_allowlist: None,
        keep_task_children: false,
        memory_limit: case.memory_limit,
        max_memory_per_child: case.max_memory_per_child,
        broken: Default::default(),
    }
}

fn units(
    ids: std::ops::Range<usize>,
    tx: &wake::Sender<Delivery>,
    limits: &[(u64, Duration)],
    packed: bool,
) -> Vec<Unit> {
    if packed {
        return super::packed::packed_units(ids, tx);
    }
    ids.map(|i| {
        let sink = Sink::Stream {
            stream: 1,
            index: i,
            tx: tx.clone(),
        };
        let mut job = Job::new(i as u64, TASK, Vec::new(), sink);
        job.limit = limits
            .iter()
            .find(|(id, _)| *id == i as u64)
            .map(|(_, l)| *l);
        Unit::new(TASK, vec![job])
    })
    .collect()
}

/// Runs `case` to the end; every call's one delivery, by input position.
pub(super) fn simulate(case: &Case) -> (Vec<(JobResult, JobMeta)>, World) {
    let world = Rc::new(RefCell::new(world()));
    {
        let mut w = world.borrow_mut();
        w.rng = case.seed | 1;
        w.stubborn = case.stubborn;
        w.memory_reads_low = case.memory_reads_low;
        w.scripts = (0..case.scripts.len() as u64)
            .zip(case.scripts.clone())
            .collect();
    }
    let n = case.scripts.len();
    let (tx, rx) = wake::channel();
    let mut d = Dispatcher::new(config(case), SimIo(world.clone()));
    d.handle(Event::Submit(units(
        0..n / 2,
        &tx,
        &case.own_limits,
        case.packed,
    )));
    d.dispatch();
    let mut second = Some(units(n / 2..n, &tx, &case.own_limits, case.packed));
    let mut kills = case.kills.clone();
    let mut terminate_at = case.terminate_at;
    let mut break_at = case.break_at;
    let mut retime = case.retime;
    let mut stop_calls = case.stop_calls.clone();
    stop_calls.sort();
    let base = world.borrow().base;
    for _ in 0..2_000_000 {
        let now = world.borrow().ns;
        world.borrow_mut().step();
        if second.is_some() && case.second_wave <= now {
            d.handle(Event::Submit(second.take().unwrap_or_default()));
            d.handle(Event::Close);
        }
        if terminate_at.is_some_and(|t| t <= now) {
            terminate_at = None;
            d.handle(Event::Terminate);
        }
        if let Some((_, panic)) = break_at.filter(|(at, _)| *at <= now) {
            break_at = None;
            if panic {
                Machine::break_pool(&mut d, "a bug".to_string());
            } else {
                d.break_pool(BrokenReason::HaltConditionPanicked {
                    message: "sim".to_string(),
                });
            }
        }
        if let Some((_, limit)) = retime.filter(|(at, _)| *at <= now) {
            retime = None;
            d.handle(Event::SetTaskTimeout(Some(limit)));
        }
        while stop_calls.first().is_some_and(|(at, _)| *at <= now) {
            let (_, id) = stop_calls.remove(0);
            d.handle(Event::StopCall(id));
        }
        while kills.first().is_some_and(|k| *k <= now) {
            kills.remove(0);
            let mut w = world.borrow_mut();
            let live: Vec<usize> = (0..w.procs.len())
                .filter(|i| w.procs[*i].exit.is_none() && w.procs[*i].worker.is_some())
                .collect();
            if !live.is_empty() {
                let i = live[w.rand(live.len() as u64) as usize];
                w.die(
                    i,
                    ExitStatus::Signal {
                        signal: Signal::from_number(9),
                        core_dumped: false,
                    },
                );
            }
        }
        let due: Vec<Due> = {
            let mut w = world.borrow_mut();
            w.due.sort_by_key(|(at, _)| *at);
            let split = w.due.partition_point(|(at, _)| *at <= now);
            w.due.drain(..split).map(|(_, due)| due).collect()
        };
        for due in due {
            match due {
                Due::Started { seat, pid } => d.handle(Event::Started {
                    seat,
                    result: Ok(pid),
                }),
                Due::Message { worker, msg } => d.handle(Event::Message {
                    worker,
                    msg: Ok(msg),
                }),
                Due::Gone { worker } => {
                    d.handle(Event::Exited { worker });
                    d.handle(Event::LinkClosed { worker });
                }
            }
        }
        d.dispatch();
        d.on_timers();
        d.dispatch();
        check_nothing_waits(&d, OFFSET + now, case.seed);
        let fed = std::mem::take(&mut world.borrow_mut().fed);
        check_no_later_call_goes_first(&d, &fed, OFFSET + now, case.seed);
        if d.finished() && second.is_none() {
            drop(d);
            drop(tx);
            let mut got: Vec<Option<(JobResult, JobMeta)>> = (0..n).map(|_| None).collect();
            while let Some(delivery) = rx.recv() {
                for (i, result, meta) in delivery.into_items() {
                    assert!(
                        got[i].is_none(),
                        "seed {}: call {i} delivered twice",
                        case.seed
                    );
                    got[i] = Some((result, meta));
                }
            }
            let got = got
                .into_iter()
                .enumerate()
                .map(|(i, r)| r.unwrap_or_else(|| panic!("seed {}: call {i} lost", case.seed)))
                .collect();
            let world = Rc::try_unwrap(world).ok().expect("the dispatcher is gone");
            return (got, world.into_inner());
        }
        let w = world.borrow();
        let wake = d
            .next_wake()
            .map(|at| at.saturating_duration_since(base).as_nanos() as u64);
        let next = [
            wake,
            w.next(),
            kills.first().copied(),
            terminate_at,
            break_at.map(|(at, _)| at),
            retime.map(|(at, _)| at),
            stop_calls.first().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .chain(second.is_some().then_some(case.second_wave))
        .min()
        .unwrap_or(now + 1);
        drop(w);
        world.borrow_mut().ns = next.max(now + 1);
    }
    panic!("seed {}: the simulation did not end", case.seed);
}

pub(super) fn scripted(durations_ms: &[u64], procs: usize, timeout: Option<Duration>) -> Case {
    Case {
        seed: 7,
        procs,
        scripts: durations_ms
            .iter()
            .map(|ms| Script {
                duration: ms * 1_000_000 + 20_000,
                crashes: false,
                memory_kib: 0,
                leaves_kib: 0,
                spike_kib: 0,
            })
            .collect(),
        second_wave: 0,
        retries: 0,
        timeout,
        retime: None,
        kills: Vec::new(),
        terminate_at: None,
        break_at: None,
        stubborn: 0,
        memory_limit: None,
        max_memory_per_child: None,
        memory_reads_low: false,
        stop_calls: Vec::new(),
        own_limits: Vec::new(),
        packed: false,
    }
}

#[test]
fn scheduling_invariants_hold_for_random_workloads() {
    for seed in 0..400 {
        let case = case(seed);
        let (results, world) = simulate(&case);
        check(&case, &results, &world);
    }
}
