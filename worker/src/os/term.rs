//! A worker asked to stop (SIGTERM: a timeout, a shutdown) ends its task's children
//! first, also those in sessions of their own that its process group does not reach.

use std::time::Duration;

use signal_hook::consts::SIGTERM;
use signal_hook::iterator::Signals;

use super::children::end_children;

/// From now on, SIGTERM makes this worker end its task's children (SIGTERM, then
/// SIGKILL after `grace`) and then die of the SIGTERM, as it would have at once. False
/// if no thread could be started for it (SIGTERM then kills at once, as before).
pub(crate) fn end_children_on_sigterm(grace: Duration) -> bool {
    let Ok(mut signals) = Signals::new([SIGTERM]) else {
        return false;
    };
    // A task's child made by a bare fork would inherit the handler, which does nothing
    // without this thread: it gets SIGTERM's default back, and dies of it as any other.
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

/// In a child forked from a worker: SIGTERM back to its default action.
extern "C" fn default_sigterm() {
    // SAFETY: installing SIG_DFL is always sound and async-signal-safe.
    unsafe { libc::signal(SIGTERM, libc::SIG_DFL) };
}
