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
