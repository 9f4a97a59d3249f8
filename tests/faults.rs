//! Fault injection along a task's round trip: a probe value fails (error, panic, exit,
//! abort) in its own Serialize or Deserialize at one step: encode the argument (parent),
//! decode it (worker), encode the result (worker), decode the result (parent). Under
//! every start method, through Process and Pool: only that task fails, with the typed
//! error of the step, and the next task works.

mod common;

use std::time::Duration;

use common::each_method;
use serde::{de::Error as _, ser::Error as _, Deserialize, Deserializer, Serialize, Serializer};
use supervisor::{Error, ErrorKind, Pool, Process, StartMethod};

const DEADLINE: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    EncodeArg,
    DecodeArg,
    EncodeResult,
    DecodeResult,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Fine,
    Err,
    Panic,
    Exit,
    Crash,
}

/// Misbehaves as `how` when it is (de)serialized at `step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Probe {
    step: Step,
    how: How,
}

const STEPS: [Step; 4] = [
    Step::EncodeArg,
    Step::DecodeArg,
    Step::EncodeResult,
    Step::DecodeResult,
];
const HOWS: [How; 5] = [How::Fine, How::Err, How::Panic, How::Exit, How::Crash];

impl Probe {
    fn code(self) -> u8 {
        let s = STEPS.iter().position(|s| *s == self.step).unwrap_or(0) as u8;
        let h = HOWS.iter().position(|h| *h == self.how).unwrap_or(0) as u8;
        s * 8 + h
    }

    fn from_code(code: u8) -> Option<Probe> {
        Some(Probe {
            step: *STEPS.get((code / 8) as usize)?,
            how: *HOWS.get((code % 8) as usize)?,
        })
    }

    /// Misbehaves if `step` is this probe's step; `Err(message)` for How::Err.
    fn trip(self, step: Step) -> Result<(), &'static str> {
        if self.step != step {
            return Ok(());
        }
        match self.how {
            How::Fine => Ok(()),
            How::Err => Err("probe refused"),
            How::Panic => panic!("probe panicked"),
            How::Exit => std::process::exit(4),
            How::Crash => std::process::abort(),
        }
    }
}

fn in_worker() -> bool {
    supervisor::worker_context().is_some()
}

impl Serialize for Probe {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let step = if in_worker() {
            Step::EncodeResult
        } else {
            Step::EncodeArg
        };
        self.trip(step).map_err(S::Error::custom)?;
        s.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Probe, D::Error> {
        let probe =
            Probe::from_code(u8::deserialize(d)?).ok_or_else(|| D::Error::custom("bad probe"))?;
        let step = if in_worker() {
            Step::DecodeArg
        } else {
            Step::DecodeResult
        };
        probe.trip(step).map_err(D::Error::custom)?;
        Ok(probe)
    }
}

fn echo(p: Probe) -> Probe {
    p
}
supervisor::task!(echo);

/// What a fault at `step` by `how` must look like to the caller.
fn expect(step: Step, how: How, result: &Result<Probe, Error>) {
    let ok = match (step, how, result.as_ref().map_err(Error::kind)) {
        (_, How::Fine, Ok(_)) => true,
        (Step::EncodeArg, How::Err, Err(ErrorKind::EncodeArgument { .. })) => true,
        (Step::DecodeArg, How::Err, Err(ErrorKind::DecodeArgument { message, .. })) => {
            message.contains("probe refused")
        }
        (Step::EncodeResult, How::Err, Err(ErrorKind::EncodeResult { message, .. })) => {
            message.contains("probe refused")
        }
        // Named by the worker that ran the task (it said "process 0" from a pool).
        (Step::DecodeResult, How::Err, Err(ErrorKind::DecodeResult { pid, .. })) => *pid != 0,
        (
            Step::DecodeArg | Step::EncodeResult,
            How::Panic,
            Err(ErrorKind::Panicked { message, .. }),
        ) => message == "probe panicked",
        (
            Step::DecodeArg | Step::EncodeResult,
            How::Exit,
            Err(ErrorKind::Exited { code: 4, .. }),
        ) => true,
        (
            Step::DecodeArg | Step::EncodeResult,
            How::Crash,
            Err(ErrorKind::Crashed { signal, .. }),
        ) => signal.to_string() == "SIGABRT",
        _ => false,
    };
    assert!(ok, "{step:?} x {how:?}: got {result:?}");
}

