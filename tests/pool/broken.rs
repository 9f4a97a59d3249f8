//! When a pool breaks and when it must not: initializer failure, a restart storm, tasks
//! that kill their workers, a panicking halt condition.

use super::*;

#[test]
fn initializer_failure_stops_the_pool_with_that_error() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 2)
            .initializer(failing_init, ())
            .build()
            .unwrap();
        match pool.apply(square, 1).map_err(Error::into_kind) {
            Err(ErrorKind::PoolBroken { reason, .. }) => {
                // The initializer panicked: the reason says so, the panic is its cause.
                let BrokenReason::Initializer(cause) = &reason else {
                    panic!("{reason:?}");
                };
                assert_eq!(reason.to_string(), "the initializer failed");
                assert!(
                    matches!(cause.kind(), ErrorKind::Panicked { message, .. } if message == "no database"),
                    "{cause:?}"
                );
            }
            other => panic!("expected a broken pool, got {other:?}"),
        }
        // No respawn loop, and later work fails the same way at once.
        assert_eq!(pool.stats().restarts, 0);
        let e = pool.apply(square, 2).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::PoolBroken { .. }), "{e:?}");
        pool.join();
    });
}

#[test]
fn a_restart_storm_breaks_the_pool_with_a_clear_reason() {
    each_method(DEADLINE, |method| {
        // Workers that die before finishing anything (here: SIGKILLed while idle, as
        // soon as they are up) are a storm: past the limit the pool is broken, with
        // the reason, after backing off between restarts.
        let pool = pool(method, 2)
            .restart_limit(3, Duration::from_secs(60))
            .build()
            .unwrap();
        let started = Instant::now();
        while pool.stats().broken.is_none() {
            assert!(started.elapsed() < Duration::from_secs(20), "never broke");
            for w in pool.stats().workers {
                if matches!(w.state, WorkerState::Idle) {
                    // SAFETY: kill with plain integers; an idle worker of this pool.
                    unsafe { libc::kill(w.pid as i32, libc::SIGKILL) };
                }
            }
            std::thread::yield_now();
        }
        let e = pool.apply(square, 3).unwrap_err();
        let ErrorKind::PoolBroken {
            reason: BrokenReason::Storm { max, last, .. },
            ..
        } = e.kind()
        else {
            panic!("{e:?}");
        };
        assert_eq!(*max, 3);
        assert!(matches!(last, StormDeath::Ended { .. }), "{last:?}");
        pool.join();
    });
}

/// A task that kills its worker every time is that task's failure, never the pool's:
/// twenty of them in a row, with the default restart policy, then the pool still works.
#[test]
fn tasks_that_kill_their_workers_never_break_the_pool() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 2).build().unwrap();
        let results: Vec<_> = (0..30).map(|x| pool.apply_async(exit_one, x)).collect();
        for r in results.iter().map(|h| h.wait()) {
            let e = r.unwrap_err();
            assert!(matches!(e.kind(), ErrorKind::Exited { .. }), "{e:?}");
        }
        assert!(pool.stats().broken.is_none());
        assert_eq!(pool.apply(square, 7).unwrap(), 49);
        pool.join();
    });
}

/// A halt condition (`cancel_pending_when`) that panics does not silently end the pool:
/// the next task runs, or fails with an error that says the condition panicked. Seen:
/// the panic kills a reader thread (`supervisor-read-N`), and every later task fails
/// as `Terminated` ("the pool was dropped or terminated first") though nobody
/// terminated it.
#[test]
fn a_panicking_halt_condition_is_reported_not_taken_for_a_termination() {
    isolated(DEADLINE, || {
        let pool = Pool::new(1).unwrap();
        pool.cancel_pending_when(|ok, _| {
            assert!(ok == 0, "a halt condition that panics");
            false
        });
        assert_eq!(pool.apply(square, 2).unwrap(), 4);
        let next = pool.submit(square, 3).wait_timeout(Duration::from_secs(10));
        match next.map(|r| r.map_err(Error::into_kind)) {
            Some(Err(ErrorKind::PoolBroken {
                reason: BrokenReason::HaltConditionPanicked { message },
                ..
            })) if message.contains("a halt condition that panics") => {}
            other => panic!("expected the task to run or the pool broken, got {other:?}"),
        }
    });
}

/// `when_broken` is told once, with the reason, when the pool breaks; one registered
/// after the break is told at once; a pool that does not break tells nobody.
#[test]
fn when_broken_tells_once_with_the_reason() {
    each_method(DEADLINE, |method| {
        let broken = pool(method, 2)
            .initializer(failing_init, ())
            .build()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let before = tx.clone();
        broken.when_broken(move |reason| before.send(reason.to_string()).unwrap());
        let e = broken.apply(square, 1).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::PoolBroken { .. }), "{e:?}");
        let told = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(told, "the initializer failed");
        broken.when_broken(move |reason| tx.send(format!("late: {reason}")).unwrap());
        let late = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(late, "late: the initializer failed");
        broken.join();
        assert!(rx.try_recv().is_err(), "told more than once");

        let whole = pool(method, 1).build().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        whole.when_broken(move |_| tx.send(()).unwrap());
        assert_eq!(whole.apply(square, 3).unwrap(), 9);
        whole.join();
        assert!(rx.try_recv().is_err(), "a pool that did not break told");
    });
}
