//! What the host gives a test: root, a writable cgroup v2, bootstrap directories.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Fails the test unless it runs as root, saying what for: a test that needs root must
/// never pass by skipping.
pub fn require_root(what_for: &str) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test must run as root (euid {euid}): {what_for}"
    );
}

/// The directory of this process's cgroup in a cgroup v2 hierarchy, if one is
/// mounted (read as the library does: `/proc/self/cgroup` and `/proc/self/mountinfo`).
pub fn own_cgroup_dir() -> Option<PathBuf> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let (root, mount) = mountinfo.lines().find_map(|line| {
        let (head, tail) = line.split_once(" - ")?;
        (tail.split(' ').next()? == "cgroup2").then_some(())?;
        let mut fields = head.split(' ');
        Some((fields.nth(3)?.to_string(), fields.next()?.to_string()))
    })?;
    let below = if root == "/" {
        path.as_str()
    } else {
        path.strip_prefix(root.as_str())?
    };
    Some(Path::new(&mount).join(below.trim_start_matches('/')))
}

/// Fails the test, saying why, unless this process may make child cgroups in its own
/// cgroup v2 (what lets a spawned worker be born in a cgroup of its own).
pub fn require_cgroups(what_for: &str) {
    let Some(dir) = own_cgroup_dir() else {
        panic!("this test needs a cgroup v2 hierarchy (none mounted): {what_for}");
    };
    let probe = dir.join(format!("test-probe-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir(&probe) {
        panic!(
            "this test needs a writable cgroup v2 ({}: {e}): {what_for}",
            dir.display()
        );
    }
    let _ = std::fs::remove_dir(&probe);
}

/// ipc-channel bootstrap directories (a `socket` inside a private temp dir) of ours.
pub fn bootstrap_dirs() -> BTreeSet<String> {
    let me = unsafe { libc::geteuid() };
    std::fs::read_dir(std::env::temp_dir())
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("socket").exists())
                .filter(|e| e.metadata().is_ok_and(|m| m.uid() == me))
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (up to `within`) until a bootstrap directory not in `before` appears; its path.
/// For scenarios whose worker hangs before connecting, so the directory stays.
pub fn wait_new_bootstrap_dir(before: &BTreeSet<String>, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let dir = loop {
        if let Some(dir) = bootstrap_dirs().difference(before).next() {
            break dir.clone();
        }
        assert!(Instant::now() < deadline, "no bootstrap directory appeared");
        std::thread::yield_now();
    };
    // The directory comes first, then the socket's bind, then its listen: a test that
    // connects to the socket or removes it needs it listening (before, 2 runs in 30
    // under load found no socket, or one that refused).
    let socket = format!("{dir}/socket");
    while !listening(&socket) {
        assert!(
            Instant::now() < deadline,
            "the bootstrap socket {socket} never listened"
        );
        std::thread::yield_now();
    }
    dir
}

/// Whether a Unix socket bound at `path` listens (`/proc/net/unix`: flags
/// `__SO_ACCEPTCON`, 0x10000), without connecting to it.
fn listening(path: &str) -> bool {
    std::fs::read_to_string("/proc/net/unix").is_ok_and(|table| {
        table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() >= 8
                && fields[7] == path
                && u32::from_str_radix(fields[3], 16).is_ok_and(|f| f & 0x1_0000 != 0)
        })
    })
}
