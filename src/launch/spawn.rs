//! The spawn start method: re-execute `/proc/self/exe` and shake hands.
//!
//! 1. A one-shot ipc-channel server listens on a socket in a fresh directory, which we
//!    force to mode 0700 and check is ours (never an abstract socket).
//! 2. The reaper thread starts the child (`os::spawn_exec`: `clone(CLONE_VM)`, nothing
//!    of ours copied, the reaper not suspended) and the child execs itself with the
//!    socket path and a fresh 32-byte secret in its environment; before exec it
//!    applies its set-up and marks every inherited descriptor close-on-exec. The
//!    start (not the reaper) waits for the exec, with the deadline.
//! 3. A helper thread (an idle one kept from an earlier start, or a new one:
//!    `accept_thread`) waits for the connection on the server's listening descriptor
//!    (found by its address, `os::listening_socket_at`) together with the child's pidfd
//!    and the deadline, and accepts only once a connection is pending: a child that
//!    dies before connecting is an error at once and the thread's job ends with it,
//!    whatever happened to the socket's path.
//! 4. The first message is a fixed-layout hello; its secret is checked before anything
//!    else is decoded, then protocol version, build id and pid.
//! 5. The child hands over the sender we use to reach it; we send its configuration.

use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
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

use crate::error::{BootstrapFailure, Error, ErrorKind};
use crate::exit::ExitStatus;
use crate::os;
use crate::reaper::{reaper, ChildSlot};

/// How long a spawned child has to connect and hand over its channel.
pub(super) const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(30);

enum Event {
    Accepted(Result<(IpcReceiver<ByteBuf>, ByteBuf), ipc_channel::IpcError>),
    Exited,
}

/// What ended a wait for the child's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waited {
    /// A connection is pending: `accept` returns at once.
    Connection,
    /// The child exited first.
    ChildExited,
    /// The deadline passed.
    TimedOut,
}

