//! A process and all its descendants (children, their children, orphans it adopted as
//! a subreaper): their resident memory, and pinning them to be killed.
//!
//! The kernel here has no `/proc/<pid>/task/<tid>/children`, so the tree is found from
//! one look at every `/proc/<pid>/stat` (parent pids), parsed by the one parser,
//! [`ProcStat`].

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use supervisor_worker::ProcStat;

use super::process::{pidfd_open, pidfd_send_signal};

/// Every process of the system, with what /proc says of it.
fn all_processes() -> Vec<(i32, ProcStat)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            Some((pid, ProcStat::of(pid)?))
        })
        .collect()
}

/// The positions in `table` of `root`'s descendants (not `root` itself), nearest first.
fn descendants(
    table: &[(i32, ProcStat)],
    children: &HashMap<i32, Vec<usize>>,
    root: i32,
) -> Vec<usize> {
    let mut found = Vec::new();
    let mut next = vec![root];
    while let Some(pid) = next.pop() {
        for &i in children.get(&pid).map_or(&[][..], |c| &c[..]) {
            // A parent pid never names a later process (a pid cannot be its own
            // ancestor), but guard against a garbled table all the same.
            if table[i].0 != root && !found.contains(&i) {
                found.push(i);
                next.push(table[i].0);
            }
        }
    }
    found
}

fn children_of(table: &[(i32, ProcStat)]) -> HashMap<i32, Vec<usize>> {
    let mut children: HashMap<i32, Vec<usize>> = HashMap::new();
    for (i, (_, stat)) in table.iter().enumerate() {
        children.entry(stat.ppid).or_default().push(i);
    }
    children
}

/// Resident memory of each tree in `table`: `root` plus every descendant, KiB; `None`
/// for a root that is not in it (or has exited). Pages shared between them (a forked
/// child's copy-on-write pages, shared libraries) count once per process.
fn tree_sums(table: &[(i32, ProcStat)], roots: &[i32]) -> Vec<Option<u64>> {
    let children = children_of(table);
    roots
        .iter()
        .map(|&root| {
            let (_, me) = table.iter().find(|(pid, _)| *pid == root)?;
            if me.has_exited() {
                return None;
            }
            let rest: u64 = descendants(table, &children, root)
                .into_iter()
                .map(|i| table[i].1.rss_kib())
                .sum();
            Some(me.rss_kib() + rest)
        })
        .collect()
}

/// Resident memory (KiB) of each of `roots` with all its descendants, in the order
/// given: `None` for one that is gone. One look at /proc for all of them.
pub(crate) fn tree_rss_kib(roots: &[i32]) -> Vec<Option<u64>> {
    tree_sums(&all_processes(), roots)
}

/// Every live descendant of `root`, pinned by a pidfd (checked to be the very process
/// seen: a reused pid is never pinned).
pub(crate) fn pin_descendants(root: i32) -> Vec<OwnedFd> {
    let table = all_processes();
    let children = children_of(&table);
    descendants(&table, &children, root)
        .into_iter()
        .filter_map(|i| {
            let (pid, stat) = table[i];
            let pidfd = pidfd_open(pid).ok()?;
            let now = ProcStat::of(pid)?;
            ((now.ppid, now.start) == (stat.ppid, stat.start)).then_some(pidfd)
        })
        .collect()
}

/// Sends SIGKILL to each pinned process (those already gone are skipped).
pub(crate) fn kill_pinned(pinned: &[OwnedFd]) {
    for pidfd in pinned {
        let _ = pidfd_send_signal(pidfd, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(ppid: i32, rss_pages: u64, state: char) -> ProcStat {
        ProcStat {
            state,
            ppid,
            pgrp: 1,
            utime: 0,
            stime: 0,
            nice: 0,
            threads: 1,
            start: 1,
            rss_pages,
        }
    }

    #[test]
    fn a_tree_sums_its_root_and_every_descendant_once() {
        let page_kib = stat(0, 1, 'S').rss_kib();
        // 10 ── 11 ── 12        20 (another tree)    13: child of 10, a zombie
        //   └── 14 (setsid'd, adopted: still a child)
        let table = vec![
            (10, stat(1, 100, 'S')),
            (11, stat(10, 10, 'R')),
            (12, stat(11, 1, 'S')),
            (13, stat(10, 0, 'Z')),
            (14, stat(10, 1000, 'S')),
            (20, stat(1, 5, 'S')),
        ];
        let got = tree_sums(&table, &[10, 11, 20, 12, 99, 13]);
        let want = [Some(1111), Some(11), Some(5), Some(1), None, None];
        let want: Vec<Option<u64>> = want.iter().map(|k| k.map(|p| p * page_kib)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_cycle_in_a_garbled_table_ends() {
        let table = vec![(10, stat(11, 1, 'S')), (11, stat(10, 1, 'S'))];
        let page_kib = stat(0, 1, 'S').rss_kib();
        assert_eq!(tree_sums(&table, &[10]), vec![Some(2 * page_kib)]);
    }

    #[test]
    fn this_process_tree_is_seen() {
        let me = std::process::id() as i32;
        let kib = tree_rss_kib(&[me, i32::MAX]);
        assert!(kib[0].is_some_and(|k| k > 0), "{kib:?}");
        assert_eq!(kib[1], None);
    }
}
