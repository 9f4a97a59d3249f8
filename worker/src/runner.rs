//! Running a pool worker's units call by call, and answering them.
//!
//! Each call is claimed on the progress page before it runs (see [`crate::progress`]),
//! so the parent knows which call runs and since when, and can take unstarted calls
//! back at any moment. Finished calls' answers are kept by the main thread and written
//! to the page's answer log; one message answers them all when the unit ends. If one
//! call runs long, a flusher thread sends, from the log, the answers of the calls that
//! finished before it, so no result waits behind a slow batch-mate. The main thread
//! takes no lock per call: the log is append-only between the unit's ends, and the
//! send lock is taken only to send (the unit's end, a full log, the flusher).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use ipc_channel::ipc::IpcSender;

use crate::arena::Outbox;
use crate::codec;
use crate::progress::{monotonic_ns, monotonic_upper_ns, Logged, Progress};
use crate::protocol::{Frame, FromChild, LinkError, TaskOutcome, Timing};
use crate::registry::{self, TaskEntry};
use crate::serve::{run_entry, run_one};

/// How often the flusher looks at a running batch; a call seen running at two looks
/// in a row has its finished batch-mates' answers sent at once.
const FLUSH_TICK: Duration = Duration::from_millis(1);
/// Looks with no unit open before the flusher sleeps until woken (a wake-up per unit
/// would cost more than the units of a busy worker).
const FLUSH_QUIET_TICKS: u32 = 100;

/// What finished calls of the running unit have yielded (from position `from` on),
/// kept by the main thread.
enum Pending {
    Outcomes {
        outcomes: Vec<TaskOutcome>,
        timings: Vec<Timing>,
    },
    Packed {
        lens: Vec<u32>,
        data: Vec<u8>,
        /// Positions relative to `from`.
        others: Vec<(u32, TaskOutcome)>,
    },
}

impl Pending {
    fn len(&self) -> usize {
        match self {
            Pending::Outcomes { outcomes, .. } => outcomes.len(),
            Pending::Packed { lens, .. } => lens.len(),
        }
    }

    /// The message answering calls `skip..` of these (positions counted from `from`),
    /// which are taken out.
    fn message(&mut self, seq: u64, from: u32, skip: usize) -> FromChild {
        let first = from + skip as u32;
        match self {
            Pending::Outcomes { outcomes, timings } => {
                let skip = skip.min(outcomes.len());
                let sent = outcomes.split_off(skip);
                let times = timings.split_off(skip.min(timings.len()));
                FromChild::BatchDone {
                    first_id: seq,
                    from: first,
                    outcomes: sent,
                    timings: times,
                }
            }
            Pending::Packed { lens, data, others } => {
                let skip = skip.min(lens.len());
                let byte: usize = lens[..skip].iter().map(|l| *l as usize).sum();
                let sent_lens = lens.split_off(skip);
                let sent_data = data.split_off(byte.min(data.len()));
                let sent_others = others
                    .drain(..)
                    .filter(|(pos, _)| *pos as usize >= skip)
                    .map(|(pos, o)| (pos - skip as u32, o))
                    .collect();
                FromChild::PackedDone {
                    first_id: seq,
                    from: first,
                    lens: sent_lens,
                    data: serde_bytes::ByteBuf::from(sent_data),
                    others: sent_others,
                }
            }
        }
    }
}

/// The running unit of several calls, as the flusher sees it.
#[derive(Clone, Copy)]
struct OpenUnit {
    seq: u64,
    packed: bool,
}

/// The send side, shared by the main thread and the flusher.
struct Sender {
    tx: IpcSender<Frame>,
    outbox: Outbox,
    open: Option<OpenUnit>,
}

impl Sender {
    fn send(&mut self, msg: &FromChild) -> Result<(), LinkError> {
        self.outbox.send(&self.tx, msg)
    }
}

