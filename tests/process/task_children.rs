//! A task's children end with the task: on return, kill, exit and timeout.

use super::*;

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
