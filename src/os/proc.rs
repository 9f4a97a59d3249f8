//! What `/proc` tells about one process.

use std::time::Duration;

use supervisor_worker::ProcStat;

/// CPU time (user + system), resident memory and peak resident memory (KiB) of `pid`.
pub(crate) fn proc_usage(pid: i32) -> Option<(Duration, u64, u64)> {
    let stat = ProcStat::of(pid)?;
    let ticks = stat.utime + stat.stime;
    // SAFETY: sysconf takes a plain integer.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf takes a plain integer.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    Some((
        Duration::from_millis(ticks * 1000 / hz),
        pages * page / 1024,
        peak,
    ))
}

/// Start time of process `pid` (clock ticks after boot), or `None` if it is gone or
/// has exited. With the pid it names one process for good, even after pid reuse.
pub(crate) fn process_start_time(pid: i32) -> Option<u64> {
    ProcStat::of(pid)
        .filter(|stat| !stat.has_exited())
        .map(|stat| stat.start)
}
