//! The worker's loop: receive a task, run it with panics caught, answer, repeat.
//!
//! End of input on the link (the parent closed its sender or died) means "exit now".

use std::cell::RefCell;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::time::Instant;

use crate::arena::Inbox;
use crate::poll;
use crate::progress::Progress;
use crate::protocol::{Link, TaskOutcome, ToChild, WorkerConfig};
use crate::runner::Answers;
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

/// A panic's message, when its payload is a string.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
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

/// Runs one call into a buffer of its own.
pub(crate) fn run_one(entry: &registry::TaskEntry, arg: &[u8]) -> TaskOutcome {
    let mut value = Vec::new();
    match run_entry(entry, arg, &mut value) {
        Ok(error) => TaskOutcome::Returned { value, error },
        Err(outcome) => outcome,
    }
}

/// Runs one call with panics caught, its value encoded at the end of `value` (see
/// [`registry::TaskEntry::run`]); a panic may leave part of a value there.
pub(crate) fn run_entry(
    entry: &registry::TaskEntry,
    arg: &[u8],
    value: &mut Vec<u8>,
) -> registry::Ran {
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

static BEFORE_EXIT: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Registers `f` to run when a worker ends, before it exits (the first registration
/// counts): the parent crate lets handles a task returned be opened first.
#[doc(hidden)]
pub fn before_exit(f: fn()) {
    let _ = BEFORE_EXIT.set(f);
}

/// Flushes stdio and ends the process without running destructors or atexit handlers
/// (after the hook of [`before_exit`], if any).
pub fn finish(code: i32) -> ! {
    if let Some(f) = BEFORE_EXIT.get() {
        f();
    }
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
    if crate::fault::selected() == Some(crate::fault::Fault::BlockHangUp) {
        // Before any thread starts, so none of them takes the signal either.
        os::block_hang_up();
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
        seat: config.seat,
    });
    os::keep_freed_memory();
    let children = config.end_task_children;
    let hangup_handled = children.is_some_and(|grace| {
        os::become_subreaper();
        os::end_children_at_exit();
        // The whole grace for the task's children (the parent waits a margin longer
        // before its SIGKILL ends us); a daemon's parent death (SIGHUP) kills every
        // descendant, also those that left the group, then the group.
        os::end_children_on_sigterm(grace, config.daemon)
    });
    if config.daemon && !hangup_handled {
        // Parent death (SIGHUP) takes the worker's commands and their children with it.
        os::kill_group_on_hangup();
    }
    // A pool worker (it dies with its parent): should the parent-death signal not act,
    // the hang-up of the link while a task runs ends it all the same. Not a daemon
    // `Process`, whose handle may be dropped while its task runs on. Its thread starts
    // with the first task: a worker that never runs one (a pool stopped at once) does
    // not pay for it.
    let mut watch_link = (config.daemon && config.seat.is_some())
        .then(|| link.rx.descriptor())
        .flatten();
    let parent = os::parent_pid();
    let mut inbox = Inbox::new();
    let retire_above = config.retire_above;
    let memory_limit = config.memory_limit;
    let mut answers = Answers::new(link.tx.clone(), children).memory_limit(memory_limit);
    loop {
        let mut frame = match link.recv_frame() {
            Ok(frame) => frame,
            Err(_) => {
                if let Some(grace) = children {
                    os::end_children(grace);
                }
                finish(0)
            }
        };
        if let Some(fd) = watch_link.take() {
            os::end_when_link_hangs_up(fd, parent);
        }
        os::BUSY.store(true, std::sync::atomic::Ordering::Release);
        let page = frame.take_page();
        let sent = match inbox.decode::<ToChild>(frame) {
            Ok(ToChild::Task(req)) => answers.run_task(req.id, &req.task, &req.arg),
            Ok(ToChild::Batch {
                first_id,
                task,
                args,
            }) => answers.run_batch(first_id, &task, &args),
            Ok(ToChild::Packed {
                first_id,
                task,
                lens,
                data,
                timed,
            }) => answers.run_packed(first_id, &task, &lens, &data, timed),
            Ok(ToChild::Progress) => match page.and_then(Progress::adopt) {
                Some(progress) => {
                    answers = Answers::with_progress(link.tx.clone(), progress, children)
                        .retire_above(retire_above)
                        .memory_limit(memory_limit);
                    os::BUSY.store(false, std::sync::atomic::Ordering::Release);
                    continue;
                }
                None => finish(crate::protocol::EXIT_BOOTSTRAP_FAILED),
            },
            // A parent never sends anything else to a worker: treat it as a broken link.
            Ok(_) | Err(_) => finish(crate::protocol::EXIT_BOOTSTRAP_FAILED),
        };
        os::BUSY.store(false, std::sync::atomic::Ordering::Release);
        if sent.is_err() {
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
