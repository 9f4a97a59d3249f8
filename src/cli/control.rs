//! `--daemon`, and the control socket behind `supervisor status` / `supervisor stop`.
//!
//! The daemon is a re-executed copy of this command (never a fork of a multi-threaded
//! process) in a new session, with stdin from /dev/null, stdout to `--output` and stderr
//! to `--log`. The launcher takes the pidfile's lock first (so of two runs started on one
//! pidfile at once exactly one starts), hands the locked descriptor to the daemon, which
//! holds it for its whole life and writes its pid, and hears through an inherited pipe
//! when the daemon is ready. The control socket lives in `PIDFILE.control/` (mode 0700);
//! see `pidfile.rs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use super::pidfile::{self, PidLock, State};
use super::sys;
use super::Usage;

/// Environment variable that tells the re-executed daemon which fd reports readiness.
pub const ENV_DETACHED: &str = "__SUPERVISOR_DETACHED_READY_FD";
const READY_FD: i32 = 3;
/// The locked pidfile, inherited by the daemon.
const LOCK_FD: i32 = 4;
/// Clients served at once; more get "busy" at once rather than waiting.
const MAX_CLIENTS: usize = 16;
/// How long a client may take to send its request.
const REQUEST_TIME: Duration = Duration::from_secs(5);
/// Longest socket path `bind`/`connect` take (`sun_path` less its NUL).
const SUN_PATH_MAX: usize = 107;

fn open_out(path: &Option<PathBuf>) -> anyhow::Result<Stdio> {
    Ok(match path {
        Some(p) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open {}", p.display()))?,
        ),
        None => Stdio::null(),
    })
}

/// Starts the detached copy and waits until it is running. Returns its pid. A pidfile
/// held by a live run is a usage error (exit 2), and nothing starts.
pub fn launch(
    pidfile: &Path,
    output: &Option<PathBuf>,
    log: &Option<PathBuf>,
) -> anyhow::Result<u32> {
    let lock = PidLock::take(pidfile).map_err(|e| match e {
        e @ pidfile::TakeError::Held { .. } => anyhow::Error::new(Usage(e.to_string())),
        e => anyhow::Error::new(e),
    })?;
    lock.remove_stale()
        .context("cannot remove what an earlier run left")?;
    match start_detached(&lock, output, log) {
        // The daemon holds the lock now (the same open file): ours may go.
        Ok(pid) => Ok(pid),
        Err(e) => {
            lock.release();
            Err(e)
        }
    }
}

fn start_detached(
    lock: &PidLock,
    output: &Option<PathBuf>,
    log: &Option<PathBuf>,
) -> anyhow::Result<u32> {
    let (ready_r, ready_w) = sys::pipe()?;
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--daemon")
        .collect();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(&args)
        .env(ENV_DETACHED, READY_FD.to_string())
        .stdin(Stdio::null())
        .stdout(open_out(output)?)
        .stderr(open_out(log)?);
    let fds = [
        (ready_w.as_raw_fd(), READY_FD),
        (lock.fd().as_raw_fd(), LOCK_FD),
    ];
    // SAFETY: `detach_child` is async-signal-safe (setsid, fcntl, dup2 on integers).
    unsafe {
        cmd.pre_exec(move || sys::detach_child(&fds));
    }
    let child = cmd.spawn().context("cannot start the background run")?;
    drop(ready_w);
    let mut said = String::new();
    std::fs::File::from(ready_r).read_to_string(&mut said)?;
    match said.trim() {
        "ready" => Ok(child.id()),
        "" => bail!(
            "the background run exited before it was ready{}",
            log.as_ref()
                .map(|l| format!("; see {}", l.display()))
                .unwrap_or_default()
        ),
        other => bail!("the background run failed: {other}"),
    }
}

/// The detached side: pidfile, control socket, readiness report.
pub struct Daemon {
    lock: Option<PidLock>,
}

impl Daemon {
    /// If this process is the detached copy, takes over its readiness pipe.
    pub fn detached() -> Option<std::fs::File> {
        let fd: i32 = std::env::var(ENV_DETACHED).ok()?.parse().ok()?;
        sys::inherited(fd).map(std::fs::File::from)
    }

    /// Takes over the locked pidfile, writes the pid, opens the control socket and
    /// reports ready; `handle` answers each line received ("status", "stop").
    pub fn start(
        pidfile: &Path,
        ready: std::fs::File,
        handle: Arc<dyn Fn(&str) -> String + Send + Sync>,
    ) -> anyhow::Result<Daemon> {
        let fd: OwnedFd =
            sys::inherited(LOCK_FD).context("the pidfile's lock was not passed on")?;
        let mut lock = PidLock::inherited(pidfile, fd)
            .with_context(|| format!("cannot hold the pidfile {}", pidfile.display()))?;
        lock.write_pid(std::process::id())
            .with_context(|| format!("cannot write the pidfile {}", pidfile.display()))?;
        let daemon = Daemon { lock: Some(lock) };
        let dir = pidfile::make_control_dir(pidfile).with_context(|| {
            format!("cannot create {}", pidfile::control_dir(pidfile).display())
        })?;
        let listener = {
            let (path, _dir) = reachable(&dir.join("sock"))?;
            UnixListener::bind(&path).context("cannot create the control socket")?
        };
        std::thread::Builder::new()
            .name("supervisor-control".into())
            .spawn(move || accept(listener, handle))?;
        let mut ready = ready;
        let _ = ready.write_all(b"ready\n");
        Ok(daemon)
    }

