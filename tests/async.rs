//! The pool from async code: handles, streams and the shutdown awaited inside a tokio
//! current-thread runtime whose one thread stays free (a ticker keeps ticking during
//! every await), and in a hand-written executor, to show nothing needs a runtime.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{Thread, ThreadId};
use std::time::{Duration, Instant};

use common::isolated;
use futures_util::StreamExt;
use supervisor::{as_completed, ErrorKind, Pool};

const DEADLINE: Duration = Duration::from_secs(90);

/// Sleeps `ms` milliseconds, then returns it.
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
supervisor::task!(sleep_ms);

fn square(x: u64) -> u64 {
    x * x
}
supervisor::task!(square);

/// Sleeps `ms`, then returns its worker's pid.
fn pid_after(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}
supervisor::task!(pid_after);

/// A current-thread runtime with a task counting 2 ms ticks.
fn ticking_runtime() -> (tokio::runtime::Runtime, Arc<AtomicU64>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    let t = ticks.clone();
    rt.spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(2));
        // No bursts of catching up after a stall: ticks count only time it was free.
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            t.fetch_add(1, Ordering::Relaxed);
        }
    });
    (rt, ticks)
}

/// Runs `fut` on the ticking runtime; the ticks counted while it ran.
fn ticks_during<T>(
    rt: &tokio::runtime::Runtime,
    ticks: &AtomicU64,
    fut: impl Future<Output = T>,
) -> (T, u64) {
    rt.block_on(async {
        // Let the ticker start first.
        tokio::task::yield_now().await;
        let before = ticks.load(Ordering::Relaxed);
        let out = fut.await;
        (out, ticks.load(Ordering::Relaxed) - before)
    })
}

/// 16 tasks of 150 ms on 4 workers are awaited on the runtime's only thread; the
/// ticker keeps ticking meanwhile (a blocking await would leave it at 0 or 1 ticks
/// for the whole 600 ms).
#[test]
fn awaiting_many_slow_handles_leaves_the_runtime_thread_free() {
    isolated(DEADLINE, || {
        let pool = Pool::builder().procs(4).build().unwrap();
        let (rt, ticks) = ticking_runtime();
        let t = Instant::now();
        let (values, during) = ticks_during(&rt, &ticks, async {
            let handles: Vec<_> = (0..16).map(|_| pool.submit(sleep_ms, 150)).collect();
            let mut values = Vec::new();
            for h in handles {
                values.push(h.await.unwrap());
            }
            values
        });
        let took = t.elapsed();
        assert_eq!(values, vec![150; 16]);
        assert!(took >= Duration::from_millis(600), "{took:?}");
        // About 300 ticks are due; a loaded machine delays some, none may stop.
        assert!(during >= 30, "only {during} ticks in {took:?}");
        rt.block_on(pool.join_async());
    });
}

/// The stream forms yield what the iterators do: `imap` in input order although the
/// tasks finish in the reverse order, `imap_unordered` and `as_completed` in
/// completion order; the ticker ticks during each.
#[test]
fn streams_yield_in_the_iterators_order_without_blocking() {
    isolated(DEADLINE, || {
        let pool = Pool::builder().procs(4).build().unwrap();
        let (rt, ticks) = ticking_runtime();
        let inputs = [240u64, 160, 80, 0];

        let (ordered, during) = ticks_during(&rt, &ticks, async {
            let s = pool.imap(sleep_ms, inputs).into_stream();
            s.map(Result::unwrap).collect::<Vec<u64>>().await
        });
        assert_eq!(ordered, inputs, "imap stream keeps input order");
        assert!(during >= 10, "only {during} ticks during imap");

        let (finished, during) = ticks_during(&rt, &ticks, async {
            let s = pool.imap_unordered(sleep_ms, inputs).into_stream();
            s.map(Result::unwrap).collect::<Vec<u64>>().await
        });
        assert_eq!(
            finished,
            [0, 80, 160, 240],
            "imap_unordered stream: completion order"
        );
        assert!(during >= 10, "only {during} ticks during imap_unordered");

        let (completed, during) = ticks_during(&rt, &ticks, async {
            let handles: Vec<_> = inputs.iter().map(|ms| pool.submit(sleep_ms, *ms)).collect();
            let mut s = as_completed(handles).into_stream();
            let mut order = Vec::new();
            while let Some(h) = s.next().await {
                assert!(h.is_ready(), "yielded before its task finished");
                order.push(h.await.unwrap());
            }
            order
        });
        assert_eq!(completed, [0, 80, 160, 240]);
        assert!(during >= 10, "only {during} ticks during as_completed");

        // Reports too, with where each ran.
        let reports = rt.block_on(async {
            pool.imap_reports::<u64, u64, _>("square", 0..20u64, 3, true)
                .into_stream()
                .collect::<Vec<_>>()
                .await
        });
        let values: Vec<u64> = reports
            .iter()
            .map(|r| *r.result.as_ref().unwrap())
            .collect();
        assert_eq!(values, (0..20u64).map(|x| x * x).collect::<Vec<_>>());
        assert!(reports.iter().all(|r| r.meta.pid != 0));
        rt.block_on(pool.join_async());
    });
}

