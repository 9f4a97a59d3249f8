//! The child side of the spawn handshake.
//!
//! A re-executed child finds the bootstrap socket path and the per-spawn secret in its
//! environment, removes both, connects, and sends a fixed-layout [`Hello`]. Only then
//! does it hand over the sender the parent will use to reach it, and wait for its
//! [`crate::protocol::WorkerConfig`].

use ipc_channel::ipc::{self, IpcSender};
use serde_bytes::ByteBuf;

use crate::protocol::{
    self, Channel, Frame, FromChild, Hello, Link, Role, ToChild, ENV_BOOTSTRAP, ENV_SECRET,
    EXIT_BOOTSTRAP_FAILED, EXIT_NO_INIT, SECRET_LEN,
};
use crate::{serve, server};

/// How long a child that could not connect waits before it says so (see
/// [`become_child_if_marked`]).
const CONNECT_FAILURE_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// Why a marked child could not become a worker.
#[derive(Debug, thiserror::Error)]
enum BootstrapError {
    #[error("no per-spawn secret in the environment")]
    NoSecret,
    #[error("malformed per-spawn secret")]
    BadSecret,
    #[error("cannot connect to the bootstrap socket")]
    Connect(#[source] std::io::Error),
    #[error("bootstrap handshake failed")]
    Link(#[source] protocol::LinkError),
    #[error("cannot create a channel")]
    Channel(#[source] std::io::Error),
}

/// If this process was started as a worker, becomes one and never returns.
///
/// Call it first in `main`, before any thread is started.
pub fn become_child_if_marked() {
    let Some(path) = std::env::var_os(ENV_BOOTSTRAP) else {
        return;
    };
    let secret = std::env::var_os(ENV_SECRET);
    // SAFETY (of the environment edits): this runs first in `main` of a freshly
    // executed child, before any other thread exists, so nothing reads the
    // environment concurrently.
    unsafe {
        std::env::remove_var(ENV_BOOTSTRAP);
        std::env::remove_var(ENV_SECRET);
    }
    match crate::fault::selected() {
        Some(crate::fault::Fault::ExitBeforeConnect) => serve::finish(3),
        Some(crate::fault::Fault::HangBeforeConnect) => loop {
            std::thread::park();
        },
        Some(crate::fault::Fault::StopBeforeConnect) => crate::os::stop_self(),
        _ => {}
    }
    match connect(&path.to_string_lossy(), secret) {
        Ok((link, ToChild::Config(config))) => match config.role {
            Role::Worker => serve::serve_configured(link, config),
            Role::Server => server::run(link),
        },
        Ok(_) => fail("the parent's first message was not a configuration"),
        // The parent took the hello, then let go: it gave up on this start (out of
        // threads or descriptors, past its deadline, stopping) and reports that itself;
        // a word here would be a stray alarm on a run that may well succeed.
        Err(e) if e.parent_let_go() => serve::finish(EXIT_BOOTSTRAP_FAILED),
        Err(e @ BootstrapError::Connect(_)) => {
            // A parent that gave up on this start before it connected (its bootstrap
            // socket gone) kills it at once: only a marker nobody waits on (forged, or
            // left over) lives to say so.
            std::thread::sleep(CONNECT_FAILURE_GRACE);
            fail(&crate::error_chain(&e))
        }
        Err(e) => fail(&crate::error_chain(&e)),
    }
}

impl BootstrapError {
    /// Whether the parent closed or reset the channel once connected.
    fn parent_let_go(&self) -> bool {
        use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
        match self {
            BootstrapError::Link(protocol::LinkError::Closed) => true,
            BootstrapError::Link(protocol::LinkError::Io(e)) => {
                let msg = e.to_string();
                [
                    (ConnectionReset, libc::ECONNRESET),
                    (BrokenPipe, libc::EPIPE),
                ]
                .into_iter()
                .any(|(kind, errno)| {
                    e.kind() == kind
                            || e.raw_os_error() == Some(errno)
                            // ipc-channel's error said in words (its number lost on
                            // the way).
                            || msg.contains(&std::io::Error::from(kind).to_string())
                            || msg.contains(&std::io::Error::from_raw_os_error(errno).to_string())
                })
            }
            _ => false,
        }
    }
}

/// Whether this process was started as a worker and has not become one yet: the marker
/// [`become_child_if_marked`] removes is still in its environment. True only in a
/// re-executed child whose `main` did not call `supervisor::init()` first.
pub fn is_unbooted_worker() -> bool {
    std::env::var_os(ENV_BOOTSTRAP).is_some()
}

/// In a re-executed child that reached the program's code without `init()`: says so
/// on stderr and exits with [`EXIT_NO_INIT`], before it can start processes of its own
/// (which would run `main` again, and so on: a fork bomb). Elsewhere does nothing.
pub fn refuse_if_unbooted() {
    if is_unbooted_worker() {
        eprintln!(
            "supervisor: process {} was started as a worker, but its main started a process \
             or pool before calling supervisor::init(); it exits without starting anything \
             (call supervisor::init() first in main)",
            std::process::id()
        );
        serve::finish(EXIT_NO_INIT)
    }
}

fn fail(reason: &str) -> ! {
    eprintln!(
        "supervisor: this process was started as a worker but cannot become one: {reason}; \
         it runs nothing and exits"
    );
    serve::finish(EXIT_BOOTSTRAP_FAILED)
}

fn parse_secret(hex: Option<std::ffi::OsString>) -> Result<[u8; SECRET_LEN], BootstrapError> {
    let hex = hex.ok_or(BootstrapError::NoSecret)?;
    let hex = hex.to_str().ok_or(BootstrapError::BadSecret)?.as_bytes();
    if hex.len() != SECRET_LEN * 2 {
        return Err(BootstrapError::BadSecret);
    }
    let mut out = [0u8; SECRET_LEN];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| BootstrapError::BadSecret)?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| BootstrapError::BadSecret)?;
    }
    Ok(out)
}

