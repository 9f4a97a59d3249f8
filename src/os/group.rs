//! Process groups whose leader may be gone: reaching only the members that were there.

use std::io;

use super::process::{pidfd_open, pidfd_send_signal};

/// What /proc/PID/stat tells about a process: its group, its start time in ticks since
/// boot, and whether it is a zombie (exited, waiting to be reaped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcStat {
    group: i32,
    start: u64,
    zombie: bool,
}

fn proc_stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses a /proc/PID/stat line. A process whose main thread has exited shows as a
/// zombie too while its other threads run: only one with a single thread left is one.
fn parse_stat(stat: &str) -> Option<ProcStat> {
    // The command name (field 2) is in parentheses and may hold anything.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let threads: u32 = fields.get(17)?.parse().ok()?;
    Some(ProcStat {
        group: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
        zombie: *fields.first()? == "Z" && threads <= 1,
    })
}

/// Every process of group `pgid` that started no later than `started_by` (ticks since
/// boot), with what /proc says of it. For a group whose leader is gone, its id may
/// have been reused by a later process: this never lists that one.
fn group_members(pgid: i32, started_by: u64) -> io::Result<impl Iterator<Item = (i32, ProcStat)>> {
    let members = std::fs::read_dir("/proc")?
        .flatten()
        .filter_map(move |entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            let stat = proc_stat(pid)?;
            (stat.group == pgid && stat.start <= started_by).then_some((pid, stat))
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
    let mut any = false;
    let mut first_error = None;
    for (pid, stat) in group_members(pgid, started_by)? {
        let Ok(pidfd) = pidfd_open(pid) else { continue };
        // The pidfd pins this very process: check it is still the member we saw.
        if proc_stat(pid).is_some_and(|now| (now.group, now.start) == (stat.group, stat.start)) {
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

/// Whether process group `pgid` has a member still running (not a zombie) that started
/// no later than `started_by`. When /proc cannot be read, it answers yes.
pub(crate) fn group_has_running_members(pgid: i32, started_by: u64) -> bool {
    debug_assert!(pgid > 1);
    // SAFETY: kill with signal 0 only checks that the group exists; plain integers.
    if unsafe { libc::kill(-pgid, 0) } != 0
        && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    {
        return false;
    }
    match group_members(pgid, started_by) {
        Ok(mut members) => members.any(|(_, stat)| !stat.zombie),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A /proc/PID/stat line: `state`, group 4242, `threads` threads, start tick 777.
    fn stat_line(name: &str, state: &str, threads: u32) -> String {
        format!(
            "4242 ({name}) {state} 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 \
             {threads} 0 777 1000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0"
        )
    }

    #[test]
    fn a_zombie_is_a_process_with_no_thread_left_running() {
        let parsed = parse_stat(&stat_line("sleep", "S", 1)).unwrap();
        assert_eq!(
            parsed,
            ProcStat {
                group: 4242,
                start: 777,
                zombie: false
            }
        );
        assert!(parse_stat(&stat_line("sleep", "Z", 1)).unwrap().zombie);
        // Its main thread exited, another runs on: still alive.
        assert!(!parse_stat(&stat_line("worker", "Z", 2)).unwrap().zombie);
        // Anything in the command name, parentheses and spaces included.
        let odd = parse_stat(&stat_line("a) Z 9 (b", "R", 1)).unwrap();
        assert_eq!((odd.group, odd.zombie), (4242, false));
        assert_eq!(parse_stat("4242 (cut short) S 1"), None);
    }
}
