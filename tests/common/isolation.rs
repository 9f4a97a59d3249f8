//! The leak check around a test body: no child, zombie, descriptor, bootstrap
//! directory, temp entry or cgroup process may be left behind, and a hard deadline.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use super::{
    bootstrap_dirs, children_of, own_cgroup_dir, stat_fields, wait_exit, zombies_of, StartMethod,
    TMPDIR_ENV,
};

static SERIAL: Mutex<()> = Mutex::new(());

/// What must be the same before and after a process test.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    children: BTreeSet<i32>,
    fds: BTreeSet<i32>,
    bootstrap_dirs: BTreeSet<String>,
    tmp_entries: BTreeSet<String>,
    /// What runs in this program's workers' cgroups (escaped descendants, if the
    /// workers are gone).
    cgroup_procs: BTreeSet<i32>,
}

fn snapshot() -> Snapshot {
    Snapshot {
        children: children_of(std::process::id() as i32)
            .into_iter()
            .filter(|pid| !helper_pids().contains(pid))
            .collect(),
        fds: open_fds(),
        bootstrap_dirs: bootstrap_dirs(),
        tmp_entries: tmp_entries(),
        cgroup_procs: cgroup_procs(),
    }
}

/// Every process in the cgroups this program's spawned workers are born in
/// (`supervisor-PID-*/w*` under its own cgroup).
fn cgroup_procs() -> BTreeSet<i32> {
    let Some(own) = own_cgroup_dir() else {
        return BTreeSet::new();
    };
    let mine = format!("supervisor-{}-", std::process::id());
    let dirs = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    };
    dirs(&own)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&mine))
        })
        .flat_map(|home| dirs(&home))
        .flat_map(|worker| {
            std::fs::read_to_string(worker.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// The names in this process tree's private `TMPDIR` (empty without one).
fn tmp_entries() -> BTreeSet<String> {
    let Some(dir) = std::env::var_os(TMPDIR_ENV) else {
        return BTreeSet::new();
    };
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn helper_pids() -> Vec<i32> {
    supervisor::helper_pids()
        .into_iter()
        .map(|p| p as i32)
        .collect()
}

/// Runs `body` with a hard deadline and checks afterwards that it left no child,
/// zombie, descriptor, bootstrap directory or entry of the private `TMPDIR` behind.
/// Tests that use it run one at a time (the checks look at the whole process, and
/// nothing else of this process tree writes to its `TMPDIR` meanwhile).
pub fn isolated<F: FnOnce() + Send + 'static>(deadline: Duration, body: F) {
    isolated_settling(deadline, Duration::from_secs(10), body)
}

/// [`isolated`], waiting at most `settle` for children, descriptors and temp entries to
/// go after `body` returns.
pub fn isolated_settling<F: FnOnce() + Send + 'static>(
    deadline: Duration,
    settle: Duration,
    body: F,
) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    supervisor::ensure_forkserver().expect("forkserver starts");
    let before = snapshot();
    let (done_tx, done_rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
        let _ = done_tx.send(());
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    });
    if done_rx.recv_timeout(deadline).is_err() {
        let dump = process_tree_dump();
        kill_children_except_helpers();
        panic!("test did not finish within {deadline:?}; processes:\n{dump}");
    }
    if let Err(panic) = thread.join() {
        kill_children_except_helpers();
        std::panic::resume_unwind(panic);
    }
    // Children exit asynchronously after their handles are dropped; wait (on their
    // pidfds) for the ones that are still winding down before comparing.
    let settle = Instant::now() + settle;
    let after = loop {
        let now = snapshot();
        let extra: Vec<i32> = now.children.difference(&before.children).copied().collect();
        let settled = now.children == before.children
            && now.fds.len() == before.fds.len()
            && now.bootstrap_dirs.is_subset(&before.bootstrap_dirs)
            && now.tmp_entries.is_subset(&before.tmp_entries)
            && now.cgroup_procs.is_subset(&before.cgroup_procs);
        if settled || Instant::now() > settle {
            break now;
        }
        for pid in extra {
            wait_exit(pid, settle.saturating_duration_since(Instant::now()));
        }
        if now.children == before.children {
            // Only descriptors or directories differ: give the reaper one pass.
            std::thread::yield_now();
            let again = snapshot();
            let settled = again.fds == before.fds
                && again.bootstrap_dirs.is_subset(&before.bootstrap_dirs)
                && again.tmp_entries.is_subset(&before.tmp_entries)
                && again.cgroup_procs.is_subset(&before.cgroup_procs);
            if settled || Instant::now() > settle {
                break again;
            }
        }
    };
    assert_eq!(
        after.children,
        before.children,
        "children left behind:\n{}",
        process_tree_dump()
    );
    // Counts, not numbers: a helper process replaced during the test (a new forkserver)
    // holds new descriptor numbers for the ones it gave back.
    assert_eq!(
        after.fds.len(),
        before.fds.len(),
        "descriptors left open: {}",
        fd_dump(&after.fds, &before.fds)
    );
    // Only new directories are ours to answer for (other programs come and go).
    let new_dirs: Vec<_> = after
        .bootstrap_dirs
        .difference(&before.bootstrap_dirs)
        .collect();
    assert!(
        new_dirs.is_empty(),
        "bootstrap directories left behind: {new_dirs:?}"
    );
    // The private TMPDIR holds only what this process tree made: every new entry is a
    // leak of the test's.
    let new_entries: Vec<_> = after.tmp_entries.difference(&before.tmp_entries).collect();
    assert!(
        new_entries.is_empty(),
        "temp entries left behind in {}: {new_entries:?}",
        std::env::temp_dir().display()
    );
    assert!(
        zombies_of(std::process::id() as i32).is_empty(),
        "zombies left behind"
    );
    // What a spawned worker's task left, in a session of its own or adopted by init,
    // is still in that worker's cgroup.
    let escaped: Vec<_> = after
        .cgroup_procs
        .difference(&before.cgroup_procs)
        .collect();
    assert!(
        escaped.is_empty(),
        "processes left running in the workers' cgroups: {escaped:?}"
    );
}

