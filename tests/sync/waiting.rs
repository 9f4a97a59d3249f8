//! Timed calls on time while a stopped process holds an object mutex; waiters woken by other threads of their process; the leak check; timeouts too long for the clock.

use super::*;

/// Arms the stop point and takes the event's internal mutex: stops (SIGSTOP) holding it.
fn stop_holding_event_lock(ev: Event) -> u64 {
    assert!(supervisor::__arm_sync_fault("stop-holding-lock"));
    ev.set().expect("set");
    1
}
supervisor::task!(stop_holding_event_lock);

/// The same with a semaphore.
fn stop_holding_semaphore_lock(s: Semaphore) -> u64 {
    assert!(supervisor::__arm_sync_fault("stop-holding-lock"));
    s.release().expect("release");
    1
}
supervisor::task!(stop_holding_semaphore_lock);

/// The same with a pipe end.
fn stop_holding_pipe_lock(end: Pipe<u64, u64>) -> u64 {
    assert!(supervisor::__arm_sync_fault("stop-holding-lock"));
    let _ = end.try_recv();
    1
}
supervisor::task!(stop_holding_pipe_lock);

/// Calls `timed(timeout)` 100 times with timeouts of 10, 30 and 50 ms, and `try_` 100
/// times; each must say "nothing" and return within its timeout + 500 ms (a try within
/// 500 ms): room for a loaded machine (a try took 115 ms at load 8), while a call that
/// waits on the stopped holder would wait as long as the holder stays stopped.
fn assert_on_time(
    what: &str,
    mut timed: impl FnMut(Duration) -> bool,
    mut try_: impl FnMut() -> bool,
) {
    for i in 0..100u64 {
        let timeout = Duration::from_millis([10, 30, 50][i as usize % 3]);
        let t = Instant::now();
        assert!(!timed(timeout), "{what}: call {i} got something");
        let took = t.elapsed();
        assert!(
            took <= timeout + Duration::from_millis(500),
            "{what}: call {i} with a {timeout:?} timeout took {took:?}"
        );
        let t = Instant::now();
        assert!(!try_(), "{what}: try {i} got something");
        let took = t.elapsed();
        assert!(
            took <= Duration::from_millis(500),
            "{what}: try {i} took {took:?}"
        );
    }
}

/// Kills a stopped holder and checks it died by SIGKILL.
fn kill_stopped(mut p: Process<u64>) {
    p.kill().unwrap();
    match p.join().map_err(Error::into_kind) {
        Err(ErrorKind::Crashed { signal, .. }) => assert_eq!(signal.to_string(), "SIGKILL"),
        other => panic!("expected a SIGKILL crash, got {other:?}"),
    }
}

#[test]
fn timed_calls_return_in_time_while_a_stopped_process_holds_the_internal_lock() {
    isolated(DEADLINE, || {
        let stopped = Duration::from_secs(20);

        let ev = Event::new().unwrap();
        let p = Process::builder(stop_holding_event_lock, ev.clone())
            .start()
            .unwrap();
        assert!(wait_stopped(p.pid(), stopped), "the holder never stopped");
        assert_on_time(
            "Event::wait_timeout",
            |t| ev.wait_timeout(t).unwrap(),
            || ev.wait_timeout(Duration::ZERO).unwrap(),
        );
        kill_stopped(p);
        // The dead holder's mutex is recovered; the event works.
        ev.set().unwrap();
        assert!(ev.wait_timeout(Duration::ZERO).unwrap());

        let sem = Semaphore::new(0).unwrap();
        let p = Process::builder(stop_holding_semaphore_lock, sem.clone())
            .start()
            .unwrap();
        assert!(wait_stopped(p.pid(), stopped), "the holder never stopped");
        assert_on_time(
            "Semaphore::acquire_timeout",
            |t| sem.acquire_timeout(t).unwrap(),
            || sem.try_acquire().unwrap(),
        );
        kill_stopped(p);
        sem.release().unwrap();
        assert!(sem.try_acquire().unwrap());

        let (a, b) = Pipe::<u64, u64>::new().unwrap();
        let p = Process::builder(stop_holding_pipe_lock, b).start().unwrap();
        assert!(wait_stopped(p.pid(), stopped), "the holder never stopped");
        assert_on_time(
            "Pipe::recv_timeout",
            |t| a.recv_timeout(t).unwrap().is_some(),
            || a.try_recv().unwrap().is_some(),
        );
        let pid = p.pid();
        kill_stopped(p);
        match a.recv().map_err(Error::into_kind) {
            Err(ErrorKind::PeerDied { pid: dead, .. }) => assert_eq!(dead, pid),
            other => panic!("expected PeerDied, got {other:?}"),
        }
    });
}

#[test]
fn an_event_set_by_another_thread_wakes_a_waiter() {
    isolated(DEADLINE, || {
        let ev = Event::new().unwrap();
        let theirs = ev.clone();
        let (woken, acted) = act_while_waiting(
            watch(&ev, |ev| ev.waiting() > 0),
            move || theirs.set().unwrap(),
            || {
                ev.wait_timeout(Duration::from_secs(10))
                    .map_err(Error::into_kind)
            },
        );
        assert!(matches!(woken, Ok(true)), "{woken:?}");
        assert!(acted, "the waiter never slept");
    });
}