struct Shared {
    sender: Mutex<Sender>,
    /// Wakes the flusher when a unit of several calls opens.
    opened: Condvar,
    progress: Option<Progress>,
    /// Positions of the open unit below this have been sent.
    sent_to: AtomicU32,
    /// The flusher sleeps until a unit opens (set under the send lock).
    flusher_asleep: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Sender> {
        self.sender.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where a worker's answers go: the link's sender, its arena, the progress page.
pub(crate) struct Answers {
    shared: Arc<Shared>,
    /// `Some(grace)`: end what a task left running (see `WorkerConfig`).
    children: Option<Duration>,
    /// Reused buffer for encoding an outcome into the answer log.
    scratch: std::cell::RefCell<Vec<u8>>,
}

impl Answers {
    /// Answers for a worker without a progress page (a `Process` child): every call is
    /// its own to run.
    pub(crate) fn new(tx: IpcSender<Frame>, children: Option<Duration>) -> Answers {
        Answers::build(tx, None, children)
    }

    /// Answers for a pool worker: calls are claimed on `progress`, and a flusher thread
    /// sends finished calls' answers when a later call runs long. Without a thread
    /// (none could start) answers just wait for the unit's end.
    pub(crate) fn with_progress(
        tx: IpcSender<Frame>,
        progress: Progress,
        children: Option<Duration>,
    ) -> Answers {
        let answers = Answers::build(tx, Some(progress), children);
        let shared = answers.shared.clone();
        let _ = std::thread::Builder::new()
            .name("supervisor-flush".into())
            .stack_size(64 * 1024)
            .spawn(move || flusher(&shared));
        answers
    }

    fn build(
        tx: IpcSender<Frame>,
        progress: Option<Progress>,
        children: Option<Duration>,
    ) -> Answers {
        Answers {
            children,
            shared: Arc::new(Shared {
                sender: Mutex::new(Sender {
                    tx,
                    outbox: Outbox::new(),
                    open: None,
                }),
                opened: Condvar::new(),
                progress,
                sent_to: AtomicU32::new(0),
                flusher_asleep: AtomicBool::new(false),
            }),
            scratch: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// After a call that took `took` ns (or at a unit's end, `u64::MAX`): ends what it
    /// left running. A call under 20 µs cannot have started a process, so tiny calls
    /// cost nothing; a longer one costs one system call.
    fn end_children(&self, took: u64) {
        if let Some(grace) = self.children {
            if took >= 20_000 && crate::os::has_children() {
                crate::os::end_children(grace);
            }
        }
    }

    /// Claims call `i` of unit `seq` (always granted without a progress page).
    fn claim(&self, seq: u64, i: u32, now_ns: u64) -> bool {
        self.shared
            .progress
            .as_ref()
            .is_none_or(|p| p.claim(seq, i, now_ns))
    }

    /// Runs one task (unless the parent took it back) and answers it.
    pub(crate) fn run_task(&self, id: u64, task: &str, arg: &[u8]) -> Result<(), LinkError> {
        if !self.claim(id, 0, monotonic_upper_ns()) {
            return Ok(());
        }
        let start_ns = monotonic_ns();
        let outcome = crate::serve::run_task(task, arg);
        let timing = Timing {
            start_ns,
            duration_ns: monotonic_ns().saturating_sub(start_ns),
        };
        self.end_children(timing.duration_ns);
        let msg = FromChild::Done {
            id,
            outcome,
            timing,
        };
        self.shared.lock().send(&msg)
    }

    fn open(&self, seq: u64, packed: bool) {
        if let Some(progress) = &self.shared.progress {
            progress.log_reset(seq);
        }
        let mut sender = self.shared.lock();
        self.shared.sent_to.store(0, Ordering::Release);
        sender.open = Some(OpenUnit { seq, packed });
        drop(sender);
        if self.shared.flusher_asleep.load(Ordering::Acquire) {
            self.shared.opened.notify_one();
        }
    }

    /// Sends the pending answers the flusher has not sent (positions from `from`);
    /// `close` also ends the unit, else the log is emptied to make room.
    fn send_pending(
        &self,
        seq: u64,
        from: u32,
        pending: &mut Pending,
        close: bool,
    ) -> Result<(), LinkError> {
        let mut sender = self.shared.lock();
        let sent_to = self.shared.sent_to.load(Ordering::Acquire).max(from);
        let skip = (sent_to - from) as usize;
        let end = from + pending.len() as u32;
        let result = if skip < pending.len() {
            let msg = pending.message(seq, from, skip);
            sender.send(&msg)
        } else {
            Ok(())
        };
        // What was sent (by either) is gone from `pending`.
        match pending {
            Pending::Outcomes { outcomes, timings } => {
                outcomes.clear();
                timings.clear();
            }
            Pending::Packed { lens, data, others } => {
                lens.clear();
                data.clear();
                others.clear();
            }
        }
        self.shared.sent_to.store(end, Ordering::Release);
        if let Some(progress) = &self.shared.progress {
            progress.log_reset(seq);
        }
        if close {
            sender.open = None;
        }
        result
    }

    /// Records a finished call in the answer log (see [`crate::progress`]). False if
    /// it does not fit: then the caller sends the pending answers at once.
    fn log(&self, position: u32, entry: LogEntry<'_>) -> bool {
        let Some(progress) = &self.shared.progress else {
            return true;
        };
        match entry {
            LogEntry::Value(value) => progress.log_value(position, value),
            LogEntry::Outcome(outcome, timing) => {
                let mut scratch = self.scratch.borrow_mut();
                scratch.clear();
                codec::encode_append(&(outcome, timing), &mut scratch).is_ok()
                    && progress.log_outcome(position, &scratch)
            }
        }
    }

    /// Runs each argument through one task, in order, while the calls can be claimed.
    pub(crate) fn run_batch(
        &self,
        seq: u64,
        task: &str,
        args: &[serde_bytes::ByteBuf],
    ) -> Result<(), LinkError> {
        let entry = registry::by_name(task).ok();
        self.open(seq, false);
        let mut pending = Pending::Outcomes {
            outcomes: Vec::with_capacity(args.len()),
            timings: Vec::with_capacity(args.len()),
        };
        let mut from = 0u32;
        // One precise clock reading per call: a call's end is the next one's start
        // (what lies between is this loop's own bookkeeping).
        let mut start_ns = monotonic_ns();
        for (i, arg) in args.iter().enumerate() {
            if !self.claim(seq, i as u32, monotonic_upper_ns()) {
                break;
            }
            let outcome = match entry {
                Some(entry) => run_one(entry, arg),
                None => TaskOutcome::UnknownTask {
                    name: task.to_string(),
                },
            };
            let end_ns = monotonic_ns();
            let timing = Timing {
                start_ns,
                duration_ns: end_ns.saturating_sub(start_ns),
            };
            start_ns = end_ns;
            if timing.duration_ns >= 20_000 {
                self.end_children(u64::MAX);
                start_ns = monotonic_ns();
            }
            let logged = self.log(i as u32, LogEntry::Outcome(&outcome, &timing));
            if let Pending::Outcomes { outcomes, timings } = &mut pending {
                outcomes.push(outcome);
                timings.push(timing);
            }
            if !logged {
                self.send_pending(seq, from, &mut pending, false)?;
                from = i as u32 + 1;
            }
        }
        self.end_children(u64::MAX);
        self.send_pending(seq, from, &mut pending, true)
    }

    /// Runs each argument of a packed chunk (`lens[i]` bytes each, back to back in
    /// `data`) through one task, in order, while the calls can be claimed; plain values
    /// are packed the same way.
    pub(crate) fn run_packed(
        &self,
        seq: u64,
        task: &str,
        lens: &[u32],
        data: &[u8],
    ) -> Result<(), LinkError> {
        let entry = registry::by_name(task);
        self.open(seq, true);
        let mut pending = Pending::Packed {
            lens: Vec::with_capacity(lens.len()),
            data: Vec::new(),
            others: Vec::new(),
        };
        let mut from = 0u32;
        let mut at = 0usize;
        for (i, len) in lens.iter().enumerate() {
            let arg = at
                .checked_add(*len as usize)
                .and_then(|end| data.get(at..end));
            at = at.saturating_add(*len as usize);
            if !self.claim(seq, i as u32, monotonic_upper_ns()) {
                break;
            }
            let Pending::Packed {
                lens: out_lens,
                data: out,
                others,
            } = &mut pending
            else {
                break;
            };
            let start = out.len();
            let logged = match run_packed_call(&entry, task, i, arg, data.len(), out) {
                None => {
                    out_lens.push((out.len() - start) as u32);
                    self.log(i as u32, LogEntry::Value(&out[start..]))
                }
                Some(other) => {
                    // A panic may have left part of a value behind.
                    out.truncate(start);
                    out_lens.push(0);
                    let logged = self.log(i as u32, LogEntry::Outcome(&other, &Timing::default()));
                    others.push((i as u32 - from, other));
                    logged
                }
            };
            if !logged {
                self.send_pending(seq, from, &mut pending, false)?;
                from = i as u32 + 1;
            }
        }
        self.end_children(u64::MAX);
        self.send_pending(seq, from, &mut pending, true)
    }
}

/// A finished call's answer, for the log.
enum LogEntry<'a> {
    Value(&'a [u8]),
    Outcome(&'a TaskOutcome, &'a Timing),
}

/// Runs call `i` of a chunk, its value encoded at the end of `value`: `None` for a
/// plain value, else the outcome that replaces it (a returned `Err` takes its value
/// bytes along).
fn run_packed_call(
    entry: &Result<&'static TaskEntry, registry::RegistryError>,
    task: &str,
    i: usize,
    arg: Option<&[u8]>,
    sent: usize,
    value: &mut Vec<u8>,
) -> Option<TaskOutcome> {
    let start = value.len();
    let ran = match (entry, arg) {
        (Ok(entry), Some(arg)) => run_entry(entry, arg, value),
        (Err(_), _) => Err(TaskOutcome::UnknownTask {
            name: task.to_string(),
        }),
        (_, None) => Err(TaskOutcome::BadArgument {
            message: format!("argument {i} lies beyond the {sent} bytes sent"),
        }),
    };
    match ran {
        Ok(None) => None,
        // Returned `Err`: its value goes with its message.
        Ok(Some(error)) => Some(TaskOutcome::Returned {
            value: value.split_off(start),
            error: Some(error),
        }),
        Err(outcome) => Some(outcome),
    }
}

/// Builds the message answering the logged calls from position `from` on, if any.
fn logged_message(
    open: OpenUnit,
    logged: Vec<(u32, Logged)>,
    from: u32,
) -> Option<(FromChild, u32)> {
    let mut next = from;
    let mut outcomes = Vec::new();
    let mut timings = Vec::new();
    let mut lens = Vec::new();
    let mut data = Vec::new();
    let mut others = Vec::new();
    for (position, record) in logged {
        if position < next {
            continue;
        }
        if position > next {
            break;
        }
        match (open.packed, record) {
            (true, Logged::Value(value)) => {
                lens.push(value.len() as u32);
                data.extend_from_slice(&value);
            }
            (true, Logged::Outcome(bytes)) => {
                let Ok((outcome, _)) = codec::decode::<(TaskOutcome, Timing)>(&bytes) else {
                    break;
                };
                lens.push(0);
                others.push((position - from, outcome));
            }
            (false, Logged::Outcome(bytes)) => {
                let Ok((outcome, timing)) = codec::decode::<(TaskOutcome, Timing)>(&bytes) else {
                    break;
                };
                outcomes.push(outcome);
                timings.push(timing);
            }
            (false, Logged::Value(_)) => break,
        }
        next += 1;
    }
    if next == from {
        return None;
    }
    let msg = if open.packed {
        FromChild::PackedDone {
            first_id: open.seq,
            from,
            lens,
            data: serde_bytes::ByteBuf::from(data),
            others,
        }
    } else {
        FromChild::BatchDone {
            first_id: open.seq,
            from,
            outcomes,
            timings,
        }
    };
    Some((msg, next))
}

/// The flusher: while a unit of several calls runs, looks at the progress page every
/// [`FLUSH_TICK`]; when the same call is running at two looks in a row and finished
/// calls' answers are in the log unsent, sends them.
fn flusher(shared: &Shared) {
    let Some(progress) = &shared.progress else {
        return;
    };
    let mut last = None;
    let mut quiet = 0;
    let mut sender = shared.lock();
    loop {
        if sender.open.is_none() {
            last = None;
            quiet += 1;
            if quiet > FLUSH_QUIET_TICKS {
                shared.flusher_asleep.store(true, Ordering::Release);
                sender = shared
                    .opened
                    .wait_while(sender, |s| s.open.is_none())
                    .unwrap_or_else(|p| p.into_inner());
                shared.flusher_asleep.store(false, Ordering::Release);
            }
        } else {
            quiet = 0;
        }
        sender = shared
            .opened
            .wait_timeout(sender, FLUSH_TICK)
            .unwrap_or_else(|p| p.into_inner())
            .0;
        let Some(open) = sender.open else {
            continue;
        };
        let seen = progress.snapshot();
        let now = (open.seq, seen.next, seen.started_ns);
        if last == Some(now) {
            // Under the send lock: the main thread neither sends nor empties the log.
            let from = shared.sent_to.load(Ordering::Acquire);
            if let Some((msg, next)) = logged_message(open, progress.logged(open.seq), from) {
                if sender.send(&msg).is_err() {
                    // The parent is gone; the main thread finds out on its own.
                    return;
                }
                shared.sent_to.store(next, Ordering::Release);
            }
        }
        last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Frame;
    use ipc_channel::ipc;

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
        answers.run_packed(7, task, lens, data).unwrap();
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
            } => {
                assert_eq!((first_id, from), (7, 0));
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
}
