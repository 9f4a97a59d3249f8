//! A worker that writes hostile bytes into its own result channel: the parent reports a
//! protocol error for that worker, kills it, fails its task, and never panics, hangs or
//! allocates what the peer announces.
//!
//! The raw packets imitate ipc-channel 0.23.1's framing (see
//! `supervisor_worker::packet`): a header of two native-endian `usize`s, the packet's
//! length and the message's, then the data, descriptors attached with `SCM_RIGHTS`.

mod common;

use std::os::fd::RawFd;
use std::time::Duration;

use common::each_method;
use supervisor::{Error, ErrorKind, Pool, Process};
use supervisor_worker::protocol::{FromChild, TaskOutcome};
use supervisor_worker::{codec, fault};

const DEADLINE: Duration = Duration::from_secs(60);

/// Writes an ipc-channel first-fragment header announcing `total` bytes, followed by
/// `data`, on every socket this worker holds (one of them is its result channel).
fn write_raw_frame(total: u64, data: &[u8]) {
    send_raw_packet(&raw_packet(16 + data.len() as u64, total, data), None);
}

/// A raw packet: header (`packet` and `total` as the two words), then `data`.
fn raw_packet(packet: u64, total: u64, data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&packet.to_ne_bytes());
    frame.extend_from_slice(&total.to_ne_bytes());
    frame.extend_from_slice(data);
    frame
}

/// The sockets this process holds.
fn own_sockets() -> Vec<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|entry| {
            std::fs::read_link(entry.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
        })
        .filter_map(|entry| entry.file_name().to_string_lossy().parse().ok())
        .collect()
}

/// A connected `SOCK_SEQPACKET` pair, as ipc-channel's channels are.
fn socket_pair() -> (RawFd, RawFd) {
    let mut fds = [-1; 2];
    // SAFETY: socketpair writes two descriptors into a live array of two.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()) };
    assert_eq!(r, 0, "socketpair failed");
    (fds[0], fds[1])
}

/// Sends `packet` as one packet, with `attach` attached (SCM_RIGHTS), on every socket
/// this worker held before (one of them is its result channel).
fn send_raw_packet(packet: &[u8], attach: Option<RawFd>) {
    for fd in own_sockets() {
        if Some(fd) == attach {
            continue;
        }
        // Only the result channel has to take it; what the others do does not matter.
        let _ = fault::send_raw_packet(fd, packet, attach);
    }
}

fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// Announces a 1 TiB message with a socket attached (which ipc-channel takes for the
/// channel of the remaining fragments, so it would reserve the whole 1 TiB at once),
/// then waits to be killed.
fn huge_length_with_a_descriptor(_: ()) -> u64 {
    let (ours, _theirs) = socket_pair();
    send_raw_packet(&raw_packet(24, 1 << 40, &[0u8; 8]), Some(ours));
    park_forever()
}
supervisor::task!(huge_length_with_a_descriptor);

/// A packet whose header claims 1,000 bytes but that has 24, then silence.
fn truncated_then_silent(_: ()) -> u64 {
    send_raw_packet(&raw_packet(1000, 984, &[0u8; 8]), None);
    park_forever()
}
supervisor::task!(truncated_then_silent);

/// The first fragment of a 4 KiB message, with the channel for the rest attached, then
/// the worker exits without sending the rest.
fn first_fragment_then_exit(_: ()) -> u64 {
    let (ours, _theirs) = socket_pair();
    send_raw_packet(&raw_packet(24, 4096, &[0u8; 8]), Some(ours));
    // SAFETY: _exit ends the process at once; nothing is left to clean up.
    unsafe { libc::_exit(3) }
}
supervisor::task!(first_fragment_then_exit);

/// An id no parent ever gives out.
const UNKNOWN_ID: u64 = u64::MAX - 7;

