//! A pool of worker processes: map, imap_unordered, apply_async, as_completed, and a
//! worker crash that costs one task, not the pool.
//!
//! Run: `cargo run --release --example pool`

use std::time::{Duration, Instant};

use supervisor::{as_completed, Pool};

fn square(x: u64) -> u64 {
    x * x
}
supervisor::task!(square);

/// Sleeps a little, so completion order differs from input order.
fn slow_double(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis((7 - x % 7) * 15));
    2 * x
}
supervisor::task!(slow_double);

fn add(a: u64, b: u64) -> u64 {
    a + b
}
supervisor::task!(add);

/// Crashes its worker for one input.
fn fragile(x: u64) -> u64 {
    if x == 13 {
        // SAFETY: none: a deliberate segfault to show isolation.
        unsafe { std::ptr::null_mut::<u64>().write_volatile(x) };
    }
    x + 1
}
supervisor::task!(fragile);

fn main() -> Result<(), supervisor::Error> {
    supervisor::init();
    let pool = Pool::builder().procs(4).build()?;

    let t = Instant::now();
    let squares: Vec<u64> = pool
        .map(square, 0..10)
        .into_iter()
        .collect::<Result<_, _>>()?;
    println!(
        "map(square, 0..10)        = {squares:?} ({:?})",
        t.elapsed()
    );

    let sums: Vec<u64> = pool
        .starmap(add, vec![(1, 2), (30, 40), (500, 600)])
        .into_iter()
        .collect::<Result<_, _>>()?;
    println!("starmap(add, pairs)       = {sums:?}");

    let finished: Vec<u64> = pool
        .imap_unordered(slow_double, 0..8)
        .collect::<Result<_, _>>()?;
    println!("imap_unordered(slow_double) in completion order = {finished:?}");

    let handles: Vec<_> = (1..=4).map(|x| pool.apply_async(slow_double, x)).collect();
    print!("apply_async + as_completed:");
    for h in as_completed(handles) {
        print!(" {}", h.wait()?);
    }
    println!();

    println!("a map over 0..20 where input 13 segfaults its worker:");
    for (x, r) in (0..20).zip(pool.map(fragile, 0..20)) {
        match r {
            Ok(v) if x % 5 == 0 => println!("  fragile({x}) = {v}"),
            Ok(_) => {}
            Err(e) => println!("  fragile({x}) failed: {e}"),
        }
    }
    let stats = pool.stats();
    println!(
        "pool survived: {} workers, {} tasks done, {} failed, {} restart(s)",
        stats.workers.len(),
        stats.done,
        stats.failed,
        stats.restarts
    );
    for w in &stats.workers {
        println!(
            "  worker {:>7}: {:?}, {} tasks, cpu {:?}, rss {} KiB",
            w.pid, w.state, w.tasks_done, w.cpu_time, w.rss_kib
        );
    }
    pool.join();
    Ok(())
}
