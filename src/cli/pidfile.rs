//! The pidfile of a background run: one line (the pid), locked with `flock` for the run's
//! whole life, removed only by the run that holds the lock.
//!
//! The lock, not the pid, says whether a run is alive: a pid can be reused, a lock dies
//! with the last descriptor of its holder. The control socket sits in a directory derived
//! from the pidfile's path (`PIDFILE.control/`, mode 0700), so nothing but the pid is
//! stored and a run killed by SIGKILL leaves nothing that the next `status`, `stop` or
//! `run` on that pidfile cannot recognise as stale and remove.
//!
//! Nothing here removes what it cannot prove is a run's own: a pidfile is a regular file
//! (never a link, a FIFO or a device: opened with `O_NOFOLLOW | O_NONBLOCK` and checked
//! with `fstat`), removed only by a run that created it or wrote its pid in it, or when
//! it is provably stale; a control directory is removed only when it is ours (our uid,
//! no group or other access) and holds nothing but the socket `sock` (the socket is
//! removed, then the directory: never a recursive removal).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::sys;

/// How long taking the lock retries while it is held: a `status` holds it (shared) for
/// an instant to test it; a live run holds it for good.
const CONTENDED: Duration = Duration::from_millis(250);

/// The socket's name in the control directory.
const SOCKET: &str = "sock";

/// Why a pidfile cannot be taken or read.
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
    /// It is not a regular file (a link, a FIFO, a device, a directory): refused, and
    /// left as it is.
    #[error("{path} is {what}, not a regular file: a pidfile must be one (it is left as it is)", path = .path.display())]
    NotRegular {
        /// The pidfile.
        path: PathBuf,
        /// What it is ("a symbolic link", "a FIFO", ...).
        what: &'static str,
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

impl TakeError {
    /// Whether the pidfile does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, TakeError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

fn pid_text(pid: &Option<i32>) -> String {
    pid.map_or_else(|| "starting".to_string(), |p| p.to_string())
}

/// What a file type is, when it is not a regular file.
fn not_regular(kind: std::fs::FileType) -> Option<&'static str> {
    Some(if kind.is_file() {
        return None;
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    })
}

/// Opens the pidfile `path` (creating it if `create`; read-write then, else read-only)
/// without following a symbolic link or blocking on a FIFO, and only if it is a regular
/// file. Also says whether this call created it.
fn open(path: &Path, create: bool) -> Result<(File, bool), TakeError> {
    let io = |source| TakeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let refuse = |what| TakeError::NotRegular {
        path: path.to_path_buf(),
        what,
    };
    let checked = |result: std::io::Result<File>| -> Result<File, TakeError> {
        let file = result.map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                refuse("a symbolic link")
            } else {
                io(e)
            }
        })?;
        let meta = file.metadata().map_err(io)?;
        match not_regular(meta.file_type()) {
            Some(what) => Err(refuse(what)),
            None => Ok(file),
        }
    };
    let mut options = std::fs::OpenOptions::new();
    options
        .read(true)
        .write(create)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
    loop {
        // Look before opening, so that not even an open reaches a device or a FIFO;
        // fstat after it confirms (the path may change in between).
        match std::fs::symlink_metadata(path) {
            Ok(meta) => {
                if let Some(what) = not_regular(meta.file_type()) {
                    return Err(refuse(what));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                match options.clone().create_new(true).open(path) {
                    Ok(file) => return Ok((checked(Ok(file))?, true)),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return checked(Err(e)).map(|f| (f, false)),
                }
            }
            Err(e) => return Err(io(e)),
        }
        match options.open(path) {
            // Removed since we looked: look again.
            Err(e) if create && e.kind() == std::io::ErrorKind::NotFound => continue,
            result => return checked(result).map(|f| (f, false)),
        }
    }
}

/// The control directory of the run behind `pidfile`.
pub fn control_dir(pidfile: &Path) -> PathBuf {
    let mut name = pidfile.as_os_str().to_owned();
    name.push(".control");
    PathBuf::from(name)
}

/// The control socket of the run behind `pidfile`.
pub fn control_socket(pidfile: &Path) -> PathBuf {
    control_dir(pidfile).join(SOCKET)
}

/// A pidfile this process holds the lock of (the lock is shared with whoever inherits the
/// descriptor: the background run itself).
pub struct PidLock {
    path: PathBuf,
    file: File,
    /// Whether the file is this run's to remove: it created it, or wrote its pid in it.
    ours: bool,
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
            let (file, created) = open(path, true)?;
            if !sys::flock(file.as_fd(), sys::Flock::Exclusive).map_err(io)? {
                if Instant::now() < contended_until {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                return Err(TakeError::Held {
                    path: path.to_path_buf(),
                    pid: pid_in(&file),
                });
            }
            // Locked; but the holder before us may have removed the file meanwhile (we
            // then hold the lock of a file nobody can find): start again.
            if same_file(&file, path) {
                return Ok(PidLock {
                    path: path.to_path_buf(),
                    file,
                    ours: created,
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
            ours: false,
        })
    }

    /// The descriptor to hand to the background run.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Writes `pid` as the file's one line (the file is this run's from then on).
    pub fn write_pid(&mut self, pid: u32) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.ours = true;
        self.file.rewind()?;
        self.file.write_all(format!("{pid}\n").as_bytes())?;
        self.file.flush()
    }

