//! Every system call the CLI makes, behind safe functions.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Ends the process at once with `code`: no destructors, no flushing (the main thread
/// may hold the stdout lock, blocked on a reader that does not read).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is always sound to call.
    unsafe { libc::_exit(code) }
}

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

/// Between fork and exec: new session, and each `(fd, target)` placed at `target`
/// (inherited). Async-signal-safe.
pub fn detach_child(fds: &[(RawFd, RawFd); 2]) -> io::Result<()> {
    // SAFETY: setsid, fcntl and dup2 take plain integers; all are async-signal-safe.
    unsafe {
        if libc::setsid() < 0 {
            return Err(io::Error::last_os_error());
        }
        // Out of the way first (close-on-exec copies above every target), so that
        // placing one cannot overwrite another before it is placed.
        let mut high = [0; 2];
        for (copy, (fd, _)) in high.iter_mut().zip(fds) {
            *copy = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 16);
            if *copy < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        for (copy, (_, target)) in high.iter().zip(fds) {
            if libc::dup2(*copy, *target) < 0 {
                return Err(io::Error::last_os_error());
            }
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

/// How [`flock`] locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flock {
    /// Exclusive, without waiting.
    Exclusive,
    /// Shared, without waiting: to test whether an exclusive holder exists.
    SharedTest,
    /// Exclusive, waiting for it.
    Wait,
    /// Let go.
    Unlock,
}

/// Locks the open file behind `fd` (`flock`, held until its last descriptor closes
/// or [`Flock::Unlock`]); false if another holder has it (never for a waiting lock).
pub fn flock(fd: std::os::fd::BorrowedFd<'_>, how: Flock) -> io::Result<bool> {
    let op = match how {
        Flock::Exclusive => libc::LOCK_EX | libc::LOCK_NB,
        Flock::SharedTest => libc::LOCK_SH | libc::LOCK_NB,
        Flock::Wait => libc::LOCK_EX,
        Flock::Unlock => libc::LOCK_UN,
    };
    loop {
        // SAFETY: flock on a live descriptor with plain flags.
        if unsafe { libc::flock(fd.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
}

/// Marks `fd` close-on-exec (an inherited descriptor is not passed on to workers).
pub fn set_cloexec(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_SETFD on a live descriptor.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// This process's effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Which of the standard descriptors 0, 1 and 2 were closed when the program started,
/// as bits; set by [`note_closed_std_fds`] before the Rust runtime opens `/dev/null`
/// in place of a closed one (after that, a closed descriptor looks like a read-write
/// `/dev/null`, which is also what Python's `subprocess.DEVNULL` gives).
static CLOSED_AT_START: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Runs before `main` and before the Rust runtime's own start-up (the dynamic loader
/// calls `.init_array` entries first), so it sees the descriptors as they were given.
extern "C" fn note_closed_std_fds() {
    let mut closed = 0u8;
    for fd in 0..3 {
        // SAFETY: fcntl(F_GETFD) only reads the descriptor table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            closed |= 1 << fd;
        }
    }
    CLOSED_AT_START.store(closed, std::sync::atomic::Ordering::Relaxed);
}

// SAFETY: a plain function with no arguments it reads, placed where the loader runs
// start-up functions; it calls only fcntl and stores an atomic.
#[used]
#[link_section = ".init_array"]
static NOTE_CLOSED_STD_FDS: extern "C" fn() = note_closed_std_fds;

/// Whether descriptor `fd` (0, 1 or 2) was closed when the program started (`>&-`).
pub fn was_closed_at_start(fd: RawFd) -> bool {
    (0..3).contains(&fd)
        && CLOSED_AT_START.load(std::sync::atomic::Ordering::Relaxed) & (1 << fd) != 0
}

/// Descriptors this process may still open: its `RLIMIT_NOFILE` soft limit less those
/// open now (`usize::MAX` if there is no limit or it cannot be read).
pub fn descriptors_left() -> usize {
    // SAFETY: rlimit is plain data that getrlimit fills in.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a live out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur == libc::RLIM_INFINITY
    {
        return usize::MAX;
    }
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    usize::try_from(lim.rlim_cur)
        .unwrap_or(usize::MAX)
        .saturating_sub(open)
}

/// This process's address-space limit (`RLIMIT_AS`, `ulimit -v`) in bytes; `None` if
/// there is none or it cannot be read.
pub fn address_space_limit() -> Option<u64> {
    // SAFETY: rlimit is plain data that getrlimit fills in.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a live out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) } != 0
        || lim.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(lim.rlim_cur)
}
