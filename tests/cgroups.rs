//! The cgroups spawned workers are born in (`crate::cgroup` in the library): what a dead
//! program left in its workers' cgroups is ended and removed by the next program (a
//! worker that outlives its program by design, and its task, are spared), and a
//! program whose own cgroup was once killed with `cgroup.kill` still starts workers
//! (the kernel kills a child born in a cgroup whose kill count differs from its
//! parent's: the start is made again without a cgroup).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{has_exited, isolated, pid_written_to, wait_exit};
use supervisor::{Process, StartMethod};

const DEADLINE: Duration = Duration::from_secs(60);

fn square(x: u64) -> u64 {
    x * x
}
supervisor::task!(square);

/// Starts `sleep 300` that leaves the worker's session and is adopted by the worker
/// (it double-forks), writes its pid to `path` and the worker's to `path.worker`, then
/// sleeps for good.
fn double_fork_then_sleep(path: String) -> u32 {
    use std::os::unix::process::CommandExt;
    std::fs::write(format!("{path}.worker"), std::process::id().to_string()).unwrap();
    let mut command = std::process::Command::new("sh");
    command
        .args([
            "-c",
            "sleep 300 & printf %s $! > \"$1.tmp\"; mv \"$1.tmp\" \"$1\"",
            "sh",
        ])
        .arg(&path)
        .stdin(std::process::Stdio::null());
    // SAFETY: setsid is async-signal-safe: nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        })
    };
    // `sh` exits at once: its `sleep` is orphaned.
    command.status().expect("sh");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
supervisor::task!(double_fork_then_sleep);

