//! What a task leaves in its worker's process group ends with the worker, however the
//! worker ends and whether or not anyone joins it; `join` returns only once it is gone.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{each_method, has_exited, wait_exit};
use supervisor::{ErrorKind, Pool, Process, StartMethod};

const DEADLINE: Duration = Duration::from_secs(60);

/// The documented bound for a dropped Process: SIGTERM when its child exits, SIGKILL
/// 5 s later, gone within 1 s of that (a `sleep` goes at the SIGTERM).
const DROPPED_BOUND: Duration = Duration::from_secs(6);

/// Starts `sleep 300` in the worker's group, writes its pid to `path`, and ends the
/// worker with `exit(3)`, or with `abort()` when asked.
fn sleep_then_end(a: (String, bool)) -> u32 {
    let (path, abort) = a;
    let child = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .expect("sleep")
        .id();
    std::fs::write(&path, child.to_string()).expect("write the pid");
    if abort {
        std::process::abort()
    }
    std::process::exit(3)
}
supervisor::task!(sleep_then_end);

fn scratch(what: &str, method: StartMethod) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{what}-{method}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Process dropped without `join` whose task starts `sleep 300` and then ends its
/// worker (`exit(3)`, `abort()`): the sleep is gone within the documented bound, in
/// every start method (before: it lived on, adopted by init, since only `join`
/// emptied the group). A pool dropped while such a task runs does the same.
#[test]
fn a_dropped_process_whose_task_exits_leaves_no_child() {
    each_method(DEADLINE, |method| {
        let dir = scratch("dropped", method);
        for abort in [false, true] {
            let path = dir.join(format!("process-{abort}"));
            let p = Process::builder(sleep_then_end, (path.display().to_string(), abort))
                .start_method(method)
                .start()
                .unwrap();
            drop(p);
            let sleep = common::pid_written_to(&path);
            assert!(
                wait_exit(sleep, DROPPED_BOUND),
                "the dropped Process's task left its child (abort: {abort})"
            );
        }
        let pool = Pool::builder()
            .procs(1)
            .start_method(method)
            .grace(Duration::from_millis(300))
            .build()
            .unwrap();
        let path = dir.join("pool");
        let handle = pool.apply_async(sleep_then_end, (path.display().to_string(), false));
        let sleep = common::pid_written_to(&path);
        let e = handle.wait().unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Exited { code: 3, .. }),
            "{e:?}"
        );
        drop(pool);
        assert!(
            wait_exit(sleep, DROPPED_BOUND),
            "a dropped pool's task left its child"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// `join` returns only once nothing of the worker's group runs: right after it, the
/// `sleep` the task left is already gone, every time (before: `join` sent SIGKILL and
/// returned, and the sleep was still there a moment later).
#[test]
fn join_returns_once_the_tasks_children_are_gone() {
    each_method(DEADLINE, |method| {
        let dir = scratch("joined", method);
        for round in 0..10 {
            let path = dir.join(format!("round-{round}"));
            let mut p = Process::builder(sleep_then_end, (path.display().to_string(), false))
                .start_method(method)
                .start()
                .unwrap();
            let e = p.join().unwrap_err();
            assert!(
                matches!(e.kind(), ErrorKind::Exited { code: 3, .. }),
                "{e:?}"
            );
            let sleep = common::pid_written_to(&path);
            let alive = !has_exited(sleep);
            if alive {
                // Not to leave it for the leak check's report alone.
                wait_exit(sleep, Duration::from_secs(5));
            }
            assert!(!alive, "round {round}: the task's child ran on after join");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    });
}
