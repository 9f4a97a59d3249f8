//! The Pool under every start method: every API's values and order, and supervision:
//! killed workers, retries, crashes in a map, timeouts, initializer failure, restart
//! storms, recycling, cancel, close, drop, bounded imap.

#[path = "../common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{each_method, isolated, wait_exit};
use supervisor::{
    as_completed, BrokenReason, Error, ErrorKind, Pool, RegistryError, StartMethod, StormDeath,
    WorkerState,
};

const DEADLINE: Duration = Duration::from_secs(90);

/// For the two tests at the size limit: a debug build encodes a plain `Vec<u8>` one
/// byte at a time (~30 ns a byte), so refusing 960 MiB each way takes about a minute
/// on an idle machine, and twice that on a loaded one; the 90 s deadline failed them at
/// load 9 while they were making progress.
const SIZE_LIMIT_DEADLINE: Duration = Duration::from_secs(360);

fn square(x: u64) -> u64 {
    x * x
}
supervisor::task!(square);

fn add(a: u64, b: u64) -> u64 {
    a + b
}
supervisor::task!(add);

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
supervisor::task!(sleep_ms);

fn my_pid(_: u64) -> u32 {
    std::process::id()
}
supervisor::task!(my_pid);

fn parse(s: String) -> Result<u64, String> {
    s.parse::<u64>().map_err(|e| format!("{s:?}: {e}"))
}
supervisor::task!(parse);

/// Crashes in three different ways for three inputs.
fn fragile(x: u64) -> u64 {
    match x {
        100 => unsafe { std::ptr::null_mut::<u64>().write_volatile(x) },
        500 => std::process::abort(),
        900 => std::process::exit(3),
        _ => {}
    }
    x + 1
}
supervisor::task!(fragile);

/// Writes its pid to the FIFO `path` (the test blocks reading it), then sleeps `ms`.
fn announce_and_sleep(path: String, ms: u64) -> u64 {
    use std::io::Write;
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("fifo");
    writeln!(fifo, "{}", std::process::id()).expect("announce");
    drop(fifo);
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
supervisor::task!(announce_and_sleep);

/// Starts `sleep 3600` in its own process group, announces the grandchild's pid, hangs.
#[expect(
    clippy::zombie_processes,
    reason = "the grandchild must outlive the task; the pool kills the worker's group"
)]
fn hang_with_grandchild(path: String) -> u64 {
    use std::io::Write;
    let child = std::process::Command::new("sleep")
        .arg("3600")
        .spawn()
        .expect("sleep");
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("fifo");
    writeln!(fifo, "{}", child.id()).expect("announce");
    drop(fifo);
    loop {
        std::thread::park();
    }
}
supervisor::task!(hang_with_grandchild);

/// Forks a grandchild that leaves the worker's session and process group (`setsid`),
/// holding the worker's channel, announces its pid, and sleeps.
fn fork_setsid_grandchild(path: String) -> u64 {
    use std::io::Write;
    // SAFETY: the child runs only async-signal-safe calls (setsid, pause, _exit).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            libc::setsid();
            loop {
                libc::pause();
            }
        }
    }
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("fifo");
    writeln!(fifo, "{pid}").expect("announce");
    drop(fifo);
    loop {
        std::thread::park();
    }
}
supervisor::task!(fork_setsid_grandchild);

fn failing_init(_: ()) {
    panic!("no database")
}
supervisor::task!(failing_init);

fn exit_one(_: u64) -> u64 {
    std::process::exit(1)
}
supervisor::task!(exit_one);

/// A FIFO in a fresh temp dir; removed on drop.
struct Fifo {
    dir: PathBuf,
}

impl Fifo {
    fn new() -> Fifo {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "supervisor-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = std::ffi::CString::new(dir.join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: a valid C string path and a mode.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        Fifo { dir }
    }

    fn path(&self) -> String {
        self.dir.join("fifo").display().to_string()
    }

