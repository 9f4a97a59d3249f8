//! The spawn start method: re-execute `/proc/self/exe` and shake hands.
//!
//! 1. A one-shot ipc-channel server listens on a socket in a fresh directory, which we
//!    force to mode 0700 and check is ours (never an abstract socket).
//! 2. The reaper thread starts the child (`os::spawn_exec`: `clone(CLONE_VM |
//!    CLONE_VFORK)`, nothing of ours copied) and execs it with the socket path and a
//!    fresh 32-byte secret in its environment; before exec the child applies its
//!    set-up and marks every inherited descriptor close-on-exec.
//! 3. `accept` runs on a helper thread while we also watch the child's exit: a child
//!    that dies before connecting is an error at once, never a hung accept.
//! 4. The first message is a fixed-layout hello; its secret is checked before anything
//!    else is decoded, then protocol version, build id and pid.
//! 5. The child hands over the sender we use to reach it; we send its configuration.

use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ipc_channel::ipc::{IpcOneShotServer, IpcReceiver, IpcSender};
use serde_bytes::ByteBuf;
use supervisor_worker::bootstrap::secret_to_hex;
use supervisor_worker::protocol::{
    self, Channel, FromChild, Hello, Link, LinkError, ToChild, WorkerConfig, ENV_BOOTSTRAP,
    ENV_SECRET, SECRET_LEN,
};
use supervisor_worker::setup::{self, ChildSetup};

use crate::error::{Error, ErrorKind};
use crate::exit::ExitStatus;
use crate::os;
use crate::reaper::{reaper, ChildSlot, Owner};

/// How long a spawned child has to connect and hand over its channel.
pub(super) const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(30);

enum Event {
    Accepted(Result<(IpcReceiver<ByteBuf>, ByteBuf), ipc_channel::IpcError>),
    Exited,
}

