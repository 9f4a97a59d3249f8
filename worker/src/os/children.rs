//! What a task leaves behind: this worker's children and the rest of its group.

use super::stat::ProcStat;

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
        .filter_map(|pid| ProcStat::of(pid).map(|stat| (pid, stat.ppid, stat.pgrp)))
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