    /// Blocks until a task writes its line; returns the number on it.
    fn read_pid(&self) -> i32 {
        let mut text = String::new();
        std::fs::File::open(self.path())
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text.trim().parse().unwrap()
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pool(method: StartMethod, procs: usize) -> supervisor::PoolBuilder {
    Pool::builder()
        .procs(procs)
        .start_method(method)
        .grace(Duration::from_millis(500))
}

/// Leaves behind, in the worker's process group, a shell that ignores SIGTERM (once it
/// says so) and sleeps; returns its pid.
#[expect(
    clippy::zombie_processes,
    reason = "the shell must outlive the task; the pool kills the worker's group"
)]
fn leave_a_stubborn_grandchild(_: ()) -> u32 {
    use std::io::BufRead;
    let mut child = std::process::Command::new("sh")
        .args(["-c", "trap '' TERM; echo ready; exec sleep 3600"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        // Should it survive, it must not hold the test's output open.
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sh");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready");
    assert_eq!(line.trim(), "ready");
    child.id()
}
supervisor::task!(leave_a_stubborn_grandchild);

/// Forks a grandchild that ignores SIGTERM, starts a thread and ends its main thread:
/// /proc then shows it as a zombie while its thread runs on. Returns its pid.
fn leave_a_headless_grandchild(_: ()) -> i32 {
    let mut fds = [0; 2];
    // SAFETY: an out-array of two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: a worker runs its tasks on its only thread, so the child may allocate.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: plain calls in the child; it never returns into the task.
            unsafe {
                libc::signal(libc::SIGTERM, libc::SIG_IGN);
                std::thread::spawn(|| loop {
                    std::thread::sleep(Duration::from_secs(3600));
                });
                let pid = libc::getpid();
                libc::write(fds[1], (&pid as *const i32).cast(), 4);
                // Nothing of the worker's (its link above all) stays open in here.
                libc::close_range(3, u32::MAX, 0);
                // Ends the calling thread only, with no unwinding.
                libc::syscall(libc::SYS_exit, 0);
            }
            unreachable!("the main thread has exited")
        }
        child => {
            assert!(child > 0, "fork failed");
            let mut pid = 0i32;
            // SAFETY: reads 4 bytes into a live i32; closes our ends of the pipe.
            unsafe {
                libc::close(fds[1]);
                assert_eq!(libc::read(fds[0], (&mut pid as *mut i32).cast(), 4), 4);
                libc::close(fds[0]);
            }
            pid
        }
    }
}
supervisor::task!(leave_a_headless_grandchild);

/// [`common::leave_a_chain_out_of_the_group`], as a task.
fn leave_a_chain_out_of_the_group(levels: u32) -> i32 {
    common::leave_a_chain_out_of_the_group(levels)
}
supervisor::task!(leave_a_chain_out_of_the_group);

fn echo_bytes(b: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf {
    let mut b = b.into_vec();
    b.reverse();
    serde_bytes::ByteBuf::from(b)
}
supervisor::task!(echo_bytes);

fn blob(b: serde_bytes::ByteBuf) -> usize {
    b.len()
}
supervisor::task!(blob);

/// Never registered: callers must get a clear error, not a hang.
fn unregistered(x: u64) -> u64 {
    x
}

#[test]
fn a_closure_is_refused_with_a_message_that_says_to_write_a_named_fn() {
    isolated(DEADLINE, || {
        let pool = pool(StartMethod::Spawn, 1).build().unwrap();
        // Only a closure that captures nothing compiles (see `supervisor::Call`).
        let e = pool.apply(|x: u64| x + 1, 1).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Registry(RegistryError::Closure(_))),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "a closure (in `pool::a_closure_is_refused_with_a_message_that_says_to_write_a_named_fn`) \
             cannot be a task: write a named fn, register it with `supervisor::task!(name);` \
             and pass `name`"
        );
        let e = supervisor::Process::builder(|x: u64| x + 1, 1)
            .start()
            .err()
            .expect("a closure cannot start a process");
        assert!(e.to_string().contains("cannot be a task"), "{e}");
        assert_eq!(pool.apply(square, 3).unwrap(), 9);
        pool.join();
    });
}

