//! A rewritten shared header, releases past the most permits, objects shared by reference and one per thread.

use super::*;

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
