//! The spawn start against what an adversarial pass (adv16) did to it: a child stopped
//! before its exec, a start whose server could not bind, a silent stranger on the
//! bootstrap socket.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{isolated, scenario, Scenario, SCENARIOS};
use supervisor::Process;

const DEADLINE: Duration = Duration::from_secs(120);

fn square(x: u64) -> u64 {
    x * x
}
supervisor::task!(square);

/// Runs scenario `name` (its command made by `cmd`) with a deadline: its stdout and
/// stderr.
fn run(mut cmd: std::process::Command, name: &str, within: Duration) -> (String, String) {
    finish(cmd.spawn().unwrap(), name, within)
}

/// Waits for a scenario's process with a deadline: its stdout and stderr.
fn finish(child: std::process::Child, name: &str, within: Duration) -> (String, String) {
    let (status, stdout, stderr) = common::scenario_output(child, name, within);
    assert!(status.success(), "{name}: {status}\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// The children of the reaper thread of this process (the spawned workers).
fn reaper_children() -> Vec<i32> {
    let mut kids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == "supervisor-reap" {
            let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            kids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    kids
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill with plain integers; our own child, not reaped (its start waits).
    unsafe { libc::kill(pid, sig) };
}

/// Starts processes until the child of one is caught stopped (SIGSTOP) before its
/// exec (its command line is still ours: it runs on our memory), then starts another
/// while that one stays stopped: prints whether the second start finished within 20 s,
/// then what the first start gave once its child is killed.
fn stopped_before_exec_scenario() {
    drop(Process::builder(square, 1).start().unwrap().join());
    let ours = std::fs::read("/proc/self/cmdline").unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    let (caught, first) = 'attempts: loop {
        assert!(Instant::now() < until, "no child caught before its exec");
        let starter = std::thread::spawn(|| Process::builder(square, 2).start().map(drop));
        let mut tried = Vec::new();
        while !starter.is_finished() {
            for pid in reaper_children() {
                if tried.contains(&pid) {
                    continue;
                }
                tried.push(pid);
                signal(pid, libc::SIGSTOP);
                if common::wait_stopped(pid as u32, Duration::from_secs(5))
                    && std::fs::read(format!("/proc/{pid}/cmdline")).ok().as_ref() == Some(&ours)
                {
                    break 'attempts (pid, starter);
                }
                signal(pid, libc::SIGCONT);
            }
        }
        let _ = starter.join().unwrap();
    };
    let (tx, rx) = mpsc::channel();
    let t = Instant::now();
    let second = std::thread::spawn(move || {
        let result = Process::builder(square, 3)
            .start()
            .and_then(|mut p| p.join());
        let _ = tx.send(result);
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(9)) => println!("second start ok, first child still stopped"),
        Ok(other) => println!("second start failed: {other:?}"),
        Err(_) => println!("second start hung {} ms", t.elapsed().as_millis()),
    }
    signal(caught, libc::SIGKILL);
    second.join().unwrap();
    match first.join().unwrap() {
        Ok(()) => println!("first start succeeded"),
        Err(e) => println!("first start failed: {e}"),
    }
}
#[linkme::distributed_slice(SCENARIOS)]
static STOPPED_BEFORE_EXEC: Scenario = Scenario {
    name: "stopped_before_exec",
    run: stopped_before_exec_scenario,
};

/// Before (adv16 F2): the reaper thread was suspended in `clone(CLONE_VFORK)` for as
/// long as the child stayed stopped before its exec: the second start waited until the
/// first child was killed (18 s in the adversarial run), and no child was reaped.
#[test]
fn a_child_stopped_before_its_exec_does_not_hold_up_other_starts() {
    isolated(DEADLINE, || {
        let (out, err) = run(
            scenario("stopped_before_exec"),
            "stopped_before_exec",
            Duration::from_secs(100),
        );
        assert!(
            out.contains("second start ok, first child still stopped"),
            "{out}\n{err}"
        );
        assert!(out.contains("first start failed"), "{out}\n{err}");
    });
}

/// The open socket descriptors of this process, with what each is (the warm-up
/// start's pidfd may still be closing).
fn open_sockets() -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            format!("{}:{}", e.file_name().to_string_lossy(), target.display())
        })
        .collect();
    fds.sort();
    fds.retain(|f| f.contains(":socket:"));
    fds
}

