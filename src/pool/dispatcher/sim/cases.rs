//! The workloads the simulation runs, and what is checked of each call.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::super::super::event::Event;
use super::super::super::job::{Delivery, Job, JobMeta, JobResult, Sink, Unit};
use super::super::super::ports::WorkerLink;
use super::super::super::running::ANSWER_WAIT;
use super::super::super::wake;
use super::super::super::{Config, RestartLimit};
use super::super::take_back::STEAL_AFTER;
use super::super::Dispatcher;
use super::{world, Due, Script, SimIo, World, OFFSET, TASK};
use crate::error::ErrorKind;
use crate::exit::{ExitStatus, Signal};
use crate::memory::MEMORY_LOOK;
use crate::StartMethod;

/// One random workload.
#[derive(Debug)]
pub(super) struct Case {
    pub(super) seed: u64,
    procs: usize,
    pub(super) scripts: Vec<Script>,
    /// When the second half of the calls is submitted.
    second_wave: u64,
    retries: u32,
    pub(super) timeout: Option<Duration>,
    /// When the time limit changes (`Pool::set_task_timeout`), and to what: running
    /// calls are held to it as well.
    pub(super) retime: Option<(u64, Duration)>,
    pub(super) kills: Vec<u64>,
    pub(super) terminate_at: Option<u64>,
    /// One worker in this many ignores SIGTERM (0: none).
    pub(super) stubborn: u64,
    memory_limit: Option<u64>,
    max_memory_per_child: Option<u64>,
    memory_reads_low: bool,
    /// `Pool::stop_call`s: when, and which call.
    pub(super) stop_calls: Vec<(u64, u64)>,
    /// Calls' own time limits (`Pool::start_encoded`), by call.
    own_limits: Vec<(u64, Duration)>,
    /// Submitted as `imap_reports` submits: consecutive calls packed in timed chunks
    /// (of sizes from 1 to 40; no own limits then).
    pub(super) packed: bool,
}

const MIB: u64 = 1 << 20;

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
        stubborn: if w.rand(10) < 3 { 4 } else { 0 },
        memory_limit,
        max_memory_per_child,
        memory_reads_low: false,
        packed: false,
    }
}

impl Case {
    fn asked_to_stop(&self, id: u64) -> bool {
        self.stop_calls.iter().any(|(_, i)| *i == id)
    }

    /// The shortest time limit the run had.
    fn shortest_limit(&self) -> Option<Duration> {
        let later = self.retime.map(|(_, l)| l);
        self.timeout.map(|t| later.map_or(t, |l| l.min(t)))
    }

