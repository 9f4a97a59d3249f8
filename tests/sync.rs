//! Pipe, shared memory, Lock, Event and Semaphore across processes, under every start
//! method: round trips, a dead peer reported, memory written by a child read by the
//! parent, a lock held by a killed process released, an event waking several
//! processes; timed calls on time while a stopped process holds an object's mutex;
//! waiters woken by other threads of their process; the harness's temp-entry check.

mod common;

use std::time::{Duration, Instant};

use common::{act_while_waiting, each_method, isolated, wait_stopped, watch};
use supervisor::{
    Acquired, Error, ErrorKind, Event, Lock, Pipe, Process, Semaphore, SharedMemory, SharedSlice,
};

const DEADLINE: Duration = Duration::from_secs(60);

/// Answers every number with its successor until the other end goes away.
fn echo_plus_one(end: Pipe<u64, u64>) -> u64 {
    let mut n = 0;
    loop {
        match end.recv() {
            Ok(x) => {
                end.send(&(x + 1)).expect("send");
                n += 1;
            }
            Err(e) if matches!(e.kind(), ErrorKind::PeerClosed { .. }) => return n,
            Err(e) => panic!("recv: {e}"),
        }
    }
}
supervisor::task!(echo_plus_one);

#[test]
fn pipe_round_trips_and_a_closed_peer_ends_the_other_side() {
    each_method(DEADLINE, |method| {
        let (a, b) = Pipe::<u64, u64>::new().unwrap();
        let mut p = Process::builder(echo_plus_one, b)
            .start_method(method)
            .start()
            .unwrap();
        for i in 0..200 {
            a.send(&i).unwrap();
            assert_eq!(a.recv().unwrap(), i + 1);
        }
        drop(a);
        assert_eq!(p.join().unwrap(), 200);
    });
}

/// Sends one message, then waits forever.
fn send_then_hang(end: Pipe<String, u64>) -> u64 {
    end.send(&"ready".to_string()).expect("send");
    loop {
        std::thread::park();
    }
}
supervisor::task!(send_then_hang);