/// The faults that can run: panic, exit and abort on the parent's side would hit the
/// test itself (they are the caller's own code on the caller's thread).
fn cases() -> Vec<(Step, How)> {
    let mut v = Vec::new();
    for step in STEPS {
        for how in HOWS {
            let parent_side = matches!(step, Step::EncodeArg | Step::DecodeResult);
            if parent_side && matches!(how, How::Panic | How::Exit | How::Crash) {
                continue;
            }
            v.push((step, how));
        }
    }
    v
}

#[test]
fn every_step_of_a_process_round_trip_fails_with_its_own_error() {
    each_method(DEADLINE, |method: StartMethod| {
        for (step, how) in cases() {
            let probe = Probe { step, how };
            let result = Process::builder(echo, probe)
                .start_method(method)
                .start()
                .and_then(|mut p| p.join());
            expect(step, how, &result);
        }
    });
}

#[test]
fn every_step_of_a_pool_round_trip_fails_only_its_task() {
    each_method(DEADLINE, |method: StartMethod| {
        let pool = Pool::builder()
            .procs(2)
            .start_method(method)
            .build()
            .unwrap();
        for (step, how) in cases() {
            let probe = Probe { step, how };
            expect(step, how, &pool.apply(echo, probe));
            // The pool carries on after each fault.
            let fine = Probe {
                step,
                how: How::Fine,
            };
            assert_eq!(pool.apply(echo, fine).unwrap(), fine);
        }
        pool.join();
    });
}

// ---------------------------------------------------------------------------------------
// Delivery faults: a worker that dies right after sending its result, or while it takes
// in its argument, inline (48 KiB) and through shared memory (over the 64 KiB inline
// limit).

/// Sizes on either side of the inline limit.
const SIZES: [usize; 2] = [48 << 10, 1 << 20];

/// Syscalls a worker's serve loop sits in while it waits for its next message.
const RECEIVE_SYSCALLS: &[libc::c_long] = &[
    #[cfg(target_arch = "x86_64")]
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_recvmsg,
    libc::SYS_recvfrom,
];

/// Returns `n` bytes; a watcher thread ends the worker (exit 0) as soon as the thread
/// that ran the task waits for its next message, i.e. right after the result was sent.
fn big_then_exit(n: u64) -> serde_bytes::ByteBuf {
    // SAFETY: gettid cannot fail.
    let tid = unsafe { libc::gettid() };
    std::thread::spawn(move || {
        let path = format!("/proc/self/task/{tid}/syscall");
        loop {
            let nr = std::fs::read_to_string(&path).ok().and_then(|s| {
                s.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<libc::c_long>().ok())
            });
            if nr.is_some_and(|nr| RECEIVE_SYSCALLS.contains(&nr)) {
                // SAFETY: _exit ends the process at once, as a crash right after the
                // send would.
                unsafe { libc::_exit(0) };
            }
            std::thread::yield_now();
        }
    });
    serde_bytes::ByteBuf::from(vec![7u8; n as usize])
}
supervisor::task!(big_then_exit);