fn connect(
    path: &str,
    secret: Option<std::ffi::OsString>,
) -> Result<(Link, ToChild), BootstrapError> {
    let secret = parse_secret(secret)?;
    let hello_tx: IpcSender<ByteBuf> =
        IpcSender::connect(path.to_string()).map_err(BootstrapError::Connect)?;
    if crate::fault::selected() == Some(crate::fault::Fault::StopAfterConnect) {
        loop {
            crate::os::stop_self();
        }
    }
    let hello = Hello {
        version: protocol::PROTOCOL_VERSION,
        build_id: protocol::build_id(),
        pid: std::process::id(),
        secret,
    };
    hello_tx
        .send(ByteBuf::from(hello.to_bytes()))
        .map_err(|e| {
            BootstrapError::Link(protocol::LinkError::Io(std::io::Error::other(
                e.to_string(),
            )))
        })?;
    let fault = crate::fault::selected();
    if fault == Some(crate::fault::Fault::KillAfterHello) {
        crate::os::kill_self();
    }
    let tx: IpcSender<Frame> = hello_tx.to_opaque().to();
    let (to_child_tx, mut to_child_rx) =
        ipc::channel::<Frame>().map_err(BootstrapError::Channel)?;
    if fault == Some(crate::fault::Fault::KillAfterHandoff) {
        // Closed before the hand-off: the parent's configuration finds no reader.
        to_child_rx = ipc::channel::<Frame>().map_err(BootstrapError::Channel)?.1;
    }
    let link = Link {
        tx,
        rx: to_child_rx.into(),
    };
    link.send_with(&FromChild::Handoff, vec![Channel::Sender(to_child_tx)])
        .map_err(BootstrapError::Link)?;
    if fault == Some(crate::fault::Fault::KillAfterHandoff) {
        crate::os::kill_self();
    }
    let first = link.recv::<ToChild>().map_err(BootstrapError::Link)?;
    Ok((link, first))
}

/// Hex encoding of a secret for the environment.
pub fn secret_to_hex(secret: &[u8; SECRET_LEN]) -> String {
    secret.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_hex_round_trips() {
        let secret: [u8; SECRET_LEN] = std::array::from_fn(|i| (i * 29) as u8);
        let hex = secret_to_hex(&secret);
        assert_eq!(parse_secret(Some(hex.into())).unwrap(), secret);
        assert!(matches!(parse_secret(None), Err(BootstrapError::NoSecret)));
        assert!(matches!(
            parse_secret(Some("zz".into())),
            Err(BootstrapError::BadSecret)
        ));
    }
}
