//! Queue across processes under every start method: many producers and consumers,
//! exactly-once delivery, processes killed mid-put and mid-get, timeouts (also with a
//! stopped process holding the queue's mutex), bounded puts, dead peers, threads of one
//! process as producer and consumer, Python's `maxsize=0`.

mod common;

use std::time::{Duration, Instant};

use common::{act_while_waiting, each_method, isolated, wait_stopped, watch};
use supervisor::{Error, ErrorKind, Pipe, Pool, Process, Queue, StartMethod};

const DEADLINE: Duration = Duration::from_secs(60);

/// Puts `from..to` on the queue.
fn produce((q, from, to): (Queue<u64>, u64, u64)) -> u64 {
    for i in from..to {
        q.put(&i).expect("put");
    }
    to - from
}
supervisor::task!(produce);

/// Gets until the queue is closed; returns what it got.
fn consume(q: Queue<u64>) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        match q.get() {
            Ok(x) => got.push(x),
            Err(e) if matches!(e.kind(), ErrorKind::Closed { .. }) => return got,
            Err(e) => panic!("get failed: {e}"),
        }
    }
}
supervisor::task!(consume);

#[test]
fn four_producers_and_four_consumers_move_100_000_items_exactly_once() {
    each_method(DEADLINE, |method| {
        const N: u64 = 100_000;
        let q: Queue<u64> = Queue::bounded(1000).unwrap();
        let consumers: Vec<_> = (0..4)
            .map(|_| {
                Process::builder(consume, q.clone())
                    .start_method(method)
                    .start()
                    .unwrap()
            })
            .collect();
        let producers: Vec<_> = (0..4)
            .map(|i| {
                Process::builder(produce, (q.clone(), i * N / 4, (i + 1) * N / 4))
                    .start_method(method)
                    .start()
                    .unwrap()
            })
            .collect();
        for mut p in producers {
            assert_eq!(p.join().unwrap(), N / 4);
        }
        q.close().unwrap();
        let mut all = Vec::with_capacity(N as usize);
        for mut c in consumers {
            all.extend(c.join().unwrap());
        }
        assert_eq!(all.len() as u64, N, "items received");
        all.sort_unstable();
        assert!(all.iter().copied().eq(0..N), "each item exactly once");
        assert_eq!(q.len(), 0);
    });
}

/// A 100-byte item, so that "halfway through the copy" is a real place.
fn item(i: u64) -> String {
    format!("{i:0100}")
}

/// Puts items 0..n (each acknowledged by `put` returning), then dies by SIGKILL
/// halfway through copying item n into the queue.
fn put_then_die_mid_put((q, n): (Queue<String>, u64)) -> u64 {
    for i in 0..n {
        q.put(&item(i)).expect("put");
    }
    assert!(supervisor::__arm_sync_fault("put-mid-copy"));
    q.put(&item(n)).expect("put");
    unreachable!("the fault point kills this process")
}
supervisor::task!(put_then_die_mid_put);

/// Gets `k` items and reports each on `acks`, then dies by SIGKILL halfway through
/// copying the next item out.
fn get_then_die_mid_get((q, acks, k): (Queue<String>, Queue<String>, u64)) -> u64 {
    for _ in 0..k {
        let x = q.get().expect("get");
        acks.put(&x).expect("ack");
    }
    assert!(supervisor::__arm_sync_fault("get-mid-copy"));
    let _ = q.get();
    unreachable!("the fault point kills this process")
}
supervisor::task!(get_then_die_mid_get);

fn drain(q: &Queue<String>) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(x) = q.try_get().expect("try_get") {
        out.push(x);
    }
    out
}

fn assert_crashed_by_sigkill(r: Result<u64, Error>) {
    match r.map_err(Error::into_kind) {
        Err(ErrorKind::Crashed { signal, .. }) => assert_eq!(signal.to_string(), "SIGKILL"),
        other => panic!("expected a SIGKILL crash, got {other:?}"),
    }
}

