//! Hostile bytes in a worker's result channel: protocol errors that kill the worker and fail its task, never a panic, a hang or an announced allocation.

use super::*;

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
