//! The Process API under every start method: values, typed failures, signals,
//! timeouts, nice, daemons, handles dropped without join, bootstrap security.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

use common::{each_method, isolated, scenario, stat_fields, wait_exit, Scenario, SCENARIOS};
use supervisor::{Error, ErrorKind, Pool, Process, StartMethod};

const DEADLINE: Duration = Duration::from_secs(60);

fn square(x: u64) -> u64 {
    x * x
}
supervisor::task!(square);

fn boom(_: ()) -> u64 {
    panic!("boom at {}", 42)
}
supervisor::task!(boom);

fn segfault(_: ()) -> u64 {
    // SAFETY: none; writing through a null pointer is the point of this task.
    unsafe { std::ptr::null_mut::<u64>().write_volatile(1) };
    0
}
supervisor::task!(segfault);

fn abort(_: ()) -> u64 {
    std::process::abort()
}
supervisor::task!(abort);

fn exit_with(code: i32) -> u64 {
    std::process::exit(code)
}
supervisor::task!(exit_with);

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
supervisor::task!(sleep_ms);

/// (pid, process group, nice of every thread, after starting one more thread).
fn identity(_: ()) -> (u32, i32, Vec<i32>) {
    let helper = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(50)));
    let mut nices = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")
        .expect("task dir")
        .flatten()
    {
        let path = entry.path().join("stat");
        if let Some(stat) = common::stat_fields_of(&path.to_string_lossy()) {
            nices.push(stat.nice);
        }
    }
    helper.join().expect("helper thread");
    let pid = std::process::id();
    let pgrp = stat_fields(pid as i32).expect("own stat").pgrp;
    (pid, pgrp, nices)
}
supervisor::task!(identity);

/// (ignored, caught) signal masks from /proc/self/status.
fn signal_masks(_: ()) -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| u64::from_str_radix(v.trim(), 16).expect("hex mask"))
            .expect("mask line")
    };
    (mask("SigIgn:"), mask("SigCgt:"))
}
supervisor::task!(signal_masks);

/// What happens when this process tries to start a child.
fn try_start_child(_: ()) -> String {
    match Process::builder(square, 3).start() {
        Ok(mut p) => format!("started: {:?}", p.join().map_err(|e| e.to_string())),
        Err(e) => e.to_string(),
    }
}
supervisor::task!(try_start_child);

#[test]
fn start_and_join_returns_the_value() {
    each_method(DEADLINE, |method| {
        let mut p = Process::builder(square, 12)
            .start_method(method)
            .start()
            .unwrap();
        assert!(p.pid() > 0);
        assert_eq!(p.name(), "square");
        assert_eq!(p.join().unwrap(), 144);
        assert!(!p.is_alive());
        assert_eq!(p.exitcode(), Some(0));
        let e = p.join().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::AlreadyJoined { .. }), "{e:?}");
    });
}

#[test]
fn panic_is_a_typed_error_with_message_and_location() {
    each_method(DEADLINE, |method| {
        let mut p = Process::builder(boom, ())
            .start_method(method)
            .start()
            .unwrap();
        let pid = p.pid();
        match p.join().map_err(Error::into_kind) {
            Err(ErrorKind::Panicked {
                task,
                pid: p2,
                message,
                location,
                ..
            }) => {
                assert_eq!(task, "boom");
                assert_eq!(p2, pid);
                assert_eq!(message, "boom at 42");
                assert!(location.unwrap().starts_with("tests/process.rs:"));
            }
            other => panic!("expected a panic, got {other:?}"),
        }
        // The worker survives a panic and exits normally once its work is done.
        assert_eq!(p.exitcode(), Some(0));
    });
}

#[test]
fn segfault_and_abort_are_crashes_with_their_signal() {
    each_method(DEADLINE, |method| {
        for (task_result, signal, exitcode) in [
            (
                Process::builder(segfault, ()).start_method(method).start(),
                "SIGSEGV",
                -11,
            ),
            (
                Process::builder(abort, ()).start_method(method).start(),
                "SIGABRT",
                -6,
            ),
        ] {
            let mut p = task_result.unwrap();
            let err = p.join().unwrap_err();
            match err.kind() {
                ErrorKind::Crashed { signal: s, pid, .. } => {
                    assert_eq!(s.to_string(), signal);
                    assert_eq!(*pid, p.pid());
                }
                other => panic!("expected a crash, got {other:?}"),
            }
            assert!(err.to_string().contains(signal), "{err}");
            assert_eq!(p.exitcode(), Some(exitcode));
        }
    });
}

