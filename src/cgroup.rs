//! A cgroup of its own for each spawned worker, so that what its tasks started is
//! found and ended however the worker itself ended.
//!
//! A task's child that leaves the worker's process group and session (`setsid`) and
//! whose worker then dies without cleaning up (`abort`, a SIGKILL from outside) is
//! adopted by init: no process group, session or parent link leads to it any more.
//! The fork and forkserver servers are subreapers and adopt such orphans themselves;
//! a spawned worker's parent is the program, which cannot be one (it would reap its
//! other children's orphans too, and the user's own `Child`ren are not ours to reap).
//! A cgroup is what the kernel keeps whatever a process does: each spawned worker is
//! born (`clone3` with `CLONE_INTO_CGROUP`, `os::spawn_exec`) in a cgroup of its own,
//! and the slot that owns the worker counts what runs in that cgroup as part of its
//! group: signalled with it, waited for with it, killed with it.
//!
//! Layout, under this process's own cgroup (v2): `supervisor-PID-START-pPIDNS/` for
//! the program (its pid, its start time in ticks since boot and its pid namespace's
//! inode: an owner that can be told alive or dead, even after pid reuse), with one
//! child per spawned worker: `wN` for one that dies with the program (a pool's, a
//! daemon), `lN` for a `Process` that lives on after it (not a daemon: README). A
//! worker's cgroup is kept for the next worker once empty (making one costs about
//! 27 us here, removing it 20 us). At exit the program
//! removes its cgroups; the first spawn of a later program removes what dead owners
//! of its own pid namespace left, killing anything still in them, except in an `lN`
//! (a worker that outlived its program, and its task's children: which member is the
//! worker cannot be told, so what it leaves if it dies after its program stays).
//!
//! Where there is no cgroup v2 hierarchy, or ours is not writable (an unprivileged
//! user outside a delegated subtree, a read-only mount in a container), or `clone3`
//! cannot place a child (an old kernel, a seccomp filter), workers start as before:
//! their group and their tree are still ended, only such orphans are not.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::os;

/// At most this many emptied worker cgroups are kept for later workers; the rest are
/// removed.
const KEEP_FREE: usize = 64;

/// How long a sweep waits for what it killed in a dead owner's cgroup to be gone.
const SWEEP_WAIT: Duration = Duration::from_secs(1);

/// What names a program's cgroup.
const PREFIX: &str = "supervisor-";

/// A worker cgroup's directory.
type Entry = PathBuf;

/// The program's own cgroup, holding its workers'.
struct Home {
    owner: i32,
    path: PathBuf,
    next: AtomicU64,
    /// `clone3` could not place a child here: no more tries in this process.
    refused: AtomicBool,
    /// Emptied cgroups to reuse: those of workers that die with the program (`w`),
    /// and of those that live on (`l`).
    free: Mutex<[Vec<Entry>; 2]>,
    /// Killed but not yet empty when they were given back: removed once empty.
    dying: Mutex<Vec<PathBuf>>,
}

/// The cgroup one spawned worker was born in.
pub(crate) struct WorkerCgroup {
    entry: Option<Entry>,
    home: Arc<Home>,
}

impl WorkerCgroup {
    /// Its directory opened, for `clone3` (opened per start: an idle cgroup holds
    /// no descriptor).
    pub(crate) fn open(&self) -> Option<OwnedFd> {
        os::open_cgroup(self.path()?).ok()
    }

    fn path(&self) -> Option<&Path> {
        self.entry.as_deref()
    }

    /// Whether any process (not counting zombies) is in it.
    pub(crate) fn runs(&self) -> bool {
        self.path().is_some_and(os::cgroup_populated)
    }

    /// Sends `signal` to everything in it (SIGKILL looking again for what was forked
    /// meanwhile: `os::cgroup_kill_all`). Whether anyone was there.
    pub(crate) fn signal(&self, signal: i32) -> bool {
        let Some(path) = self.path() else {
            return false;
        };
        if !os::cgroup_populated(path) {
            return false;
        }
        if signal == libc::SIGKILL {
            os::cgroup_kill_all(path).is_ok()
        } else {
            os::cgroup_signal_members(path, signal).unwrap_or(false)
        }
    }

    /// `clone3` could not start the worker in it (`errno`): the worker was started
    /// without one. Where that will not change, no later start tries again.
    pub(crate) fn refused(mut self, errno: i32) {
        crate::trace::without_cgroup(&format_args!(
            "clone3 cannot start a child in a cgroup: {}",
            std::io::Error::from_raw_os_error(errno)
        ));
        if !matches!(errno, libc::EBUSY | libc::ENOENT) {
            self.home.refused.store(true, Ordering::Relaxed);
        }
        if let Some(entry) = self.entry.take() {
            let _ = os::remove_cgroup(&entry);
        }
    }
}

