//! `Pool` against Python's `multiprocessing.Pool` on the same workloads, in the same run.
//!
//! Run with `cargo bench --bench pool`. Environment:
//! - `RUNS=N`: runs per workload, the median is reported (default 5);
//! - `SCALE=N`: divides the sizes of workloads 1-5 (default 1).
//!
//! Each run of a workload runs ours, then Python's (`python3 benches/pool_python.py
//! WORKLOAD N`, which prints its own elapsed seconds), so noise hits both alike. Both
//! sides use 2 workers and (workloads 1-5) fork: `StartMethod::Fork` here, the fork
//! context in Python. Pool creation and a warm-up are outside the timing, except in
//! workload 6, which times exactly that. Arguments (cargo passes `--bench`) are ignored.
//!
//! "ratio" is always peer time / our time: how many times faster supervisor is.

use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;
use sha2::{Digest, Sha512};
use supervisor::{Pool, StartMethod};

/// Workers per pool in workloads 1-5, on both sides.
const PROCS: usize = 2;
/// Workers per pool in workload 6.
const START_PROCS: usize = 8;
/// Rounds of the chained sha512 (`CHAIN_ROUNDS` in pool_python.py).
const CHAIN_ROUNDS: usize = 20_000;
/// Size of one payload in workload 4.
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
    let mut h = s;
    let mut next = String::with_capacity(128);
    for _ in 0..CHAIN_ROUNDS {
        next.clear();
        for b in Sha512::digest(h.as_bytes()) {
            let _ = write!(next, "{b:02x}");
        }
        std::mem::swap(&mut h, &mut next);
    }
    h
}
supervisor::task!(chain);

// ---------------------------------------------------------------------------------------
// Our side. Every function builds its pool untimed (except `start`) and returns the
// elapsed time of the workload alone.

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

/// Workload 1: `n` `apply` round trips, one at a time.
fn ours_apply(n: usize) -> Duration {
    let pool = warm_pool();
    let t = Instant::now();
    for i in 0..n as u64 {
        assert_eq!(pool.apply(inc, i).expect("apply failed"), i + 1);
    }
    t.elapsed()
}

/// Workload 1's floor: `n` 8-byte write/read round trips through `/bin/cat` over two
/// pipes. Nothing can answer another process faster than an echo through pipes.
fn pipe_floor(n: usize) -> Duration {
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

/// Workload 2: `n` `apply_async` submissions, then wait for all.
fn ours_apply_async(n: usize) -> Duration {
    let pool = warm_pool();
    let t = Instant::now();
    let handles: Vec<_> = (0..n as u64).map(|i| pool.apply_async(inc, i)).collect();
    for (i, h) in (0..n as u64).zip(&handles) {
        assert_eq!(h.wait().expect("task failed"), i + 1);
    }
    t.elapsed()
}

/// Workload 3: `map` over `n` inputs, automatic chunk size.
fn ours_map(n: usize) -> Duration {
    let pool = warm_pool();
    let t = Instant::now();
    let out = pool.map(inc, 0..n as u64);
    let elapsed = t.elapsed();
    assert_eq!(out.len(), n);
    assert_eq!(*out[n - 1].as_ref().expect("task failed"), n as u64);
    elapsed
}

/// The 1 MiB payload of workload 4 (the same bytes as Python's).
fn payload() -> ByteBuf {
    ByteBuf::from((0..MIB).map(|i| i as u8).collect::<Vec<u8>>())
}

/// Workload 4: `n` `apply` round trips of a 1 MiB payload.
fn ours_bytes(n: usize) -> Duration {
    let pool = warm_pool();
    let payload = payload();
    let t = Instant::now();
    for _ in 0..n {
        // The clone is the caller's copy; the task takes its argument by value.
        let back = pool.apply(echo, payload.clone()).expect("echo failed");
        assert_eq!(back.len(), MIB);
    }
    t.elapsed()
}

/// The inputs of workload 5.
fn cpu_inputs(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("input-{i}")).collect()
}

