//! The fork start method, made safe: a single-threaded zygote forked in `init()`.
//!
//! Forking a multi-threaded process can deadlock the child on a lock some other thread
//! held. So `init()`, while the program is still single-threaded, forks a zygote that
//! keeps that single-threaded state and forks workers on request. Workers inherit the
//! program's memory as it was at `init()` (globals set later are not seen; pass data
//! as the task argument). If the program already has threads at `init()`, no zygote is
//! made and the fork method reports why.
//!
//! The zygote cannot be made again (the program has threads by then). If it dies, new
//! fork-method workers come from the forkserver instead, which starts from the same
//! point (a re-executed program that ran up to `init()`), and pools say so in
//! `PoolStats::notes`. The workers the zygote had forked go on: they watch the owner's
//! pidfd, not the zygote, so their running calls finish and nothing runs twice (only
//! their exit status is unknown, since nobody can reap them for us any more). A zygote
//! that stops answering (SIGSTOP) is killed and treated as dead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use ipc_channel::ipc;
use supervisor_worker::protocol::{Frame, Link};
use supervisor_worker::setup::{self, ChildSetup};

use crate::error::{Error, ErrorKind};
use crate::launch::server::ServerClient;
use crate::os;
use crate::reaper::{reaper, ChildSlot, Owner};

type Zygote = (Arc<ServerClient>, Option<Arc<ChildSlot>>);

static ZYGOTE: OnceLock<Result<Zygote, String>> = OnceLock::new();
/// Set once the zygote was found dead or unusable.
static LOST: AtomicBool = AtomicBool::new(false);

/// Forks the zygote; called once from `init()`.
pub(crate) fn start() {
    ZYGOTE.get_or_init(fork_zygote);
}

fn fork_zygote() -> Result<Zygote, String> {
    let threads = os::thread_count();
    if threads != 1 {
        return Err(format!(
            "init() ran when the program already had {threads} threads; call it first in main"
        ));
    }
    let inherited = os::open_fds();
    let (to_zygote_tx, to_zygote_rx) =
        ipc::channel::<Frame>().map_err(|e| format!("cannot create a channel: {e}"))?;
    let (from_zygote_tx, from_zygote_rx) =
        ipc::channel::<Frame>().map_err(|e| format!("cannot create a channel: {e}"))?;
    let parent = os::getpid();
    match os::fork().map_err(|e| {
        // The limit in words where one was the cause (a process limit gives EAGAIN).
        let limit =
            crate::error::resource_limit(&e).map_or_else(String::new, |l| format!(" ({l})"));
        format!("cannot fork the zygote: {e}{limit}")
    })? {
        os::Forked::Child => {
            // Only stdio and the zygote's own channels stay open.
            os::close_above_stdio(&inherited);
            drop((to_zygote_tx, from_zygote_rx));
            let setup = ChildSetup {
                nice: None,
                die_with_parent: true,
                expected_parent: parent,
                cloexec_above_stdio: false,
            };
            if setup::apply(&setup).is_err() {
                supervisor_worker::exit_now(supervisor_worker::protocol::EXIT_BOOTSTRAP_FAILED);
            }
            supervisor_worker::server::run(Link {
                tx: from_zygote_tx,
                rx: to_zygote_rx.into(),
            })
        }
        os::Forked::Parent(pid) => {
            drop((to_zygote_rx, from_zygote_tx));
            let mut watched = None;
            if let Ok(pidfd) = os::pidfd_open(pid) {
                let slot = ChildSlot::new(pid, pidfd, true, Owner::Direct, None);
                if let Ok(r) = reaper() {
                    if r.watch(slot.clone()).is_ok() {
                        watched = Some(slot);
                    }
                }
            }
            let client = ServerClient::new(
                pid,
                Link {
                    tx: to_zygote_tx,
                    rx: from_zygote_rx.into(),
                },
            );
            Ok((Arc::new(client), watched))
        }
    }
}

/// Whether the zygote died (or stopped answering): new workers come from the
/// forkserver then.
pub(crate) fn lost() -> bool {
    if LOST.load(Ordering::Acquire) {
        return true;
    }
    let dead = match ZYGOTE.get() {
        Some(Ok((client, slot))) => {
            client.is_broken() || slot.as_ref().is_some_and(|s| s.exit().is_some())
        }
        _ => false,
    };
    if dead {
        LOST.store(true, Ordering::Release);
        // Frozen rather than dead: make sure it is gone (its workers do not need it).
        // Not its group: a worker forked a moment ago may not have left it yet.
        if let Some(Ok((_, Some(slot)))) = ZYGOTE.get() {
            let _ = slot.signal(libc::SIGKILL, false);
        }
    }
    dead
}

/// The zygote, or why the fork method is unavailable.
pub(crate) fn client() -> Result<Arc<ServerClient>, Error> {
    match ZYGOTE.get() {
        Some(Ok((client, _))) => Ok(client.clone()),
        Some(Err(reason)) => Err(ErrorKind::ForkUnavailable {
            reason: reason.clone(),
        }
        .into()),
        None => Err(ErrorKind::ForkUnavailable {
            reason: "supervisor::init() was not called first in main".into(),
        }
        .into()),
    }
}
