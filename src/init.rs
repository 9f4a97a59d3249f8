//! `init()`: the one call a program makes first in `main`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};
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
    // Before the worker takes over: a task in it may start processes of its own.
    INITIALISED.store(true, Ordering::Release);
    supervisor_worker::bootstrap::become_child_if_marked();
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // While descriptors are surely to be had (see the function).
        let _ = crate::launch::measure_send_buffer();
        crate::quiet_panic::install();
        zygote::start();
        os::at_exit(at_exit);
    });
}

/// Set by [`init`]: in the program, in every worker (spawned ones call it, forked ones
/// inherit it) and in the helpers.
static INITIALISED: AtomicBool = AtomicBool::new(false);

/// The guard every entry point that starts processes passes first (`Process::start`,
/// `PoolBuilder::build`, [`ensure_forkserver`]).
///
/// - In a re-executed worker whose `main` reached this point without [`init`] (the
///   spawn marker is still in its environment): prints why and exits with
///   `EXIT_NO_INIT` at once, so a program without `init()` never grows more than one
///   generation of processes (each worker would run `main` again and start a pool of
///   its own). Its parent reports [`ErrorKind::NotInitialised`] with its pid.
/// - In a program that has not called [`init`]: [`ErrorKind::NotInitialised`] without
///   a pid, before anything is started.
pub(crate) fn ensure_initialised() -> Result<(), Error> {
    supervisor_worker::bootstrap::refuse_if_unbooted();
    if INITIALISED.load(Ordering::Acquire) {
        Ok(())
    } else {
        Err(ErrorKind::NotInitialised { worker: None }.into())
    }
}

/// Starts the forkserver now rather than on first use.
pub fn ensure_forkserver() -> Result<(), Error> {
    ensure_initialised()?;
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
    crate::cgroup::at_exit();
}
