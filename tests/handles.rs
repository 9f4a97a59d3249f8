//! Handles in transit: every handle serialised for another process opens there however
//! many are on their way at once (given to tasks or returned by them), a serialisation
//! decoded twice hides no later handle on its way, a descriptor number reused after
//! the sender let go is reported as such, and the limits (holders per object, buffer
//! sizes) are named in their errors.

mod common;

use std::time::Duration;

use common::isolated;
use supervisor::{ErrorKind, Event, Pool, Process, Queue, SharedMemory, SharedSlice, StartMethod};

const DEADLINE: Duration = Duration::from_secs(120);
/// More than the 64 regions the old code kept for handles on their way.
const MANY: u64 = 200;

fn read(s: SharedSlice<u64>) -> u64 {
    s.get(0)
}
supervisor::task!(read);

/// A fresh slice holding `i`; the first task waits until the last is made, so that
/// every other result is returned, and its worker's own handle dropped, before the
/// caller decodes any of them.
fn make(a: (u64, u64, Event)) -> SharedSlice<u64> {
    let (i, last, done) = a;
    if i == 0 {
        done.wait().expect("the last task sets it");
    }
    let s = SharedSlice::from_slice(&[i]).expect("a slice");
    if i == last {
        done.set().expect("set");
    }
    s
}
supervisor::task!(make);

#[test]
fn more_than_64_handles_given_to_tasks_at_once_all_open() {
    isolated(DEADLINE, || {
        let pool = Pool::builder().procs(2).build().unwrap();
        // The caller keeps no handle of its own: each is kept only for its wire.
        let r = pool.map(
            read,
            (0..MANY).map(|i| SharedSlice::from_slice(&[i]).unwrap()),
        );
        let got: Vec<u64> = r.into_iter().map(|x| x.expect("opened")).collect();
        assert_eq!(got, (0..MANY).collect::<Vec<_>>());
        let hs: Vec<_> = (0..MANY)
            .map(|i| pool.submit(read, SharedSlice::from_slice(&[i]).unwrap()))
            .collect();
        for (i, h) in hs.into_iter().enumerate() {
            assert_eq!(h.wait().expect("opened"), i as u64);
        }
        pool.join();
    });
}

#[test]
fn more_than_64_handles_returned_by_tasks_at_once_all_open() {
    isolated(DEADLINE, || {
        let pool = Pool::builder().procs(2).build().unwrap();
        let done = Event::new().unwrap();
        let hs: Vec<_> = (0..MANY)
            .map(|i| pool.submit(make, (i, MANY - 1, done.clone())))
            .collect();
        for (i, h) in hs.into_iter().enumerate() {
            let s = h.wait().expect("a returned slice opens");
            assert_eq!(s.get(0), i as u64);
        }
        pool.join();
    });
}

fn put_seven(q: Queue<u64>) -> u64 {
    q.put(&7).map(|_| 1).unwrap_or(0)
}
supervisor::task!(put_seven);

/// Aborts on its first attempt (the event not yet set), so its argument is decoded in
/// two workers.
fn abort_once(a: (Queue<u64>, Event)) -> u64 {
    let (_q, tried) = a;
    if !tried.is_set() {
        tried.set().expect("set");
        std::process::abort();
    }
    0
}
supervisor::task!(abort_once);

/// After `decode_again` decoded some serialisation of `q` more than once, the last
/// handle moved into a child still opens there, and a child given a clone can end the
/// caller's `get`.
fn later_handles_still_open(decode_again: impl Fn(&Queue<u64>)) {
    for _ in 0..5 {
        let q = Queue::<u64>::new().unwrap();
        decode_again(&q);
        let mut p = Process::builder(put_seven, q.clone()).start().unwrap();
        assert_eq!(q.get().expect("the child puts"), 7);
        assert_eq!(p.join().unwrap(), 1);
        decode_again(&q);
        // The last handle, moved: kept until the child opens it.
        let mut p = Process::builder(put_seven, q).start().unwrap();
        assert_eq!(p.join().expect("the child opens the moved handle"), 1);
    }
}

#[test]
fn a_serialisation_decoded_twice_hides_no_later_handle_on_its_way() {
    isolated(DEADLINE, || {
        later_handles_still_open(|q| {
            let s = serde_json::to_string(q).unwrap();
            let a: Queue<u64> = serde_json::from_str(&s).unwrap();
            let b: Queue<u64> = serde_json::from_str(&s).unwrap();
            drop((a, b));
        });
    });
}

