//! Every API's values and order, worker stats, an unregistered task, a chunked map that
//! keeps every outcome in its place, and an absurd number of workers.

use super::*;

#[test]
fn every_api_returns_the_right_values_in_the_right_order() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 2).build().unwrap();
        let expected: Vec<u64> = (0..200).map(|x| x * x).collect();
        let map: Vec<u64> = pool
            .map(square, 0..200)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(map, expected);
        let chunked: Vec<u64> = pool
            .map_chunked(square, 0..200, 7)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(chunked, expected);
        let imap: Vec<u64> = pool.imap(square, 0..200).map(Result::unwrap).collect();
        assert_eq!(imap, expected);
        let imap_chunked: Vec<u64> = pool
            .imap_with(square, 0..200, 16, true)
            .map(Result::unwrap)
            .collect();
        assert_eq!(imap_chunked, expected);
        // Unordered: completion order, but every value exactly once. A slow first
        // input finishes after later ones.
        let unordered: Vec<u64> = pool
            .imap_unordered(sleep_ms, vec![300, 1, 2, 3])
            .map(Result::unwrap)
            .collect();
        assert_eq!(unordered.len(), 4);
        assert_eq!(unordered.last(), Some(&300), "{unordered:?}");
        let starmap: Vec<u64> = pool
            .starmap(add, vec![(1, 2), (10, 20), (100, 200)])
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(starmap, vec![3, 30, 300]);
        assert_eq!(pool.apply(square, 9).unwrap(), 81);
        let handles: Vec<_> = (0..10).map(|x| pool.apply_async(square, x)).collect();
        let values: Vec<u64> = handles.iter().map(|h| h.wait().unwrap()).collect();
        assert_eq!(values, (0..10).map(|x| x * x).collect::<Vec<_>>());
        let e = handles[0].wait().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::ResultTaken { .. }), "{e:?}");
        let h = pool.submit(sleep_ms, 200);
        assert!(h.wait_timeout(Duration::from_millis(10)).is_none());
        assert!(!h.is_ready());
        assert_eq!(
            h.wait_timeout(Duration::from_secs(30)).unwrap().unwrap(),
            200
        );
        let order: Vec<u64> =
            as_completed(vec![pool.submit(sleep_ms, 400), pool.submit(sleep_ms, 1)])
                .map(|h| h.wait().unwrap())
                .collect();
        assert_eq!(order, vec![1, 400]);
        let async_map = pool.map_async(square, 0..50);
        assert_eq!(
            async_map
                .wait()
                .into_iter()
                .map(Result::unwrap)
                .collect::<Vec<_>>(),
            (0..50).map(|x| x * x).collect::<Vec<_>>()
        );
        // A task returning Err: the typed caller gets the Err value; stats count it.
        assert_eq!(pool.apply(parse, "12".into()).unwrap(), Ok(12));
        let err = pool.apply(parse, "x".into()).unwrap().unwrap_err();
        assert!(err.contains("invalid digit"), "{err}");
        let stats = pool.stats();
        assert_eq!(stats.failed, 1, "{stats:?}");
        let at_least = 200 * 4 + 3 + 1 + 10 + 1 + 2 + 50 + 1;
        assert!(stats.done >= at_least, "{stats:?}");
        pool.join();
    });
}

#[test]
fn stats_report_every_worker() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 2).build().unwrap();
        let fifo = Fifo::new();
        let busy = pool.apply_async(announce_and_sleep, (fifo.path(), 100));
        let pid = fifo.read_pid() as u32;
        let stats = pool.stats();
        let w = stats
            .workers
            .iter()
            .find(|w| w.pid == pid)
            .expect("busy worker listed");
        assert!(
            matches!(&w.state, WorkerState::Busy { task, job } if task == "announce_and_sleep" && *job == busy.id())
        );
        assert!(w.rss_kib > 0);
        assert_eq!(stats.running, 1);
        busy.wait().unwrap();
        pool.join();
    });
}

#[test]
fn an_unregistered_task_fails_every_input_lazily() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 1).build().unwrap();
        // An endless input: each result is an error, produced as they are asked for.
        let errors: Vec<_> = pool.imap(unregistered, 0u64..).take(5).collect();
        assert_eq!(errors.len(), 5);
        for e in errors {
            let e = e.unwrap_err();
            assert!(e.to_string().contains("is not registered"), "{e}");
        }
        let e = pool.apply(unregistered, 1).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Registry(_)), "{e:?}");
        pool.join();
    });
}

/// A map travels in chunks (one buffer of arguments, one of results); every outcome
/// still lands at its input's position: values, returned errors, panics, an argument
/// that cannot be encoded, chunks split by recycling, and a map after close.
#[test]
fn a_chunked_map_keeps_every_outcome_in_its_place() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 2).build().unwrap();
        let out = pool.map_chunked(picky, 0..100u64, 8);
        assert_eq!(out.len(), 100);
        for (x, r) in (0u64..).zip(&out) {
            match (x % 10, r.as_ref().map_err(Error::kind)) {
                (3, Ok(Err(message))) => assert_eq!(message, &format!("{x} ends in 3")),
                (7, Err(ErrorKind::Panicked { message, .. })) => {
                    assert_eq!(message, &format!("{x} ends in 7"))
                }
                (_, Ok(Ok(v))) => assert_eq!(*v, x),
                other => panic!("input {x}: {other:?}"),
            }
        }
        let out = pool.map_chunked(fussy_square, (0..30).map(Fussy), 4);
        for (x, r) in (0u64..).zip(&out) {
            match r.as_ref().map_err(Error::kind) {
                Err(ErrorKind::EncodeArgument { task, .. }) if x == 13 => {
                    assert_eq!(task, "fussy_square")
                }
                Ok(v) if x != 13 => assert_eq!(*v, x * x),
                other => panic!("input {x}: {other:?}"),
            }
        }
        let stats = pool.stats();
        assert_eq!((stats.done, stats.failed), (80 + 29, 20));
        pool.join();

        // Recycling after 5 tasks splits chunks of 8 and loses nothing.
        let recycled = crate::pool(method, 2)
            .max_tasks_per_child(5)
            .build()
            .unwrap();
        let out: Vec<u64> = recycled
            .map_chunked(square, 0..40u64, 8)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(out, (0..40u64).map(|x| x * x).collect::<Vec<_>>());
        recycled.close();
        let closed = recycled.map_chunked(square, 0..10u64, 4);
        assert!(closed.iter().all(|r| r
            .as_ref()
            .is_err_and(|e| matches!(e.kind(), ErrorKind::PoolClosed))));
        recycled.join();
    });
}

/// An absurd number of workers is an error from `build`, never a panic. Seen:
/// `procs(usize::MAX)` panics with "capacity overflow" (`src/pool/dispatcher/state.rs`,
/// a `Vec` of one seat per worker made at once); a merely huge count (a million)
/// would try to start that many workers.
#[test]
fn an_absurd_number_of_workers_is_an_error_not_a_panic() {
    isolated(DEADLINE, || {
        let built = std::panic::catch_unwind(|| {
            Pool::builder()
                .procs(usize::MAX)
                .build()
                .map(|_| ())
                .map_err(Error::into_kind)
        });
        match built {
            Ok(Err(ErrorKind::TooManyWorkers { asked, limit })) => {
                assert_eq!((asked, limit), (usize::MAX, supervisor::MAX_WORKERS));
            }
            Ok(Err(other)) => panic!("expected TooManyWorkers, got {other:?}"),
            Ok(Ok(())) => panic!("a pool of usize::MAX workers was built"),
            Err(_) => panic!("build panicked"),
        }
    });
}