#[test]
fn producer_killed_mid_put_leaves_the_queue_usable_and_loses_no_acknowledged_item() {
    each_method(DEADLINE, |method| {
        let q: Queue<String> = Queue::new().unwrap();
        let mut p = Process::builder(put_then_die_mid_put, (q.clone(), 50))
            .start_method(method)
            .start()
            .unwrap();
        assert_crashed_by_sigkill(p.join());
        // The dead process held the queue's lock halfway through a copy: the next
        // user repairs the queue and finds exactly the acknowledged items, whole.
        let got = drain(&q);
        assert_eq!(got, (0..50).map(item).collect::<Vec<_>>());
        assert_eq!(q.len(), 0);
        q.put(&item(7)).unwrap();
        assert_eq!(q.try_get().unwrap(), Some(item(7)));
    });
}

#[test]
fn consumer_killed_mid_get_leaves_the_queue_usable_and_loses_nothing() {
    each_method(DEADLINE, |method| {
        let q: Queue<String> = Queue::new().unwrap();
        let acks: Queue<String> = Queue::new().unwrap();
        for i in 0..50 {
            q.put(&item(i)).unwrap();
        }
        let mut p = Process::builder(get_then_die_mid_get, (q.clone(), acks.clone(), 20))
            .start_method(method)
            .start()
            .unwrap();
        assert_crashed_by_sigkill(p.join());
        let taken = drain(&acks);
        assert_eq!(taken, (0..20).map(item).collect::<Vec<_>>());
        // The item it was copying out when it died is still there, first in line.
        let left = drain(&q);
        assert_eq!(left, (20..50).map(item).collect::<Vec<_>>());
        q.put(&item(1)).unwrap();
        assert_eq!(q.get().unwrap(), item(1));
    });
}

/// Gets one item, blocking; returns it.
fn get_one(q: Queue<u64>) -> u64 {
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
fn stopped_lock_holder(q: &Queue<u64>) -> Process<u64> {
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

fn make_queue(items: u64) -> Queue<u64> {
    let q = Queue::new().expect("a queue");
    for i in 0..items {
        q.put(&i).expect("put");
    }
    q
}
supervisor::task!(make_queue);

fn make_slice(len: u64) -> supervisor::SharedSlice<u64> {
    let s = supervisor::SharedSlice::new(len as usize).expect("a slice");
    for i in 0..len as usize {
        s.set(i, i as u64 * 3);
    }
    s
}
supervisor::task!(make_slice);

/// A queue or shared slice a task creates and returns reaches the caller whole, from a
/// Process and from a pool, while the worker lives (before: "cannot open the shared
/// memory shared by process N: No such file or directory", the task's own handle had
/// closed the memory when it returned).
#[test]
fn handles_returned_from_tasks_work_in_the_caller() {
    each_method(DEADLINE, |method| {
        let mut p = Process::builder(make_queue, 3)
            .start_method(method)
            .start()
            .unwrap();
        let q = p.join().expect("the queue comes back");
        let got: Vec<u64> = (0..3).map(|_| q.get().unwrap()).collect();
        assert_eq!(got, [0, 1, 2]);
        let pool = supervisor::Pool::builder()
            .procs(1)
            .start_method(method)
            .build()
            .unwrap();
        let q = pool.apply(make_queue, 2).expect("the queue comes back");
        assert_eq!((q.get().unwrap(), q.get().unwrap()), (0, 1));
        let s = pool.apply(make_slice, 4).expect("the slice comes back");
        assert_eq!((0..4).map(|i| s.get(i)).collect::<Vec<_>>(), [0, 3, 6, 9]);
        pool.join();
    });
}

/// Handles serialised for processes that never open them (here: builders dropped
/// without starting, as a child killed before decoding its argument would leave them)
/// count as on their way for the documented 10 s (the sender cannot know who will open
/// a serialised handle); then the wait fails instead of hanging.
#[test]
fn handles_that_are_never_opened_end_a_wait_within_the_documented_bound() {
    isolated(DEADLINE, || {
        let q: Queue<u64> = Queue::new().unwrap();
        for _ in 0..2 {
            drop(Process::builder(get_one, q.clone()));
        }
        let t = Instant::now();
        let e = q.get().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::PeerClosed { .. }), "{e:?}");
        let waited = t.elapsed();
        assert!(
            waited > Duration::from_secs(9) && waited < Duration::from_secs(12),
            "{waited:?}"
        );
    });
}

