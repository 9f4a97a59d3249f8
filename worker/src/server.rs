//! A single-threaded server that forks workers on request: the zygote behind the
//! `fork` start method and the re-executed forkserver behind `forkserver`.
//!
//! The server never reaps on its own. It reaps a worker only when the parent asks
//! (after the parent saw the worker exit through a pidfd), so a worker's pid cannot be
//! reused while the parent may still signal it.

use std::os::fd::OwnedFd;

use crate::protocol::{Channel, FromChild, Link, ToChild};
use crate::setup::{self, ChildSetup};
use crate::{os, serve};

/// Serves fork and reap requests until the parent closes the link, then exits.
pub fn run(link: Link) -> ! {
    // The parent is the pool's owner; the workers watch it, not this server.
    let mut owner = os::parent_pidfd();
    loop {
        let mut frame = match link.recv_frame() {
            Ok(frame) => frame,
            Err(_) => serve::finish(0),
        };
        let reply = match frame.decode::<ToChild>() {
            Ok(ToChild::Fork { setup }) => {
                let mut channels = frame.take_channels().into_iter();
                let (rx, tx) = match (channels.next(), channels.next()) {
                    (Some(Channel::Receiver(rx)), Some(Channel::Sender(tx))) => (rx, tx),
                    _ => serve::finish(crate::protocol::EXIT_BOOTSTRAP_FAILED),
                };
                match os::fork() {
                    Ok(os::Forked::Child) => {
                        become_worker(link, Link { tx, rx: rx.into() }, setup, owner.take())
                    }
                    Ok(os::Forked::Parent(pid)) => FromChild::Forked { pid },
                    Err(errno) => FromChild::ForkFailed { errno },
                }
                // `rx` and `tx` drop here: only the worker keeps them open.
            }
            Ok(ToChild::Reap { pid }) => match os::wait_child(pid) {
                Ok((status, maxrss_kib, cpu_micros)) => FromChild::Reaped {
                    pid,
                    status: Some(status),
                    maxrss_kib,
                    cpu_micros,
                },
                Err(_) => FromChild::Reaped {
                    pid,
                    status: None,
                    maxrss_kib: 0,
                    cpu_micros: 0,
                },
            },
            Ok(ToChild::Config(_))
            | Ok(ToChild::Task(_))
            | Ok(ToChild::Batch { .. })
            | Ok(ToChild::Packed { .. })
            | Ok(ToChild::Progress)
            | Err(_) => serve::finish(crate::protocol::EXIT_BOOTSTRAP_FAILED),
        };
        if link.send(&reply).is_err() {
            serve::finish(0);
        }
    }
}

/// In a freshly forked child: drop the server's link, set up, serve.
///
/// A worker that must die with its parent is tied to the owner (through `owner`, a
/// pidfd of the server's parent) rather than to this server, so that a server killed
/// from outside takes none of the running workers with it.
fn become_worker(
    server_link: Link,
    link: Link,
    mut setup: ChildSetup,
    owner: Option<OwnedFd>,
) -> ! {
    drop(server_link);
    setup.cloexec_above_stdio = false;
    let watch = owner.filter(|_| setup.die_with_parent);
    if watch.is_some() {
        setup.die_with_parent = false;
    }
    if let Err(e) = setup::apply(&setup) {
        let _ = link.send(&FromChild::SetupFailed(e));
        serve::finish(crate::protocol::EXIT_BOOTSTRAP_FAILED);
    }
    // The watch sees an owner that is already gone at once; without a thread, fall
    // back to dying with the server.
    if let Some(pidfd) = watch {
        if !os::die_with(pidfd) && os::hang_up_when_parent_dies().is_err() {
            serve::finish(crate::protocol::EXIT_BOOTSTRAP_FAILED);
        }
    }
    serve::serve(link)
}