impl Drop for WorkerCgroup {
    fn drop(&mut self) {
        let Some(entry) = self.entry.take() else {
            return;
        };
        // A copy in a process forked from the program (a bare `fork`) is not the
        // program's to give back: its worker may still run.
        if os::getpid() == self.home.owner {
            self.home.give_back(entry);
        }
    }
}

impl Home {
    fn give_back(&self, entry: Entry) {
        if os::cgroup_populated(&entry) {
            // Whatever the slot's sweeps left (one in uninterruptible sleep, or a
            // slot dropped before its group was emptied) ends now, below it too.
            if !remove_tree(&entry, Instant::now()) {
                lock(&self.dying).push(entry);
            }
            return;
        }
        // What a task or a program it started made below it goes (all empty).
        for child in os::child_cgroups(&entry) {
            remove_tree(&entry.join(child), Instant::now());
        }
        let kind = usize::from(lives_on(&entry));
        let mut free = lock(&self.free);
        if free[kind].len() < KEEP_FREE {
            free[kind].push(entry);
        } else {
            drop(free);
            let _ = os::remove_cgroup(&entry);
        }
    }

    fn take(self: &Arc<Home>, lives_on: bool) -> Option<WorkerCgroup> {
        if self.refused.load(Ordering::Relaxed) {
            return None;
        }
        self.remove_dead();
        let reused = lock(&self.free)[usize::from(lives_on)].pop();
        let entry = match reused {
            Some(entry) => entry,
            None => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                let kind = if lives_on { 'l' } else { 'w' };
                let path = self.path.join(format!("{kind}{n}"));
                if let Err(e) = os::make_cgroup(&path) {
                    // `cgroup.max.descendants` reached, say: this worker goes without.
                    crate::trace::without_cgroup(&format_args!(
                        "cannot make {}: {e}",
                        path.display()
                    ));
                    return None;
                }
                path
            }
        };
        Some(WorkerCgroup {
            entry: Some(entry),
            home: self.clone(),
        })
    }

    /// Removes the killed cgroups that have emptied since.
    fn remove_dead(&self) {
        let mut dying = lock(&self.dying);
        if !dying.is_empty() {
            dying.retain(|path| !remove_tree(path, Instant::now()));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The program's cgroup, made on first use, for the process that made it (a process
/// forked from the program makes its own).
type HomeCell = Mutex<Option<(i32, Option<Arc<Home>>)>>;
static HOME: HomeCell = Mutex::new(None);

fn home() -> Option<Arc<Home>> {
    let me = os::getpid();
    let mut cell = lock(&HOME);
    if let Some((pid, home)) = cell.as_ref() {
        if *pid == me {
            return home.clone();
        }
    }
    let home = make_home(me).map(Arc::new);
    *cell = Some((me, home.clone()));
    home
}

/// A program's cgroup name: who made it, in which pid namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    pid: i32,
    start: u64,
    pid_ns: u64,
}

impl Owner {
    fn name(&self) -> String {
        format!("{PREFIX}{}-{}-p{}", self.pid, self.start, self.pid_ns)
    }

    fn parse(name: &str) -> Option<Owner> {
        let mut parts = name.strip_prefix(PREFIX)?.split('-');
        let pid = parts.next()?.parse().ok()?;
        let start = parts.next()?.parse().ok()?;
        let pid_ns = parts.next()?.strip_prefix('p')?.parse().ok()?;
        parts
            .next()
            .is_none()
            .then_some(Owner { pid, start, pid_ns })
    }
}

/// What a sweep does with a program's cgroup it found: only one of our own pid
/// namespace is judged (elsewhere its pid means nothing here), and it goes when its
/// owner is gone (no process of that pid, or one started at another time).
fn is_dead(found: &Owner, pid_ns: u64, start_of: impl FnOnce(i32) -> Option<u64>) -> bool {
    found.pid_ns == pid_ns && start_of(found.pid) != Some(found.start)
}

fn make_home(me: i32) -> Option<Home> {
    let Some(own) = os::own_cgroup_dir() else {
        crate::trace::without_cgroup(&"no cgroup v2 hierarchy holds this process");
        return None;
    };
    let owner = Owner {
        pid: me,
        start: os::process_start_time(me)?,
        pid_ns: os::own_namespaces()?.pid,
    };
    sweep(&own, owner.pid_ns);
    let path = own.join(owner.name());
    if let Err(e) = os::make_cgroup(&path) {
        crate::trace::without_cgroup(&format_args!("cannot make {}: {e}", path.display()));
        return None;
    }
    let home = Home {
        owner: me,
        path,
        // `w0` is the probe's, below.
        next: AtomicU64::new(1),
        refused: AtomicBool::new(false),
        free: Mutex::new([Vec::new(), Vec::new()]),
        dying: Mutex::new(Vec::new()),
    };
    // Children born here must live: not so where our own cgroup was once killed with
    // `cgroup.kill` (`os::born_alive_in`). The probe's cgroup is the first worker's.
    let first = home.path.join("w0");
    let alive = os::make_cgroup(&first)
        .and_then(|()| os::open_cgroup(&first))
        .ok()
        .and_then(|dir| os::born_alive_in(std::os::fd::AsFd::as_fd(&dir)));
    if alive == Some(true) {
        lock(&home.free)[0].push(first);
        Some(home)
    } else {
        let _ = os::remove_cgroup(&first);
        let _ = os::remove_cgroup(&home.path);
        crate::trace::without_cgroup(&match alive {
            Some(_) => "a child born in a cgroup here is killed at birth (this cgroup was once killed with cgroup.kill)",
            None => "clone3 cannot start a child in a cgroup here",
        });
        None
    }
}

/// Removes the cgroups dead programs of pid namespace `pid_ns` left in `dir` (waiting
/// at most [`SWEEP_WAIT`] in all for what it kills to be gone).
fn sweep(dir: &Path, pid_ns: u64) {
    let deadline = Instant::now() + SWEEP_WAIT;
    for name in os::child_cgroups(dir) {
        let Some(found) = Owner::parse(&name) else {
            continue;
        };
        if is_dead(&found, pid_ns, os::process_start_time) {
            let home = dir.join(name);
            let mut spared = false;
            for worker in os::child_cgroups(&home) {
                let worker = home.join(worker);
                // A worker that is not a daemon outlives its program (README): it and
                // what its task runs are left alone; a later sweep removes its cgroup
                // once it is empty. (Which member is the worker cannot be told, so
                // what such a worker leaves when it dies after its program stays.)
                if lives_on(&worker) && os::cgroup_populated(&worker) {
                    spared = true;
                } else {
                    remove_tree(&worker, deadline);
                }
            }
            if !spared {
                remove_tree(&home, deadline);
            }
        }
    }
}

/// Kills what runs in cgroup `dir` and below, waits (until `deadline`) for it to be
/// gone and removes the cgroups, deepest first; whether `dir` is gone.
fn remove_tree(dir: &Path, deadline: Instant) -> bool {
    if os::cgroup_populated(dir) {
        let _ = os::cgroup_kill_all(dir);
        let mut pause = Duration::from_millis(1);
        while os::cgroup_populated(dir) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
    for cgroup in os::cgroup_subtree(dir).iter().rev() {
        let _ = os::remove_cgroup(cgroup);
    }
    !dir.exists()
}

/// A cgroup for a worker about to be spawned, if this system lets us have one; for a
/// worker that `lives_on` after the program's death (a `Process` that is not a
/// daemon), one the sweep of a dead program spares while anything runs in it.
pub(crate) fn for_worker(lives_on: bool) -> Option<WorkerCgroup> {
    home()?.take(lives_on)
}

/// Whether a worker cgroup is one of a worker that lives on after its program
/// (`lN`; a worker that dies with it has `wN`).
fn lives_on(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('l'))
}

/// At the program's exit, once its children were waited for: what is still in its
/// workers' cgroups is killed and every cgroup it made is removed (bounded wait).
pub(crate) fn at_exit() {
    let home = {
        let cell = lock(&HOME);
        match cell.as_ref() {
            Some((_, Some(home))) if home.owner == os::getpid() => home.clone(),
            _ => return,
        }
    };
    *lock(&home.free) = [Vec::new(), Vec::new()];
    remove_tree(&home.path, Instant::now() + Duration::from_millis(200));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owners_name_reads_back_and_nothing_else_does() {
        let owner = Owner {
            pid: 4242,
            start: 987654,
            pid_ns: 4026531836,
        };
        assert_eq!(owner.name(), "supervisor-4242-987654-p4026531836");
        assert_eq!(Owner::parse(&owner.name()), Some(owner));
        for other in [
            "supervisor-4242-987654",
            "supervisor-4242-987654-4026531836",
            "supervisor-4242-987654-p4026531836-x",
            "supervisor-x-987654-p1",
            "w3",
            "system.slice",
        ] {
            assert_eq!(Owner::parse(other), None, "{other}");
        }
    }

    #[test]
    fn only_a_dead_owner_of_our_pid_namespace_is_swept() {
        let found = Owner {
            pid: 10,
            start: 500,
            pid_ns: 7,
        };
        // Alive: the same pid started at the same time.
        assert!(!is_dead(&found, 7, |_| Some(500)));
        // Gone, or the pid reused by a later process.
        assert!(is_dead(&found, 7, |_| None));
        assert!(is_dead(&found, 7, |_| Some(900)));
        // Another namespace's: never judged.
        assert!(!is_dead(&found, 8, |_| None));
    }
}
