//! Many producers and consumers, exactly once; producers and consumers killed mid-put and mid-get lose nothing acknowledged.

use super::*;

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
