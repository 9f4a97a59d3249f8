//! Shared harness for process tests.
//!
//! - `boot` runs before `main` (ctor): `supervisor::init()`, so a re-executed worker
//!   becomes a worker, and scenario dispatch, so a test can run a named scenario in a
//!   separate process of this binary (as another user, or to be SIGKILLed).
//! - [`isolated`] runs a test body with a hard deadline and a leak check: no child,
//!   zombie, descriptor, bootstrap directory or temp entry may be left behind.
//! - The first process of a test binary gets a private `TMPDIR` (inherited by every
//!   process it starts, removed when it exits), so the temp entries it compares are its
//!   own tests' and no other program's.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use supervisor_worker::ProcStat;

pub use supervisor::StartMethod;

/// Environment variable naming the scenario a child copy of the test binary runs.
pub const SCENARIO_ENV: &str = "SUPERVISOR_TEST_SCENARIO";

/// A named piece of code that runs in its own process of the test binary.
pub struct Scenario {
    pub name: &'static str,
    pub run: fn(),
}

#[linkme::distributed_slice]
pub static SCENARIOS: [Scenario];

/// Environment variable naming the private `TMPDIR` of a test binary's process tree.
pub const TMPDIR_ENV: &str = "SUPERVISOR_TEST_TMPDIR";

/// The private `TMPDIR` this process made, with its pid (only the first process of the
/// tree has one; a child forked from it copies this and must not remove it).
static OWN_TMPDIR: OnceLock<(u32, PathBuf)> = OnceLock::new();

/// Gives this process tree a private `TMPDIR`, unless it has one: a child inherits its
/// parent's, and a child started with a cleared environment (a worker with an
/// environment allowlist) still is a child of this binary and makes none (it could not
/// remove it). Runs before `main`, single-threaded.
fn private_tmpdir() {
    if std::env::var_os(TMPDIR_ENV).is_some() || parent_runs_this_binary() {
        return;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "supervisor-test-{}-{nanos:08x}",
        std::process::id()
    ));
    // Like /tmp (sticky, open to all): a scenario may run as another user (`nobody`).
    let made = std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)));
    if made.is_err() {
        let _ = std::fs::remove_dir(&dir);
        return; // the shared one, then; the temp-entry check is off
    }
    std::env::set_var("TMPDIR", &dir);
    std::env::set_var(TMPDIR_ENV, &dir);
    let _ = OWN_TMPDIR.set((std::process::id(), dir));
}

/// Whether the parent process runs this same executable (this is one of its workers,
/// helpers or scenarios; cargo is the parent of a test binary).
fn parent_runs_this_binary() -> bool {
    let parent = std::os::unix::process::parent_id();
    match (
        std::fs::read_link("/proc/self/exe"),
        std::fs::read_link(format!("/proc/{parent}/exe")),
    ) {
        (Ok(me), Ok(theirs)) => me == theirs,
        _ => false,
    }
}

#[ctor::dtor]
fn remove_private_tmpdir() {
    match OWN_TMPDIR.get() {
        Some((pid, dir)) if *pid == std::process::id() => {
            let _ = std::fs::remove_dir_all(dir);
        }
        _ => {}
    }
}

#[ctor::ctor]
fn boot() {
    private_tmpdir();
    supervisor::init();
    if let Ok(name) = std::env::var(SCENARIO_ENV) {
        let scenario = SCENARIOS
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no scenario named {name}"));
        (scenario.run)();
        std::process::exit(0);
    }
}

