//! The sweep of what dead programs left in the temporary directory: bootstrap
//! directories (an unbound `socket` alone in a `.tmpXXXXXX`) and the probes of
//! `os::check_temp_dir` (`.supervisor-probe-PID-nNET-pPIDNS-NAME`: an empty file, or an
//! empty directory made by an earlier version).
//!
//! What tells a dead entry from a live one is only valid in the namespaces it was made
//! in: `/proc/net/unix` lists the sockets of our own network namespace, and a pid
//! means something only in our own pid namespace. A probe records its owner's two
//! namespaces (the inodes of `/proc/self/ns/net` and `/proc/self/ns/pid`); a bootstrap
//! directory is known by the probe that names it. For what our namespaces made, those
//! checks decide; for anything else (another namespace's, or of unknown origin) only
//! age does: it goes once older than [`FOREIGN_STALE_AFTER`], longer than any start
//! lasts, and never while its socket is bound here.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::os::{self, Namespaces};

/// How old a bootstrap directory of our namespaces must be before a sweep may take it
/// for a dead program's (a live start binds its socket within microseconds of making
/// it).
const STALE_AFTER: Duration = Duration::from_secs(2);

/// How old an entry of another namespace (or of unknown origin) must be before a sweep
/// removes it: a start waits at most its bootstrap timeout for its child (30 s), then
/// removes its own; 30 s more is the margin for a program slowed down meanwhile.
pub(crate) const FOREIGN_STALE_AFTER: Duration =
    Duration::from_secs(super::spawn::BOOTSTRAP_TIMEOUT.as_secs() + 30);

/// Sweeps the temporary directory, once per program, at its first spawn.
pub(super) fn stale_bootstrap_dirs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| sweep(&std::env::temp_dir()));
}

/// Whose a probe says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProbeRecord<'a> {
    /// The owner's pid (in its own pid namespace).
    pid: i32,
    /// The owner's namespaces; `None` for a probe that records none.
    ns: Option<Namespaces>,
    /// The bootstrap directory it names, if any.
    made: Option<&'a str>,
}

/// Reads a probe's name: `PID-nNET-pPIDNS-NAME` after the prefix, or the older
/// `PID-NAME`; NAME is a `.tmpXXXXXX` the probe names, or a random number.
fn probe_record(name: &str) -> Option<ProbeRecord<'_>> {
    let (pid, mut rest) = name.strip_prefix(os::TEMP_PROBE_PREFIX)?.split_once('-')?;
    let pid = pid.parse().ok()?;
    let mut ns = None;
    if let Some(after) = rest.strip_prefix('n') {
        let (net, after) = after.split_once('-')?;
        let (pid_ns, after) = after.strip_prefix('p')?.split_once('-')?;
        ns = Some(Namespaces {
            net: net.parse().ok()?,
            pid: pid_ns.parse().ok()?,
        });
        rest = after;
    }
    Some(ProbeRecord {
        pid,
        ns,
        made: super::bootstrap_name::is_temp_dir_name(rest).then_some(rest),
    })
}

/// What the sweep does with a probe of ours, `age` old.
fn probe_verdict(
    record: &ProbeRecord<'_>,
    here: Option<Namespaces>,
    age: Duration,
    owner_exists: impl FnOnce(i32) -> bool,
) -> bool {
    if age < STALE_AFTER {
        return false;
    }
    match (record.ns, here) {
        // Our pid namespace: its pid says whether its owner lives (a reused pid only
        // leaves it for a later sweep).
        (Some(ns), Some(here)) if ns.pid == here.pid => !owner_exists(record.pid),
        _ => age >= FOREIGN_STALE_AFTER,
    }
}

