//! Waits: killed waiters, timeouts, bounded puts, dead peers, pool workers sharing queues, a stopped lock holder, threads, maxsize 0.

use super::*;

/// Gets one item, blocking; returns it.
pub(super) fn get_one(q: Queue<u64>) -> u64 {
    q.get().expect("get")
}
supervisor::task!(get_one);

#[test]
fn consumer_killed_while_waiting_in_get_leaves_the_queue_usable() {
    each_method(DEADLINE, |method| {
        let q: Queue<u64> = Queue::new().unwrap();
        let p = Process::builder(get_one, q.clone())
            .start_method(method)
            .start()
            .unwrap();
        wait_for(|| q.waiting_getters() > 0);
        p.kill().unwrap();
        let mut p = p;
        let e = p.join().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Crashed { .. }), "{e:?}");
        q.put(&5).unwrap();
        let mut c = Process::builder(get_one, q.clone())
            .start_method(method)
            .start()
            .unwrap();
        assert_eq!(c.join().unwrap(), 5);
    });
}

/// Waits (polling an explicit condition, with a deadline) until `cond` holds.
fn wait_for(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not reached in time");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Holds the queue until the event is set.
fn hold_until((_q, ev): (Queue<u64>, supervisor::Event)) -> bool {
    ev.wait().expect("event wait");
    true
}
supervisor::task!(hold_until);

#[test]
fn get_timeout_returns_in_time_and_try_get_at_once() {
    isolated(DEADLINE, || {
        let q: Queue<u64> = Queue::new().unwrap();
        let ev = supervisor::Event::new().unwrap();
        let mut holder = Process::builder(hold_until, (q.clone(), ev.clone()))
            .start()
            .unwrap();
        for ms in [0u64, 50, 300] {
            let t = Instant::now();
            assert_eq!(q.get_timeout(Duration::from_millis(ms)).unwrap(), None);
            let took = t.elapsed();
            assert!(took >= Duration::from_millis(ms), "{took:?} < {ms} ms");
            assert!(
                took < Duration::from_millis(ms + 150),
                "{took:?} for {ms} ms"
            );
        }
        let t = Instant::now();
        assert_eq!(q.try_get().unwrap(), None);
        assert!(t.elapsed() < Duration::from_millis(50));
        q.put(&3).unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), Some(3));
        ev.set().unwrap();
        assert!(holder.join().unwrap());
    });
}

#[test]
fn bounded_put_blocks_until_a_get_makes_room() {
    each_method(DEADLINE, |method| {
        let q: Queue<u64> = Queue::bounded(2).unwrap();
        assert_eq!(q.capacity(), Some(2));
        q.put(&0).unwrap();
        assert!(q.try_put(&1).unwrap());
        assert!(!q.try_put(&2).unwrap(), "full");
        // Nobody else holds it: waiting for room would be forever.
        let e = q.put(&2).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::PeerClosed { .. }), "{e:?}");
        let ev = supervisor::Event::new().unwrap();
        let mut holder = Process::builder(hold_until, (q.clone(), ev.clone()))
            .start_method(method)
            .start()
            .unwrap();
        let t = Instant::now();
        assert!(!q.put_timeout(&2, Duration::from_millis(100)).unwrap());
        assert!(t.elapsed() >= Duration::from_millis(100));
        ev.set().unwrap();
        assert!(holder.join().unwrap());
        let mut c = Process::builder(get_one, q.clone())
            .start_method(method)
            .start()
            .unwrap();
        // Blocks until the child has taken item 0.
        q.put(&2).unwrap();
        assert_eq!(c.join().unwrap(), 0);
        assert_eq!(q.len(), 2);
        assert_eq!(q.get().unwrap(), 1);
        assert_eq!(q.get().unwrap(), 2);
    });
}

/// Puts `n` items, then waits forever.
fn put_then_hang((q, n): (Queue<u64>, u64)) -> u64 {
    for i in 0..n {
        q.put(&i).expect("put");
    }
    loop {
        std::thread::park();
    }
}
supervisor::task!(put_then_hang);