    /// Reports a start-up failure to the launcher.
    pub fn fail(ready: std::fs::File, message: &str) {
        let mut ready = ready;
        let _ = writeln!(ready, "{message}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(lock) = self.lock.take() {
            lock.release();
        }
    }
}

/// Serves every client on its own thread (up to [`MAX_CLIENTS`] at once), so one idle
/// connection does not hold up the next.
fn accept(listener: UnixListener, handle: Arc<dyn Fn(&str) -> String + Send + Sync>) {
    let live = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming().flatten() {
        if live.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            live.fetch_sub(1, Ordering::SeqCst);
            let _ = (&conn).write_all(b"busy\n");
            continue;
        }
        let (handle, served) = (handle.clone(), live.clone());
        let spawned = std::thread::Builder::new()
            .name("supervisor-client".into())
            .spawn(move || {
                let _ = serve(conn, &*handle);
                served.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            live.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A path `bind`/`connect` accept for `socket`: itself, or when it is too long, the same
/// file through `/proc/self/fd` of its directory (kept open by the second value).
fn reachable(socket: &Path) -> anyhow::Result<(PathBuf, Option<std::fs::File>)> {
    if socket.as_os_str().len() <= SUN_PATH_MAX {
        return Ok((socket.to_path_buf(), None));
    }
    let dir = socket.parent().context("a socket in a directory")?;
    let dir = std::fs::File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    let name = socket.file_name().context("a socket name")?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    Ok((short, Some(dir)))
}

fn serve(conn: UnixStream, handle: &dyn Fn(&str) -> String) -> std::io::Result<()> {
    conn.set_read_timeout(Some(REQUEST_TIME))?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let answer = handle(line.trim());
    (&conn).write_all(answer.as_bytes())?;
    (&conn).write_all(b"\n")
}

fn ask(pidfile: &Path, pid: Option<i32>, request: &str) -> anyhow::Result<String> {
    let socket = pidfile::control_socket(pidfile);
    let who = pid.map_or_else(|| "the run".to_string(), |p| format!("the run {p}"));
    let (path, _dir) = reachable(&socket)?;
    let mut conn = UnixStream::connect(&path)
        .with_context(|| format!("cannot reach {who} at {}", socket.display()))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.write_all(format!("{request}\n").as_bytes())?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)
        .with_context(|| format!("no answer from {who}"))?;
    Ok(answer.trim().to_string())
}

fn inspect(pidfile: &Path) -> anyhow::Result<State> {
    pidfile::inspect(pidfile).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "no run uses {}: the pidfile does not exist (a run removes it when it ends)",
                pidfile.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("cannot read the pidfile {}", pidfile.display()))
        }
    })
}

/// `supervisor status`: prints the run's state (JSON). Exit 0, 1 if its run is over
/// (a pidfile nobody holds), an error (exit 2) if there is no pidfile.
pub fn status(pidfile: &Path) -> anyhow::Result<i32> {
    match inspect(pidfile)? {
        State::Stale { pid } => {
            let line = match pid {
                Some(pid) => format!("{{\"running\":false,\"pid\":{pid}}}\n"),
                None => "{\"running\":false}\n".to_string(),
            };
            Ok(super::print_out(&line).err().unwrap_or(1))
        }
        State::Running { pid } => {
            let answer = ask(pidfile, pid, "status")?;
            Ok(super::print_out(&format!("{answer}\n")).err().unwrap_or(0))
        }
    }
}

/// `supervisor stop`: asks the run to stop (as SIGTERM would); with `wait`, also waits
/// until it has exited, up to `timeout` (exit 1 if it has not by then).
pub fn stop(pidfile: &Path, wait: bool, timeout: Option<Duration>) -> anyhow::Result<i32> {
    let pid = match inspect(pidfile)? {
        State::Stale { pid } => {
            let who = pid.map_or_else(|| "the run".to_string(), |p| format!("the run {p}"));
            say!("supervisor: {who} is not running");
            return Ok(1);
        }
        State::Running { pid } => pid,
    };
    ask(pidfile, pid, "stop")?;
    let who = pid.map_or_else(|| "the run".to_string(), |p| format!("the run {p}"));
    if !wait {
        say!("supervisor: asked {who} to stop");
        return Ok(0);
    }
    let ended = match pid {
        Some(pid) => sys::wait_exit(pid, timeout.unwrap_or(Duration::MAX)),
        None => false,
    };
    if !ended || matches!(pidfile::inspect(pidfile), Ok(State::Running { .. })) {
        let within = timeout.map_or_else(String::new, |t| {
            format!(" within {}", humantime::format_duration(t))
        });
        say!("supervisor: {who} has not stopped{within}");
        return Ok(1);
    }
    say!("supervisor: stopped {who}");
    Ok(0)
}
