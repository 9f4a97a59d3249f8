//! Queue throughput, 1 producer process and 1 consumer (the parent), 64-byte items,
//! against Python's `multiprocessing.Queue` measured the same way in the same run.
//!
//! Run with `cargo bench --bench queue`; `RUNS=N` changes the number of runs (5) and
//! `ITEMS=N` the items per run (200000). Each run is timed from the first item the
//! consumer gets to the last (process start-up is not counted); runs of both sides are
//! interleaved and the median is reported. Needs `python3` on the PATH.
//! Arguments (cargo passes `--bench`) are ignored.

use std::process::Command;
use std::time::Instant;

use serde_bytes::ByteBuf;
use supervisor::{Process, Queue};

const ITEM_BYTES: usize = 64;

/// Puts `n` items of 64 bytes.
fn produce((q, n): (Queue<ByteBuf>, u64)) -> u64 {
    let item = ByteBuf::from(vec![b'x'; ITEM_BYTES]);
    for _ in 0..n {
        q.put(&item).expect("put failed");
    }
    n
}
supervisor::task!(produce);

const PYTHON: &str = r#"
import multiprocessing as mp, sys, time

def producer(q, n):
    item = b'x' * 64
    for _ in range(n):
        q.put(item)

if __name__ == '__main__':
    n = int(sys.argv[1])
    q = mp.Queue()
    p = mp.Process(target=producer, args=(q, n))
    p.start()
    q.get()
    t = time.perf_counter()
    for _ in range(n - 1):
        q.get()
    dt = time.perf_counter() - t
    p.join()
    print((n - 1) / dt)
"#;

/// Items per second through a supervisor queue.
fn rust_run(n: u64) -> f64 {
    let q: Queue<ByteBuf> = Queue::new().expect("creating the queue failed");
    let mut p = Process::builder(produce, (q.clone(), n))
        .start()
        .expect("starting the producer failed");
    let first = q.get().expect("get failed");
    assert_eq!(first.len(), ITEM_BYTES);
    let t = Instant::now();
    for _ in 1..n {
        q.get().expect("get failed");
    }
    let dt = t.elapsed().as_secs_f64();
    p.join().expect("the producer failed");
    (n - 1) as f64 / dt
}

/// Items per second through a Python `multiprocessing.Queue`.
fn python_run(n: u64) -> f64 {
    let out = Command::new("python3")
        .arg("-c")
        .arg(PYTHON)
        .arg(n.to_string())
        .output()
        .expect("running python3 failed (is it installed?)");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("python3 printed no rate")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|s| s.parse().expect("must be a positive integer"))
        .unwrap_or(default)
        .max(1)
}

fn main() {
    supervisor::init();
    let runs = env_or("RUNS", 5) as usize;
    let n = env_or("ITEMS", 200_000).max(2);
    rust_run(n / 10); // warm up
    let (mut rust, mut python) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        rust.push(rust_run(n));
        python.push(python_run(n));
    }
    let (r, p) = (median(rust), median(python));
    println!(
        "queue throughput, 1 producer -> 1 consumer, {ITEM_BYTES}-byte items, {n} items, median of {runs} runs"
    );
    println!("{:<34} {:>14}", "queue", "items/s");
    println!("{:<34} {:>14.0}", "python3 multiprocessing.Queue", p);
    println!("{:<34} {:>14.0}", "supervisor::Queue", r);
    let ratio = r / p;
    let verdict = if ratio >= 10.0 { "ok" } else { "under" };
    println!("ratio: {ratio:.1}x python (target >= 10x: {verdict})");
}
