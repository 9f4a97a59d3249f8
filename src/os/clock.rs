//! Clocks shared by every process of the machine.

/// Clock ticks since boot (the unit of a process's start time in /proc/PID/stat).
pub(crate) fn boot_ticks() -> u64 {
    // SAFETY: timespec is plain data filled in by clock_gettime.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a live out-pointer; CLOCK_BOOTTIME always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    // SAFETY: sysconf takes a plain integer.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ts.tv_sec.max(0) as u64 * hz + ts.tv_nsec.max(0) as u64 * hz / 1_000_000_000
}

/// Nanoseconds of `CLOCK_MONOTONIC`, the same clock in every process of the machine.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a live out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
