//! The dispatcher never blocks on a busy or hung worker, many threads submitting lose
//! nothing, and an `apply` on warm workers that reads its own reply hears every ending.

use super::*;

#[test]
fn work_sent_ahead_never_blocks_the_dispatcher_on_a_busy_worker() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 1).build().unwrap();
        let small = || serde_bytes::ByteBuf::from(vec![1u8; 300]);
        // `blob` is measured fast, so its units are sent ahead of the running one.
        assert!(pool
            .map(blob, (0..50).map(|_| small()))
            .into_iter()
            .all(|r| r.is_ok()));
        let busy = pool.apply_async(sleep_ms, 1500);
        let many = pool.map_async_chunked(blob, (0..4000).map(|_| small()), 200);
        // The dispatcher still answers while the worker is busy and its queue is full.
        let t = Instant::now();
        let _ = pool.stats();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "stats took {:?}",
            t.elapsed()
        );
        assert_eq!(busy.wait().unwrap(), 1500);
        assert!(many.wait().into_iter().all(|r| r.unwrap() == 300));
        pool.join();
    });
}

/// Events reach the pool's state from whichever thread has one (callers, readers,
/// starters, the reaper), and are handled by whichever holds the state: submissions,
/// cancels and stats from many threads at once, from the first instant of the pool,
/// lose nothing and answer everyone.
#[test]
fn many_threads_submitting_at_once_from_the_start_lose_nothing() {
    each_method(DEADLINE, |method| {
        let pool = Arc::new(pool(method, 2).build().unwrap());
        let threads: Vec<_> = (0..6u64)
            .map(|t| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    let mut sum = 0;
                    for i in 0..300u64 {
                        let x = t * 1000 + i;
                        match i % 3 {
                            0 => sum += pool.apply(square, x).unwrap(),
                            1 => {
                                let h = pool.apply_async(square, x);
                                if !h.cancel() {
                                    sum += h.wait().unwrap();
                                } else {
                                    let e = h.wait().unwrap_err();
                                    assert!(
                                        matches!(e.kind(), ErrorKind::Cancelled { .. }),
                                        "{e:?}"
                                    );
                                    sum += x * x;
                                }
                            }
                            _ => {
                                let _ = pool.stats();
                                sum += pool.map(square, [x]).pop().unwrap().unwrap();
                            }
                        }
                    }
                    sum
                })
            })
            .collect();
        let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        let expected: u64 = (0..6u64)
            .flat_map(|t| (0..300u64).map(move |i| (t * 1000 + i).pow(2)))
            .sum();
        assert_eq!(total, expected);
        let stats = pool.stats();
        assert_eq!(stats.failed, 0);
        pool.join();
    });
}

/// Waits (on the pool's own report) until a worker is busy with `task`.
fn wait_busy(pool: &Pool, task: &str) {
    while !pool
        .stats()
        .workers
        .iter()
        .any(|w| matches!(&w.state, WorkerState::Busy { task: t, .. } if t == task))
    {
        std::thread::yield_now();
    }
}

/// Work sent ahead to a worker whose task hangs sits unread in its socket; however much
/// is submitted (big chunks, thousands of single tasks), no
/// submission blocks, and the hung task still times out on time.
#[test]
fn work_ahead_of_a_hung_task_never_blocks_submissions_or_its_timeout() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 1)
            .task_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        // `square` is measured fast, so it gets work ahead.
        assert!(pool
            .map_chunked(square, 0..10_000u64, 1_000)
            .iter()
            .all(|r| r.is_ok()));
        let hung = pool.apply_async(sleep_ms, 600_000);
        wait_busy(&pool, "sleep_ms");
        let t = Instant::now();
        let chunks = pool.map_async_chunked(square, (0..16 * 16_000u64).map(|x| x % 200), 16_000);
        let singles: Vec<_> = (0..3_000u64).map(|x| pool.apply_async(square, x)).collect();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "submitting took {:?}",
            t.elapsed()
        );
        let e = hung.wait().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::TimedOut { .. }), "{e:?}");
        assert!(chunks.wait().into_iter().all(|r| r.is_ok()));
        for (x, h) in (0u64..).zip(singles) {
            assert_eq!(h.wait().unwrap(), x * x);
        }
        pool.join();
    });
}

/// Has every worker answer a task (each reader thread then parks while its worker is
/// idle, and the next `apply` reads its reply itself): `procs` tasks that each wait
/// until all of them have started, so each must run on its own worker (a pool that
/// put two on one worker would fail them by timeout or by the count of pids).
fn warm(pool: &Pool, procs: usize) {
    // Every worker up and idle first (a replacement may still be starting), so none
    // gets the second task sent ahead behind the first.
    while !pool
        .stats()
        .workers
        .iter()
        .all(|w| w.state == WorkerState::Idle)
        || pool.stats().workers.len() < procs
    {
        std::thread::yield_now();
    }
    let scratch = Fifo::new();
    let dir = scratch.dir.to_string_lossy().into_owned();
    let pids: HashSet<u32> = pool
        .map_chunked(rendezvous, (0..procs).map(|_| (dir.clone(), procs + 1)), 1)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(pids.len(), procs, "{pids:?}");
}

