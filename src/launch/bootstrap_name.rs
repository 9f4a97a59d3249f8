//! The name of the directory ipc-channel's one-shot server is about to make, known
//! before it is made, so that a program killed in the instant between that `mkdir`
//! and the socket's `bind` leaves a record saying whose empty directory it was.
//!
//! `IpcOneShotServer::new` makes it with tempfile's `Builder::new().tempdir()`, whose
//! first name is drawn from a generator forked from the calling thread's fastrand
//! generator. Asking tempfile for a name the same way (a `make` whose closure only
//! notes the path and refuses) and putting the thread's seed back gives the name the
//! server's call then draws. That is a dependency's private behaviour: it lives in
//! this file only, and `the_predicted_directory_is_the_one_ipc_channel_makes` fails
//! when a release of either crate changes it. If the prediction is wrong, only the
//! record is (a directory is then left, as before; nothing else changes).

use std::ffi::OsString;
use std::path::Path;

/// Draws the name (`.tmpXXXXXX`, no directory) that the next `tempfile` directory made
/// in `std::env::temp_dir()` on this thread gets, leaving the thread's generator as it
/// was; `None` where it cannot be known (the name would be made in another directory,
/// or is taken). Call it on the thread that calls `IpcOneShotServer::new`, right before.
pub(crate) fn next_temp_dir_name() -> Option<OsString> {
    let seed = fastrand::get_seed();
    let mut seen = None;
    let refused = tempfile::Builder::new().make(|path: &Path| -> std::io::Result<()> {
        seen = Some(path.to_path_buf());
        Err(std::io::Error::other("only the name is wanted"))
    });
    fastrand::seed(seed);
    drop(refused);
    let seen = seen?;
    // Taken already: the server's `mkdir` fails on it and it draws another.
    if std::fs::symlink_metadata(&seen).is_ok() {
        return None;
    }
    // A temporary directory moved by `tempfile::env::override_temp_dir` would put it
    // elsewhere than the probe that records it.
    (seen.parent() == Some(std::env::temp_dir().as_path()))
        .then(|| seen.file_name().map(|n| n.to_os_string()))
        .flatten()
}

/// Whether `name` looks like a name [`next_temp_dir_name`] gives (`.tmp` and six
/// letters or digits): a record's name is read back from the file system.
pub(crate) fn is_temp_dir_name(name: &str) -> bool {
    name.strip_prefix(".tmp")
        .is_some_and(|rest| rest.len() == 6 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc_channel::ipc::IpcOneShotServer;

    #[test]
    fn the_predicted_directory_is_the_one_ipc_channel_makes() {
        for _ in 0..20 {
            let next = next_temp_dir_name().expect("a name in the temporary directory");
            let (server, path) = IpcOneShotServer::<u8>::new().expect("a one-shot server");
            let dir = Path::new(&path).parent().expect("the socket's directory");
            assert_eq!(dir.file_name(), Some(next.as_os_str()), "{path}");
            assert!(is_temp_dir_name(next.to_str().expect("ascii")), "{next:?}");
            drop(server);
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_dir(dir);
        }
    }

    #[test]
    fn only_tempfiles_own_shape_is_taken_for_a_name() {
        assert!(is_temp_dir_name(".tmpAb3xZ9"));
        for name in [
            ".tmp",
            ".tmpAb3xZ",
            ".tmpAb3xZ9a",
            ".tmpAb3x/9",
            "tmpAb3xZ9x",
            ".tmpAb.xZ9",
        ] {
            assert!(!is_temp_dir_name(name), "{name}");
        }
    }
}