fn open_descriptors(_: ()) -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}
supervisor::task!(open_descriptors);

/// Lowers this worker's soft limit of open descriptors to `n`.
fn lower_descriptor_limit(n: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointers to plain data; lowering the soft limit is always allowed.
    let ok = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && {
            lim.rlim_cur = n;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0
        }
    };
    assert!(ok, "setrlimit");
    n
}
supervisor::task!(lower_descriptor_limit);

/// Queues returned by tasks whose results nobody decodes do not exhaust the worker's
/// descriptors: it keeps them for at most half its descriptor limit, and past that a
/// returned handle is refused with an error naming the cause (before: at most 64 kept,
/// the oldest silently closed, so a handle still on its way could no longer be opened;
/// before that: one per result until `Too many open files`). Each is let go 10 s after
/// it was sent, and a returned queue then works again.
#[test]
fn undecoded_returned_handles_are_bounded_by_the_descriptor_limit_with_a_clear_error() {
    isolated(DEADLINE, || {
        let pool = Pool::builder()
            .procs(1)
            .initializer(lower_descriptor_limit, 256)
            .build()
            .unwrap();
        let before = pool.apply(open_descriptors, ()).unwrap();
        let handles: Vec<_> = (0..300)
            .map(|i| pool.apply_async(make_queue, i % 3))
            .collect();
        // Dropped: their results (queues) are never decoded, so never opened.
        drop(handles);
        let after = pool.apply(open_descriptors, ()).unwrap();
        assert!(
            after <= before + 128 + 4,
            "{before} -> {after} descriptors in the worker"
        );
        let e = pool.apply(make_queue, 1).unwrap_err();
        let mut said = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            said = format!("{said}: {s}");
            source = s.source();
        }
        assert!(
            said.contains(
                "cannot send a queue handle: 128 objects are kept open for handles on their way \
                 that nobody has opened yet (half the descriptor limit, RLIMIT_NOFILE"
            ),
            "{e:?}"
        );
        let until = Instant::now() + Duration::from_secs(20);
        let q = loop {
            match pool.apply(make_queue, 1) {
                Ok(q) => break q,
                Err(e) => assert!(Instant::now() < until, "{e}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(q.get().unwrap(), 0);
        pool.join();
    });
}

/// Dropping the last handle of a queue in a process does not wait for a holder that is
/// stopped (SIGSTOP) holding the queue's internal mutex (before: the drop waited until
/// that holder was continued or killed, and so would a worker ending its task).
#[test]
fn dropping_a_queue_does_not_wait_for_a_stopped_holder_of_its_lock() {
    isolated(DEADLINE, || {
        let q: Queue<u64> = Queue::new().unwrap();
        let mut p = stopped_lock_holder(&q);
        let (tx, rx) = std::sync::mpsc::channel();
        let t = Instant::now();
        let dropper = std::thread::spawn(move || {
            drop(q);
            let _ = tx.send(());
        });
        let dropped = rx.recv_timeout(Duration::from_secs(2)).is_ok();
        let took = t.elapsed();
        p.kill().unwrap();
        let _ = p.join();
        dropper.join().unwrap();
        assert!(dropped, "the drop waited for the stopped holder ({took:?})");
    });
}

/// Returns its queue once `go` is set.
fn return_queue_when_set((q, go): (Queue<u64>, supervisor::Event)) -> Queue<u64> {
    go.wait().expect("go");
    q
}
supervisor::task!(return_queue_when_set);

/// Returns its queue at once.
fn return_queue(q: Queue<u64>) -> Queue<u64> {
    q
}
supervisor::task!(return_queue);

/// Runs `join_timeout(limit)` on another thread; what it returned, if it returned
/// within `limit` + 2 s.
fn join_in_time(
    mut p: Process<Queue<u64>>,
    limit: Duration,
) -> Option<Option<Result<Queue<u64>, Error>>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = p.join_timeout(limit);
        let _ = tx.send(r);
        let _ = p.join();
    });
    rx.recv_timeout(limit + Duration::from_secs(2)).ok()
}

