//! Recycling, cancel, close, join, drop, and `imap` bounded over an endless iterator or
//! cancelled when dropped.

use super::*;

#[test]
fn recycling_changes_pids_and_loses_nothing() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 2).max_tasks_per_child(5).build().unwrap();
        let pids: Vec<u32> = pool
            .map_chunked(my_pid, 0..50, 1)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(pids.len(), 50);
        let distinct: HashSet<u32> = pids.iter().copied().collect();
        assert!(distinct.len() >= 10, "{} distinct pids", distinct.len());
        assert_eq!(pool.stats().restarts, 0, "recycling is not a restart");
        pool.join();
    });
}

#[test]
fn a_pending_task_can_be_cancelled_a_running_one_cannot() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 1).build().unwrap();
        let fifo = Fifo::new();
        let running = pool.apply_async(announce_and_sleep, (fifo.path(), 200));
        fifo.read_pid();
        let pending = pool.apply_async(square, 3);
        assert!(pending.cancel());
        let e = pending.wait().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Cancelled { .. }), "{e:?}");
        assert!(!running.cancel());
        assert_eq!(running.wait().unwrap(), 200);
        pool.join();
    });
}

#[test]
fn submitting_after_close_is_an_error() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 2).build().unwrap();
        let before = pool.apply_async(sleep_ms, 50);
        pool.close();
        let e = pool.apply(square, 1).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::PoolClosed), "{e:?}");
        assert!(pool
            .map(square, 0..3)
            .into_iter()
            .all(|r| r.is_err_and(|e| matches!(e.kind(), ErrorKind::PoolClosed))));
        assert_eq!(
            before.wait().unwrap(),
            50,
            "work queued before close finishes"
        );
        pool.join();
    });
}

#[test]
fn dropping_a_pool_mid_map_returns_promptly_and_leaves_nothing() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 2).build().unwrap();
        let mut results = pool.imap(sleep_ms, vec![1, 30_000, 30_000, 30_000, 30_000]);
        assert_eq!(results.next().unwrap().unwrap(), 1);
        // At least one long task has started (not just been sent).
        while pool.stats().running == 0 {
            std::thread::yield_now();
        }
        let t = Instant::now();
        drop(pool);
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "drop took {:?}",
            t.elapsed()
        );
        let rest: Vec<_> = results.collect();
        assert_eq!(rest.len(), 4);
        // Running tasks were stopped (they may have had effects); the others never
        // started.
        let kind = |r: &Result<u64, Error>| match r.as_ref().map_err(Error::kind) {
            Err(ErrorKind::Stopped { .. }) => "stopped",
            Err(ErrorKind::Terminated { .. }) => "terminated",
            _ => "other",
        };
        let stopped = rest.iter().filter(|r| kind(r) == "stopped").count();
        let terminated = rest.iter().filter(|r| kind(r) == "terminated").count();
        assert!(stopped >= 1 && stopped + terminated == 4, "{rest:?}");
    });
}

#[test]
fn imap_over_an_endless_iterator_stays_bounded() {
    each_method(DEADLINE, |method| {
        // At most 100 in flight or ready, and 100 held for order besides (results
        // that came ahead of an earlier one, which do not hold the workers back).
        let pool = pool(method, 2)
            .read_ahead(100)
            .max_held(100)
            .build()
            .unwrap();
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let endless = (0u64..).inspect(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let firsts: Vec<u64> = pool
            .imap(square, endless)
            .take(5_000)
            .map(Result::unwrap)
            .collect();
        assert_eq!(firsts[4_999], 4_999 * 4_999);
        let read = pulled.load(Ordering::Relaxed);
        assert!(read <= 5_000 + 200, "read {read} inputs for 5000 results");
        drop(pool);
    });
}

#[test]
fn join_waits_for_a_terminate_running_in_another_thread() {
    each_method(DEADLINE, |method| {
        let pool = Arc::new(pool(method, 2).build().unwrap());
        let fifo = Fifo::new();
        let _running = pool.apply_async(hang_with_grandchild, fifo.path());
        let grandchild = fifo.read_pid();
        let terminator = {
            let pool = pool.clone();
            std::thread::spawn(move || pool.terminate())
        };
        pool.join();
        // When join returns the pool has really stopped: no worker, nothing it started.
        assert!(pool.stats().workers.is_empty());
        assert!(
            common::has_exited(grandchild),
            "grandchild {grandchild} still running"
        );
        terminator.join().unwrap();
    });
}

/// Dropping an `imap` before its end drops the inputs it read ahead that have not
/// started: the next `apply` waits only for the calls already running (before: 12.6 s
/// while about 100 read-ahead inputs ran for nobody).
#[test]
fn dropping_an_imap_cancels_its_unstarted_inputs() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 2).build().unwrap();
        let firsts: Vec<u64> = pool
            .imap(sleep_ms, std::iter::repeat(200))
            .take(3)
            .map(Result::unwrap)
            .collect();
        assert_eq!(firsts, vec![200; 3]);
        let t = Instant::now();
        assert_eq!(pool.apply(square, 3).unwrap(), 9);
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "the next apply waited {:?}",
            t.elapsed()
        );
        pool.join();
    });
}