/// Spawns a child, completes the handshake and sends it `config`.
pub(crate) fn start(
    nice: Option<i32>,
    config: WorkerConfig,
) -> Result<(Arc<ChildSlot>, Link), Error> {
    let secret: [u8; SECRET_LEN] = os::random_bytes().map_err(ErrorKind::Spawn)?;
    super::sweep::stale_bootstrap_dirs();
    // Private from its first instant: created under a 0o077 mask (ipc-channel makes the
    // directory with the process's mask, binds and listens before we could chmod it).
    // Only with a socket to be had: out of descriptors, ipc-channel's `new` leaves its
    // directory behind (`os::unix_socket_available`). The calls are serialised, so only
    // another thread's descriptor taken between the two could still make it fail.
    // And only in a temporary directory it can use: it panics where it cannot make its
    // directory or the path is not UTF-8, and truncates a long one
    // (`os::check_temp_dir`). Its probe directory names the directory the server is
    // about to make and stays until that directory is gone again: killed in between
    // (after its `mkdir` and before the `bind`, or after the accepted server removed its
    // socket and before its `rmdir`), we leave a record saying whose that empty
    // directory is (`bootstrap_name`).
    let (server, path, _probe) = os::with_private_umask(|| {
        let next = super::bootstrap_name::next_temp_dir_name();
        let probe = os::check_temp_dir(next.as_deref())?;
        os::unix_socket_available()?;
        let (server, path) = IpcOneShotServer::<ByteBuf>::new()?;
        Ok::<_, std::io::Error>((server, path, probe))
    })
    .map_err(ErrorKind::Channel)?;
    // Whatever happens below, the socket and its directory go when `start` returns
    // (before the probe: locals drop in reverse order).
    let _cleanup = BootstrapDir(path.clone());
    if let Some(dir) = Path::new(&path).parent() {
        os::make_private_dir(dir).map_err(ErrorKind::Channel)?;
    }
    let setup = ChildSetup {
        nice,
        die_with_parent: config.daemon,
        expected_parent: os::getpid(),
        cloexec_above_stdio: true,
    };
    // The environment the child sees: ours (or only the allowed keys), and the
    // bootstrap socket and secret.
    let keep = |key: &std::ffi::OsStr| {
        key != ENV_BOOTSTRAP
            && key != ENV_SECRET
            && config
                .env_allowlist
                .as_ref()
                .is_none_or(|keep| keep.iter().any(|k| std::ffi::OsStr::new(k) == key))
    };
    let env = std::env::vars_os().filter(|(k, _)| keep(k)).chain([
        (ENV_BOOTSTRAP.into(), path.clone().into()),
        (ENV_SECRET.into(), secret_to_hex(&secret).into()),
    ]);
    let exec = os::Exec::new(
        "/proc/self/exe".as_ref(),
        &[process_title(&config).into()],
        env,
    )
    .map_err(ErrorKind::Spawn)?;
    // `setup::apply` is async-signal-safe: raw system calls on plain data, no
    // allocation, no locks; the closure captures only a Copy struct. It runs in the
    // child, which shares our memory until it executes (os::spawn_exec).
    let apply = move || setup::apply(&setup).map_err(|e| e.errno);
    let reaper = reaper().map_err(ErrorKind::Spawn)?;
    let (pid, pidfd) = reaper.spawn(exec, Box::new(apply)).map_err(|e| {
        if nice.is_some() && matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) {
            ErrorKind::NiceNotPermitted {
                requested: nice.unwrap_or_default(),
                current: os::current_nice(),
            }
        } else {
            ErrorKind::Spawn(e)
        }
    })?;
    let slot = ChildSlot::new(pid, pidfd, config.daemon, Owner::Direct);
    reaper.watch(slot.clone()).map_err(ErrorKind::Spawn)?;
    match handshake(server, &path, &secret, &slot, config) {
        Ok(link) => Ok((slot, link)),
        Err(Handshake::NoThread(e)) => {
            // Out of threads (the process limit): a failed start like a failed fork.
            let _ = slot.signal(libc::SIGKILL, true);
            slot.wait();
            Err(ErrorKind::Spawn(e).into())
        }
        Err(Handshake::NotInitialised) => {
            slot.wait();
            Err(ErrorKind::NotInitialised {
                worker: Some(pid as u32),
            }
            .into())
        }
        Err(Handshake::Failed(reason)) => {
            let _ = slot.signal(libc::SIGKILL, true);
            slot.wait();
            Err(ErrorKind::Bootstrap {
                pid: pid as u32,
                reason,
            }
            .into())
        }
    }
}

fn process_title(config: &WorkerConfig) -> String {
    let exe = std::env::args_os()
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "supervisor".into());
    format!("{exe} [{}]", config.name)
}

/// Why a handshake failed: no thread to accept on, a child whose `main` did not call
/// `init()` first, or what else the child did wrong.
enum Handshake {
    NoThread(std::io::Error),
    NotInitialised,
    Failed(String),
}

fn handshake(
    server: IpcOneShotServer<ByteBuf>,
    path: &str,
    secret: &[u8; SECRET_LEN],
    slot: &ChildSlot,
    config: WorkerConfig,
) -> Result<Link, Handshake> {
    let deadline = Instant::now() + BOOTSTRAP_TIMEOUT;
    let (tx, rx) = mpsc::channel();
    let on_exit = tx.clone();
    slot.on_exit(Box::new(move || {
        let _ = on_exit.send(Event::Exited);
    }));
    std::thread::Builder::new()
        .name("supervisor-accept".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            let _ = tx.send(Event::Accepted(server.accept()));
        })
        .map_err(Handshake::NoThread)?;
    after_accept(rx, deadline, path, secret, slot, config)
}

