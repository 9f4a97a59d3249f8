//! The forkserver start method: one re-executed, single-threaded server per parent,
//! started on first use, that forks workers on request (spawn's clean slate, fork's
//! speed). If it dies, the next request starts a new one.

use std::sync::{Arc, Mutex};

use supervisor_worker::protocol::{Role, WorkerConfig};

use crate::error::{Error, ErrorKind};
use crate::launch::server::ServerClient;
use crate::launch::spawn;
use crate::reaper::ChildSlot;

type Running = (Arc<ServerClient>, Arc<ChildSlot>);

static FORKSERVER: Mutex<Option<Running>> = Mutex::new(None);

/// The running forkserver, started if needed.
pub(crate) fn client() -> Result<Arc<ServerClient>, Error> {
    let mut guard = FORKSERVER.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((client, slot)) = guard.as_ref() {
        if slot.exit().is_none() && !client.is_broken() {
            return Ok(client.clone());
        }
        // Dead, or not answering: make sure it is gone before starting another (not its
        // group: a worker forked a moment ago may not have left it yet, and the workers
        // it made go on without it).
        let _ = slot.signal(libc::SIGKILL, false);
    }
    let config = WorkerConfig {
        role: Role::Server,
        name: "forkserver".into(),
        daemon: true,
        env_allowlist: None,
        end_task_children: None,
        retire_above: None,
        memory_limit: None,
        seat: None,
    };
    let (slot, link) = spawn::start(None, config).map_err(ErrorKind::Forkserver)?;
    let client = Arc::new(ServerClient::new(slot.pid() as i32, link));
    *guard = Some((client.clone(), slot));
    Ok(client)
}

/// The forkserver's pid, if one is running.
pub(crate) fn pid() -> Option<u32> {
    let guard = FORKSERVER.lock().unwrap_or_else(|p| p.into_inner());
    guard
        .as_ref()
        .filter(|(_, slot)| slot.exit().is_none())
        .map(|(_, slot)| slot.pid())
}
