//! Every system call the worker side makes, behind safe functions.
//!
//! Functions marked "async-signal-safe" allocate nothing, take no lock and may run
//! between `fork` and `exec`.

use std::io;

/// The calling thread's errno after a failed call.
fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Puts the calling process in a new process group led by itself. Async-signal-safe.
pub(crate) fn new_process_group() -> Result<(), i32> {
    // SAFETY: setpgid takes plain integers; 0,0 means "this process, its own group".
    if unsafe { libc::setpgid(0, 0) } == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// Sets the nice value of the calling thread (and so of every thread it creates later).
/// Async-signal-safe.
pub(crate) fn set_nice(value: i32) -> Result<(), i32> {
    // SAFETY: setpriority takes plain integers; who = 0 is the calling thread on Linux.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, value) } == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// Asks the kernel to send SIGHUP when the thread that forked us exits (its default
/// action ends the process; a worker replaces it with [`kill_group_on_hangup`]).
/// Async-signal-safe.
pub(crate) fn hang_up_when_parent_dies() -> Result<(), i32> {
    // SAFETY: prctl(PR_SET_PDEATHSIG, signal) takes plain integers.
    if unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGHUP as libc::c_ulong,
            0,
            0,
            0,
        )
    } == 0
    {
        Ok(())
    } else {
        Err(errno())
    }
}

/// The parent's pid. Async-signal-safe.
pub(crate) fn parent_pid() -> i32 {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() }
}

/// Resets every catchable signal to its default action, ignores SIGINT (the parent
/// decides on Ctrl-C) and SIGPIPE (as every Rust program does, so a closed pipe is an
/// `EPIPE` error, not a death), and unblocks all signals. Async-signal-safe.
pub(crate) fn reset_signals() -> Result<(), i32> {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL is always sound; signals reserved by libc make this
        // fail with EINVAL, which we ignore on purpose.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    for sig in [libc::SIGINT, libc::SIGPIPE] {
        // SAFETY: as above, with SIG_IGN.
        if unsafe { libc::signal(sig, libc::SIG_IGN) } == libc::SIG_ERR {
            return Err(errno());
        }
    }
    // SAFETY: an empty set, initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
            return Err(errno());
        }
    }
    Ok(())
}

/// Marks every descriptor from 3 up close-on-exec. Async-signal-safe.
pub(crate) fn cloexec_above_stdio() -> Result<(), i32> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on descriptors.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// Ends the process at once: no destructors, no atexit handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is always sound to call.
    unsafe { libc::_exit(code) }
}

/// Result of [`fork`].
pub(crate) enum Forked {
    Child,
    Parent(i32),
}

/// Forks the calling process. Only call from a single-threaded process.
pub(crate) fn fork() -> Result<Forked, i32> {
    // SAFETY: callers are single-threaded servers, so the child inherits no lock held
    // by another thread and may go on running ordinary Rust code.
    match unsafe { libc::fork() } {
        -1 => Err(errno()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Waits for child `pid` to end; returns the raw wait status, its peak RSS in KiB and
/// its CPU time (user + system) in microseconds.
pub(crate) fn wait_child(pid: i32) -> Result<(i32, u64, u64), i32> {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 writes into both out-pointers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pointers are to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage.ru_maxrss.max(0) as u64, cpu_micros(&usage)));
        }
        let e = errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// The calling thread's id.
pub(crate) fn thread_id() -> i32 {
    // SAFETY: gettid cannot fail.
    unsafe { libc::gettid() }
}

fn cpu_micros(usage: &libc::rusage) -> u64 {
    let micros = |t: libc::timeval| (t.tv_sec.max(0) as u64) * 1_000_000 + t.tv_usec.max(0) as u64;
    micros(usage.ru_utime) + micros(usage.ru_stime)
}

extern "C" fn kill_own_group(_: libc::c_int) {
    // SAFETY: kill is async-signal-safe; 0 addresses our own process group (the worker
    // and every child it started), which is exactly what must end with the parent.
    unsafe { libc::kill(0, libc::SIGKILL) };
}

/// On SIGHUP (sent when the parent dies), kill this process's whole group, so commands
/// a task started die with the worker.
pub(crate) fn kill_group_on_hangup() {
    // SAFETY: installs a handler that only calls the async-signal-safe `kill`.
    unsafe {
        libc::signal(
            libc::SIGHUP,
            kill_own_group as *const () as libc::sighandler_t,
        )
    };
}

/// Keeps freed memory in this process instead of handing it back to the kernel at once:
/// a worker that handles a big message per task would otherwise have the kernel zero
/// and map fresh pages for every one (glibc trims and unmaps eagerly by default).
pub(crate) fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts glibc's allocator thresholds; it is called before
    // any task runs, on the worker's only thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
    }
}

