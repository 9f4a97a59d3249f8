//! `Pool` against Python's `multiprocessing.Pool` (and `ProcessPoolExecutor` for
//! submissions) on the same workloads.
//!
//! Both sides use 2 workers started by fork (`StartMethod::Fork` here, the fork context
//! in Python). Pool creation and a warm-up are outside the timing, except in the
//! start-up workload, which times exactly that.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;
use sha2::{Digest, Sha512};
use supervisor::{Pool, StartMethod};

use super::measure::medians;
use super::run::Ctx;
use super::table::{Floor, Peer, Row, Target, Unit};

/// Workers per pool, on both sides, except in the start-up workload.
const PROCS: usize = 2;
/// Workers per pool in the start-up workload.
const START_PROCS: usize = 8;
/// Rounds of the chained sha512 (`CHAIN_ROUNDS` in python_peer.py).
const CHAIN_ROUNDS: usize = 20_000;
/// Size of one payload in the bytes workload.
const MIB: usize = 1 << 20;

/// The tiny task.
fn inc(x: u64) -> u64 {
    x + 1
}
supervisor::task!(inc);

/// Returns its payload unchanged.
fn echo(payload: ByteBuf) -> ByteBuf {
    payload
}
supervisor::task!(echo);

/// `h = lowercase hex(sha512(h))`, `CHAIN_ROUNDS` times, starting from `s`'s bytes.
fn chain(s: String) -> String {
    let mut hex = [0u8; 128];
    hex::encode_to_slice(Sha512::digest(s.as_bytes()), &mut hex).expect("128 digits");
    for _ in 1..CHAIN_ROUNDS {
        let digest = Sha512::digest(hex);
        hex::encode_to_slice(digest, &mut hex).expect("128 digits");
    }
    String::from_utf8_lossy(&hex).into_owned()
}
supervisor::task!(chain);

/// A pool of `PROCS` fork workers, every one of them up and having answered.
fn warm_pool() -> Pool {
    let pool = Pool::builder()
        .procs(PROCS)
        .start_method(StartMethod::Fork)
        .build()
        .expect("building the pool failed");
    for r in pool.map_chunked(inc, 0..4 * PROCS as u64, 1) {
        r.expect("warm-up task failed");
    }
    // Workers start in the background: wait until all are live.
    loop {
        let stats = pool.stats();
        if stats.workers.len() == PROCS && stats.starting == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    pool
}

/// `n` `apply` round trips, one at a time.
fn apply(n: usize) -> Duration {
    let pool = warm_pool();
    let t = Instant::now();
    for i in 0..n as u64 {
        assert_eq!(pool.apply(inc, i).expect("apply failed"), i + 1);
    }
    t.elapsed()
}

/// The floor of `apply`: `n` 8-byte write/read round trips through `/bin/cat` over two
/// pipes. Nothing can answer another process faster than an echo through pipes.
fn pipe_round_trips(n: usize) -> Duration {
    let mut cat = Command::new("/bin/cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting /bin/cat failed");
    let mut to_cat = cat.stdin.take().expect("cat has no stdin");
    let mut from_cat = cat.stdout.take().expect("cat has no stdout");
    let mut buf = [0u8; 8];
    let t = Instant::now();
    for i in 0..n as u64 {
        to_cat
            .write_all(&i.to_le_bytes())
            .expect("write to cat failed");
        from_cat.read_exact(&mut buf).expect("read from cat failed");
        assert_eq!(u64::from_le_bytes(buf), i);
    }
    let elapsed = t.elapsed();
    drop(to_cat);
    cat.wait().expect("waiting for cat failed");
    elapsed
}

/// `n` `apply_async` submissions, then a wait for each.
fn apply_async(n: usize) -> Duration {
    let pool = warm_pool();
    let t = Instant::now();
    let handles: Vec<_> = (0..n as u64).map(|i| pool.apply_async(inc, i)).collect();
    for (i, h) in (0..n as u64).zip(&handles) {
        assert_eq!(h.wait().expect("task failed"), i + 1);
    }
    t.elapsed()
}

/// `map` over `n` inputs, automatic chunk size.
fn map(n: usize) -> Duration {
    let pool = warm_pool();
    let t = Instant::now();
    let out = pool.map(inc, 0..n as u64);
    let elapsed = t.elapsed();
    assert_eq!(out.len(), n);
    assert_eq!(*out[n - 1].as_ref().expect("task failed"), n as u64);
    elapsed
}

/// `n` `apply` round trips of a 1 MiB payload (the same bytes as Python's).
fn bytes(n: usize) -> Duration {
    let pool = warm_pool();
    let payload = ByteBuf::from((0..MIB).map(|i| i as u8).collect::<Vec<u8>>());
    let t = Instant::now();
    for _ in 0..n {
        // The clone is the caller's copy; the task takes its argument by value.
        let back = pool.apply(echo, payload.clone()).expect("echo failed");
        assert_eq!(back.len(), MIB);
    }
    t.elapsed()
}

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One `apply` round trip of a `mib` MiB payload: its time, and the caller's peak RSS
/// above what it held just before (its payload included), in KiB as nanoseconds.
fn big(mib: usize) -> (Duration, Duration) {
    let pool = warm_pool();
    let payload = ByteBuf::from(vec![1u8; mib * MIB]);
    // Resets the peak RSS to the current RSS.
    std::fs::write("/proc/self/clear_refs", "5").expect("clear_refs");
    let before = status_kib("VmRSS");
    let t = Instant::now();
    let back = pool.apply(echo, payload).expect("echo failed");
    let elapsed = t.elapsed();
    assert_eq!(back.len(), mib * MIB);
    let grew = status_kib("VmHWM").saturating_sub(before);
    (elapsed, Duration::from_nanos(grew))
}

/// The inputs of the CPU-bound workload.
fn cpu_inputs(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("input-{i}")).collect()
}