/// A program whose spawned `Process` (a daemon if `ESCAPE_DAEMON` is 1) runs
/// `double_fork_then_sleep`; waits to be killed.
fn escaping_program() {
    supervisor::init();
    let path = std::env::var("ESCAPE_PID_FILE").unwrap();
    let daemon = std::env::var("ESCAPE_DAEMON").unwrap() == "1";
    let _p = Process::builder(double_fork_then_sleep, path)
        .start_method(StartMethod::Spawn)
        .daemon(daemon)
        .start()
        .unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[linkme::distributed_slice(common::SCENARIOS)]
static ESCAPING: common::Scenario = common::Scenario {
    name: "escaping_program",
    run: escaping_program,
};

/// A program that starts one spawned `Process` and prints its result.
fn one_spawn_program() {
    supervisor::init();
    let mut p = Process::builder(square, 12)
        .start_method(StartMethod::Spawn)
        .start()
        .expect("start");
    println!("{}", p.join().expect("join"));
}

#[linkme::distributed_slice(common::SCENARIOS)]
static ONE_SPAWN: common::Scenario = common::Scenario {
    name: "one_spawn_program",
    run: one_spawn_program,
};

/// The program cgroups (`supervisor-PID-...`) in `dir`.
fn program_cgroups(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with("supervisor-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Removes cgroup `dir` and those below it (empty ones), deepest first.
fn remove_cgroups(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                remove_cgroups(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn own_cgroup() -> PathBuf {
    common::require_cgroups("spawned workers are born in cgroups of their own");
    common::own_cgroup_dir().expect("own cgroup")
}

/// Starts `escaping_program` (its `Process` a daemon or not); the pids of the escaped
/// `sleep` and of the worker, and the prefix of the program's cgroup's name.
fn start_escaping(dir: &Path, daemon: bool) -> (std::process::Child, i32, i32, String) {
    let path = dir.join(format!("escaped-{daemon}"));
    let program = common::scenario("escaping_program")
        .env("ESCAPE_PID_FILE", &path)
        .env("ESCAPE_DAEMON", if daemon { "1" } else { "0" })
        .spawn()
        .unwrap();
    let escaped = pid_written_to(&path);
    let worker = pid_written_to(&path.with_extension("worker"));
    let name = format!("supervisor-{}-", program.id());
    assert!(
        program_cgroups(&own_cgroup())
            .iter()
            .any(|n| n.starts_with(&name)),
        "the program made its cgroup"
    );
    (program, escaped, worker, name)
}

/// Runs `one_spawn_program` to its end (its first spawn sweeps dead programs' cgroups);
/// it leaves no cgroup of its own behind.
fn run_next_program() {
    let next = common::scenario("one_spawn_program").spawn().unwrap();
    let own = format!("supervisor-{}-", next.id());
    let (status, out, err) = common::scenario_output(next, "one_spawn_program", DEADLINE);
    assert!(status.success(), "the next program failed: {err}");
    assert_eq!(out.trim(), "144");
    let left = cgroups_named(&own);
    assert!(
        left.is_empty(),
        "a program that exited left its cgroups: {left:?}"
    );
}

fn kill(pid: i32) {
    // SAFETY: kill with plain integers: a process this test started (or its task did).
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

fn cgroups_named(prefix: &str) -> Vec<String> {
    program_cgroups(&own_cgroup())
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// A program and its daemon worker SIGKILLed together (`pkill -9`, the OOM killer)
/// while the worker's task had an escaped `sleep` (in a session of its own, adopted
/// by init once the worker is gone): nobody was left to end it. The next program's
/// first spawn kills it and removes the dead program's cgroups (before: it ran for
/// its 300 s, found by nothing).
#[test]
fn the_next_program_ends_what_a_killed_program_left_and_removes_its_cgroups() {
    isolated(DEADLINE, || {
        let dir = std::env::temp_dir().join(format!("cgroup-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (mut program, escaped, worker, name) = start_escaping(&dir, true);
        kill(worker);
        program.kill().unwrap();
        program.wait().unwrap();
        assert!(wait_exit(worker, Duration::from_secs(5)), "the worker died");
        assert!(!has_exited(escaped), "the escaped sleep outlives both");
        run_next_program();
        let gone = wait_exit(escaped, Duration::from_secs(5));
        if !gone {
            kill(escaped);
        }
        assert!(
            gone,
            "the next program left the dead one's escaped sleep running"
        );
        let left = cgroups_named(&name);
        assert!(
            left.is_empty(),
            "the dead program's cgroups stayed: {left:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// A `Process` that is not a daemon lives on after its program is SIGKILLed (README):
/// the next program's sweep leaves it and what its task runs alone, and removes the
/// dead program's cgroups only once they are empty.
#[test]
fn the_sweep_spares_a_worker_that_outlives_its_program() {
    isolated(DEADLINE, || {
        let dir = std::env::temp_dir().join(format!("cgroup-spare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (mut program, escaped, worker, name) = start_escaping(&dir, false);
        program.kill().unwrap();
        program.wait().unwrap();
        run_next_program();
        let (worker_lived, escaped_lived) = (!has_exited(worker), !has_exited(escaped));
        kill(worker);
        kill(escaped);
        assert!(
            worker_lived,
            "the sweep killed a worker that lives on by design"
        );
        assert!(
            escaped_lived,
            "the sweep killed what that worker's task runs"
        );
        assert!(wait_exit(worker, Duration::from_secs(5)));
        assert!(wait_exit(escaped, Duration::from_secs(5)));
        assert!(!cgroups_named(&name).is_empty(), "spared while it ran");
        run_next_program();
        let left = cgroups_named(&name);
        assert!(left.is_empty(), "its emptied cgroups stayed: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// A program in a cgroup that was once killed with `cgroup.kill`: its first spawned
/// worker, born in a child cgroup, is SIGKILLed by the kernel at birth; the start is
/// made again without a cgroup and succeeds (before: "exited (SIGKILL) before
/// connecting", and the same for every later start).
#[test]
fn a_program_in_a_cgroup_once_killed_still_starts_workers() {
    isolated(DEADLINE, || {
        let own = own_cgroup();
        let killed = own.join(format!("test-killed-{}", std::process::id()));
        std::fs::create_dir(&killed).unwrap();
        std::fs::write(killed.join("cgroup.kill"), "1").unwrap();
        let procs = std::ffi::CString::new(killed.join("cgroup.procs").to_str().unwrap()).unwrap();
        let mut command = common::scenario("one_spawn_program");
        use std::os::unix::process::CommandExt;
        // SAFETY: open, write and close are async-signal-safe; `procs` outlives the
        // spawn.
        unsafe {
            command.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
                Ok(())
            })
        };
        let child = command.spawn().unwrap();
        let (status, out, err) = common::scenario_output(child, "one_spawn_program", DEADLINE);
        // Everything it made under the killed cgroup is gone with it (its exit).
        let leftovers = program_cgroups(&killed);
        for name in &leftovers {
            remove_cgroups(&killed.join(name));
        }
        let removed = std::fs::remove_dir(&killed);
        assert!(status.success(), "the program failed: {err}");
        assert_eq!(out.trim(), "144");
        assert!(leftovers.is_empty(), "it left cgroups: {leftovers:?}");
        removed.unwrap();
    });
}

/// Starts `sleep 300` in a session of its own, orphaned; writes its pid to `path`, then
/// sleeps for good.
fn escape_and_hang(path: String) -> u32 {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("setsid sleep 300 </dev/null >/dev/null 2>&1 & printf %s $!")
        .output()
        .expect("sh");
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::fs::write(format!("{path}.tmp"), &pid).expect("write");
    std::fs::rename(format!("{path}.tmp"), &path).expect("rename");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
supervisor::task!(escape_and_hang);

/// A task that is itself a program: runs `escape_and_hang` in a `Process` of its own
/// (its worker's cgroup nested in ours), publishes the escaped pid, then aborts.
fn nested_then_abort(path: String) -> u32 {
    let inner = format!("{path}.inner");
    let p = Process::builder(escape_and_hang, inner.clone())
        .start()
        .expect("inner start");
    let child = pid_written_to(Path::new(&inner));
    std::fs::write(format!("{path}.tmp"), child.to_string()).expect("write");
    std::fs::rename(format!("{path}.tmp"), &path).expect("rename");
    std::mem::forget(p);
    std::process::abort()
}
supervisor::task!(nested_then_abort);

/// A spawned worker whose task started a program of its own (a `Process`: its worker's
/// cgroup is below ours) aborts: what that inner task left in a session of its own is
/// gone when the outer `join` returns (adversarial pass adv18h: the kill reached only
/// the worker's cgroup itself; `join` took its 1 s and the `sleep` ran on).
#[test]
fn a_nested_programs_escaped_child_ends_with_the_outer_worker() {
    own_cgroup();
    isolated(DEADLINE, || {
        let dir = std::env::temp_dir().join(format!("cgroup-nested-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pid");
        let mut p = Process::builder(nested_then_abort, path.display().to_string())
            .start_method(StartMethod::Spawn)
            .start()
            .unwrap();
        let child = pid_written_to(&path);
        let t = std::time::Instant::now();
        assert!(p.join().is_err());
        let took = t.elapsed();
        let alive = !has_exited(child);
        if alive {
            kill(child);
            wait_exit(child, Duration::from_secs(5));
        }
        assert!(
            !alive,
            "the nested escaped sleep ran on (join took {took:?})"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    });
}
