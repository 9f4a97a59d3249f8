//! A real nats-server (JetStream, file storage) on a free loopback port with its own
//! store directory, and real `supervisor worker` agents, for tests/cluster/.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_supervisor");

/// Installs nats-server if it is missing (once per test binary), with .ci/setup.
pub fn setup() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        if let Some(p) = find("nats-server") {
            return p;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/setup");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .expect("bash runs .ci/setup");
        assert!(
            out.status.success(),
            "{} could not install nats-server, which these tests need: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        find("nats-server").expect("nats-server is on PATH after .ci/setup")
    })
    .clone()
}

fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One nats-server with JetStream; stopped and its store removed on drop.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    pub host: String,
    extra: Vec<String>,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Self::start_on("127.0.0.1", extra)
    }

    pub fn start_on(host: &str, extra: &[&str]) -> Server {
        Self::start_in(&[], host, extra)
    }

    /// Started under `prefix` (e.g. `ip netns exec NS`), listening on `host`.
    pub fn start_in(prefix: &[&str], host: &str, extra: &[&str]) -> Server {
        let dir = std::env::temp_dir().join(format!("nats-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = Server {
            child: None,
            port: free_port(),
            dir,
            host: host.to_string(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.launch(prefix);
        s
    }

    /// Starts the server process (again), `prefix` before it (e.g. `ip netns exec`).
    pub fn launch(&mut self, prefix: &[&str]) {
        let log = self.dir.join("server.log");
        let _ = std::fs::remove_file(&log);
        let server = setup();
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&server);
                c
            }
            None => Command::new(&server),
        };
        cmd.args(["-js", "-a", &self.host, "-p", &self.port.to_string(), "-sd"])
            .arg(self.dir.join("store"))
            .args(&self.extra)
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn().expect("nats-server starts"));
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Server is ready") {
                return;
            }
            assert!(Instant::now() < until, "nats-server did not start: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.host, self.port)
    }

    /// Stops the server (SIGTERM, waits).
    pub fn stop(&mut self) {
        self.end(libc::SIGTERM);
    }

    /// Kills the server at once (SIGKILL): nothing it has not written yet is kept,
    /// acknowledgements it has not stored included.
    pub fn kill(&mut self) {
        self.end(libc::SIGKILL);
    }

    fn end(&mut self, signal: i32) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: a child of ours, not yet reaped.
            unsafe { libc::kill(c.id() as i32, signal) };
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `supervisor worker` process; killed and reaped on drop.
pub struct Agent {
    pub child: Child,
    pub name: String,
    lines: std::sync::mpsc::Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
    ended: bool,
}

impl Agent {
    pub fn start(url: &str, name: &str, procs: usize, extra: &[&str]) -> Agent {
        Self::start_with(&[], url, name, procs, extra)
    }

    pub fn start_with(
        prefix: &[&str],
        url: &str,
        name: &str,
        procs: usize,
        extra: &[&str],
    ) -> Agent {
        let procs = procs.to_string();
        let mut args: Vec<&str> = prefix.to_vec();
        args.push(BIN);
        args.extend(["worker", "--nats", url, "-j", &procs, "--host", name]);
        args.extend(extra);
        let child = Command::new(args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the agent starts");
        let mut child = child;
        let stderr = child.stderr.take().expect("piped");
        let (tx, lines) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Agent {
            child,
            name: name.to_string(),
            lines,
            reader: Some(reader),
            ended: false,
        }
    }

    /// Waits for a line of the agent's stderr that holds `needle`.
    pub fn expect_line(&self, needle: &str, within: Duration) -> String {
        let until = Instant::now() + within;
        let mut seen = Vec::new();
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!(
            "agent {} said no `{needle}` within {within:?}; it said: {seen:?}",
            self.name
        );
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: a child of ours, not yet reaped (it is reaped on drop).
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }
}

impl Agent {
    /// Stops the agent (SIGTERM) and returns the stderr lines not read yet.
    pub fn finish(mut self) -> Vec<String> {
        self.stop();
        self.lines.try_iter().collect()
    }

