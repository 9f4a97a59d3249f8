//! Pipe, shared memory, Lock, Event and Semaphore across processes: round trips, dead peers, a killed lock holder, events waking several processes, absurd sizes.

use super::*;

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
