//! The worker's loop: receive a task, run it with panics caught, answer, repeat.
//!
//! End of input on the link (the parent closed its sender or died) means "exit now".

use std::cell::RefCell;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::time::Instant;

use crate::arena::{Inbox, Outbox};
use crate::poll;
use crate::protocol::{FromChild, Link, TaskOutcome, ToChild, WorkerConfig};
use crate::{os, registry, WorkerContext};

thread_local! {
    static LAST_PANIC: RefCell<Option<(Option<String>, Option<String>)>> = const { RefCell::new(None) };
}

/// Replaces the panic hook with one that records location and backtrace for the task
/// outcome instead of printing: the parent reports the panic.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        panic::set_hook(Box::new(|info| {
            let location = info.location().map(|l| l.to_string());
            let bt = std::backtrace::Backtrace::capture();
            let backtrace = match bt.status() {
                std::backtrace::BacktraceStatus::Captured => Some(bt.to_string()),
                _ => None,
            };
            LAST_PANIC.with(|p| *p.borrow_mut() = Some((location, backtrace)));
        }));
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic payload is not a string".to_string()
    }
}

/// Runs one task to completion (never unwinds).
pub fn run_task(task: &str, arg: &[u8]) -> TaskOutcome {
    match registry::by_name(task) {
        Ok(entry) => run_one(entry, arg),
        Err(_) => TaskOutcome::UnknownTask {
            name: task.to_string(),
        },
    }
}

/// Runs each argument through one task, in order (the task is looked up once).
pub fn run_batch(task: &str, args: &[serde_bytes::ByteBuf]) -> Vec<TaskOutcome> {
    match registry::by_name(task) {
        Ok(entry) => args.iter().map(|arg| run_one(entry, arg)).collect(),
        Err(_) => args
            .iter()
            .map(|_| TaskOutcome::UnknownTask {
                name: task.to_string(),
            })
            .collect(),
    }
}

/// Runs each argument of a packed chunk (`lens[i]` bytes each, back to back in
/// `data`) through one task, in order; plain values are packed the same way.
pub fn run_packed(first_id: u64, task: &str, lens: &[u32], data: &[u8]) -> FromChild {
    let entry = registry::by_name(task);
    let mut out_lens = Vec::with_capacity(lens.len());
    let mut out = Vec::new();
    let mut others = Vec::new();
    let mut at = 0usize;
    for (i, len) in lens.iter().enumerate() {
        let arg = at
            .checked_add(*len as usize)
            .and_then(|end| data.get(at..end));
        at = at.saturating_add(*len as usize);
        let start = out.len();
        let ran = match (&entry, arg) {
            (Ok(entry), Some(arg)) => run_entry(entry, arg, &mut out),
            (Err(_), _) => Err(TaskOutcome::UnknownTask {
                name: task.to_string(),
            }),
            (_, None) => Err(TaskOutcome::BadArgument {
                message: format!("argument {i} lies beyond the {} bytes sent", data.len()),
            }),
        };
        let other = match ran {
            Ok(None) => {
                out_lens.push((out.len() - start) as u32);
                continue;
            }
            // Returned `Err`: its value goes with its message.
            Ok(Some(error)) => TaskOutcome::Returned {
                value: out.split_off(start),
                error: Some(error),
            },
            Err(outcome) => {
                // A panic may have left part of a value behind.
                out.truncate(start);
                outcome
            }
        };
        out_lens.push(0);
        others.push((i as u32, other));
    }
    FromChild::PackedDone {
        first_id,
        lens: out_lens,
        data: serde_bytes::ByteBuf::from(out),
        others,
    }
}

/// Runs one call into a buffer of its own.
fn run_one(entry: &registry::TaskEntry, arg: &[u8]) -> TaskOutcome {
    let mut value = Vec::new();
    match run_entry(entry, arg, &mut value) {
        Ok(error) => TaskOutcome::Returned { value, error },
        Err(outcome) => outcome,
    }
}

/// Runs one call with panics caught, its value encoded at the end of `value` (see
/// [`registry::TaskEntry::run`]); a panic may leave part of a value there.
fn run_entry(entry: &registry::TaskEntry, arg: &[u8], value: &mut Vec<u8>) -> registry::Ran {
    install_panic_hook();
    panic::catch_unwind(AssertUnwindSafe(|| (entry.run)(arg, value))).unwrap_or_else(|payload| {
        let (location, backtrace) = LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_default();
        Err(TaskOutcome::Panicked {
            message: panic_message(&*payload),
            location,
            backtrace,
        })
    })
}

/// Flushes stdio and ends the process without running destructors or atexit handlers.
pub fn finish(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    os::exit_now(code)
}