#[test]
fn a_pipe_reports_its_dead_peer() {
    each_method(DEADLINE, |method| {
        let (a, b) = Pipe::<u64, String>::new().unwrap();
        let mut p = Process::builder(send_then_hang, b)
            .start_method(method)
            .start()
            .unwrap();
        assert_eq!(a.recv().unwrap(), "ready");
        p.kill().unwrap();
        let pid = p.pid();
        let _ = p.join();
        let t = Instant::now();
        match a.recv().map_err(Error::into_kind) {
            Err(ErrorKind::PeerDied { pid: dead, .. }) => assert_eq!(dead, pid),
            other => panic!("expected PeerDied, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        let e = a.recv_timeout(Duration::from_millis(10)).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::PeerDied { .. }), "{e:?}");
    });
}

/// Writes a pattern into the buffer and squares into the slice.
fn fill_shared((mem, nums): (SharedMemory, SharedSlice<f64>)) -> usize {
    let pattern: Vec<u8> = (0..mem.len()).map(|i| (i % 251) as u8).collect();
    mem.write(0, &pattern);
    for i in 0..nums.len() {
        nums.set(i, (i * i) as f64);
    }
    mem.len()
}
supervisor::task!(fill_shared);

#[test]
fn shared_memory_written_by_a_child_is_read_by_the_parent() {
    each_method(DEADLINE, |method| {
        let mem = SharedMemory::new(3 << 20).unwrap();
        let nums = SharedSlice::<f64>::new(1000).unwrap();
        assert_eq!(nums.get(999), 0.0);
        let mut p = Process::builder(fill_shared, (mem.clone(), nums.clone()))
            .start_method(method)
            .start()
            .unwrap();
        assert_eq!(p.join().unwrap(), 3 << 20);
        let mut back = vec![0u8; mem.len()];
        mem.read(0, &mut back);
        assert!(back.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        assert_eq!(
            nums.to_vec(),
            (0..1000).map(|i| (i * i) as f64).collect::<Vec<_>>()
        );
    });
}

/// Takes the lock, says so, and waits forever holding it.
fn lock_and_hang((lock, locked): (Lock, Event)) -> u64 {
    let _guard = lock.lock().expect("lock");
    locked.set().expect("set");
    loop {
        std::thread::park();
    }
}
supervisor::task!(lock_and_hang);

#[test]
fn a_lock_held_by_a_killed_process_is_released_and_the_next_holder_is_told() {
    each_method(DEADLINE, |method| {
        let lock = Lock::new().unwrap();
        let locked = Event::new().unwrap();
        let mut p = Process::builder(lock_and_hang, (lock.clone(), locked.clone()))
            .start_method(method)
            .start()
            .unwrap();
        locked.wait().unwrap();
        assert!(lock.try_lock().unwrap().is_none(), "held by the child");
        assert!(lock
            .lock_timeout(Duration::from_millis(50))
            .unwrap()
            .is_none());
        p.kill().unwrap();
        let pid = p.pid();
        let _ = p.join();
        let guard = lock.lock().unwrap();
        assert_eq!(guard.acquired(), Acquired::PreviousHolderDied { pid });
        let e = lock.try_lock().map(drop).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::WouldDeadlock), "{e:?}");
        drop(guard);
        assert_eq!(lock.lock().unwrap().acquired(), Acquired::Clean);
    });
}

/// Says it is ready, then waits for the event.
fn wait_event((ev, ready): (Event, Semaphore)) -> bool {
    ready.release().expect("release");
    ev.wait().expect("wait");
    ev.is_set()
}
supervisor::task!(wait_event);

#[test]
fn an_event_wakes_waiters_in_several_processes() {
    each_method(DEADLINE, |method| {
        let ev = Event::new().unwrap();
        let ready = Semaphore::new(0).unwrap();
        let mut waiters: Vec<_> = (0..3)
            .map(|_| {
                Process::builder(wait_event, (ev.clone(), ready.clone()))
                    .start_method(method)
                    .start()
                    .unwrap()
            })
            .collect();
        for _ in 0..3 {
            ready.acquire().unwrap();
        }
        let t = Instant::now();
        assert!(!ev.wait_timeout(Duration::from_millis(50)).unwrap());
        assert!(t.elapsed() >= Duration::from_millis(50));
        ev.set().unwrap();
        for p in &mut waiters {
            assert!(p.join().unwrap());
        }
        assert!(ev.wait_timeout(Duration::ZERO).unwrap());
        ev.clear().unwrap();
        assert!(!ev.is_set());
    });
}

#[test]
fn a_semaphore_counts_permits_and_never_blocks_forever_alone() {
    isolated(DEADLINE, || {
        let s = Semaphore::new(2).unwrap();
        assert!(s.try_acquire().unwrap());
        assert!(s.try_acquire().unwrap());
        assert!(!s.try_acquire().unwrap());
        let e = s.acquire().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::PeerClosed { .. }), "{e:?}");
        s.release().unwrap();
        assert_eq!(s.permits(), 1);
        s.acquire().unwrap();
    });
}