/// `join_async` waits for running work to finish and every worker to exit while the
/// runtime ticks; afterwards dropping the pool returns at once.
#[test]
fn an_awaited_join_finishes_the_work_and_leaves_nothing() {
    isolated(DEADLINE, || {
        let pool = Pool::builder()
            .procs(2)
            .grace(Duration::from_secs(20))
            .build()
            .unwrap();
        let (rt, ticks) = ticking_runtime();
        let running: Vec<_> = (0..4).map(|_| pool.submit(pid_after, 150)).collect();
        let ((), during) = ticks_during(&rt, &ticks, pool.join_async());
        assert!(during >= 30, "only {during} ticks during the join");
        let mut pids = Vec::new();
        for h in running {
            assert!(h.is_ready(), "join ended before the work it had");
            pids.push(h.wait().unwrap());
        }
        // Closed: new work is refused.
        let refused = rt.block_on(pool.submit(square, 3));
        assert!(matches!(refused.unwrap_err().kind(), ErrorKind::PoolClosed));
        for pid in pids {
            // Reaped, not merely exited.
            let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists();
            assert!(gone, "worker {pid} still there after the join");
        }
        let t = Instant::now();
        drop(pool);
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "drop blocked {:?}",
            t.elapsed()
        );
    });
}

/// `terminate_async` on a busy pool: the running tasks fail as stopped, the queued
/// ones as terminated, and the awaiting thread is free meanwhile.
#[test]
fn an_awaited_terminate_stops_the_work() {
    isolated(DEADLINE, || {
        let pool = Pool::builder().procs(2).build().unwrap();
        let (rt, ticks) = ticking_runtime();
        let handles: Vec<_> = (0..6).map(|_| pool.submit(sleep_ms, 30_000)).collect();
        // Both workers busy before the stop.
        let started = Instant::now();
        while pool.stats().running < 2 {
            assert!(started.elapsed() < Duration::from_secs(30), "never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        let ((), _) = ticks_during(&rt, &ticks, pool.terminate_async());
        let kinds: Vec<_> = handles
            .into_iter()
            .map(|h| rt.block_on(h).unwrap_err())
            .collect();
        let stopped = kinds
            .iter()
            .filter(|e| matches!(e.kind(), ErrorKind::Stopped { .. }))
            .count();
        let terminated = kinds
            .iter()
            .filter(|e| matches!(e.kind(), ErrorKind::Terminated { .. }))
            .count();
        assert_eq!((stopped, terminated), (2, 4), "{kinds:?}");
    });
}

/// A waker that unparks its thread and records which threads woke it.
struct Unpark {
    thread: Thread,
    wakers: Mutex<Vec<ThreadId>>,
    wakes: AtomicUsize,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.wakers
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        self.thread.unpark();
    }
}

/// The smallest executor: polls `fut` on this thread, parking between polls; after the
/// first poll that finds it pending, runs `then` once. Returns its output and the
/// threads that woke it.
fn block_on<T>(fut: impl Future<Output = T>, then: impl FnOnce()) -> (T, Vec<ThreadId>) {
    let unpark = Arc::new(Unpark {
        thread: std::thread::current(),
        wakers: Mutex::new(Vec::new()),
        wakes: AtomicUsize::new(0),
    });
    let waker = Waker::from(unpark.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut then = Some(then);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            let woken_by = unpark.wakers.lock().unwrap().clone();
            return (out, woken_by);
        }
        if let Some(then) = then.take() {
            then();
        }
        assert!(Instant::now() < deadline, "never woken");
        // Parks until woken (a spurious return just polls again).
        std::thread::park_timeout(Duration::from_secs(10));
    }
}

