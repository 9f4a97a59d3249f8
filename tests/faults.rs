//! Fault injection along a task's round trip: a probe value fails (error, panic, exit,
//! abort) in its own Serialize or Deserialize at one step: encode the argument (parent),
//! decode it (worker), encode the result (worker), decode the result (parent). Under
//! every start method, through Process and Pool: only that task fails, with the typed
//! error of the step, and the next task works.

mod common;

use std::time::Duration;

use common::each_method;
use serde::{de::Error as _, ser::Error as _, Deserialize, Deserializer, Serialize, Serializer};
use supervisor::{Error, Pool, Process, StartMethod};

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
    let ok = match (step, how, result) {
        (_, How::Fine, Ok(_)) => true,
        (Step::EncodeArg, How::Err, Err(Error::EncodeArgument { .. })) => true,
        (Step::DecodeArg, How::Err, Err(Error::DecodeArgument { message, .. })) => {
            message.contains("probe refused")
        }
        (Step::EncodeResult, How::Err, Err(Error::EncodeResult { message, .. })) => {
            message.contains("probe refused")
        }
        (Step::DecodeResult, How::Err, Err(Error::DecodeResult { .. })) => true,
        (
            Step::DecodeArg | Step::EncodeResult,
            How::Panic,
            Err(Error::Panicked { message, .. }),
        ) => message == "probe panicked",
        (Step::DecodeArg | Step::EncodeResult, How::Exit, Err(Error::Exited { code: 4, .. })) => {
            true
        }
        (Step::DecodeArg | Step::EncodeResult, How::Crash, Err(Error::Crashed { signal, .. })) => {
            signal.to_string() == "SIGABRT"
        }
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