#[test]
fn exit_before_returning_is_an_exit_error_even_with_code_zero() {
    each_method(DEADLINE, |method| {
        for code in [0, 3] {
            let mut p = Process::builder(exit_with, code)
                .start_method(method)
                .start()
                .unwrap();
            match p.join().map_err(Error::into_kind) {
                Err(ErrorKind::Exited { code: c, task, .. }) => {
                    assert_eq!(c, code);
                    assert_eq!(task, "exit_with");
                }
                other => panic!("expected an exit error, got {other:?}"),
            }
            assert_eq!(p.exitcode(), Some(code));
        }
    });
}

#[test]
fn terminate_gives_minus_15_and_kill_minus_9() {
    each_method(DEADLINE, |method| {
        for (kill, code) in [(false, -15), (true, -9)] {
            let mut p = Process::builder(sleep_ms, 60_000)
                .start_method(method)
                .start()
                .unwrap();
            assert!(p.is_alive());
            if kill {
                p.kill().unwrap();
            } else {
                p.terminate().unwrap();
            }
            let e = p.join().unwrap_err();
            assert!(matches!(e.kind(), ErrorKind::Crashed { .. }), "{e:?}");
            assert_eq!(p.exitcode(), Some(code));
            // Signalling a process that has exited is a no-op, never a stray signal.
            p.terminate().unwrap();
            p.kill().unwrap();
        }
    });
}

#[test]
fn join_timeout_returns_in_time_and_the_process_can_still_be_joined() {
    each_method(DEADLINE, |method| {
        let mut p = Process::builder(sleep_ms, 400)
            .start_method(method)
            .start()
            .unwrap();
        let t = Instant::now();
        assert!(p.join_timeout(Duration::from_millis(50)).is_none());
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        assert!(
            waited < Duration::from_millis(300),
            "returned late: {waited:?}"
        );
        assert!(p.is_alive());
        assert_eq!(p.exitcode(), None);
        assert_eq!(
            p.join_timeout(Duration::from_secs(30)).unwrap().unwrap(),
            400
        );
        assert_eq!(p.exitcode(), Some(0));
    });
}

#[test]
fn nice_applies_to_every_thread_of_the_worker_in_its_own_group() {
    each_method(DEADLINE, |method| {
        let mut p = Process::builder(identity, ())
            .nice(10)
            .start_method(method)
            .start()
            .unwrap();
        let pid = p.pid();
        let (child_pid, pgrp, nices) = p.join().unwrap();
        assert_eq!(child_pid, pid);
        assert_eq!(pgrp, pid as i32, "the worker leads its own process group");
        assert!(nices.len() >= 2, "{nices:?}");
        assert!(nices.iter().all(|&n| n == 10), "{nices:?}");
    });
}

#[test]
fn workers_ignore_sigint_catch_sigterm_and_leave_other_signals_at_their_defaults() {
    each_method(DEADLINE, |method| {
        let bit = |sig: i32| 1u64 << (sig - 1);
        for daemon in [false, true] {
            let mut p = Process::builder(signal_masks, ())
                .daemon(daemon)
                .start_method(method)
                .start()
                .unwrap();
            // Standard signals only: glibc keeps 32 and 33 for itself.
            let standard = (1u64 << 31) - 1;
            let (ignored, caught) = p.join().unwrap();
            let (ignored, caught) = (ignored & standard, caught & standard);
            // SIGINT: the parent decides. SIGPIPE: ignored as in every Rust program.
            assert_eq!(
                ignored,
                bit(libc::SIGINT) | bit(libc::SIGPIPE),
                "{ignored:x}"
            );
            // A daemon catches SIGHUP (its parent's death) to end its process group;
            // every worker catches SIGTERM to end its task's children before it dies
            // of it.
            let hup = if daemon { bit(libc::SIGHUP) } else { 0 };
            assert_eq!(
                caught & !(bit(libc::SIGSEGV) | bit(libc::SIGBUS)),
                hup | bit(libc::SIGTERM),
                "{caught:x}"
            );
        }
    });
}