/// Waits until the file `gate` exists, then sleeps `ms`; returns `ms`.
fn after_gate((gate, ms): (String, u64)) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::path::Path::new(&gate).exists() {
        assert!(Instant::now() < deadline, "the gate {gate} never opened");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
supervisor::task!(after_gate);

/// The path of a gate file in this test's temporary directory: `open_gate` makes it,
/// `close_gate` removes it.
fn gate(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("supervisor-async-{name}-{}", std::process::id()))
        .display()
        .to_string()
}

fn open_gate(gate: &str) {
    std::fs::write(gate, b"").unwrap();
}

fn close_gate(gate: &str) {
    std::fs::remove_file(gate).unwrap();
}

/// No runtime: a 20-line executor that parks its thread awaits a handle, a map and a
/// stream; each is woken from another thread (the one that received the result), so
/// the executor's thread slept instead of waiting inside `poll`.
#[test]
fn any_executor_can_await_handles_and_streams() {
    isolated(DEADLINE, || {
        let pool = Pool::builder().procs(2).build().unwrap();
        let me = std::thread::current().id();

        // The task cannot end before the first poll has found it pending (it waits
        // for a gate opened then), so the result must come by a wake.
        let first = gate("submit");
        let (value, woken_by) = block_on(pool.submit(after_gate, (first.clone(), 100)), || {
            open_gate(&first)
        });
        close_gate(&first);
        assert_eq!(value.unwrap(), 100);
        assert!(!woken_by.is_empty(), "ready without a wake: poll waited");
        assert!(woken_by.iter().all(|t| *t != me), "woken by its own thread");

        let (values, woken_by) = block_on(pool.map_async(sleep_ms, [60, 30, 0]), || ());
        let values: Vec<u64> = values.into_iter().map(Result::unwrap).collect();
        assert_eq!(values, [60, 30, 0]);
        assert!(woken_by.iter().all(|t| *t != me));

        let second = gate("stream");
        let inputs = [50, 0, 25].map(|ms| (second.clone(), ms));
        let (values, woken_by) = block_on(
            async {
                let mut s = pool.imap(after_gate, inputs).into_stream();
                let mut out = Vec::new();
                while let Some(v) =
                    std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut s), cx))
                        .await
                {
                    out.push(v.unwrap());
                }
                out
            },
            || open_gate(&second),
        );
        close_gate(&second);
        assert_eq!(values, [50, 0, 25]);
        assert!(!woken_by.is_empty() && woken_by.iter().all(|t| *t != me));

        let ((), _) = block_on(pool.join_async(), || ());
        drop(pool);
    });
}

/// `(&mut handle)` under a timeout that fires first leaves the handle usable, and
/// dropping an awaited handle does not cancel its task (as with the blocking handle).
#[test]
fn a_handle_outlives_a_timed_out_await_and_drop_does_not_cancel() {
    isolated(DEADLINE, || {
        let pool = Pool::builder().procs(1).build().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut h = pool.submit(sleep_ms, 200);
            let early = tokio::time::timeout(Duration::from_millis(20), &mut h).await;
            assert!(early.is_err(), "a 200 ms task done in 20 ms");
            assert_eq!(h.await.unwrap(), 200);

            // Dropped while running: the task still runs to its end, and the worker
            // takes the next one only after it.
            let dropped = pool.submit(sleep_ms, 150);
            let _ = tokio::time::timeout(Duration::from_millis(10), dropped).await;
            let t = Instant::now();
            assert_eq!(pool.submit(square, 4).await.unwrap(), 16);
            assert!(
                t.elapsed() >= Duration::from_millis(100),
                "{:?}",
                t.elapsed()
            );
            assert!(pool.stats().done >= 3);
        });
        rt.block_on(pool.join_async());
    });
}

