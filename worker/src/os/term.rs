//! A worker asked to stop (SIGTERM: a timeout, a shutdown) ends its task's children
//! first, also those in sessions of their own that its process group does not reach.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use signal_hook::consts::SIGTERM;
use signal_hook::iterator::Signals;

use super::children::end_children;

/// The pid of the worker that installed the handler; 0 until then.
static WORKER: AtomicI32 = AtomicI32::new(0);

/// From now on, SIGTERM makes this worker end its task's children (SIGTERM, then
/// SIGKILL after `grace`) and then die of the SIGTERM, as it would have at once. False
/// if no thread could be started for it (SIGTERM then kills at once, as before).
pub(crate) fn end_children_on_sigterm(grace: Duration) -> bool {
    WORKER.store(std::process::id() as i32, Ordering::Relaxed);
    // A task's child made by a bare fork inherits the handler, which does nothing
    // without this worker's thread. Two guards give it SIGTERM's default back: the
    // fork handler below, and, for a SIGTERM that comes before the child ran it (the
    // worker ends children the moment their task returns), this action, which sees
    // that it does not run in the worker.
    // SAFETY: the action only calls getpid, sigaction and raise, which are
    // async-signal-safe, and reads an atomic.
    let guard = unsafe { signal_hook::low_level::register(SIGTERM, die_unless_the_worker) };
    if guard.is_err() {
        return false;
    }
    let Ok(mut signals) = Signals::new([SIGTERM]) else {
        return false;
    };
    // SAFETY: registers a plain function; it only resets a disposition, which is
    // async-signal-safe.
    unsafe { libc::pthread_atfork(None, None, Some(default_sigterm)) };
    std::thread::Builder::new()
        .name("supervisor-term".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            if signals.forever().next().is_some() {
                end_children(grace);
                // Dies of the signal, so the parent sees what it sent.
                let _ = signal_hook::low_level::emulate_default_handler(SIGTERM);
            }
        })
        .is_ok()
}

/// The SIGTERM action: in a process forked from the worker (whose pid differs), the
/// default action, so the child dies of the signal once this handler returns (SIGTERM
/// is blocked while it runs, so the raised one waits until then).
fn die_unless_the_worker() {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != WORKER.load(Ordering::Relaxed) {
        default_sigterm();
        // SAFETY: raise with a plain signal number.
        unsafe { libc::raise(SIGTERM) };
    }
}

/// In a child forked from a worker: SIGTERM back to its default action.
extern "C" fn default_sigterm() {
    // SAFETY: a zeroed sigaction with SIG_DFL and an empty mask is valid; sigaction is
    // async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(SIGTERM, &action, std::ptr::null_mut());
    }
}
