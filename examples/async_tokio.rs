//! The pool from async code, in a tokio program: awaited handles, streams of results
//! and an awaited shutdown, while the runtime's threads stay free (a ticker task keeps
//! ticking the whole time).
//!
//! `supervisor::init()` runs before the runtime is built (not `#[tokio::main]`): a
//! re-executed worker must become a worker before any runtime thread exists.
//!
//! Run: `cargo run --example async_tokio`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use supervisor::{as_completed, Pool};

/// Sleeps `ms` milliseconds in its worker, then squares it.
fn slow_square(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms * ms
}
supervisor::task!(slow_square);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    supervisor::init();
    // One runtime thread: if anything blocked it, the ticker would stop.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder().procs(4).build()?;
    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            let mut every = tokio::time::interval(Duration::from_millis(10));
            // Count only ticks on time: no catching up after a stall.
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        }
    });

    // A handle is a future of its result.
    let t = Instant::now();
    let handles: Vec<_> = (1..=8).map(|i| pool.submit(slow_square, 20 * i)).collect();
    let mut squares = Vec::new();
    for handle in handles {
        squares.push(handle.await?);
    }
    println!("awaited 8 handles: {squares:?} ({:?})", t.elapsed());

    // Under a timeout: `&mut handle` keeps the handle if the time runs out first.
    let mut slow = pool.submit(slow_square, 300);
    match tokio::time::timeout(Duration::from_millis(50), &mut slow).await {
        Ok(result) => println!("slow task already done: {}", result?),
        Err(_) => println!("slow task still running after 50 ms; awaiting it"),
    }
    println!("slow task: {}", slow.await?);

    // imap as a stream: results in input order, however they finish.
    let ordered: Vec<u64> = pool
        .imap(slow_square, [80, 10, 40, 20])
        .into_stream()
        .map(|r| r.unwrap_or(0))
        .collect()
        .await;
    println!("imap stream (input order): {ordered:?}");

    // as_completed as a stream: handles in completion order.
    let handles: Vec<_> = [90, 10, 50]
        .iter()
        .map(|ms| pool.submit(slow_square, *ms))
        .collect();
    let mut done = as_completed(handles).into_stream();
    let mut order = Vec::new();
    while let Some(handle) = done.next().await {
        order.push(handle.await?);
    }
    println!("as_completed stream (completion order): {order:?}");

    // map_async is a future of every result, in input order.
    let all: Vec<u64> = pool
        .map_async(slow_square, [3, 2, 1])
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    println!("map_async awaited: {all:?}");

    // The shutdown, awaited: every worker gone, no thread blocked meanwhile; dropping
    // the pool afterwards returns at once.
    let before = ticks.load(Ordering::Relaxed);
    let running = pool.submit(slow_square, 200);
    pool.join_async().await;
    println!("joined: last task {}", running.await?);
    drop(pool);
    let during = ticks.load(Ordering::Relaxed) - before;
    ticker.abort();
    println!(
        "the runtime kept ticking: {} ticks in all, {during} during the shutdown",
        ticks.load(Ordering::Relaxed)
    );
    Ok(())
}
