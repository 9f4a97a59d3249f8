//! Time from `Process::start()` to the first result, per start method, against the
//! machine's floor (a bare fork+exec of `/bin/true`).
//!
//! Run with `cargo bench --bench start`; `SAMPLES=N` changes the sample count (100).
//! Arguments (cargo passes `--bench`) are ignored.

use std::process::Command;
use std::time::{Duration, Instant};

use supervisor::{Process, StartMethod};

/// The task: does nothing, so what is timed is starting and answering.
fn noop_task(x: u64) -> u64 {
    x
}
supervisor::task!(noop_task);

/// Untimed runs per start method before measuring.
const WARMUP: usize = 10;

/// One start-to-result round trip.
fn run(method: StartMethod) -> Duration {
    let t = Instant::now();
    let mut p = Process::builder(noop_task, 0u64)
        .start_method(method)
        .start()
        .expect("starting the worker failed");
    p.join().expect("the worker returned no result");
    t.elapsed()
}

/// A bare fork+exec of `/bin/true` and wait: the floor for starting any process.
fn floor() -> Duration {
    let t = Instant::now();
    let status = Command::new("/bin/true")
        .status()
        .expect("running /bin/true failed");
    assert!(status.success(), "/bin/true failed: {status}");
    t.elapsed()
}

/// The `q` quantile (0..=1) of sorted samples, nearest rank.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    supervisor::init();
    let samples: usize = std::env::var("SAMPLES")
        .ok()
        .map(|s| s.parse().expect("SAMPLES must be a positive integer"))
        .unwrap_or(100)
        .max(1);

    // Warm up: page in the binary, start the forkserver, fill caches.
    supervisor::ensure_forkserver().expect("starting the forkserver failed");
    for _ in 0..WARMUP {
        floor();
        for m in StartMethod::ALL {
            run(m);
        }
    }

    // Round-robin, one sample of each per round, so noise hits all of them alike.
    // Index 0 is the floor, then the start methods in `StartMethod::ALL` order.
    let mut times = vec![Vec::with_capacity(samples); 1 + StartMethod::ALL.len()];
    for _ in 0..samples {
        times[0].push(floor());
        for (i, m) in StartMethod::ALL.into_iter().enumerate() {
            times[i + 1].push(run(m));
        }
    }
    for t in &mut times {
        t.sort();
    }

    let floor_median = quantile(&times[0], 0.5);
    println!("start() to first result, {samples} samples each (median, p90)");
    println!(
        "{:<12} {:>10} {:>10} {:>8}  target",
        "method", "median", "p90", "x floor"
    );
    println!(
        "{:<12} {:>10.1?} {:>10.1?} {:>8.2}",
        "/bin/true",
        floor_median,
        quantile(&times[0], 0.9),
        1.0
    );
    for (i, m) in StartMethod::ALL.into_iter().enumerate() {
        let median = quantile(&times[i + 1], 0.5);
        let ratio = median.as_secs_f64() / floor_median.as_secs_f64();
        // Spawn re-executes the program, so it gets more headroom than the forks.
        let target = if m == StartMethod::Spawn { 3.0 } else { 2.0 };
        let verdict = if ratio <= target { "ok" } else { "over" };
        println!(
            "{:<12} {:>10.1?} {:>10.1?} {:>8.2}  <= {target:.0}x {verdict}",
            m.name(),
            median,
            quantile(&times[i + 1], 0.9),
            ratio
        );
    }
}