/// Serves a worker whose first message (the [`WorkerConfig`]) is still to come.
pub fn serve(link: Link) -> ! {
    match link.recv::<ToChild>() {
        Ok(ToChild::Config(config)) => serve_configured(link, config),
        // Parent gone before it said anything, or it spoke nonsense: nothing to do.
        Ok(_) | Err(_) => finish(crate::protocol::EXIT_BOOTSTRAP_FAILED),
    }
}

/// Runs tasks until the parent closes the link.
pub fn serve_configured(link: Link, config: WorkerConfig) -> ! {
    if config.daemon {
        // Parent death (SIGHUP) takes the worker's commands and their children with it.
        os::kill_group_on_hangup();
    }
    if let Some(keep) = &config.env_allowlist {
        let drop: Vec<std::ffi::OsString> = std::env::vars_os()
            .map(|(k, _)| k)
            .filter(|k| !keep.iter().any(|w| k.to_str() == Some(w.as_str())))
            .collect();
        for key in drop {
            // SAFETY (of the environment edit): a worker runs its tasks on this thread
            // only, and no task has run yet, so nothing reads the environment meanwhile.
            unsafe { std::env::remove_var(key) };
        }
    }
    let _ = crate::CONTEXT.set(WorkerContext {
        name: config.name.clone(),
        daemon: config.daemon,
    });
    os::keep_freed_memory();
    let (mut inbox, mut outbox) = (Inbox::new(), Outbox::new());
    loop {
        let frame = match link.recv_frame() {
            Ok(frame) => frame,
            Err(_) => finish(0),
        };
        let reply = match inbox.decode::<ToChild>(frame) {
            Ok(ToChild::Task(req)) => FromChild::Done {
                id: req.id,
                outcome: run_task(&req.task, &req.arg),
            },
            Ok(ToChild::Batch {
                first_id,
                task,
                args,
            }) => FromChild::BatchDone {
                first_id,
                outcomes: run_batch(&task, &args),
            },
            Ok(ToChild::Packed {
                first_id,
                task,
                lens,
                data,
            }) => run_packed(first_id, &task, &lens, &data),
            // A parent never sends anything else to a worker: treat it as a broken link.
            Ok(_) | Err(_) => finish(crate::protocol::EXIT_BOOTSTRAP_FAILED),
        };
        if outbox.send(&link.tx, &reply).is_err() {
            finish(0);
        }
        await_next(&link);
    }
}

/// Polls the link for the next message for a [`poll::WINDOW`] before the worker sleeps
/// on it: a caller sending one task at a time (`apply` in a loop) answers within it, and
/// then neither side waits to be woken. Work sent ahead is there at once. A system call
/// per poll, so it yields often.
fn await_next(link: &Link) {
    poll::poll_until(Instant::now() + poll::WINDOW, 16, || {
        link.rx.frame_waiting()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u64) -> u64 {
        x * 2
    }
    crate::task!(double);

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

    #[test]
    fn a_value_whose_encoding_panics_leaves_nothing_in_the_packed_values() {
        let one = crate::codec::encode(&1u64).unwrap();
        let zero = crate::codec::encode(&0u64).unwrap();
        let data = [one.clone(), zero, one].concat();
        match run_packed(0, "half", &[1, 1, 1], &data) {
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
        match run_packed(7, "double", &[four, 1, 50], &data) {
            FromChild::PackedDone {
                first_id,
                lens,
                data,
                others,
            } => {
                assert_eq!(first_id, 7);
                assert_eq!(lens.len(), 3);
                let eight = crate::codec::decode::<u64>(&data[..lens[0] as usize]).unwrap();
                assert_eq!(eight, 8);
                assert_eq!(&lens[1..], &[0, 0]);
                assert!(matches!(others[0], (1, TaskOutcome::BadArgument { .. })));
                assert!(matches!(others[1], (2, TaskOutcome::BadArgument { .. })));
            }
            other => panic!("{other:?}"),
        }
        match run_packed(1, "no-such-task", &[four], &data) {
            FromChild::PackedDone { others, .. } => {
                assert!(matches!(
                    &others[..],
                    [(0, TaskOutcome::UnknownTask { .. })]
                ))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unknown_task_is_answered_with_its_name() {
        match run_task("no-such-task", &[]) {
            TaskOutcome::UnknownTask { name } => assert_eq!(name, "no-such-task"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_argument_is_an_outcome_not_a_panic() {
        assert!(matches!(
            run_task("double", &[0xff]),
            TaskOutcome::BadArgument { .. }
        ));
        let arg = crate::codec::encode(&21u64).unwrap();
        match run_task("double", &arg) {
            TaskOutcome::Returned { value, error: None } => {
                assert_eq!(crate::codec::decode::<u64>(&value).unwrap(), 42)
            }
            other => panic!("{other:?}"),
        }
    }
}
