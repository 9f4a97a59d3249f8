//! Adversarial pass adv15 (issue 14): a pool broken for real while tasks run (every
//! call's record), and `map`/`imap` over inputs that panic, fail to serialise or are
//! huge.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use supervisor::{BrokenCall, StartMethod, WorkerState};

use super::*;
use common::wait_exit;

/// Exits the worker at start once `<dir>/storm` exists: every replacement dies in
/// its initializer.
fn exit_if_storm(dir: PathBuf) {
    if dir.join("storm").exists() {
        std::process::exit(7);
    }
}
supervisor::task!(exit_if_storm);

/// Appends `start ID PID` to `<dir>/log`, sleeps `ms`, appends `end ID`.
fn marked_sleep((dir, id, ms): (PathBuf, u64, u64)) -> u64 {
    let log = |line: String| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.join("log"))
            .expect("log opens");
        f.write_all(line.as_bytes()).expect("log written");
    };
    log(format!("start {id} {}\n", std::process::id()));
    std::thread::sleep(Duration::from_millis(ms));
    log(format!("end {id}\n"));
    id
}
supervisor::task!(marked_sleep);

fn echo(x: u64) -> u64 {
    x
}
supervisor::task!(echo);

fn byte_len(v: Vec<u8>) -> (usize, u8) {
    (v.len(), v.last().copied().unwrap_or(0))
}
supervisor::task!(byte_len);

/// A pool of 4 whose 3 busy workers run 30 s calls while 20 more wait: the idle worker is
/// SIGKILLed, its replacements exit in the initializer until the storm rule (the
/// default) breaks the pool. Every call has one record: the running ones stopped with
/// their pids, the waiting ones not started, and none starts after the break.
#[test]
fn a_storm_while_calls_run_and_wait_records_each_call_once() {
    for method in StartMethod::ALL {
        eprintln!("-- start method {method}");
        common::isolated_settling(
            Duration::from_secs(120),
            Duration::from_secs(30),
            move || storm_records(method),
        );
    }
}

fn storm_records(method: StartMethod) {
    {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let pool = Pool::builder()
            .procs(4)
            .start_method(method)
            .initializer(exit_if_storm, d.clone())
            .build()
            .unwrap();
        let running: Vec<_> = (0..3)
            .map(|id| pool.submit(marked_sleep, (d.clone(), id, 30_000)))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        let (busy, idle) = loop {
            let stats = pool.stats();
            let busy: Vec<u32> = stats
                .workers
                .iter()
                .filter(|w| matches!(w.state, WorkerState::Busy { .. }))
                .map(|w| w.pid)
                .collect();
            let idle: Vec<u32> = stats
                .workers
                .iter()
                .filter(|w| matches!(w.state, WorkerState::Idle))
                .map(|w| w.pid)
                .collect();
            if busy.len() == 3 && idle.len() == 1 {
                break (busy, idle[0]);
            }
            assert!(Instant::now() < deadline, "3 calls never ran: {stats:?}");
            std::thread::sleep(Duration::from_millis(5));
        };
        std::fs::write(dir.path().join("storm"), b"").unwrap();
        let (broke, broken) = std::sync::mpsc::channel();
        pool.when_broken(move |_| broke.send(()).unwrap());
        // SAFETY: kill with plain integers; the idle worker of this pool.
        unsafe { libc::kill(idle as i32, libc::SIGKILL) };
        let killed = Instant::now();
        wait_exit(idle as i32, Duration::from_secs(5));
        let waiting: Vec<_> = (3..23)
            .map(|id| pool.submit(marked_sleep, (d.clone(), id, 1)))
            .collect();
        broken
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the pool never broke");
        assert!(pool.broken().is_some());
        let broke_after = killed.elapsed();
        let log_at_break = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        for (id, h) in running.into_iter().enumerate() {
            let e = h
                .wait_timeout(Duration::from_secs(20))
                .expect("a running call ends with the pool")
                .unwrap_err();
            match e.kind() {
                ErrorKind::PoolBroken {
                    call: BrokenCall::Stopped { pid, .. },
                    ..
                } => assert!(busy.contains(pid), "call {id}: {e}"),
                other => panic!("call {id}: expected stopped, got {other:?}"),
            }
        }
        for (i, h) in waiting.into_iter().enumerate() {
            let e = h
                .wait_timeout(Duration::from_secs(20))
                .expect("a waiting call ends with the pool");
            match e {
                Err(e) => assert!(
                    matches!(
                        e.kind(),
                        ErrorKind::PoolBroken {
                            call: BrokenCall::NotStarted,
                            ..
                        }
                    ),
                    "call {}: {e:?}",
                    i + 3
                ),
                Ok(v) => panic!("call {v} ran on a broken pool"),
            }
        }
        pool.join();
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        let starts = log.lines().filter(|l| l.starts_with("start")).count();
        assert_eq!(log, log_at_break, "a call started after the break");
        assert_eq!(starts, 3, "{log}");
        eprintln!(
            "{method}: broke {broke_after:?} after the kill: {:?}",
            pool.broken()
        );
    }
}