/// A command that runs scenario `name` in a fresh copy of this test binary.
pub fn scenario(name: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
    cmd.env(SCENARIO_ENV, name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for a scenario's process with a deadline (failing if it hangs): its exit
/// status, stdout and stderr.
pub fn scenario_output(
    child: std::process::Child,
    name: &str,
    within: Duration,
) -> (std::process::ExitStatus, String, String) {
    let pid = child.id() as i32;
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    assert!(wait_exit(pid, within), "{name}: the scenario hung");
    let out = waiter.join().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

static SERIAL: Mutex<()> = Mutex::new(());

/// What must be the same before and after a process test.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    children: BTreeSet<i32>,
    fds: BTreeSet<i32>,
    bootstrap_dirs: BTreeSet<String>,
    tmp_entries: BTreeSet<String>,
    /// What runs in this program's workers' cgroups (escaped descendants, if the
    /// workers are gone).
    cgroup_procs: BTreeSet<i32>,
}

fn snapshot() -> Snapshot {
    Snapshot {
        children: children_of(std::process::id() as i32)
            .into_iter()
            .filter(|pid| !helper_pids().contains(pid))
            .collect(),
        fds: open_fds(),
        bootstrap_dirs: bootstrap_dirs(),
        tmp_entries: tmp_entries(),
        cgroup_procs: cgroup_procs(),
    }
}

/// Every process in the cgroups this program's spawned workers are born in
/// (`supervisor-PID-*/w*` under its own cgroup).
fn cgroup_procs() -> BTreeSet<i32> {
    let Some(own) = own_cgroup_dir() else {
        return BTreeSet::new();
    };
    let mine = format!("supervisor-{}-", std::process::id());
    let dirs = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    };
    dirs(&own)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&mine))
        })
        .flat_map(|home| dirs(&home))
        .flat_map(|worker| {
            std::fs::read_to_string(worker.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// The names in this process tree's private `TMPDIR` (empty without one).
fn tmp_entries() -> BTreeSet<String> {
    let Some(dir) = std::env::var_os(TMPDIR_ENV) else {
        return BTreeSet::new();
    };
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn helper_pids() -> Vec<i32> {
    supervisor::helper_pids()
        .into_iter()
        .map(|p| p as i32)
        .collect()
}

/// Runs `body` with a hard deadline and checks afterwards that it left no child,
/// zombie, descriptor, bootstrap directory or entry of the private `TMPDIR` behind.
/// Tests that use it run one at a time (the checks look at the whole process, and
/// nothing else of this process tree writes to its `TMPDIR` meanwhile).
pub fn isolated<F: FnOnce() + Send + 'static>(deadline: Duration, body: F) {
    isolated_settling(deadline, Duration::from_secs(10), body)
}

/// [`isolated`], waiting at most `settle` for children, descriptors and temp entries to
/// go after `body` returns.
pub fn isolated_settling<F: FnOnce() + Send + 'static>(
    deadline: Duration,
    settle: Duration,
    body: F,
) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    supervisor::ensure_forkserver().expect("forkserver starts");
    let before = snapshot();
    let (done_tx, done_rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
        let _ = done_tx.send(());
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    });
    if done_rx.recv_timeout(deadline).is_err() {
        let dump = process_tree_dump();
        kill_children_except_helpers();
        panic!("test did not finish within {deadline:?}; processes:\n{dump}");
    }
    if let Err(panic) = thread.join() {
        kill_children_except_helpers();
        std::panic::resume_unwind(panic);
    }
    // Children exit asynchronously after their handles are dropped; wait (on their
    // pidfds) for the ones that are still winding down before comparing.
    let settle = Instant::now() + settle;
    let after = loop {
        let now = snapshot();
        let extra: Vec<i32> = now.children.difference(&before.children).copied().collect();
        let settled = now.children == before.children
            && now.fds.len() == before.fds.len()
            && now.bootstrap_dirs.is_subset(&before.bootstrap_dirs)
            && now.tmp_entries.is_subset(&before.tmp_entries)
            && now.cgroup_procs.is_subset(&before.cgroup_procs);
        if settled || Instant::now() > settle {
            break now;
        }
        for pid in extra {
            wait_exit(pid, settle.saturating_duration_since(Instant::now()));
        }
        if now.children == before.children {
            // Only descriptors or directories differ: give the reaper one pass.
            std::thread::yield_now();
            let again = snapshot();
            let settled = again.fds == before.fds
                && again.bootstrap_dirs.is_subset(&before.bootstrap_dirs)
                && again.tmp_entries.is_subset(&before.tmp_entries)
                && again.cgroup_procs.is_subset(&before.cgroup_procs);
            if settled || Instant::now() > settle {
                break again;
            }
        }
    };
    assert_eq!(
        after.children,
        before.children,
        "children left behind:\n{}",
        process_tree_dump()
    );
    // Counts, not numbers: a helper process replaced during the test (a new forkserver)
    // holds new descriptor numbers for the ones it gave back.
    assert_eq!(
        after.fds.len(),
        before.fds.len(),
        "descriptors left open: {}",
        fd_dump(&after.fds, &before.fds)
    );
    // Only new directories are ours to answer for (other programs come and go).
    let new_dirs: Vec<_> = after
        .bootstrap_dirs
        .difference(&before.bootstrap_dirs)
        .collect();
    assert!(
        new_dirs.is_empty(),
        "bootstrap directories left behind: {new_dirs:?}"
    );
    // The private TMPDIR holds only what this process tree made: every new entry is a
    // leak of the test's.
    let new_entries: Vec<_> = after.tmp_entries.difference(&before.tmp_entries).collect();
    assert!(
        new_entries.is_empty(),
        "temp entries left behind in {}: {new_entries:?}",
        std::env::temp_dir().display()
    );
    assert!(
        zombies_of(std::process::id() as i32).is_empty(),
        "zombies left behind"
    );
    // What a spawned worker's task left, in a session of its own or adopted by init,
    // is still in that worker's cgroup.
    let escaped: Vec<_> = after
        .cgroup_procs
        .difference(&before.cgroup_procs)
        .collect();
    assert!(
        escaped.is_empty(),
        "processes left running in the workers' cgroups: {escaped:?}"
    );
}

