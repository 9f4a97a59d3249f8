//! Worker isolation and bootstrap security: open descriptors, forged markers, early deaths, the bootstrap socket, forkserver replacement, environment allowlist, impostors.

use super::*;

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
