//! `--daemon`, and the control socket behind `supervisor status` / `supervisor stop`.
//!
//! The daemon is a re-executed copy of this command (never a fork of a multi-threaded
//! process) in a new session, with stdin from /dev/null, stdout to `--output` and stderr
//! to `--log`. The launcher takes the pidfile's lock first (so of two runs started on one
//! pidfile at once exactly one starts), hands the locked descriptor to the daemon, which
//! holds it for its whole life and writes its pid, and hears through an inherited pipe
//! when the daemon is ready. The control socket lives in `PIDFILE.control/` (mode 0700);
//! see `pidfile.rs`.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::pidfile::{self, PidLock, State, TakeError};
use super::sys;
use super::Usage;

/// Environment variable that tells the re-executed daemon which fd reports readiness.
pub const ENV_DETACHED: &str = "__SUPERVISOR_DETACHED_READY_FD";
const READY_FD: i32 = 3;
/// The locked pidfile, inherited by the daemon.
const LOCK_FD: i32 = 4;
/// Clients served at once; more get "busy" at once rather than waiting.
const MAX_CLIENTS: usize = 16;
/// How long a client may take to send its whole request.
const REQUEST_TIME: Duration = Duration::from_secs(5);
/// The longest request read (the requests are a word); a longer one gets an error.
const MAX_REQUEST: usize = 4096;
/// How much of an unknown request its answer repeats.
const ECHOED: usize = 64;
/// The server's answer when [`MAX_CLIENTS`] are connected.
const BUSY: &str = "busy";
/// How long `status` and `stop` retry while the run is busy: longer than a client may
/// hold its place, so a run with all places held by silent clients still answers.
const BUSY_WAIT: Duration = Duration::from_secs(7);
/// How long `status` and `stop` wait for a starting run (it holds the pidfile's lock)
/// to open its control socket.
const STARTING_WAIT: Duration = Duration::from_secs(2);
/// Longest socket path `bind`/`connect` take (`sun_path` less its NUL).
const SUN_PATH_MAX: usize = 107;

fn open_out(option: &str, path: &Option<PathBuf>) -> anyhow::Result<Stdio> {
    let Some(p) = path else {
        return Ok(Stdio::null());
    };
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    let file = match options.clone().custom_flags(libc::O_NOFOLLOW).open(p) {
        // A link (ELOOP; some kernels refuse a protected one with EACCES first).
        Err(e)
            if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::EACCES))
                && std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()) =>
        {
            followable(option, p)?;
            options.open(p)
        }
        other => other,
    };
    Ok(Stdio::from(
        file.with_context(|| format!("cannot open {}", p.display()))?,
    ))
}

/// Refuses the symbolic link `link` where the kernel's `fs.protected_symlinks` would (on
/// or not on this machine): in a sticky world-writable directory (like /tmp), a link
/// owned neither by us nor by the directory's owner (someone else's trap).
fn followable(option: &str, link: &Path) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(link)
        .with_context(|| format!("cannot open {}", link.display()))?;
    let dir = match link.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir_meta =
        std::fs::metadata(dir).with_context(|| format!("cannot open {}", link.display()))?;
    let sticky_open_to_all = dir_meta.mode() & 0o1002 == 0o1002;
    if sticky_open_to_all && meta.uid() != sys::euid() && meta.uid() != dir_meta.uid() {
        return Err(anyhow::Error::new(super::Usage(format!(
            "{option} {} is a symbolic link of uid {} in the sticky world-writable directory {}: not followed (as fs.protected_symlinks does); name the file itself",
            link.display(),
            meta.uid(),
            dir.display()
        ))));
    }
    Ok(())
}