/// In a temporary directory on a file system with exactly two free inodes (the start's
/// probe file and ipc-channel's directory get them; the socket's `bind` then fails
/// with ENOSPC), `STARTS` starts fail while another thread opens and closes a file:
/// prints the descriptors open before and after, and the first error.
fn bind_fails_scenario() {
    const STARTS: usize = 200;
    drop(Process::builder(square, 1).start().unwrap().join());
    let dir = std::env::temp_dir();
    let mut files = Vec::new();
    loop {
        let path = dir.join(format!("fill{}", files.len()));
        match std::fs::File::create(&path) {
            Ok(_) => files.push(path),
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("{e}"),
        }
    }
    for path in files.drain(files.len() - 2..) {
        std::fs::remove_file(path).unwrap();
    }
    let before = open_sockets();
    // Another thread opening and closing a descriptor all the while: a number freed
    // between the start's look for a free one and ipc-channel's `socket()` is where
    // that socket lands.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = std::thread::spawn({
        let stop = stop.clone();
        move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                drop(std::fs::File::open("/dev/null").unwrap());
            }
        }
    });
    let mut first = None;
    for _ in 0..STARTS {
        let err = Process::builder(square, 2).start().map(drop).unwrap_err();
        first.get_or_insert_with(|| supervisor_worker::error_chain(&err));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().unwrap();
    println!("open before {before:?} after {:?}", open_sockets());
    println!("error: {}", first.unwrap());
    for path in files {
        std::fs::remove_file(path).unwrap();
    }
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    println!("entries left {}", left.len());
}
#[linkme::distributed_slice(SCENARIOS)]
static BIND_FAILS: Scenario = Scenario {
    name: "bind_fails",
    run: bind_fails_scenario,
};

/// Before (adv16 F3): ipc-channel's `OsIpcOneShotServer::new` returned the `bind` error
/// without closing its socket: one descriptor lost per such failed start ("open before
/// N after N+3"). And (CI, session 17) one was still lost when another thread's
/// descriptor was closed between the start's look for a free number and that socket:
/// it landed below the number looked for (2 of 5 runs with the churning thread lost
/// some). Needs a mount namespace of its own (a small tmpfs as `TMPDIR`); where
/// this process may not make one, it fails saying so (as the namespace tests do).
#[test]
fn a_start_whose_server_cannot_bind_leaves_no_descriptor() {
    isolated(DEADLINE, || {
        let mount = std::env::temp_dir().join(format!("full-tmpfs-{}", std::process::id()));
        std::fs::create_dir(&mount).unwrap();
        let target = std::ffi::CString::new(mount.to_str().unwrap()).unwrap();
        let mut cmd = scenario("bind_fails");
        cmd.env("TMPDIR", &mount);
        // SAFETY: unshare and mount take plain arguments prepared before the fork; no
        // allocation in the child.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                let none = c"none".as_ptr();
                let tmpfs = c"tmpfs".as_ptr();
                if libc::unshare(libc::CLONE_NEWNS) != 0
                    || libc::mount(
                        none,
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) != 0
                    || libc::mount(
                        none,
                        target.as_ptr(),
                        tmpfs,
                        0,
                        c"nr_inodes=64".as_ptr().cast(),
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                std::fs::remove_dir(&mount).unwrap();
                panic!(
                    "this test needs a mount namespace of its own (root, or unprivileged \
                     user namespaces), which this system refused: {e}"
                );
            }
        };
        let (out, err) = finish(child, "bind_fails", Duration::from_secs(100));
        std::fs::remove_dir(&mount).unwrap();
        let (before, after) = out
            .lines()
            .find_map(|l| l.strip_prefix("open before "))
            .and_then(|l| l.split_once(" after "))
            .unwrap_or_else(|| panic!("{out}\n{err}"));
        assert_eq!(
            before, after,
            "descriptors lost by failed starts\n{out}\n{err}"
        );
        assert!(out.contains("No space left on device"), "{out}\n{err}");
        assert!(out.contains("entries left 0"), "{out}\n{err}");
    });
}

/// The threads of this process named like the spawn start's accept thread.
fn accept_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_end() == "supervisor-acce")
        })
        .count()
}

