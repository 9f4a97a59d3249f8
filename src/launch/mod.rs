//! Starting a child with one of the three start methods.

mod accept_thread;
mod bootstrap_name;
pub(crate) mod forkserver;
pub(crate) mod server;
pub(crate) mod spawn;
mod sweep;
pub(crate) mod zygote;

use std::sync::Arc;

use supervisor_worker::protocol::{Link, Role, ToChild, WorkerConfig};

use crate::error::{Error, ErrorKind};
use crate::reaper::ChildSlot;
use crate::StartMethod;

/// What to start.
pub(crate) struct Spec {
    pub(crate) method: StartMethod,
    pub(crate) nice: Option<i32>,
    pub(crate) daemon: bool,
    pub(crate) name: String,
    pub(crate) env_allowlist: Option<Vec<String>>,
    /// See `WorkerConfig::end_task_children`.
    pub(crate) end_task_children: Option<std::time::Duration>,
    /// See `WorkerConfig::retire_above`.
    pub(crate) retire_above: Option<u64>,
    /// See `WorkerConfig::memory_limit`.
    pub(crate) memory_limit: Option<u64>,
    /// See `WorkerConfig::seat`.
    pub(crate) seat: Option<u32>,
}

/// Makes ipc-channel measure the socket send buffer, once per process, when it can.
/// It does so on its first send, with a socket pair it `expect`s: out of descriptors
/// there, it panicked inside the start (in the caller's thread) and poisoned the
/// measure, so every later start in the process panicked too ("LazyLock instance has
/// previously been poisoned"), whatever the limit was by then. `init()` asks first;
/// every start asks again until it is done, and out of descriptors is an error.
pub(crate) fn measure_send_buffer() -> std::io::Result<()> {
    static MEASURED: std::sync::Once = std::sync::Once::new();
    if MEASURED.is_completed() {
        return Ok(());
    }
    crate::os::socket_pair_available()?;
    MEASURED.call_once(|| {
        let _ = ipc_channel::platform::OsIpcSender::get_max_fragment_size();
    });
    Ok(())
}

/// Starts a configured worker: its slot (watched by the reaper) and our end of its link.
pub(crate) fn start_worker(spec: &Spec) -> Result<(Arc<ChildSlot>, Link), Error> {
    measure_send_buffer().map_err(ErrorKind::Spawn)?;
    let config = WorkerConfig {
        role: Role::Worker,
        name: spec.name.clone(),
        daemon: spec.daemon,
        env_allowlist: spec.env_allowlist.clone(),
        end_task_children: spec.end_task_children,
        retire_above: spec.retire_above,
        memory_limit: spec.memory_limit,
        seat: spec.seat,
    };
    let server = match spec.method {
        StartMethod::Spawn => return spawn::start(spec.nice, config),
        // A dead zygote cannot be made again: the forkserver stands in.
        StartMethod::Fork if zygote::lost() => forkserver::client()?,
        StartMethod::Fork => zygote::client()?,
        StartMethod::Forkserver => forkserver::client()?,
    };
    // What a dead worker leaves is ended by the server that adopts it, unless its tasks
    // may leave a daemon behind.
    let end_orphans = spec.end_task_children.is_some();
    let (slot, link) = match server.fork(spec.nice, spec.daemon, end_orphans) {
        // A server that died under us is replaced once (the zygote by the forkserver).
        Err(_) if server.is_broken() || zygote::lost() => {
            forkserver::client()?.fork(spec.nice, spec.daemon, end_orphans)?
        }
        other => other?,
    };
    if let Err(e) = link.send(&ToChild::Config(config)) {
        let _ = slot.signal(libc::SIGKILL, true);
        slot.wait();
        return Err(ErrorKind::Bootstrap {
            pid: slot.pid(),
            reason: crate::error::BootstrapFailure::Link(supervisor_worker::error_chain(&e)),
        }
        .into());
    }
    Ok((slot, link))
}