/// The rest of a handshake, once a thread accepts the child's connection.
fn after_accept(
    rx: mpsc::Receiver<Event>,
    deadline: Instant,
    path: &str,
    secret: &[u8; SECRET_LEN],
    slot: &ChildSlot,
    config: WorkerConfig,
) -> Result<Link, Handshake> {
    let (receiver, hello) = match rx.recv_timeout(BOOTSTRAP_TIMEOUT) {
        Ok(Event::Accepted(Ok(accepted))) => accepted,
        Ok(Event::Accepted(Err(e))) => {
            return Err(Handshake::Failed(format!("accept failed: {e:?}")))
        }
        Ok(Event::Exited) => {
            discard_bootstrap(path);
            let status = slot.exit().map(|e| e.status);
            return Err(match status {
                Some(ExitStatus::Code(protocol::EXIT_NO_INIT)) => Handshake::NotInitialised,
                // A worker runs `main` up to `init()`: what ran before it ended it.
                Some(status @ ExitStatus::Code(code))
                    if code != protocol::EXIT_BOOTSTRAP_FAILED =>
                {
                    Handshake::Failed(format!(
                        "it exited ({status}) before connecting (a spawned worker runs main up \
                     to supervisor::init(), which must come first)"
                    ))
                }
                status => Handshake::Failed(format!(
                    "it exited ({}) before connecting",
                    status.map(|s| s.to_string()).unwrap_or_default()
                )),
            });
        }
        Err(_) => {
            discard_bootstrap(path);
            return Err(Handshake::Failed(format!(
                "it did not connect within {BOOTSTRAP_TIMEOUT:?}"
            )));
        }
    };
    verify(receiver, hello, deadline, secret, slot, config).map_err(Handshake::Failed)
}

/// Checks a connected child's hello and takes its handoff; sends its configuration.
fn verify(
    receiver: IpcReceiver<ByteBuf>,
    hello: ByteBuf,
    deadline: Instant,
    secret: &[u8; SECRET_LEN],
    slot: &ChildSlot,
    config: WorkerConfig,
) -> Result<Link, String> {
    let hello = Hello::verify(&hello, secret).map_err(|e| format!("rejected its hello: {e}"))?;
    if hello.version != protocol::PROTOCOL_VERSION {
        return Err(format!(
            "it speaks protocol {} and we speak {}",
            hello.version,
            protocol::PROTOCOL_VERSION
        ));
    }
    if hello.build_id != protocol::build_id() {
        return Err("it is a different build of this program".into());
    }
    if hello.pid != slot.pid() {
        return Err(format!("the hello came from pid {}", hello.pid));
    }
    let link_rx = protocol::Receiver::new(receiver.to_opaque().to());
    let left = deadline.saturating_duration_since(Instant::now());
    let mut frame = match link_rx.recv_timeout(left) {
        Ok(frame) => frame,
        Err(LinkError::Timeout) => return Err("no handoff in time".into()),
        Err(LinkError::Closed) => return Err("channel closed before the handoff".into()),
        Err(e) => return Err(supervisor_worker::error_chain(&e)),
    };
    match frame.decode::<FromChild>() {
        Ok(FromChild::Handoff) => {}
        Ok(other) => return Err(format!("expected a handoff, got {other:?}")),
        Err(e) => return Err(supervisor_worker::error_chain(&e)),
    }
    let tx = match frame.take_channels().pop() {
        Some(Channel::Sender(tx)) => tx,
        _ => return Err("the handoff carried no sender".into()),
    };
    let link = Link { tx, rx: link_rx };
    link.send(&ToChild::Config(config))
        .map_err(|e: LinkError| supervisor_worker::error_chain(&e))?;
    Ok(link)
}

/// Removes a bootstrap socket and its directory when dropped. `unlink` and `rmdir` need
/// no descriptor, so this works even when descriptors have run out (the server's own
/// clean-up opens the directory and fails silently then). After a successful handshake
/// both are already gone and this does nothing.
struct BootstrapDir(String);

impl Drop for BootstrapDir {
    fn drop(&mut self) {
        let socket = Path::new(&self.0);
        let _ = std::fs::remove_file(socket);
        if let Some(dir) = socket.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Wakes an `accept` that will never see its child, so its thread ends (the socket and
/// its directory are removed by [`BootstrapDir`] when `start` returns).
fn discard_bootstrap(path: &str) {
    if let Ok(tx) = IpcSender::<ByteBuf>::connect(path.to_string()) {
        let _ = tx.send(ByteBuf::new());
    }
}
