//! The pidfile of a background run: one line (the pid), locked with `flock` for the run's
//! whole life, removed only by the run that holds the lock.
//!
//! The lock, not the pid, says whether a run is alive: a pid can be reused, a lock dies
//! with the last descriptor of its holder. The control socket sits in a directory derived
//! from the pidfile's path (`PIDFILE.control/`, mode 0700), so nothing but the pid is
//! stored and a run killed by SIGKILL leaves nothing that the next `status`, `stop` or
//! `run` on that pidfile cannot recognise as stale and remove.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::sys;

/// How long taking the lock retries while it is held: a `status` holds it (shared) for
/// an instant to test it; a live run holds it for good.
const CONTENDED: Duration = Duration::from_millis(250);

/// Why a pidfile cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// A live run holds it.
    #[error("a run is already using {path} (pid {pid}); stop it or choose another --pidfile", path = .path.display(), pid = pid_text(.pid))]
    Held {
        /// The pidfile.
        path: PathBuf,
        /// The pid it names, if it names one yet.
        pid: Option<i32>,
    },
    /// The file cannot be opened or locked.
    #[error("cannot use the pidfile {}", .path.display())]
    Io {
        /// The pidfile.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn pid_text(pid: &Option<i32>) -> String {
    pid.map_or_else(|| "starting".to_string(), |p| p.to_string())
}

/// The control directory of the run behind `pidfile`.
pub fn control_dir(pidfile: &Path) -> PathBuf {
    let mut name = pidfile.as_os_str().to_owned();
    name.push(".control");
    PathBuf::from(name)
}

/// The control socket of the run behind `pidfile`.
pub fn control_socket(pidfile: &Path) -> PathBuf {
    control_dir(pidfile).join("sock")
}

/// A pidfile this process holds the lock of (the lock is shared with whoever inherits the
/// descriptor: the background run itself).
pub struct PidLock {
    path: PathBuf,
    file: File,
}

impl PidLock {
    /// Opens (creating) and locks `path`; a live holder is [`TakeError::Held`].
    pub fn take(path: &Path) -> Result<PidLock, TakeError> {
        let io = |source| TakeError::Io {
            path: path.to_path_buf(),
            source,
        };
        let contended_until = Instant::now() + CONTENDED;
        loop {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(path)
                .map_err(io)?;
            if !sys::flock(file.as_fd(), sys::Flock::Exclusive).map_err(io)? {
                if Instant::now() < contended_until {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                return Err(TakeError::Held {
                    path: path.to_path_buf(),
                    pid: read_pid(path),
                });
            }
            // Locked; but the holder before us may have removed the file meanwhile (we
            // then hold the lock of a file nobody can find): start again.
            if same_file(&file, path) {
                return Ok(PidLock {
                    path: path.to_path_buf(),
                    file,
                });
            }
        }
    }

    /// Takes over a lock this process inherited as descriptor `fd` (the launcher took it).
    pub fn inherited(path: &Path, fd: OwnedFd) -> std::io::Result<PidLock> {
        sys::set_cloexec(fd.as_fd())?;
        let file = File::from(fd);
        if !same_file(&file, path) {
            return Err(std::io::Error::other("the pidfile was replaced"));
        }
        Ok(PidLock {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The descriptor to hand to the background run.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Writes `pid` as the file's one line.
    pub fn write_pid(&mut self, pid: u32) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file.write_all(format!("{pid}\n").as_bytes())?;
        self.file.flush()
    }

    /// Removes what a run that died without cleaning up left behind (its control
    /// directory); only the holder may, since only it knows no run uses them.
    pub fn remove_stale(&self) -> std::io::Result<()> {
        remove_control_dir(&self.path)
    }

    /// The run is over: removes the control directory and the pidfile (if it is still
    /// ours), then lets go of the lock.
    pub fn release(self) {
        let _ = remove_control_dir(&self.path);
        if same_file(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Creates the control directory (0700) of the run behind `pidfile`.
pub fn make_control_dir(pidfile: &Path) -> std::io::Result<PathBuf> {
    let dir = control_dir(pidfile);
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// Removes a control directory, but only one of ours (not a link, not another user's).
fn remove_control_dir(pidfile: &Path) -> std::io::Result<()> {
    let dir = control_dir(pidfile);
    let meta = match std::fs::symlink_metadata(&dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() || meta.uid() != sys::euid() {
        return Err(std::io::Error::other(format!(
            "{} is not a control directory of ours",
            dir.display()
        )));
    }
    std::fs::remove_dir_all(&dir)
}

/// The pid a pidfile names (its first line), if it names one.
pub fn read_pid(path: &Path) -> Option<i32> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// What a pidfile says about its run.
#[derive(Debug, PartialEq, Eq)]
pub enum State {
    /// A run holds the lock.
    Running {
        /// Its pid (none while it is starting).
        pid: Option<i32>,
    },
    /// Nobody holds it: the run that wrote it is over (it was killed, or it is a file
    /// of something else).
    Stale {
        /// The pid it names.
        pid: Option<i32>,
    },
}

/// Looks at `path` without taking it for good. A stale pidfile's leftovers are removed.
pub fn inspect(path: &Path) -> std::io::Result<State> {
    let file = File::open(path)?;
    let pid = read_pid(path);
    if !sys::flock(file.as_fd(), sys::Flock::SharedTest)? {
        return Ok(State::Running { pid });
    }
    // We hold it (shared) now: nobody runs; what the dead run left is ours to remove.
    let _ = remove_control_dir(path);
    Ok(State::Stale { pid })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pidfile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("run.pid")
    }

    #[test]
    fn a_second_taker_is_refused_while_the_first_holds_the_lock() {
        let path = scratch("second");
        let mut first = PidLock::take(&path).unwrap();
        first.write_pid(4242).unwrap();
        match PidLock::take(&path) {
            Err(TakeError::Held { pid, .. }) => assert_eq!(pid, Some(4242)),
            other => panic!("second take: {:?}", other.map(|_| ())),
        }
        assert_eq!(inspect(&path).unwrap(), State::Running { pid: Some(4242) });
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "4242\n");
        first.release();
        assert!(!path.exists());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_released_holder_does_not_remove_a_newer_holders_file() {
        let path = scratch("newer");
        let old = PidLock::take(&path).unwrap();
        // Someone removed the file and a new run took the path meanwhile.
        std::fs::remove_file(&path).unwrap();
        let mut new = PidLock::take(&path).unwrap();
        new.write_pid(7).unwrap();
        old.release();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "7\n");
        new.release();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_stale_pidfile_is_reported_and_its_control_directory_removed() {
        let path = scratch("stale");
        std::fs::write(&path, "99\n").unwrap();
        make_control_dir(&path).unwrap();
        assert_eq!(inspect(&path).unwrap(), State::Stale { pid: Some(99) });
        assert!(!control_dir(&path).exists());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
