//! Answers end to end: calls run, answered, taken back.

use std::time::Duration;

use ipc_channel::ipc;

use super::*;
use crate::progress::Progress;
use crate::protocol::{Frame, FromChild, TaskOutcome};

fn twice(x: u64) -> u64 {
    x * 2
}
crate::task!(twice);

/// A return value whose encoding panics half way.
struct HalfThenPanic;

impl serde::Serialize for HalfThenPanic {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&7u64)?;
        panic!("half way")
    }
}

fn half(x: u64) -> Result<HalfThenPanic, String> {
    if x == 0 {
        return Err("zero".into());
    }
    Ok(HalfThenPanic)
}
crate::task!(half);

fn sleepy(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
crate::task!(sleepy);

fn answers(progress: Option<Progress>) -> (Answers, ipc::IpcReceiver<Frame>) {
    let (tx, rx) = ipc::channel::<Frame>().unwrap();
    let answers = match progress {
        Some(p) => Answers::with_progress(tx, p, None),
        None => Answers::new(tx, None),
    };
    (answers, rx)
}

fn next_message(rx: &ipc::IpcReceiver<Frame>, inbox: &mut crate::arena::Inbox) -> FromChild {
    let frame = rx.recv().unwrap();
    inbox.decode(frame).unwrap()
}

fn packed(task: &str, lens: &[u32], data: &[u8]) -> FromChild {
    let (answers, rx) = answers(None);
    answers.run_packed(7, task, lens, data, false).unwrap();
    next_message(&rx, &mut crate::arena::Inbox::new())
}

#[test]
fn a_value_whose_encoding_panics_leaves_nothing_in_the_packed_values() {
    let one = crate::codec::encode(&1u64).unwrap();
    let zero = crate::codec::encode(&0u64).unwrap();
    let data = [one.clone(), zero, one].concat();
    match packed("half", &[1, 1, 1], &data) {
        FromChild::PackedDone {
            lens, data, others, ..
        } => {
            assert_eq!(lens, vec![0, 0, 0]);
            assert!(data.is_empty(), "{data:?}");
            assert!(matches!(others[0], (0, TaskOutcome::Panicked { .. })));
            assert!(matches!(
                others[1],
                (1, TaskOutcome::Returned { error: Some(_), .. })
            ));
            assert!(matches!(others[2], (2, TaskOutcome::Panicked { .. })));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_packed_chunk_answers_every_argument_in_place() {
    let mut data = crate::codec::encode(&4u64).unwrap();
    let four = data.len() as u32;
    data.push(0xff);
    // Argument 1 is one bad byte; argument 2 claims bytes that were never sent.
    match packed("twice", &[four, 1, 50], &data) {
        FromChild::PackedDone {
            first_id,
            from,
            lens,
            data,
            others,
            timings,
        } => {
            assert_eq!((first_id, from), (7, 0));
            assert!(timings.is_empty(), "an untimed chunk sent timings");
            assert_eq!(lens.len(), 3, "{lens:?} {data:?} {others:?}");
            let eight = crate::codec::decode::<u64>(&data[..lens[0] as usize]).unwrap();
            assert_eq!(eight, 8);
            assert_eq!(&lens[1..], &[0, 0]);
            assert!(matches!(others[0], (1, TaskOutcome::BadArgument { .. })));
            assert!(matches!(others[1], (2, TaskOutcome::BadArgument { .. })));
        }
        other => panic!("{other:?}"),
    }
    match packed("no-such-task", &[four], &data) {
        FromChild::PackedDone { others, .. } => {
            assert!(matches!(
                &others[..],
                [(0, TaskOutcome::UnknownTask { .. })]
            ))
        }
        other => panic!("{other:?}"),
    }
}

/// A batch `[0 ms, 0 ms, 300 ms]`: the two quick answers are sent while the slow
/// call runs, and the slow one follows on its own; each call has its own timing.
#[test]
fn quick_answers_do_not_wait_behind_a_slow_batch_mate() {
    let page = Progress::new();
    let parent = Progress::adopt(page.share()).unwrap();
    let (answers, rx) = answers(Some(page));
    let args: Vec<_> = [0u64, 0, 300]
        .iter()
        .map(|ms| serde_bytes::ByteBuf::from(crate::codec::encode(ms).unwrap()))
        .collect();
    parent.begin(9, 3);
    let started = std::time::Instant::now();
    let runner = std::thread::spawn(move || answers.run_batch(9, "sleepy", &args));
    let mut inbox = crate::arena::Inbox::new();
    match next_message(&rx, &mut inbox) {
        FromChild::BatchDone {
            first_id: 9,
            from: 0,
            outcomes,
            timings,
        } => {
            assert_eq!(outcomes.len(), 2);
            assert_eq!(timings.len(), 2);
            assert!(started.elapsed() < Duration::from_millis(250));
        }
        other => panic!("{other:?}"),
    }
    match next_message(&rx, &mut inbox) {
        FromChild::BatchDone {
            from: 2, timings, ..
        } => {
            assert!(timings[0].duration_ns >= 300_000_000, "{timings:?}");
        }
        other => panic!("{other:?}"),
    }
    runner.join().unwrap().unwrap();
}

/// A timed chunk `[0 ms, 0 ms, 300 ms]`: the two quick answers, each with its own
/// timing, are sent from the answer log while the slow call runs; the slow one follows
/// with its own.
#[test]
fn a_timed_chunks_quick_answers_come_with_their_own_timings_before_a_slow_one() {
    let page = Progress::new();
    let parent = Progress::adopt(page.share()).unwrap();
    let (answers, rx) = answers(Some(page));
    let args: Vec<Vec<u8>> = [0u64, 0, 300]
        .iter()
        .map(|ms| crate::codec::encode(ms).unwrap())
        .collect();
    let lens: Vec<u32> = args.iter().map(|a| a.len() as u32).collect();
    let data = args.concat();
    parent.begin(9, 3);
    let started = std::time::Instant::now();
    let runner = std::thread::spawn(move || answers.run_packed(9, "sleepy", &lens, &data, true));
    let mut inbox = crate::arena::Inbox::new();
    match next_message(&rx, &mut inbox) {
        FromChild::PackedDone {
            first_id: 9,
            from: 0,
            lens,
            data,
            others,
            timings,
        } => {
            assert_eq!(lens.len(), 2, "{lens:?}");
            assert!(others.is_empty(), "{others:?}");
            assert_eq!(
                crate::codec::decode::<u64>(&data[..lens[0] as usize]).unwrap(),
                0
            );
            assert_eq!(timings.len(), 2);
            assert!(timings[0].start_ns > 0);
            assert!(timings[1].start_ns >= timings[0].start_ns + timings[0].duration_ns);
            assert!(started.elapsed() < Duration::from_millis(250));
        }
        other => panic!("{other:?}"),
    }
    match next_message(&rx, &mut inbox) {
        FromChild::PackedDone {
            from: 2,
            lens,
            timings,
            ..
        } => {
            assert_eq!(lens.len(), 1);
            assert_eq!(timings.len(), 1);
            assert!(timings[0].duration_ns >= 300_000_000, "{timings:?}");
        }
        other => panic!("{other:?}"),
    }
    runner.join().unwrap().unwrap();
}

/// Calls the parent took back are not run, and the answer covers only the rest.
#[test]
fn calls_taken_back_are_not_run() {
    let page = Progress::new();
    let parent = Progress::adopt(page.share()).unwrap();
    let (answers, rx) = answers(Some(page));
    parent.begin(3, 4);
    let seen = parent.snapshot();
    assert_eq!(parent.take_back(seen, 1), Some(1));
    let args: Vec<_> = (0..4u64)
        .map(|x| serde_bytes::ByteBuf::from(crate::codec::encode(&x).unwrap()))
        .collect();
    answers.run_batch(3, "twice", &args).unwrap();
    match next_message(&rx, &mut crate::arena::Inbox::new()) {
        FromChild::BatchDone { from, outcomes, .. } => {
            assert_eq!((from, outcomes.len()), (0, 1))
        }
        other => panic!("{other:?}"),
    }
    // A single task taken back is not answered at all.
    parent.begin(4, 1);
    let seen = parent.snapshot();
    assert_eq!(parent.take_back(seen, 0), Some(0));
    answers.run_task(4, "twice", &args[0]).unwrap();
    assert!(rx.try_recv_timeout(Duration::from_millis(50)).is_err());
}
