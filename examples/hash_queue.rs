//! An input queue, a result queue and a set of identical workers: each worker takes a
//! string, hashes it with SHA-512 a million times (h = hex(sha512(h))), and puts the
//! digest on the result queue. The parent polls which workers are alive and prints
//! progress while it collects; then it does the same job serially and prints both times.
//!
//! Run: `cargo run --release --example hash_queue [-- ROUNDS]` (default 1,000,000)

use std::time::{Duration, Instant};

use sha2::{Digest, Sha512};
use supervisor::{Error, Process, Queue};

fn chain(input: &str, rounds: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut h = input.as_bytes().to_vec();
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

/// Takes strings until the input queue is closed and drained; returns how many it hashed.
fn hasher(rounds: u64, input: Queue<String>, results: Queue<(String, String)>) -> u64 {
    let mut done = 0;
    while let Ok(s) = input.get() {
        let digest = chain(&s, rounds);
        if results.put(&(s, digest)).is_err() {
            break;
        }
        done += 1;
    }
    done
}
supervisor::task!(hasher);

fn main() -> Result<(), Error> {
    supervisor::init();
    let rounds: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let strings: Vec<String> = (0..16).map(|i| format!("string number {i}")).collect();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());

    let t = Instant::now();
    let input: Queue<String> = Queue::new()?;
    let results: Queue<(String, String)> = Queue::new()?;
    let mut procs: Vec<_> = (0..workers)
        .map(|_| Process::builder(hasher, (rounds, input.clone(), results.clone())).start())
        .collect::<Result<_, _>>()?;
    for s in &strings {
        input.put(s)?;
    }
    input.close()?; // workers finish when it is empty
    let mut collected = Vec::new();
    while collected.len() < strings.len() {
        match results.get_timeout(Duration::from_millis(500))? {
            Some(result) => collected.push(result),
            None => {
                let alive = procs.iter().filter(|p| p.is_alive()).count();
                println!(
                    "  {}/{} hashed, {alive}/{workers} workers alive",
                    collected.len(),
                    strings.len()
                );
            }
        }
    }
    for p in procs.iter_mut() {
        p.join()?;
    }
    let parallel = t.elapsed();
    println!(
        "{} strings x {rounds} rounds with {workers} worker processes: {parallel:.2?}",
        strings.len()
    );

    let t = Instant::now();
    for (s, digest) in &collected {
        assert_eq!(
            &chain(s, rounds),
            digest,
            "the workers computed what a serial run does"
        );
    }
    let serial = t.elapsed();
    println!(
        "the same job serially: {serial:.2?} ({:.2}x)",
        serial.as_secs_f64() / parallel.as_secs_f64()
    );
    Ok(())
}
