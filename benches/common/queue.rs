//! Queue and Pipe throughput, 1 producer process and 1 consumer (the parent), 64-byte
//! items, against Python's `multiprocessing.Queue` and `multiprocessing.Pipe` measured
//! the same way. Each run is timed from the first item the consumer gets to the last
//! (process start-up is not counted).

use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;
use supervisor::{Pipe, Process, Queue};

use super::measure::medians;
use super::run::Ctx;
use super::table::{Peer, Row, Target, Unit};

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

/// The time to get `n - 1` items after the first through a supervisor queue.
fn ours(n: usize) -> Duration {
    let q: Queue<ByteBuf> = Queue::new().expect("creating the queue failed");
    let mut p = Process::builder(produce, (q.clone(), n as u64))
        .start()
        .expect("starting the producer failed");
    let first = q.get().expect("get failed");
    assert_eq!(first.len(), ITEM_BYTES);
    let t = Instant::now();
    for _ in 1..n {
        q.get().expect("get failed");
    }
    let elapsed = t.elapsed();
    p.join().expect("the producer failed");
    elapsed
}

/// Sends `n` items of 64 bytes down a pipe.
fn send_down((end, n): (Pipe<ByteBuf, ()>, u64)) -> u64 {
    let item = ByteBuf::from(vec![b'x'; ITEM_BYTES]);
    for _ in 0..n {
        end.send(&item).expect("send failed");
    }
    n
}
supervisor::task!(send_down);

/// The time to receive `n - 1` items after the first through a supervisor pipe.
fn ours_pipe(n: usize) -> Duration {
    let (mine, theirs) = Pipe::<(), ByteBuf>::new().expect("creating the pipe failed");
    let mut p = Process::builder(send_down, (theirs, n as u64))
        .start()
        .expect("starting the producer failed");
    let first = mine.recv().expect("recv failed");
    assert_eq!(first.len(), ITEM_BYTES);
    let t = Instant::now();
    for _ in 1..n {
        mine.recv().expect("recv failed");
    }
    let elapsed = t.elapsed();
    p.join().expect("the producer failed");
    elapsed
}

pub fn rows(ctx: &Ctx) -> Vec<Row> {
    let n = ctx.settings.size(200_000, 2);
    let python = ctx.python.as_ref();
    ours(n / 10); // warm up
    let [Some(time), theirs] = medians(
        ctx.settings.runs,
        [&mut || Some(ours(n)), &mut || {
            python.map(|p| p.run("queue", n))
        }],
    ) else {
        unreachable!("our measurements always run")
    };
    ours_pipe(n / 10); // warm up
    let [Some(pipe_time), pipe_theirs] = medians(
        ctx.settings.runs,
        [&mut || Some(ours_pipe(n)), &mut || {
            python.map(|p| p.run("pipe", n))
        }],
    ) else {
        unreachable!("our measurements always run")
    };
    vec![
        Row {
            workload: format!("Queue 1 -> 1 process, {ITEM_BYTES} B items x{n}"),
            unit: Unit::Items(n - 1),
            ours: time,
            peer: Peer::new("multiprocessing.Queue", theirs),
            floor: None,
            targets: vec![Target::Faster(10.0)],
        },
        Row {
            workload: format!("Pipe 1 -> 1 process, {ITEM_BYTES} B items x{n}"),
            unit: Unit::Items(n - 1),
            ours: pipe_time,
            peer: Peer::new("multiprocessing.Pipe", pipe_theirs),
            floor: None,
            targets: vec![Target::Faster(1.0)],
        },
    ]
}
