//! A worker asked to stop (SIGTERM: a timeout, a shutdown) ends its task's children
//! first, also those in sessions of their own that its process group does not reach;
//! a daemon worker whose parent died (SIGHUP, the parent-death signal) kills them all
//! at once and then itself.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGTERM};
use signal_hook::iterator::Signals;

use super::children::{end_children, kill_descendants};

/// The pid of the worker that installed the handler; 0 until then.
static WORKER: AtomicI32 = AtomicI32::new(0);

/// From now on, SIGTERM makes this worker end its task's children (SIGTERM, then
/// SIGKILL after `grace`) and then die of the SIGTERM, as it would have at once; with
/// `hangup`, SIGHUP makes it SIGKILL them and then its whole group. False if no thread
/// could be started for it (both signals then have their default action: they end
/// the worker at once).
pub(crate) fn end_children_on_sigterm(grace: Duration, hangup: bool) -> bool {
    WORKER.store(std::process::id() as i32, Ordering::Relaxed);
    let wanted: &[i32] = if hangup {
        &[SIGTERM, SIGHUP]
    } else {
        &[SIGTERM]
    };
    let Ok(mut signals) = Signals::new(wanted) else {
        return false;
    };
    let started = std::thread::Builder::new()
        .name("supervisor-term".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            match signals.forever().next() {
                Some(SIGHUP) => {
                    // The parent is gone: no grace, nobody waits for the task.
                    kill_descendants(Duration::from_secs(1));
                    // SAFETY: kill with plain integers; 0 is our own group, us included.
                    unsafe { libc::kill(0, libc::SIGKILL) };
                }
                Some(_) => {
                    super::STOPPING.store(true, Ordering::Release);
                    end_children(grace);
                    // Dies of the signal, so the parent sees what it sent.
                    let _ = signal_hook::low_level::emulate_default_handler(SIGTERM);
                }
                None => {}
            }
        })
        .is_ok();
    if !started {
        // The handlers would do nothing without the thread.
        for &sig in wanted {
            default_action(sig);
        }
        return false;
    }
    // A task's child made by a bare fork inherits the handler, which does nothing
    // without this worker's thread. Two guards give it SIGTERM's default back: the
    // fork handler below, and, for a SIGTERM that comes before the child ran it (the
    // worker ends children the moment their task returns), this action, which sees
    // that it does not run in the worker.
    // SAFETY: the action only calls getpid, sigaction and raise, which are
    // async-signal-safe, and reads an atomic.
    let _ = unsafe { signal_hook::low_level::register(SIGTERM, die_unless_the_worker) };
    // SAFETY: registers a plain function; it only resets a disposition, which is
    // async-signal-safe.
    unsafe { libc::pthread_atfork(None, None, Some(default_sigterm)) };
    true
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
    default_action(SIGTERM);
}

/// `sig` back to its default action (async-signal-safe).
fn default_action(sig: i32) {
    // SAFETY: a zeroed sigaction with SIG_DFL and an empty mask is valid; sigaction is
    // async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, std::ptr::null_mut());
    }
}