/// Whether the input file `path` is this process's standard input (which the
/// background run does not keep): `/dev/stdin` and its aliases, or the very pipe,
/// terminal or socket on descriptor 0.
pub fn names_stdin(path: &Path) -> bool {
    const ALIASES: [&str; 5] = [
        "-",
        "/dev/stdin",
        "/dev/fd/0",
        "/proc/self/fd/0",
        "/proc/thread-self/fd/0",
    ];
    if ALIASES.iter().any(|a| path.as_os_str() == *a) {
        return true;
    }
    match (
        std::fs::metadata(path),
        std::fs::metadata("/proc/self/fd/0"),
    ) {
        (Ok(a), Ok(b)) => !b.is_file() && a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Starts the detached copy and waits until it is running. Returns its pid. A pidfile
/// held by a live run is a usage error (exit 2), and nothing starts.
pub fn launch(
    pidfile: &Path,
    output: &Option<PathBuf>,
    log: &Option<PathBuf>,
) -> anyhow::Result<u32> {
    let lock = PidLock::take(pidfile).map_err(|e| match e {
        e @ (TakeError::Held { .. } | TakeError::NotRegular { .. }) => {
            anyhow::Error::new(Usage(e.to_string()))
        }
        e => anyhow::Error::new(e),
    })?;
    if let Err(e) = lock.remove_stale() {
        lock.release();
        return Err(anyhow::Error::new(Usage(format!(
            "cannot use the pidfile {}: {e}; remove it or choose another --pidfile",
            pidfile.display()
        ))));
    }
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
        .stdout(open_out("--output", output)?)
        .stderr(open_out("--log", log)?);
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
            // The client may see its request refused (EPIPE) or the connection reset
            // after this line; `ask` reads the line either way.
            let _ = (&conn).write_all(format!("{BUSY}\n").as_bytes());
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
    let answer = match read_request(&conn)? {
        Ok(request) => match request.as_str() {
            "status" | "stop" => handle(&request),
            other => {
                let shown: String = other.chars().take(ECHOED).collect();
                let more = if shown.len() < other.len() { "..." } else { "" };
                format!("unknown request `{shown}{more}`")
            }
        },
        Err(refusal) => refusal,
    };
    conn.set_write_timeout(Some(REQUEST_TIME))?;
    (&conn).write_all(format!("{answer}\n").as_bytes())
}

/// Reads one request line (without its newline, trimmed), within [`REQUEST_TIME`] for
/// the whole of it and at most [`MAX_REQUEST`] bytes; else the refusal to answer.
fn read_request(conn: &UnixStream) -> std::io::Result<Result<String, String>> {
    let deadline = Instant::now() + REQUEST_TIME;
    let mut request = Vec::with_capacity(64);
    let mut chunk = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Err(format!(
                "error: no whole request within {}",
                humantime::format_duration(REQUEST_TIME)
            )));
        }
        conn.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        let n = match (&*conn).read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        let end = if n == 0 {
            Some(request.len())
        } else {
            let at = request.len();
            request.extend_from_slice(&chunk[..n]);
            request[at..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| at + i)
        };
        match end {
            Some(end) if end <= MAX_REQUEST => {
                request.truncate(end);
                return Ok(Ok(String::from_utf8_lossy(&request).trim().to_string()));
            }
            _ if request.len() > MAX_REQUEST => {
                return Ok(Err(format!(
                    "error: request too long (over {MAX_REQUEST} bytes)"
                )));
            }
            _ => {}
        }
    }
}

/// Why a request found no answer.
enum AskError {
    /// The socket cannot be reached (not there yet, or nobody listening).
    Unreachable(anyhow::Error),
    /// Anything else.
    Other(anyhow::Error),
}

fn who(pid: Option<i32>) -> String {
    pid.map_or_else(|| "the run".to_string(), |p| format!("the run {p}"))
}

