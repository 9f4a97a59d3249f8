//! Every system call the CLI makes, behind safe functions.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

/// A pipe whose ends are close-on-exec: (read, write).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the live array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two descriptors the kernel just gave us.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Between fork and exec: new session, and `fd` placed at `target` (inherited).
/// Async-signal-safe.
pub fn detach_child(fd: RawFd, target: RawFd) -> io::Result<()> {
    // SAFETY: setsid and dup2 take plain integers; both are async-signal-safe.
    unsafe {
        if libc::setsid() < 0 || libc::dup2(fd, target) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Takes ownership of an inherited descriptor number.
pub fn inherited(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_GETFD only reads flags; it tells whether `fd` is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return None;
    }
    // SAFETY: the parent gave this process `fd` for it alone.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A fresh directory only this user can enter.
pub fn private_dir(prefix: &str) -> io::Result<PathBuf> {
    let template = std::env::temp_dir().join(format!("{prefix}XXXXXX"));
    let mut bytes = template.into_os_string().into_encoded_bytes();
    bytes.push(0);
    // SAFETY: mkdtemp edits the NUL-terminated template in place; mode 0700.
    let p = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
    if p.is_null() {
        return Err(io::Error::last_os_error());
    }
    bytes.pop();
    // SAFETY: mkdtemp only replaced the XXXXXX with ASCII characters.
    Ok(PathBuf::from(unsafe {
        std::ffi::OsString::from_encoded_bytes_unchecked(bytes)
    }))
}

/// Whether process `pid` exists (and has not exited, as far as we can see).
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists && !supervisor_worker::ProcStat::of(pid).is_some_and(|stat| stat.has_exited())
}

/// Waits up to `timeout` for process `pid` to exit (pidfd, no polling).
pub fn wait_exit(pid: i32, timeout: Duration) -> bool {
    // SAFETY: pidfd_open with plain integers; a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return true;
    }
    // SAFETY: a descriptor the kernel just gave us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live pollfd.
    unsafe {
        libc::poll(
            &mut pfd,
            1,
            timeout.as_millis().min(i32::MAX as u128) as i32,
        ) > 0
    }
}

/// Waits up to `timeout` until reading `fd` would return at once (data, end of file or
/// an error waiting); whether it would.
pub fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one live pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
    // An interrupted wait (a signal came: perhaps a stop) is "not yet".
    ready > 0 && pfd.revents != 0
}

/// Peak resident memory (KiB) of `pid`, if it is still there.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