/// Spawns a child, completes the handshake and sends it `config`.
pub(crate) fn start(
    nice: Option<i32>,
    config: WorkerConfig,
) -> Result<(Arc<ChildSlot>, Link), Error> {
    // A worker whose tasks' children are ended is born in a cgroup of its own, so that
    // those that escape its group and session are found too (`crate::cgroup`). First:
    // the program's first one is made with a probe child, which is over before the
    // worker's bootstrap socket exists.
    let cgroup = config
        .end_task_children
        .and_then(|_| crate::cgroup::for_worker(!config.daemon));
    let secret: [u8; SECRET_LEN] = os::random_bytes().map_err(ErrorKind::Spawn)?;
    super::sweep::stale_bootstrap_dirs();
    // Private from its first instant: created under a 0o077 mask (ipc-channel makes the
    // directory with the process's mask, binds and listens before we could chmod it).
    // Only with a socket to be had: out of descriptors, ipc-channel's `new` leaves its
    // directory behind (`os::unix_socket_available`). The calls are serialised, so only
    // another thread's descriptor taken between the two could still make it fail.
    // And only in a temporary directory it can use: it panics where it cannot make its
    // directory or the path is not UTF-8, and truncates a long one
    // (`os::check_temp_dir`; a directory it cannot make where the check's file could be
    // made is caught and said). Its probe names the directory the server is
    // about to make and stays until that directory is gone again: killed in between
    // (after its `mkdir` and before the `bind`, or after the accepted server removed its
    // socket and before its `rmdir`), we leave a record saying whose that empty
    // directory is (`bootstrap_name`). The server's listening descriptor is looked for
    // at once, first at the number the test socket got (the lowest free one).
    let (server, path, listener, _probe) = os::with_private_umask(|| {
        let next = super::bootstrap_name::next_temp_dir_name();
        let probe = os::check_temp_dir(next.as_deref())?;
        let hint = os::unix_socket_available()?;
        let made = crate::quiet_panic::quietly(|| {
            std::panic::catch_unwind(IpcOneShotServer::<ByteBuf>::new)
        });
        let Ok(made) = made else {
            // Its directory could not be made (its `?` on that error panics), its
            // socket, made first, is left open; why, in the check's words. (Had its
            // `socket()` failed too, another thread having taken the last descriptor
            // since the check, a lone unbound socket found would be another thread's:
            // three rare things at once, accepted.)
            os::close_orphan_server_socket(None);
            os::temp_dir_makes_dirs()?;
            return Err(std::io::Error::other(
                "ipc-channel's one-shot server could not be made",
            ));
        };
        let (server, path) = made.inspect_err(|e| {
            // Its `socket()` failed after all (another thread took the last descriptor
            // since the check): it made its directory and could not remove it (that
            // takes a descriptor); `rmdir` by the predicted name takes none.
            if let Some(next) = &next {
                let _ = std::fs::remove_dir(std::env::temp_dir().join(next));
            }
            // Or its `socket()` worked and its directory, `bind` or `listen` failed
            // (a directory removed under it, a full file system): it returns without
            // closing that socket, the one such left open (not looked for after
            // `EBADF`: its unchecked `socket()` failed).
            os::close_orphan_server_socket(Some(e));
        })?;
        let listener = os::listening_socket_at(Path::new(&path), Some(hint));
        Ok::<_, std::io::Error>((server, path, listener, probe))
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
    let exec_failed = |e: std::io::Error| {
        if nice.is_some() && matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) {
            ErrorKind::NiceNotPermitted {
                requested: nice.unwrap_or_default(),
                current: os::current_nice(),
            }
        } else {
            ErrorKind::Spawn(e)
        }
    };
    // Watched by the reaper thread from the start (one request).
    let started = reaper
        .spawn(exec, Box::new(apply), config.daemon, cgroup)
        .map_err(ErrorKind::Spawn)?;
    let (slot, mut pending) = (started.slot, started.exec);
    let pid = slot.pid();
    // Its exec, waited for here and not by the reaper thread (which a child stopped
    // before its exec would otherwise freeze), with the start's deadline.
    match pending.wait(slot.pidfd(), Instant::now() + BOOTSTRAP_TIMEOUT) {
        os::ExecOutcome::Executed => {}
        os::ExecOutcome::Failed(errno) => {
            // It is on its way to `_exit`; killed, in case it was stopped on the way.
            let _ = slot.signal(libc::SIGKILL, false);
            slot.wait();
            pending.child_gone();
            return Err(exec_failed(std::io::Error::from_raw_os_error(errno)).into());
        }
        os::ExecOutcome::TimedOut => {
            let _ = slot.signal(libc::SIGKILL, true);
            slot.wait();
            pending.child_gone();
            return Err(ErrorKind::Bootstrap {
                pid,
                reason: BootstrapFailure::NoConnection {
                    within: BOOTSTRAP_TIMEOUT,
                },
            }
            .into());
        }
    }
    let bootstrap = Bootstrap { server, listener };
    match handshake(bootstrap, &path, &secret, &slot, config) {
        Ok(link) => Ok((slot, link)),
        Err(Handshake::NoThread(e)) => {
            // Out of threads (the process limit): a failed start like a failed fork.
            let _ = slot.signal(libc::SIGKILL, true);
            slot.wait();
            Err(ErrorKind::Spawn(e).into())
        }
        Err(Handshake::Descriptors(e)) => {
            // Out of descriptors (`RLIMIT_NOFILE`): the channel cannot be had.
            let _ = slot.signal(libc::SIGKILL, true);
            slot.wait();
            Err(ErrorKind::Channel(e).into())
        }
        Err(Handshake::NotInitialised) => {
            slot.wait();
            Err(ErrorKind::NotInitialised { worker: Some(pid) }.into())
        }
        Err(Handshake::Failed(reason)) => {
            let _ = slot.signal(libc::SIGKILL, true);
            slot.wait();
            Err(ErrorKind::Bootstrap { pid, reason }.into())
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

/// A one-shot server and, when it was found, its listening descriptor.
struct Bootstrap {
    server: IpcOneShotServer<ByteBuf>,
    /// Confirmed by `os::listening_socket_at`: the server's own, open as long as the
    /// server lives, and only ever polled.
    listener: Option<RawFd>,
}

/// Why a handshake failed: no thread to accept on, out of descriptors, a child whose
/// `main` did not call `init()` first, or what else the child did wrong.
enum Handshake {
    NoThread(std::io::Error),
    Descriptors(std::io::Error),
    NotInitialised,
    Failed(BootstrapFailure),
}

fn handshake(
    bootstrap: Bootstrap,
    path: &str,
    secret: &[u8; SECRET_LEN],
    slot: &Arc<ChildSlot>,
    config: WorkerConfig,
) -> Result<Link, Handshake> {
    let deadline = Instant::now() + BOOTSTRAP_TIMEOUT;
    let (tx, rx) = mpsc::channel();
    let on_exit = tx.clone();
    slot.on_exit(Box::new(move || {
        let _ = on_exit.send(Event::Exited);
    }));
    let child = slot.clone();
    let listener = bootstrap.listener;
    // Set once a connection is pending: the child's exit then ends the accept too.
    let connected = Arc::new(AtomicBool::new(false));
    let connecting = connected.clone();
    // On a thread of its own (one kept from an earlier start when there is one).
    super::accept_thread::run(Box::new(move || {
        // Accepts only once a connection is pending; a child that exits first, or the
        // deadline, ends this job (and the server with it).
        if let Some(fd) = bootstrap.listener {
            match wait_for_connection(fd, child.pidfd().as_raw_fd(), deadline) {
                Ok(Waited::ChildExited | Waited::TimedOut) => return,
                Ok(Waited::Connection) => connecting.store(true, Ordering::Release),
                Err(_) => {}
            }
        }
        let _ = tx.send(Event::Accepted(bootstrap.server.accept()));
    }))
    .map_err(Handshake::NoThread)?;
    let accepting = Accepting {
        events: rx,
        connected: &connected,
        listener,
    };
    let waited = after_accept(accepting, deadline, path, secret, slot, config);
    if listener.is_none() && waited.is_err() {
        discard_bootstrap(path);
    }
    waited
}

/// Waits until a connection is pending on `listener`, the child (`pidfd`) exits or
/// `deadline` passes, whichever comes first (a pending connection wins a tie).
fn wait_for_connection(
    listener: RawFd,
    pidfd: RawFd,
    deadline: Instant,
) -> std::io::Result<Waited> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Waited::TimedOut);
        }
        let ready = os::poll_readable(&[&listener, &pidfd], Some(left))?;
        if ready[0] {
            return Ok(Waited::Connection);
        }
        if ready[1] {
            return Ok(Waited::ChildExited);
        }
    }
}