/// Workload 5: `map` of the chained sha512 over `n` inputs.
fn ours_cpu(n: usize) -> Duration {
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

/// Workload 5's baseline: the same chains one after another in this process.
fn serial_cpu(n: usize) -> Duration {
    let inputs = cpu_inputs(n);
    let t = Instant::now();
    let out: Vec<String> = inputs.into_iter().map(chain).collect();
    let elapsed = t.elapsed();
    assert!(out.iter().all(|h| h.len() == 128));
    elapsed
}

/// Workload 6: a pool of `START_PROCS` workers from `build` to the first result.
/// Tearing it down is not timed.
fn ours_start(method: StartMethod) -> Duration {
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

// ---------------------------------------------------------------------------------------
// The peer: Python's multiprocessing.Pool.

/// `python3 pool_python.py ...`, or `None` when there is no python3.
struct Python {
    script: PathBuf,
    version: String,
}

impl Python {
    fn find() -> Option<Python> {
        let out = match Command::new("python3").arg("--version").output() {
            Ok(out) => out,
            Err(e) if e.kind() == ErrorKind::NotFound => return None,
            Err(e) => panic!("running python3 failed: {e}"),
        };
        Some(Python {
            script: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/pool_python.py"),
            version: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        })
    }

    /// One timed run of `workload` with `n` items: the seconds the script printed.
    fn run(&self, workload: &str, n: usize) -> Duration {
        let out = Command::new("python3")
            .arg(&self.script)
            .arg(workload)
            .arg(n.to_string())
            .stdin(Stdio::null())
            .output()
            .expect("running python3 failed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "pool_python.py {workload} {n} failed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let secs: f64 = stdout
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("pool_python.py {workload}: no time in {stdout:?}"));
        Duration::from_secs_f64(secs)
    }
}

// ---------------------------------------------------------------------------------------
// Measuring and reporting.

/// Medians of interleaved runs: each run calls every measurement once, in order.
fn interleaved(runs: usize, measures: &mut [&mut dyn FnMut() -> Duration]) -> Vec<Duration> {
    let mut times = vec![Vec::with_capacity(runs); measures.len()];
    for _ in 0..runs {
        for (i, m) in measures.iter_mut().enumerate() {
            times[i].push(m());
        }
    }
    times.into_iter().map(median).collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// How a side's throughput is shown.
#[derive(Clone, Copy)]
enum Rate {
    /// Items per second.
    Items(usize),
    /// GiB per second for this many bytes.
    Bytes(usize),
    /// Time only.
    None,
}

impl Rate {
    fn show(self, t: Duration) -> String {
        let secs = t.as_secs_f64();
        match self {
            Rate::Items(n) => {
                let per_sec = n as f64 / secs;
                if per_sec >= 1e6 {
                    format!("{:.2} M/s", per_sec / 1e6)
                } else if per_sec >= 1e3 {
                    format!("{:.1} k/s", per_sec / 1e3)
                } else {
                    format!("{per_sec:.0} /s")
                }
            }
            Rate::Bytes(n) => format!("{:.2} GiB/s", gib_per_sec(n, t)),
            Rate::None => String::new(),
        }
    }
}

fn gib_per_sec(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / (1u64 << 30) as f64 / t.as_secs_f64()
}

/// One line of the table: our median against a peer's (`None`: the peer was skipped).
struct Row {
    workload: String,
    peer: String,
    ours: Duration,
    theirs: Option<Duration>,
    rate: Rate,
    /// The least acceptable ratio (peer time / our time); `None`: for information.
    min_ratio: Option<f64>,
    /// How the target is shown.
    target: String,
}

const HEADER: [&str; 9] = [
    "workload",
    "vs",
    "supervisor",
    "rate",
    "peer",
    "rate",
    "ratio",
    "target",
    "",
];

fn print_line(cells: [&str; 9]) {
    println!(
        "{:<26} {:<16} {:>10} {:>12} {:>10} {:>12} {:>8}  {:<20} {}",
        cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6], cells[7], cells[8]
    );
}

impl Row {
    fn print(&self) {
        let ours = format!("{:.1?}", self.ours);
        let ours_rate = self.rate.show(self.ours);
        let (theirs, theirs_rate, ratio, verdict) = match self.theirs {
            Some(t) => {
                let ratio = t.as_secs_f64() / self.ours.as_secs_f64();
                let verdict = match self.min_ratio {
                    Some(min) if ratio >= min => "ok",
                    Some(_) => "over",
                    None => "",
                };
                (
                    format!("{t:.1?}"),
                    self.rate.show(t),
                    format!("{ratio:.2}x"),
                    verdict,
                )
            }
            None => ("-".into(), String::new(), "-".into(), "skipped"),
        };
        print_line([
            &self.workload,
            &self.peer,
            &ours,
            &ours_rate,
            &theirs,
            &theirs_rate,
            &ratio,
            &self.target,
            verdict,
        ]);
    }
}

/// Workload sizes, divided by `SCALE` (at least 1 each).
struct Sizes {
    apply: usize,
    apply_async: usize,
    map: usize,
    bytes: usize,
    cpu: usize,
}

impl Sizes {
    fn new(scale: usize) -> Sizes {
        let s = |n: usize| (n / scale).max(1);
        Sizes {
            apply: s(2_000),
            apply_async: s(100_000),
            map: s(1_000_000),
            bytes: s(256),
            cpu: s(16),
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("{name} must be a positive integer"))
        })
        .unwrap_or(default)
        .max(1)
}

fn main() {
    supervisor::init();
    let runs = env_usize("RUNS", 5);
    let scale = env_usize("SCALE", 1);
    let sizes = Sizes::new(scale);
    let python = Python::find();
    // Started here so its first use is not in a timed run.
    supervisor::ensure_forkserver().expect("starting the forkserver failed");

    // Interleaves our measurements (one or more) with the peer's run of `workload`:
    // the medians of ours in order, and the peer's (`None` if there is no python3).
    let measure = |ours: &mut [&mut dyn FnMut() -> Duration], workload: &str, n: usize| {
        // Without python3 the peer's slot measures nothing.
        let mut peer = || {
            python
                .as_ref()
                .map_or(Duration::ZERO, |p| p.run(workload, n))
        };
        let mut all: Vec<&mut dyn FnMut() -> Duration> = Vec::new();
        for m in ours.iter_mut() {
            all.push(&mut **m);
        }
        all.push(&mut peer);
        let mut medians = interleaved(runs, &mut all);
        let theirs = medians.pop().filter(|_| python.is_some());
        (medians, theirs)
    };

    let mut rows = Vec::new();

    // 1. One tiny task at a time, against Python and against the pipe floor.
    let n = sizes.apply;
    let (ours, theirs) = measure(
        &mut [&mut || ours_apply(n), &mut || pipe_floor(n)],
        "apply",
        n,
    );
    let label = format!("1 apply x{n}");
    rows.push(Row {
        workload: label.clone(),
        peer: "python apply".into(),
        ours: ours[0],
        theirs,
        rate: Rate::Items(n),
        min_ratio: Some(10.0),
        target: ">= 10x".into(),
    });
    rows.push(Row {
        workload: label,
        peer: "pipe floor (cat)".into(),
        ours: ours[0],
        theirs: Some(ours[1]),
        rate: Rate::Items(n),
        min_ratio: Some(0.5),
        target: ">= 0.5x (<= 2x floor)".into(),
    });

    // 2. Many tiny tasks submitted one by one.
    let n = sizes.apply_async;
    let (ours, theirs) = measure(&mut [&mut || ours_apply_async(n)], "apply_async", n);
    rows.push(Row {
        workload: format!("2 apply_async x{n}"),
        peer: "python".into(),
        ours: ours[0],
        theirs,
        rate: Rate::Items(n),
        min_ratio: Some(10.0),
        target: ">= 10x".into(),
    });

    // 3. map with automatic chunks.
    let n = sizes.map;
    let (ours, theirs) = measure(&mut [&mut || ours_map(n)], "map", n);
    rows.push(Row {
        workload: format!("3 map x{n}"),
        peer: "python map".into(),
        ours: ours[0],
        theirs,
        rate: Rate::Items(n),
        min_ratio: Some(2.0),
        target: ">= 2x".into(),
    });

    // 4. 1 MiB payloads there and back: 2 MiB moved per round trip.
    let n = sizes.bytes;
    let (ours, theirs) = measure(&mut [&mut || ours_bytes(n)], "bytes", n);
    let moved = 2 * MIB * n;
    let label = format!("4 apply 1MiB bytes x{n}");
    rows.push(Row {
        workload: label.clone(),
        peer: "python".into(),
        ours: ours[0],
        theirs,
        rate: Rate::Bytes(moved),
        min_ratio: Some(6.0),
        target: ">= 6x".into(),
    });
    // The absolute target, as a ratio against the time 1 GiB/s would take.
    rows.push(Row {
        workload: label,
        peer: "1 GiB/s".into(),
        ours: ours[0],
        theirs: Some(Duration::from_secs_f64(moved as f64 / (1u64 << 30) as f64)),
        rate: Rate::Bytes(moved),
        min_ratio: Some(1.0),
        target: ">= 1 GiB/s".into(),
    });

    // 5. CPU-bound map: speedup over serial, and against Python.
    let n = sizes.cpu;
    let (ours, theirs) = measure(&mut [&mut || ours_cpu(n), &mut || serial_cpu(n)], "cpu", n);
    let label = format!("5 map sha512 chain x{n}");
    rows.push(Row {
        workload: label.clone(),
        peer: "serial (here)".into(),
        ours: ours[0],
        theirs: Some(ours[1]),
        rate: Rate::None,
        min_ratio: Some(1.9),
        target: ">= 1.9x speedup".into(),
    });
    rows.push(Row {
        workload: label,
        peer: "python hashlib".into(),
        ours: ours[0],
        theirs,
        rate: Rate::None,
        min_ratio: None,
        target: "(info)".into(),
    });

    // 6. Pool creation to first result, 8 workers: our three methods vs Python's spawn.
    let (ours, theirs) = measure(
        &mut [
            &mut || ours_start(StartMethod::Spawn),
            &mut || ours_start(StartMethod::Fork),
            &mut || ours_start(StartMethod::Forkserver),
        ],
        "start_spawn",
        START_PROCS,
    );
    for (i, method) in [
        StartMethod::Spawn,
        StartMethod::Fork,
        StartMethod::Forkserver,
    ]
    .into_iter()
    .enumerate()
    {
        let spawn = method == StartMethod::Spawn;
        rows.push(Row {
            workload: format!("6 start {START_PROCS} ({method})"),
            peer: "python spawn".into(),
            ours: ours[i],
            theirs,
            rate: Rate::None,
            min_ratio: spawn.then_some(10.0),
            target: if spawn { ">= 10x" } else { "(info)" }.into(),
        });
    }

    match &python {
        Some(p) => println!(
            "supervisor Pool (StartMethod::Fork, {PROCS} workers; workload 6: {START_PROCS}) vs \
             {} multiprocessing.Pool (fork, {PROCS} workers; workload 6: spawn, {START_PROCS})",
            p.version
        ),
        None => println!("python3 not found: peer skipped"),
    }
    println!(
        "median of {runs} interleaved runs, SCALE={scale}; pool creation timed only in workload 6; \
         ratio = peer time / supervisor time"
    );
    print_line(HEADER);
    for row in &rows {
        row.print();
    }
}