/// `apply` reads the reply on the caller's thread when its worker's reader is parked.
/// Every way a task can end still reaches the caller at once, the worker after it
/// serves the next call, and a worker that dies while idle (nobody reading it) is
/// noticed and replaced without any new work.
#[test]
fn apply_on_warm_workers_hears_every_ending_and_idle_deaths() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 2)
            .task_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        warm(&pool, 2);
        for round in 0..2u64 {
            assert_eq!(pool.apply(square, round).unwrap(), round * round);
            let e = pool.apply(fragile, 100).unwrap_err();
            assert!(matches!(e.kind(), ErrorKind::Crashed { .. }), "{e:?}");
            assert_eq!(pool.apply(square, 3).unwrap(), 9);
            let e = pool.apply(fragile, 900).unwrap_err();
            assert!(
                matches!(e.kind(), ErrorKind::Exited { code: 3, .. }),
                "{e:?}"
            );
            let e = pool.apply(picky, 7).unwrap_err();
            assert!(matches!(e.kind(), ErrorKind::Panicked { .. }), "{e:?}");
            assert_eq!(pool.apply(picky, 3).unwrap(), Err("3 ends in 3".into()));
            let t = Instant::now();
            let e = pool.apply(sleep_ms, 60_000).unwrap_err();
            assert!(matches!(e.kind(), ErrorKind::TimedOut { .. }), "{e:?}");
            assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
            warm(&pool, 2);
        }
        // Both workers idle, their readers parked: kill one; the pool replaces it with
        // nothing submitted.
        let restarts = pool.stats().restarts;
        let victim = pool.stats().workers[0].pid;
        // SAFETY: kill with plain integers; a worker of ours.
        unsafe { libc::kill(victim as i32, libc::SIGKILL) };
        while pool.stats().restarts == restarts
            || pool.stats().workers.iter().any(|w| w.pid == victim)
        {
            std::thread::yield_now();
        }
        warm(&pool, 2);
        pool.join();
    });
}

/// An `apply` waiting on a hung task (reading its worker's link itself) returns as
/// soon as another thread terminates the pool.
#[test]
fn terminate_ends_an_apply_that_reads_its_own_reply() {
    each_method(DEADLINE, |method| {
        let pool = Arc::new(pool(method, 1).build().unwrap());
        warm(&pool, 1);
        let caller = {
            let pool = pool.clone();
            std::thread::spawn(move || pool.apply(sleep_ms, 60_000))
        };
        wait_busy(&pool, "sleep_ms");
        // Started, not just sent: a call that has not started yet is taken back and
        // fails as terminated instead.
        while pool.stats().running == 0 {
            std::thread::yield_now();
        }
        let t = Instant::now();
        pool.terminate();
        let e = caller.join().unwrap().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Stopped { .. }), "{e:?}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    });
}

/// Work that reaches a worker while an `apply` is reading its link (sent by the
/// borrowing thread itself, once the apply's task is done) is still heard: the link
/// goes back to the worker's reader thread.
#[test]
fn work_sent_while_an_apply_reads_the_link_is_still_heard() {
    each_method(DEADLINE, |method| {
        let pool = Arc::new(pool(method, 1).build().unwrap());
        warm(&pool, 1);
        for _ in 0..3 {
            let caller = {
                let pool = pool.clone();
                std::thread::spawn(move || pool.apply(sleep_ms, 200))
            };
            wait_busy(&pool, "sleep_ms");
            let queued = pool.apply_async(square, 5);
            assert_eq!(caller.join().unwrap().unwrap(), 200);
            let result = queued.wait_timeout(Duration::from_secs(10));
            assert_eq!(result.map(Result::unwrap), Some(25));
        }
    });
}

/// An `apply` reading its own reply whose worker dies, with a retry left: the retry may
/// go to another warm worker from the caller's own thread, which then reads that link
/// too. Found by review: the second link was lent and never read, and the apply hung.
#[test]
fn an_apply_retried_after_its_worker_died_gets_its_result() {
    each_method(DEADLINE, |method| {
        // Its directory holds the markers and goes with it.
        let scratch = Fifo::new();
        let pool = pool(method, 2).retries(1).build().unwrap();
        for i in 0..12 {
            warm(&pool, 2);
            let marker = scratch.dir.join(format!("m{i}"));
            let marker = marker.to_string_lossy().into_owned();
            assert_eq!(pool.apply(abort_the_first_time, marker).unwrap(), 1);
        }
        pool.join();
    });
}