#[test]
fn a_getter_learns_that_the_producer_died_instead_of_waiting_forever() {
    each_method(DEADLINE, |method| {
        let q: Queue<u64> = Queue::new().unwrap();
        let mut p = Process::builder(put_then_hang, (q.clone(), 3))
            .start_method(method)
            .start()
            .unwrap();
        for i in 0..3 {
            assert_eq!(q.get().unwrap(), i);
        }
        p.kill().unwrap();
        let pid = p.pid();
        let _ = p.join();
        let t = Instant::now();
        match q.get().map_err(Error::into_kind) {
            Err(ErrorKind::PeerDied { pid: dead, .. }) => assert_eq!(dead, pid),
            other => panic!("expected PeerDied, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    });
}

#[test]
fn a_queue_nobody_else_holds_fails_fast_instead_of_blocking() {
    isolated(DEADLINE, || {
        let q: Queue<u64> = Queue::new().unwrap();
        let e = q.get().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::PeerClosed { .. }), "{e:?}");
        q.put(&1).unwrap();
        assert_eq!(q.get().unwrap(), 1);
        q.close().unwrap();
        let e = q.put(&2).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Closed { .. }), "{e:?}");
        let e = q.get().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Closed { .. }), "{e:?}");
        let big: Queue<String> = Queue::builder().buffer_bytes(4096).build().unwrap();
        let e = big.put(&"x".repeat(5000)).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::MessageTooLarge { .. }),
            "{e:?}"
        );
    });
}

/// A pool worker: squares items from `input` into `output` until `input` is closed.
fn square_worker((input, output): (Queue<u64>, Queue<(u32, u64)>)) -> u64 {
    let mut n = 0;
    loop {
        match input.get() {
            Ok(x) => {
                output.put(&(std::process::id(), x * x)).expect("put");
                n += 1;
            }
            Err(e) if matches!(e.kind(), ErrorKind::Closed { .. }) => return n,
            Err(e) => panic!("get: {e}"),
        }
    }
}
supervisor::task!(square_worker);

#[test]
fn pool_workers_share_an_input_queue_and_a_result_queue() {
    each_method(DEADLINE, |method| {
        let input: Queue<u64> = Queue::new().unwrap();
        let output: Queue<(u32, u64)> = Queue::new().unwrap();
        let pool = Pool::builder()
            .procs(3)
            .start_method(method)
            .build()
            .unwrap();
        let handles: Vec<_> = (0..3)
            .map(|_| pool.apply_async(square_worker, (input.clone(), output.clone())))
            .collect();
        for i in 0..300u64 {
            input.put(&i).unwrap();
        }
        input.close().unwrap();
        let mut squares: Vec<u64> = (0..300).map(|_| output.get().unwrap().1).collect();
        squares.sort_unstable();
        assert_eq!(squares, (0..300u64).map(|i| i * i).collect::<Vec<_>>());
        let done: u64 = handles.iter().map(|h| h.wait().unwrap()).sum();
        assert_eq!(done, 300);
        pool.join();
        let _ = StartMethod::ALL;
    });
}

/// Arms the stop point and puts: stops (SIGSTOP) holding the queue's internal mutex; on
/// SIGCONT the put completes.
fn stop_holding_queue_lock(q: Queue<u64>) -> u64 {
    assert!(supervisor::__arm_sync_fault("stop-holding-lock"));
    q.put(&42).expect("put");
    1
}
supervisor::task!(stop_holding_queue_lock);

/// A child that holds `q`'s internal mutex, stopped (SIGSTOP) while it does.
pub(super) fn stopped_lock_holder(q: &Queue<u64>) -> Process<u64> {
    let p = Process::builder(stop_holding_queue_lock, q.clone())
        .start()
        .unwrap();
    assert!(
        wait_stopped(p.pid(), Duration::from_secs(20)),
        "the holder never stopped"
    );
    p
}

