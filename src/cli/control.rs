//! `--daemon`, and the control socket behind `supervisor status` / `supervisor stop`.
//!
//! The daemon is a re-executed copy of this command (never a fork of a multi-threaded
//! process) in a new session, with stdin from /dev/null, stdout to `--output` and stderr
//! to `--log`. It writes the pidfile (`PID` then the control socket's path) and tells
//! the launcher it is ready through an inherited pipe. The control socket lives in a
//! fresh directory of mode 0700.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use super::sys;

/// Environment variable that tells the re-executed daemon which fd reports readiness.
pub const ENV_DETACHED: &str = "__SUPERVISOR_DETACHED_READY_FD";
const READY_FD: i32 = 3;

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

/// Starts the detached copy and waits until it is running. Returns its pid.
pub fn launch(output: &Option<PathBuf>, log: &Option<PathBuf>) -> anyhow::Result<u32> {
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
    let raw = ready_w.as_raw_fd();
    // SAFETY: `detach_child` is async-signal-safe (setsid, dup2 on plain integers).
    unsafe {
        cmd.pre_exec(move || sys::detach_child(raw, READY_FD));
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
    pidfile: PathBuf,
    dir: PathBuf,
    ready: Option<std::fs::File>,
}

impl Daemon {
    /// If this process is the detached copy, takes over its readiness pipe.
    pub fn detached() -> Option<std::fs::File> {
        let fd: i32 = std::env::var(ENV_DETACHED).ok()?.parse().ok()?;
        sys::inherited(fd).map(std::fs::File::from)
    }

    /// Writes the pidfile and opens the control socket; `handle` answers each line
    /// received ("status", "stop").
    pub fn start(
        pidfile: &Path,
        ready: std::fs::File,
        handle: Arc<dyn Fn(&str) -> String + Send + Sync>,
    ) -> anyhow::Result<Daemon> {
        let dir = sys::private_dir("supervisor-control-")?;
        let socket = dir.join("control.sock");
        let listener = UnixListener::bind(&socket).context("cannot create the control socket")?;
        let mut daemon = Daemon {
            pidfile: pidfile.to_path_buf(),
            dir,
            ready: Some(ready),
        };
        std::fs::write(
            pidfile,
            format!("{}\n{}\n", std::process::id(), socket.display()),
        )
        .with_context(|| format!("cannot write the pidfile {}", pidfile.display()))?;
        std::thread::Builder::new()
            .name("supervisor-control".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    let handle = handle.clone();
                    let _ = serve(conn, &*handle);
                }
            })?;
        if let Some(mut ready) = daemon.ready.take() {
            let _ = ready.write_all(b"ready\n");
        }
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
        let _ = std::fs::remove_file(&self.pidfile);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn serve(conn: UnixStream, handle: &dyn Fn(&str) -> String) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let answer = handle(line.trim());
    (&conn).write_all(answer.as_bytes())?;
    (&conn).write_all(b"\n")
}

fn read_pidfile(pidfile: &Path) -> anyhow::Result<(i32, PathBuf)> {
    let text = std::fs::read_to_string(pidfile)
        .with_context(|| format!("cannot read the pidfile {}", pidfile.display()))?;
    let mut lines = text.lines();
    let pid = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("{} holds no pid", pidfile.display()))?;
    let socket = lines
        .next()
        .map(PathBuf::from)
        .with_context(|| format!("{} names no control socket", pidfile.display()))?;
    Ok((pid, socket))
}

fn ask(socket: &Path, request: &str) -> anyhow::Result<String> {
    let mut conn = UnixStream::connect(socket)
        .with_context(|| format!("cannot reach the run at {}", socket.display()))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.write_all(format!("{request}\n").as_bytes())?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)?;
    Ok(answer.trim().to_string())
}

/// The pid of a live run behind `pidfile`, if there is one.
pub fn running(pidfile: &Path) -> Option<i32> {
    let (pid, _) = read_pidfile(pidfile).ok()?;
    sys::alive(pid).then_some(pid)
}

/// `supervisor status`: prints the run's state (JSON). Exit 0, or 1 if not running.
pub fn status(pidfile: &Path) -> anyhow::Result<i32> {
    if !pidfile.exists() {
        println!("{{\"running\":false}}");
        return Ok(1);
    }
    let (pid, socket) = read_pidfile(pidfile)?;
    if !sys::alive(pid) {
        println!("{{\"running\":false,\"pid\":{pid}}}");
        return Ok(1);
    }
    println!("{}", ask(&socket, "status")?);
    Ok(0)
}

/// `supervisor stop`: asks the run to stop and waits until it has exited.
pub fn stop(pidfile: &Path) -> anyhow::Result<i32> {
    let (pid, socket) = read_pidfile(pidfile)?;
    if !sys::alive(pid) {
        eprintln!("supervisor: the run {pid} is not running");
        return Ok(1);
    }
    ask(&socket, "stop")?;
    if !sys::wait_exit(pid, Duration::from_secs(120)) {
        bail!("the run {pid} did not stop within 120 s");
    }
    eprintln!("supervisor: stopped the run {pid}");
    Ok(0)
}