/// Opening a handle (a task's argument in the worker, a returned one in the caller's
/// `join_timeout`) does not wait for a holder stopped (SIGSTOP) holding the queue's
/// internal mutex: the worker runs its task and the caller gets the queue in time
/// (before: both waited, `join_timeout(1s)` for as long as the holder stayed stopped).
#[test]
fn opening_a_handle_does_not_wait_for_a_stopped_holder_of_its_lock() {
    isolated(DEADLINE, || {
        let q: Queue<u64> = Queue::new().unwrap();
        let go = supervisor::Event::new().unwrap();
        let early = Process::builder(return_queue_when_set, (q.clone(), go.clone()))
            .start()
            .unwrap();
        // The early child has opened its queue once it waits on `go`.
        let t = Instant::now();
        while go.waiting() == 0 {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the child never waited"
            );
            std::thread::yield_now();
        }
        let mut holder = stopped_lock_holder(&q);
        let late = Process::builder(return_queue, q.clone()).start().unwrap();
        drop(q); // the caller opens what comes back
        go.set().unwrap();
        let limit = Duration::from_secs(3);
        let early = join_in_time(early, limit);
        let late = join_in_time(late, limit);
        holder.kill().unwrap();
        let _ = holder.join();
        for (what, r) in [("returned", early), ("argument", late)] {
            match r {
                Some(Some(Ok(q))) => assert_eq!(q.capacity(), None),
                other => panic!("{what}: expected the queue in time, got {other:?}"),
            }
        }
    });
}

/// An item too big for the buffer of a Queue or Pipe is refused as soon as its
/// encoding outgrows the buffer, then measured without being stored: the error names
/// its real size and the buffer's, and the caller's peak RSS grows by far less than
/// the item. Before: the item was encoded whole (up to 1 GiB) and only then checked.
#[test]
fn an_item_too_big_for_the_buffer_is_refused_without_a_copy() {
    isolated(DEADLINE, || {
        const BOUND_KIB: u64 = 32 << 10;
        let n = 64 << 20;
        let item = vec![1u8; n];
        let encoded = n + 5; // a 5-byte length, then the bytes
        let q: Queue<Vec<u8>> = Queue::new().unwrap();
        let (a, _b) = Pipe::<Vec<u8>, ()>::new().unwrap();
        type Put<'a> = Box<dyn Fn() -> Result<(), supervisor::Error> + 'a>;
        let puts: [(&str, Put); 2] = [
            ("queue", Box::new(|| q.put(&item))),
            ("pipe", Box::new(|| a.send(&item))),
        ];
        for (what, put) in puts {
            std::fs::write("/proc/self/clear_refs", "5").expect("clear_refs");
            let before = common::status_kib("self", "VmRSS");
            let e = put().unwrap_err();
            let grew = common::status_kib("self", "VmHWM").saturating_sub(before);
            match e.kind() {
                ErrorKind::MessageTooLarge { size, limit, .. } => {
                    assert_eq!(*size, encoded, "{what}: {e}");
                    assert!(*limit < 2 << 20, "{what}: {e}");
                }
                other => panic!("{what}: expected MessageTooLarge, got {other:?}"),
            }
            assert!(
                grew < BOUND_KIB,
                "{what}: the caller's peak grew {grew} KiB refusing a {n}-byte item"
            );
        }
        assert!(q.is_empty());
    });
}
