//! Start-up (issue 16): a spawned `Process` from `start()` to its result against
//! procspawn's `spawn` of the same tiny closure, interleaved in one run; and pools of
//! 8, 64 and 256 workers from `build` to the first result and their stop (`join`),
//! for each start method, against Python's `Pool(n)` with spawn, and 256 against 8.

use std::time::{Duration, Instant};

use supervisor::{Pool, Process, StartMethod};

use super::measure::medians;
use super::run::Ctx;
use super::table::{Floor, Peer, Row, Target, Unit};

fn startup_inc(x: u64) -> u64 {
    x + 1
}
supervisor::task!(startup_inc);

/// Start-to-result samples of each kind per round (rounds: `RUNS`).
const PER_ROUND: usize = 20;

/// The pool sizes measured.
const SIZES: [usize; 3] = [8, 64, 256];

/// `PER_ROUND` spawned processes one after the other, start to result: the median.
fn ours(n: usize) -> Duration {
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let mut p = Process::builder(startup_inc, 1u64)
                .start_method(StartMethod::Spawn)
                .start()
                .expect("starting the worker failed");
            assert_eq!(p.join().expect("the worker returned no result"), 2);
            t.elapsed()
        })
        .collect();
    v.sort();
    v[v.len() / 2]
}

/// The same with procspawn (its default features).
fn procspawn_median(n: usize) -> Duration {
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let h = procspawn::spawn(1u64, |x| x + 1);
            assert_eq!(h.join().expect("procspawn's child failed"), 2);
            t.elapsed()
        })
        .collect();
    v.sort();
    v[v.len() / 2]
}

/// A pool of `n` from `build` to the first result, then stopped (`join`: closed, every
/// worker gone).
fn pool(n: usize, method: StartMethod) -> Duration {
    let t = Instant::now();
    let pool = Pool::builder()
        .procs(n)
        .start_method(method)
        .build()
        .expect("building the pool failed");
    assert_eq!(pool.apply(startup_inc, 1).expect("apply failed"), 2);
    pool.join();
    t.elapsed()
}

pub fn rows(ctx: &Ctx) -> Vec<Row> {
    let runs = ctx.settings.runs;
    // Warm both sides (page cache, the forkserver, procspawn's first use).
    ours(3);
    procspawn_median(3);
    let [Some(mine), Some(theirs)] = medians(
        runs,
        [&mut || Some(ours(PER_ROUND)), &mut || {
            Some(procspawn_median(PER_ROUND))
        }],
    ) else {
        unreachable!("both always run")
    };
    let mut rows = vec![Row {
        workload: format!("Process (spawn) start to result, {PER_ROUND} x {runs} rounds"),
        unit: Unit::Total,
        ours: mine,
        peer: Peer::new("procspawn::spawn", Some(theirs)),
        floor: None,
        targets: vec![Target::Faster(1.0)],
    }];
    let python = ctx.python.as_ref();
    // Per size: the three methods and Python, interleaved.
    let mut times = Vec::new();
    for n in SIZES {
        let [Some(spawn), Some(fork), Some(forkserver), py] = medians(
            runs,
            [
                &mut || Some(pool(n, StartMethod::Spawn)),
                &mut || Some(pool(n, StartMethod::Fork)),
                &mut || Some(pool(n, StartMethod::Forkserver)),
                &mut || python.map(|p| p.run("start_stop_spawn", n)),
            ],
        ) else {
            unreachable!("ours always run")
        };
        times.push((n, [spawn, fork, forkserver], py));
    }
    for (i, method) in StartMethod::ALL.into_iter().enumerate() {
        let eight = times[0].1[i];
        for &(n, ours, py) in &times {
            rows.push(Row {
                workload: format!("Pool of {n} ({method}) to first result and stop"),
                unit: Unit::Total,
                ours: ours[i],
                peer: Peer::new(format!("multiprocessing.Pool({n}) (spawn)"), py),
                floor: (n != SIZES[0]).then_some(Floor {
                    name: "pool of 8",
                    time: eight,
                }),
                targets: if n == 256 {
                    vec![Target::Faster(1.0), Target::FloorTimes(32.0)]
                } else {
                    vec![Target::Faster(1.0)]
                },
            });
        }
    }
    rows
}
