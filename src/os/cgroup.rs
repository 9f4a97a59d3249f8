//! Control groups (cgroup v2): finding our own, making and removing child groups,
//! asking whether anything runs in one, and signalling or killing all of it.
//!
//! A cgroup is the only thing the kernel keeps for a process whatever it does: a
//! task's child that calls `setsid`, double-forks and is adopted by init stays in the
//! cgroup it was born in. Only plain file operations here; the one system call that
//! puts a child straight into a cgroup is `clone3`, in `clone3.rs`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::process::{pidfd_open, pidfd_send_signal};

/// The directory of this process's own cgroup in the cgroup v2 hierarchy, if that
/// hierarchy is mounted where we can see it (`/proc/self/mountinfo`) and
/// `/proc/self/cgroup` names our place in it.
pub(crate) fn own_cgroup_dir() -> Option<PathBuf> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let (root, mount) = mountinfo.lines().find_map(cgroup2_mount)?;
    // Where the mount shows only a part of the hierarchy (a container's view), our
    // path is under the mount's root.
    let below = if root == "/" {
        path
    } else {
        path.strip_prefix(root)?
    };
    let dir = Path::new(mount).join(below.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

/// The root and the mount point of a `cgroup2` line of `/proc/self/mountinfo`:
/// `ID PARENT MAJ:MIN ROOT MOUNT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER`.
fn cgroup2_mount(line: &str) -> Option<(&str, &str)> {
    let (head, tail) = line.split_once(" - ")?;
    if tail.split(' ').next()? != "cgroup2" {
        return None;
    }
    let mut fields = head.split(' ');
    let root = fields.nth(3)?;
    let mount = fields.next()?;
    // Spaces and other odd bytes in either are octal escapes: not ours to guess at.
    (!root.contains('\\') && !mount.contains('\\')).then_some((root, mount))
}

/// Opens a cgroup directory (for `clone3`'s `CLONE_INTO_CGROUP`).
pub(crate) fn open_cgroup(dir: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: open with a nul-terminated path and plain flags; a new descriptor or -1.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether any process (zombies do not count) is in cgroup `dir` or below it. A
/// cgroup that cannot be read (removed) is empty.
pub(crate) fn populated(dir: &Path) -> bool {
    match std::fs::read_to_string(dir.join("cgroup.events")) {
        Ok(events) => events
            .lines()
            .any(|l| l.split_once(' ') == Some(("populated", "1"))),
        Err(_) => false,
    }
}

/// SIGKILLs every process in cgroup `dir` and below it, one by one, looking again for
/// any forked before the signal reached its parent (at most a few rounds).
///
/// Not `cgroup.kill`: on this kernel (6.18) a cgroup once killed that way kills every
/// child later born into it with `CLONE_INTO_CGROUP` (the fork compares the cgroup's
/// kill count with the one of the parent's cgroup), and worker cgroups are reused.
pub(crate) fn kill_all(dir: &Path) -> io::Result<()> {
    let mut first_error = None;
    for cgroup in subtree(dir) {
        let mut signalled: Vec<i32> = Vec::new();
        for _ in 0..8 {
            // One that went meanwhile (a nested program removed its own) spares no
            // other; the first error is returned after all were tried.
            let fresh: Vec<i32> = match members(&cgroup) {
                Ok(pids) => pids
                    .into_iter()
                    .filter(|pid| !signalled.contains(pid))
                    .collect(),
                Err(e) => {
                    first_error.get_or_insert(e);
                    break;
                }
            };
            if fresh.is_empty() {
                break;
            }
            if let Err(e) = signal_listed(&cgroup, &fresh, libc::SIGKILL) {
                first_error.get_or_insert(e);
                break;
            }
            signalled.extend(fresh);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Cgroup `dir` and those below it (a program started by a task nests its workers'
/// cgroups in its own), each after its parent; deeper than 16 levels is not looked at.
pub(crate) fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut found = vec![dir.to_path_buf()];
    let mut next = vec![(dir.to_path_buf(), 0)];
    while let Some((at, depth)) = next.pop() {
        if depth >= 16 {
            continue;
        }
        for child in child_cgroups(&at) {
            let child = at.join(child);
            found.push(child.clone());
            next.push((child, depth + 1));
        }
    }
    found
}

/// The processes in cgroup `dir` itself (not below it).
fn members(dir: &Path) -> io::Result<Vec<i32>> {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs"))?;
    Ok(procs
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}

/// Sends `signal` to every process in cgroup `dir` and below it. Each is pinned by a
/// pidfd and its cgroup read again, so an id reused meanwhile by a process elsewhere
/// is never hit. `Ok(true)` if anyone was signalled.
pub(crate) fn signal_members(dir: &Path, signal: i32) -> io::Result<bool> {
    let mut any = false;
    let mut first_error = None;
    for cgroup in subtree(dir) {
        // As in `kill_all`: one that cannot be read spares no other.
        match members(&cgroup).and_then(|pids| signal_listed(&cgroup, &pids, signal)) {
            Ok(signalled) => any |= signalled,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if !any => Err(e),
        _ => Ok(any),
    }
}

/// Sends `signal` to those of `pids` that are still in cgroup `dir` once pinned.
fn signal_listed(dir: &Path, pids: &[i32], signal: i32) -> io::Result<bool> {
    let pinned: Vec<(i32, OwnedFd)> = pids
        .iter()
        .filter_map(|&pid| Some((pid, pidfd_open(pid).ok()?)))
        .collect();
    if pinned.is_empty() {
        return Ok(false);
    }
    let still = members(dir)?;
    let mut any = false;
    for (pid, pidfd) in &pinned {
        if still.contains(pid) {
            any |= pidfd_send_signal(pidfd, signal).unwrap_or(false);
        }
    }
    Ok(any)
}

/// Makes child cgroup `dir` (its parent must exist); an existing one is an error.
pub(crate) fn make_cgroup(dir: &Path) -> io::Result<()> {
    std::fs::create_dir(dir)
}

/// Removes cgroup `dir`, which must be empty of processes and of child cgroups.
pub(crate) fn remove_cgroup(dir: &Path) -> io::Result<()> {
    std::fs::remove_dir(dir)
}

/// The child cgroups of `dir` (their names).
pub(crate) fn child_cgroups(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_line_of_mountinfo_gives_its_root_and_mount_point() {
        let v2 = "35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime \
                  shared:10 - cgroup2 cgroup2 rw,nsdelegate";
        assert_eq!(cgroup2_mount(v2), Some(("/", "/sys/fs/cgroup/unified")));
        let container = "1 0 0:30 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup rw";
        assert_eq!(
            cgroup2_mount(container),
            Some(("/docker/abc", "/sys/fs/cgroup"))
        );
        let v1 = "36 25 0:31 / /sys/fs/cgroup/memory rw shared:11 - cgroup cgroup rw,memory";
        assert_eq!(cgroup2_mount(v1), None);
        let odd = r"37 25 0:30 / /mnt/with\040space rw - cgroup2 cgroup2 rw";
        assert_eq!(cgroup2_mount(odd), None);
        assert_eq!(cgroup2_mount("garbage"), None);
    }
}
