//! The one table: a row per workload and peer, shown as text or markdown.
//!
//! Every figure is the median time of one fixed amount of work, shown in the unit that
//! suits the workload. The ratio is always peer time / our time: above 1, supervisor is
//! that many times faster.

use std::time::Duration;

/// How the time of a workload is shown.
#[derive(Clone, Copy)]
pub enum Unit {
    /// The time of the whole workload.
    Total,
    /// The time per call, the workload being this many calls.
    PerCall(usize),
    /// Items per second, the workload being this many items.
    Items(usize),
    /// GiB per second, the workload moving this many bytes.
    Bytes(usize),
    /// Memory: the measurement's whole nanoseconds stand for KiB (a memory figure goes
    /// through the same medians and ratios as a time; less is better for both).
    Kib,
}

impl Unit {
    pub fn show(self, t: Duration) -> String {
        let secs = t.as_secs_f64();
        match self {
            Unit::Total => duration(secs),
            Unit::PerCall(n) => format!("{}/call", duration(secs / n as f64)),
            Unit::Items(n) => {
                let per_sec = n as f64 / secs;
                if per_sec >= 1e6 {
                    format!("{:.2} M/s", per_sec / 1e6)
                } else {
                    format!("{:.1} k/s", per_sec / 1e3)
                }
            }
            Unit::Bytes(n) => format!("{:.2} GiB/s", gib_per_sec(n, t)),
            Unit::Kib => format!("{:.0} MiB", t.as_nanos() as f64 / 1024.0),
        }
    }
}

fn duration(secs: f64) -> String {
    if secs < 1e-3 {
        format!("{:.1} µs", secs * 1e6)
    } else if secs < 1.0 {
        format!("{:.1} ms", secs * 1e3)
    } else {
        format!("{secs:.2} s")
    }
}

/// Peer memory / ours, read as how much less we take.
fn less(r: f64) -> String {
    if r >= 1.0 {
        format!("{r:.2}x less")
    } else {
        format!("{r:.2}x ({:.2}x more)", 1.0 / r)
    }
}

/// Peer time / our time, read as how much faster we are.
fn ratio(r: f64) -> String {
    if r >= 1.0 {
        format!("{r:.2}x faster")
    } else {
        format!("{r:.2}x ({:.2}x slower)", 1.0 / r)
    }
}

fn gib_per_sec(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / (1u64 << 30) as f64 / t.as_secs_f64()
}

/// What our figure is compared with.
pub enum Peer {
    /// Measured in the same run.
    Measured { name: String, time: Duration },
    /// Not installed on this machine: not run.
    Missing { name: String },
    /// The workload has no peer.
    None,
}

impl Peer {
    /// `time` when the peer ran (`Some`), else missing.
    pub fn new(name: impl Into<String>, time: Option<Duration>) -> Peer {
        let name = name.into();
        match time {
            Some(time) => Peer::Measured { name, time },
            None => Peer::Missing { name },
        }
    }
}

/// The machine's floor for a workload: the same work done by the least a program could
/// do (a pipe round trip, a bare fork+exec).
pub struct Floor {
    pub name: &'static str,
    pub time: Duration,
}

/// A goal the workload is held to.
pub enum Target {
    /// Peer time / our time at least this.
    Faster(f64),
    /// Our time / the floor's at most this.
    FloorTimes(f64),
    /// At least this many GiB/s (a `Unit::Bytes` workload).
    GibPerSec(f64),
    /// At least this many items per second (a `Unit::Items` workload).
    PerSec(f64),
}

pub struct Row {
    pub workload: String,
    pub unit: Unit,
    pub ours: Duration,
    pub peer: Peer,
    pub floor: Option<Floor>,
    pub targets: Vec<Target>,
}

const HEADER: [&str; 7] = [
    "workload",
    "supervisor",
    "peer",
    "peer figure",
    "peer / ours",
    "machine floor (ours x floor)",
    "target",
];

impl Row {
    fn cells(&self) -> [String; 7] {
        let (peer, figure, ratio) = match &self.peer {
            Peer::Measured { name, time } => (
                name.clone(),
                self.unit.show(*time),
                match self.unit {
                    Unit::Kib => less(time.as_secs_f64() / self.ours.as_secs_f64()),
                    _ => ratio(time.as_secs_f64() / self.ours.as_secs_f64()),
                },
            ),
            Peer::Missing { name } => (name.clone(), "not installed: skipped".into(), "-".into()),
            Peer::None => ("-".into(), "-".into(), "-".into()),
        };
        let floor = match &self.floor {
            Some(f) => format!(
                "{} {} ({:.1}x)",
                self.unit.show(f.time),
                f.name,
                self.ours.as_secs_f64() / f.time.as_secs_f64()
            ),
            None => "-".into(),
        };
        let targets: Vec<String> = self.targets.iter().map(|t| self.target(t)).collect();
        let target = if targets.is_empty() {
            "-".into()
        } else {
            targets.join("; ")
        };
        [
            self.workload.clone(),
            self.unit.show(self.ours),
            peer,
            figure,
            ratio,
            floor,
            target,
        ]
    }

    /// The target and whether it is met (`?` when what it needs was not measured).
    fn target(&self, target: &Target) -> String {
        let ours = self.ours.as_secs_f64();
        let (text, met) = match *target {
            Target::Faster(min) => (
                format!(">= {min}x"),
                match &self.peer {
                    Peer::Measured { time, .. } => Some(time.as_secs_f64() / ours >= min),
                    _ => None,
                },
            ),
            Target::FloorTimes(max) => (
                format!("<= {max}x floor"),
                self.floor
                    .as_ref()
                    .map(|f| ours / f.time.as_secs_f64() <= max),
            ),
            Target::GibPerSec(min) => (
                format!(">= {min} GiB/s"),
                match self.unit {
                    Unit::Bytes(n) => Some(gib_per_sec(n, self.ours) >= min),
                    _ => None,
                },
            ),
            Target::PerSec(min) => (
                format!(">= {min}/s"),
                match self.unit {
                    Unit::Items(n) => Some(n as f64 / ours >= min),
                    _ => None,
                },
            ),
        };
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "not met",
            None => "?",
        };
        format!("{text} ({verdict})")
    }
}

/// The rows as aligned text.
pub fn text(rows: &[Row]) -> String {
    let cells: Vec<[String; 7]> = rows.iter().map(Row::cells).collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(&HEADER.map(String::from));
    for row in &cells {
        out += &line(row);
    }
    out
}

/// The rows as a markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
    let mut out = line(&HEADER.map(String::from));
    out += &line(&HEADER.map(|_| "---".to_string()));
    for row in rows {
        out += &line(&row.cells());
    }
    out
}