/// What [`wait_readable`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Nothing arrived in time.
    TimedOut,
    /// Something can be read; `hung_up` if the peer has also closed its end.
    Readable { hung_up: bool },
}

/// Waits until `fd` has something to read (or its peer hung up), for at most `timeout`
/// (`None`: no limit). Interrupted waits resume with the time that is left.
pub(crate) fn wait_readable(
    fd: std::os::fd::RawFd,
    timeout: Option<std::time::Duration>,
) -> io::Result<Readiness> {
    let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
    loop {
        let millis: libc::c_int = match (timeout, deadline) {
            (None, _) | (Some(_), None) => -1,
            (Some(_), Some(deadline)) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                // Round up, so a wait of less than a millisecond is not a busy loop.
                let millis = left.as_nanos().div_ceil(1_000_000);
                libc::c_int::try_from(millis).unwrap_or(libc::c_int::MAX)
            }
        };
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one live pollfd, and we pass a count of 1.
        let r = unsafe { libc::poll(&mut pfd, 1, millis) };
        match r {
            0 => return Ok(Readiness::TimedOut),
            n if n > 0 => {
                if pfd.revents & libc::POLLNVAL != 0 {
                    return Err(io::Error::from_raw_os_error(libc::EBADF));
                }
                let hung_up = pfd.revents & (libc::POLLHUP | libc::POLLRDHUP) != 0;
                return Ok(Readiness::Readable { hung_up });
            }
            _ => {
                let e = errno();
                if e != libc::EINTR {
                    return Err(io::Error::from_raw_os_error(e));
                }
            }
        }
    }
}