/// What the sweep does with a bootstrap directory of ours holding only an unbound
/// (here) socket, `age` old, named by a probe of namespaces `namer` (`None`: no probe
/// names it, or one that records no namespaces). `owner_lives`: the probe's owner is
/// alive in our pid namespace, so its start may still be pending: never removed then,
/// whatever the socket table says (a program that spells the same `TMPDIR` otherwise,
/// through a symbolic link or `//`, binds a path this sweep does not find there).
fn socket_dir_verdict(
    namer: Option<Namespaces>,
    here: Option<Namespaces>,
    age: Duration,
    owner_lives: bool,
) -> bool {
    if owner_lives {
        return false;
    }
    match (namer, here) {
        // Made in our network namespace: `/proc/net/unix` would list it if bound.
        (Some(ns), Some(here)) if ns.net == here.net => age >= STALE_AFTER,
        _ => age >= FOREIGN_STALE_AFTER,
    }
}

/// One entry of the temporary directory the sweep may look at.
struct Entry {
    path: PathBuf,
    name: String,
    age: Duration,
    /// A directory; otherwise an empty regular file (only a probe may be one).
    is_dir: bool,
}

/// Removes the bootstrap directories dead programs left in `tmp` (a program SIGKILLed
/// while a child was starting cannot remove its own): this user's, holding nothing but
/// `socket`, whose socket no process has bound any more; and this user's empty probes
/// (files, or directories of earlier versions) whose program is dead, with the empty
/// bootstrap directory such a probe names (it was killed after ipc-channel made the
/// directory and before the socket was bound). "Dead" is decided as the module's
/// documentation says.
///
/// An empty `.tmpXXXXXX` that no probe names is left: it looks like any program's
/// tempfile directory.
fn sweep(tmp: &Path) {
    let Some(bound) = os::bound_unix_sockets() else {
        return;
    };
    let Ok(listing) = std::fs::read_dir(tmp) else {
        return;
    };
    let me = os::euid();
    let here = os::own_namespaces();
    let entries: Vec<Entry> = listing
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_string();
            if !name.starts_with(".tmp") && !name.starts_with(os::TEMP_PROBE_PREFIX) {
                return None;
            }
            let meta = std::fs::symlink_metadata(entry.path()).ok()?;
            let probe_file =
                name.starts_with(os::TEMP_PROBE_PREFIX) && meta.is_file() && meta.len() == 0;
            if !(meta.is_dir() || probe_file) || meta.uid() != me {
                return None;
            }
            let age = meta.modified().ok()?.elapsed().unwrap_or_default();
            Some(Entry {
                path: entry.path(),
                name,
                age,
                is_dir: meta.is_dir(),
            })
        })
        .collect();
    // Which probe names each bootstrap directory.
    let namers: HashMap<&str, ProbeRecord<'_>> = entries
        .iter()
        .filter_map(|e| probe_record(&e.name))
        .filter_map(|r| Some((r.made?, r)))
        .collect();
    for entry in &entries {
        if let Some(record) = probe_record(&entry.name) {
            // Ours by its name, and a probe lives while its start does: one left after
            // that was left by a program killed mid-start. Only an empty one goes.
            if probe_verdict(&record, here, entry.age, os::process_exists) {
                if let Some(made) = record.made {
                    remove_empty_dir_of(&entry.path.with_file_name(made), me);
                }
                let _ = if entry.is_dir {
                    std::fs::remove_dir(&entry.path)
                } else {
                    std::fs::remove_file(&entry.path)
                };
            }
            continue;
        }
        if entry.name.starts_with(os::TEMP_PROBE_PREFIX) {
            continue;
        }
        // An empty one is left alone: another program's temporary directory (tempfile's
        // `.tmp` prefix is ipc-channel's too) looks the same.
        let socket = entry.path.join("socket");
        let only_socket = std::fs::read_dir(&entry.path)
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
            .is_ok_and(|names| names.len() == 1 && names[0] == "socket");
        let is_socket = std::fs::symlink_metadata(&socket)
            .is_ok_and(|m| m.file_type().is_socket() && m.uid() == me);
        let record = namers.get(entry.name.as_str());
        let namer = record.and_then(|r| r.ns);
        let owner_lives = record.is_some_and(|r| {
            matches!((r.ns, here), (Some(ns), Some(here)) if ns.pid == here.pid)
                && os::process_exists(r.pid)
        });
        if only_socket
            && is_socket
            && !bound.contains(&socket.display().to_string())
            && socket_dir_verdict(namer, here, entry.age, owner_lives)
        {
            let _ = std::fs::remove_file(&socket);
            let _ = std::fs::remove_dir(&entry.path);
        }
    }
}

