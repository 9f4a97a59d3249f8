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

/// The processes a task left behind, `(pid, pgrp)`: this worker's descendants (its
/// children, theirs, and so on: orphans are re-parented to the worker, see
/// [`become_subreaper`], so every live one is in the tree) and the other members of
/// its process group, with their descendants.
fn left_behind() -> Vec<(i32, i32)> {
    let me = std::process::id() as i32;
    let all = processes();
    let ours: std::collections::HashSet<i32> = all
        .iter()
        .filter(|&&(pid, ppid, pgrp)| pid != me && (ppid == me || pgrp == me))
        .map(|&(pid, _, _)| pid)
        .collect();
    // Their descendants: a few passes reach any depth a task builds in practice; what a
    // pass misses is reached by the next scan, once its parent has died.
    with_descendants(all, ours, me)
}

/// The processes of `ours` and every process of `all` that descends from one of them
/// (never `me`), with their process groups.
fn with_descendants(
    all: Vec<(i32, i32, i32)>,
    mut ours: std::collections::HashSet<i32>,
    me: i32,
) -> Vec<(i32, i32)> {
    loop {
        let before = ours.len();
        for &(pid, ppid, _) in &all {
            if pid != me && ours.contains(&ppid) {
                ours.insert(pid);
            }
        }
        if ours.len() == before {
            break;
        }
    }
    all.into_iter()
        .filter(|(pid, _, _)| ours.contains(pid))
        .map(|(pid, _, pgrp)| (pid, pgrp))
        .collect()
}

/// Sends `sig` to each of `procs`, and to each process group led by one of them (a
/// group of the task's own making; never another's group a process joined).
fn signal_each(procs: &[(i32, i32)], sig: i32) {
    let me = std::process::id() as i32;
    for &(pid, pgrp) in procs {
        // SAFETY: kill with plain integers: a descendant of ours or a member of our
        // group, seen in /proc a moment ago (a child is not reaped, so its pid is still
        // its own; a deeper one could in theory have been reaped by its parent and the
        // pid reused in that instant, which is the same risk a group kill takes).
        unsafe {
            libc::kill(pid, sig);
            if pgrp != me && procs.iter().any(|&(leader, _)| leader == pgrp) {
                libc::kill(-pgrp, sig);
            }
        }
    }
}

/// Ends everything a task left behind ([`left_behind`]): SIGTERM, up to `grace` for
/// them to end, then SIGKILL; every child is reaped. Processes that only become ours
/// on the way (an orphan whose parent the signal ended, which may have escaped our
/// group with `setsid`) get the same: SIGTERM while the grace lasts, SIGKILL after.
pub(crate) fn end_children(grace: std::time::Duration) {
    use std::time::{Duration, Instant};
    if reap_exited() {
        return;
    }
    let mut termed = std::collections::HashSet::new();
    let term_new = |termed: &mut std::collections::HashSet<i32>| {
        let fresh: Vec<(i32, i32)> = left_behind()
            .into_iter()
            .filter(|(pid, _)| termed.insert(*pid))
            .collect();
        signal_each(&fresh, libc::SIGTERM);
    };
    term_new(&mut termed);
    let until = Instant::now() + grace;
    let mut pause = Duration::from_millis(1);
    while Instant::now() < until {
        if reap_exited() {
            return;
        }
        std::thread::sleep(pause.min(until.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(50));
        term_new(&mut termed);
    }
    kill_descendants(Duration::from_secs(1));
}

/// SIGKILLs everything [`left_behind`] and reaps it, scanning again as orphans come to
/// us, until nothing is left or `within` has passed.
pub(crate) fn kill_descendants(within: std::time::Duration) {
    let until = std::time::Instant::now() + within;
    loop {
        signal_each(&left_behind(), libc::SIGKILL);
        if reap_exited() || std::time::Instant::now() >= until {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The processes a fork server adopted as their subreaper (`(pid, pgrp)`): its
/// children that are not among `workers` (the live workers it forked), with their
/// descendants. A worker that died left them; nothing else of theirs is in the list.
fn adopted(workers: &std::collections::HashSet<i32>) -> Vec<(i32, i32)> {
    let me = std::process::id() as i32;
    let all = processes();
    let adopted: std::collections::HashSet<i32> = all
        .iter()
        .filter(|&&(pid, ppid, _)| ppid == me && !workers.contains(&pid))
        .map(|&(pid, _, _)| pid)
        .collect();
    with_descendants(all, adopted, me)
}

/// Reaps each of `procs` that is an exited child of ours; never a pid not listed (a
/// worker is reaped only when the parent asks).
fn reap_listed(procs: &[(i32, i32)]) {
    for &(pid, _) in procs {
        let mut status = 0;
        // SAFETY: a valid out-pointer; WNOHANG never blocks; a pid that is not our
        // child answers ECHILD.
        unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    }
}

/// In a fork server: SIGKILLs what it adopted from dead workers ([`adopted`]) and reaps
/// it, scanning again as each one's children come to us in turn, until nothing is
/// left or `within` has passed.
pub(crate) fn end_adopted(workers: &std::collections::HashSet<i32>, within: std::time::Duration) {
    let until = std::time::Instant::now() + within;
    loop {
        let found = adopted(workers);
        if found.is_empty() {
            return;
        }
        signal_each(&found, libc::SIGKILL);
        reap_listed(&found);
        if std::time::Instant::now() >= until {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// In a fork server: reaps its exited children that are not among `workers` (orphans
/// it adopted), so none stays a zombie; stops at the first exited worker (which is
/// reaped only when the parent asks), leaving the rest to a later call.
pub(crate) fn reap_exited_except(workers: &std::collections::HashSet<i32>) {
    loop {
        // SAFETY: an all-zero siginfo_t is a valid out-buffer.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: a valid out-pointer; WNOWAIT leaves the child to be reaped.
        let r = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: waitid filled it in (si_pid is 0 when no child has exited).
        let pid = unsafe { info.si_pid() };
        if r != 0 || pid == 0 || workers.contains(&pid) {
            return;
        }
        reap_listed(&[(pid, 0)]);
    }
}

/// The pid of the worker that ends its children at `exit`; 0 until then.
static AT_EXIT_WORKER: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// From now on, an `exit` (not `_exit`) of this worker, as a task's
/// `std::process::exit` makes, first SIGKILLs and reaps its descendants (a subreaper's:
/// all of them, also in sessions of their own), which would otherwise outlive it. The
/// worker's own exits use `_exit` and have ended them already.
pub(crate) fn end_children_at_exit() {
    AT_EXIT_WORKER.store(
        std::process::id() as i32,
        std::sync::atomic::Ordering::Relaxed,
    );
    // SAFETY: registers a plain function with no preconditions.
    unsafe { libc::atexit(end_children_now) };
}

extern "C" fn end_children_now() {
    // In a process forked from the worker that exits: not its tree to end.
    if std::process::id() as i32 != AT_EXIT_WORKER.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    if has_children() {
        kill_descendants(std::time::Duration::from_secs(1));
    }
}