/// `map` of the chained sha512 over `n` inputs.
fn cpu(n: usize) -> Duration {
    let pool = warm_pool();
    let inputs = cpu_inputs(n);
    let t = Instant::now();
    let out = pool.map(chain, inputs);
    let elapsed = t.elapsed();
    assert!(out
        .iter()
        .all(|h| h.as_ref().expect("chain failed").len() == 128));
    elapsed
}

/// The same chains one after another in this process.
fn cpu_serial(n: usize) -> Duration {
    let inputs = cpu_inputs(n);
    let t = Instant::now();
    let out: Vec<String> = inputs.into_iter().map(chain).collect();
    let elapsed = t.elapsed();
    assert!(out.iter().all(|h| h.len() == 128));
    elapsed
}

/// The machine's own speedup: the same chains split in halves between 2 threads of
/// this process (no pool, no messages). On a shared virtual machine two busy CPUs can
/// be slower than one, and this shows by how much.
fn cpu_split(n: usize) -> Duration {
    let inputs = cpu_inputs(n);
    let (first, second) = inputs.split_at(n / 2);
    let run = |half: &[String]| -> Vec<String> { half.iter().cloned().map(chain).collect() };
    let t = Instant::now();
    let out = std::thread::scope(|s| {
        let other = s.spawn(|| run(second));
        let mut out = run(first);
        out.extend(other.join().expect("a hashing thread panicked"));
        out
    });
    let elapsed = t.elapsed();
    assert!(out.iter().all(|h| h.len() == 128));
    elapsed
}

/// A pool of `START_PROCS` workers from `build` to the first result. Tearing it down
/// is not timed.
fn start(method: StartMethod) -> Duration {
    let t = Instant::now();
    let pool = Pool::builder()
        .procs(START_PROCS)
        .start_method(method)
        .build()
        .expect("building the pool failed");
    assert_eq!(pool.apply(inc, 1).expect("apply failed"), 2);
    let elapsed = t.elapsed();
    drop(pool);
    elapsed
}