/// Removes `dir` if it is a directory (not a link) of user `me` and empty.
fn remove_empty_dir_of(dir: &Path, me: u32) {
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == me) {
        let _ = std::fs::remove_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERE: Namespaces = Namespaces { net: 10, pid: 20 };
    const OLD: Duration = Duration::from_secs(10);

    #[test]
    fn a_probe_name_is_read_with_or_without_namespaces() {
        let with = format!("{}42-n10-p20-.tmpAb3xZ9", os::TEMP_PROBE_PREFIX);
        assert_eq!(
            probe_record(&with),
            Some(ProbeRecord {
                pid: 42,
                ns: Some(HERE),
                made: Some(".tmpAb3xZ9")
            })
        );
        let old = format!("{}42-.tmpAb3xZ9", os::TEMP_PROBE_PREFIX);
        assert_eq!(probe_record(&old).unwrap().ns, None);
        let random = format!("{}42-n10-p20-0badf00d", os::TEMP_PROBE_PREFIX);
        assert_eq!(probe_record(&random).unwrap().made, None);
        for bad in ["x", "42-nX-p20-a", "42-n10-q20-a", "42-n10"] {
            let name = format!("{}{bad}", os::TEMP_PROBE_PREFIX);
            assert_eq!(probe_record(&name), None, "{bad}");
        }
        let nameless = format!("{}42-n10-p20-", os::TEMP_PROBE_PREFIX);
        let record = probe_record(&nameless).unwrap();
        assert_eq!((record.ns, record.made), (Some(HERE), None));
    }

    #[test]
    fn only_our_pid_namespaces_probes_are_judged_by_their_pid() {
        let record = |ns| ProbeRecord {
            pid: 7,
            ns,
            made: None,
        };
        let dead = |_| false;
        let ours = record(Some(HERE));
        assert!(probe_verdict(&ours, Some(HERE), OLD, dead));
        assert!(!probe_verdict(&ours, Some(HERE), OLD, |_| true));
        assert!(!probe_verdict(
            &ours,
            Some(HERE),
            Duration::from_secs(1),
            dead
        ));
        // Another network namespace but ours for pids: the pid still tells.
        let net_only = record(Some(Namespaces { net: 11, pid: 20 }));
        assert!(probe_verdict(&net_only, Some(HERE), OLD, dead));
        for other in [record(Some(Namespaces { net: 10, pid: 21 })), record(None)] {
            assert!(!probe_verdict(&other, Some(HERE), OLD, dead));
            assert!(probe_verdict(&other, Some(HERE), FOREIGN_STALE_AFTER, dead));
        }
        assert!(!probe_verdict(&ours, None, OLD, dead));
    }

    #[test]
    fn only_our_network_namespaces_sockets_are_judged_by_the_socket_table() {
        assert!(socket_dir_verdict(Some(HERE), Some(HERE), OLD, false));
        assert!(!socket_dir_verdict(
            Some(HERE),
            Some(HERE),
            Duration::from_secs(1),
            false
        ));
        let other = Some(Namespaces { net: 11, pid: 20 });
        for namer in [other, None] {
            assert!(!socket_dir_verdict(namer, Some(HERE), OLD, false));
            assert!(socket_dir_verdict(
                namer,
                Some(HERE),
                FOREIGN_STALE_AFTER,
                false
            ));
        }
        assert!(!socket_dir_verdict(Some(HERE), None, OLD, false));
    }

    #[test]
    fn a_socket_whose_probes_owner_lives_is_never_taken_for_dead() {
        // Unbound by the socket table's spelling, old, but its start's program lives.
        for age in [OLD, FOREIGN_STALE_AFTER] {
            assert!(!socket_dir_verdict(Some(HERE), Some(HERE), age, true));
        }
    }
}
