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
/// bootstrap directory and socket) is private from its first instant. The mask is the
/// process's: meanwhile another thread's new files are at most as open as the owner's
/// (never more), and `f` calls are serialised here.
pub(crate) fn with_private_umask<T>(f: impl FnOnce() -> T) -> T {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: umask cannot fail; it only swaps the process's mask.
    let old = unsafe { libc::umask(0o077) };
    let out = f();
    // SAFETY: as above, restoring what was there.
    unsafe { libc::umask(old) };
    out
}

/// Whether a unix socket can be made right now (one is made and closed again): the
/// test ipc-channel's one-shot server lacks. Its `new` makes its directory even when
/// its `socket()` failed (the failure shows only at `bind`, as `EBADF`), and the
/// directory's removal then needs a descriptor too: out of descriptors, the directory
/// stayed behind. `EMFILE` or `ENFILE` here means "do not call it".
pub(crate) fn unix_socket_available() -> io::Result<()> {
    // SAFETY: socket takes plain integers; the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
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
            .filter_map(|l| l.split_whitespace().nth(7))
            .map(str::to_string)
            .collect(),
    )
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