#[test]
fn a_retried_tasks_argument_hides_no_later_handle_on_its_way() {
    isolated(DEADLINE, || {
        later_handles_still_open(|q| {
            let pool = Pool::builder().procs(1).retries(1).build().unwrap();
            // Kept by the caller too: a handle the caller let go is released once
            // opened, so a retry could not open it again.
            let tried = Event::new().unwrap();
            assert_eq!(
                pool.apply(abort_once, (q.clone(), tried.clone())).unwrap(),
                0
            );
            pool.join();
        });
    });
}

/// What decoding `wire` as a shared memory says, in this child.
fn decode_shared_memory(wire: String) -> String {
    match serde_json::from_str::<SharedMemory>(&wire) {
        Ok(_) => "opened".to_string(),
        Err(e) => e.to_string(),
    }
}
supervisor::task!(decode_shared_memory);

#[test]
fn a_descriptor_reused_after_the_sender_let_go_says_so() {
    isolated(DEADLINE, || {
        let sm = SharedMemory::new(4096).unwrap();
        let wire = serde_json::to_string(&sm).unwrap();
        let fd = serde_json::from_str::<serde_json::Value>(&wire).unwrap()["sources"][0][1]
            .as_i64()
            .unwrap();
        // Opened once: no longer on its way, so dropping the last handle closes it.
        drop(serde_json::from_str::<SharedMemory>(&wire).unwrap());
        drop(sm);
        let other = SharedMemory::new(4096).unwrap();
        let me = std::process::id();
        let mut p = Process::builder(decode_shared_memory, wire)
            .start()
            .unwrap();
        let said = p.join().unwrap();
        let reused = format!(
            "descriptor {fd} of process {me} now holds another object: the process no longer \
             has this shared memory open"
        );
        let gone = format!("process {me} has no descriptor {fd}: the process no longer has");
        assert!(said.contains(&reused) || said.contains(&gone), "{said}");
        assert!(!said.contains("is not this shared memory"), "{said}");
        drop(other);
    });
}

/// Holds the queue until killed.
fn hold(q: Queue<u64>) -> u64 {
    q.put(&1).expect("put");
    loop {
        std::thread::park();
    }
}
supervisor::task!(hold);

#[test]
fn the_129th_holder_of_an_object_is_refused_naming_the_limit() {
    isolated(DEADLINE, || {
        let q = Queue::<u64>::new().unwrap();
        let mut kids: Vec<Process<u64>> = (0..128)
            .map(|_| {
                Process::builder(hold, q.clone())
                    .start_method(StartMethod::Fork)
                    .start()
                    .unwrap()
            })
            .collect();
        // The caller is one holder: 127 children fit.
        for _ in 0..127 {
            assert_eq!(q.get().unwrap(), 1);
        }
        // The one refused ends without waiting for anything: find it.
        let mut refused = vec![];
        while refused.is_empty() {
            let mut i = 0;
            while i < kids.len() {
                match kids[i].join_timeout(Duration::from_millis(1)) {
                    Some(r) => refused.push(r.unwrap_err().to_string()),
                    None => {
                        i += 1;
                        continue;
                    }
                }
                kids.remove(i);
            }
        }
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(
            refused[0].contains(
                "the queue has 128 holders already, the most one object can have (one per \
                 process, two for a process holding both ends of a pipe)"
            ),
            "{}",
            refused[0]
        );
        for k in &kids {
            let _ = k.kill();
        }
        for mut k in kids {
            let _ = k.join();
        }
    });
}

#[test]
fn a_queue_buffer_over_the_limit_names_the_size_asked_for() {
    isolated(DEADLINE, || {
        for asked in [(1usize << 46) - 7, (1 << 46) - 1, 1 << 46, usize::MAX] {
            let e = Queue::<u64>::builder()
                .buffer_bytes(asked)
                .build()
                .unwrap_err();
            let ErrorKind::TooLarge {
                requested, limit, ..
            } = *e.kind()
            else {
                panic!("{e:?}");
            };
            assert_eq!(requested, asked as u64, "{e}");
            assert!(
                limit < requested && limit % 8 == 0 && limit > 1 << 45,
                "{e}"
            );
            assert_eq!(
                e.to_string(),
                format!("a queue of {asked} bytes is over the limit of {limit} bytes")
            );
            // Just past the limit is refused the same way.
            let e = Queue::<u64>::builder()
                .buffer_bytes(limit as usize + 1)
                .build()
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "a queue of {} bytes is over the limit of {limit} bytes",
                    limit + 1
                )
            );
        }
    });
}

