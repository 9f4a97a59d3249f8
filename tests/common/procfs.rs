//! What /proc says about processes: children, zombies, stat fields, exits, memory.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use supervisor_worker::ProcStat;

/// Waits (polling /proc every millisecond, up to `within`) until `pid` is stopped by a
/// signal; false if it exited or the time ran out first.
pub fn wait_stopped(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        match stat_fields(pid as i32) {
            Some(s) if s.state == 'T' => return true,
            Some(s) if s.state != 'Z' && s.state != 'X' && Instant::now() < deadline => {}
            _ => return false,
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Pids whose parent is `ppid`.
pub fn children_of(ppid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Some(stat) = stat_fields(pid) {
            if stat.ppid == ppid {
                out.push(pid);
            }
        }
    }
    out.sort_unstable();
    out
}

/// Children of `ppid` that have exited and wait to be reaped.
pub fn zombies_of(ppid: i32) -> Vec<i32> {
    children_of(ppid)
        .into_iter()
        .filter(|&pid| stat_fields(pid).is_some_and(|s| s.has_exited()))
        .collect()
}

/// What /proc/PID/stat says (the crate's own parser).
pub fn stat_fields(pid: i32) -> Option<ProcStat> {
    ProcStat::of(pid)
}

/// A stat file by path (`/proc/PID/task/TID/stat` for one thread).
pub fn stat_fields_of(path: &str) -> Option<ProcStat> {
    ProcStat::parse(&std::fs::read_to_string(path).ok()?)
}

/// True once `pid` has exited (gone, or waiting to be reaped).
pub fn has_exited(pid: i32) -> bool {
    supervisor_worker::is_gone(pid)
}

/// Waits (on a pidfd, no polling) until `pid` exits; false on timeout.
pub fn wait_exit(pid: i32, timeout: Duration) -> bool {
    // SAFETY: pidfd_open with plain integers; the result is a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return true; // no such process
    }
    // SAFETY: a descriptor the kernel just returned to us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut pfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one live pollfd.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    r > 0
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`); `pid` may be `self`. 0 if
/// it cannot be read.
pub fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The pid a task wrote to `path` (a child it started), once it is there (at most 20 s).
pub fn pid_written_to(path: &std::path::Path) -> i32 {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < until,
            "the task never wrote its child's pid"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