/// A well-formed answer for a task the parent never sent, then waits to be killed.
fn answer_for_an_unknown_task(_: ()) -> u64 {
    let done = FromChild::Done {
        id: UNKNOWN_ID,
        outcome: TaskOutcome::Returned {
            value: codec::encode(&5u64).unwrap_or_default(),
            error: None,
        },
        timing: Default::default(),
    };
    let data = codec::encode(&done).unwrap_or_default();
    // ipc-channel's envelope (postcard) of a `Frame`: `data` as length-prefixed bytes
    // (a LEB128 length), then no shared memory, no channels, no arena, not adopted, no
    // progress page.
    let mut envelope = Vec::new();
    let mut len = data.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            envelope.push(byte);
            break;
        }
        envelope.push(byte | 0x80);
    }
    envelope.extend_from_slice(&data);
    envelope.extend_from_slice(&[0, 0, 0, 0, 0]);
    write_raw_frame(envelope.len() as u64, &envelope);
    park_forever()
}
supervisor::task!(answer_for_an_unknown_task);

/// Announces a 1 TiB message with 8 bytes of data, then waits to be killed.
fn huge_length(_: ()) -> u64 {
    write_raw_frame(1 << 40, &[0u8; 8]);
    park_forever()
}
supervisor::task!(huge_length);

/// A well-framed message of garbage bytes, then waits to be killed.
fn garbage(_: ()) -> u64 {
    write_raw_frame(8, &[0xff; 8]);
    park_forever()
}
supervisor::task!(garbage);

fn square(x: u64) -> u64 {
    x * x
}
supervisor::task!(square);

#[test]
fn a_worker_announcing_a_huge_length_is_a_protocol_error() {
    each_method(DEADLINE, |method| {
        let mut p = Process::builder(huge_length, ())
            .start_method(method)
            .start()
            .unwrap();
        match p.join().map_err(Error::into_kind) {
            Err(ErrorKind::Protocol { pid, violation }) => {
                assert_eq!(pid, p.pid());
                let detail = supervisor_worker::error_chain(&violation);
                assert!(detail.contains("malformed"), "{detail}");
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
        assert_eq!(p.exitcode(), Some(-9), "the hostile worker was killed");
    });
}

#[test]
fn a_worker_sending_garbage_is_a_protocol_error() {
    each_method(DEADLINE, |method| {
        let mut p = Process::builder(garbage, ())
            .start_method(method)
            .start()
            .unwrap();
        let e = p.join().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Protocol { .. }), "{e:?}");
        assert_eq!(p.exitcode(), Some(-9));
    });
}

/// `p`'s worker sends something hostile: a protocol error that `says` something, and
/// the worker was killed.
fn expect_protocol_error(mut p: Process<u64>, says: &str) {
    match p.join().map_err(Error::into_kind) {
        Err(ErrorKind::Protocol { pid, violation }) => {
            assert_eq!(pid, p.pid());
            let detail = supervisor_worker::error_chain(&violation);
            assert!(detail.contains(says), "{detail}");
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert_eq!(p.exitcode(), Some(-9), "the hostile worker was killed");
}

#[test]
fn a_huge_length_with_a_descriptor_attached_is_refused_before_allocating() {
    each_method(DEADLINE, |method| {
        expect_protocol_error(
            Process::builder(huge_length_with_a_descriptor, ())
                .start_method(method)
                .start()
                .unwrap(),
            "malformed packet from peer: header announces a 1099511627776-byte message",
        );
    });
}

#[test]
fn a_truncated_packet_is_a_protocol_error_even_if_the_worker_stays_silent() {
    each_method(DEADLINE, |method| {
        expect_protocol_error(
            Process::builder(truncated_then_silent, ())
                .start_method(method)
                .start()
                .unwrap(),
            "header says the packet has 1000 bytes, it has 24",
        );
    });
}

#[test]
fn a_worker_that_exits_after_a_first_fragment_fails_its_task() {
    each_method(DEADLINE, |method| {
        let mut p = Process::builder(first_fragment_then_exit, ())
            .start_method(method)
            .start()
            .unwrap();
        let e = p.join().unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Exited { code: 3, .. }),
            "the worker's exit decides: {e:?}"
        );
        assert_eq!(p.exitcode(), Some(3));
    });
}

#[test]
fn an_answer_for_a_task_never_sent_is_a_protocol_error() {
    each_method(DEADLINE, |method| {
        expect_protocol_error(
            Process::builder(answer_for_an_unknown_task, ())
                .start_method(method)
                .start()
                .unwrap(),
            &format!("result {UNKNOWN_ID} does not match the task it runs"),
        );
    });
}

