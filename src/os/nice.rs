//! Scheduling priority: the nice value and whether it may be lowered.

/// The nice value of the calling thread.
pub(crate) fn current_nice() -> i32 {
    // SAFETY: clearing errno before getpriority is how its -1 result is disambiguated.
    unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    }
}

/// Whether this process may lower its nice value to `target`: CAP_SYS_NICE, or
/// RLIMIT_NICE allows it (the limit is `20 - nice`).
pub(crate) fn may_lower_nice_to(target: i32) -> bool {
    if has_capability(23) {
        return true;
    }
    // SAFETY: rlimit is plain data filled in by getrlimit.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a live out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NICE, &mut lim) } != 0 {
        return false;
    }
    let floor = 20 - lim.rlim_cur.min(40) as i32;
    target >= floor
}

/// Whether capability number `cap` is in this process's effective set.
fn has_capability(cap: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1u64 << cap) != 0)
}