/// Copies the start of the next packet waiting on the `SOCK_SEQPACKET` socket `fd` into
/// `buf`, without taking the packet off the socket; with `wait`, blocks until there is
/// one. Returns the packet's whole length (which may exceed `buf`), `Some(0)` at end of
/// stream (or for an empty packet), `None` if no packet is waiting (never with `wait`).
/// Descriptors attached to the packet stay with it: without a control buffer none are
/// installed in this process.
pub(crate) fn peek_packet(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
    wait: bool,
) -> io::Result<Option<usize>> {
    let flags = libc::MSG_PEEK | libc::MSG_TRUNC | if wait { 0 } else { libc::MSG_DONTWAIT };
    loop {
        // SAFETY: `buf` is live and writable for `buf.len()` bytes; MSG_PEEK leaves the
        // packet queued; MSG_TRUNC makes the result the packet's real length (Linux 3.4+
        // for SOCK_SEQPACKET) while writing at most `buf.len()` bytes.
        let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
        if r >= 0 {
            return Ok(Some(r as usize));
        }
        match errno() {
            libc::EINTR => continue,
            libc::EAGAIN => return Ok(None),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// Whether `fd` is an open `SOCK_SEQPACKET` socket (what ipc-channel's links are).
pub(crate) fn is_seqpacket_socket(fd: std::os::fd::RawFd) -> bool {
    // SAFETY: stat is plain data, fully written by a successful fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live out-pointer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return false;
    }
    let mut kind: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_TYPE writes one c_int into `kind`; `len` says how much room it has.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r == 0 && kind == libc::SOCK_SEQPACKET
}

/// Sends `bytes` as one packet on the socket `fd`, with the descriptor `attach` attached
/// (SCM_RIGHTS) if given; the bytes sent.
pub(crate) fn send_packet(
    fd: std::os::fd::RawFd,
    bytes: &[u8],
    attach: Option<std::os::fd::RawFd>,
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(attach) = attach {
        let size = std::mem::size_of::<std::os::fd::RawFd>() as u32;
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE/CMSG_LEN only compute sizes; one descriptor needs far
        // less than the 64 bytes of `control`, so CMSG_FIRSTHDR points into it and
        // CMSG_DATA has room for the descriptor.
        unsafe {
            msg.msg_controllen = libc::CMSG_SPACE(size) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size) as _;
            std::ptr::copy_nonoverlapping(&attach, libc::CMSG_DATA(cmsg).cast(), 1);
        }
    }
    // SAFETY: `msg` and everything it points to (iov, bytes, control) outlive the call.
    let r = unsafe { libc::sendmsg(fd, &msg, 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (a vDSO read, no system call).
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on
    // Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec.max(0) as u64) * 1_000_000_000 + ts.tv_nsec.max(0) as u64
}

/// `CLOCK_MONOTONIC_COARSE` now plus its resolution, in nanoseconds: a time no earlier
/// than now on `CLOCK_MONOTONIC`, late by at most one clock tick (about 4 ms), for a
/// fifth of the cost of [`monotonic_ns`].
pub(crate) fn monotonic_upper_ns() -> u64 {
    static RES: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let res = *RES.get_or_init(|| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        let ok = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } == 0;
        if ok {
            (ts.tv_sec.max(0) as u64) * 1_000_000_000 + ts.tv_nsec.max(0) as u64
        } else {
            u64::MAX
        }
    });
    if res == u64::MAX {
        return monotonic_ns();
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as above; the coarse clock exists wherever its resolution could be read.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ((ts.tv_sec.max(0) as u64) * 1_000_000_000 + ts.tv_nsec.max(0) as u64).saturating_add(res)
}

/// Makes this process the reaper of its orphaned descendants, so what a task started
/// and abandoned is still this worker's child (see [`end_children`]).
pub(crate) fn become_subreaper() {
    // SAFETY: prctl with plain integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Whether this process has any child, running or exited (one system call).
pub(crate) fn has_children() -> bool {
    // SAFETY: an all-zero siginfo_t is a valid out-buffer.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer; WNOWAIT leaves any exited child to be reaped.
    let r = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    r == 0
}

/// Reaps every exited child; true if no child is left at all.
fn reap_exited() -> bool {
    loop {
        let mut status = 0;
        // SAFETY: a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        match pid {
            0 => return false,
            -1 => return true,
            _ => continue,
        }
    }
}

/// `(pid, ppid, pgrp)` of every process, from `/proc/<pid>/stat`.
fn processes() -> Vec<(i32, i32, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let mut rest = stat.get(stat.rfind(')')? + 2..)?.split_whitespace();
            let _state = rest.next()?;
            let ppid = rest.next()?.parse().ok()?;
            let pgrp = rest.next()?.parse().ok()?;
            Some((pid, ppid, pgrp))
        })
        .collect()
}

/// Ends everything a task left behind: this worker's children (orphaned descendants
/// are its children too, see [`become_subreaper`]) and the other members of its
/// process group, with their own groups. SIGTERM, up to `grace` for them to end, then
/// SIGKILL; every child is reaped.
pub(crate) fn end_children(grace: std::time::Duration) {
    if reap_exited() {
        return;
    }
    let me = std::process::id() as i32;
    let signal_all = |sig: i32| {
        for (pid, ppid, pgrp) in processes() {
            if pid == me || (ppid != me && pgrp != me) {
                continue;
            }
            // SAFETY: kill with plain integers: a child of ours or a member of our
            // group (not yet reaped, so the pid is still theirs), and its own group.
            unsafe {
                libc::kill(pid, sig);
                if pgrp != me {
                    libc::kill(-pgrp, sig);
                }
            }
        }
    };
    signal_all(libc::SIGTERM);
    let until = std::time::Instant::now() + grace;
    let mut pause = std::time::Duration::from_millis(1);
    while std::time::Instant::now() < until {
        if reap_exited() {
            return;
        }
        std::thread::sleep(pause.min(until.saturating_duration_since(std::time::Instant::now())));
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    }
    signal_all(libc::SIGKILL);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while !reap_exited() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
