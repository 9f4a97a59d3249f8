//! Times sequential spawn starts of a no-op task to its result, ours or procspawn's
//! (issue 16's start speed): `start_timing [ours|procspawn] [N]` prints the median and
//! mean wall time per start. Run under `perf stat` for CPU and context switches.
//!
//! Run: `cargo run --release --example start_timing -- ours 300`

use std::time::{Duration, Instant};

use supervisor::{Process, StartMethod};

fn timing_inc(x: u64) -> u64 {
    x + 1
}
supervisor::task!(timing_inc);

fn ours() -> Duration {
    let t = Instant::now();
    let mut p = Process::builder(timing_inc, 1u64)
        .start_method(StartMethod::Spawn)
        .start()
        .expect("starting the worker failed");
    assert_eq!(p.join().expect("the worker returned no result"), 2);
    t.elapsed()
}

fn theirs() -> Duration {
    let t = Instant::now();
    let h = procspawn::spawn(1u64, |x| x + 1);
    assert_eq!(h.join().expect("procspawn's child failed"), 2);
    t.elapsed()
}

fn main() {
    procspawn::init();
    supervisor::init();
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "ours".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(300);
    let one: fn() -> Duration = match mode.as_str() {
        "ours" => ours,
        "procspawn" => theirs,
        other => panic!("mode {other:?}: ours or procspawn"),
    };
    let t = Instant::now();
    let mut v: Vec<Duration> = (0..n).map(|_| one()).collect();
    let total = t.elapsed();
    v.sort();
    println!(
        "{mode} n={n} median_us={} mean_us={}",
        v[n / 2].as_micros(),
        total.as_micros() / n as u128
    );
}
