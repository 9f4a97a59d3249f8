//! Descriptors: waiting on them, listing and closing them, their limit.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// An eventfd used to wake a thread blocked in [`poll_readable`].
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes plain integers and returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor the kernel just gave us.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd. A full counter
        // (EAGAIN) already means "awake", so the result is not needed.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub(crate) fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (nothing pending) is fine.
        unsafe { libc::read(self.0.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    }

    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.0
    }
}

/// Waits until at least one of `fds` is readable (or hung up); returns one flag per fd.
pub(crate) fn poll_readable<F: AsRawFd>(
    fds: &[&F],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // Rounded up: a wait for a moment less than a millisecond away is not a busy loop.
    let timeout_ms = timeout.map_or(-1, |d| {
        d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32
    });
    loop {
        // SAFETY: pfds is a live, correctly sized array of pollfd.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
        if r >= 0 {
            return Ok(pfds.iter().map(|p| p.revents != 0).collect());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// The descriptors this process has open now (not counting the one used to list them).
pub(crate) fn open_fds() -> Vec<i32> {
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    // SAFETY: F_GETFD only reads descriptor flags; it fails for a closed descriptor,
    // which drops the directory handle used for the listing above.
    fds.retain(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1);
    fds.sort_unstable();
    fds
}

/// Closes each descriptor in `fds` above stdio. For a freshly forked child that owns
/// copies of them.
pub(crate) fn close_above_stdio(fds: &[i32]) {
    for &fd in fds.iter().filter(|&&fd| fd > 2) {
        // SAFETY: the caller (a forked child) owns these copies and never uses them again.
        unsafe { libc::close(fd) };
    }
}

/// Whether `n` more descriptors can be had right now: `n` are made (eventfds) and
/// closed again. `EMFILE`/`ENFILE` if not. For a dependency that panics where it
/// cannot make one (ipc-channel's shared memory asserts its `memfd_create`): asked
/// just before, it fails cleanly, and only another thread's descriptor taken between
/// the two could still make the dependency panic.
pub(crate) fn descriptors_free(n: usize) -> std::io::Result<()> {
    let mut made = Vec::with_capacity(n);
    let mut result = Ok(());
    for _ in 0..n {
        // SAFETY: eventfd takes plain integers; the descriptor is owned at once.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            result = Err(std::io::Error::last_os_error());
            break;
        }
        // SAFETY: a fresh descriptor nobody else owns.
        made.push(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    }
    drop(made);
    result
}

/// This process's soft limit of open descriptors (`RLIMIT_NOFILE`); `None` if unknown.
pub(crate) fn descriptor_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    Some(lim.rlim_cur)
}

pub(crate) use supervisor_worker::descriptors_nearly_exhausted;

/// Ends the reading side of the socket `fd`: what is queued on it can still be read,
/// then every receive sees the end of the stream (a blocked one wakes), however many
/// processes hold its peer's end.
pub(crate) fn shut_down_reading(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: shutdown takes plain integers and changes only the socket's state; the
    // caller owns `fd` for the duration of the call.
    if unsafe { libc::shutdown(fd, libc::SHUT_RD) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
