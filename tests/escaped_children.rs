//! What a task starts in a session of its own (`setsid`) ends with its worker also when
//! the worker dies without ending it: `exit(3)`, `abort()`, or a SIGKILL from outside,
//! in every start method. The worker is gone by then; what it left must not be adopted
//! by init.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{has_exited, isolated, pid_written_to, wait_exit};
use supervisor::{Pool, Process, StartMethod};

const DEADLINE: Duration = Duration::from_secs(90);

/// Every start method: the fork and forkserver servers are subreapers and adopt what
/// their workers leave; a spawned worker is born in a cgroup of its own, which keeps
/// whatever its task started (README: where the system gives no writable cgroup v2,
/// what a dead spawned worker leaves in a session of its own is beyond reach; this
/// machine and CI have one, and [`common::require_cgroups`] says so if not).
fn each_method(body: fn(StartMethod)) {
    common::require_cgroups("a spawned worker's escaped children are found by its cgroup");
    common::each_method(DEADLINE, body);
}

/// The documented bound for a dropped handle: the worker's group gets SIGTERM when its
/// exit is seen and SIGKILL after the grace (5 s for a `Process`).
const DROPPED_BOUND: Duration = Duration::from_secs(7);

/// How the worker ends once its task has started the escaped child.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
enum End {
    Exit,
    /// `exit(0)`: a clean code, though the worker did not end its task's children.
    ExitZero,
    Abort,
    /// The test SIGKILLs the worker (whose pid the task writes too).
    Killed,
}

/// Starts `sleep 300` in a session of its own, writes its pid to `path` (its group to
/// `path.pgrp`, the worker's pid to `path.worker`), then ends its worker as `end` says.
fn escape_then_end(a: (String, End)) -> u32 {
    let (path, end) = a;
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new("sleep");
    command.arg("300").stdin(std::process::Stdio::null());
    // SAFETY: setsid is async-signal-safe: nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        })
    };
    let child = command.spawn().expect("setsid sleep").id();
    // Its group, seen here while it surely runs (the worker's end may kill it before
    // the test looks).
    // SAFETY: getpgid takes a plain pid: our own child, not reaped.
    let pgrp = unsafe { libc::getpgid(child as i32) };
    std::fs::write(format!("{path}.pgrp"), pgrp.to_string()).expect("write the group");
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, format!("{child}")).expect("write the pid");
    std::fs::write(format!("{path}.worker"), std::process::id().to_string()).expect("write");
    std::fs::rename(&tmp, &path).expect("publish the pid");
    match end {
        End::Exit => std::process::exit(3),
        End::ExitZero => std::process::exit(0),
        End::Abort => std::process::abort(),
        End::Killed => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
    }
}
supervisor::task!(escape_then_end);

fn scratch(what: &str, method: StartMethod) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{what}-{method}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits for the task's pid file; SIGKILLs the worker when `end` says so. The escaped
/// child's pid.
fn escaped_child(path: &std::path::Path, end: End) -> i32 {
    let child = pid_written_to(path);
    if let End::Killed = end {
        let worker = pid_written_to(&path.with_extension("worker"));
        // SAFETY: kill with plain integers; the worker cannot have been reaped: its
        // task never returns.
        unsafe { libc::kill(worker, libc::SIGKILL) };
    }
    // It really left the worker's group and session (setsid ran before exec).
    let pgrp = std::fs::read_to_string(path.with_extension("pgrp")).expect("its group");
    assert_eq!(pgrp, child.to_string(), "setsid made its own group");
    child
}

fn gone_now(child: i32, what: &str) {
    let alive = !has_exited(child);
    if alive {
        // SAFETY: kill with plain integers: not to leave it to the leak check.
        unsafe { libc::kill(child, libc::SIGKILL) };
        wait_exit(child, Duration::from_secs(5));
    }
    assert!(!alive, "{what}: the escaped child ran on");
}

const ENDS: [End; 4] = [End::Exit, End::ExitZero, End::Abort, End::Killed];

/// `Process::join`: the escaped child is gone when it returns, for every way the worker
/// ends (before: it ran on, adopted by init).
#[test]
fn a_joined_process_leaves_no_escaped_child() {
    each_method(|method| joined_leave_none(method, &ENDS, "escaped-joined"));
}