/// Runs `body` once per start method, each time isolated.
pub fn each_method(deadline: Duration, body: fn(StartMethod)) {
    for method in StartMethod::ALL {
        eprintln!("-- start method {method}");
        isolated(deadline, move || body(method));
    }
}

/// Waits (polling /proc every millisecond, up to `within`) until `pid` is stopped by a
/// signal; false if it exited or the time ran out first.
pub fn wait_stopped(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        match stat_fields(pid as i32) {
            Some(s) if s.state == 'T' => return true,
            Some(s) if s.state != 'Z' && s.state != 'X' && Instant::now() < deadline => {}
            _ => return false,
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A `waiting` probe for [`act_while_waiting`] that reads `handle` from the other
/// thread through `probe`. Queue, Event and Semaphore handles are not `Sync` (one shared
/// by reference would be one holder for two threads); the watcher must not take a
/// clone either, which would be a holder and change what a lone waiter sees.
pub fn watch<'a, T>(handle: &'a T, probe: fn(&T) -> bool) -> impl Fn() -> bool + Send + 'a {
    struct Lent<'a, T>(&'a T);
    // SAFETY: the handles keep their state in atomics and a process-shared mutex in
    // shared memory, safe to use from any thread; they are not `Sync` as a rule about
    // holders, not for memory safety, and the probe only reads a waiter count.
    unsafe impl<T> Send for Lent<'_, T> {}
    impl<T> Lent<'_, T> {
        fn get(&self) -> &T {
            self.0
        }
    }
    let lent = Lent(handle);
    move || probe(lent.get())
}

/// Runs `wait` on this thread and, on another thread, `act` as soon as `waiting()`
/// says the first one sleeps in its wait (checked in a loop). Returns what `wait`
/// returned and whether `act` ran (false: `wait` returned without ever sleeping).
/// `act` should own the other thread's handle (a clone), `waiting` only borrow one.
pub fn act_while_waiting<T>(
    waiting: impl Fn() -> bool + Send,
    act: impl FnOnce() + Send,
    wait: impl FnOnce() -> T,
) -> (T, bool) {
    let done = AtomicBool::new(false);
    let done = &done;
    std::thread::scope(|s| {
        let other = s.spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !waiting() {
                if done.load(Ordering::SeqCst) || Instant::now() > deadline {
                    return false;
                }
                std::thread::yield_now();
            }
            act();
            true
        });
        let out = wait();
        done.store(true, Ordering::SeqCst);
        (out, other.join().expect("the other thread panicked"))
    })
}

/// Pids whose parent is `ppid`.
pub fn children_of(ppid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Some(stat) = stat_fields(pid) {
            if stat.ppid == ppid {
                out.push(pid);
            }
        }
    }
    out.sort_unstable();
    out
}

/// Children of `ppid` that have exited and wait to be reaped.
pub fn zombies_of(ppid: i32) -> Vec<i32> {
    children_of(ppid)
        .into_iter()
        .filter(|&pid| stat_fields(pid).is_some_and(|s| s.has_exited()))
        .collect()
}

