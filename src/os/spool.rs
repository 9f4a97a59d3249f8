//! Spool files: private, unlinked temporary files for command output too big to keep in
//! memory, and how another process of the same user opens one (`/proc/<pid>/fd/<n>`).

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of a spool nobody has opened yet.
pub(crate) const UNOPENED: u32 = 0o600;
/// Mode a receiver gives a spool once it holds it: the sender may let go.
pub(crate) const RECEIVED: u32 = 0o400;

/// A new read-write file in `dir` with no name (O_TMPFILE), mode 0600, close-on-exec;
/// where the file system has no O_TMPFILE, a file created under a random name and
/// unlinked at once.
pub(crate) fn unlinked_file(dir: &Path) -> io::Result<File> {
    let tmpfile = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(UNOPENED)
        .custom_flags(libc::O_TMPFILE)
        .open(dir);
    match tmpfile {
        Ok(file) => Ok(file),
        Err(e)
            if e.raw_os_error() == Some(libc::EOPNOTSUPP)
                || e.raw_os_error() == Some(libc::EISDIR) =>
        {
            let name: [u8; 12] = super::random_bytes()?;
            let path = dir.join(format!(".supervisor-spool-{}", hex(&name)));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(UNOPENED)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(file)
        }
        Err(e) => Err(e),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Identity of a file: device and inode.
pub(crate) fn identity(file: &File) -> io::Result<(u64, u64)> {
    let m = file.metadata()?;
    Ok((m.dev(), m.ino()))
}

/// Whether the receiver has marked the spool as held ([`RECEIVED`]).
pub(crate) fn received(file: &File) -> bool {
    file.metadata()
        .map(|m| m.mode() & 0o777 != UNOPENED)
        .unwrap_or(true)
}

/// Opens descriptor `fd` of process `pid` read-only and checks it is the file `(dev,
/// ino)` (an inode number is reused once its file is gone: callers check more). What
/// the descriptor holds is looked at first: a file with a name is no spool (a file of
/// the user's that a worker keeps open, named by bytes of a result that only look
/// like a reference) and is never opened, so never marked received (chmod 0400).
pub(crate) fn open_remote(pid: u32, fd: i32, dev: u64, ino: u64) -> io::Result<File> {
    let path = format!("/proc/{pid}/fd/{fd}");
    let held = std::fs::metadata(&path)?;
    if !held.is_file() || held.nlink() != 0 || (held.dev(), held.ino()) != (dev, ino) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the descriptor holds no spool",
        ));
    }
    let file = File::open(path)?;
    // Looked at again on what was opened: the descriptor may have changed since, or
    // the spool been given a name (`linkat` of an `O_TMPFILE`).
    let opened = file.metadata()?;
    if (opened.dev(), opened.ino()) != (dev, ino) || opened.nlink() != 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the descriptor now holds another file",
        ));
    }
    Ok(file)
}

/// Marks a spool [`RECEIVED`] (its sender may let go).
pub(crate) fn mark_received(file: &File) -> io::Result<()> {
    file.set_permissions(std::fs::Permissions::from_mode(RECEIVED))
}
