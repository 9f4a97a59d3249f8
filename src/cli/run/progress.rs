//! The run's progress on stderr (`--progress`, `--eta`, `--bar`) and its last
//! summary line.

use std::io::{BufRead, BufReader, IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

use super::super::args::{Progress, RunArgs};
use super::super::sources::{self, Origin};

/// Progress on stderr: an indicatif bar on a terminal; with `--progress always` and no
/// terminal, a plain line at most once a second (fit for a log file).
pub(super) enum Meter {
    /// No progress shown: nothing to draw, suspend or count (a hidden indicatif bar
    /// still reads the clock and takes a lock per result).
    Off,
    Bar(ProgressBar),
    Lines {
        done: u64,
        total: Option<u64>,
        start: std::time::Instant,
        last: std::time::Instant,
    },
}

impl Meter {
    pub(super) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match self {
            Meter::Bar(bar) => bar.suspend(f),
            Meter::Off | Meter::Lines { .. } => f(),
        }
    }

    pub(super) fn inc(&mut self) {
        match self {
            Meter::Off => {}
            Meter::Bar(bar) => bar.inc(1),
            Meter::Lines {
                done,
                total,
                start,
                last,
            } => {
                *done += 1;
                if last.elapsed() >= std::time::Duration::from_secs(1) {
                    *last = std::time::Instant::now();
                    let rate = rounded_rate(*done as f64 / start.elapsed().as_secs_f64().max(1e-9));
                    let of = total.map(|t| format!("/{t}")).unwrap_or_default();
                    say!("supervisor: {done}{of} tasks, {rate}");
                }
            }
        }
    }

    /// Ends the display with the run's summary line (when progress is shown).
    pub(super) fn finish(&self, summary: &Summary) {
        let elapsed = match self {
            Meter::Off => return,
            Meter::Bar(bar) if bar.is_hidden() => return,
            Meter::Bar(bar) => {
                bar.finish_and_clear();
                bar.elapsed()
            }
            Meter::Lines { start, .. } => start.elapsed(),
        };
        let line = format!(
            "supervisor: {} tasks in {:.1}s: {} succeeded, {} failed, {} stopped while running, {} not started\n",
            summary.done + summary.failed + summary.stopped + summary.cancelled,
            elapsed.as_secs_f64(),
            summary.done,
            summary.failed,
            summary.stopped,
            summary.cancelled,
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// What the run's last progress line counts.
pub(super) struct Summary {
    pub done: u64,
    pub failed: u64,
    pub stopped: u64,
    pub cancelled: u64,
}

/// A rate rounded for reading: `12/s`, `3.4/s`, `0.25/s`.
fn rounded_rate(per_sec: f64) -> String {
    if !per_sec.is_finite() {
        return "-".to_string();
    }
    if per_sec >= 100.0 {
        format!("{:.0}/s", per_sec)
    } else if per_sec >= 1.0 {
        format!("{:.1}/s", per_sec)
    } else {
        format!("{:.2}/s", per_sec)
    }
}

/// How many tasks the inputs make, when that is known before reading them: `:::`
/// words and regular files (read once more here), every group one source; `None`
/// for stdin, a pipe, or linked sources.
pub(super) fn known_total(groups: &[sources::Group], delimiter: u8) -> Option<u64> {
    let mut total = 1u64;
    for group in groups {
        let [origin] = group.as_slice() else {
            return None;
        };
        let n = match origin {
            Origin::Args(words) => words.len() as u64,
            Origin::File(p) if p.as_os_str() == "-" => return None,
            // Only a regular file can be read twice (a FIFO would be used up).
            Origin::File(p) if std::fs::metadata(p).is_ok_and(|m| m.is_file()) => {
                let mut reader = BufReader::new(std::fs::File::open(p).ok()?);
                let mut n = 0u64;
                let mut record = Vec::new();
                loop {
                    record.clear();
                    match reader.read_until(delimiter, &mut record) {
                        Ok(0) => break,
                        Ok(_) => n += 1,
                        Err(_) => return None,
                    }
                }
                n
            }
            Origin::File(_) => return None,
        };
        total = total.checked_mul(n)?;
    }
    Some(total)
}

/// The bar's `{rate}`: tasks per second, rounded.
fn rate_key(state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = w.write_str(&rounded_rate(state.per_sec()));
}

/// Whether the run shows its progress (on a terminal, or as lines).
pub(super) fn shown(args: &RunArgs) -> bool {
    // GNU parallel's --eta and --bar: the progress display, always.
    args.eta
        || match args.progress {
            Progress::Always => true,
            Progress::Never => false,
            Progress::Auto => std::io::stderr().is_terminal() && !args.daemon,
        }
}

pub(super) fn make_progress(args: &RunArgs, total: Option<u64>) -> Meter {
    let terminal = std::io::stderr().is_terminal();
    if !shown(args) {
        return Meter::Off;
    }
    if !terminal {
        let now = std::time::Instant::now();
        return Meter::Lines {
            done: 0,
            total,
            start: now,
            last: now,
        };
    }
    let bar = match total {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} tasks, {rate}, ETA {eta}")
                .map(|s| s.with_key("rate", rate_key))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {pos} tasks, {rate}, {elapsed}")
                .map(|s| s.with_key("rate", rate_key))
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    Meter::Bar(bar)
}
