//! The spawn rendezvous (a bootstrap directory holding a unix socket, made by
//! ipc-channel): private from its first instant, and nothing left in the temp directory
//! by programs SIGKILLed while workers start: a later start sweeps what dead programs
//! left.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{isolated, scenario, Scenario, SCENARIOS};
use supervisor::{BrokenReason, ErrorKind, Pool, Process, StartMethod};

const DEADLINE: Duration = Duration::from_secs(120);

fn die(_: u64) -> u64 {
    std::process::exit(1)
}
supervisor::task!(die);

fn one(x: u64) -> u64 {
    x + 1
}
supervisor::task!(one);

/// Restarts spawned workers as fast as the pool will (every task kills its worker),
/// announcing each round on stdout, until it is killed.
fn respawn_forever() {
    let pool = Pool::builder()
        .procs(2)
        .start_method(StartMethod::Spawn)
        .build()
        .unwrap();
    loop {
        let _ = pool.apply(die, 0);
        println!("round");
    }
}

/// One spawned process, then exit.
fn spawn_once() {
    let mut p = Process::builder(one, 1).start().unwrap();
    assert_eq!(p.join().unwrap(), 2);
}

/// Spawns 20 processes under umask 000 while a watcher looks at every bootstrap
/// directory that appears: none may ever be open to group or others.
fn spawn_under_open_umask() {
    // SAFETY: umask only swaps the process's mask.
    unsafe { libc::umask(0) };
    let tmp = std::env::temp_dir();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (tmp, stop) = (tmp.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = 0usize;
            while !stop.load(Ordering::Relaxed) {
                for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
                    if let Ok(meta) = entry.metadata() {
                        if meta.is_dir() {
                            seen += 1;
                            assert_eq!(meta.mode() & 0o077, 0, "{:?} is open", entry.path());
                        }
                    }
                }
            }
            seen
        })
    };
    for i in 0..20 {
        let mut p = Process::builder(one, i).start().unwrap();
        assert_eq!(p.join().unwrap(), i + 1);
    }
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    println!("seen {seen}");
}

#[linkme::distributed_slice(SCENARIOS)]
static RESPAWN_FOREVER: Scenario = Scenario {
    name: "respawn_forever",
    run: respawn_forever,
};

#[linkme::distributed_slice(SCENARIOS)]
static SPAWN_ONCE: Scenario = Scenario {
    name: "spawn_once",
    run: spawn_once,
};

#[linkme::distributed_slice(SCENARIOS)]
static SPAWN_UNDER_OPEN_UMASK: Scenario = Scenario {
    name: "spawn_under_open_umask",
    run: spawn_under_open_umask,
};

/// This process's namespaces as a probe's name records them (`nNET-pPID-`): a probe
/// of our own namespaces is judged by its pid, any other only by its age.
fn own_ns() -> String {
    let inode = |kind: &str| {
        std::fs::metadata(format!("/proc/self/ns/{kind}"))
            .unwrap()
            .ino()
    };
    format!("n{}-p{}-", inode("net"), inode("pid"))
}