/// What /proc/PID/stat says (the crate's own parser).
pub fn stat_fields(pid: i32) -> Option<ProcStat> {
    ProcStat::of(pid)
}

/// A stat file by path (`/proc/PID/task/TID/stat` for one thread).
pub fn stat_fields_of(path: &str) -> Option<ProcStat> {
    ProcStat::parse(&std::fs::read_to_string(path).ok()?)
}

/// True once `pid` has exited (gone, or waiting to be reaped).
pub fn has_exited(pid: i32) -> bool {
    supervisor_worker::is_gone(pid)
}

/// Waits (on a pidfd, no polling) until `pid` exits; false on timeout.
pub fn wait_exit(pid: i32, timeout: Duration) -> bool {
    // SAFETY: pidfd_open with plain integers; the result is a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return true; // no such process
    }
    // SAFETY: a descriptor the kernel just returned to us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut pfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one live pollfd.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    r > 0
}

fn open_fds() -> BTreeSet<i32> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                // SAFETY: F_GETFD only reads flags; drops the listing's own descriptor.
                .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1)
                .collect()
        })
        .unwrap_or_default()
}

fn fd_dump(after: &BTreeSet<i32>, before: &BTreeSet<i32>) -> String {
    after
        .symmetric_difference(before)
        .map(|fd| {
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            format!("{fd} -> {target}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fails the test unless it runs as root, saying what for: a test that needs root must
/// never pass by skipping.
pub fn require_root(what_for: &str) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test must run as root (euid {euid}): {what_for}"
    );
}

/// The directory of this process's cgroup in a cgroup v2 hierarchy, if one is
/// mounted (read as the library does: `/proc/self/cgroup` and `/proc/self/mountinfo`).
pub fn own_cgroup_dir() -> Option<PathBuf> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let (root, mount) = mountinfo.lines().find_map(|line| {
        let (head, tail) = line.split_once(" - ")?;
        (tail.split(' ').next()? == "cgroup2").then_some(())?;
        let mut fields = head.split(' ');
        Some((fields.nth(3)?.to_string(), fields.next()?.to_string()))
    })?;
    let below = if root == "/" {
        path.as_str()
    } else {
        path.strip_prefix(root.as_str())?
    };
    Some(Path::new(&mount).join(below.trim_start_matches('/')))
}

/// Fails the test, saying why, unless this process may make child cgroups in its own
/// cgroup v2 (what lets a spawned worker be born in a cgroup of its own).
pub fn require_cgroups(what_for: &str) {
    let Some(dir) = own_cgroup_dir() else {
        panic!("this test needs a cgroup v2 hierarchy (none mounted): {what_for}");
    };
    let probe = dir.join(format!("test-probe-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir(&probe) {
        panic!(
            "this test needs a writable cgroup v2 ({}: {e}): {what_for}",
            dir.display()
        );
    }
    let _ = std::fs::remove_dir(&probe);
}

/// ipc-channel bootstrap directories (a `socket` inside a private temp dir) of ours.
pub fn bootstrap_dirs() -> BTreeSet<String> {
    let me = unsafe { libc::geteuid() };
    std::fs::read_dir(std::env::temp_dir())
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("socket").exists())
                .filter(|e| e.metadata().is_ok_and(|m| m.uid() == me))
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (up to `within`) until a bootstrap directory not in `before` appears; its path.
/// For scenarios whose worker hangs before connecting, so the directory stays.
pub fn wait_new_bootstrap_dir(before: &BTreeSet<String>, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let dir = loop {
        if let Some(dir) = bootstrap_dirs().difference(before).next() {
            break dir.clone();
        }
        assert!(Instant::now() < deadline, "no bootstrap directory appeared");
        std::thread::yield_now();
    };
    // The directory comes first, then the socket's bind, then its listen: a test that
    // connects to the socket or removes it needs it listening (before, 2 runs in 30
    // under load found no socket, or one that refused).
    let socket = format!("{dir}/socket");
    while !listening(&socket) {
        assert!(
            Instant::now() < deadline,
            "the bootstrap socket {socket} never listened"
        );
        std::thread::yield_now();
    }
    dir
}

/// Whether a Unix socket bound at `path` listens (`/proc/net/unix`: flags
/// `__SO_ACCEPTCON`, 0x10000), without connecting to it.
fn listening(path: &str) -> bool {
    std::fs::read_to_string("/proc/net/unix").is_ok_and(|table| {
        table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() >= 8
                && fields[7] == path
                && u32::from_str_radix(fields[3], 16).is_ok_and(|f| f & 0x1_0000 != 0)
        })
    })
}