#[test]
fn nice_out_of_range_is_refused_before_anything_starts() {
    isolated(DEADLINE, || {
        let err = Process::builder(square, 1)
            .nice(25)
            .start()
            .map(drop)
            .unwrap_err();
        assert_eq!(err.to_string(), "nice value 25 is outside -20..=19");
    });
}

fn nice_lower_scenario() {
    for method in StartMethod::ALL {
        let err = Process::builder(square, 1)
            .nice(-5)
            .start_method(method)
            .start()
            .map(drop)
            .unwrap_err();
        println!("{method}: {err}");
        assert!(
            matches!(
                err.kind(),
                ErrorKind::NiceNotPermitted {
                    requested: -5,
                    current: 0
                }
            ),
            "{err:?}"
        );
    }
}
#[linkme::distributed_slice(SCENARIOS)]
static NICE_LOWER: Scenario = Scenario {
    name: "nice_lower",
    run: nice_lower_scenario,
};

#[test]
fn lowering_nice_without_privilege_is_a_clear_error() {
    common::require_root("to drop to `nobody`; as a normal user see the scenario");
    isolated(DEADLINE, || {
        use std::os::unix::process::CommandExt;
        let out = scenario("nice_lower")
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.lines().count(), 3, "{stdout}");
        for line in stdout.lines() {
            assert!(
                line.ends_with("cannot lower the nice value from 0 to -5: this needs CAP_SYS_NICE or a higher RLIMIT_NICE"),
                "{line}"
            );
        }
    });
}

#[test]
fn a_daemon_cannot_start_processes() {
    each_method(DEADLINE, |method| {
        let mut p = Process::builder(try_start_child, ())
            .daemon(true)
            .name("d1")
            .start_method(method)
            .start()
            .unwrap();
        assert!(p.is_daemon());
        assert_eq!(
            p.join().unwrap(),
            "daemon process `d1` may not start processes of its own"
        );
        // A non-daemon may.
        let mut p = Process::builder(try_start_child, ())
            .start_method(method)
            .start()
            .unwrap();
        assert_eq!(p.join().unwrap(), "started: Ok(9)");
    });
}

fn parent_of_two_scenario() {
    let method: StartMethod = std::env::var("METHOD").unwrap().parse().unwrap();
    let daemon = Process::builder(sleep_ms, 600_000)
        .daemon(true)
        .start_method(method)
        .start()
        .unwrap();
    let plain = Process::builder(sleep_ms, 600_000)
        .start_method(method)
        .start()
        .unwrap();
    println!("{} {}", daemon.pid(), plain.pid());
    loop {
        std::thread::park();
    }
}
#[linkme::distributed_slice(SCENARIOS)]
static PARENT_OF_TWO: Scenario = Scenario {
    name: "parent_of_two",
    run: parent_of_two_scenario,
};

