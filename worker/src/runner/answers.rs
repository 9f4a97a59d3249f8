//! [`Answers`]: runs a unit call by call and answers it.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use ipc_channel::ipc::IpcSender;

use crate::arena::Outbox;
use crate::codec;
use crate::progress::{monotonic_ns, monotonic_upper_ns, Progress};
use crate::protocol::{Frame, FromChild, LinkError, TaskOutcome, Timing};
use crate::registry::{self, TaskEntry};
use crate::serve::{run_entry, run_one};

use super::flusher::flusher;
use super::pending::{LogEntry, Pending};
use super::shared::{OpenUnit, Sender, Shared};
use super::spike::Spikes;

/// Where a worker's answers go: the link's sender, its arena, the progress page.
pub(crate) struct Answers {
    shared: Arc<Shared>,
    /// `Some(grace)`: end what a task left running (see `WorkerConfig`).
    children: Option<Duration>,
    /// Reused buffer for encoding an outcome into the answer log.
    scratch: std::cell::RefCell<Vec<u8>>,
    /// `Some(bytes)`: see `WorkerConfig::retire_above`.
    retire_above: Option<u64>,
    /// This unit's rest was given back (memory): its end is said even if every
    /// answer went already, so the parent looks at the page after it.
    gave_back: std::cell::Cell<bool>,
    /// Each call judged against `memory_limit` by the memory's high-water marks.
    spikes: Spikes,
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
            retire_above: None,
            gave_back: std::cell::Cell::new(false),
            spikes: Spikes::new(None),
        }
    }

    /// Claims no more calls of a unit once this process's resident memory is above
    /// `bytes` after a call (see `WorkerConfig::retire_above`).
    pub(crate) fn retire_above(mut self, bytes: Option<u64>) -> Answers {
        self.retire_above = bytes;
        self
    }

    /// Judges every call against `bytes` (see `WorkerConfig::memory_limit`).
    pub(crate) fn memory_limit(mut self, bytes: Option<u64>) -> Answers {
        self.spikes = Spikes::new(bytes);
        self
    }

    /// Whether this process holds more resident memory than `retire_above`. The peak
    /// (one cheap system call) bounds it: only above that is /proc read.
    fn over_memory(&self) -> bool {
        let Some(limit) = self.retire_above else {
            return false;
        };
        crate::os::peak_rss_kib().saturating_mul(1024) > limit
            && crate::os::ProcStat::of(std::process::id() as i32)
                .is_some_and(|s| s.rss_kib().saturating_mul(1024) > limit)
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

    /// Claims call `i` of unit `seq` (always granted without a progress page). After
    /// a call that left this process above `retire_above`, or was charged for going
    /// over `memory_limit`, the rest of the unit is given back instead (the limit
    /// lowered on the page, as the parent's take-back does), so it runs on another
    /// worker. (A charged call is the last a pool gives this worker: it recycles it.)
    fn claim(&self, seq: u64, i: u32, now_ns: u64) -> bool {
        let Some(progress) = &self.shared.progress else {
            return true;
        };
        if i > 0 && (self.spikes.spent() || self.over_memory()) {
            let _ = progress.take_back(progress.snapshot(), 0);
            self.gave_back.set(true);
            return false;
        }
        progress.claim(seq, i, now_ns)
    }

    /// Runs one task (unless the parent took it back) and answers it.
    pub(crate) fn run_task(&self, id: u64, task: &str, arg: &[u8]) -> Result<(), LinkError> {
        if !self.claim(id, 0, monotonic_upper_ns()) {
            return Ok(());
        }
        self.spikes.start();
        let start_ns = monotonic_ns();
        let outcome = crate::serve::run_task(task, arg);
        let timing = Timing {
            start_ns,
            duration_ns: monotonic_ns().saturating_sub(start_ns),
        };
        self.end_children(timing.duration_ns);
        // A pool's initializer is not a task: its memory is not judged (its mark may
        // leave the worker's over the limit: its calls are then left to the looks).
        let pool_init = id == crate::protocol::INIT_ID && self.shared.progress.is_some();
        let outcome = if pool_init {
            outcome
        } else {
            self.spikes.judge(outcome)
        };
        let msg = FromChild::Done {
            id,
            outcome,
            timing,
        };
        self.shared.lock().send(&msg)
    }

    fn open(&self, seq: u64, packed: bool, timed: bool) {
        self.gave_back.set(false);
        if let Some(progress) = &self.shared.progress {
            progress.log_reset(seq);
        }
        let mut sender = self.shared.lock();
        self.shared.sent_to.store(0, Ordering::Release);
        sender.open = Some(OpenUnit { seq, packed, timed });
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
        // A unit given back whose answers the flusher sent all: an empty answer says
        // it ended (the flusher may have sent them before the page showed the
        // give-back, and the parent looks at the page on an answer).
        let given_back = close && self.gave_back.replace(false) && skip == pending.len();
        let result = if skip < pending.len() || given_back {
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
            Pending::Packed {
                lens,
                data,
                others,
                timings,
            } => {
                lens.clear();
                data.clear();
                others.clear();
                timings.clear();
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
        self.open(seq, false, false);
        let mut pending = Pending::Outcomes {
            outcomes: Vec::with_capacity(args.len()),
            timings: Vec::with_capacity(args.len()),
        };
        let mut from = 0u32;
        // One precise clock reading per call: a call's end is the next one's start
        // (what lies between is this loop's own bookkeeping).
        self.spikes.start();
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
            let outcome = self.spikes.judge(outcome);
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
    /// are packed the same way. `timed`: each call's own timing goes with its answer
    /// (and with its value in the answer log, as a trailer), measured as a batch's are.
    pub(crate) fn run_packed(
        &self,
        seq: u64,
        task: &str,
        lens: &[u32],
        data: &[u8],
        timed: bool,
    ) -> Result<(), LinkError> {
        let entry = registry::by_name(task);
        self.open(seq, true, timed);
        let mut pending = Pending::Packed {
            lens: Vec::with_capacity(lens.len()),
            data: Vec::new(),
            others: Vec::new(),
            timings: Vec::with_capacity(if timed { lens.len() } else { 0 }),
        };
        let mut from = 0u32;
        let mut at = 0usize;
        // As in `run_batch`: one precise clock reading per call, a call's end being
        // the next one's start.
        self.spikes.start();
        let mut start_ns = if timed { monotonic_ns() } else { 0 };
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
                timings,
            } = &mut pending
            else {
                break;
            };
            let start = out.len();
            let mut ran = run_packed_call(&entry, task, i, arg, data.len(), out);
            let timing = if timed {
                let end_ns = monotonic_ns();
                let timing = Timing {
                    start_ns,
                    duration_ns: end_ns.saturating_sub(start_ns),
                };
                start_ns = end_ns;
                timings.push(timing);
                timing
            } else {
                Timing::default()
            };
            if timed && timing.duration_ns >= 20_000 {
                self.end_children(u64::MAX);
                start_ns = monotonic_ns();
            } else if !timed && self.spikes.active() {
                // An untimed call is not timed, so what it left running is looked
                // for after each call with a memory limit set (one more system call):
                // ended at the unit's end only, a child it left could spike after
                // the last judgement, and the mark it left over the limit made the
                // worker blind to every later call (adv19 F1).
                self.end_children(u64::MAX);
            }
            if let Some(exceeded) = self.spikes.exceeded() {
                // What it returned is dropped (below, as a failed call's).
                ran = Some(exceeded);
            }
            let logged = match ran {
                None => {
                    out_lens.push((out.len() - start) as u32);
                    if timed {
                        // The log gets the value with its timing; the answer only the
                        // value.
                        timing.append_to(out);
                        let logged = self.log(i as u32, LogEntry::Value(&out[start..]));
                        out.truncate(out.len() - Timing::TRAILER);
                        logged
                    } else {
                        self.log(i as u32, LogEntry::Value(&out[start..]))
                    }
                }
                Some(other) => {
                    // A panic may have left part of a value behind.
                    out.truncate(start);
                    out_lens.push(0);
                    let logged = self.log(i as u32, LogEntry::Outcome(&other, &timing));
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

#[cfg(test)]
mod tests {
    use ipc_channel::ipc;

    use super::*;

    /// A unit whose worker gave its rest back after the flusher had sent every answer
    /// of it: an empty answer still says where it ended, so the parent looks at the
    /// page (without one it waited for the given-back calls for ever).
    #[test]
    fn a_given_back_unit_says_its_end_when_every_answer_went_already() {
        let (tx, rx) = ipc::channel::<Frame>().unwrap();
        let answers = Answers::new(tx, None);
        for gave_back in [false, true] {
            answers.open(5, false, false);
            let mut pending = Pending::Outcomes {
                outcomes: vec![TaskOutcome::UnknownTask { name: "t".into() }],
                timings: vec![Timing::default()],
            };
            // As the flusher leaves it after sending call 0's answer.
            answers.shared.sent_to.store(1, Ordering::Release);
            answers.gave_back.set(gave_back);
            answers.send_pending(5, 0, &mut pending, true).unwrap();
            let got = rx.try_recv_timeout(Duration::from_millis(100));
            if !gave_back {
                assert!(got.is_err(), "nothing is left to send");
                continue;
            }
            match crate::arena::Inbox::new().decode(got.unwrap()).unwrap() {
                FromChild::BatchDone {
                    first_id,
                    from,
                    outcomes,
                    ..
                } => assert_eq!((first_id, from, outcomes.len()), (5, 1, 0)),
                other => panic!("{other:?}"),
            }
        }
    }
}
