//! Option values in GNU parallel's spellings: `-j N | N% | +N | -N` and
//! `--timeout DURATION | SECONDS | N%`.

use std::time::Duration;

/// A `-j` value, resolved against the machine's CPU count.
pub fn procs(spec: &str, cpus: usize) -> Result<usize, String> {
    let bad =
        || format!("-j {spec}: expected N, N% (of the CPUs), +N or -N (CPUs plus or minus N)");
    let number = |s: &str| s.parse::<usize>().map_err(|_| bad());
    let n = if let Some(p) = spec.strip_suffix('%') {
        let p: f64 = p.parse().map_err(|_| bad())?;
        if !(p.is_finite() && p > 0.0) {
            return Err(bad());
        }
        ((cpus as f64 * p / 100.0).floor() as usize).max(1)
    } else if let Some(plus) = spec.strip_prefix('+') {
        cpus.saturating_add(number(plus)?)
    } else if let Some(minus) = spec.strip_prefix('-') {
        cpus.saturating_sub(number(minus)?).max(1)
    } else {
        let n = number(spec)?;
        if n == 0 {
            return Err(
                "-j 0 (parallel's \"as many as possible\") is not supported: give a number, e.g. -j 64"
                    .to_string(),
            );
        }
        n
    };
    Ok(n)
}

/// A `--timeout` value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timeout {
    /// A fixed limit.
    Fixed(Duration),
    /// This percentage of the median run time of the jobs that succeeded so far
    /// (parallel's `--timeout 200%`); no limit until one has (see [`MedianLimit`]).
    OfMedian(f64),
}

/// Run times the median is taken over: the last ones (parallel's remedian is over
/// up to 999^3; the last 999 follow a changing workload the same way, in bounded
/// memory).
const MEDIAN_WINDOW: usize = 999;

/// Shortest limit a percentage gives: a process does not start and answer reliably
/// faster on a busy machine, and a worker that has not begun its task within the
/// limit is taken as unresponsive.
pub const MEDIAN_LIMIT_FLOOR: Duration = Duration::from_millis(50);

/// `--timeout N%`, as GNU parallel: the limit is N% of the median run time of the
/// tasks that succeeded so far (the lower median, as parallel takes it); before one
/// has, there is none.
#[derive(Debug, Clone)]
pub struct MedianLimit {
    percent: f64,
    /// The window's run times in arrival order, and the same sorted: each success
    /// moves one time in and (past the window) one out of the sorted copy by binary
    /// search, where a sort of the whole window per success was most of a run of
    /// tiny tasks (100k `0ms` took 4x as long as without `--timeout N%`).
    times: std::collections::VecDeque<Duration>,
    sorted: Vec<Duration>,
    limit: Option<Duration>,
}

impl MedianLimit {
    /// The limit for `percent`%, with no run time known yet.
    pub fn new(percent: f64) -> MedianLimit {
        MedianLimit {
            percent,
            times: std::collections::VecDeque::new(),
            sorted: Vec::new(),
            limit: None,
        }
    }

    /// Takes the run time of a task that succeeded; the new limit if it changed.
    pub fn add(&mut self, took: Duration) -> Option<Duration> {
        if self.times.len() == MEDIAN_WINDOW {
            if let Some(oldest) = self.times.pop_front() {
                // Any of equal times is as good as another.
                if let Ok(at) = self.sorted.binary_search(&oldest) {
                    self.sorted.remove(at);
                }
            }
        }
        self.times.push_back(took);
        let at = self.sorted.partition_point(|t| *t < took);
        self.sorted.insert(at, took);
        let median = self.sorted[(self.sorted.len() - 1) / 2];
        // Whole milliseconds, as messages print it.
        let limit = Duration::from_millis(median.mul_f64(self.percent / 100.0).as_millis() as u64)
            .max(MEDIAN_LIMIT_FLOOR);
        if self.limit == Some(limit) {
            return None;
        }
        self.limit = Some(limit);
        Some(limit)
    }
}

/// Parses `30s`, `1m 30s`, `2.5` (seconds, as parallel) or `200%`.
pub fn timeout(spec: &str) -> Result<Timeout, String> {
    let bad = || {
        format!("--timeout {spec}: expected a duration (30s, 1m), seconds (2.5) or a percentage of the median run time (200%)")
    };
    let limit = if let Some(p) = spec.strip_suffix('%') {
        let p: f64 = p.trim().parse().map_err(|_| bad())?;
        if !(p.is_finite() && p > 0.0) {
            return Err(bad());
        }
        return Ok(Timeout::OfMedian(p));
    } else if let Ok(secs) = spec.trim().parse::<f64>() {
        if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
            return Err(bad());
        }
        Duration::from_secs_f64(secs)
    } else {
        humantime::parse_duration(spec).map_err(|_| bad())?
    };
    if limit.is_zero() {
        return Err("--timeout must be longer than 0".to_string());
    }
    Ok(Timeout::Fixed(limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procs_spellings() {
        assert_eq!(procs("4", 2), Ok(4));
        assert_eq!(procs("50%", 2), Ok(1));
        assert_eq!(procs("200%", 2), Ok(4));
        assert_eq!(procs("1%", 2), Ok(1));
        assert_eq!(procs("+3", 2), Ok(5));
        assert_eq!(procs("-1", 2), Ok(1));
        assert_eq!(procs("-5", 2), Ok(1));
        for bad in ["0", "x", "-x", "%", "-1%"] {
            assert!(procs(bad, 2).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_median_limit_follows_the_lower_median_of_successes() {
        let ms = Duration::from_millis;
        let mut m = MedianLimit::new(200.0);
        assert_eq!(m.add(ms(100)), Some(ms(200)));
        // Lower median of 100, 300: 100; no change, nothing to say.
        assert_eq!(m.add(ms(300)), None);
        assert_eq!(m.add(ms(400)), Some(ms(600)));
        // Never below the floor.
        let mut m = MedianLimit::new(100.0);
        assert_eq!(m.add(ms(1)), Some(MEDIAN_LIMIT_FLOOR));
    }

    /// Over several windows of random times (many equal), each success gives the
    /// limit a sort of the window's last times gives.
    #[test]
    fn the_median_limit_is_the_sorted_windows_lower_median() {
        let mut m = MedianLimit::new(150.0);
        let mut all = Vec::new();
        let mut limit = None;
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..4 * MEDIAN_WINDOW {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let took = Duration::from_micros(x % 400 * 250 + x % 3);
            all.push(took);
            let mut window: Vec<Duration> = all[all.len().saturating_sub(MEDIAN_WINDOW)..].to_vec();
            window.sort();
            let median = window[(window.len() - 1) / 2];
            let want = Duration::from_millis(median.mul_f64(1.5).as_millis() as u64)
                .max(MEDIAN_LIMIT_FLOOR);
            let said = m.add(took);
            assert_eq!(said, (limit != Some(want)).then_some(want));
            limit = Some(want);
        }
    }

    #[test]
    fn timeout_spellings() {
        assert_eq!(
            timeout("2.5"),
            Ok(Timeout::Fixed(Duration::from_millis(2500)))
        );
        assert_eq!(timeout("30s"), Ok(Timeout::Fixed(Duration::from_secs(30))));
        assert_eq!(
            timeout("1m 30s"),
            Ok(Timeout::Fixed(Duration::from_secs(90)))
        );
        assert_eq!(timeout("200%"), Ok(Timeout::OfMedian(200.0)));
        for bad in ["0", "0s", "-1", "x%", "abc", "nan"] {
            assert!(timeout(bad).is_err(), "{bad}");
        }
    }
}