/// An input type whose `Serialize` fails (or panics) for chosen values.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(transparent)]
struct Picky(u64);

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            13 => Err(serde::ser::Error::custom("thirteen")),
            666 => panic!("the devil's own input"),
            n => s.serialize_u64(n),
        }
    }
}

fn picky(p: Picky) -> u64 {
    p.0
}
supervisor::task!(picky);

/// The shared memories (memfds of this crate's objects) this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|l| l.to_string_lossy().starts_with("/memfd:supervisor-"))
        })
        .count()
}

fn shm_len(sm: SharedMemory) -> usize {
    sm.len()
}
supervisor::task!(shm_len);

/// Sends 20 shared memories (dropped by the caller once sent) to tasks of `pool`: once
/// the calls are done, their descriptors are closed again within 12 s (a handle kept
/// "in transit" goes after 10 s at most).
fn handles_let_go(pool: &Pool, after: &str) {
    // Every worker started and connected first.
    let warm: Vec<_> = pool.map_chunked(echo, 0..8u64, 1);
    assert!(warm.iter().all(|r| r.is_ok()), "{warm:?}");
    let before = open_fds();
    for _ in 0..20 {
        let sm = SharedMemory::new(1 << 16).unwrap();
        assert_eq!(pool.apply(shm_len, sm).unwrap(), 1 << 16);
    }
    let deadline = Instant::now() + Duration::from_secs(12);
    while open_fds() > before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let links: Vec<_> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .collect();
    assert_eq!(open_fds(), before, "memfds kept {after}: {links:?}");
}

/// `map` over an iterator that panics midway: the panic reaches the caller; the pool
/// still works after, and the thread's encoding state is not left behind (a handle
/// serialised later on the same thread is not kept alive by it).
#[test]
fn map_over_an_iterator_that_panics_leaves_nothing_behind() {
    isolated(DEADLINE, || {
        let pool = Pool::new(2).unwrap();
        handles_let_go(&pool, "(before anything)");
        let inputs = (0..100u64).inspect(|&i| assert!(i != 57, "input 57 is cursed"));
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.map_chunked(echo, inputs, 8)
        }));
        assert!(caught.is_err(), "the iterator's panic reached the caller");
        // The same through the lazy `imap`, ordered and not, mid-stream.
        for ordered in [true, false] {
            let inputs = (0..100u64).inspect(|&i| assert!(i != 57, "input 57 is cursed"));
            let mut seen = 0;
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for r in pool.imap_with(echo, inputs, 4, ordered) {
                    r.unwrap();
                    seen += 1;
                }
            }));
            assert!(caught.is_err(), "the iterator's panic reached the caller");
            assert!(seen <= 57, "{seen} results for 57 inputs");
        }
        let all = pool.map(echo, 0..50u64);
        let all: Vec<u64> = all.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(all, (0..50).collect::<Vec<_>>());
        // Shared memories sent to tasks from this thread afterwards are let go.
        handles_let_go(&pool, "after the iterator's panic");
        pool.join();
    });
}