#[test]
fn a_semaphore_released_by_another_thread_wakes_a_waiter() {
    isolated(DEADLINE, || {
        let sem = Semaphore::new(0).unwrap();
        let theirs = sem.clone();
        let (got, acted) = act_while_waiting(
            watch(&sem, |sem| sem.waiting() > 0),
            move || theirs.release().unwrap(),
            || {
                sem.acquire_timeout(Duration::from_secs(10))
                    .map_err(Error::into_kind)
            },
        );
        assert!(matches!(got, Ok(true)), "{got:?}");
        assert!(acted, "the waiter never slept");
        assert_eq!(sem.permits(), 0);
    });
}

#[test]
fn a_pipe_works_between_two_threads_of_one_process() {
    isolated(DEADLINE, || {
        let (a, b) = Pipe::<u64, u64>::new().unwrap();
        let (got, acted) = act_while_waiting(
            || a.waiting_receivers() > 0,
            move || {
                b.send(&7).unwrap();
                assert_eq!(b.recv_timeout(Duration::from_secs(10)).unwrap(), Some(8));
            },
            || {
                let x = a.recv_timeout(Duration::from_secs(10)).unwrap();
                a.send(&(x.unwrap() + 1)).unwrap();
                x
            },
        );
        assert_eq!(got, Some(7));
        assert!(acted, "the receiver never slept");
    });
}

#[test]
fn a_waiter_whose_last_other_holder_is_a_thread_that_drops_it_gets_peer_closed() {
    fn peer_closed<T: std::fmt::Debug>(what: &str, r: Result<T, ErrorKind>, acted: bool) {
        assert!(acted, "{what}: the waiter never slept");
        assert!(
            matches!(r, Err(ErrorKind::PeerClosed { .. })),
            "{what}: {r:?}"
        );
    }
    isolated(DEADLINE, || {
        let long = Duration::from_secs(20);
        let t = Instant::now();

        let ev = Event::new().unwrap();
        let theirs = ev.clone();
        let (r, acted) = act_while_waiting(
            watch(&ev, |ev| ev.waiting() > 0),
            move || drop(theirs),
            || ev.wait_timeout(long).map_err(Error::into_kind),
        );
        peer_closed("event", r, acted);

        let sem = Semaphore::new(0).unwrap();
        let theirs = sem.clone();
        let (r, acted) = act_while_waiting(
            watch(&sem, |sem| sem.waiting() > 0),
            move || drop(theirs),
            || sem.acquire_timeout(long).map_err(Error::into_kind),
        );
        peer_closed("semaphore", r, acted);

        let (a, b) = Pipe::<u64, u64>::new().unwrap();
        let (r, acted) = act_while_waiting(
            || a.waiting_receivers() > 0,
            move || drop(b),
            || a.recv_timeout(long).map_err(Error::into_kind),
        );
        peer_closed("pipe", r, acted);

        // Each within about 100 ms of the drop, far from the 20 s timeouts.
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    });
}

/// The harness's own leak check catches an entry left in the test's TMPDIR.
#[test]
fn the_leak_check_catches_an_entry_left_in_tmpdir() {
    let dir = std::env::temp_dir();
    assert!(
        std::env::var_os(common::TMPDIR_ENV).is_some_and(|d| dir == std::path::Path::new(&d)),
        "the test binary has a private TMPDIR: {}",
        dir.display()
    );
    let left = dir.join("left-behind-by-a-test");
    let path = left.clone();
    let caught = std::panic::catch_unwind(|| {
        common::isolated_settling(DEADLINE, Duration::from_millis(100), move || {
            std::fs::write(&path, b"x").unwrap();
        })
    });
    let _ = std::fs::remove_file(&left);
    let message = caught
        .expect_err("a leftover temp entry must fail the leak check")
        .downcast::<String>()
        .map(|s| *s)
        .unwrap_or_default();
    assert!(
        message.contains("temp entries left behind") && message.contains("left-behind-by-a-test"),
        "{message}"
    );
    // And a clean body passes.
    isolated(DEADLINE, || {
        let path = std::env::temp_dir().join("made-and-removed");
        std::fs::write(&path, b"x").unwrap();
        std::fs::remove_file(&path).unwrap();
    });
}

/// A timeout too long for the clock (`Duration::MAX`, a common "forever") waits as long
/// as it takes, as `Process::join_timeout` and `TaskHandle::wait_timeout` do (before:
/// Queue, Pipe, Event and Semaphore panicked with "overflow when adding duration to
/// instant").
#[test]
fn timeouts_too_long_for_the_clock_wait_as_long_as_it_takes() {
    isolated(DEADLINE, || {
        let forever = Duration::MAX;
        let q = supervisor::Queue::<u64>::new().unwrap();
        assert!(q.put_timeout(&7, forever).unwrap());
        assert_eq!(q.get_timeout(forever).unwrap(), Some(7));
        let (a, b) = Pipe::<u64, u64>::new().unwrap();
        a.send(&8).unwrap();
        assert_eq!(b.recv_timeout(forever).unwrap(), Some(8));
        let ev = Event::new().unwrap();
        ev.set().unwrap();
        assert!(ev.wait_timeout(forever).unwrap());
        let s = Semaphore::new(1).unwrap();
        assert!(s.acquire_timeout(forever).unwrap());
        let lock = Lock::new().unwrap();
        assert!(lock.lock_timeout(forever).unwrap().is_some());
    });
}