/// Sizes a user can choose, over the whole `usize` range: absurd ones are errors, never
/// a mapping shorter than its stated length (which let `write` past the end: SIGSEGV).
#[test]
fn absurd_sizes_are_errors_and_no_access_leaves_the_mapping() {
    isolated(DEADLINE, || {
        let too_large = |e: Error| {
            assert!(matches!(e.kind(), ErrorKind::TooLarge { .. }), "{e:?}");
            assert!(e.to_string().contains("over the limit"), "{e}");
        };
        for len in [usize::MAX, usize::MAX - 7, 1 << 62, (1 << 46) + 1] {
            too_large(SharedMemory::new(len).unwrap_err());
            let e = SharedSlice::<u64>::new(len / 8).unwrap_err();
            assert!(
                matches!(e.kind(), ErrorKind::TooManyElements { .. }),
                "{e:?}"
            );
            assert!(e.to_string().contains("over the limit"), "{e}");
            too_large(
                supervisor::Queue::<u64>::builder()
                    .buffer_bytes(len)
                    .build()
                    .unwrap_err(),
            );
        }
        // A real buffer: every access outside it panics (checked), none touches memory
        // outside the mapping.
        let shm = SharedMemory::new(10_000).unwrap();
        assert_eq!(shm.len(), 10_000);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let offset = match seed % 4 {
                0 => (seed >> 8) as usize,
                1 => usize::MAX - (seed % 64) as usize,
                2 => 10_000 - (seed % 16) as usize,
                _ => (seed % 12_000) as usize,
            };
            let len = ((seed >> 20) % 64) as usize;
            let fits = offset.checked_add(len).is_some_and(|end| end <= 10_000);
            let wrote = std::panic::catch_unwind(|| shm.write(offset, &vec![7u8; len]));
            assert_eq!(wrote.is_ok(), fits, "write at {offset} of {len}");
            let mut buf = vec![0u8; len];
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                shm.read(offset, &mut buf)
            }));
            assert_eq!(read.is_ok(), fits, "read at {offset} of {len}");
        }
        let slice = SharedSlice::<u64>::new(100).unwrap();
        for i in [100, 101, usize::MAX, usize::MAX / 8] {
            assert!(
                std::panic::catch_unwind(|| slice.get(i)).is_err(),
                "get {i}"
            );
        }
    });
}

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

/// Byte offset of `data_len` in a region's header (magic, version, kind, id, tag, len,
/// state offset, state length, data offset, data length).
const HEADER_DATA_LEN: usize = 72;

/// Writes `len` into the data length of the region header of the object whose data
/// starts at `data` (the header is the first page of the mapping; the data starts in
/// it), as a buggy or hostile holder could.
fn scribble_data_len(data: *mut u8, len: u64) {
    let header = (data as usize & !4095) as *mut u8;
    // SAFETY: the mapping starts with the header, in the same page as the data's start
    // (the header and state are under 4 KiB); this deliberately overwrites one field.
    unsafe {
        assert_eq!(header.cast::<[u8; 8]>().read(), *b"SUPVSYNC");
        header
            .add(HEADER_DATA_LEN)
            .cast::<u64>()
            .write_volatile(len);
    }
}

/// A holder that rewrites the shared header's data length (1 TiB).
fn scribble_shared_memory(mem: SharedMemory) -> u64 {
    scribble_data_len(mem.as_ptr(), 1 << 40);
    mem.len() as u64
}
supervisor::task!(scribble_shared_memory);

/// A queue whose header says its ring holds 0 bytes, returned to the caller.
fn scribbled_queue(_: ()) -> supervisor::Queue<u64> {
    let q = supervisor::Queue::new().unwrap();
    scribble_data_len(queue_mapping(&q), 0);
    q
}
supervisor::task!(scribbled_queue);

/// The start of the mapping of this process's only queue (its header), from
/// `/proc/self/maps`.
fn queue_mapping(_q: &supervisor::Queue<u64>) -> *mut u8 {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .rfind(|l| l.contains("memfd:supervisor-queue"))
        .expect("the queue's mapping");
    let start = usize::from_str_radix(line.split('-').next().unwrap(), 16).unwrap();
    start as *mut u8
}

