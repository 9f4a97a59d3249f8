//! `Process::start()` to the first result, per start method, against the machine's floor
//! (a bare fork+exec of `/bin/true`).

use std::process::Command;
use std::time::{Duration, Instant};

use supervisor::{Process, StartMethod};

use super::measure::medians;
use super::run::Ctx;
use super::table::{Floor, Peer, Row, Target, Unit};

/// The task: does nothing, so what is timed is starting and answering.
fn noop_task(x: u64) -> u64 {
    x
}
supervisor::task!(noop_task);

/// Untimed runs per start method before measuring.
const WARMUP: usize = 10;

/// One start-to-result round trip.
fn start(method: StartMethod) -> Duration {
    let t = Instant::now();
    let mut p = Process::builder(noop_task, 0u64)
        .start_method(method)
        .start()
        .expect("starting the worker failed");
    p.join().expect("the worker returned no result");
    t.elapsed()
}

/// A bare fork+exec of `/bin/true` and wait: the floor for starting any process.
pub fn fork_exec() -> Duration {
    let t = Instant::now();
    let status = Command::new("/bin/true")
        .status()
        .expect("running /bin/true failed");
    assert!(status.success(), "/bin/true failed: {status}");
    t.elapsed()
}

pub fn rows(ctx: &Ctx) -> Vec<Row> {
    for _ in 0..WARMUP {
        fork_exec();
        for m in StartMethod::ALL {
            start(m);
        }
    }
    let [Some(floor), Some(spawn), Some(fork), Some(forkserver)] = medians(
        ctx.settings.samples,
        [
            &mut || Some(fork_exec()),
            &mut || Some(start(StartMethod::Spawn)),
            &mut || Some(start(StartMethod::Fork)),
            &mut || Some(start(StartMethod::Forkserver)),
        ],
    ) else {
        unreachable!("our measurements always run")
    };
    [
        // Spawn re-executes the program, so it gets more headroom than the forks.
        (StartMethod::Spawn, spawn, 3.0),
        (StartMethod::Fork, fork, 2.0),
        (StartMethod::Forkserver, forkserver, 2.0),
    ]
    .into_iter()
    .map(|(method, ours, max)| Row {
        workload: format!("Process start to result ({method})"),
        unit: Unit::Total,
        ours,
        peer: Peer::None,
        floor: Some(Floor {
            name: "fork+exec",
            time: floor,
        }),
        targets: vec![Target::FloorTimes(max)],
    })
    .collect()
}
