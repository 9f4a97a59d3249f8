//! Termination and signals: a hundred processes terminated right after their start all
//! end, a worker ignoring SIGTERM is killed after the grace period, and a busy worker
//! stopped and continued does not break the pool.

use super::*;

#[test]
fn a_hundred_processes_terminated_right_after_start_all_end() {
    each_method(DEADLINE, |method| {
        let mut procs: Vec<_> = (0..100)
            .map(|_| {
                Process::builder(sleep_ms, 60_000)
                    .start_method(method)
                    .start()
                    .unwrap()
            })
            .collect();
        for p in &procs {
            p.terminate().unwrap();
        }
        for p in procs.iter_mut() {
            assert!(p.join().is_err());
            assert_eq!(p.exitcode(), Some(-15), "pid {}", p.pid());
        }
    });
}

#[test]
fn a_worker_ignoring_sigterm_is_killed_after_the_grace_period() {
    each_method(DEADLINE, |method| {
        let pool = Pool::builder()
            .procs(1)
            .start_method(method)
            .task_timeout(Duration::from_millis(200))
            .grace(Duration::from_millis(300))
            .build()
            .unwrap();
        let t = Instant::now();
        let e = pool.apply(stubborn, ()).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::TimedOut { .. }), "{e:?}");
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        // The exited worker was killed, not terminated.
        let stats = pool.stats();
        let gone = stats.exited.first().expect("the stubborn worker is gone");
        assert!(
            matches!(gone.state, WorkerState::Exited { status } if status.exitcode() == Some(-9)),
            "{gone:?}"
        );
        assert_eq!(pool.apply(sleep_ms, 1).unwrap(), 1);
        pool.join();
    });
}

#[test]
fn stopping_and_continuing_a_busy_worker_does_not_break_the_pool() {
    each_method(DEADLINE, |method| {
        let pool = Pool::builder()
            .procs(2)
            .start_method(method)
            .build()
            .unwrap();
        let h = pool.apply_async(sleep_ms, 300);
        let pid = loop {
            let busy = pool
                .stats()
                .workers
                .into_iter()
                .find(|w| matches!(w.state, WorkerState::Busy { .. }));
            if let Some(w) = busy {
                break w.pid as i32;
            }
            std::thread::yield_now();
        };
        // SAFETY: kill with plain integers; a worker of ours.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        assert!(
            h.wait_timeout(Duration::from_millis(500)).is_none(),
            "a stopped worker cannot finish"
        );
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        assert_eq!(h.wait().unwrap(), 300);
        assert_eq!(pool.stats().restarts, 0);
        let all: Vec<u64> = pool
            .map(sleep_ms, vec![1; 20])
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(all.len(), 20);
        pool.join();
    });
}