/// How long a start whose connection is pending but gave no hello yet waits before it
/// first looks at who connected (another process than the child fails the start then,
/// not at its deadline); each later look waits twice as long, up to [`PEER_CHECK_MAX`]
/// (a look lists every descriptor: many slow starts at once must not spin on that).
const PEER_CHECK: Duration = Duration::from_millis(20);
const PEER_CHECK_MAX: Duration = Duration::from_secs(1);

/// What the start hears from its accept thread, and where the child connects.
struct Accepting<'a> {
    events: mpsc::Receiver<Event>,
    /// Set once a connection is pending.
    connected: &'a AtomicBool,
    listener: Option<RawFd>,
}

/// The rest of a handshake, once a thread accepts the child's connection.
fn after_accept(
    accepting: Accepting<'_>,
    deadline: Instant,
    path: &str,
    secret: &[u8; SECRET_LEN],
    slot: &ChildSlot,
    config: WorkerConfig,
) -> Result<Link, Handshake> {
    let Accepting {
        events: rx,
        connected,
        listener,
    } = accepting;
    let mut check_every = PEER_CHECK;
    let mut exited = false;
    let (receiver, hello) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let slice = if connected.load(Ordering::Acquire) {
            check_every
        } else {
            PEER_CHECK
        };
        match rx.recv_timeout(left.min(slice)) {
            Ok(Event::Accepted(Ok(accepted))) => break accepted,
            Ok(Event::Accepted(Err(e))) => return Err(refused_connection(e, slot)),
            // It connected before it died: what its connection gave counts (it ends now).
            Ok(Event::Exited) if connected.load(Ordering::Acquire) => {}
            // The accept thread, which watches the listener and the child, says
            // whether a connection came first (a loaded machine may wake it after
            // the exit is known): it accepts one, or ends, at once.
            Ok(Event::Exited) if listener.is_some() => exited = true,
            Ok(Event::Exited) => return Err(exited_before_connecting(slot, deadline)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let timed_out = Instant::now() >= deadline;
                // At the deadline also where no connection was seen pending (the
                // listener not found: the accept thread may hold one all the same).
                if connected.load(Ordering::Acquire) || timed_out {
                    if let Some(failed) = check_connection(path, slot, timed_out) {
                        return Err(failed);
                    }
                    check_every = (check_every * 2).min(PEER_CHECK_MAX);
                }
                if timed_out {
                    return Err(Handshake::Failed(BootstrapFailure::NoConnection {
                        within: BOOTSTRAP_TIMEOUT,
                    }));
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) if exited => {
                return Err(exited_before_connecting(slot, deadline))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Handshake::Failed(BootstrapFailure::NoConnection {
                    within: BOOTSTRAP_TIMEOUT,
                }));
            }
        }
    };
    verify(receiver, hello, deadline, secret, slot, config)
}