/// `map`, `imap` and `imap_unordered` over inputs whose `Serialize` fails for one:
/// that input's result is an encode error, every other one is its own, in order.
#[test]
fn inputs_whose_serialize_fails_fail_alone() {
    isolated(DEADLINE, || {
        let pool = Pool::new(2).unwrap();
        let inputs = || (0..40u64).map(Picky);
        for chunk in [1, 3, 13, 14, 100] {
            let out = pool.map_chunked(picky, inputs(), chunk);
            assert_eq!(out.len(), 40, "chunk {chunk}");
            for (i, r) in out.into_iter().enumerate() {
                match r {
                    Ok(v) => assert_eq!(v, i as u64, "chunk {chunk}"),
                    Err(e) => {
                        assert_eq!(i, 13, "chunk {chunk}: {e}");
                        assert!(
                            matches!(e.kind(), ErrorKind::EncodeArgument { .. }),
                            "{e:?}"
                        );
                    }
                }
            }
        }
        let ordered: Vec<_> = pool.imap(picky, inputs()).collect();
        assert_eq!(ordered.len(), 40);
        for (i, r) in ordered.into_iter().enumerate() {
            assert_eq!(r.is_err(), i == 13, "imap {i}: {r:?}");
        }
        let mut unordered: Vec<_> = pool.imap_unordered(picky, inputs()).collect();
        assert_eq!(unordered.len(), 40);
        assert_eq!(unordered.iter().filter(|r| r.is_err()).count(), 1);
        unordered.retain(|r| r.is_ok());
        let mut got: Vec<u64> = unordered.into_iter().map(|r| r.unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..40).filter(|i| *i != 13).collect::<Vec<_>>());
        // A `Serialize` that panics: the panic reaches the caller, the pool works on.
        for ordered in [true, false] {
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.imap_with(picky, (660..670u64).map(Picky), 2, ordered)
                    .collect::<Vec<_>>()
            }));
            assert!(caught.is_err(), "the panic reached the caller");
        }
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.map_chunked(picky, (660..670u64).map(Picky), 2)
        }));
        assert!(caught.is_err(), "the panic reached the caller");
        assert_eq!(pool.apply(echo, 5).unwrap(), 5);
        handles_let_go(&pool, "after a panicking Serialize");
        pool.join();
    });
}

/// Huge inputs (48 MiB each) through `map` and `imap`: each result is its own.
#[test]
fn huge_inputs_through_map_and_imap() {
    common::isolated_settling(DEADLINE, Duration::from_secs(30), || {
        let pool = Pool::new(2).unwrap();
        let sizes = [0usize, 48 << 20, 1, 48 << 20, 5 << 20];
        let inputs = || sizes.iter().enumerate().map(|(i, n)| vec![i as u8 + 1; *n]);
        let want: Vec<(usize, u8)> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, if *n == 0 { 0 } else { i as u8 + 1 }))
            .collect();
        let got: Vec<_> = pool
            .map(byte_len, inputs())
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(got, want);
        let got: Vec<_> = pool.imap(byte_len, inputs()).map(|r| r.unwrap()).collect();
        assert_eq!(got, want);
        pool.join();
    });
}

/// `--results DIR` with an input longer than a file name may be: its directory's name
/// is cut to 255 bytes (as GNU parallel cuts it), and the task's output is there.
/// Before: "File name too long" and exit 3, for a task that succeeded.
#[test]
fn results_of_an_input_longer_than_a_file_name_are_kept_under_a_cut_name() {
    isolated(DEADLINE, || {
        let dir = tempfile::tempdir().unwrap();
        let line = "a".repeat(300);
        let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_supervisor"))
            .arg("run")
            .arg("--results")
            .arg(dir.path())
            .args(["--", "echo", "{}"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(cli.stdin.take().unwrap(), "{line}").unwrap();
        let out = cli.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let kept = dir.path().join("1").join(&line[..255]).join("stdout");
        assert_eq!(std::fs::read_to_string(kept).unwrap(), format!("{line}\n"));
    });
}