fn recv_one(end: supervisor::Pipe<u64, u64>) -> u64 {
    end.recv().unwrap_or(0)
}
supervisor::task!(recv_one);

/// A pipe end serialised for a process that never opens it (a builder dropped unstarted,
/// as a child killed before decoding its argument leaves it) counts as on its way for
/// the documented 10 s; then the other end's wait fails with `PeerClosed` (the pipe
/// never knew that process, so it cannot say `PeerDied`), as the README states.
#[test]
fn a_pipe_peer_that_never_opened_its_end_is_peer_closed_after_the_grace() {
    isolated(DEADLINE, || {
        let (a, b) = supervisor::Pipe::<u64, u64>::new().unwrap();
        drop(Process::builder(recv_one, b));
        let t = std::time::Instant::now();
        let e = a.recv().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::PeerClosed { .. }), "{e:?}");
        let waited = t.elapsed();
        assert!(
            waited > Duration::from_secs(9) && waited < Duration::from_secs(12),
            "{waited:?}"
        );
    });
}

/// Opens the slice it is given and counts the attempt in it; the first attempt then
/// crashes its worker (SIGABRT), a later one returns the count.
fn open_then_crash_once(s: SharedSlice<u64>) -> u64 {
    let attempt = s.get(0) + 1;
    s.set(0, attempt);
    if attempt == 1 {
        std::process::abort();
    }
    attempt
}
supervisor::task!(open_then_crash_once);

/// A retried task's handle argument opens on the retry although the caller kept no
/// handle of its own: the pool keeps the objects of a job's argument until the job
/// ends (before: they went once the first attempt had opened them, and the retry
/// failed with "cannot open the shared memory shared by process N"). Through `submit`
/// through `map` (whose calls travel in chunks) and `imap_reports` (whose inputs are
/// packed), in every start method.
#[test]
fn a_retried_tasks_handle_argument_opens_on_the_retry() {
    common::each_method(DEADLINE, |method| {
        let pool = Pool::builder()
            .procs(1)
            .start_method(method)
            .retries(1)
            .build()
            .unwrap();
        // Moved in: the caller keeps no handle.
        let h = pool.submit(open_then_crash_once, SharedSlice::from_slice(&[0]).unwrap());
        assert_eq!(h.wait().expect("the retry opens its argument"), 2);
        let r = pool.map(
            open_then_crash_once,
            (0..2).map(|_| SharedSlice::from_slice(&[0]).unwrap()),
        );
        let got: Vec<u64> = r
            .into_iter()
            .map(|x| x.expect("the retry opens its argument"))
            .collect();
        assert_eq!(got, vec![2, 2]);
        // And through `imap_reports` (the CLI's path), whose inputs are packed.
        let got: Vec<u64> = pool
            .imap_reports::<_, u64, _>(
                "open_then_crash_once",
                (0..3).map(|_| SharedSlice::from_slice(&[0u64]).unwrap()),
                1,
                true,
            )
            .map(|r| r.result.expect("the retry opens its argument"))
            .collect();
        assert_eq!(got, vec![2, 2, 2]);
        pool.join();
    });
}

/// An initializer that opens the slice it is given (every worker runs it, so each
/// new worker decodes the same bytes again).
fn init_with(s: SharedSlice<u64>) {
    s.set(0, s.get(0) + 1);
}
supervisor::task!(init_with);

fn crash(_: ()) -> u64 {
    std::process::abort()
}
supervisor::task!(crash);

/// The initializer's handle argument opens in every worker, also in the replacement
/// of a worker that died, though the caller kept no handle: the pool keeps its
/// objects while it runs (before: the object went once the first worker had opened
/// it, and the replacement's initializer failed, breaking the pool).
#[test]
fn an_initializers_handle_argument_opens_in_a_replacement_worker() {
    common::each_method(DEADLINE, |method| {
        let pool = Pool::builder()
            .procs(1)
            .start_method(method)
            .initializer(init_with, SharedSlice::from_slice(&[0]).unwrap())
            .build()
            .unwrap();
        let e = pool.apply(crash, ()).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Crashed { .. }), "{e:?}");
        let e = pool.apply(crash, ()).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Crashed { .. }), "{e:?}");
        assert!(pool.stats().broken.is_none(), "{:?}", pool.stats().broken);
        pool.join();
    });
}
