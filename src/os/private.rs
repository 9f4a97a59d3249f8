//! Private files, sockets and secrets for the spawn handshake.

use std::io;

/// `len` bytes from the kernel's random generator.
pub(crate) fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut out = [0u8; N];
    let mut filled = 0;
    while filled < N {
        // SAFETY: writes at most N - filled bytes into the live array.
        let r = unsafe { libc::getrandom(out[filled..].as_mut_ptr().cast(), N - filled, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        filled += r as usize;
    }
    Ok(out)
}

/// Runs `f` with the file-creation mask at 0o077, so whatever it creates (ipc-channel's
/// bootstrap directory and socket) is private from its first instant. `f` runs on a
/// thread of its own that keeps that mask for itself (`unshare(CLONE_FS)`: its own
/// umask, cwd and root), so the other threads' masks never change: a process-wide
/// mask narrowed the files other threads created meanwhile (81 of 19,140 files meant
/// as 0o644 came out 0o600 during 30 starts). Where that thread cannot be had, the
/// process's mask is swapped around `f`, as before. Calls are serialised.
pub(crate) fn with_private_umask<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    // A panic of `f` is carried back and resumed here, as if `f` had run on this thread
    // (and the mask thread lives on for the next call).
    let job: MaskJob = Box::new(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    let job = match private_mask_thread() {
        Some(thread) => thread
            .send(job)
            .err()
            .map(|std::sync::mpsc::SendError(job)| job),
        None => Some(job),
    };
    if let Some(job) = job {
        // No thread with a mask of its own: the process's mask, swapped around `f`.
        // SAFETY: umask cannot fail; it only swaps the process's mask.
        let old = unsafe { libc::umask(0o077) };
        job();
        // SAFETY: as above, restoring what was there.
        unsafe { libc::umask(old) };
    }
    match rx.recv() {
        Ok(Ok(out)) => out,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        // The job was dropped unrun: only if the mask thread ended, which it never does.
        Err(_) => unreachable!("the private-mask thread ended with a call in hand"),
    }
}

type MaskJob = Box<dyn FnOnce() + Send>;

/// The thread that runs [`with_private_umask`]'s calls under its own 0o077 mask,
/// started on first use; `None` if it could not be started or could not get a mask of
/// its own.
fn private_mask_thread() -> Option<&'static std::sync::mpsc::Sender<MaskJob>> {
    static THREAD: std::sync::OnceLock<Option<std::sync::mpsc::Sender<MaskJob>>> =
        std::sync::OnceLock::new();
    THREAD
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<MaskJob>();
            let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
            std::thread::Builder::new()
                .name("supervisor-mask".into())
                .spawn(move || {
                    // SAFETY: unshare takes a flag; CLONE_FS gives this thread its own
                    // copy of the umask, cwd and root, changing nothing for the others.
                    let own = unsafe { libc::unshare(libc::CLONE_FS) } == 0;
                    if own {
                        // SAFETY: umask cannot fail; only this thread's mask now.
                        unsafe { libc::umask(0o077) };
                    }
                    let _ = ready_tx.send(own);
                    if own {
                        for job in rx {
                            job();
                        }
                    }
                })
                .ok()?;
            ready_rx.recv().ok()?.then_some(tx)
        })
        .as_ref()
}

/// Why the temporary directory cannot hold a spawn's bootstrap socket. Checked before
/// ipc-channel's one-shot server is asked for one: it panics (and the start aborts the
/// program) when it cannot make its directory or the path is not UTF-8, and binds a
/// silently truncated path outside its directory when the path is too long.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TempDirError {
    /// Not UTF-8.
    #[error("the temporary directory {} (TMPDIR) is not valid UTF-8, which the bootstrap socket's path must be", .0.display())]
    NotUtf8(std::path::PathBuf),
    /// A relative path (the bootstrap socket's path is used from several threads and
    /// by the child, whose working directories may differ).
    #[error("the temporary directory {} (TMPDIR) is not an absolute path", .0.display())]
    Relative(std::path::PathBuf),
    /// Too long for a unix socket's path inside it.
    #[error("the temporary directory {} (TMPDIR) is {len} bytes long; a bootstrap socket inside it needs it at most {max}", .path.display())]
    TooLong {
        /// The directory.
        path: std::path::PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The longest that works.
        max: usize,
    },
    /// A directory cannot be made in it (missing, not a directory, not writable, full).
    #[error("cannot make a directory in the temporary directory {} (TMPDIR)", .path.display())]
    Unusable {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Whether `e` is a [`TempDirError`] that no retry can mend: the path itself is wrong,
/// or names no directory we may make one in (missing, a dangling symlink, a file,
/// `/proc`, `/sys`, not writable, a read-only mount). Only a full file system (out of
/// space, inodes or quota) or a failure of the kernel's own may pass.
pub(crate) fn temp_dir_unfit(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<TempDirError>())
        .is_some_and(|t| match t {
            TempDirError::Unusable { source, .. } => matches!(
                source.raw_os_error(),
                Some(
                    libc::ENOENT
                        | libc::ENOTDIR
                        | libc::EACCES
                        | libc::EPERM
                        | libc::EROFS
                        | libc::ELOOP
                        | libc::ENAMETOOLONG
                )
            ),
            _ => true,
        })
}

