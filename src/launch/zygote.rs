//! The fork start method, made safe: a single-threaded zygote forked in `init()`.
//!
//! Forking a multi-threaded process can deadlock the child on a lock some other thread
//! held. So `init()`, while the program is still single-threaded, forks a zygote that
//! keeps that single-threaded state and forks workers on request. Workers inherit the
//! program's memory as it was at `init()` (globals set later are not seen; pass data
//! as the task argument). If the program already has threads at `init()`, no zygote is
//! made and the fork method reports why.

use std::sync::{Arc, OnceLock};

use ipc_channel::ipc;
use supervisor_worker::protocol::{Frame, Link};
use supervisor_worker::setup::{self, ChildSetup};

use crate::error::{Error, ErrorKind};
use crate::launch::server::ServerClient;
use crate::os;
use crate::reaper::{reaper, ChildSlot, Owner};

static ZYGOTE: OnceLock<Result<Arc<ServerClient>, String>> = OnceLock::new();

/// Forks the zygote; called once from `init()`.
pub(crate) fn start() {
    ZYGOTE.get_or_init(|| fork_zygote().map(Arc::new));
}

fn fork_zygote() -> Result<ServerClient, String> {
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
    match os::fork().map_err(|e| format!("cannot fork the zygote: {e}"))? {
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
            if let Ok(pidfd) = os::pidfd_open(pid) {
                let slot = ChildSlot::new(pid, pidfd, true, Owner::Direct);
                if let Ok(r) = reaper() {
                    let _ = r.watch(slot);
                }
            }
            Ok(ServerClient::new(
                pid,
                Link {
                    tx: to_zygote_tx,
                    rx: from_zygote_rx.into(),
                },
            ))
        }
    }
}

/// The zygote, or why the fork method is unavailable.
pub(crate) fn client() -> Result<Arc<ServerClient>, Error> {
    match ZYGOTE.get() {
        Some(Ok(client)) => Ok(client.clone()),
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