/// Sizes and offsets are read from the shared header once, when the region is made or
/// opened, and checked then: another holder rewriting the header (a bug or a hostile
/// peer) cannot make `len()` grow past the mapping, so `write` stays inside it (before:
/// `len()` followed the header, 1 TiB, and `write` past the mapping was SIGSEGV), and a
/// handle whose header is inconsistent is refused when it is opened.
#[test]
fn a_holder_rewriting_the_shared_header_cannot_move_an_access_outside_the_mapping() {
    isolated(DEADLINE, || {
        let mem = SharedMemory::new(10_000).unwrap();
        let mut p = Process::builder(scribble_shared_memory, mem.clone())
            .start()
            .unwrap();
        assert_eq!(p.join().unwrap(), 10_000, "the writer's own view moved");
        assert_eq!(mem.len(), 10_000);
        let past = std::panic::catch_unwind(|| mem.write(1 << 33, &[1]));
        assert!(past.is_err(), "a write past the mapping was allowed");

        let mut p = Process::builder(scribbled_queue, ()).start().unwrap();
        match p.join().map_err(Error::into_kind) {
            Err(ErrorKind::DecodeResult { source, .. }) => {
                let chain = format!("{source}: {:?}", std::error::Error::source(&source));
                assert!(chain.contains("inconsistent layout"), "{chain}");
            }
            other => panic!("expected the scribbled queue refused, got {other:?}"),
        }
    });
}

/// A release on a semaphore already at `u64::MAX` permits keeps it there (before: the
/// count wrapped to 0 and every later acquire waited).
#[test]
fn a_release_past_the_most_permits_keeps_them() {
    isolated(DEADLINE, || {
        let s = Semaphore::new(u64::MAX).unwrap();
        s.release().unwrap();
        assert_eq!(s.permits(), u64::MAX);
        assert!(s.try_acquire().unwrap());
    });
}

/// Threads and handles: a `Queue`, `Event` or `Semaphore` is not `Sync` (one handle
/// shared by reference between threads was one holder, so a lone waiter failed with
/// `PeerClosed` although another thread was about to wake it; the compile_fail doctests
/// on each type pin the refusal), a clone per thread works (the tests above). A `Lock`
/// and a `Pipe` end decide nothing about their own holders: shared by reference they
/// work as a clone (Lock) or a moved end (Pipe) does.
#[test]
fn a_lock_and_a_pipe_end_work_shared_by_reference_and_one_per_thread() {
    isolated(DEADLINE, || {
        // Lock: by reference (scoped threads), then a clone moved to another thread.
        let lock = Lock::new().unwrap();
        let guard = lock.lock().unwrap();
        std::thread::scope(|s| {
            let other = s.spawn(|| lock.try_lock().unwrap().is_none());
            assert!(other.join().unwrap(), "the other thread took a held lock");
        });
        drop(guard);
        std::thread::scope(|s| {
            let other = s.spawn(|| lock.lock().unwrap().acquired());
            assert_eq!(other.join().unwrap(), Acquired::Clean);
        });
        let theirs = lock.clone();
        let guard = lock.lock().unwrap();
        let other = std::thread::spawn(move || theirs.try_lock().unwrap().is_none());
        assert!(other.join().unwrap(), "a clone took a held lock");
        drop(guard);

        // Pipe: one end shared by reference, the waiter woken by the other end.
        let (a, b) = Pipe::<u64, u64>::new().unwrap();
        let (got, acted) = std::thread::scope(|s| {
            let waiter = s.spawn(|| a.recv_timeout(Duration::from_secs(10)));
            let (r, acted) = act_while_waiting(
                || a.waiting_receivers() > 0,
                || b.send(&7).unwrap(),
                || waiter.join().unwrap().map_err(Error::into_kind),
            );
            (r, acted)
        });
        assert!(matches!(got, Ok(Some(7))), "{got:?}");
        assert!(acted, "the receiver never slept");
        // Each end moved to a thread of its own.
        let other = std::thread::spawn(move || {
            b.send(&8).unwrap();
            b.recv().unwrap()
        });
        assert_eq!(a.recv().unwrap(), 8);
        a.send(&9).unwrap();
        assert_eq!(other.join().unwrap(), 9);
    });
}
