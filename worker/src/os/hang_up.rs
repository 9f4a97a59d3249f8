//! The fallback for a worker whose parent-death signal did not act (a fork raced the
//! `prctl`, the signal was blocked or lost): a thread that waits for the worker's
//! channel to its parent to hang up and, if that happens while a task runs, ends the
//! worker's tree as the parent-death signal would have.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::children::kill_descendants;

/// A task (or batch) is running: set by the serve loop around each one.
pub(crate) static BUSY: AtomicBool = AtomicBool::new(false);

/// Set once the worker was asked to stop (SIGTERM): its handler ends the task's
/// children within their grace, and the fallback leaves it to do so.
pub(crate) static STOPPING: AtomicBool = AtomicBool::new(false);

/// Starts the watch on `fd` (the receiving end of the worker's link); false if no
/// thread could be started. It acts only once `parent` is no longer this process's
/// parent (it died: the worker was reparented): a parent that lives and closed the
/// link (a timeout, a shutdown) signals the worker itself, with the grace it chose.
pub(crate) fn end_when_link_hangs_up(fd: RawFd, parent: i32) -> bool {
    std::thread::Builder::new()
        .name("link-watch".into())
        .stack_size(64 << 10)
        .spawn(move || {
            wait_hang_up(fd);
            // Idle, the serve loop reads the end of the stream and exits on its own;
            // it may still take a task sent before the hang-up, so look until then
            // (and until the dead parent's children are handed on).
            loop {
                if BUSY.load(Ordering::Acquire)
                    && !STOPPING.load(Ordering::Acquire)
                    && super::parent_pid() != parent
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            kill_descendants(Duration::from_secs(1));
            // SAFETY: kill with plain integers; 0 is our own group, us included.
            unsafe { libc::kill(0, libc::SIGKILL) };
        })
        .is_ok()
}

/// Blocks until the peer of socket `fd` has closed it (or `fd` is unusable).
fn wait_hang_up(fd: RawFd) {
    let mut entry = libc::pollfd {
        fd,
        // Only a hang-up wakes it (POLLHUP and POLLERR are always reported); a waiting
        // packet does not.
        events: libc::POLLRDHUP,
        revents: 0,
    };
    loop {
        // SAFETY: one live pollfd; -1 waits until an event.
        let r = unsafe { libc::poll(&mut entry, 1, -1) };
        if r > 0 || super::setup::errno() != libc::EINTR {
            return;
        }
    }
}

/// Blocks SIGHUP in the calling thread (and the threads it starts): the fault
/// [`crate::fault::Fault::BlockHangUp`].
pub(crate) fn block_hang_up() {
    // SAFETY: a sigset_t filled by sigemptyset/sigaddset; pthread_sigmask with valid
    // pointers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