/// Connects a `SOCK_SEQPACKET` unix socket to `path` and says nothing: its descriptor.
fn connect_silently(path: &str) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: socket and connect with a live, zeroed-then-filled sockaddr_un; the
    // descriptor is owned at once.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in addr.sun_path.iter_mut().zip(path.bytes()) {
            *d = s as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        let r = libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len);
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        owned
    }
}

/// A start whose child stops before connecting (`stop-before-connect`), while this
/// process connects to the start's socket first and stays silent; the child is then
/// continued (it connects after). Prints this process's pid, the error and the
/// seconds it took, and whether the start's accept thread is still there (waiting up
/// to 5 s for it to go).
fn stranger_connects_scenario() {
    let before = common::bootstrap_dirs();
    let starter = std::thread::spawn(|| {
        let t = Instant::now();
        let result = Process::builder(square, 1).start().map(drop);
        (t.elapsed(), result)
    });
    let dir = common::wait_new_bootstrap_dir(&before, Duration::from_secs(20));
    let until = Instant::now() + Duration::from_secs(20);
    let kid = loop {
        if let Some(&kid) = reaper_children().first() {
            break kid;
        }
        assert!(Instant::now() < until, "no child");
    };
    assert!(common::wait_stopped(kid as u32, Duration::from_secs(20)));
    let stranger = connect_silently(&format!("{dir}/socket"));
    signal(kid, libc::SIGCONT);
    let (took, result) = starter.join().unwrap();
    let err = result.unwrap_err();
    println!("pid {}", std::process::id());
    println!("start: {err}");
    println!("took {} s", took.as_secs());
    let until = Instant::now() + Duration::from_secs(5);
    while accept_threads() > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("accept threads {}", accept_threads());
    drop(stranger);
}
#[linkme::distributed_slice(SCENARIOS)]
static STRANGER_CONNECTS: Scenario = Scenario {
    name: "stranger_connects",
    run: stranger_connects_scenario,
};

/// Before (adv16 F1): the start failed only at its 30 s deadline, as "it did not
/// connect", and its accept thread stayed blocked in ipc-channel's receive of the
/// silent connection's first message, with that connection, for the program's life.
#[test]
fn a_silent_stranger_on_the_bootstrap_socket_fails_the_start_and_leaves_no_thread() {
    isolated(DEADLINE, || {
        let mut cmd = scenario("stranger_connects");
        cmd.env("SUPERVISOR_FAULT", "stop-before-connect");
        let (out, err) = run(cmd, "stranger_connects", Duration::from_secs(100));
        let pid = out
            .lines()
            .find_map(|l| l.strip_prefix("pid "))
            .unwrap_or_else(|| panic!("{out}\n{err}"));
        assert!(
            out.contains(&format!(
                "another process (pid {pid}) connected to the start's socket"
            )),
            "{out}\n{err}"
        );
        assert!(out.contains("accept threads 0"), "{out}\n{err}");
    });
}

/// A start whose child misbehaves as `SUPERVISOR_FAULT` says: prints the error.
fn faulty_start_scenario() {
    let err = Process::builder(square, 1).start().map(drop).unwrap_err();
    println!("start: {err}");
}
#[linkme::distributed_slice(SCENARIOS)]
static FAULTY_START: Scenario = Scenario {
    name: "faulty_start",
    run: faulty_start_scenario,
};

fn faulty_start(fault: &str) -> String {
    let mut cmd = scenario("faulty_start");
    cmd.env("SUPERVISOR_FAULT", fault);
    let (out, err) = run(cmd, "faulty_start", Duration::from_secs(60));
    format!("{out}\n{err}")
}

/// Before (adv16 F5): "channel closed before the handoff" and "peer closed the
/// channel", for children that had died of a SIGKILL.
#[test]
fn a_child_killed_around_its_handoff_is_said_to_have_died() {
    isolated(DEADLINE, || {
        let out = faulty_start("kill-after-hello");
        assert!(
            out.contains("it died (SIGKILL) after its hello, before its handoff"),
            "{out}"
        );
        let out = faulty_start("kill-after-handoff");
        assert!(
            out.contains("it died (SIGKILL) after its handoff, before it took its configuration"),
            "{out}"
        );
    });
}
