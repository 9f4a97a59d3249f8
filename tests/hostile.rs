//! A worker that writes hostile bytes into its own result channel: the parent reports a
//! protocol error for that worker, kills it, fails its task, and never panics.

mod common;

use std::time::Duration;

use common::each_method;
use supervisor::{Error, Pool, Process};

const DEADLINE: Duration = Duration::from_secs(60);

/// Writes an ipc-channel first-fragment header announcing `total` bytes, followed by
/// `data`, on every socket this worker holds (one of them is its result channel).
fn write_raw_frame(total: u64, data: &[u8]) {
    let mut frame = Vec::new();
    frame.extend_from_slice(&(16 + data.len() as u64).to_ne_bytes());
    frame.extend_from_slice(&total.to_ne_bytes());
    frame.extend_from_slice(data);
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if is_socket {
            // SAFETY: writes a live buffer to a descriptor this process owns.
            unsafe { libc::write(fd, frame.as_ptr().cast(), frame.len()) };
        }
    }
}

/// Announces a 1 TiB message with 8 bytes of data, then waits to be killed.
fn huge_length(_: ()) -> u64 {
    write_raw_frame(1 << 40, &[0u8; 8]);
    loop {
        std::thread::park();
    }
}
supervisor::task!(huge_length);

/// A well-framed message of garbage bytes, then waits to be killed.
fn garbage(_: ()) -> u64 {
    write_raw_frame(8, &[0xff; 8]);
    loop {
        std::thread::park();
    }
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
        match p.join() {
            Err(Error::Protocol { pid, detail }) => {
                assert_eq!(pid, p.pid());
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
        assert!(matches!(p.join(), Err(Error::Protocol { .. })));
        assert_eq!(p.exitcode(), Some(-9));
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
        assert!(matches!(
            pool.apply(huge_length, ()),
            Err(Error::Protocol { .. })
        ));
        assert!(matches!(
            pool.apply(garbage, ()),
            Err(Error::Protocol { .. })
        ));
        let values: Vec<u64> = pool
            .map(square, 0..100)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(values[99], 99 * 99);
        pool.join();
    });
}