pub fn rows(ctx: &Ctx) -> Vec<Row> {
    let runs = ctx.settings.runs;
    let size = |n| ctx.settings.size(n, 1);
    let python = ctx.python.as_ref();
    let py = |workload: &'static str, n: usize| move || python.map(|p| p.run(workload, n));
    let row = |workload: String, unit, ours, peer, targets| Row {
        workload,
        unit,
        ours,
        peer,
        floor: None,
        targets,
    };
    let mut rows = Vec::new();

    // One tiny task at a time, against Python and the pipe floor.
    // The floor goes first in each round, after the previous round's Python run, when
    // this process has been idle: right after our (polling) run it measures slower, as
    // the scheduler then tends to put the two ends of the pipe on different CPUs.
    let n = size(2_000);
    let [Some(floor), Some(ours), theirs] = medians(
        runs,
        [
            &mut || Some(pipe_round_trips(n)),
            &mut || Some(apply(n)),
            &mut py("apply", n),
        ],
    ) else {
        unreachable!("our measurements always run")
    };
    rows.push(Row {
        floor: Some(Floor {
            name: "pipe round trip",
            time: floor,
        }),
        ..row(
            format!("Pool.apply tiny task x{n}, one at a time"),
            Unit::PerCall(n),
            ours,
            Peer::new("multiprocessing.Pool.apply", theirs),
            vec![Target::Faster(10.0), Target::FloorTimes(2.0)],
        )
    });

    // Many tiny tasks submitted at once: the 100,000 against multiprocessing;
    // ProcessPoolExecutor takes about 0.3 ms per submit, so it gets 20,000.
    let n = size(100_000);
    let [Some(ours), theirs] = medians(
        runs,
        [&mut || Some(apply_async(n)), &mut py("apply_async", n)],
    ) else {
        unreachable!("our measurements always run")
    };
    rows.push(row(
        format!("Pool.apply_async tiny task x{n}, then wait all"),
        Unit::Total,
        ours,
        Peer::new("multiprocessing.Pool.apply_async", theirs),
        vec![Target::Faster(10.0)],
    ));
    let n = size(20_000);
    let [Some(ours), theirs] = medians(runs, [&mut || Some(apply_async(n)), &mut py("submit", n)])
    else {
        unreachable!("our measurements always run")
    };
    rows.push(row(
        format!("Pool.apply_async tiny task x{n}, then wait all"),
        Unit::Total,
        ours,
        Peer::new("ProcessPoolExecutor.submit", theirs),
        vec![],
    ));

    // map with automatic chunks.
    let n = size(1_000_000);
    let [Some(ours), theirs] = medians(runs, [&mut || Some(map(n)), &mut py("map", n)]) else {
        unreachable!("our measurements always run")
    };
    rows.push(row(
        format!("Pool.map tiny task x{n}, automatic chunks"),
        Unit::Total,
        ours,
        Peer::new("multiprocessing.Pool.map", theirs),
        vec![Target::Faster(2.0)],
    ));

    // 1 MiB payloads there and back: 2 MiB moved per round trip.
    let n = size(256);
    let [Some(ours), theirs] = medians(runs, [&mut || Some(bytes(n)), &mut py("bytes", n)]) else {
        unreachable!("our measurements always run")
    };
    rows.push(row(
        format!("Pool.apply 1 MiB there and back x{n}"),
        Unit::Bytes(2 * MIB * n),
        ours,
        Peer::new("multiprocessing.Pool.apply", theirs),
        vec![Target::Faster(6.0), Target::GibPerSec(1.0)],
    ));

    // One 100 MiB payload there and back: time, and the caller's memory.
    let mib = 100;
    let [Some(ours), theirs] = medians(runs, [&mut || Some(big(mib).0), &mut py("big_time", mib)])
    else {
        unreachable!("our measurements always run")
    };
    rows.push(row(
        format!("Pool.apply {mib} MiB there and back, once"),
        Unit::Total,
        ours,
        Peer::new("multiprocessing.Pool.apply", theirs),
        vec![],
    ));
    // The caller's memory for it, and near the limit (`MAX_VALUE`, 960 MiB encoded;
    // three runs at most there, each moves 2 GiB).
    for (mib, runs) in [(mib, runs), (950, runs.min(3))] {
        let [Some(ours), theirs] =
            medians(runs, [&mut || Some(big(mib).1), &mut py("big_rss", mib)])
        else {
            unreachable!("our measurements always run")
        };
        rows.push(row(
            format!("Pool.apply {mib} MiB there and back: caller's peak RSS growth"),
            Unit::Kib,
            ours,
            Peer::new("multiprocessing.Pool.apply", theirs),
            vec![],
        ));
    }

    // CPU-bound map: the speedup over serial, and against Python.
    let n = size(16);
    let [Some(ours), Some(serial), Some(split), theirs] = medians(
        runs,
        [
            &mut || Some(cpu(n)),
            &mut || Some(cpu_serial(n)),
            &mut || Some(cpu_split(n)),
            &mut py("cpu", n),
        ],
    ) else {
        unreachable!("our measurements always run")
    };
    let workload = format!("Pool.map sha512 chain x{n} (CPU-bound)");
    rows.push(Row {
        floor: Some(Floor {
            name: "2 threads, half each",
            time: split,
        }),
        ..row(
            workload.clone(),
            Unit::Total,
            ours,
            Peer::new("serial, 1 process (speedup)", Some(serial)),
            vec![Target::Faster(1.9)],
        )
    });
    rows.push(row(
        workload,
        Unit::Total,
        ours,
        Peer::new("multiprocessing.Pool.map (hashlib)", theirs),
        vec![],
    ));

    // Pool creation to the first result: our three methods against Python's spawn.
    let [Some(spawn), Some(fork), Some(forkserver), theirs] = medians(
        runs,
        [
            &mut || Some(start(StartMethod::Spawn)),
            &mut || Some(start(StartMethod::Fork)),
            &mut || Some(start(StartMethod::Forkserver)),
            &mut py("start_spawn", START_PROCS),
        ],
    ) else {
        unreachable!("our measurements always run")
    };
    for (method, ours) in [
        (StartMethod::Spawn, spawn),
        (StartMethod::Fork, fork),
        (StartMethod::Forkserver, forkserver),
    ] {
        let spawn = method == StartMethod::Spawn;
        rows.push(row(
            format!("Pool of {START_PROCS} ({method}) to first result"),
            Unit::Total,
            ours,
            Peer::new("multiprocessing.Pool (spawn)", theirs),
            if spawn {
                vec![Target::Faster(10.0)]
            } else {
                vec![]
            },
        ));
    }
    rows
}
