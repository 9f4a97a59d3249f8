//! A single-threaded server that forks workers on request: the zygote behind the
//! `fork` start method and the re-executed forkserver behind `forkserver`.
//!
//! The server never reaps on its own. It reaps a worker only when the parent asks
//! (after the parent saw the worker exit through a pidfd), so a worker's pid cannot be
//! reused while the parent may still signal it.
//!
//! The server is the subreaper of its workers' descendants: what a worker leaves when
//! it dies without ending its task's children (`exit`, `abort`, a SIGKILL), also in
//! sessions or groups of their own, becomes the server's child rather than init's.
//! When the parent asks it to reap such a worker (one that did not exit with 0: a
//! worker's own exits and a task's `exit` end its tree first), the server SIGKILLs and
//! reaps all it adopted before it answers, so the parent's `join` finds them gone. A worker whose
//! tasks may leave a daemon (`end_orphans: false`) makes the server spare every
//! orphan from then on (it cannot tell whose an orphan was); it still reaps them.

use std::collections::HashSet;

use std::os::fd::OwnedFd;

use crate::protocol::{Channel, FromChild, Link, ToChild};
use crate::setup::{self, ChildSetup};
use crate::{os, serve};

/// Serves fork and reap requests until the parent closes the link, then exits.
pub fn run(link: Link) -> ! {
    // The parent is the pool's owner; the workers watch it, not this server.
    let mut owner = os::parent_pidfd();
    os::become_subreaper();
    // The live workers this server forked, and whether any may leave a daemon.
    let mut workers: HashSet<i32> = HashSet::new();
    let mut spare_orphans = false;
    loop {
        let mut frame = match link.recv_frame() {
            Ok(frame) => frame,
            Err(_) => serve::finish(0),
        };
        let reply = match frame.decode::<ToChild>() {
            Ok(ToChild::Fork { setup, end_orphans }) => {
                let mut channels = frame.take_channels().into_iter();
                let (rx, tx) = match (channels.next(), channels.next()) {
                    (Some(Channel::Receiver(rx)), Some(Channel::Sender(tx))) => (rx, tx),
                    _ => serve::finish(crate::protocol::EXIT_BOOTSTRAP_FAILED),
                };
                match os::fork() {
                    Ok(os::Forked::Child) => {
                        become_worker(link, Link { tx, rx: rx.into() }, setup, owner.take())
                    }
                    Ok(os::Forked::Parent(pid)) => {
                        workers.insert(pid);
                        spare_orphans |= !end_orphans;
                        FromChild::Forked { pid }
                    }
                    Err(errno) => FromChild::ForkFailed { errno },
                }
                // `rx` and `tx` drop here: only the worker keeps them open.
            }
            Ok(ToChild::Reap { pid }) => match reap(pid, &mut workers, spare_orphans) {
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

/// Reaps worker `pid`, then ends (or, when sparing them, reaps the exited of) what the
/// dead workers left to this server.
fn reap(pid: i32, workers: &mut HashSet<i32>, spare_orphans: bool) -> Result<(i32, u64, u64), i32> {
    let reaped = os::wait_child(pid);
    workers.remove(&pid);
    // A worker that exited with 0 left nothing: it ended its task's children before
    // its own exit (and at a task's `exit`, see `os::end_children_at_exit`). Only
    // another end (a signal, a code) is worth the look at every process.
    let clean = matches!(reaped, Ok((status, _, _)) if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    if !spare_orphans && !clean {
        os::end_adopted(workers, ADOPTED_GONE_WITHIN);
    }
    // Adopted orphans that have exited (a spared daemon that ended): one system call
    // when there are none.
    os::reap_exited_except(workers);
    reaped
}

/// How long the server waits, at a reap, for what it adopted to be gone after its
/// SIGKILL (well within the parent's wait for an answer, 2 s). A process in
/// uninterruptible sleep can outlast it; it is SIGKILLed and reaped at a later reap.
const ADOPTED_GONE_WITHIN: std::time::Duration = std::time::Duration::from_millis(500);

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
    // The fault that plays a lost parent-death signal loses the owner's watch too.
    let lost = crate::fault::selected() == Some(crate::fault::Fault::BlockHangUp);
    let watch = owner.filter(|_| setup.die_with_parent && !lost);
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