/// How the probes of [`check_temp_dir`] are named (then the pid, a `-`, `n` and the
/// inode of its network namespace, `-p` and that of its pid namespace, a `-`, and the
/// name of the directory ipc-channel is about to make, or a random number): the sweep
/// of a later start removes the ones a killed program left, and the empty directory
/// one names if its program is dead. A probe is an empty file (earlier versions made an
/// empty directory, which the sweep still takes).
pub(crate) const TEMP_PROBE_PREFIX: &str = ".supervisor-probe-";

/// The longest temporary directory a bootstrap socket fits under: `sun_path` holds 107
/// bytes and a NUL, and ipc-channel adds `/.tmpXXXXXX/socket` (18 bytes).
const TEMP_DIR_MAX: usize = 107 - 18;

/// A probe of [`check_temp_dir`], removed when dropped: while it exists it records
/// that this process is making the bootstrap directory it names.
#[derive(Debug)]
pub(crate) struct TempProbe(std::path::PathBuf);

impl Drop for TempProbe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Checks that ipc-channel's one-shot server can make its directory and socket in the
/// temporary directory (see [`TempDirError`]): an empty file (0600) is made there and
/// removed when the returned probe is dropped. Named after `next` (the directory the
/// server will make), it is the record that lets a later start's sweep remove that
/// directory if this program is killed while the directory is empty: keep it until
/// the directory is gone. The error is an `io::Error` carrying a [`TempDirError`].
///
/// A file, not a directory: on ext4 a directory's `rmdir` frees its block, and making
/// and removing one cost 140 us a start where a file's cost 18 us. Whatever stops a
/// file from being made there stops a directory too; a directory needs a block more
/// (a file system out of blocks with inodes left): where the server then fails,
/// [`temp_dir_makes_dirs`] says why.
pub(crate) fn check_temp_dir(next: Option<&std::ffi::OsStr>) -> io::Result<TempProbe> {
    use std::os::unix::ffi::OsStrExt;
    let dir = std::env::temp_dir();
    let fail = |kind: io::ErrorKind, e: TempDirError| Err(io::Error::new(kind, e));
    if dir.to_str().is_none() {
        return fail(io::ErrorKind::InvalidInput, TempDirError::NotUtf8(dir));
    }
    if dir.is_relative() {
        return fail(io::ErrorKind::InvalidInput, TempDirError::Relative(dir));
    }
    let len = dir.as_os_str().as_bytes().len();
    if len > TEMP_DIR_MAX {
        return fail(
            io::ErrorKind::InvalidInput,
            TempDirError::TooLong {
                path: dir,
                len,
                max: TEMP_DIR_MAX,
            },
        );
    }
    // Whose it is, in terms a sweep in another namespace can tell from its own. Looked
    // up once: a process's pid namespace never changes, and the sockets are bound on
    // the private-mask thread, whose network namespace does not either (it never calls
    // `setns`).
    static NAMESPACES: std::sync::OnceLock<Option<Namespaces>> = std::sync::OnceLock::new();
    let mut name = std::ffi::OsString::from(match *NAMESPACES.get_or_init(own_namespaces) {
        Some(Namespaces { net, pid }) => {
            format!("{TEMP_PROBE_PREFIX}{}-n{net}-p{pid}-", std::process::id())
        }
        None => format!("{TEMP_PROBE_PREFIX}{}-", std::process::id()),
    });
    match next {
        Some(next) => name.push(next),
        None => {
            let [a, b, c, d] = random_bytes::<4>()?;
            name.push(format!("{:08x}", u32::from_le_bytes([a, b, c, d])));
        }
    }
    let probe = dir.join(name);
    let made = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&probe)
    };
    match made {
        Ok(_closed) => Ok(TempProbe(probe)),
        Err(source) => fail(source.kind(), TempDirError::Unusable { path: dir, source }),
    }
}