/// Runs `body` once per start method, each time isolated.
pub fn each_method(deadline: Duration, body: fn(StartMethod)) {
    for method in StartMethod::ALL {
        eprintln!("-- start method {method}");
        isolated(deadline, move || body(method));
    }
}

fn open_fds() -> BTreeSet<i32> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                // SAFETY: F_GETFD only reads flags; drops the listing's own descriptor.
                .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1)
                .collect()
        })
        .unwrap_or_default()
}

fn fd_dump(after: &BTreeSet<i32>, before: &BTreeSet<i32>) -> String {
    after
        .symmetric_difference(before)
        .map(|fd| {
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            format!("{fd} -> {target}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn descendants(pid: i32, out: &mut Vec<i32>) {
    for child in children_of(pid) {
        out.push(child);
        descendants(child, out);
    }
}

fn kill_children_except_helpers() {
    let helpers = helper_pids();
    let mut all = Vec::new();
    descendants(std::process::id() as i32, &mut all);
    for pid in all.into_iter().filter(|p| !helpers.contains(p)) {
        // SAFETY: kill with plain integers; these are our own descendants.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // Reap the direct children too: a test that panicked dropped its `Child` handles
    // unwaited, and their zombies would fail every test after it.
    for pid in children_of(std::process::id() as i32)
        .into_iter()
        .filter(|p| !helpers.contains(p))
    {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid out pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
}

/// A `ps`-like listing of this process's descendants.
pub fn process_tree_dump() -> String {
    let mut all = Vec::new();
    descendants(std::process::id() as i32, &mut all);
    all.iter()
        .map(|pid| {
            let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " ");
            let state = stat_fields(*pid).map_or('?', |s| s.state);
            format!("  {pid} {state} {cmd}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
