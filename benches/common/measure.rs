//! Settings from the environment, and medians of interleaved runs.

use std::time::Duration;

/// How often to measure and how big the workloads are.
pub struct Settings {
    /// Runs per workload.
    pub runs: usize,
    /// Samples per start method.
    pub samples: usize,
    /// Divisor of the workload sizes.
    pub scale: usize,
}

impl Settings {
    pub fn from_env() -> Settings {
        Settings {
            runs: env_usize("RUNS", 5),
            samples: env_usize("SAMPLES", 100),
            scale: env_usize("SCALE", 1),
        }
    }

    /// A workload size: `n` divided by `SCALE`, at least `min`.
    pub fn size(&self, n: usize, min: usize) -> usize {
        (n / self.scale).max(min)
    }
}

/// A positive integer from the environment, or `default`.
fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("{name} must be a positive integer"))
        })
        .unwrap_or(default)
        .max(1)
}

/// One measurement: the time of one run, or `None` when there is nothing to run (a peer
/// that is not installed).
pub type Measure<'a> = &'a mut dyn FnMut() -> Option<Duration>;

/// Runs every measurement once per round, `rounds` rounds, so that noise on the machine
/// hits all of them alike; the median of each (`None` for one that never ran).
pub fn medians<const N: usize>(rounds: usize, mut measures: [Measure; N]) -> [Option<Duration>; N] {
    let mut times: [Vec<Duration>; N] = std::array::from_fn(|_| Vec::with_capacity(rounds));
    for _ in 0..rounds {
        for (measure, times) in measures.iter_mut().zip(&mut times) {
            times.extend(measure());
        }
    }
    times.map(median)
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}
