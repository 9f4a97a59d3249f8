//! Awaiting a pool from async code against waiting on it from a thread: the same
//! tiny-task round trip, one at a time, in a tokio runtime and blocking.
//!
//! The target (issue 16): within 1.5x of a blocking `submit(..).wait()`, shown as the
//! floor. The peer is `apply`, the fastest blocking round trip (its caller reads the
//! worker's reply itself, so no thread is woken for it). An awaited handle costs a
//! wake-up more than a blocking wait, which polls for a moment before it sleeps: the
//! reader thread that receives the result wakes the awaiting task's thread.

use std::time::{Duration, Instant};

use supervisor::{Pool, StartMethod};

use super::measure::medians;
use super::run::Ctx;
use super::table::{Floor, Peer, Row, Target, Unit};

/// Workers per pool (as in the pool group).
const PROCS: usize = 2;

/// The tiny task.
fn inc_awaited(x: u64) -> u64 {
    x + 1
}
supervisor::task!(inc_awaited);

/// A pool of `PROCS` fork workers, every one of them up and having answered.
fn warm_pool() -> Pool {
    let pool = Pool::builder()
        .procs(PROCS)
        .start_method(StartMethod::Fork)
        .build()
        .expect("building the pool failed");
    for r in pool.map_chunked(inc_awaited, 0..4 * PROCS as u64, 1) {
        r.expect("warm-up task failed");
    }
    loop {
        let stats = pool.stats();
        if stats.workers.len() == PROCS && stats.starting == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    pool
}

/// `n` round trips with `apply`.
fn apply(n: usize) -> Duration {
    let pool = warm_pool();
    let t = Instant::now();
    for i in 0..n as u64 {
        assert_eq!(pool.apply(inc_awaited, i).expect("apply failed"), i + 1);
    }
    t.elapsed()
}

/// `n` round trips with `submit(..).wait()`.
fn submit_wait(n: usize) -> Duration {
    let pool = warm_pool();
    let t = Instant::now();
    for i in 0..n as u64 {
        let h = pool.submit(inc_awaited, i);
        assert_eq!(h.wait().expect("task failed"), i + 1);
    }
    t.elapsed()
}

/// `n` round trips with `submit(..).await` in `rt`.
fn awaited(rt: &tokio::runtime::Runtime, n: usize) -> Duration {
    let pool = warm_pool();
    rt.block_on(async {
        let t = Instant::now();
        for i in 0..n as u64 {
            let v = pool.submit(inc_awaited, i).await.expect("task failed");
            assert_eq!(v, i + 1);
        }
        t.elapsed()
    })
}

/// `n` round trips with `submit(..).await` in a task spawned on `rt` (a worker
/// thread of a multi-threaded runtime awaits).
fn awaited_spawned(rt: &tokio::runtime::Runtime, n: usize) -> Duration {
    let pool = std::sync::Arc::new(warm_pool());
    let p = pool.clone();
    rt.block_on(async move {
        tokio::spawn(async move {
            let t = Instant::now();
            for i in 0..n as u64 {
                let v = p.submit(inc_awaited, i).await.expect("task failed");
                assert_eq!(v, i + 1);
            }
            t.elapsed()
        })
        .await
        .expect("the task panicked")
    })
}

pub fn rows(ctx: &Ctx) -> Vec<Row> {
    let runs = ctx.settings.runs;
    let n = ctx.settings.size(2_000, 1);
    let current = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("building a runtime failed");
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("building a runtime failed");
    let [Some(apply_time), Some(blocking), Some(one), Some(spawned)] = medians(
        runs,
        [
            &mut || Some(apply(n)),
            &mut || Some(submit_wait(n)),
            &mut || Some(awaited(&current, n)),
            &mut || Some(awaited_spawned(&multi, n)),
        ],
    ) else {
        unreachable!("our measurements always run")
    };
    let row = |workload: String, ours| Row {
        workload,
        unit: Unit::PerCall(n),
        ours,
        peer: Peer::new("Pool.apply (blocking)", Some(apply_time)),
        floor: Some(Floor {
            name: "submit + wait (blocking)",
            time: blocking,
        }),
        targets: vec![Target::FloorTimes(1.5)],
    };
    vec![
        row(
            format!("awaited submit, tiny task x{n}, one at a time (tokio current-thread)"),
            one,
        ),
        row(
            format!("awaited submit, tiny task x{n}, one at a time (tokio multi-thread task)"),
            spawned,
        ),
    ]
}