#[test]
fn hostile_frames_fail_only_their_task_in_a_pool() {
    each_method(DEADLINE, |method| {
        let pool = Pool::builder()
            .procs(2)
            .start_method(method)
            .grace(Duration::from_millis(200))
            .build()
            .unwrap();
        let e = pool.apply(huge_length, ()).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Protocol { .. }), "{e:?}");
        let e = pool.apply(garbage, ()).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Protocol { .. }), "{e:?}");
        match pool
            .apply(huge_length_with_a_descriptor, ())
            .map_err(Error::into_kind)
        {
            Err(ErrorKind::Protocol { violation, .. }) => {
                let detail = supervisor_worker::error_chain(&violation);
                assert!(detail.contains("1099511627776"), "{detail}")
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
        match pool
            .apply(truncated_then_silent, ())
            .map_err(Error::into_kind)
        {
            Err(ErrorKind::Protocol { violation, .. }) => {
                let detail = supervisor_worker::error_chain(&violation);
                assert!(detail.contains("it has 24"), "{detail}")
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
        match pool
            .apply(answer_for_an_unknown_task, ())
            .map_err(Error::into_kind)
        {
            Err(ErrorKind::Protocol { violation, .. }) => {
                let detail = supervisor_worker::error_chain(&violation);
                assert!(detail.contains(&UNKNOWN_ID.to_string()), "{detail}")
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
        let e = pool.apply(first_fragment_then_exit, ()).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Exited { code: 3, .. }),
            "{e:?}"
        );
        let values: Vec<u64> = pool
            .map(square, 0..100)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(values[99], 99 * 99);
        pool.join();
    });
}

// ---- Handles decoded from hostile bytes (issue 18) ----
//
// A handle's wire form (kind, role, id, where to open it) is bytes an embedder or a peer
// can change. Decoded as any handle type, in the process that has the object open or in
// another one, it is refused with `WrongHandle` unless it is of that type, and whatever
// is accepted stays inside its mapping.

use common::{isolated, Scenario, SCENARIOS};
use supervisor::{Event, Lock, Pipe, Queue, Semaphore, SharedMemory, SharedSlice};

/// `v` with field `key` set to `value`.
fn relabel(v: &serde_json::Value, key: &str, value: u64) -> serde_json::Value {
    let mut v = v.clone();
    v[key] = serde_json::json!(value);
    v
}

/// Which attack the `handle_attack` scenario runs.
const ATTACK_ENV: &str = "SUPERVISOR_TEST_HANDLE_ATTACK";

/// Prints `REFUSED <message>` for a refused decode; otherwise uses what was decoded (on
/// code without the checks, out of its mapping) and prints what it returned.
fn handle_attack_scenario() {
    let attack = std::env::var(ATTACK_ENV).unwrap_or_default();
    let refused = |e: serde_json::Error| println!("REFUSED {e}");
    match attack.as_str() {
        // A 14-byte shared memory read as a pipe: two 7-byte rings, smaller than a frame
        // header, with a frame announcing 0x10000051 bytes.
        "pipe-oob" => {
            let sm = SharedMemory::new(14).unwrap();
            let mut d = [0u8; 14];
            d[7] = 0x51;
            d[10] = 0x10;
            d[11..].copy_from_slice(&[0x55, 0x45, 0x55]);
            sm.write(0, &d);
            let wire = relabel(&serde_json::to_value(&sm).unwrap(), "kind", 2);
            match serde_json::from_value::<Pipe<u8, Vec<u8>>>(wire) {
                Ok(p) => println!("ACCEPTED {:?}", p.recv_timeout(Duration::from_millis(100))),
                Err(e) => refused(e),
            }
        }
        // The same, sending through the other end: a tail set so the used-bytes sum
        // wraps and the copy passes the room check.
        "pipe-oob-write-1m" | "pipe-oob-write-2000" => {
            let n = if attack.ends_with("1m") {
                1 << 20
            } else {
                2000
            };
            let msg = vec![0xABu8; n];
            let enc = codec::encode(&msg).unwrap().len() as u64;
            let need = 8 + enc.div_ceil(8) * 8;
            let sm = SharedMemory::new(14).unwrap();
            sm.write(0, &0u64.wrapping_sub(need).to_le_bytes());
            let wire = relabel(&serde_json::to_value(&sm).unwrap(), "kind", 2);
            match serde_json::from_value::<Pipe<Vec<u8>, u8>>(relabel(&wire, "role", 1)) {
                Ok(p) => println!("ACCEPTED {:?}", p.send(&msg)),
                Err(e) => refused(e),
            }
        }
        // A 1-byte shared memory as a pipe: rings of 0 bytes.
        "pipe-div0" => {
            let sm = SharedMemory::new(1).unwrap();
            sm.write(0, &[0xff]);
            let wire = relabel(&serde_json::to_value(&sm).unwrap(), "kind", 2);
            match serde_json::from_value::<Pipe<u8, u8>>(wire) {
                Ok(p) => println!("ACCEPTED {:?}", p.try_recv()),
                Err(e) => refused(e),
            }
        }
        other => panic!("no attack {other}"),
    }
}

#[linkme::distributed_slice(SCENARIOS)]
static HANDLE_ATTACK: Scenario = Scenario {
    name: "handle_attack",
    run: handle_attack_scenario,
};

/// Runs `attack` in a child process: it must exit normally (not by a signal, not by a
/// panic) with the relabelled handle refused as a pipe.
fn attack_is_refused(attack: &'static str) {
    isolated(DEADLINE, move || {
        let out = common::scenario("handle_attack")
            .env(ATTACK_ENV, attack)
            .output()
            .expect("run the scenario");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{attack}: the child ended with {:?}\n{stdout}\n{stderr}",
            out.status
        );
        assert!(
            stdout.contains("REFUSED pipe handle refused: it names a shared memory"),
            "{attack}: {stdout}{stderr}"
        );
    });
}