/// Handles, an `imap` stream, a map and the shutdown are `Send`: tasks spawned on a
/// multi-thread runtime own them and await them on its worker threads.
#[test]
fn spawned_tasks_on_a_multi_thread_runtime_own_handles_and_streams() {
    isolated(DEADLINE, || {
        let pool = Arc::new(Pool::builder().procs(2).build().unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let results = rt.block_on(async {
            let mut tasks = Vec::new();
            for i in 0..8u64 {
                let handle = pool.submit(square, i);
                tasks.push(tokio::spawn(async move { vec![handle.await.unwrap()] }));
            }
            let stream = pool.imap(square, 10..14u64).into_stream();
            tasks.push(tokio::spawn(async move {
                stream.map(Result::unwrap).collect::<Vec<u64>>().await
            }));
            let map = pool.map_async(square, [20u64, 21]);
            tasks.push(tokio::spawn(async move {
                map.await.into_iter().map(Result::unwrap).collect()
            }));
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            let shutdown = pool.join_async();
            tokio::spawn(shutdown).await.unwrap();
            out
        });
        let expected: Vec<Vec<u64>> = (0..8u64)
            .map(|i| vec![i * i])
            .chain([vec![100, 121, 144, 169], vec![400, 441]])
            .collect();
        assert_eq!(results, expected);
    });
}

/// A stream dropped before its end drops the inputs that have not started, as the
/// `imap` iterator does: only the calls already running finish.
#[test]
fn a_dropped_stream_forgets_its_unstarted_inputs() {
    isolated(DEADLINE, || {
        let pool = Pool::builder().procs(2).build().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut s = pool.imap_unordered(sleep_ms, vec![50u64; 40]).into_stream();
            assert_eq!(s.next().await.unwrap().unwrap(), 50);
            assert_eq!(s.next().await.unwrap().unwrap(), 50);
            drop(s);
            pool.join_async().await;
        });
        let done = pool.stats().done;
        // 2 taken, at most one more round running on each worker, and what had been
        // claimed with it; not the 40 submitted.
        assert!((2..=8).contains(&done), "{done} of 40 ran");
    });
}

/// Panics in its process, for the failure case of an awaited join.
fn boom(_: ()) -> u32 {
    panic!("boom")
}
supervisor::task!(boom);

/// A `Process` awaited on the runtime's only thread: three of 200 ms in a row, joined
/// with `join_async`, while the ticker ticks; the values, a typed error for a panic,
/// `exitcode` afterwards, and a second join is `AlreadyJoined`.
#[test]
fn an_awaited_process_join_leaves_the_runtime_thread_free() {
    isolated(DEADLINE, || {
        let (rt, ticks) = ticking_runtime();
        let t = Instant::now();
        let (values, during) = ticks_during(&rt, &ticks, async {
            let mut values = Vec::new();
            for _ in 0..3 {
                let mut p = supervisor::Process::builder(sleep_ms, 200).start().unwrap();
                values.push(p.join_async().await.unwrap());
                assert_eq!(p.exitcode(), Some(0));
                let again = p.join_async().await.unwrap_err();
                assert!(
                    matches!(again.kind(), ErrorKind::AlreadyJoined { .. }),
                    "{again}"
                );
            }
            values
        });
        let took = t.elapsed();
        assert_eq!(values, vec![200; 3]);
        assert!(during >= 30, "only {during} ticks in {took:?}");
        let mut p = supervisor::Process::builder(boom, ()).start().unwrap();
        let e = rt.block_on(p.join_async()).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Panicked { .. }), "{e}");
    });
}

/// An awaited join given up on (a timeout drops the future) cancels nothing: the
/// process runs on, and a later blocking `join` takes over and gets the value.
#[test]
fn a_dropped_process_join_is_taken_over_by_the_next_join() {
    isolated(DEADLINE, || {
        let (rt, _) = ticking_runtime();
        let mut p = supervisor::Process::builder(sleep_ms, 300).start().unwrap();
        let early = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(50), p.join_async()).await
        });
        assert!(early.is_err(), "the 300 ms task cannot be done at 50 ms");
        assert!(p.is_alive());
        assert_eq!(p.join().unwrap(), 300);
        assert_eq!(p.exitcode(), Some(0));
        // And a later awaited join takes over as well.
        let mut q = supervisor::Process::builder(sleep_ms, 300).start().unwrap();
        let early = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(50), q.join_async()).await
        });
        assert!(early.is_err());
        assert_eq!(rt.block_on(q.join_async()).unwrap(), 300);
    });
}
