//! The pool's owner, watched by a worker that a fork server made: such a worker's
//! parent is the server, so the parent-death signal would tie it to the server's life
//! rather than the owner's. It watches the owner's pidfd instead, and outlives a server
//! that dies under it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::setup::errno;

/// A pidfd of this process's parent, opened while that parent is still the parent (so
/// the descriptor cannot name a recycled pid); `None` if it is already gone or no
/// descriptor is left. Pidfds are close-on-exec.
pub(crate) fn parent_pidfd() -> Option<OwnedFd> {
    let parent = super::parent_pid();
    // SAFETY: pidfd_open with plain integers; the result is a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, parent, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a descriptor pidfd_open just returned, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // Reparented between getppid and pidfd_open: the parent died, the pid may be reused.
    (super::parent_pid() == parent).then_some(fd)
}

/// Starts a thread that ends this process's descendants and its whole group (the
/// worker and every command its tasks started) when the process behind `pidfd` exits. False if no thread could
/// be started.
pub(crate) fn die_with(pidfd: OwnedFd) -> bool {
    std::thread::Builder::new()
        .name("owner-watch".into())
        .stack_size(64 << 10)
        .spawn(move || {
            let mut entry = libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            loop {
                // SAFETY: one live pollfd; -1 waits until it is readable.
                let r = unsafe { libc::poll(&mut entry, 1, -1) };
                if r > 0 || errno() != libc::EINTR {
                    break;
                }
            }
            // Every descendant first (some may have left the group with setsid), then
            // the group, us included.
            super::children::kill_descendants(std::time::Duration::from_secs(1));
            // SAFETY: kill with plain integers; 0 is our own process group.
            unsafe { libc::kill(0, libc::SIGKILL) };
        })
        .is_ok()
}
