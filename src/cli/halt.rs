//! `--halt`, as GNU parallel spells it: `never`, or `WHEN,WHAT=N` / `WHEN,WHAT=N%` with
//! WHEN `now` (kill running jobs) or `soon` (start nothing more, let running jobs end)
//! and WHAT `fail`, `success` or `done`. The decision is taken on every job's end, when
//! it happens, not when its output is printed.

/// When to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Stop running jobs at once (as SIGTERM would), start nothing more.
    Now,
    /// Start nothing more; running jobs finish.
    Soon,
}

/// Which ends count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// Failed jobs.
    Fail,
    /// Succeeded jobs.
    Success,
    /// Any job.
    Done,
}

/// How many.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// This many jobs.
    Count(u64),
    /// This share of all jobs (known once the input has ended; until then, of the jobs
    /// read so far, as parallel does), in percent.
    Percent(f64),
}

/// A `--halt` rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Halt {
    /// When to stop.
    pub when: When,
    /// What counts.
    pub what: What,
    /// How many.
    pub threshold: Threshold,
}

/// Counts the rule looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    /// Jobs that succeeded.
    pub succeeded: u64,
    /// Jobs that failed.
    pub failed: u64,
    /// Jobs read so far (all of them once the input has ended).
    pub total: u64,
}

impl Halt {
    /// Parses parallel's spelling; `never` is `None`.
    pub fn parse(text: &str) -> Result<Option<Halt>, String> {
        let bad = || {
            format!(
                "--halt {text}: expected never, or now|soon,fail|success|done=N or =N% \
                 (e.g. now,fail=1)"
            )
        };
        if text == "never" || text == "0" {
            return Ok(None);
        }
        // parallel's old numeric forms: 1 = soon,fail=1, 2 = now,fail=1.
        match text {
            "1" => return Ok(Some(Halt::first_failure(When::Soon))),
            "2" => return Ok(Some(Halt::first_failure(When::Now))),
            _ => {}
        }
        let (when, rule) = text.split_once(',').ok_or_else(bad)?;
        let when = match when {
            "now" => When::Now,
            "soon" => When::Soon,
            _ => return Err(bad()),
        };
        let (what, n) = rule.split_once('=').ok_or_else(bad)?;
        let what = match what {
            "fail" => What::Fail,
            "success" => What::Success,
            "done" => What::Done,
            _ => return Err(bad()),
        };
        let threshold = match n.strip_suffix('%') {
            Some(p) => {
                let p: f64 = p.parse().map_err(|_| bad())?;
                if !(p > 0.0 && p <= 100.0) {
                    return Err(bad());
                }
                Threshold::Percent(p)
            }
            None => {
                let n: u64 = n.parse().map_err(|_| bad())?;
                if n == 0 {
                    return Err(bad());
                }
                Threshold::Count(n)
            }
        };
        Ok(Some(Halt {
            when,
            what,
            threshold,
        }))
    }

    fn first_failure(when: When) -> Halt {
        Halt {
            when,
            what: What::Fail,
            threshold: Threshold::Count(1),
        }
    }

    /// Whether the run stops, given the counts after a job ended.
    pub fn reached(&self, tally: &Tally) -> bool {
        let n = match self.what {
            What::Fail => tally.failed,
            What::Success => tally.succeeded,
            What::Done => tally.failed + tally.succeeded,
        };
        match self.threshold {
            Threshold::Count(c) => n >= c,
            Threshold::Percent(p) => tally.total > 0 && n as f64 * 100.0 >= p * tally.total as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallels_spellings_parse() {
        assert_eq!(Halt::parse("never"), Ok(None));
        assert_eq!(
            Halt::parse("now,fail=1"),
            Ok(Some(Halt {
                when: When::Now,
                what: What::Fail,
                threshold: Threshold::Count(1)
            }))
        );
        assert_eq!(
            Halt::parse("soon,success=30%").unwrap().unwrap().threshold,
            Threshold::Percent(30.0)
        );
        assert_eq!(Halt::parse("2").unwrap().unwrap().when, When::Now);
        for bad in [
            "now",
            "later,fail=1",
            "now,fail=0",
            "now,fail=x",
            "now,oops=1",
            "soon,done=101%",
        ] {
            assert!(Halt::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn thresholds_are_reached_by_the_right_counts() {
        let rule = |s: &str| Halt::parse(s).unwrap().unwrap();
        let t = |succeeded, failed, total| Tally {
            succeeded,
            failed,
            total,
        };
        assert!(!rule("now,fail=2").reached(&t(10, 1, 20)));
        assert!(rule("now,fail=2").reached(&t(0, 2, 20)));
        assert!(rule("soon,success=3").reached(&t(3, 0, 9)));
        assert!(rule("now,done=4").reached(&t(2, 2, 9)));
        assert!(!rule("now,fail=50%").reached(&t(0, 4, 10)));
        assert!(rule("now,fail=50%").reached(&t(0, 5, 10)));
        assert!(!rule("now,fail=50%").reached(&t(0, 0, 0)));
    }
}