#[test]
fn sigkilled_parent_takes_its_daemon_child_but_not_the_other() {
    each_method(DEADLINE, |method| {
        let mut parent = scenario("parent_of_two")
            .env("METHOD", method.name())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(parent.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pids: Vec<i32> = line
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        let (daemon, plain) = (pids[0], pids[1]);
        parent.kill().unwrap();
        parent.wait().unwrap();
        let t = Instant::now();
        assert!(
            wait_exit(daemon, Duration::from_secs(2)),
            "daemon child {daemon} outlived its parent"
        );
        eprintln!("daemon gone {:?} after its parent", t.elapsed());
        assert!(
            !common::has_exited(plain),
            "non-daemon child {plain} died with its parent"
        );
        // SAFETY: kill with plain integers; `plain` is an orphan we made.
        unsafe { libc::kill(plain, libc::SIGKILL) };
        assert!(wait_exit(plain, Duration::from_secs(5)));
    });
}

#[test]
fn a_thousand_handles_dropped_without_join_leave_no_zombie() {
    each_method(Duration::from_secs(180), |method| {
        for i in 0..1000 {
            drop(
                Process::builder(square, i)
                    .start_method(method)
                    .start()
                    .unwrap(),
            );
        }
        // `isolated` then waits for every child to be reaped and checks for zombies.
    });
}

#[test]
fn the_thread_that_started_a_daemon_can_exit_without_killing_it() {
    each_method(DEADLINE, |method| {
        let mut p = std::thread::spawn(move || {
            Process::builder(sleep_ms, 200)
                .daemon(true)
                .start_method(method)
                .start()
                .unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(p.join().unwrap(), 200);
    });
}

#[test]
fn a_worker_has_only_stdio_and_its_channels_open() {
    // A descriptor the parent leaks without CLOEXEC must not reach workers.
    fn fds(_: ()) -> Vec<String> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|p| p.display().to_string())
            .collect()
    }
    supervisor::task!(fds);
    each_method(DEADLINE, |method| {
        let leaked = std::fs::File::open("/etc/hostname").unwrap();
        let raw = std::os::fd::IntoRawFd::into_raw_fd(leaked);
        // SAFETY: clear CLOEXEC on our own descriptor.
        unsafe { libc::fcntl(raw, libc::F_SETFD, 0) };
        let mut p = Process::builder(fds, ())
            .start_method(method)
            .start()
            .unwrap();
        let open = p.join().unwrap();
        // SAFETY: closing the descriptor we opened above.
        unsafe { libc::close(raw) };
        assert!(!open.iter().any(|t| t == "/etc/hostname"), "{open:?}");
        let sockets = open.iter().filter(|t| t.starts_with("socket:")).count();
        // stdio (3 entries, one may be /dev/null), the task channel, the result channel,
        // the directory handle used to list them, and the socket pair that wakes the
        // thread handling SIGTERM.
        assert!(open.len() <= 8 && sockets <= 4, "{open:?}");
    });
}

#[test]
fn a_forged_worker_marker_runs_nothing() {
    isolated(DEADLINE, || {
        for (path, secret) in [
            ("/nonexistent/socket", Some("00".repeat(32))),
            ("/tmp", None),
            ("/nonexistent/socket", Some("zz".into())),
        ] {
            let mut cmd = scenario("prints_ran");
            cmd.env("__SUPERVISOR_BOOTSTRAP", path);
            if let Some(secret) = secret {
                cmd.env("__SUPERVISOR_SECRET", secret);
            }
            let out = cmd.output().unwrap();
            assert_eq!(out.status.code(), Some(70));
            assert!(out.stdout.is_empty(), "it ran something");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("started as a worker but cannot become one"),
                "{stderr}"
            );
        }
    });
}

#[linkme::distributed_slice(SCENARIOS)]
static PRINTS_RAN: Scenario = Scenario {
    name: "prints_ran",
    run: || println!("RAN"),
};

fn die_before_connect_scenario() {
    let t = Instant::now();
    let err = Process::builder(square, 1).start().map(drop).unwrap_err();
    println!("{} {}", t.elapsed().as_millis(), err);
}
#[linkme::distributed_slice(SCENARIOS)]
static DIE_BEFORE_CONNECT: Scenario = Scenario {
    name: "die_before_connect",
    run: die_before_connect_scenario,
};

#[test]
fn a_child_that_dies_before_connecting_is_an_error_at_once() {
    isolated(DEADLINE, || {
        let out = scenario("die_before_connect")
            .env("SUPERVISOR_FAULT", "exit-before-connect")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (ms, msg) = stdout.trim().split_once(' ').unwrap();
        assert!(
            msg.contains(
                "did not complete its bootstrap: it exited (exit code 3) before connecting"
            ),
            "{msg}"
        );
        // What ran in the child before `init()` ended it: the message points there.
        assert!(
            msg.contains("supervisor::init(), which must come first"),
            "{msg}"
        );
        assert!(ms.parse::<u64>().unwrap() < 5_000, "took {ms} ms");
    });
}