    /// Removes what a run that died without cleaning up left behind (its control
    /// directory); only the holder may, since only it knows no run uses them. An error
    /// says why it was left.
    pub fn remove_stale(&self) -> std::io::Result<()> {
        remove_control_dir(&self.path)
    }

    /// The run is over (or never started): removes the control directory and, if this
    /// run created the pidfile or wrote its pid in it and it is still the same file, the
    /// pidfile; then lets go of the lock.
    pub fn release(self) {
        let _ = remove_control_dir(&self.path);
        if self.ours && same_file(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether `path` (not followed) is the open `file`.
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
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

/// Removes a control directory, but only one provably ours: a directory (not a link) of
/// our uid, closed to group and others, holding nothing but the socket. The socket goes,
/// then the (then empty) directory. An error says why it was left.
fn remove_control_dir(pidfile: &Path) -> std::io::Result<()> {
    let dir = control_dir(pidfile);
    let meta = match std::fs::symlink_metadata(&dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let not_ours = |why: String| {
        Err(std::io::Error::other(format!(
            "{} is not a control directory of ours ({why}); it is left as it is",
            dir.display()
        )))
    };
    if !meta.file_type().is_dir() {
        let what = not_regular(meta.file_type()).unwrap_or("a regular file");
        return not_ours(format!("it is {what}"));
    }
    if meta.uid() != sys::euid() {
        return not_ours(format!("it belongs to uid {}", meta.uid()));
    }
    if meta.mode() & 0o077 != 0 {
        return not_ours(format!(
            "its mode is {:04o}, not 0700",
            meta.mode() & 0o7777
        ));
    }
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if entry.file_name() != SOCKET || !kind.is_socket() {
            return not_ours(format!(
                "it holds {}",
                Path::new(&entry.file_name()).display()
            ));
        }
    }
    match std::fs::remove_file(dir.join(SOCKET)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // Not recursive: if anything appeared meanwhile, this fails and it stays.
    std::fs::remove_dir(&dir)
}

/// The pid an open pidfile names (its first line), if it names one.
fn pid_in(file: &File) -> Option<i32> {
    let mut text = String::new();
    file.try_clone().ok()?.read_to_string(&mut text).ok()?;
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

/// What [`inspect`] found, and what of a dead run's it left alone (and why).
#[derive(Debug)]
pub struct Inspected {
    /// The run's state.
    pub state: State,
    /// Leftovers that are not provably ours, so were not removed.
    pub left: Vec<String>,
}

/// Looks at `path` without taking it for good (never blocking: a FIFO or a device is
/// refused). What a dead run left is removed: its control directory, and the pidfile
/// itself when it is provably stale (see [`provably_stale`]).
pub fn inspect(path: &Path) -> Result<Inspected, TakeError> {
    let (file, _) = open(path, false)?;
    let pid = pid_in(&file);
    let locked =
        sys::flock(file.as_fd(), sys::Flock::SharedTest).map_err(|source| TakeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if !locked {
        return Ok(Inspected {
            state: State::Running { pid },
            left: Vec::new(),
        });
    }
    // We hold it (shared) now: nobody runs, and no run can take it while we hold it;
    // what the dead run left is ours to remove, if it is provably its.
    let mut left = Vec::new();
    if let Err(e) = remove_control_dir(path) {
        left.push(e.to_string());
    }
    if left.is_empty() && provably_stale(&file, path) {
        let _ = std::fs::remove_file(path);
    }
    Ok(Inspected {
        state: State::Stale { pid },
        left,
    })
}

/// Whether an unlocked pidfile is one a run of ours wrote and that run is gone: still
/// the file at `path`, of our uid, its whole content one pid line, and that pid not a
/// live process of this program (no process, a zombie, or another program).
fn provably_stale(file: &File, path: &Path) -> bool {
    let Ok(meta) = file.metadata() else {
        return false;
    };
    if meta.uid() != sys::euid() || !same_file(file, path) || meta.len() > 16 {
        return false;
    }
    let mut text = String::new();
    if file
        .try_clone()
        .and_then(|mut f| {
            f.rewind()?;
            f.read_to_string(&mut text)
        })
        .is_err()
    {
        return false;
    }
    let Some(pid) = text
        .strip_suffix('\n')
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<i32>().ok())
    else {
        return false;
    };
    !live_run(pid)
}

/// Whether `pid` is a live (not zombie) process running this program, or might be (we
/// cannot tell).
fn live_run(pid: i32) -> bool {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat,
        Err(e) => return e.kind() != std::io::ErrorKind::NotFound,
    };
    // The state follows the command name's closing parenthesis.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim().chars().next());
    if matches!(state, Some('Z') | Some('X')) {
        return false;
    }
    match (
        std::fs::read_link(format!("/proc/{pid}/exe")),
        std::fs::read_link("/proc/self/exe"),
    ) {
        (Ok(theirs), Ok(ours)) => theirs == ours,
        _ => true,
    }
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
        assert_eq!(
            inspect(&path).unwrap().state,
            State::Running { pid: Some(4242) }
        );
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
        // The pid of a process that is gone (reaped).
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        std::fs::write(&path, format!("{}\n", gone.id())).unwrap();
        make_control_dir(&path).unwrap();
        let found = inspect(&path).unwrap();
        assert_eq!(
            found.state,
            State::Stale {
                pid: Some(gone.id() as i32)
            }
        );
        assert!(found.left.is_empty(), "{:?}", found.left);
        assert!(!control_dir(&path).exists());
        // Its pid is no live run: the pidfile is provably stale, and removed.
        assert!(!path.exists());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
