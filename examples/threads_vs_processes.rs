//! The same CPU-bound job (SHA-512 chained many times over 8 inputs) with threads, with
//! this crate's worker processes, and, when python3 is installed, with Python threads and
//! Python multiprocessing. Rust threads have no global lock, so both Rust columns scale;
//! processes add isolation (a crash costs one task) for a small start-up cost. Python
//! threads do not scale (the GIL); Python processes do.
//!
//! Run: `cargo run --release --example threads_vs_processes [-- ROUNDS]` (default 20,000)

use std::time::{Duration, Instant};

use sha2::{Digest, Sha512};
use supervisor::Pool;

/// `rounds` rounds of h = hex(sha512(h)), from the input's bytes.
fn chain(input: String, rounds: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut h = input.into_bytes();
    for _ in 0..rounds {
        let digest = Sha512::digest(&h);
        h.clear();
        for b in digest {
            h.push(HEX[(b >> 4) as usize]);
            h.push(HEX[(b & 15) as usize]);
        }
    }
    String::from_utf8(h).unwrap_or_default()
}
supervisor::task!(chain);

const PYTHON: &str = r#"
import hashlib, sys, time, threading
from multiprocessing import Pool
def chain(s, rounds):
    h = s.encode()
    for _ in range(rounds):
        h = hashlib.sha512(h).hexdigest().encode()
    return h.decode()
if __name__ == "__main__":
    rounds, procs = int(sys.argv[1]), int(sys.argv[2])
    inputs = [f"input-{i}" for i in range(8)]
    t = time.perf_counter()
    [chain(s, rounds) for s in inputs]
    print(time.perf_counter() - t)
    t = time.perf_counter()
    threads = [threading.Thread(target=chain, args=(s, rounds)) for s in inputs]
    [x.start() for x in threads]; [x.join() for x in threads]
    print(time.perf_counter() - t)
    t = time.perf_counter()
    with Pool(procs) as p:
        p.starmap(chain, [(s, rounds) for s in inputs])
    print(time.perf_counter() - t)
"#;

fn main() -> Result<(), supervisor::Error> {
    supervisor::init();
    let rounds: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let inputs: Vec<String> = (0..8).map(|i| format!("input-{i}")).collect();
    let procs = std::thread::available_parallelism().map_or(2, |n| n.get());
    // (how, time, the serial time it is compared with)
    let mut rows: Vec<(&str, Duration, Duration)> = Vec::new();

    let t = Instant::now();
    let serial: Vec<String> = inputs.iter().map(|s| chain(s.clone(), rounds)).collect();
    let rust_serial = t.elapsed();
    rows.push(("Rust, serial (one thread)", rust_serial, rust_serial));

    let t = Instant::now();
    let threads: Vec<_> = inputs
        .iter()
        .cloned()
        .map(|s| std::thread::spawn(move || chain(s, rounds)))
        .collect();
    let by_threads: Vec<String> = threads
        .into_iter()
        .map(|h| h.join().unwrap_or_default())
        .collect();
    rows.push(("Rust threads", t.elapsed(), rust_serial));

    let t = Instant::now();
    let pool = Pool::builder().procs(procs).build()?;
    let jobs = inputs.iter().map(|s| (s.clone(), rounds));
    let by_processes: Vec<String> = pool
        .starmap(chain, jobs)
        .into_iter()
        .collect::<Result<_, _>>()?;
    pool.join();
    rows.push((
        "supervisor processes (incl. start)",
        t.elapsed(),
        rust_serial,
    ));
    assert!(
        by_threads == serial && by_processes == serial,
        "every way computes the same digests"
    );

    let python = std::process::Command::new("python3")
        .args(["-c", PYTHON, &rounds.to_string(), &procs.to_string()])
        .output();
    match python {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let secs: Vec<f64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if let [serial, threads, processes] = secs[..] {
                let serial = Duration::from_secs_f64(serial);
                rows.push(("Python, serial", serial, serial));
                rows.push(("Python threads", Duration::from_secs_f64(threads), serial));
                let pool_time = Duration::from_secs_f64(processes);
                rows.push(("Python multiprocessing (incl. start)", pool_time, serial));
            }
        }
        _ => println!("(python3 not found: Python rows skipped)"),
    }

    println!("8 inputs x {rounds} rounds of SHA-512, {procs} CPUs");
    println!(
        "{:<38} {:>10} {:>28}",
        "how", "time", "speedup over its own serial"
    );
    for (name, d, serial) in &rows {
        println!(
            "{name:<38} {:>8.0}ms {:>27.2}x",
            d.as_secs_f64() * 1000.0,
            serial.as_secs_f64() / d.as_secs_f64()
        );
    }
    Ok(())
}