    fn stop(&mut self) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        self.signal(libc::SIGCONT);
        self.signal(libc::SIGTERM);
        let until = Instant::now() + Duration::from_secs(10);
        let mut exited = false;
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a run printed.
pub struct Out {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Runs `supervisor ARGS` with `stdin`, to the end.
pub fn supervisor(args: &[&str], stdin: &[u8]) -> Out {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("supervisor starts");
    let mut input = child.stdin.take().unwrap();
    let text = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&text);
    });
    let out = child.wait_with_output().expect("supervisor ends");
    let _ = writer.join();
    Out {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Network namespaces made for one test: the server's (`S`, with a bridge at
/// `10.203.N.1`) and one per agent, each linked to the bridge by a veth pair, and the
/// root namespace linked the same way (the submitter runs there). Removed on drop.
pub struct Netns {
    pub server_ns: String,
    pub agent_ns: Vec<String>,
    pub server_addr: String,
    root_veth: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    pub fn make(agents: usize) -> Result<Netns, String> {
        let p = std::process::id();
        let net = 10 + p % 240;
        let made = Netns {
            server_ns: format!("svS{p}"),
            agent_ns: (0..agents).map(|i| format!("svA{i}x{p}")).collect(),
            server_addr: format!("10.203.{net}.1"),
            root_veth: format!("svr{p}"),
        };
        let s = made.server_ns.clone();
        ip(&["netns", "add", &s])?;
        ip(&["-n", &s, "link", "set", "lo", "up"])?;
        ip(&["-n", &s, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "-n",
            &s,
            "addr",
            "add",
            &format!("{}/24", made.server_addr),
            "dev",
            "br0",
        ])?;
        ip(&["-n", &s, "link", "set", "br0", "up"])?;
        let link = |outer: &str, ns: Option<&str>, host: u32| -> Result<(), String> {
            let inner = format!("{outer}s");
            ip(&["link", "add", outer, "type", "veth", "peer", "name", &inner])?;
            ip(&["link", "set", &inner, "netns", &s])?;
            ip(&["-n", &s, "link", "set", &inner, "master", "br0", "up"])?;
            let addr = format!("10.203.{net}.{host}/24");
            match ns {
                Some(ns) => {
                    ip(&["link", "set", outer, "netns", ns])?;
                    ip(&["-n", ns, "addr", "add", &addr, "dev", outer])?;
                    ip(&["-n", ns, "link", "set", outer, "up"])?;
                    ip(&["-n", ns, "link", "set", "lo", "up"])
                }
                None => {
                    ip(&["addr", "add", &addr, "dev", outer])?;
                    ip(&["link", "set", outer, "up"])
                }
            }
        };
        link(&made.root_veth.clone(), None, 250)?;
        for (i, ns) in made.agent_ns.clone().iter().enumerate() {
            ip(&["netns", "add", ns])?;
            link(&format!("sva{i}x{p}"), Some(ns), 2 + i as u32)?;
        }
        Ok(made)
    }

    /// `ip netns exec NS`, to put before a command.
    pub fn exec(ns: &str) -> Vec<String> {
        ["ip", "netns", "exec", ns]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.root_veth]);
        for ns in self.agent_ns.iter().chain(std::iter::once(&self.server_ns)) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// A `supervisor run` (or any subcommand) whose stdout and stderr lines are read as
/// they come: a test waits on what it says, then on its end. Killed and reaped on drop.
pub struct Live {
    pub child: Child,
    out: std::sync::mpsc::Receiver<String>,
    err: std::sync::mpsc::Receiver<String>,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn lines_of(
    r: impl std::io::Read + Send + 'static,
) -> (
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<()>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (rx, t)
}

impl Live {
    pub fn start(args: &[&str], stdin: &[u8]) -> Live {
        use std::io::Write;
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("supervisor starts");
        let mut input = child.stdin.take().unwrap();
        let text = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&text);
        });
        let (out, t1) = lines_of(child.stdout.take().unwrap());
        let (err, t2) = lines_of(child.stderr.take().unwrap());
        Live {
            child,
            out,
            err,
            stdout: Vec::new(),
            stderr: Vec::new(),
            threads: vec![writer, t1, t2],
        }
    }

    /// Waits for a stderr line holding `needle`.
    pub fn expect_stderr(&mut self, needle: &str, within: Duration) -> String {
        let until = Instant::now() + within;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.err.recv_timeout(left) {
                Ok(line) => {
                    self.stderr.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "the run said no `{needle}` within {within:?} on stderr; it said: {:?}",
            self.stderr
        );
    }

    /// Waits for `n` stdout lines in all.
    pub fn expect_stdout_lines(&mut self, n: usize, within: Duration) {
        let until = Instant::now() + within;
        while self.stdout.len() < n {
            let left = until
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("{} of {n} lines within {within:?}", self.stdout.len()));
            match self.out.recv_timeout(left) {
                Ok(line) => self.stdout.push(line),
                Err(_) => panic!("{} of {n} lines within {within:?}", self.stdout.len()),
            }
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: a child of ours, not yet reaped (it is reaped on drop or by `end`).
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for the end (the caller's deadline bounds it): the exit code, with every
    /// line read.
    pub fn end(&mut self) -> Option<i32> {
        let status = self.child.wait().expect("waits");
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.stdout.extend(self.out.try_iter());
        self.stderr.extend(self.err.try_iter());
        status.code()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Waits until `workers --nats` lists agent `host` busy (a poll of the server's
/// agent list, at most 20 s).
/// Waits until `supervisor workers` lists every host of `hosts` (each agent connected
/// and serving), at most 30 s.
pub fn wait_listed(url: &str, hosts: &[&str]) {
    for _ in 0..300 {
        let out = supervisor(&["workers", "--nats", url, "--format", "json"], b"");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let listed = |h: &str| v.as_array().into_iter().flatten().any(|a| a["host"] == h);
        if hosts.iter().all(|h| listed(h)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("agents {hosts:?} were never all listed");
}

pub fn wait_busy(url: &str, host: &str) {
    for _ in 0..200 {
        let out = supervisor(&["workers", "--nats", url, "--format", "json"], b"");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let busy = v
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["host"] == host && a["busy"].as_u64() > Some(0));
        if busy {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("agent {host} never got busy");
}
