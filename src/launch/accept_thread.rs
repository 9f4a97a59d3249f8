//! The threads a spawn start accepts its child's connection on, kept for the next
//! start once done: a thread made per start cost more than the rest of the hand-off.
//!
//! A start hands its accept (a closure that polls, accepts and reports) to an idle
//! thread, or to a new one when none is idle. Each start still has a thread of its
//! own for as long as it accepts, so one start's silent peer never delays another's.
//! A thread done with its job is renamed `supervisor-idle` (it is no accept thread any
//! more: the name says what it does) and waits for the next; at most [`KEEP_IDLE`]
//! wait, the others end.

use std::sync::mpsc::{self, SendError, SyncSender};
use std::sync::Mutex;

use crate::os;

/// What an accept thread runs: one start's accept.
pub(super) type Job = Box<dyn FnOnce() + Send>;

/// How many idle threads are kept at most (one serves sequential starts; a few more
/// serve a burst of concurrent ones without a thread made for each).
const KEEP_IDLE: usize = 4;

/// The idle threads, each by the sender its next job reaches it through.
static IDLE: Mutex<Vec<SyncSender<Job>>> = Mutex::new(Vec::new());

/// The name of a thread running a job (`/proc/.../comm` shows its first 15 bytes).
const ACCEPT_NAME: &std::ffi::CStr = c"supervisor-accept";
/// The name of a thread waiting for its next job.
const IDLE_NAME: &std::ffi::CStr = c"supervisor-idle";

/// Runs `job` on an idle accept thread, or on a new one. Fails only when no thread
/// was idle and none could be started (the process limit).
pub(super) fn run(mut job: Job) -> std::io::Result<()> {
    loop {
        let idle = IDLE.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let Some(thread) = idle else { break };
        match thread.send(job) {
            Ok(()) => return Ok(()),
            // That thread ended (it cannot, but then the next one, or a new one).
            Err(SendError(unsent)) => job = unsent,
        }
    }
    std::thread::Builder::new()
        .name(ACCEPT_NAME.to_string_lossy().into_owned())
        .stack_size(128 * 1024)
        .spawn(move || serve(job))
        .map(drop)
}

/// An accept thread's life: its job, then each next one it is given while idle.
fn serve(mut job: Job) {
    loop {
        job();
        os::set_thread_name(IDLE_NAME);
        let (tx, rx) = mpsc::sync_channel(1);
        {
            let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() >= KEEP_IDLE {
                return;
            }
            idle.push(tx);
        }
        match rx.recv() {
            Ok(next) => job = next,
            Err(_) => return,
        }
        os::set_thread_name(ACCEPT_NAME);
    }
}