    /// The longest time limit the run had.
    fn longest_limit(&self) -> Option<Duration> {
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

/// Checks that no call waits while a worker could run it: with a worker idle, nothing
/// is queued, and no unstarted call waits behind a call that has run [`STEAL_AFTER`].
fn check_nothing_waits(d: &Dispatcher<SimIo>, now_ns: u64, seed: u64) {
    if d.terminating || d.broken.is_some() || !d.workers().any(|w| w.takes_work()) {
        return;
    }
    assert!(
        d.queue.is_empty(),
        "seed {seed}: calls queued while a worker idles"
    );
    for w in d.workers() {
        let Some(run) = &w.running else { continue };
        let seen = w.link.page().snapshot();
        let claimed = run.claimed(&seen);
        let waiting = w.stop.is_none()
            && run.stopping_at.is_none()
            && seen.seq == run.seq
            && claimed > run.answered
            && run.limit > claimed
            && seen.started_ns + STEAL_AFTER.as_nanos() as u64 <= now_ns;
        assert!(
            !waiting,
            "seed {seed}: {} calls wait behind a slow one while a worker idles",
            run.limit - claimed
        );
    }
}

/// Checks that no worker was given a call while an earlier one waited unstarted behind
/// another worker's call that has run [`STEAL_AFTER`]: `fed` are the units sent in the
/// round just made (the worker's pid, the first call's id), all at `now_ns`.
fn check_no_later_call_goes_first(
    d: &Dispatcher<SimIo>,
    fed: &[(u32, u64)],
    now_ns: u64,
    seed: u64,
) {
    if d.terminating || d.broken.is_some() {
        return;
    }
    for w in d.workers() {
        let Some(run) = &w.running else { continue };
        let seen = w.link.page().snapshot();
        let claimed = run.claimed(&seen);
        let behind = w.stop.is_none()
            && run.stopping_at.is_none()
            && seen.seq == run.seq
            && claimed > run.answered
            && run.limit > claimed
            && seen.started_ns + STEAL_AFTER.as_nanos() as u64 <= now_ns;
        let Some(waiting) = run
            .unit
            .id_at((claimed - run.answered) as usize)
            .filter(|_| behind)
        else {
            continue;
        };
        for (pid, first) in fed {
            assert!(
                *pid == w.link.pid() || *first < waiting,
                "seed {seed}: worker {pid} was given call {first} while call {waiting} \
                 waited behind a running one on worker {}",
                w.link.pid()
            );
        }
    }
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

/// Checks each call's one result against what the simulated worker did.
pub(super) fn check(case: &Case, results: &[(JobResult, JobMeta)], world: &World) {
    let seed = case.seed;
    for (i, (result, meta)) in results.iter().enumerate() {
        let script = case.scripts[i];
        let id = i as u64;
        let record = world.records.get(&id);
        let starts = record.map_or(0, |r| r.starts);
        assert!(
            starts <= case.retries + 1,
            "seed {seed}: call {i} ran {starts} times with {} retries",
            case.retries
        );
        // A call is never stopped before its own time limit (unless the pool stops).
        if case.terminate_at.is_none() && !case.asked_to_stop(id) {
            for (at, start) in record.map_or(&[][..], |r| &r.stopped[..]) {
                let limit = case.shortest_limit().expect("stopped only on a timeout");
                assert!(
                    at - start >= limit.as_nanos() as u64,
                    "seed {seed}: call {i} stopped after {} ns, its limit is {limit:?}",
                    at - start
                );
            }
        }
        match result {
            Ok(value) => {
                let record = record.expect("a result comes from a run");
                let (start, duration) = record.last.expect("it ran");
                assert_eq!(value, &id.to_le_bytes(), "seed {seed}: call {i}'s value");
                assert!(
                    !script.crashes,
                    "seed {seed}: call {i} crashes, yet succeeded"
                );
                assert_eq!(meta.attempts, starts, "seed {seed}: call {i}'s attempts");
                assert_eq!(
                    meta.started,
                    Some(world.wall + Duration::from_nanos(start)),
                    "seed {seed}: call {i}'s start is not its own"
                );
                assert_eq!(
                    meta.duration,
                    Duration::from_nanos(duration),
                    "seed {seed}: call {i}"
                );
                if let Some(limit) = case.longest_limit() {
                    assert!(
                        Duration::from_nanos(duration) <= limit,
                        "seed {seed}: call {i} ran {duration} ns past its limit {limit:?}"
                    );
                }
                if let Some(limit) = case.memory_limit {
                    let looked = Duration::from_nanos(duration) > 2 * MEMORY_LOOK;
                    assert!(
                        !(looked && script.memory_kib * 1024 > limit),
                        "seed {seed}: call {i} ran {duration} ns over the memory limit"
                    );
                }
            }
            Err(e) => match e.kind() {
                ErrorKind::TimedOut { .. } => {
                    let shortest = case.shortest_limit().expect("a timeout needs a limit");
                    let limit = case.longest_limit().expect("a limit").as_nanos() as u64;
                    assert!(
                        script.duration > shortest.as_nanos() as u64,
                        "seed {seed}: call {i} timed out early"
                    );
                    let record = record.expect("it ran");
                    let (at, start) = *record.stopped.last().expect("it was stopped");
                    // Its report is its own: its start, and at least the limit it ran.
                    assert_eq!(
                        meta.started,
                        Some(world.wall + Duration::from_nanos(start)),
                        "seed {seed}: timed-out call {i}'s start is not its own"
                    );
                    assert!(
                        meta.duration >= shortest,
                        "seed {seed}: timed-out call {i} reports {:?}, under its limit",
                        meta.duration
                    );
                    let late = (ANSWER_WAIT + Duration::from_millis(1)).as_nanos() as u64;
                    assert!(
                        at - start <= limit + late,
                        "seed {seed}: call {i} stopped {} ns after its start",
                        at - start
                    );
                }
                ErrorKind::MemoryExceeded { peak_rss_kib, .. } => {
                    let limit = case.memory_limit.expect("a memory limit");
                    let leaks = case.scripts.iter().any(|s| s.leaves_kib > 0);
                    assert!(
                        script.memory_kib * 1024 > limit || leaks,
                        "seed {seed}: call {i} charged for memory it did not take"
                    );
                    assert!(*peak_rss_kib * 1024 > limit, "seed {seed}: call {i}: {e}");
                }
                ErrorKind::Crashed { .. } => assert!(
                    script.crashes || !case.kills.is_empty(),
                    "seed {seed}: call {i} crashed for no reason"
                ),
                ErrorKind::Stopped { .. } | ErrorKind::Cancelled { .. }
                    if case.asked_to_stop(id) =>
                {
                    if matches!(e.kind(), ErrorKind::Cancelled { .. }) {
                        assert_eq!(starts, 0, "seed {seed}: call {i} ran, then was cancelled");
                    } else {
                        let record = record.expect("a stopped call ran");
                        let (start, _) = record.last.expect("it ran");
                        assert_eq!(
                            meta.started,
                            Some(world.wall + Duration::from_nanos(start)),
                            "seed {seed}: stopped call {i}'s start is not its own"
                        );
                        assert!(meta.pid != 0 && meta.attempts >= 1, "seed {seed}: {meta:?}");
                    }
                }
                ErrorKind::Stopped { .. }
                | ErrorKind::Terminated { .. }
                | ErrorKind::PoolClosed => assert!(
                    case.terminate_at.is_some(),
                    "seed {seed}: call {i} stopped with nobody terminating: {e}"
                ),
                _ => panic!("seed {seed}: call {i} failed as {e}"),
            },
        }
    }
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
            })
            .collect(),
        second_wave: 0,
        retries: 0,
        timeout,
        retime: None,
        kills: Vec::new(),
        terminate_at: None,
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

/// The case: two fast calls then six of 700 ms, limit 500 ms, no retries: the
/// fast ones succeed once, each slow one times out at its own limit, nothing runs twice.
#[test]
fn each_call_keeps_its_own_time_limit_in_a_batch() {
    let mut durations = vec![0, 0];
    durations.extend([700; 6]);
    let case = scripted(&durations, 2, Some(Duration::from_millis(500)));
    let (results, world) = simulate(&case);
    check(&case, &results, &world);
    for (i, (result, _)) in results.iter().enumerate() {
        let timed_out = matches!(result, Err(e) if matches!(e.kind(), ErrorKind::TimedOut { .. }));
        assert_eq!(timed_out, i >= 2, "call {i}: {result:?}");
        assert_eq!(world.records[&(i as u64)].starts, 1, "call {i}");
    }
}

/// One slow call, then fifty fast ones on two workers: every fast one finishes before
/// the slow one does.
#[test]
fn fast_calls_never_wait_behind_a_slow_one() {
    let mut durations = vec![2_000];
    durations.extend([0; 50]);
    let case = scripted(&durations, 2, None);
    let (results, world) = simulate(&case);
    check(&case, &results, &world);
    let slow = world.records[&0].last.expect("it ran");
    for i in 1..51u64 {
        let (start, duration) = world.records[&i].last.expect("it ran");
        assert!(
            start + duration < slow.0 + slow.1,
            "call {i} waited behind the slow one"
        );
    }
}

/// The memory decisions on simulated workers: a call whose worker goes over
/// `memory_limit` fails as `MemoryExceeded` (once, or after its retries), within two
/// looks of its start; the calls around it succeed, none runs twice.
#[test]
fn a_call_over_the_memory_limit_fails_alone_and_the_pool_goes_on() {
    for retries in [0, 1] {
        let mut durations = vec![500];
        durations.extend([0; 100]);
        let mut case = scripted(&durations, 2, None);
        case.retries = retries;
        case.memory_limit = Some(100 * MIB);
        case.scripts[0].memory_kib = 200 * 1024;
        let (results, world) = simulate(&case);
        check(&case, &results, &world);
        let Err(e) = &results[0].0 else {
            panic!("the greedy call succeeded")
        };
        assert!(
            matches!(e.kind(), ErrorKind::MemoryExceeded { limit, .. } if *limit == 100 * MIB),
            "{e}"
        );
        assert_eq!(results[0].1.attempts, retries + 1);
        let greedy = &world.records[&0];
        assert_eq!(greedy.starts, retries + 1);
        assert_eq!(greedy.pids.len(), retries as usize + 1);
        for (i, (result, _)) in results.iter().enumerate().skip(1) {
            assert!(result.is_ok(), "call {i}: {result:?}");
            assert_eq!(world.records[&(i as u64)].starts, 1, "call {i}");
        }
    }
}

/// `max_memory_per_child`: the call that leaves its worker above the limit is
/// delivered; the worker starts nothing more (it gives back the rest of its batch,
/// which the dispatcher queues again), a new one runs the rest; every call runs once
/// and succeeds.
#[test]
fn a_worker_left_above_max_memory_per_child_is_recycled_losing_nothing() {
    // Fast calls, so they travel in batches: the rest of the leaky call's batch must
    // be taken back. Whether or not the parent's own reading shows the memory, the
    // worker's give-back retires it (else the calls it gave back would never come).
    for memory_reads_low in [false, true] {
        recycled_losing_nothing(memory_reads_low);
    }
}

fn recycled_losing_nothing(memory_reads_low: bool) {
    let mut case = scripted(&[0; 300], 1, None);
    case.max_memory_per_child = Some(100 * MIB);
    case.memory_reads_low = memory_reads_low;
    case.scripts[150].leaves_kib = 200 * 1024;
    let (results, world) = simulate(&case);
    check(&case, &results, &world);
    let pid = |i: u64| world.records[&i].pids.clone();
    let first = pid(0)[0];
    assert_eq!(
        pid(150),
        vec![first],
        "the leaky call ran on the first worker once"
    );
    for (i, (result, meta)) in results.iter().enumerate() {
        assert!(result.is_ok(), "call {i}: {result:?}");
        assert_eq!(world.records[&(i as u64)].starts, 1, "call {i}");
        assert_eq!(meta.pid, pid(i as u64)[0], "call {i}");
    }
    // The worker gave back the rest of its batch before claiming the next call (as a
    // real one does: `WorkerConfig::retire_above`); it ran on the replacement.
    assert!((151..300u64).all(|i| pid(i)[0] != first));
    // The replacement holds nothing: it is not recycled again.
    let pids: std::collections::BTreeSet<u32> = (0..300u64).map(|i| pid(i)[0]).collect();
    assert_eq!(pids.len(), 2, "{pids:?}");
}

/// A retried call that passes its limit on a worker that ignores SIGTERM, and
/// finishes during the grace before SIGKILL: it timed out (its answer, logged on the
/// page, is not taken as a success), and it is not run a third time (found by the
/// random cases once the limit could change while calls run).
#[test]
fn a_call_finishing_during_its_stops_grace_is_timed_out_and_not_run_again() {
    let mut case = scripted(&[183], 1, Some(Duration::from_millis(150)));
    case.stubborn = 4;
    case.retries = 2;
    let (results, world) = simulate(&case);
    check(&case, &results, &world);
    assert!(
        matches!(&results[0].0, Err(e) if matches!(e.kind(), ErrorKind::TimedOut { .. })),
        "{:?}",
        results[0].0
    );
}

/// A call that passes its limit in a batch, on a worker that ignores SIGTERM, and
/// finishes during the grace before SIGKILL: the worker's attempt to claim the next
/// call (taken back, so it fails) must not become the timed-out call's start. On the
/// old page that attempt overwrote the start, and the call was reported as having run
/// from its own end to the kill (17 ms, under its 150 ms limit), with a start 183 ms
/// late (as `tests/scheduling.rs` once saw: a 201 ms task timed out "after 95.8 ms").
#[test]
fn a_timed_out_call_reports_its_own_start_after_a_failed_claim_of_the_next() {
    // A fast call first, so that the dispatcher merges calls 1-3 into one batch.
    let mut case = scripted(&[0, 0, 183, 0, 0], 1, Some(Duration::from_millis(150)));
    case.stubborn = 1;
    let (results, world) = simulate(&case);
    check(&case, &results, &world);
    let timed_out = |i: usize| matches!(&results[i].0, Err(e) if matches!(e.kind(), ErrorKind::TimedOut { .. }));
    assert!(timed_out(2), "{:?}", results[2].0);
    let slow = &world.records[&2];
    assert_eq!(
        (slow.starts, slow.finished),
        (1, 1),
        "it ran once, to its end"
    );
    // It shared its unit with the call after it, which was taken back and ran later.
    assert_eq!(slow.pids, world.records[&1].pids);
    assert!(results[3].0.is_ok(), "{:?}", results[3].0);
    assert_ne!(world.records[&3].pids, slow.pids);
}

/// `Pool::stop_call` (the cluster agent's stop of one task): on one worker, a running
/// call stopped mid-run fails as stopped with its own pid and start, once; a queued
/// call stopped is cancelled and never runs; a call stopped after it finished keeps
/// its value; the worker is replaced and the rest run.
#[test]
fn stop_call_stops_the_running_call_alone_and_cancels_a_queued_one() {
    let mut case = scripted(&[1_000, 1_000, 0, 0], 1, None);
    // Call 3 is stopped after it finished (at 2.5 s it has long been done).
    case.stop_calls = vec![(100_000_000, 0), (100_000_000, 1), (2_500_000_000, 3)];
    let (results, world) = simulate(&case);
    check(&case, &results, &world);
    let kind = |i: usize| results[i].0.as_ref().err().map(|e| e.kind().word());
    assert_eq!(kind(0), Some("stopped"), "{:?}", results[0].0);
    assert_eq!(kind(1), Some("cancelled"), "{:?}", results[1].0);
    assert!(results[2].0.is_ok() && results[3].0.is_ok(), "{results:?}");
    let stopped = &world.records[&0];
    assert_eq!((stopped.starts, stopped.finished), (1, 0));
    assert_eq!(stopped.stopped.len(), 1, "SIGTERM to its worker");
    assert_eq!(results[0].1.pid, stopped.pids[0]);
    assert_eq!(results[0].1.attempts, 1);
    assert!(!world.records.contains_key(&1), "the cancelled call ran");
    assert_ne!(
        world.records[&2].pids, stopped.pids,
        "a replacement ran the rest"
    );
}

/// A call's own time limit (the cluster's per-task `--timeout`, through
/// `Pool::start_encoded`): fast calls first so that the slow ones travel in one batch;
/// the call with a 100 ms limit times out at it, its batch-mates without one (and a
/// pool with none) run their 300 ms to the end, each once.
#[test]
fn a_calls_own_time_limit_stops_it_alone_in_its_batch() {
    let mut case = scripted(&[0, 0, 300, 300, 300], 1, None);
    case.own_limits = vec![(3, Duration::from_millis(100))];
    let (results, world) = simulate(&case);
    for (i, (result, meta)) in results.iter().enumerate() {
        let timed_out = matches!(
            result,
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut { limit, .. } if *limit == Duration::from_millis(100))
        );
        assert_eq!(timed_out, i == 3, "call {i}: {result:?}");
        assert_eq!(world.records[&(i as u64)].starts, 1, "call {i}");
        if i == 3 {
            assert!(meta.duration >= Duration::from_millis(100), "{meta:?}");
            let (at, start) = *world.records[&3].stopped.last().expect("stopped");
            assert!(
                at - start < 150_000_000,
                "stopped {} ns after its start",
                at - start
            );
        }
    }
}
