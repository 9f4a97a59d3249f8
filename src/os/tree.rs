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
#[cfg(test)]
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

/// Looks at the resident memory of process trees, again and again. Finding a tree
/// takes a read of every `/proc/PID/stat` of the machine (about 1 ms with 100
/// processes here); so a full look is taken every [`FULL_LOOK`], and in between only
/// the processes last found in each tree are read again (a few µs each): a process a
/// task starts is counted from the next full look, while what the known ones grow is
/// seen at every look. On a machine with many processes the full looks (only they) are
/// spaced further apart, so that they take at most one part in [`FULL_SHARE`] of the
/// looking thread's time: the known members are still read at every look.
#[derive(Default)]
pub(crate) struct TreeWatch {
    /// Per root: its tree at the last full look, as (pid, start time) pairs.
    trees: HashMap<i32, Vec<(i32, u64)>>,
    last_full: Option<std::time::Instant>,
    /// How long until the next full look (see [`full_every`]).
    full_every: std::time::Duration,
}

/// How often [`TreeWatch`] looks at every process of the machine, at most.
pub(crate) const FULL_LOOK: std::time::Duration = std::time::Duration::from_millis(100);
/// A full look takes at most one part in this many of the looking thread's time.
const FULL_SHARE: u32 = 20;

/// When to take the next full look after one that took `cost`: [`FULL_LOOK`] later,
/// or later still if looking at every process is expensive here.
fn full_every(cost: std::time::Duration) -> std::time::Duration {
    FULL_LOOK.max(cost.saturating_mul(FULL_SHARE))
}

impl TreeWatch {
    /// Resident memory (KiB) of each of `roots` with all its descendants, in the order
    /// given: `None` for one that is gone.
    pub(crate) fn rss_kib(&mut self, roots: &[i32]) -> Vec<Option<u64>> {
        let now = std::time::Instant::now();
        let fresh = self
            .last_full
            .is_some_and(|at| now.duration_since(at) < self.full_every.max(FULL_LOOK))
            && roots.iter().all(|r| self.trees.contains_key(r));
        if fresh {
            return roots.iter().map(|r| self.known(*r)).collect();
        }
        let table = all_processes();
        let children = children_of(&table);
        self.trees.clear();
        self.last_full = Some(now);
        let sums = roots
            .iter()
            .map(|&root| {
                let (_, me) = table.iter().find(|(pid, _)| *pid == root)?;
                if me.has_exited() {
                    return None;
                }
                let members = descendants(&table, &children, root);
                let kib = me.rss_kib() + members.iter().map(|&i| table[i].1.rss_kib()).sum::<u64>();
                let mut tree = vec![(root, me.start)];
                tree.extend(members.iter().map(|&i| (table[i].0, table[i].1.start)));
                self.trees.insert(root, tree);
                Some(kib)
            })
            .collect();
        self.full_every = full_every(now.elapsed());
        sums
    }

    /// The tree of `root` as last found, each member read again (those gone, or whose
    /// pid now names another process, count nothing).
    fn known(&self, root: i32) -> Option<u64> {
        let tree = self.trees.get(&root)?;
        let mut total = None;
        for &(pid, start) in tree {
            let Some(stat) = ProcStat::of(pid).filter(|s| s.start == start && !s.has_exited())
            else {
                if pid == root {
                    return None;
                }
                continue;
            };
            *total.get_or_insert(0) += stat.rss_kib();
        }
        total
    }
}

/// Resident memory (KiB) of each of `roots` with all its descendants, in the order
/// given: `None` for one that is gone. One look at /proc for all of them.
#[cfg(test)]
fn tree_rss_kib(roots: &[i32]) -> Vec<Option<u64>> {
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
    fn full_looks_are_spaced_when_looking_at_every_process_is_expensive() {
        let us = std::time::Duration::from_micros;
        assert_eq!(full_every(us(0)), FULL_LOOK);
        assert_eq!(full_every(us(5_000)), FULL_LOOK);
        assert_eq!(
            full_every(us(10_000)),
            std::time::Duration::from_millis(200)
        );
        assert_eq!(
            full_every(std::time::Duration::MAX),
            std::time::Duration::MAX
        );
    }

    #[test]
    fn this_process_tree_is_seen_in_full_and_known_looks() {
        let me = std::process::id() as i32;
        let kib = tree_rss_kib(&[me, i32::MAX]);
        assert!(kib[0].is_some_and(|k| k > 0), "{kib:?}");
        assert_eq!(kib[1], None);
        let mut watch = TreeWatch::default();
        for _ in 0..3 {
            let kib = watch.rss_kib(&[me, i32::MAX]);
            assert!(kib[0].is_some_and(|k| k > 0), "{kib:?}");
            assert_eq!(kib[1], None);
        }
    }
}
