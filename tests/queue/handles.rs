//! Queues and handles returned from tasks, never-opened handles, the descriptor limit, drops and opens with a stopped lock holder, items too big for the buffer.

use super::waiting::{get_one, stopped_lock_holder};
use super::*;

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
