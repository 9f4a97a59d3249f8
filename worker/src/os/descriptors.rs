//! How close this process is to its descriptor limit.

/// Whether this process is within 32 descriptors of its limit (`RLIMIT_NOFILE`).
pub fn descriptors_nearly_exhausted() -> bool {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return false;
    }
    match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir.count() as u64 + 32 >= lim.rlim_cur,
        Err(e) => matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)),
    }
}