/// A private temp directory for one test, removed on drop.
struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Tmp {
        let dir = std::env::temp_dir().join(format!("supervisor-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Tmp(dir)
    }

    fn entries(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.0)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect()
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn programs_killed_while_spawning_leave_nothing_after_the_next_start() {
    isolated(DEADLINE, || {
        let tmp = Tmp::new("sweep");
        let mut last_killed = 0;
        for _ in 0..10 {
            let mut child = scenario("respawn_forever")
                .env("TMPDIR", tmp.path())
                .spawn()
                .unwrap();
            let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            // A few rounds of respawning, then SIGKILL, often mid-start.
            for _ in 0..3 {
                line.clear();
                std::io::BufRead::read_line(&mut out, &mut line).unwrap();
                assert_eq!(line, "round\n");
            }
            child.kill().unwrap();
            child.wait().unwrap();
            last_killed = child.id();
        }
        // And what a program killed inside the temp-directory check leaves: its probe,
        // an empty file (the pid is the last killed program's, dead now), or an empty
        // directory from an earlier version. SIGKILLs land there too, in about half
        // the runs of ten.
        let probe = |n: u32| {
            tmp.path().join(format!(
                ".supervisor-probe-{}-{}{n:08x}",
                last_killed,
                own_ns()
            ))
        };
        std::fs::create_dir(probe(0x0bad_f00d)).unwrap();
        std::fs::File::create(probe(0x0bad_f00e)).unwrap();
        // Their workers die with them (parent-death signal); wait for that, then for
        // the leftovers to be old enough to be taken for a dead program's.
        let left = tmp.entries();
        eprintln!("entries left by the killed programs: {left:?}");
        let t = Instant::now();
        while tmp.entries().iter().any(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|m| m.elapsed().unwrap_or_default() < Duration::from_millis(2100))
        }) {
            assert!(t.elapsed() < Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(100));
        }
        spawn_once_under(tmp.path());
        // Nothing is left, not even the empty `.tmpXXXXXX` of a program killed between
        // ipc-channel's making the directory and binding its socket: its probe names
        // it. Probe directories were left before (the sweep looked only at `.tmp*`),
        // and that empty directory until the probe named it.
        let left_over = tmp.entries();
        assert!(
            left_over.is_empty(),
            "left behind: {left_over:?} (before the sweep: {left:?})"
        );
    });
}

