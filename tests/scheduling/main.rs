//! Scheduling semantics: whatever is batched, each task keeps its own time limit, runs
//! at most once (retries 0), reports its own start and duration, and never waits
//! behind a running task while a worker could run it. Real processes, every start
//! method, a deadline and the leak check on each test.

#[path = "../common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{each_method, scenario, Scenario, SCENARIOS};
use serde::{Deserialize, Serialize};
use supervisor::{ErrorKind, Pool, StartMethod};

const DEADLINE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
enum Then {
    Return,
    Exit,
    Abort,
    /// Ignores SIGTERM from its start, then returns (as `Return`).
    ShrugTermThenReturn,
}

/// One test job: append `id` to the run log at its start, sleep, then act.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    id: u64,
    ms: u64,
    then: Then,
    log: PathBuf,
}

fn job(j: Job) -> u32 {
    let line = format!("{}\n", j.id);
    // One write of a short line to an O_APPEND file: lines never interleave.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&j.log)
        .expect("run log");
    f.write_all(line.as_bytes()).expect("run log write");
    if j.then == Then::ShrugTermThenReturn {
        // SAFETY: sets a signal's disposition to "ignore", plain integers.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    }
    std::thread::sleep(Duration::from_millis(j.ms));
    match j.then {
        Then::Return | Then::ShrugTermThenReturn => std::process::id(),
        Then::Exit => std::process::exit(3),
        Then::Abort => std::process::abort(),
    }
}
supervisor::task!(job);

/// A private run log, removed on drop.
struct RunLog(PathBuf);

impl RunLog {
    fn new(name: &str) -> RunLog {
        let path = std::env::temp_dir().join(format!(
            "supervisor-sched-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        RunLog(path)
    }

    fn job(&self, id: u64, ms: u64, then: Then) -> Job {
        Job {
            id,
            ms,
            then,
            log: self.0.clone(),
        }
    }

    /// How many times each id started.
    fn runs(&self) -> BTreeMap<u64, usize> {
        let mut runs = BTreeMap::new();
        for line in std::fs::read_to_string(&self.0).unwrap_or_default().lines() {
            *runs.entry(line.parse().unwrap()).or_default() += 1;
        }
        runs
    }
}

impl Drop for RunLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn pool(method: StartMethod, procs: usize) -> supervisor::PoolBuilder {
    Pool::builder()
        .procs(procs)
        .start_method(method)
        .grace(Duration::from_millis(500))
}

/// Makes `job` a "fast" task for the dispatcher (so single calls are merged into
/// batches): the situation in which batching used to change what users saw.
fn warm(pool: &Pool, log: &RunLog) {
    let quick: Vec<Job> = (1_000_000..1_000_040)
        .map(|id| log.job(id, 0, Then::Return))
        .collect();
    for r in pool.map(job, quick) {
        r.unwrap();
    }
}

/// What happens to a fork server in the middle of a run.
#[derive(Clone, Copy)]
enum ServerFault {
    /// SIGKILL of the fork zygote.
    KillZygote,
    /// SIGSTOP of the fork zygote (it stops answering, but lives).
    FreezeZygote,
    /// SIGKILL of the forkserver.
    KillForkserver,
}

/// In a process of its own (the servers are the test harness's helpers): a pool whose
/// fork server is killed or frozen mid-run, with workers recycled every 20 tasks, goes
/// on: every task runs exactly once (retries 0, so a worker that died with its server
/// would show as a failure), all succeed, and the run does not stall on the frozen
/// server. Prints `ok N` and the seconds from the fault to the end.
fn server_fault_scenario(fault: ServerFault) {
    let method = match fault {
        ServerFault::KillForkserver => StartMethod::Forkserver,
        _ => StartMethod::Fork,
    };
    let before = supervisor::helper_pids();
    let pool = Pool::builder()
        .procs(2)
        .start_method(method)
        .max_tasks_per_child(20)
        .grace(Duration::from_millis(500))
        .build()
        .unwrap();
    let log = RunLog::new("server-fault");
    let jobs: Vec<Job> = (0..400).map(|id| log.job(id, 3, Then::Return)).collect();
    let mut faulted = None;
    let mut target = 0;
    let mut ok = 0;
    for (i, r) in pool.imap(job, jobs.clone()).enumerate() {
        r.unwrap_or_else(|e| panic!("input {i}: {e}"));
        ok += 1;
        if i == 100 && faulted.is_none() {
            let helpers = supervisor::helper_pids();
            let signal;
            (target, signal) = match fault {
                ServerFault::KillZygote => (helpers[0], libc::SIGKILL),
                ServerFault::FreezeZygote => (helpers[0], libc::SIGSTOP),
                // The one the pool started (the zygote, if any, was there before).
                ServerFault::KillForkserver => (
                    *helpers
                        .iter()
                        .find(|p| !before.contains(p))
                        .unwrap_or_else(|| panic!("no new helper: {before:?} then {helpers:?}")),
                    libc::SIGKILL,
                ),
            };
            // SAFETY: kill with plain integers; this program's own fork server.
            unsafe { libc::kill(target as i32, signal) };
            faulted = Some(Instant::now());
        }
    }
    let took = faulted.unwrap().elapsed();
    if let ServerFault::KillForkserver = fault {
        let now = supervisor::helper_pids();
        assert!(
            !now.contains(&target),
            "the forkserver {target} was not replaced: {now:?}"
        );
    }
    let runs = log.runs();
    for j in &jobs {
        assert_eq!(
            runs.get(&j.id),
            Some(&1),
            "task {} started {:?} times",
            j.id,
            runs.get(&j.id)
        );
    }
    let stats = pool.stats();
    assert!(stats.broken.is_none(), "{stats:?}");
    if method == StartMethod::Fork {
        assert!(
            stats.notes.iter().any(|n| n.contains("zygote died")),
            "{:?}",
            stats.notes
        );
    }
    pool.join();
    println!("ok {ok} after {:.1}", took.as_secs_f64());
}

#[linkme::distributed_slice(SCENARIOS)]
static ZYGOTE_KILLED: Scenario = Scenario {
    name: "zygote_killed",
    run: || server_fault_scenario(ServerFault::KillZygote),
};

#[linkme::distributed_slice(SCENARIOS)]
static ZYGOTE_FROZEN: Scenario = Scenario {
    name: "zygote_frozen",
    run: || server_fault_scenario(ServerFault::FreezeZygote),
};

#[linkme::distributed_slice(SCENARIOS)]
static FORKSERVER_KILLED: Scenario = Scenario {
    name: "forkserver_killed",
    run: || server_fault_scenario(ServerFault::KillForkserver),
};

/// A task that returns 4 KiB; the one with a gate waits until the gate file exists
/// (at most 120 s), the others append their id to the run log first.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Gated {
    id: u64,
    gate: Option<PathBuf>,
    log: PathBuf,
}

fn gated(g: Gated) -> Vec<u8> {
    match &g.gate {
        Some(go) => {
            let until = Instant::now() + Duration::from_secs(120);
            while !go.exists() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        None => {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&g.log)
                .expect("run log");
            f.write_all(format!("{}\n", g.id).as_bytes())
                .expect("run log write");
        }
    }
    vec![(g.id % 251) as u8; 4096]
}
supervisor::task!(gated);

mod batches;
mod imap;
mod limits;
mod server_faults;