#[test]
fn a_shared_memory_relabelled_as_a_pipe_is_refused_not_read_out_of_bounds() {
    attack_is_refused("pipe-oob");
}

#[test]
fn a_shared_memory_relabelled_as_a_pipe_is_refused_not_written_out_of_bounds() {
    attack_is_refused("pipe-oob-write-1m");
    attack_is_refused("pipe-oob-write-2000");
}

#[test]
fn a_one_byte_shared_memory_relabelled_as_a_pipe_is_refused_not_a_panic() {
    attack_is_refused("pipe-div0");
}

/// The wire form of `h`, checked to decode as its own type (which also counts the
/// handle as arrived: a handle serialised and never opened is kept open for a while,
/// and the leak check would see it).
fn wire<T: serde::Serialize + serde::de::DeserializeOwned>(h: &T) -> serde_json::Value {
    let v = serde_json::to_value(h).unwrap();
    let _same: T = serde_json::from_value(v.clone()).expect("a genuine handle decodes");
    v
}

/// The message of decoding `wire` as a `T`, which must fail.
fn refusal<T: serde::de::DeserializeOwned>(wire: serde_json::Value) -> String {
    match serde_json::from_value::<T>(wire) {
        Ok(_) => panic!("decoded as {}", std::any::type_name::<T>()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn handles_of_other_types_are_refused_in_the_process_that_holds_them() {
    isolated(DEADLINE, || {
        let s = SharedSlice::<u8>::new(3).unwrap();
        let m = refusal::<SharedSlice<u64>>(wire(&s));
        assert_eq!(
            m,
            "shared memory handle refused: it was made for other message or element types"
        );
        let m = refusal::<SharedMemory>(wire(&s));
        assert!(m.contains("other message or element types"), "{m}");

        let q = Queue::<u64>::new().unwrap();
        q.put(&7).unwrap();
        let m = refusal::<Queue<String>>(wire(&q));
        assert!(m.contains("other message or element types"), "{m}");
        assert_eq!(q.try_get().unwrap(), Some(7), "the queue is untouched");

        let e = Event::new().unwrap();
        let m = refusal::<Semaphore>(relabel(&wire(&e), "kind", 6));
        assert_eq!(m, "semaphore handle refused: it names an event");
        let m = refusal::<Semaphore>(wire(&e));
        assert_eq!(m, "semaphore handle refused: it names an event");

        let sm = SharedMemory::new(64).unwrap();
        let m = refusal::<Lock>(relabel(&wire(&sm), "kind", 4));
        assert_eq!(m, "lock handle refused: it names a shared memory");
        let m = refusal::<Lock>(relabel(&wire(&sm), "kind", 99));
        assert_eq!(
            m,
            "lock handle refused: it names an object of unknown kind 99"
        );

        // Role 1 of a queue (which has one role): a holder of its own, of no one's
        // messages, that waited out get timeouts instead of seeing nobody else holds it.
        let m = refusal::<Queue<u64>>(relabel(&wire(&q), "role", 1));
        assert_eq!(m, "queue handle refused: role 1 (a queue has only role 0)");
        // A pipe's end decodes with its own types only: end 0 of a `Pipe<u64, String>`
        // is not a `Pipe<String, u64>` (end 1 is).
        let (a, b) = Pipe::<u64, String>::new().unwrap();
        let m = refusal::<Pipe<String, u64>>(wire(&a));
        assert!(m.contains("other message or element types"), "{m}");
        let m = refusal::<Pipe<u64, String>>(wire(&b));
        assert!(m.contains("other message or element types"), "{m}");
        let (a, _b) = Pipe::<u8, u8>::new().unwrap();
        let m = refusal::<Pipe<u8, u8>>(relabel(&wire(&a), "role", 2));
        assert_eq!(m, "pipe handle refused: role 2 (a pipe has roles 0 and 1)");
    });
}

/// Handle types a wire is decoded as in the property tests.
const TARGETS: u8 = 9;

/// Decodes `wire` as target type `target`; if accepted, uses the handle over the
/// whole of what it says it is (every call must stay inside its mapping and return,
/// an error at most). Whether it was accepted.
fn decode_and_use(target: u8, wire: serde_json::Value) -> bool {
    fn decoded<T: serde::de::DeserializeOwned>(wire: serde_json::Value) -> Option<T> {
        serde_json::from_value(wire).ok()
    }
    let short = Duration::from_millis(1);
    match target {
        0 => decoded::<SharedMemory>(wire).map(|m| {
            let mut buf = vec![0u8; m.len()];
            m.read(0, &mut buf);
            m.write(0, &buf);
        }),
        1 => decoded::<SharedSlice<u8>>(wire).map(|s| {
            if let Some(last) = s.len().checked_sub(1) {
                s.set(last, s.get(last));
            }
        }),
        2 => decoded::<SharedSlice<u64>>(wire).map(|s| {
            if let Some(last) = s.len().checked_sub(1) {
                s.set(last, s.get(last));
            }
        }),
        3 => decoded::<Queue<u64>>(wire).map(|q| {
            let _ = q.try_put(&1);
            let _ = q.try_get();
            let _ = q.get_timeout(short);
        }),
        4 => decoded::<Queue<String>>(wire).map(|q| {
            let _ = q.try_put(&"x".repeat(3000));
            let _ = q.try_get();
        }),
        5 => decoded::<Pipe<Vec<u8>, Vec<u8>>>(wire).map(|p| {
            let _ = p.send(&vec![7u8; 2000]);
            let _ = p.try_recv();
            let _ = p.recv_timeout(short);
        }),
        6 => decoded::<Lock>(wire).map(|l| {
            let _ = l.try_lock().map(|g| g.map(|g| g.acquired()));
        }),
        7 => decoded::<Event>(wire).map(|e| {
            let _ = e.is_set();
            let _ = e.wait_timeout(short);
        }),
        _ => decoded::<Semaphore>(wire).map(|s| {
            let _ = s.try_acquire();
        }),
    }
    .is_some()
}

/// One handle of each type, `size` choosing the length of the shared memory ones, and
/// its wire form (decoded once to count it as arrived, see [`wire`]).
type Made = (Box<dyn std::any::Any>, serde_json::Value);

fn make(source: u8, size: usize) -> Made {
    fn boxed<T: serde::Serialize + serde::de::DeserializeOwned + 'static>(h: T) -> Made {
        let w = wire(&h);
        (Box::new(h), w)
    }
    match source {
        0 => boxed(SharedMemory::new(size).unwrap()),
        1 => boxed(SharedSlice::<u8>::new(size).unwrap()),
        2 => boxed(SharedSlice::<u64>::new(size).unwrap()),
        3 => boxed(Queue::<u64>::new().unwrap()),
        4 => boxed(Queue::<String>::new().unwrap()),
        5 => {
            let (a, b) = Pipe::<Vec<u8>, Vec<u8>>::new().unwrap();
            let w = wire(&a);
            (Box::new((a, b)), w)
        }
        6 => boxed(Lock::new().unwrap()),
        7 => boxed(Event::new().unwrap()),
        _ => boxed(Semaphore::new(1).unwrap()),
    }
}

/// A relabelling of a wire: its kind, its role, and optionally a source's descriptor.
#[derive(Debug, Clone)]
struct Relabel {
    kind: u64,
    role: u64,
    fd_delta: Option<i64>,
}

fn relabelled(w: &serde_json::Value, r: &Relabel) -> serde_json::Value {
    let mut w = relabel(&relabel(w, "kind", r.kind), "role", r.role);
    if let (Some(d), Some(fd)) = (r.fd_delta, w["sources"][0][1].as_i64()) {
        w["sources"][0][1] = serde_json::json!(fd + d);
    }
    w
}

/// Whether a handle of type `source` relabelled by `r` must decode as `target`: only
/// as its own type, with its own kind and a role of that kind; in another process also
/// only from its own descriptor (in its own process the open region is found by id).
fn must_accept(source: u8, target: u8, r: &Relabel, elsewhere: bool) -> bool {
    let (kind, roles) = match source {
        0..=2 => (3, 1),
        3 | 4 => (1, 1),
        5 => (2, 2),
        6 => (4, 1),
        7 => (5, 1),
        _ => (6, 1),
    };
    source == target
        && r.kind == kind
        && r.role < roles
        && (!elsewhere || matches!(r.fd_delta, None | Some(0)))
}

fn relabels() -> impl proptest::strategy::Strategy<Value = Relabel> {
    use proptest::prelude::*;
    (0u64..8, 0u64..3, proptest::option::of(-3i64..4)).prop_map(|(kind, role, fd_delta)| Relabel {
        kind,
        role,
        fd_delta,
    })
}

/// Sizes around the ones a relabelled ring would break on (under a frame header, under
/// a pipe's minimum, odd) and larger ones.
fn sizes() -> impl proptest::strategy::Strategy<Value = usize> {
    use proptest::prelude::*;
    prop_oneof![0usize..200, 4000usize..4200, Just(1 << 20)]
}

/// Decodes random relabellings of real handles in this process (the region is open
/// here already), in a child process so that a signal shows as one.
fn relabel_property_scenario() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let accepted = std::cell::Cell::new(0u32);
    runner
        .run(
            &(0u8..TARGETS, sizes(), relabels(), 0u8..TARGETS),
            |(source, size, r, target)| {
                let (_keep, w) = make(source, size);
                let ok = decode_and_use(target, relabelled(&w, &r));
                accepted.set(accepted.get() + u32::from(ok));
                prop_assert_eq!(ok, must_accept(source, target, &r, false), "{:?}", r);
                Ok(())
            },
        )
        .unwrap();
    println!("DONE {} accepted", accepted.get());
}

#[linkme::distributed_slice(SCENARIOS)]
static RELABEL_PROPERTY: Scenario = Scenario {
    name: "relabel_property",
    run: relabel_property_scenario,
};

#[test]
fn random_relabellings_of_handles_decoded_in_their_own_process_are_refused_or_work() {
    isolated(DEADLINE, || {
        let out = common::scenario("relabel_property")
            .output()
            .expect("run the scenario");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("DONE"),
            "the child ended with {:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Decodes each `(target, wire)` in this (another) process and uses what is accepted:
/// how many were.
fn decode_relabelled(wires: Vec<(u8, String)>) -> u32 {
    wires
        .into_iter()
        .filter(|(target, w)| decode_and_use(*target, serde_json::from_str(w).unwrap()))
        .count() as u32
}
supervisor::task!(decode_relabelled);

#[test]
fn random_relabellings_of_handles_decoded_in_another_process_are_refused_or_work() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    isolated(DEADLINE, || {
        let mut runner = TestRunner::deterministic();
        let mut keep = Vec::new();
        let mut wires = Vec::new();
        let mut expected = 0;
        for source in 0..TARGETS {
            let size = sizes().new_tree(&mut runner).unwrap().current();
            let (h, w) = make(source, size);
            keep.push(h);
            for target in 0..TARGETS {
                let r = relabels().new_tree(&mut runner).unwrap().current();
                wires.push((target, relabelled(&w, &r).to_string()));
                expected += u32::from(must_accept(source, target, &r, true));
                // The genuine wire too: it must be accepted there.
                wires.push((source, w.to_string()));
                expected += 1;
            }
            // Role 1, which only a pipe has.
            wires.push((source, relabel(&w, "role", 1).to_string()));
            expected += u32::from(source == 5);
        }
        let accepted = Process::builder(decode_relabelled, wires)
            .start()
            .unwrap()
            .join()
            .expect("the child decodes and uses them without a signal or a panic");
        assert_eq!(accepted, expected);
        drop(keep);
    });
}

#[test]
fn a_refused_handle_in_a_message_reads_once_in_words() {
    isolated(DEADLINE, || {
        let q = Queue::<u64>::new().unwrap();
        let bytes = codec::encode(&q).unwrap();
        let e = codec::decode::<Queue<String>>(&bytes).unwrap_err();
        let _same: Queue<u64> = codec::decode(&bytes).unwrap();
        let said = supervisor_worker::error_chain(&e);
        assert!(
            said.ends_with(
                ": queue handle refused: it was made for other message or element types"
            ) && !said.contains("OtherString"),
            "{said}"
        );
        // And each `source()` on its own, as a program walking the chain prints them
        // (before, the last one was bincode's Debug text: `OtherString("...")`).
        let mut causes = Vec::new();
        let mut cause: Option<&dyn std::error::Error> = Some(&e);
        while let Some(c) = cause {
            causes.push(c.to_string());
            cause = c.source();
        }
        assert!(
            causes
                .iter()
                .all(|c| !c.contains("OtherString") && !c.contains("(\""))
                && causes
                    .last()
                    .is_some_and(|c| c.starts_with("queue handle refused")),
            "{causes:?}"
        );
    });
}

#[test]
fn absurd_sizes_name_the_limit_they_are_over() {
    isolated(DEADLINE, || {
        for len in [usize::MAX, usize::MAX / 8] {
            let e = SharedSlice::<u64>::new(len).unwrap_err();
            let ErrorKind::TooManyElements {
                requested, limit, ..
            } = *e.kind()
            else {
                panic!("{e:?}");
            };
            assert_eq!(requested, len as u64);
            assert!(limit < requested && limit > (1 << 42), "{e}");
            assert_eq!(
                e.to_string(),
                format!(
                    "a shared memory of {len} elements of 8 bytes is over the limit of {limit} elements"
                )
            );
        }
        let e = SharedMemory::new(1 << 46).unwrap_err();
        let ErrorKind::TooLarge {
            requested, limit, ..
        } = *e.kind()
        else {
            panic!("{e:?}");
        };
        assert!(limit < requested, "{e}");
        // The limit named is the largest that works (the rest is the object's header).
        assert_eq!(
            SharedSlice::<u64>::new(limit as usize / 8 + 1)
                .unwrap_err()
                .to_string(),
            format!(
                "a shared memory of {} elements of 8 bytes is over the limit of {} elements",
                limit / 8 + 1,
                limit / 8
            )
        );
    });
}

#[test]
fn a_handle_naming_processes_that_do_not_have_it_names_one_process_and_its_descriptor() {
    isolated(DEADLINE, || {
        let sm = SharedMemory::new(4096).unwrap();
        let mut w = wire(&sm);
        let me = std::process::id();
        w["sources"] = serde_json::json!([[1, 5], [me, 2]]);
        w["id"] = serde_json::json!(vec![1u8; 16]);
        let m = refusal::<SharedMemory>(w);
        assert_eq!(
            m,
            format!(
                "cannot open the shared memory shared by process {me}: descriptor 2 of process \
                 {me} is not this shared memory (not a sealed memory file)"
            )
        );
    });
}