#[test]
fn the_bootstrap_directory_is_private_from_its_first_instant() {
    isolated(DEADLINE, || {
        let tmp = Tmp::new("umask");
        let out = scenario("spawn_under_open_umask")
            .env("TMPDIR", tmp.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(tmp.entries().is_empty(), "{:?}", tmp.entries());
    });
}

/// The sweep takes only what is recognisably a dead start's (an unbound `socket` alone
/// in its directory): another program's empty or busy `.tmp` directory, however old,
/// stays (before: any empty `.tmp*` directory older than 60 s was removed, and
/// tempfile's default prefix is `.tmp`).
#[test]
fn the_sweep_leaves_other_programs_temporary_directories_alone() {
    isolated(DEADLINE, || {
        let tmp = Tmp::new("others");
        let old = std::time::SystemTime::now() - Duration::from_secs(600);
        let empty = tmp.path().join(".tmpMyApp1");
        let busy = tmp.path().join(".tmpMyApp2");
        std::fs::create_dir(&empty).unwrap();
        std::fs::create_dir(&busy).unwrap();
        std::fs::write(busy.join("data"), b"x").unwrap();
        for dir in [&empty, &busy] {
            std::fs::File::open(dir).unwrap().set_modified(old).unwrap();
        }
        spawn_once_under(tmp.path());
        assert!(
            empty.is_dir() && busy.join("data").is_file(),
            "{:?}",
            tmp.entries()
        );
        std::fs::remove_dir(&empty).unwrap();
        std::fs::remove_dir_all(&busy).unwrap();
    });
}

/// What a program killed between ipc-channel's `mkdir` of its bootstrap directory and
/// the socket's `bind` leaves, made by hand (the window is microseconds wide; SIGKILLs
/// during respawning land in it in about 1 run of 4 of ten): its probe, which names
/// the directory, and that directory, empty. The next start removes both when the
/// probe's program is dead, and leaves them when it lives (it may go on) and an empty
/// `.tmp` directory no probe names. Before, the empty directory was never swept.
#[test]
fn the_sweep_removes_the_empty_bootstrap_directory_a_dead_programs_probe_names() {
    isolated(DEADLINE, || {
        let tmp = Tmp::new("recorded");
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        let dead = gone.id();
        let alive = std::process::id();
        let old = std::time::SystemTime::now() - Duration::from_secs(600);
        let made = |name: &str| {
            let dir = tmp.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::File::open(&dir)
                .unwrap()
                .set_modified(old)
                .unwrap();
            dir
        };
        let dead_dir = made(".tmpDe4dXy");
        let ns = own_ns();
        let dead_probe = made(&format!(".supervisor-probe-{dead}-{ns}.tmpDe4dXy"));
        let live_dir = made(".tmpL1veXy");
        let live_probe = made(&format!(".supervisor-probe-{alive}-{ns}.tmpL1veXy"));
        let other = made(".tmpOther");
        spawn_once_under(tmp.path());
        let left = tmp.entries();
        assert!(!dead_dir.exists() && !dead_probe.exists(), "{left:?}");
        assert!(
            live_dir.is_dir() && live_probe.is_dir() && other.is_dir(),
            "{left:?}"
        );
        assert_eq!(left.len(), 3, "{left:?}");
    });
}

/// Runs the `spawn_once` scenario (one spawned `Process`, start to result) with
/// `TMPDIR` set to `dir`, and asserts that it succeeded.
fn spawn_once_under(dir: &Path) {
    let out = scenario("spawn_once").env("TMPDIR", dir).output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// Under a `TMPDIR` with spaces, a live program's bootstrap socket (bound, alone in an
/// old `.tmp` directory) is left alone by the sweep, and the start works. Before: the
/// bound paths were read from `/proc/net/unix` split on whitespace, so `/tmp/a b/...`
/// was taken for `/tmp/a`, the live socket for an unbound one, and it was removed.
#[test]
fn the_sweep_leaves_a_live_socket_alone_under_a_tmpdir_with_spaces() {
    isolated(DEADLINE, || {
        let tmp = Tmp::new("with spaces in it");
        let live = tmp.path().join(".tmpLive01");
        std::fs::create_dir(&live).unwrap();
        let socket = live.join("socket");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(600);
        std::fs::File::open(&live)
            .unwrap()
            .set_modified(old)
            .unwrap();
        spawn_once_under(tmp.path());
        assert!(
            socket.exists(),
            "the live socket was swept: {:?}",
            tmp.entries()
        );
        drop(listener);
        std::fs::remove_dir_all(&live).unwrap();
    });
}

/// Starts three spawned processes under whatever `TMPDIR` it was given; prints each
/// outcome on a line.
fn spawn_under_odd_tmpdir() {
    for _ in 0..3 {
        match Process::builder(one, 1).start() {
            Ok(mut p) => println!("started: {:?}", p.join()),
            Err(e) => println!("error: {e}: {:?}", std::error::Error::source(&e)),
        }
    }
}
#[linkme::distributed_slice(SCENARIOS)]
static SPAWN_UNDER_ODD_TMPDIR: Scenario = Scenario {
    name: "spawn-under-odd-tmpdir",
    run: spawn_under_odd_tmpdir,
};

/// Runs the scenario above with `TMPDIR` set to `dir`; its stdout.
fn spawn_with_tmpdir(dir: &std::ffi::OsStr) -> String {
    let out = scenario("spawn-under-odd-tmpdir")
        .env("TMPDIR", dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "TMPDIR {dir:?}: the program died ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A `TMPDIR` that does not exist, is not UTF-8, or is too long for a socket path
/// (sun_path holds 107 bytes) gives a spawn start an error, or a start that works, and
/// leaves nothing behind. Seen (ipc-channel 0.23's one-shot server, from
/// `src/launch/spawn.rs`): a missing one panics the caller (`assertion failed:
/// e.kind() == io::ErrorKind::ConnectionReset`, from tempfile's path-annotated error),
/// and so does any failure to make its directory (a TMPDIR out of inodes, read-only or
/// not writable: measured on a full tmpfs), a non-UTF-8 one panics
/// (`to_str().unwrap()`), and a long one binds a silently
/// truncated path outside the 0700 directory: the first start works and leaves that
/// socket behind, every later start fails with "Address already in use" (a pool
/// breaks on it) and leaks the socket's descriptor, since no error path closes it.
#[test]
fn an_odd_tmpdir_gives_spawn_an_error_never_a_panic_or_a_leftover() {
    use std::os::unix::ffi::OsStrExt;
    isolated(DEADLINE, || {
        let private = std::env::temp_dir();
        let missing = private.join("no-such-dir");
        let not_utf8 = private.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
        std::fs::create_dir(&not_utf8).unwrap();
        let long = private.join("x".repeat(100));
        std::fs::create_dir(&long).unwrap();
        let mut seen = Vec::new();
        for dir in [&missing, &not_utf8, &long] {
            let stdout = spawn_with_tmpdir(dir.as_os_str());
            assert!(
                !stdout.contains("Address already in use"),
                "{dir:?}: a start failed on a socket an earlier one left: {stdout}"
            );
            seen.push(stdout);
        }
        let left: Vec<_> = std::fs::read_dir(&private)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.as_bytes() != b"caf\xe9" && n.as_bytes() != "x".repeat(100).as_bytes())
            .collect();
        std::fs::remove_dir_all(&not_utf8).unwrap();
        std::fs::remove_dir_all(&long).unwrap();
        assert!(left.is_empty(), "left in {private:?}: {left:?}\n{seen:#?}");
    });
}

/// Under whatever `TMPDIR` it was given, per start method that needs one (spawn and
/// forkserver): a `Process` start and a one-worker pool's `apply`; one line each,
/// `METHOD process|pool: ok|error|broken-at-start|storm|other: message chain`.
fn start_under_bad_tmpdir() {
    for method in [StartMethod::Spawn, StartMethod::Forkserver] {
        let outcome = match Process::builder(one, 1).start_method(method).start() {
            Ok(mut p) => format!("ok {:?}", p.join()),
            Err(e) => format!("error: {}", supervisor_worker::error_chain(&e)),
        };
        println!("{method} process: {outcome}");
        let pool = match Pool::builder().procs(1).start_method(method).build() {
            Ok(pool) => pool,
            Err(e) => {
                println!(
                    "{method} pool: build error: {}",
                    supervisor_worker::error_chain(&e)
                );
                continue;
            }
        };
        let outcome = match pool.apply(one, 1) {
            Ok(v) => format!("ok {v}"),
            Err(e) => {
                let what = match e.kind() {
                    ErrorKind::PoolBroken {
                        reason: BrokenReason::CannotStart(_),
                        ..
                    } => "broken-at-start",
                    ErrorKind::PoolBroken {
                        reason: BrokenReason::Storm { .. },
                        ..
                    } => "storm",
                    _ => "other",
                };
                format!("{what}: {}", supervisor_worker::error_chain(&e))
            }
        };
        pool.terminate();
        println!("{method} pool: {outcome}");
    }
}
#[linkme::distributed_slice(SCENARIOS)]
static START_UNDER_BAD_TMPDIR: Scenario = Scenario {
    name: "start-under-bad-tmpdir",
    run: start_under_bad_tmpdir,
};

/// Checks the scenario's lines for `TMPDIR` `dir`: every start fails with the
/// temporary-directory error and every pool is broken at its first start.
fn assert_bad_tmpdir_breaks_at_once(dir: &str, out: std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "TMPDIR {dir:?}: the program died ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "TMPDIR {dir:?}: {stdout}");
    for line in lines {
        let expected = if line
            .split(':')
            .next()
            .is_some_and(|w| w.ends_with(" process"))
        {
            "process: error: "
        } else {
            "pool: broken-at-start: "
        };
        assert!(
            line.contains(expected) && line.contains("(TMPDIR)"),
            "TMPDIR {dir:?}: {line}"
        );
    }
}

/// A `TMPDIR` a bootstrap socket cannot be made in breaks a pool at its first start
/// with the temporary-directory error, for spawn and forkserver pools alike, and fails
/// a `Process` start with it. Seen: a dangling symlink, a regular file, `/dev/null`,
/// `/proc`, `/sys/kernel` or a read-only mount counted as passing trouble, and a pool
/// retried through its restart back-off and broke after 4.3 s as a storm ("11 workers
/// died or failed to start within 60s"); a forkserver pool did that for every bad
/// value, also a relative, empty or non-UTF-8 one (its error came wrapped in the fork
/// server's).
#[test]
fn a_bad_tmpdir_breaks_spawn_and_forkserver_pools_at_their_first_start() {
    use std::os::unix::ffi::OsStrExt;
    isolated(DEADLINE, || {
        let tmp = Tmp::new("bad");
        let dangling = tmp.path().join("dangling");
        std::os::unix::fs::symlink(tmp.path().join("nowhere"), &dangling).unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let missing = tmp.path().join("missing");
        let not_utf8 = tmp.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
        let values: Vec<std::ffi::OsString> = vec![
            dangling.into(),
            file.into(),
            missing.into(),
            "/dev/null".into(),
            "/proc".into(),
            "/sys/kernel".into(),
            "relative".into(),
            "".into(),
            not_utf8.into(),
        ];
        for dir in &values {
            let out = scenario("start-under-bad-tmpdir")
                .env("TMPDIR", dir)
                .output()
                .unwrap();
            assert_bad_tmpdir_breaks_at_once(&dir.to_string_lossy(), out);
        }
        // A read-only mount, where a mount namespace of our own can be had (root).
        let ro = tmp.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        let exe = std::env::current_exe().unwrap();
        let script = format!(
            "mount -t tmpfs -o ro tmpfs '{}' || exit 97; exec '{}'",
            ro.display(),
            exe.display()
        );
        let out = std::process::Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .env(common::SCENARIO_ENV, "start-under-bad-tmpdir")
            .env("TMPDIR", &ro)
            .stdin(std::process::Stdio::null())
            .output();
        match out {
            Ok(out) if out.status.code() != Some(97) && out.status.code() != Some(1) => {
                eprintln!(
                    "read-only mount: ran:\n{}",
                    String::from_utf8_lossy(&out.stdout)
                );
                assert_bad_tmpdir_breaks_at_once(&ro.display().to_string(), out);
            }
            other => panic!(
                "a read-only TMPDIR needs a mount namespace (`unshare -m`, root), so this \
                 case cannot run: {other:?}"
            ),
        }
    });
}

/// Spawn starts do not change the modes of files other threads of the program create
/// meanwhile. Seen: the rendezvous is made under a process-wide umask of 0o077
/// (`os::with_private_umask` around ipc-channel's one-shot server, from
/// `src/launch/spawn.rs`), so a file another thread creates with mode 0o644 during a
/// start comes out 0o600 (unreadable to the group and others it was meant for).
#[test]
fn spawn_starts_leave_other_threads_file_modes_alone() {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // The usual mask, whatever the test runner's: the files made below ask for 0o644
    // and must get it, so a narrowing by a start is seen.
    // SAFETY: umask only swaps the process's mask.
    let old_mask = unsafe { libc::umask(0o022) };
    isolated(DEADLINE, || {
        let dir = std::env::temp_dir().join("modes");
        std::fs::create_dir(&dir).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (stop, dir) = (stop.clone(), dir.clone());
            std::thread::spawn(move || {
                let mut narrowed = 0;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let path = dir.join(format!("f{i}"));
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o644)
                        .open(&path)
                        .unwrap();
                    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                    if mode & 0o044 == 0 {
                        narrowed += 1;
                    }
                    std::fs::remove_file(&path).unwrap();
                    i += 1;
                }
                (narrowed, i)
            })
        };
        for _ in 0..30 {
            let mut p = Process::builder(one, 1)
                .start_method(StartMethod::Spawn)
                .start()
                .unwrap();
            assert_eq!(p.join().unwrap(), 2);
        }
        stop.store(true, Ordering::Relaxed);
        let (narrowed, made) = writer.join().unwrap();
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(
            narrowed, 0,
            "{narrowed} of {made} files made 0o644 came out without group and other read"
        );
    });
    // SAFETY: as above, restoring what was there.
    unsafe { libc::umask(old_mask) };
}
