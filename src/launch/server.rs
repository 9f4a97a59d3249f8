//! Client of a fork server (the zygote or the forkserver).
//!
//! Requests and replies are strictly paired under one lock, so any thread may ask for
//! a fork and the reaper may ask for a reap at the same time.

use std::io;
use std::sync::{Arc, Mutex};

use ipc_channel::ipc;
use supervisor_worker::protocol::{Channel, Frame, FromChild, Link, LinkError, ToChild};
use supervisor_worker::setup::ChildSetup;

use crate::error::{Error, ErrorKind, Violation};
use crate::os;
use crate::reaper::{reaper, ChildSlot, Owner, ReapServer};

/// How long a fork server may take to answer a request. A fork takes milliseconds; one
/// that does not answer in this time is stopped or wedged, and is replaced (its
/// workers do not depend on it: they watch the owner, not the server).
const SERVER_REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A live connection to a fork server.
pub(crate) struct ServerClient {
    pid: i32,
    link: Mutex<Link>,
    /// Set when a request failed on the link: the server is gone or unusable.
    broken: std::sync::atomic::AtomicBool,
}

impl ServerClient {
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    pub(crate) fn new(pid: i32, link: Link) -> ServerClient {
        ServerClient {
            pid,
            link: Mutex::new(link),
            broken: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether a request failed on the link (the server should be replaced).
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(std::sync::atomic::Ordering::Acquire)
    }

    fn request(&self, msg: &ToChild, channels: Vec<Channel>) -> Result<FromChild, LinkError> {
        let result = self.exchange(msg, channels);
        if result.is_err() {
            self.broken
                .store(true, std::sync::atomic::Ordering::Release);
        }
        result
    }

    fn exchange(&self, msg: &ToChild, channels: Vec<Channel>) -> Result<FromChild, LinkError> {
        let link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        link.send_with(msg, channels)?;
        // A server answers at once; a frozen one must not wedge the reaper.
        link.recv_frame_timeout(SERVER_REPLY_TIMEOUT)
            .and_then(|frame| frame.decode::<FromChild>().map_err(LinkError::Codec))
    }

    /// Asks the server to fork a worker; returns its slot (watched by the reaper) and
    /// the parent's end of its link.
    pub(crate) fn fork(
        self: &Arc<Self>,
        nice: Option<i32>,
        daemon: bool,
        end_orphans: bool,
    ) -> Result<(Arc<ChildSlot>, Link), Error> {
        let (to_worker_tx, to_worker_rx) = ipc::channel::<Frame>().map_err(ErrorKind::Channel)?;
        let (from_worker_tx, from_worker_rx) =
            ipc::channel::<Frame>().map_err(ErrorKind::Channel)?;
        let setup = ChildSetup {
            nice,
            die_with_parent: daemon,
            expected_parent: self.pid,
            cloexec_above_stdio: false,
        };
        let reply = self
            .request(
                &ToChild::Fork { setup, end_orphans },
                vec![
                    Channel::Receiver(to_worker_rx),
                    Channel::Sender(from_worker_tx),
                ],
            )
            .map_err(|e| ErrorKind::Spawn(io::Error::other(e)))?;
        let pid = match reply {
            FromChild::Forked { pid } => pid,
            FromChild::ForkFailed { errno } => {
                return Err(ErrorKind::Spawn(io::Error::from_raw_os_error(errno)).into())
            }
            other => {
                return Err(ErrorKind::Protocol {
                    pid: self.pid as u32,
                    violation: Violation::Unexpected { got: other.kind() },
                }
                .into())
            }
        };
        // The server reaps only when we ask, so the pid is still this worker's.
        let pidfd = match os::pidfd_open(pid) {
            Ok(pidfd) => pidfd,
            Err(e) => {
                // Nobody could watch it (out of descriptors): end it and have it reaped.
                os::kill_pid(pid, libc::SIGKILL);
                let _ = self.reap(pid);
                return Err(ErrorKind::Spawn(e).into());
            }
        };
        let slot = ChildSlot::new(pid, pidfd, daemon, Owner::Server(self.clone()), None);
        reaper()
            .map_err(ErrorKind::Spawn)?
            .watch(slot.clone())
            .map_err(ErrorKind::Spawn)?;
        Ok((
            slot,
            Link {
                tx: to_worker_tx,
                rx: from_worker_rx.into(),
            },
        ))
    }
}

impl ReapServer for ServerClient {
    /// Asks the server to reap `pid`: raw wait status, peak RSS, CPU time.
    fn reap(&self, pid: i32) -> Option<os::Reaped> {
        // A server found dead or frozen cannot answer; do not wait for it once per worker.
        if self.is_broken() {
            return None;
        }
        match self.request(&ToChild::Reap { pid }, Vec::new()) {
            Ok(FromChild::Reaped {
                status: Some(status),
                maxrss_kib,
                cpu_micros,
                ..
            }) => Some((status, maxrss_kib, cpu_micros)),
            _ => None,
        }
    }
}