fn descendants(pid: i32, out: &mut Vec<i32>) {
    for child in children_of(pid) {
        out.push(child);
        descendants(child, out);
    }
}

fn kill_children_except_helpers() {
    let helpers = helper_pids();
    let mut all = Vec::new();
    descendants(std::process::id() as i32, &mut all);
    for pid in all.into_iter().filter(|p| !helpers.contains(p)) {
        // SAFETY: kill with plain integers; these are our own descendants.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // Reap the direct children too: a test that panicked dropped its `Child` handles
    // unwaited, and their zombies would fail every test after it.
    for pid in children_of(std::process::id() as i32)
        .into_iter()
        .filter(|p| !helpers.contains(p))
    {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid out pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
}

/// A `ps`-like listing of this process's descendants.
pub fn process_tree_dump() -> String {
    let mut all = Vec::new();
    descendants(std::process::id() as i32, &mut all);
    all.iter()
        .map(|pid| {
            let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " ");
            let state = stat_fields(*pid).map_or('?', |s| s.state);
            format!("  {pid} {state} {cmd}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a program run by [`run_program`] gave.
pub struct Ran {
    /// Its exit code (-1 if a signal ended it).
    pub code: i32,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `program` in `dir` with `stdin`, both outputs drained as bytes; kills it and
/// fails if it outlives 60 s. `watch` is called with its pid every 10 ms while it runs.
pub fn run_program(
    program: &str,
    args: &[&std::ffi::OsStr],
    dir: &std::path::Path,
    stdin: &[u8],
    mut watch: impl FnMut(i32),
) -> Ran {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let text = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&text);
    });
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let pid = child.id() as i32;
    let until = Instant::now() + Duration::from_secs(60);
    let mut finished = false;
    while Instant::now() < until {
        watch(pid);
        if wait_exit(pid, Duration::from_millis(10)) {
            finished = true;
            break;
        }
    }
    if !finished {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    writer.join().unwrap();
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    assert!(
        finished,
        "{program} {args:?} did not finish within 60 s; stderr: {stderr}"
    );
    Ran {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// Leaves a chain of `levels` shells, each ignoring SIGTERM in a session of its own
/// (`setsid`), the last one a `sleep` that ignores SIGTERM too; returns that sleep's
/// pid. Only the first shell is the task's child: each later one becomes the worker's
/// (its subreaper's) only once the one before it is dead.
#[expect(
    clippy::zombie_processes,
    reason = "the chain must outlive the task; the worker reaps what it ends"
)]
pub fn leave_a_chain_out_of_the_group(levels: u32) -> i32 {
    let dir = std::env::temp_dir();
    let tag = format!("chain-{}-{levels}", std::process::id());
    let script = dir.join(format!("{tag}.sh"));
    let pid_file = dir.join(format!("{tag}.pid"));
    std::fs::write(
        &script,
        "trap '' TERM\n\
         if [ \"$1\" -gt 0 ]; then setsid sh \"$0\" $(($1 - 1)) \"$2\" & \
         while :; do sleep 1; done; fi\n\
         echo $$ > \"$2.tmp\" && mv \"$2.tmp\" \"$2\"\n\
         exec sleep 3600\n",
    )
    .unwrap();
    let _first = std::process::Command::new("sh")
        .arg(&script)
        .arg(levels.to_string())
        .arg(&pid_file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sh");
    let until = Instant::now() + Duration::from_secs(20);
    let pid = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file) {
            break text.trim().parse().expect("a pid");
        }
        assert!(Instant::now() < until, "the chain did not start");
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_file(&script);
    pid
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`); `pid` may be `self`. 0 if
/// it cannot be read.
pub fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The pid a task wrote to `path` (a child it started), once it is there (at most 20 s).
pub fn pid_written_to(path: &std::path::Path) -> i32 {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < until,
            "the task never wrote its child's pid"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