/// Why a child that exited before any connection was pending failed its start. A
/// SIGKILL of ours (the deadline's, or the program's) is not a death of its own.
fn exited_before_connecting(slot: &ChildSlot, deadline: Instant) -> Handshake {
    let status = slot.exit().map_or(ExitStatus::Unknown, |e| e.status);
    match status {
        ExitStatus::Code(protocol::EXIT_NO_INIT) => Handshake::NotInitialised,
        // A worker runs `main` up to `init()`: what ran before it ended it.
        ExitStatus::Code(code) if code != protocol::EXIT_BOOTSTRAP_FAILED => {
            Handshake::Failed(BootstrapFailure::ExitedBeforeInit { status })
        }
        ExitStatus::Signal {
            signal: crate::exit::Signal::KILL,
            ..
        } if slot.killed_by_us() || Instant::now() >= deadline => {
            Handshake::Failed(BootstrapFailure::NoConnection {
                within: BOOTSTRAP_TIMEOUT,
            })
        }
        status => Handshake::Failed(BootstrapFailure::ExitedBeforeConnecting { status }),
    }
}

/// A connection is pending or accepted and its first message has not come: who made
/// it. Another process than the child fails the start now; at the deadline (`timed_out`)
/// the child's own silent connection does too. Either way the accepted connection's
/// reading side is shut down, so the accept thread, blocked in ipc-channel's receive of
/// that first message, ends (it would wait for as long as the peer stays silent).
fn check_connection(path: &str, slot: &ChildSlot, timed_out: bool) -> Option<Handshake> {
    let path = Path::new(path);
    let accepted = os::accepted_at(path);
    let stranger = accepted
        .iter()
        .find_map(|&(_, pid)| pid.filter(|&pid| pid != slot.pid()));
    let failed = match stranger {
        Some(pid) => BootstrapFailure::Stranger { pid },
        None if timed_out && !accepted.is_empty() => BootstrapFailure::NoHello {
            within: BOOTSTRAP_TIMEOUT,
        },
        None => return None,
    };
    for (fd, _) in accepted {
        os::shut_down_accepted(fd, path);
    }
    Some(Handshake::Failed(failed))
}

/// How long a child whose connection closed before its hello is given to be seen
/// dead (it normally is: its death closed the connection).
const DEATH_GRACE: Duration = Duration::from_secs(1);

/// Why the accepted connection gave no hello, in the catalogue's words.
fn refused_connection(e: ipc_channel::IpcError, slot: &ChildSlot) -> Handshake {
    match e {
        ipc_channel::IpcError::Disconnected => {
            match slot.wait_until(Instant::now() + DEATH_GRACE) {
                Some(exit) => Handshake::Failed(BootstrapFailure::DiedBeforeHello {
                    status: exit.status,
                }),
                None => Handshake::Failed(BootstrapFailure::ClosedBeforeHello),
            }
        }
        ipc_channel::IpcError::Io(e)
            if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) =>
        {
            Handshake::Descriptors(e)
        }
        ipc_channel::IpcError::Io(e) => Handshake::Failed(BootstrapFailure::Connection(e)),
        ipc_channel::IpcError::SerializationError(_) => {
            Handshake::Failed(BootstrapFailure::UnreadableHello)
        }
    }
}

