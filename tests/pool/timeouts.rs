//! Task timeouts: a hung task and its grandchild are killed, huge limits mean none, and a
//! timeout set while a task runs applies to it.

use super::*;

#[test]
fn timeout_kills_a_hung_task_and_its_grandchild() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 1)
            .task_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let fifo = Fifo::new();
        let hung = pool.apply_async(hang_with_grandchild, fifo.path());
        let grandchild = fifo.read_pid();
        let t = Instant::now();
        match hung.wait().map_err(Error::into_kind) {
            Err(ErrorKind::TimedOut { limit, task, .. }) => {
                assert_eq!(limit, Duration::from_millis(300));
                assert_eq!(task, "hang_with_grandchild");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(
            wait_exit(grandchild, Duration::from_secs(5)),
            "grandchild {grandchild} survived"
        );
        // A replacement worker serves the next task.
        assert_eq!(pool.apply(square, 5).unwrap(), 25);
        pool.join();
    });
}

#[test]
fn huge_time_limits_mean_no_limit() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 1)
            .task_timeout(Duration::MAX)
            .grace(Duration::MAX)
            .build()
            .unwrap();
        assert_eq!(pool.apply(square, 3).unwrap(), 9);
        let h = pool.submit(square, 4);
        assert_eq!(h.wait_timeout(Duration::MAX).unwrap().unwrap(), 16);
        pool.join();
    });
}

/// `set_task_timeout` changes the limit while tasks run: a task started with no limit
/// times out once a limit it is already past is set; lifting the limit lets the next
/// long task finish.
#[test]
fn a_task_timeout_set_while_a_task_runs_applies_to_it() {
    isolated(DEADLINE, || {
        let pool = Pool::builder().procs(1).build().unwrap();
        let fifo = Fifo::new();
        let long = pool.apply_async(announce_and_sleep, (fifo.path(), 60_000));
        // It runs (it has said so), with no limit.
        fifo.read_pid();
        let t = Instant::now();
        pool.set_task_timeout(Some(Duration::from_millis(50)));
        match long.wait().map_err(Error::into_kind) {
            Err(ErrorKind::TimedOut { limit, .. }) => {
                assert_eq!(limit, Duration::from_millis(50));
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        pool.set_task_timeout(None);
        assert_eq!(pool.apply(sleep_ms, 300).unwrap(), 300);
        pool.join();
    });
}
