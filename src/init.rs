//! `init()`: the one call a program makes first in `main`.

use std::sync::Once;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::launch::{forkserver, zygote};
use crate::os;
use crate::reaper;

/// How long daemon children get between SIGTERM and SIGKILL when the program exits.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Call first in `main`, before starting threads.
///
/// In a re-executed worker this never returns: the process serves its parent and
/// exits. In the program itself it forks the single-threaded zygote behind
/// [`crate::StartMethod::Fork`] and arranges that, when the program exits normally,
/// daemon children are terminated and non-daemon children are waited for (as Python
/// does).
pub fn init() {
    supervisor_worker::bootstrap::become_child_if_marked();
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        zygote::start();
        os::at_exit(at_exit);
    });
}

/// Starts the forkserver now rather than on first use.
pub fn ensure_forkserver() -> Result<(), Error> {
    forkserver::client().map(|_| ())
}

/// The pids of the long-lived helper processes this program runs (the zygote and, once
/// started, the forkserver). They are children of this process and end with it.
pub fn helper_pids() -> Vec<u32> {
    let mut pids = Vec::new();
    if let Ok(zygote) = zygote::client() {
        pids.push(zygote.pid() as u32);
    }
    pids.extend(forkserver::pid());
    pids
}

extern "C" fn at_exit() {
    let Some(reaper) = reaper::started() else {
        return;
    };
    let live = reaper.live();
    let deadline = Instant::now() + EXIT_GRACE;
    for slot in live.iter().filter(|s| s.is_daemon()) {
        let _ = slot.signal(libc::SIGTERM, true);
    }
    for slot in live.iter().filter(|s| s.is_daemon()) {
        if slot.wait_until(deadline).is_none() {
            let _ = slot.signal(libc::SIGKILL, true);
            slot.wait();
        }
    }
    for slot in live.iter().filter(|s| !s.is_daemon()) {
        slot.wait();
    }
}
