//! Process groups whose leader may be gone: reaching only the members that were there.

use std::io;

use supervisor_worker::ProcStat;

use super::process::{pidfd_open, pidfd_send_signal};

/// Every process of group `pgid` that started no later than `started_by` (ticks since
/// boot), with what /proc says of it. For a group whose leader is gone, its id may
/// have been reused by a later process: this never lists that one.
fn group_members(pgid: i32, started_by: u64) -> io::Result<impl Iterator<Item = (i32, ProcStat)>> {
    let members = std::fs::read_dir("/proc")?
        .flatten()
        .filter_map(move |entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            let stat = ProcStat::of(pid)?;
            (stat.pgrp == pgid && stat.start <= started_by).then_some((pid, stat))
        });
    Ok(members)
}

/// Sends `signal` to the members of process group `pgid` that started no later than
/// `started_by` (ticks since boot). For a group whose leader is gone: its id may have
/// been reused by a later process, which this never reaches. Each member is pinned by a
/// pidfd and checked again before the signal. `Ok(true)` if any member was signalled;
/// a member that cannot be signalled does not spare the others (the first such error
/// is returned if nobody was signalled).
pub(crate) fn signal_group_members(pgid: i32, signal: i32, started_by: u64) -> io::Result<bool> {
    if group_is_empty(pgid) {
        // Nobody to reach: no need to read every process's stat (a pool of 256
        // stopping did that for every worker's group, after its leader was reaped).
        return Ok(false);
    }
    let mut any = false;
    let mut first_error = None;
    for (pid, stat) in group_members(pgid, started_by)? {
        let Ok(pidfd) = pidfd_open(pid) else { continue };
        // The pidfd pins this very process: check it is still the member we saw.
        if ProcStat::of(pid).is_some_and(|now| (now.pgrp, now.start) == (stat.pgrp, stat.start)) {
            match pidfd_send_signal(&pidfd, signal) {
                Ok(delivered) => any |= delivered,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    match first_error {
        Some(e) if !any => Err(e),
        _ => Ok(any),
    }
}

/// Whether process group `pgid` has a member still running (one that has not exited) that
/// started
/// no later than `started_by`. When /proc cannot be read, it answers yes.
pub(crate) fn group_has_running_members(pgid: i32, started_by: u64) -> bool {
    if group_is_empty(pgid) {
        return false;
    }
    match group_members(pgid, started_by) {
        Ok(mut members) => members.any(|(_, stat)| !stat.has_exited()),
        Err(_) => true,
    }
}

/// Whether no process at all (not even a zombie) is in group `pgid` now: one system
/// call, where listing the members reads the stat of every process.
fn group_is_empty(pgid: i32) -> bool {
    debug_assert!(pgid > 1);
    // SAFETY: kill with signal 0 only checks that the group exists; plain integers.
    let r = unsafe { libc::kill(-pgid, 0) };
    r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}
