//! What a new child does to itself before it runs anything else. Every function here
//! is async-signal-safe.

use std::io;

/// The calling thread's errno after a failed call.
pub(super) fn errno() -> i32 {
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