#[test]
fn a_worker_exiting_right_after_sending_a_result_still_delivers_it() {
    each_method(DEADLINE, |method: StartMethod| {
        for n in SIZES {
            let mut p = Process::builder(big_then_exit, n as u64)
                .start_method(method)
                .start()
                .unwrap();
            let value = p.join().unwrap();
            assert!(value.len() == n && value.iter().all(|b| *b == 7));
            assert_eq!(p.exitcode(), Some(0));
        }
        let pool = Pool::builder()
            .procs(2)
            .start_method(method)
            .build()
            .unwrap();
        for n in SIZES {
            for _ in 0..3 {
                let exited = pool.stats().exited.len();
                let value = pool.apply(big_then_exit, n as u64).unwrap();
                assert!(value.len() == n && value.iter().all(|b| *b == 7));
                // Wait (on the pool's own record, under the test's deadline) until the
                // pool has seen that worker's exit: a task handed to a worker that died
                // idle before reading it is blamed on it (see docs/RELIABILITY.md).
                while pool.stats().exited.len() == exited {
                    std::thread::yield_now();
                }
            }
        }
        pool.join();
    });
}

#[derive(Serialize, Deserialize)]
enum Fuse {
    Never,
    Always,
    /// In the first worker that creates this file.
    Once(String),
}

#[derive(Serialize, Deserialize)]
struct BombFields {
    fuse: Fuse,
    payload: serde_bytes::ByteBuf,
}

/// An argument that SIGKILLs the worker decoding it.
struct Bomb(BombFields);

impl Bomb {
    fn new(size: usize, fuse: Fuse) -> Bomb {
        Bomb(BombFields {
            fuse,
            payload: serde_bytes::ByteBuf::from(vec![1u8; size]),
        })
    }
}

impl Serialize for Bomb {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Bomb {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bomb, D::Error> {
        let fields = BombFields::deserialize(d)?;
        let armed = match &fields.fuse {
            Fuse::Never => false,
            Fuse::Always => true,
            Fuse::Once(path) => std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .is_ok(),
        };
        if in_worker() && armed {
            // SAFETY: kill with our own pid and a valid signal.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        Ok(Bomb(fields))
    }
}

fn payload_len(b: Bomb) -> u64 {
    b.0.payload.len() as u64
}
supervisor::task!(payload_len);

fn is_sigkill(result: &Result<u64, Error>) -> bool {
    matches!(
        result.as_ref().map_err(Error::kind),
        Err(ErrorKind::Crashed { signal, .. }) if signal.to_string() == "SIGKILL"
    )
}

#[test]
fn a_worker_killed_while_taking_in_its_argument_fails_only_that_task() {
    each_method(DEADLINE, |method: StartMethod| {
        for size in SIZES {
            let mut p = Process::builder(payload_len, Bomb::new(size, Fuse::Always))
                .start_method(method)
                .start()
                .unwrap();
            assert!(is_sigkill(&p.join()));
            assert_eq!(p.exitcode(), Some(-9));
        }
        let pool = Pool::builder()
            .procs(2)
            .start_method(method)
            .build()
            .unwrap();
        for size in SIZES {
            assert!(is_sigkill(
                &pool.apply(payload_len, Bomb::new(size, Fuse::Always))
            ));
            // Big arguments queued to both workers; the third kills the one taking it in.
            let args = (0..8).map(|i| {
                let fuse = if i == 2 { Fuse::Always } else { Fuse::Never };
                Bomb::new(size + i, fuse)
            });
            for (i, result) in pool.map(payload_len, args).into_iter().enumerate() {
                if i == 2 {
                    assert!(is_sigkill(&result), "{result:?}");
                } else {
                    assert_eq!(result.unwrap(), (size + i) as u64);
                }
            }
        }
        pool.join();
        // With retries, the task whose worker was killed runs again and succeeds.
        let pool = Pool::builder()
            .procs(2)
            .start_method(method)
            .retries(2)
            .build()
            .unwrap();
        for size in SIZES {
            let marker = std::env::temp_dir().join(format!(
                "supervisor-test-fuse-{}-{size}",
                std::process::id()
            ));
            let fuse = Fuse::Once(marker.to_string_lossy().into_owned());
            let result = pool.apply(payload_len, Bomb::new(size, fuse));
            let _ = std::fs::remove_file(&marker);
            assert_eq!(result.unwrap(), size as u64);
        }
        pool.join();
    });
}
