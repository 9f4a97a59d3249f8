//! What separate processes buy: a worker that segfaults, aborts, panics, runs out of
//! memory or scribbles on a "global" variable cannot hurt the parent, which carries on,
//! reports each outcome, and still has its own copy of the variable.
//!
//! Run: `cargo run --release --example isolation`

use std::sync::atomic::{AtomicU64, Ordering};

use supervisor::{Pool, StartMethod};

/// A global the workers will try to change.
static COUNTER: AtomicU64 = AtomicU64::new(7);

fn misbehave(how: String) -> u64 {
    match how.as_str() {
        "segfault" => {
            // SAFETY: none: a deliberate crash.
            unsafe { std::ptr::null_mut::<u64>().write_volatile(1) };
            0
        }
        "abort" => std::process::abort(),
        "panic" => panic!("the task gave up"),
        "out of memory" => {
            // Ask for far more than the machine has; the allocator aborts the worker.
            let mut hog: Vec<Vec<u8>> = Vec::new();
            loop {
                hog.push(vec![1u8; 1 << 30]);
            }
        }
        "write the global" => COUNTER.fetch_add(1_000, Ordering::SeqCst) + 1_000,
        _ => 0,
    }
}
supervisor::task!(misbehave);

fn main() -> Result<(), supervisor::Error> {
    supervisor::init();
    // Fork: the workers start with a copy of the parent's memory, COUNTER included.
    let pool = Pool::builder()
        .procs(2)
        .start_method(StartMethod::Fork)
        .build()?;
    for how in ["segfault", "abort", "panic", "write the global"] {
        match pool.apply(misbehave, how.to_string()) {
            Ok(v) => println!("{how:<17} -> the worker's COUNTER is now {v}"),
            Err(e) => println!("{how:<17} -> {e}"),
        }
    }
    // Out of memory is shown only when asked for (it can make a small machine swap).
    if std::env::args().any(|a| a == "--oom") {
        match pool.apply(misbehave, "out of memory".to_string()) {
            Ok(_) => println!("out of memory     -> returned?!"),
            Err(e) => println!("out of memory     -> {e}"),
        }
    }
    println!(
        "parent: still running, its COUNTER is {}",
        COUNTER.load(Ordering::SeqCst)
    );
    let stats = pool.stats();
    println!(
        "pool: {} tasks failed, {} workers replaced, {} live",
        stats.failed,
        stats.restarts,
        stats.workers.len()
    );
    pool.join();
    Ok(())
}