#[test]
fn timed_and_try_calls_return_in_time_while_a_stopped_process_holds_the_queue_lock() {
    isolated(DEADLINE, || {
        let q: Queue<u64> = Queue::new().unwrap();
        let mut p = stopped_lock_holder(&q);
        for i in 0..100u64 {
            let timeout = Duration::from_millis([10, 30, 50][i as usize % 3]);
            let t = Instant::now();
            if i % 2 == 0 {
                assert_eq!(q.get_timeout(timeout).unwrap(), None, "call {i}");
            } else {
                assert!(!q.put_timeout(&i, timeout).unwrap(), "call {i}");
            }
            let took = t.elapsed();
            assert!(
                took <= timeout + Duration::from_millis(100),
                "call {i} with a {timeout:?} timeout took {took:?}"
            );
            let t = Instant::now();
            if i % 2 == 0 {
                assert_eq!(q.try_get().unwrap(), None, "try {i}");
            } else {
                assert!(!q.try_put(&i).unwrap(), "try {i}");
            }
            let took = t.elapsed();
            assert!(took <= Duration::from_millis(50), "try {i} took {took:?}");
        }
        // Continued, the holder finishes its put and exits normally.
        // SAFETY: kill with plain integers; the child is ours, not yet reaped.
        assert_eq!(unsafe { libc::kill(p.pid() as i32, libc::SIGCONT) }, 0);
        assert_eq!(p.join().unwrap(), 1);
        assert_eq!(q.try_get().unwrap(), Some(42));
    });
}

#[test]
fn a_queue_put_by_another_thread_wakes_a_getter() {
    isolated(DEADLINE, || {
        let q: Queue<u64> = Queue::new().unwrap();
        let theirs = q.clone();
        let (got, acted) = act_while_waiting(
            watch(&q, |q| q.waiting_getters() > 0),
            move || theirs.put(&5).unwrap(),
            || {
                q.get_timeout(Duration::from_secs(10))
                    .map_err(Error::into_kind)
            },
        );
        assert!(matches!(got, Ok(Some(5))), "{got:?}");
        assert!(acted, "the getter never slept");
        // A bounded queue: a putter woken by a getter in another thread.
        let q: Queue<u64> = Queue::bounded(1).unwrap();
        q.put(&1).unwrap();
        let theirs = q.clone();
        let (put, acted) = act_while_waiting(
            watch(&q, |q| q.waiting_putters() > 0),
            move || assert_eq!(theirs.get().unwrap(), 1),
            || {
                q.put_timeout(&2, Duration::from_secs(10))
                    .map_err(Error::into_kind)
            },
        );
        assert!(matches!(put, Ok(true)), "{put:?}");
        assert!(acted, "the putter never slept");
        assert_eq!(q.try_get().unwrap(), Some(2));
    });
}

#[test]
fn a_getter_whose_last_other_holder_is_a_thread_that_drops_it_gets_peer_closed() {
    isolated(DEADLINE, || {
        let q: Queue<u64> = Queue::new().unwrap();
        let theirs = q.clone();
        let t = Instant::now();
        let (r, acted) = act_while_waiting(
            watch(&q, |q| q.waiting_getters() > 0),
            move || drop(theirs),
            || {
                q.get_timeout(Duration::from_secs(20))
                    .map_err(Error::into_kind)
            },
        );
        assert!(acted, "the getter never slept");
        assert!(matches!(r, Err(ErrorKind::PeerClosed { .. })), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    });
}

#[test]
fn bounded_zero_means_no_item_limit_as_pythons_maxsize_0() {
    isolated(DEADLINE, || {
        for q in [
            Queue::<u64>::bounded(0).unwrap(),
            Queue::<u64>::builder().capacity(0).build().unwrap(),
        ] {
            assert_eq!(q.capacity(), None);
            for i in 0..1000 {
                assert!(q.try_put(&i).unwrap(), "item {i} refused");
            }
            assert_eq!(q.len(), 1000);
        }
        assert_eq!(Queue::<u64>::bounded(1).unwrap().capacity(), Some(1));
    });
}