/// Sends `request` to the run behind `pidfile` and returns its answer. A run still
/// starting (holding the lock, its socket not open yet) is waited for up to
/// [`STARTING_WAIT`]; a busy one is asked again up to [`BUSY_WAIT`].
fn ask(pidfile: &Path, pid: Option<i32>, request: &str) -> anyhow::Result<String> {
    let started = Instant::now();
    let mut pid = pid;
    loop {
        match exchange(pidfile, pid, request) {
            Ok(answer) if answer == BUSY => {
                if started.elapsed() >= BUSY_WAIT {
                    bail!(
                        "{} is busy: {MAX_CLIENTS} clients hold its control socket {} (for up to {} each); try again",
                        who(pid),
                        pidfile::control_socket(pidfile).display(),
                        humantime::format_duration(REQUEST_TIME)
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(answer) => return Ok(answer),
            Err(AskError::Unreachable(e)) if started.elapsed() < STARTING_WAIT => {
                // Still starting? Only while a run holds the lock.
                match pidfile::inspect(pidfile) {
                    Ok(pidfile::Inspected {
                        state: State::Running { pid: now },
                        ..
                    }) => pid = now.or(pid),
                    _ => return Err(e),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(AskError::Unreachable(e) | AskError::Other(e)) => return Err(e),
        }
    }
}

fn exchange(pidfile: &Path, pid: Option<i32>, request: &str) -> Result<String, AskError> {
    let socket = pidfile::control_socket(pidfile);
    let dir = pidfile::control_dir(pidfile);
    // Never through a link: the run makes a directory.
    if std::fs::symlink_metadata(&dir).is_ok_and(|m| !m.file_type().is_dir()) {
        return Err(AskError::Other(anyhow::anyhow!(
            "{} is not the run's control directory (not a directory: a link?); not followed",
            dir.display()
        )));
    }
    let (path, _dir) = reachable(&socket).map_err(AskError::Other)?;
    let mut conn = match UnixStream::connect(&path) {
        Ok(conn) => conn,
        Err(e) => {
            let unreachable = matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            );
            let e = anyhow::Error::new(e).context(format!(
                "cannot reach {} at {}",
                who(pid),
                socket.display()
            ));
            return Err(if unreachable {
                AskError::Unreachable(e)
            } else {
                AskError::Other(e)
            });
        }
    };
    let other = |e: std::io::Error| AskError::Other(e.into());
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(other)?;
    conn.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(other)?;
    // A refused request (EPIPE: a busy run closed at once) still has its answer to read.
    let sent = conn.write_all(format!("{request}\n").as_bytes());
    let mut answer = Vec::new();
    let read = conn.read_to_end(&mut answer);
    // A whole answer ends with a newline (a reset after it loses nothing).
    if answer.ends_with(b"\n") {
        return Ok(String::from_utf8_lossy(&answer).trim().to_string());
    }
    let e = read.err().or(sent.err()).unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the answer was cut off")
    });
    Err(AskError::Other(
        anyhow::Error::new(e).context(format!("no answer from {}", who(pid))),
    ))
}

fn inspect(pidfile: &Path) -> anyhow::Result<State> {
    match pidfile::inspect(pidfile) {
        Ok(found) => {
            for left in &found.left {
                say!("supervisor: {left}");
            }
            Ok(found.state)
        }
        Err(e) if e.is_not_found() => Err(anyhow::anyhow!(
            "no run uses {}: the pidfile does not exist (a run removes it when it ends)",
            pidfile.display()
        )),
        Err(e @ TakeError::NotRegular { .. }) => Err(anyhow::Error::new(Usage(e.to_string()))),
        Err(e) => {
            Err(anyhow::Error::new(e)
                .context(format!("cannot read the pidfile {}", pidfile.display())))
        }
    }
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
            say!("supervisor: {} is not running", who(pid));
            return Ok(1);
        }
        State::Running { pid } => pid,
    };
    ask(pidfile, pid, "stop")?;
    // A run that was starting has written its pid by the time it answers.
    let pid = pid.or_else(|| match pidfile::inspect(pidfile) {
        Ok(pidfile::Inspected {
            state: State::Running { pid },
            ..
        }) => pid,
        _ => None,
    });
    let who = who(pid);
    if !wait {
        say!("supervisor: asked {who} to stop");
        return Ok(0);
    }
    let ended = match pid {
        Some(pid) => sys::wait_exit(pid, timeout.unwrap_or(Duration::MAX)),
        // It answered before its pid could be read, and is gone already.
        None => true,
    };
    if !ended
        || matches!(
            pidfile::inspect(pidfile),
            Ok(pidfile::Inspected {
                state: State::Running { .. },
                ..
            })
        )
    {
        let within = timeout.map_or_else(String::new, |t| {
            format!(" within {}", humantime::format_duration(t))
        });
        say!("supervisor: {who} has not stopped{within}");
        return Ok(1);
    }
    say!("supervisor: stopped {who}");
    Ok(0)
}