/// Returns its input, an error for inputs ending in 3, and panics for those ending in 7.
fn picky(x: u64) -> Result<u64, String> {
    match x % 10 {
        3 => Err(format!("{x} ends in 3")),
        7 => panic!("{x} ends in 7"),
        _ => Ok(x),
    }
}
supervisor::task!(picky);

/// An argument that refuses to be encoded when it holds 13.
#[derive(Debug)]
struct Fussy(u64);

impl serde::Serialize for Fussy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("13 is unlucky"));
        }
        s.serialize_u64(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Fussy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(Fussy)
    }
}

fn fussy_square(x: Fussy) -> u64 {
    x.0 * x.0
}
supervisor::task!(fussy_square);

/// Leaves its pid in `dir`, waits (at most 30 s) until `dir` holds `entries` entries
/// (the FIFO counts as one), returns its pid.
fn rendezvous(dir: String, entries: usize) -> u32 {
    let pid = std::process::id();
    std::fs::write(format!("{dir}/{pid}"), b"").expect("leave the pid");
    let limit = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&dir).expect("read the dir").count() < entries && Instant::now() < limit
    {
        std::thread::yield_now();
    }
    pid
}
supervisor::task!(rendezvous);

/// Aborts the first time (when `marker` does not exist yet, creating it), then returns 1.
fn abort_the_first_time(marker: String) -> u64 {
    if std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&marker)
        .is_ok()
    {
        std::process::abort();
    }
    1
}
supervisor::task!(abort_the_first_time);

fn zeros(n: u64) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(vec![0u8; n as usize])
}
supervisor::task!(zeros);

fn echo_vec(v: Vec<u8>) -> Vec<u8> {
    v
}
supervisor::task!(echo_vec);

/// A plain `Vec<u8>` of `n` ones (encoded byte by byte, unlike a `ByteBuf`).
fn ones(n: u64) -> Vec<u8> {
    vec![1u8; n as usize]
}
supervisor::task!(ones);

/// Forks a child that keeps every descriptor of the worker (its link too) and sleeps,
/// then crashes the worker.
fn crash_leaving_a_link_holder(_: ()) -> u64 {
    // SAFETY: a worker runs its tasks on one thread; the child only sleeps.
    match unsafe { libc::fork() } {
        0 => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        child => {
            assert!(child > 0, "fork failed");
            std::process::abort()
        }
    }
}
supervisor::task!(crash_leaving_a_link_holder);

/// Forks a child that sleeps (no exec: it keeps the worker's signal handlers) and
/// returns its pid.
fn fork_a_sleeper(_: ()) -> i32 {
    // SAFETY: a worker runs its tasks on one thread; the child only sleeps.
    match unsafe { libc::fork() } {
        0 => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        child => child,
    }
}
supervisor::task!(fork_a_sleeper);

/// Forks `n` children that sleep, each sent SIGTERM the moment fork returns (before it
/// may have run at all, as when the worker ends a task's children right after the task
/// returned); 1 if one did not die of
/// that SIGTERM within 2 s (it is SIGKILLed), else 0.
fn fork_and_terminate_at_once(n: u32) -> u32 {
    for _ in 0..n {
        // SAFETY: a worker runs its tasks on one thread; the child only sleeps.
        let child = match unsafe { libc::fork() } {
            0 => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            child => child,
        };
        // SAFETY: kill with plain integers; `child` is ours and not yet reaped.
        unsafe { libc::kill(child, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(2);
        let mut status = 0;
        let died_of_term = loop {
            // SAFETY: a valid out-pointer; `child` is ours.
            if unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) } == child {
                break libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGTERM;
            }
            if Instant::now() > until {
                // SAFETY: as above; then reaped.
                unsafe {
                    libc::kill(child, libc::SIGKILL);
                    libc::waitpid(child, &mut status, 0);
                }
                break false;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if !died_of_term {
            return 1;
        }
    }
    0
}
supervisor::task!(fork_and_terminate_at_once);

mod api;
mod broken;
mod crashes;
mod descendants;
mod dispatcher;
mod lifecycle;
mod payloads;
mod timeouts;