/// For each of `ends`: a `Process` of `method` whose task escapes, then ends its worker
/// so, is joined; the escaped child is gone when `join` returns.
fn joined_leave_none(method: StartMethod, ends: &[End], name: &str) {
    let dir = scratch(name, method);
    for &end in ends {
        let path = dir.join(format!("{end:?}"));
        let mut p = Process::builder(escape_then_end, (path.display().to_string(), end))
            .start_method(method)
            .start()
            .unwrap();
        let child = escaped_child(&path, end);
        assert!(p.join().is_err());
        gone_now(child, &format!("{method} {end:?} after join"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A dropped `Process`: the escaped child is gone within the documented bound.
#[test]
fn a_dropped_process_leaves_no_escaped_child() {
    each_method(|method| {
        let dir = scratch("escaped-dropped", method);
        for end in ENDS {
            let path = dir.join(format!("{end:?}"));
            let p = Process::builder(escape_then_end, (path.display().to_string(), end))
                .start_method(method)
                .start()
                .unwrap();
            let child = escaped_child(&path, end);
            drop(p);
            assert!(
                wait_exit(child, DROPPED_BOUND),
                "{method} {end:?}: the dropped Process left its escaped child"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// A pool's `join` (after the task failed) and a pool's drop: the escaped child is gone.
#[test]
fn a_pool_leaves_no_escaped_child() {
    each_method(|method| {
        let dir = scratch("escaped-pool", method);
        for end in ENDS {
            for join in [true, false] {
                let pool = Pool::builder()
                    .procs(1)
                    .start_method(method)
                    .grace(Duration::from_millis(300))
                    .build()
                    .unwrap();
                let path = dir.join(format!("{end:?}-{join}"));
                let handle = pool.apply_async(escape_then_end, (path.display().to_string(), end));
                let child = escaped_child(&path, end);
                assert!(handle.wait().is_err());
                if join {
                    pool.close();
                    pool.join();
                    gone_now(child, &format!("{method} {end:?} after pool join"));
                } else {
                    drop(pool);
                    assert!(
                        wait_exit(child, DROPPED_BOUND),
                        "{method} {end:?}: a dropped pool left its escaped child"
                    );
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// Writes this worker's pid to `path`, then sleeps for good.
fn publish_pid_and_sleep(path: String) -> u32 {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, std::process::id().to_string()).expect("write the pid");
    std::fs::rename(&tmp, &path).expect("publish the pid");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
supervisor::task!(publish_pid_and_sleep);

/// A program with a pool whose task runs for good; prints nothing, waits to be killed.
fn busy_pool_scenario() {
    supervisor::init();
    let method: StartMethod = std::env::var("BUSY_POOL_METHOD").unwrap().parse().unwrap();
    let path = std::env::var("BUSY_POOL_PID_FILE").unwrap();
    let pool = Pool::builder()
        .procs(1)
        .start_method(method)
        .build()
        .unwrap();
    let _running = pool.apply_async(publish_pid_and_sleep, path);
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[linkme::distributed_slice(common::SCENARIOS)]
static BUSY_POOL: common::Scenario = common::Scenario {
    name: "busy_pool",
    run: busy_pool_scenario,
};

/// A pool worker whose parent-death signal does not act (the fault blocks SIGHUP, as a
/// signal lost to the fork race would) still ends when its parent is SIGKILLed while
/// its task runs: the hang-up of its channel ends it (adv18d F5: one such worker
/// outlived its parent by 578 s; before, with the fault, it lived on for good).
#[test]
fn a_busy_worker_whose_parent_death_signal_is_lost_ends_with_its_parent() {
    for method in StartMethod::ALL {
        eprintln!("-- start method {method}");
        isolated(DEADLINE, move || {
            let dir = scratch("lost-hang-up", method);
            let path = dir.join("worker");
            let mut program = common::scenario("busy_pool")
                .env(supervisor_worker_fault_env(), "block-hang-up")
                .env("BUSY_POOL_METHOD", method.to_string())
                .env("BUSY_POOL_PID_FILE", &path)
                .spawn()
                .unwrap();
            let worker = pid_written_to(&path);
            program.kill().unwrap();
            program.wait().unwrap();
            let gone = wait_exit(worker, Duration::from_secs(5));
            if !gone {
                // SAFETY: kill with plain integers: not to leave it behind.
                unsafe { libc::kill(worker, libc::SIGKILL) };
            }
            assert!(gone, "{method}: the worker outlived its SIGKILLed parent");
            std::fs::remove_dir_all(&dir).unwrap();
        });
    }
}

fn supervisor_worker_fault_env() -> &'static str {
    "SUPERVISOR_FAULT"
}