/// Whether a directory can be made in the temporary directory (one is made, 0700, and
/// removed again): why ipc-channel's one-shot server could not make its own where
/// [`check_temp_dir`] passed. The error is an `io::Error` carrying a [`TempDirError`].
pub(crate) fn temp_dir_makes_dirs() -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir();
    let [a, b, c, d] = random_bytes::<4>()?;
    let probe = dir.join(format!(
        "{TEMP_PROBE_PREFIX}{}-{:08x}",
        std::process::id(),
        u32::from_le_bytes([a, b, c, d])
    ));
    match std::fs::DirBuilder::new().mode(0o700).create(&probe) {
        Ok(()) => {
            let _ = std::fs::remove_dir(&probe);
            Ok(())
        }
        Err(source) => Err(io::Error::new(
            source.kind(),
            TempDirError::Unusable { path: dir, source },
        )),
    }
}

/// Whether a unix socket can be made right now (one is made and closed again): the
/// test ipc-channel's one-shot server lacks. Its `new` makes its directory even when
/// its `socket()` failed (the failure shows only at `bind`, as `EBADF`), and the
/// directory's removal then needs a descriptor too: out of descriptors, the directory
/// stayed behind. `EMFILE` or `ENFILE` here means "do not call it".
pub(crate) fn unix_socket_available() -> io::Result<std::os::fd::RawFd> {
    // SAFETY: socket takes plain integers; the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    Ok(fd)
}

/// Whether a unix socket pair can be made right now (one is made and closed again).
pub(crate) fn socket_pair_available() -> io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into the array it is given.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    for fd in fds {
        // SAFETY: fresh descriptors nobody else owns.
        drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    }
    Ok(())
}

/// Paths of the unix sockets bound in this network namespace (`/proc/net/unix`): a
/// bootstrap socket that is not among them has no listener left.
pub(crate) fn bound_unix_sockets() -> Option<std::collections::HashSet<String>> {
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    Some(
        table
            .lines()
            .skip(1)
            .filter_map(socket_path)
            .map(str::to_string)
            .collect(),
    )
}

/// The path of a line of `/proc/net/unix`: everything after its seven fixed columns
/// (`Num RefCount Protocol Flags Type St Inode`) and the one space after them, so a
/// path with spaces in it (a `TMPDIR` with spaces) is whole. `None` for an unbound one.
fn socket_path(line: &str) -> Option<&str> {
    let mut rest = line;
    for _ in 0..7 {
        rest = rest.trim_start_matches(' ');
        rest = &rest[rest.find(' ')?..];
    }
    rest.strip_prefix(' ').filter(|path| !path.is_empty())
}

/// The namespaces a process lives in, by the inodes of `/proc/self/ns/net` and
/// `/proc/self/ns/pid`: what its socket paths and pids mean depends on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Namespaces {
    /// The network namespace (which `/proc/net/unix` lists the sockets of).
    pub(crate) net: u64,
    /// The pid namespace (which its pids are numbers in).
    pub(crate) pid: u64,
}

/// This process's namespaces; `None` where `/proc` does not say.
pub(crate) fn own_namespaces() -> Option<Namespaces> {
    use std::os::unix::fs::MetadataExt;
    let inode = |kind: &str| std::fs::metadata(format!("/proc/self/ns/{kind}")).map(|m| m.ino());
    Some(Namespaces {
        net: inode("net").ok()?,
        pid: inode("pid").ok()?,
    })
}

/// The effective user id.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Makes `dir` accessible to its owner only and checks it belongs to us.
pub(crate) fn make_private_dir(dir: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let meta = std::fs::symlink_metadata(dir)?;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not a private directory of this user", dir.display()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_path_is_the_rest_of_its_line() {
        let line =
            "0000000000000000: 00000002 00000000 00010000 0001 01 12345 /tmp/a b/.tmpX/socket";
        assert_eq!(socket_path(line), Some("/tmp/a b/.tmpX/socket"));
        // A short inode is padded: the columns are found by the spaces between them.
        let line = "0000000000000000: 00000002 00000000 00010000 0001 01  123 /tmp/x  y";
        assert_eq!(socket_path(line), Some("/tmp/x  y"));
        assert_eq!(
            socket_path("0000000000000000: 00000003 00000000 00000000 0001 03 1240480"),
            None
        );
        assert_eq!(socket_path(""), None);
    }

    /// A socket bound under a directory with spaces in its name is found whole (the
    /// sweep of stale bootstrap directories took `/tmp/a` of `/tmp/a b/...` for the
    /// path, so a live program's socket looked unbound).
    #[test]
    fn a_bound_socket_under_a_path_with_spaces_is_found() {
        let dir = std::env::temp_dir().join(format!("sup test {} spaces", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a socket");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let bound = bound_unix_sockets().unwrap();
        drop(listener);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&dir);
        assert!(
            bound.contains(&path.display().to_string()),
            "{} not among the bound sockets",
            path.display()
        );
    }
}