/// SIGKILLs this scenario's own child that hangs before connecting (every child but
/// the helpers), once it exists: a bootstrap directory is bound before the reaper
/// makes its child, so under load a kill at once could come before it.
fn kill_hanging_child() {
    let until = Instant::now() + Duration::from_secs(20);
    let hanging = loop {
        let kids: Vec<i32> = common::children_of(std::process::id() as i32)
            .into_iter()
            .filter(|pid| !supervisor::helper_pids().contains(&(*pid as u32)))
            .collect();
        if !kids.is_empty() || Instant::now() > until {
            break kids;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    for pid in hanging {
        // SAFETY: kill with plain integers; our own hanging child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

fn bootstrap_socket_scenario() {
    let umask: u32 = std::env::var("UMASK").unwrap().parse().unwrap();
    // SAFETY: umask takes a plain integer.
    unsafe { libc::umask(umask as libc::mode_t) };
    let before = common::bootstrap_dirs();
    let starter = std::thread::spawn(|| Process::builder(square, 1).start().map(drop));
    // The child hangs before connecting: wait for its bootstrap directory to appear.
    let dir = common::wait_new_bootstrap_dir(&before, Duration::from_secs(20));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    println!("mode {mode:o}");
    use std::os::unix::process::CommandExt;
    let out = scenario("connect_as_nobody")
        .env("SOCKET", format!("{dir}/socket"))
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    // Kill the hanging child: start() must then fail at once.
    kill_hanging_child();
    let err = starter.join().unwrap().unwrap_err();
    println!("start: {err}");
    println!(
        "left: {}",
        common::bootstrap_dirs().difference(&before).count()
    );
}
#[linkme::distributed_slice(SCENARIOS)]
static BOOTSTRAP_SOCKET: Scenario = Scenario {
    name: "bootstrap_socket",
    run: bootstrap_socket_scenario,
};

/// A spawn start whose bootstrap socket's path is removed while its child has not
/// connected yet (a user's `rm`, or another program's sweep that cannot see the
/// listener), then whose child dies: `start` fails at once. Prints the milliseconds
/// from the kill to the error, and the error.
fn socket_removed_mid_start_scenario() {
    let before = common::bootstrap_dirs();
    let starter = std::thread::spawn(|| Process::builder(square, 1).start().map(drop));
    let dir = common::wait_new_bootstrap_dir(&before, Duration::from_secs(20));
    std::fs::remove_file(format!("{dir}/socket")).unwrap();
    let t = Instant::now();
    kill_hanging_child();
    let err = starter.join().unwrap().unwrap_err();
    println!("{} {err}", t.elapsed().as_millis());
}
#[linkme::distributed_slice(SCENARIOS)]
static SOCKET_REMOVED: Scenario = Scenario {
    name: "socket_removed_mid_start",
    run: socket_removed_mid_start_scenario,
};

/// Before (a start accepting on the calling thread, woken by a connect to the socket's
/// path): with the path gone, the start hung forever after its child died.
#[test]
fn a_start_whose_socket_path_was_removed_ends_when_its_child_dies() {
    isolated(DEADLINE, || {
        let mut child = scenario("socket_removed_mid_start")
            .env("SUPERVISOR_FAULT", "hang-before-connect")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(
            common::wait_exit(pid, Duration::from_secs(25)),
            "the start hung after its child died"
        );
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let _ = child.wait();
        let (ms, msg) = out.trim().split_once(' ').unwrap();
        assert!(msg.contains("before connecting"), "{msg}");
        assert!(ms.parse::<u64>().unwrap() < 5_000, "took {ms} ms: {msg}");
    });
}

fn connect_as_nobody_scenario() {
    let path = std::env::var("SOCKET").unwrap();
    match ipc_channel_connect(&path) {
        Ok(()) => println!("connect: succeeded"),
        Err(e) => println!("connect: {}", e.kind()),
    }
}
#[linkme::distributed_slice(SCENARIOS)]
static CONNECT_AS_NOBODY: Scenario = Scenario {
    name: "connect_as_nobody",
    run: connect_as_nobody_scenario,
};

/// Connects like a worker would (a SOCK_SEQPACKET unix socket).
fn ipc_channel_connect(path: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: plain socket/connect calls on a zeroed sockaddr_un we fill in.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (i, b) in std::ffi::OsStr::new(path).as_bytes().iter().enumerate() {
            addr.sun_path[i] = *b as libc::c_char;
        }
        let r = libc::connect(
            fd,
            (&addr as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        );
        let e = std::io::Error::last_os_error();
        libc::close(fd);
        if r == 0 {
            Ok(())
        } else {
            Err(e)
        }
    }
}

#[test]
fn another_user_cannot_reach_the_bootstrap_socket_whatever_the_umask() {
    common::require_root("to drop to `nobody` for the connection attempt");
    isolated(DEADLINE, || {
        for umask in [0o000, 0o022] {
            let out = scenario("bootstrap_socket")
                .env("UMASK", umask.to_string())
                .env("SUPERVISOR_FAULT", "hang-before-connect")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let mut stderr = String::new();
            let _ = (&out.stderr[..]).read_to_string(&mut stderr);
            assert!(out.status.success(), "{stdout}\n{stderr}");
            assert!(stdout.contains("mode 700"), "{stdout}");
            assert!(stdout.contains("connect: permission denied"), "{stdout}");
            assert!(stdout.contains("before connecting"), "{stdout}");
            assert!(stdout.contains("left: 0"), "{stdout}");
        }
    });
}

#[test]
fn a_dead_forkserver_is_replaced_on_next_use() {
    isolated(DEADLINE, || {
        supervisor::ensure_forkserver().unwrap();
        let old = *supervisor::helper_pids().last().unwrap();
        // SAFETY: kill with plain integers; our own forkserver.
        unsafe { libc::kill(old as i32, libc::SIGKILL) };
        for i in 0..3 {
            let mut p = Process::builder(square, i)
                .start_method(StartMethod::Forkserver)
                .start()
                .unwrap();
            assert_eq!(p.join().unwrap(), i * i);
        }
        let new = *supervisor::helper_pids().last().unwrap();
        assert_ne!(new, old, "a new forkserver serves");
    });
}

/// The names of this process's environment variables.
fn env_names(_: ()) -> Vec<String> {
    let mut names: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
supervisor::task!(env_names);

#[test]
fn workers_can_be_given_only_an_allowlisted_environment() {
    each_method(DEADLINE, |method| {
        assert!(std::env::var_os("PATH").is_some() && std::env::vars_os().count() > 2);
        let mut p = Process::builder(env_names, ())
            .env_allowlist(["PATH", "NOT_SET_ANYWHERE"])
            .start_method(method)
            .start()
            .unwrap();
        assert_eq!(p.join().unwrap(), vec!["PATH".to_string()]);
        // Without an allowlist the environment is passed on (markers removed).
        let mut p = Process::builder(env_names, ())
            .start_method(method)
            .start()
            .unwrap();
        let all = p.join().unwrap();
        assert!(
            all.len() > 2 && !all.iter().any(|k| k.starts_with("__SUPERVISOR")),
            "{all:?}"
        );
        let pool = Pool::builder()
            .procs(1)
            .start_method(method)
            .env_allowlist(["PATH"])
            .build()
            .unwrap();
        assert_eq!(pool.apply(env_names, ()).unwrap(), vec!["PATH".to_string()]);
        pool.join();
    });
}

fn impostor_scenario() {
    let before = common::bootstrap_dirs();
    let starter = std::thread::spawn(|| {
        let t = Instant::now();
        (Process::builder(square, 1).start().map(drop), t)
    });
    // The real child hangs before connecting: wait for its socket, then get there first.
    let dir = common::wait_new_bootstrap_dir(&before, Duration::from_secs(20));
    let socket = format!("{dir}/socket");
    let tx = ipc_channel::ipc::IpcSender::<serde_bytes::ByteBuf>::connect(socket).unwrap();
    // A well-formed hello with the wrong secret (and a lie about the pid).
    let mut hello = b"SUPVSR\x00\x01".to_vec();
    hello.extend_from_slice(&1u32.to_le_bytes());
    hello.extend_from_slice(&0u64.to_le_bytes());
    hello.extend_from_slice(&std::process::id().to_le_bytes());
    hello.extend_from_slice(&[0u8; 32]);
    tx.send(serde_bytes::ByteBuf::from(hello)).unwrap();
    let (result, t) = starter.join().unwrap();
    let err = result.unwrap_err();
    println!("{} ms: {err}", t.elapsed().as_millis());
    println!(
        "left: {}",
        common::bootstrap_dirs().difference(&before).count()
    );
    println!("pid {}", std::process::id());
}
#[linkme::distributed_slice(SCENARIOS)]
static IMPOSTOR: Scenario = Scenario {
    name: "impostor",
    run: impostor_scenario,
};

#[test]
fn a_same_user_impostor_without_the_secret_is_refused() {
    isolated(DEADLINE, || {
        let out = scenario("impostor")
            .env("SUPERVISOR_FAULT", "hang-before-connect")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Refused at once, before anything it sent was decoded (by who connected: not
        // the child, adv16 F1); the real (hung) child was killed and reaped; nothing
        // left behind.
        assert!(
            stdout.contains(&format!(
                "another process (pid {}) connected to the start's socket",
                stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("pid "))
                    .unwrap_or("?")
            )),
            "{stdout}"
        );
        let ms: u64 = stdout.split(' ').next().unwrap().parse().unwrap();
        assert!(ms < 10_000, "{stdout}");
        assert!(stdout.contains("left: 0"), "{stdout}");
    });
}

/// Starts `sleep 300` and returns its pid without waiting for it; a second one, in a
/// new session and orphaned (double fork through `sh`), when asked.
fn leave_a_sleep(orphan: bool) -> (i32, i32) {
    let direct = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .expect("sleep")
        .id() as i32;
    let mut orphaned = 0;
    if orphan {
        let out = std::process::Command::new("sh")
            .args(["-c", "setsid sleep 300 >/dev/null 2>&1 & echo $!"])
            .output()
            .expect("sh");
        orphaned = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
    }
    (direct, orphaned)
}
supervisor::task!(leave_a_sleep);

/// A task's children end with the task: after `join` (Process) or as soon as the
/// result is in (Pool), the `sleep 300` it started and left running is gone, also one
/// it orphaned in a session of its own; `keep_task_children(true)` keeps them.
#[test]
fn a_tasks_children_end_with_the_task() {
    each_method(DEADLINE, |method| {
        let gone = |pid: i32| wait_exit(pid, Duration::from_secs(10));
        let mut p = Process::builder(leave_a_sleep, true)
            .start_method(method)
            .start()
            .unwrap();
        let (direct, orphaned) = p.join().unwrap();
        assert!(direct > 0 && orphaned > 0);
        assert!(
            gone(direct) && gone(orphaned),
            "a Process's task left its children"
        );
        let pool = Pool::builder()
            .procs(1)
            .start_method(method)
            .grace(Duration::from_millis(500))
            .build()
            .unwrap();
        let (direct, orphaned) = pool.apply(leave_a_sleep, true).unwrap();
        assert!(
            common::has_exited(direct) || gone(direct),
            "a pool task left its child"
        );
        assert!(gone(orphaned), "a pool task left its orphan");
        pool.join();
        // Opted out: they stay (and are killed here).
        let mut p = Process::builder(leave_a_sleep, false)
            .start_method(method)
            .keep_task_children(true)
            .start()
            .unwrap();
        let (direct, _) = p.join().unwrap();
        assert!(!gone_soon(direct), "kept children must live on");
        // SAFETY: kill with plain integers; the sleep this test started.
        unsafe { libc::kill(direct, libc::SIGKILL) };
        assert!(gone(direct));
    });
}

/// Whether `pid` ends within 300 ms (for a process that should not end at all).
fn gone_soon(pid: i32) -> bool {
    wait_exit(pid, Duration::from_millis(300))
}

/// Starts `sleep 300` in the worker's group, writes its pid to `path`, and waits for
/// the end.
fn sleep_then_hang(path: String) -> u32 {
    let child = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .expect("sleep")
        .id();
    std::fs::write(&path, child.to_string()).expect("write the pid");
    loop {
        std::thread::park();
    }
}
supervisor::task!(sleep_then_hang);

/// A worker SIGKILLed from outside while its task runs takes the task's children in
/// its process group with it, in a Process and in a pool (before: the `sleep` lived on,
/// adopted by init).
#[test]
fn a_killed_workers_task_children_end_with_it() {
    each_method(DEADLINE, |method| {
        let dir = std::env::temp_dir().join(format!("killed-worker-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let gone = |pid: i32| wait_exit(pid, Duration::from_secs(10));
        let path = dir.join("process");
        let mut p = Process::builder(sleep_then_hang, path.display().to_string())
            .start_method(method)
            .start()
            .unwrap();
        let sleep = common::pid_written_to(&path);
        // SAFETY: kill with plain integers; the child this test started (not its group).
        unsafe { libc::kill(p.pid() as i32, libc::SIGKILL) };
        let e = p.join().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Crashed { .. }), "{e:?}");
        assert!(gone(sleep), "a Process's task left its child");
        let pool = Pool::builder()
            .procs(1)
            .start_method(method)
            .grace(Duration::from_millis(300))
            .build()
            .unwrap();
        let path = dir.join("pool");
        let handle = pool.apply_async(sleep_then_hang, path.display().to_string());
        let sleep = common::pid_written_to(&path);
        let worker = pool.stats().workers[0].pid;
        // SAFETY: kill with plain integers; this pool's busy worker.
        unsafe { libc::kill(worker as i32, libc::SIGKILL) };
        let e = handle.wait().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Crashed { .. }), "{e:?}");
        assert!(
            gone(sleep),
            "a pool task left its child when its worker died"
        );
        pool.join();
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// Starts `sleep 300` in the worker's group, writes its pid to `path`, and ends the
/// worker with `exit(3)` before the task returns.
fn sleep_then_exit(path: String) -> u32 {
    let child = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .expect("sleep")
        .id();
    std::fs::write(&path, child.to_string()).expect("write the pid");
    std::process::exit(3)
}
supervisor::task!(sleep_then_exit);

/// A task that ends its worker with `exit(n)` takes its children in the worker's group
/// with it, in a Process and in a pool (before: after `Process::join` the `sleep` lived
/// on 12 s later, in every start method; only a signal's death ended the group).
#[test]
fn a_task_that_exits_its_worker_takes_its_children_with_it() {
    each_method(DEADLINE, |method| {
        let dir = std::env::temp_dir().join(format!("exiting-task-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let gone = |pid: i32| wait_exit(pid, Duration::from_secs(10));
        let path = dir.join("process");
        let mut p = Process::builder(sleep_then_exit, path.display().to_string())
            .start_method(method)
            .start()
            .unwrap();
        let e = p.join().unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Exited { code: 3, .. }),
            "{e:?}"
        );
        assert!(
            gone(common::pid_written_to(&path)),
            "a Process's task left its child"
        );
        let pool = Pool::builder()
            .procs(1)
            .start_method(method)
            .grace(Duration::from_millis(300))
            .build()
            .unwrap();
        let path = dir.join("pool");
        let e = pool
            .apply(sleep_then_exit, path.display().to_string())
            .unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Exited { code: 3, .. }),
            "{e:?}"
        );
        assert!(
            gone(common::pid_written_to(&path)),
            "a pool task left its child"
        );
        pool.join();
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// Orphans a `sleep 300` in a session of its own (out of the worker's group), writes
/// its pid to `path`, and waits for the end.
fn orphan_then_hang(path: String) -> u32 {
    let out = std::process::Command::new("sh")
        .args(["-c", "setsid sleep 300 >/dev/null 2>&1 & echo $!"])
        .output()
        .expect("sh");
    std::fs::write(&path, String::from_utf8_lossy(&out.stdout).trim()).expect("write the pid");
    loop {
        std::thread::park();
    }
}
supervisor::task!(orphan_then_hang);

/// A task stopped at its time limit takes even the children that left its process
/// group (a new session) with it: the worker ends them before it dies of the SIGTERM
/// (before: the `setsid sleep` lived on, adopted by init).
#[test]
fn a_timed_out_tasks_children_end_even_in_a_session_of_their_own() {
    each_method(DEADLINE, |method| {
        let dir = std::env::temp_dir().join(format!("timed-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pool = Pool::builder()
            .procs(1)
            .start_method(method)
            .task_timeout(Duration::from_millis(300))
            .grace(Duration::from_secs(2))
            .build()
            .unwrap();
        let path = dir.join("pid");
        let e = pool
            .apply(orphan_then_hang, path.display().to_string())
            .unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::TimedOut { .. }), "{e:?}");
        let sleep = common::pid_written_to(&path);
        assert!(
            wait_exit(sleep, Duration::from_secs(10)),
            "the timed-out task's orphan lived on"
        );
        pool.join();
        std::fs::remove_dir_all(&dir).unwrap();
    });
}
