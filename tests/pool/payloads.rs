//! Big arguments and results: they travel whole, one over the size limit is refused at
//! once without a copy, and a big round trip costs the caller about two payloads.

use super::*;

#[test]
fn big_arguments_and_results_travel_whole() {
    each_method(DEADLINE, |method| {
        let pool = pool(method, 2).build().unwrap();
        let payload: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 251) as u8).collect();
        let mut expected = payload.clone();
        expected.reverse();
        let handles: Vec<_> = (0..4)
            .map(|_| pool.apply_async(echo_bytes, serde_bytes::ByteBuf::from(payload.clone())))
            .collect();
        for h in handles {
            assert_eq!(h.wait().unwrap().into_vec(), expected);
        }
        pool.join();
    });
}

/// Arguments and results have one documented limit (`MAX_VALUE`, 960 MiB encoded): a
/// bigger argument is refused at submit, before anything is copied or sent; a bigger
/// result fails its task as unencodable, naming the limit, and the worker goes on.
/// (Before: a 1 GiB argument failed after 14 s as "exited with code 70", a 1 GiB
/// result was a protocol error and a worker restart.)
#[test]
fn a_value_over_the_size_limit_is_refused_at_once_and_harms_nothing() {
    each_method(SIZE_LIMIT_DEADLINE, |method| {
        const GIB: usize = 1 << 30;
        let limit = supervisor::MAX_VALUE;
        let pool = pool(method, 1).build().unwrap();
        let pid = pool
            .apply(square, 2)
            .map(|_| pool.stats().workers[0].pid)
            .unwrap();
        let started = Instant::now();
        let big = serde_bytes::ByteBuf::from(vec![0u8; GIB]);
        let e = pool.apply(echo_bytes, big).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        match e.kind() {
            ErrorKind::EncodeArgument { source, .. } => assert!(
                matches!(source, supervisor::CodecError::TooLarge { limit: l, .. } if *l == limit),
                "{source:?}"
            ),
            other => panic!("expected a refused argument, got {other:?}"),
        }
        let e = pool.apply(zeros, GIB as u64).unwrap_err();
        match e.kind() {
            ErrorKind::EncodeResult { message, .. } => {
                assert!(message.contains(&limit.to_string()), "{message}")
            }
            other => panic!("expected an unencodable result, got {other:?}"),
        }
        // Just under the limit still works, and the same worker carries on.
        let n = 100 << 20;
        let back = pool
            .apply(echo_bytes, serde_bytes::ByteBuf::from(vec![3u8; n]))
            .unwrap();
        assert_eq!(back.len(), n);
        assert!(back.iter().all(|b| *b == 3));
        assert_eq!(
            pool.stats().workers[0].pid,
            pid,
            "the worker was not replaced"
        );
        assert_eq!(pool.stats().restarts, 0);
        pool.join();
    });
}

/// Resets the peak RSS of `pid` to its current RSS, which it returns (KiB).
fn reset_peak(pid: &str) -> u64 {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("clear_refs");
    common::status_kib(pid, "VmRSS")
}

/// A plain `Vec<u8>` just over the limit, which bincode encodes one byte at a time, is
/// refused as soon as its encoding passes the limit, with at most 16 MiB of it stored:
/// the caller's peak RSS grows by a small part of the value, and the refusal comes
/// before the deadline. A result as big is refused in the worker the same way (its task
/// fails as unencodable, the same worker goes on). Before: the whole 960 MiB encoding
/// was built first, so the caller (or the worker) peaked at twice the value, and the
/// refusal took 5 s in a release build and longer here.
#[test]
fn a_plain_vec_over_the_size_limit_is_refused_without_a_copy() {
    // Far more than the 16 MiB the encoder stores first; far less than a copy.
    const BOUND_KIB: u64 = 256 << 10;
    isolated(SIZE_LIMIT_DEADLINE, || {
        let limit = supervisor::MAX_VALUE;
        let pool = pool(StartMethod::Spawn, 1).build().unwrap();
        let pid = pool
            .apply(square, 2)
            .map(|_| pool.stats().workers[0].pid)
            .unwrap();
        let big = vec![1u8; limit + 1];
        let before = reset_peak("self");
        let started = Instant::now();
        let e = pool.apply(echo_vec, big).unwrap_err();
        let took = started.elapsed();
        let grew = common::status_kib("self", "VmHWM").saturating_sub(before);
        eprintln!("argument refused in {took:?}, the caller's peak grew {grew} KiB");
        match e.kind() {
            ErrorKind::EncodeArgument { source, .. } => assert!(
                matches!(source, supervisor::CodecError::TooLarge { limit: l, .. } if *l == limit),
                "{source:?}"
            ),
            other => panic!("expected a refused argument, got {other:?}"),
        }
        assert!(
            grew < BOUND_KIB,
            "the caller's peak RSS grew {grew} KiB refusing a {limit}-byte argument"
        );
        let worker = pid.to_string();
        let before = reset_peak(&worker);
        let started = Instant::now();
        let e = pool.apply(ones, limit as u64 + 1).unwrap_err();
        let took = started.elapsed();
        let grew = common::status_kib(&worker, "VmHWM").saturating_sub(before);
        eprintln!("result refused in {took:?}, the worker's peak grew {grew} KiB");
        match e.kind() {
            ErrorKind::EncodeResult { message, .. } => {
                assert!(message.contains(&limit.to_string()), "{message}")
            }
            other => panic!("expected an unencodable result, got {other:?}"),
        }
        // The value itself, and no more than the bound on top.
        let value_kib = (limit as u64 + 1) >> 10;
        assert!(
            grew < value_kib + BOUND_KIB,
            "the worker's peak RSS grew {grew} KiB refusing a {limit}-byte result"
        );
        assert_eq!(
            pool.apply(echo_vec, vec![5u8; 1000]).unwrap(),
            vec![5u8; 1000]
        );
        assert_eq!(
            pool.stats().workers[0].pid,
            pid,
            "the worker was not replaced"
        );
        assert_eq!(pool.stats().restarts, 0);
        pool.join();
    });
}

/// A round trip of a big `ByteBuf` raises the caller's peak RSS by about twice the
/// payload over what it held before (the payload itself included): its argument is
/// dropped once encoded and the task's message is encoded straight into the shared
/// memory that carries it. Before: three times (the argument, its encoding, the
/// message's encoding and its copy in shared memory all at once).
#[test]
fn a_big_round_trip_costs_the_caller_about_two_payloads() {
    isolated(DEADLINE, || {
        let n = 100 << 20;
        let pool = pool(StartMethod::Spawn, 1).build().unwrap();
        pool.apply(square, 2).unwrap();
        let payload = serde_bytes::ByteBuf::from(vec![3u8; n]);
        let before = reset_peak("self");
        let back = pool.apply(echo_bytes, payload).unwrap();
        let grew = common::status_kib("self", "VmHWM").saturating_sub(before);
        eprintln!("a {n}-byte round trip grew the caller's peak by {grew} KiB");
        assert_eq!(back.len(), n);
        let payload_kib = n as u64 >> 10;
        assert!(
            grew < payload_kib * 5 / 2,
            "the caller's peak grew {grew} KiB for a {payload_kib} KiB payload"
        );
        pool.join();
    });
}