/// Checks a connected child's hello and takes its handoff; sends its configuration.
fn verify(
    receiver: IpcReceiver<ByteBuf>,
    hello: ByteBuf,
    deadline: Instant,
    secret: &[u8; SECRET_LEN],
    slot: &ChildSlot,
    config: WorkerConfig,
) -> Result<Link, Handshake> {
    let failed = |f| Err(Handshake::Failed(f));
    let link_rx = protocol::Receiver::new(receiver.to_opaque().to());
    // Who connected, before anything it sent is looked at.
    if let Some(pid) = link_rx
        .descriptor()
        .and_then(os::peer_pid)
        .filter(|&pid| pid != slot.pid())
    {
        return failed(BootstrapFailure::Stranger { pid });
    }
    let hello = match Hello::verify(&hello, secret) {
        Ok(hello) => hello,
        Err(e) => return failed(BootstrapFailure::RejectedHello(e)),
    };
    if hello.version != protocol::PROTOCOL_VERSION {
        return failed(BootstrapFailure::Protocol {
            theirs: hello.version,
            ours: protocol::PROTOCOL_VERSION,
        });
    }
    if hello.build_id != protocol::build_id() {
        return failed(BootstrapFailure::OtherBuild);
    }
    if hello.pid != slot.pid() {
        return failed(BootstrapFailure::WrongPid(hello.pid));
    }
    let left = deadline.saturating_duration_since(Instant::now());
    // The handoff carries a descriptor: received with none free, the kernel drops it
    // and ipc-channel panics on the empty list. Checked once it is there, just before;
    // another thread may still take the last free one in between: the panic is then
    // caught (a malformed frame), kept off stderr, and reported as what it was.
    if let Some(fd) = link_rx.descriptor() {
        match os::poll_readable(&[&fd], Some(left)) {
            Ok(ready) if ready[0] => {
                os::attached_descriptors_receivable(fd).map_err(Handshake::Descriptors)?
            }
            _ => return failed(BootstrapFailure::NoHandoff),
        }
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let received = crate::quiet_panic::quietly(|| link_rx.recv_timeout(left));
    let mut frame = match received {
        Ok(frame) => frame,
        Err(LinkError::Timeout) => return failed(BootstrapFailure::NoHandoff),
        Err(LinkError::Closed) => {
            return failed(match slot.wait_until(Instant::now() + DEATH_GRACE) {
                Some(exit) => BootstrapFailure::DiedBeforeHandoff {
                    status: exit.status,
                },
                None => BootstrapFailure::ClosedBeforeHandoff,
            })
        }
        Err(LinkError::Malformed) if link_rx.descriptor().is_some() => {
            // The descriptor the peek saw was there; the receive lost it.
            return Err(Handshake::Descriptors(std::io::Error::from_raw_os_error(
                libc::EMFILE,
            )));
        }
        Err(e) => return failed(BootstrapFailure::Link(supervisor_worker::error_chain(&e))),
    };
    match frame.decode::<FromChild>() {
        Ok(FromChild::Handoff) => {}
        Ok(other) => return failed(BootstrapFailure::NotHandoff { got: other.kind() }),
        Err(e) => return failed(BootstrapFailure::Link(supervisor_worker::error_chain(&e))),
    }
    let tx = match frame.take_channels().pop() {
        Some(Channel::Sender(tx)) => tx,
        _ => return failed(BootstrapFailure::NoSender),
    };
    let link = Link { tx, rx: link_rx };
    if let Err(e) = link.send(&ToChild::Config(config)) {
        // Most often it died in between: said so, with how, rather than the link's
        // "peer closed the channel".
        return failed(match slot.wait_until(Instant::now() + DEATH_GRACE) {
            Some(exit) => BootstrapFailure::DiedAfterHandoff {
                status: exit.status,
            },
            None => BootstrapFailure::Link(supervisor_worker::error_chain(&e)),
        });
    }
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
/// its directory are removed by [`BootstrapDir`] when `start` returns). Only for a
/// server whose listening descriptor was not found (its thread blocks in `accept`):
/// it reaches the socket by its path, so a removed path leaves that thread waiting.
fn discard_bootstrap(path: &str) {
    if let Ok(tx) = IpcSender::<ByteBuf>::connect(path.to_string()) {
        let _ = tx.send(ByteBuf::new());
    }
}
