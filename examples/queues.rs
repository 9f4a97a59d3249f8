//! The classic multiprocessing lesson: one input queue, one result queue, 16 identical
//! workers that hash strings, and a parent that watches who is alive and prints
//! progress while the results come in.
//!
//! Run: `cargo run --release --example queues`

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use supervisor::{Error, ErrorKind, Process, Queue};

const WORKERS: usize = 16;
const ITEMS: usize = 2_000;
const ROUNDS: u32 = 20_000;

/// Hashes `text` `ROUNDS` times, feeding each hash into the next.
fn hash_chain(text: &str) -> u64 {
    let mut h = 0u64;
    for _ in 0..ROUNDS {
        let mut hasher = DefaultHasher::new();
        (h, text).hash(&mut hasher);
        h = hasher.finish();
    }
    h
}

/// A worker: takes strings from `input` until it is closed, puts
/// `(worker, string, hash)` on `results`, returns how many it did.
fn hash_worker((id, input, results): (usize, Queue<String>, Queue<(usize, String, u64)>)) -> u64 {
    let mut done = 0;
    loop {
        match input.get() {
            Ok(text) => {
                let h = hash_chain(&text);
                results
                    .put(&(id, text, h))
                    .expect("the result queue failed");
                done += 1;
            }
            Err(e) if matches!(e.kind(), ErrorKind::Closed { .. }) => return done,
            Err(e) => panic!("worker {id}: {e}"),
        }
    }
}
supervisor::task!(hash_worker);

fn main() -> Result<(), Error> {
    supervisor::init();
    let input: Queue<String> = Queue::new()?;
    let results: Queue<(usize, String, u64)> = Queue::new()?;

    let t = Instant::now();
    let mut workers = (0..WORKERS)
        .map(|id| {
            Process::builder(hash_worker, (id, input.clone(), results.clone()))
                .name(format!("hasher-{id}"))
                .start()
        })
        .collect::<Result<Vec<_>, _>>()?;
    println!("started {WORKERS} workers in {:?}", t.elapsed());

    for i in 0..ITEMS {
        input.put(&format!("string number {i}"))?;
    }
    // No more work: each worker finishes what is queued, then its `get` says Closed.
    input.close()?;

    let mut per_worker: BTreeMap<usize, usize> = BTreeMap::new();
    let mut received = 0;
    let mut last_report = Instant::now();
    while received < ITEMS {
        if let Some((id, _text, _hash)) = results.get_timeout(Duration::from_millis(100))? {
            *per_worker.entry(id).or_default() += 1;
            received += 1;
        }
        if last_report.elapsed() >= Duration::from_millis(250) || received == ITEMS {
            let alive = workers.iter().filter(|p| p.is_alive()).count();
            println!(
                "{:>6.2?}  {received:>5}/{ITEMS} hashed, {alive:>2}/{WORKERS} workers alive, {} waiting in the input queue",
                t.elapsed(),
                input.len()
            );
            last_report = Instant::now();
        }
    }

    let mut total = 0;
    for p in &mut workers {
        let done = p.join()?;
        total += done;
        println!(
            "{:<10} pid {:>7}  {done:>4} strings  exit code {:?}",
            p.name(),
            p.pid(),
            p.exitcode()
        );
    }
    let alive = workers.iter().filter(|p| p.is_alive()).count();
    println!(
        "{total} strings hashed by {} workers in {:?}; {alive} workers still alive",
        per_worker.len(),
        t.elapsed()
    );
    Ok(())
}
