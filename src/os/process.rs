//! Processes: pidfds, signals, reaping, forking, exiting.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Opens a pidfd for `pid`: a handle that always names that very process, even after
/// its pid is reused, and becomes readable when it exits.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes plain integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends `signal` to the process behind `pidfd`. `Ok(false)` if it had already exited.
pub(crate) fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<bool> {
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    delivered(r == 0)
}

/// `Ok(true)` if a signal was delivered, `Ok(false)` if its target no longer exists.
fn delivered(ok: bool) -> io::Result<bool> {
    if ok {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Whether a process `pid` exists (a zombie counts): `kill(pid, 0)` is not `ESRCH`.
/// For a pid recorded by another program, which may be reused: a reused one reads as
/// alive, so what depends on its death is left alone.
pub(crate) fn process_exists(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks; plain integers.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH))
}

/// Sends `signal` to process `pid`. Only for a process known not to be reaped yet (a
/// fork server reaps its children only when asked).
pub(crate) fn kill_pid(pid: i32, signal: i32) {
    // SAFETY: kill with plain integers.
    unsafe { libc::kill(pid, signal) };
}

/// Sends `signal` to every process in group `pgid`. `Ok(false)` if the group is empty.
pub(crate) fn kill_group(pgid: i32, signal: i32) -> io::Result<bool> {
    debug_assert!(pgid > 1);
    // SAFETY: kill with a negative pid addresses a process group; plain integers.
    delivered(unsafe { libc::kill(-pgid, signal) } == 0)
}

/// What reaping a child tells: raw wait status, peak RSS (KiB), CPU time (µs).
pub(crate) type Reaped = (i32, u64, u64);

/// Reaps child `pid`, which must have exited already (its pidfd was readable). `None`
/// if it is not our child (someone else reaped it).
pub(crate) fn reap(pid: i32) -> Option<Reaped> {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: out-pointers to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            let micros =
                |t: libc::timeval| (t.tv_sec.max(0) as u64) * 1_000_000 + t.tv_usec.max(0) as u64;
            let cpu = micros(usage.ru_utime) + micros(usage.ru_stime);
            return Some((status, usage.ru_maxrss.max(0) as u64, cpu));
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None;
        }
    }
}

/// This process's id.
pub(crate) fn getpid() -> i32 {
    std::process::id() as i32
}

/// Number of threads in this process.
pub(crate) fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// Renames the calling thread (what `/proc/self/task/TID/comm` shows; the kernel keeps
/// the first 15 bytes).
pub(crate) fn set_thread_name(name: &std::ffi::CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string, which `name` is, and changes
    // only the calling thread's name.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

/// Result of [`fork`].
pub(crate) enum Forked {
    Child,
    Parent(i32),
}

/// Forks. The caller must be single-threaded (checked with [`thread_count`]).
pub(crate) fn fork() -> io::Result<Forked> {
    // SAFETY: only called while this process has a single thread, so the child holds
    // no lock another thread owned and may run ordinary code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Registers `f` to run when the process exits normally (return from `main`,
/// `std::process::exit`).
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: f is a plain function valid for the whole life of the program.
    unsafe { libc::atexit(f) };
}

/// Kills this process with SIGKILL at once (fault injection for tests).
pub(crate) fn kill_self() -> ! {
    // SAFETY: kill with our own pid and a signal number.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    std::process::abort()
}

/// Stops this process with SIGSTOP until a SIGCONT (fault injection for tests).
pub(crate) fn stop_self() {
    // SAFETY: kill with our own pid and a signal number.
    unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
}
