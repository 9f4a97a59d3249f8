//! GNU parallel's job log: a header, then one tab-separated line per job
//! (`Seq Host Starttime JobRuntime Send Receive Exitval Signal Command`), so parallel's
//! own tools and `--resume` / `--resume-failed` read it; and reading one back.

use std::collections::HashSet;
use std::io::{self, BufRead};
use std::path::Path;
use std::time::Duration;

/// The header line, as parallel writes it.
pub const HEADER: &str =
    "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand";

/// One job's line.
#[derive(Debug, Clone, PartialEq)]
pub struct Row<'a> {
    /// The job's sequence number (input order, from 1).
    pub seq: u64,
    /// Where it ran (`:` is this machine, as in parallel).
    pub host: &'a str,
    /// Its start, since the epoch (0 if it never started).
    pub start: Duration,
    /// Its run time.
    pub runtime: Duration,
    /// Bytes given on its stdin.
    pub sent: u64,
    /// Bytes it wrote on stdout.
    pub received: u64,
    /// Its exit status (parallel's convention: -1 when it never ran, or was killed).
    pub exitval: i64,
    /// The signal that ended it, 0 if none.
    pub signal: i32,
    /// The command line (or, for a built-in task, the task and its input), in pieces
    /// written one after the other.
    pub command: &'a [&'a [u8]],
}

impl Row<'_> {
    /// Appends the line, without its newline, to `out`. Times are in seconds with three
    /// decimals, as parallel writes them (`%.3f`, the run time right-aligned in 10), from
    /// whole milliseconds: a line per task of a run of tiny tasks went through the
    /// float formatter's exact mode twice, more time than the rest of the line.
    pub fn write_into(&self, out: &mut Vec<u8>) {
        let mut n = itoa::Buffer::new();
        out.extend_from_slice(n.format(self.seq).as_bytes());
        out.push(b'\t');
        out.extend_from_slice(self.host.as_bytes());
        out.push(b'\t');
        put_seconds(self.start, 0, out);
        out.push(b'\t');
        put_seconds(self.runtime, 10, out);
        for v in [self.sent, self.received] {
            out.push(b'\t');
            out.extend_from_slice(n.format(v).as_bytes());
        }
        out.push(b'\t');
        out.extend_from_slice(n.format(self.exitval).as_bytes());
        out.push(b'\t');
        out.extend_from_slice(n.format(self.signal).as_bytes());
        out.push(b'\t');
        // One line per job whatever the command holds.
        for piece in self.command {
            out.extend(piece.iter().map(|&b| match b {
                b'\n' | b'\t' => b' ',
                b => b,
            }));
        }
    }
}

/// Writes `d` in seconds with three decimals (rounded to the nearest millisecond, a
/// half up), right-aligned in `width`.
fn put_seconds(d: Duration, width: usize, out: &mut Vec<u8>) {
    let ms = (d.as_nanos() + 500_000) / 1_000_000;
    let (whole, frac) = ((ms / 1000) as u64, (ms % 1000) as u32);
    let mut n = itoa::Buffer::new();
    let whole = n.format(whole).as_bytes();
    out.extend(std::iter::repeat_n(
        b' ',
        width.saturating_sub(whole.len() + 4),
    ));
    out.extend_from_slice(whole);
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// What an earlier run's job log says: which jobs ended well, which did not.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resume {
    /// Exit 0 and no signal.
    pub succeeded: HashSet<u64>,
    /// Logged, but failed (the later line of a job wins).
    pub failed: HashSet<u64>,
    /// Lines cut short (a run killed, or its disk full, while it wrote one), in order.
    pub cut_short: Vec<CutShort>,
}

/// A job log line that ends before its exit status and signal: the write of a job's
/// line was cut (the line is written once the job ended, so the job ran).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutShort {
    /// Its line, 1-based.
    pub line: usize,
    /// Its job, if the line got past its number (digits then a tab): that job is taken
    /// as run, whatever it came to, and not run again. `None`: only digits, which may
    /// be the start of a longer number; the line is ignored.
    pub seq: Option<u64>,
}

impl Resume {
    /// Whether job `seq` runs again: not if it succeeded; if it failed, only with
    /// `--resume-failed`.
    pub fn runs(&self, seq: u64, failed_too: bool) -> bool {
        if self.succeeded.contains(&seq) {
            return false;
        }
        !self.failed.contains(&seq) || failed_too
    }
}

/// Why a job log cannot be resumed from.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// It cannot be read.
    #[error("cannot read the job log")]
    Io(#[from] io::Error),
    /// A line that is not parallel's format (a JSON job log, say).
    #[error("line {line} is not a job log line in GNU parallel's format (--joblog-format tsv)")]
    Format {
        /// 1-based.
        line: usize,
    },
}

/// Whether the columns of a line without its exit status or signal are what the start
/// of a job log line holds: a host, then numbers, each but the last whole.
fn prefix_of_a_line(cols: &[&[u8]]) -> bool {
    cols.iter().enumerate().skip(2).all(|(at, col)| {
        let last = at + 1 == cols.len();
        let numeric = col
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b' ' | b'-'));
        numeric && (last || col.iter().any(u8::is_ascii_digit))
    })
}

/// Reads a job log written by us or by parallel; a missing file is an empty log. A line
/// cut short (see [`CutShort`]) is listed, not refused: a run killed while writing its
/// log can be resumed.
pub fn read(path: &Path) -> Result<Resume, ReadError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Resume::default()),
        Err(e) => return Err(e.into()),
    };
    let mut resume = Resume::default();
    for (i, line) in io::BufReader::new(file).split(b'\n').enumerate() {
        let line = line?;
        // The header, or as much of it as a run killed at its start wrote.
        if i == 0 && (line.starts_with(b"Seq\t") || HEADER.as_bytes().starts_with(&line)) {
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let cols: Vec<&[u8]> = line.splitn(9, |&b| b == b'\t').collect();
        let num = |c: &[u8]| std::str::from_utf8(c).ok()?.trim().parse::<i64>().ok();
        let (seq, exit, signal) = (
            cols.first().and_then(|c| num(c)),
            cols.get(6).and_then(|c| num(c)),
            cols.get(7).and_then(|c| num(c)),
        );
        let Some(seq) = seq.and_then(|s| u64::try_from(s).ok()) else {
            return Err(ReadError::Format { line: i + 1 });
        };
        let (Some(exit), Some(signal)) = (exit, signal) else {
            // Cut short before its signal's column ended (a full line has its command
            // after it); anything else that lacks them is not a job log line.
            if cols.len() == 1 && line.iter().all(u8::is_ascii_digit) {
                resume.cut_short.push(CutShort {
                    line: i + 1,
                    seq: None,
                });
                continue;
            }
            if cols.len() > 8 || !prefix_of_a_line(&cols) {
                return Err(ReadError::Format { line: i + 1 });
            }
            resume.cut_short.push(CutShort {
                line: i + 1,
                seq: Some(seq),
            });
            resume.failed.remove(&seq);
            resume.succeeded.insert(seq);
            continue;
        };
        if exit == 0 && signal == 0 {
            resume.failed.remove(&seq);
            resume.succeeded.insert(seq);
        } else {
            resume.succeeded.remove(&seq);
            resume.failed.insert(seq);
        }
    }
    Ok(resume)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_laid_out_as_parallel_lays_it_out() {
        let row = Row {
            seq: 2,
            host: ":",
            start: Duration::from_millis(1796204977345),
            runtime: Duration::from_millis(12),
            sent: 0,
            received: 2,
            exitval: 3,
            signal: 0,
            command: &[b"echo 3; exit 3"],
        };
        // Copied from a job log GNU parallel 20221122 wrote.
        assert_eq!(
            line(&row),
            "2\t:\t1796204977.345\t     0.012\t0\t2\t3\t0\techo 3; exit 3"
        );
    }

    fn line(row: &Row) -> String {
        let mut out = Vec::new();
        row.write_into(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn times_are_written_as_printf_writes_them_with_three_decimals() {
        let row = |start: Duration, runtime: Duration| Row {
            seq: 1,
            host: ":",
            start,
            runtime,
            sent: 0,
            received: 0,
            exitval: -1,
            signal: 15,
            command: &[b"sleep", b" ", b"a\tb\nc"],
        };
        let cases = [
            (Duration::ZERO, Duration::ZERO, "0.000\t     0.000"),
            (
                Duration::from_nanos(1_796_204_977_000_499_999),
                Duration::from_nanos(500_000),
                "1796204977.000\t     0.001",
            ),
            (
                Duration::from_nanos(999_999_500_000),
                Duration::from_secs(123_456),
                "1000.000\t123456.000",
            ),
            (
                Duration::from_secs(5),
                Duration::from_secs(12_345_678),
                "5.000\t12345678.000",
            ),
        ];
        for (start, runtime, times) in cases {
            assert_eq!(
                line(&row(start, runtime)),
                format!("1\t:\t{times}\t0\t0\t-1\t15\tsleep a b c")
            );
        }
        // Away from a tie, the same as the float formatter (which rounds the double).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let nanos = x % 4_000_000_000_000_000_000;
            if (nanos % 1_000_000).abs_diff(500_000) < 1_000 {
                continue;
            }
            let d = Duration::from_nanos(nanos);
            let mut out = Vec::new();
            put_seconds(d, 10, &mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("{:>10.3}", d.as_secs_f64()),
                "{nanos} ns"
            );
        }
    }

    #[test]
    fn a_log_read_back_says_what_succeeded_and_what_failed() {
        let dir = std::env::temp_dir().join(format!("joblog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        // parallel's own log of `--resume-failed` after one failure: job 2 logged twice.
        std::fs::write(
            &path,
            "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n\
             1\t:\t1796204977.335\t     0.009\t0\t2\t0\t0\techo 0; exit 0\n\
             2\t:\t1796204977.345\t     0.012\t0\t2\t3\t0\techo 3; exit 3\n\
             3\t:\t1796204977.357\t     0.007\t0\t2\t0\t15\tsleep 9\n\
             2\t:\t1796204977.611\t     0.013\t0\t2\t0\t0\techo 3; exit 3\n",
        )
        .unwrap();
        let resume = read(&path).unwrap();
        assert!(!resume.runs(1, true) && !resume.runs(2, true));
        assert!(!resume.runs(3, false) && resume.runs(3, true));
        assert!(resume.runs(4, false), "never logged: runs");
        // Lines cut short: job 5 got past its number (taken as run, whatever it came
        // to, even under --resume-failed), the last line did not (ignored).
        for cut in [
            "5\t:",
            "5\t:\t1796204977.6",
            "5\t:\t1796204977.611\t     0.013\t0\t2\t3",
            "5\t:\t1796204977.611\t     0.013\t0\t2\t3\t",
        ] {
            std::fs::write(&path, format!("2\t:\t1.0\t0.1\t0\t0\t1\t0\tx\n{cut}\n1")).unwrap();
            let resume = read(&path).unwrap();
            assert!(!resume.runs(5, true), "{cut:?}");
            assert!(resume.runs(1, false) && resume.runs(2, true), "{cut:?}");
            assert_eq!(
                resume.cut_short,
                [
                    CutShort {
                        line: 2,
                        seq: Some(5)
                    },
                    CutShort { line: 3, seq: None }
                ],
                "{cut:?}"
            );
        }
        for header in ["Seq\tHost", "S"] {
            std::fs::write(&path, header).unwrap();
            assert_eq!(read(&path).unwrap(), Resume::default(), "{header:?}");
        }
        // Not the start of a line: refused.
        for bad in [
            "5\tx\ty",
            "5\t:\t1.0\tabc",
            "5\t:\t1.0\t0.1\t0\t0\tx\t0\tcmd",
        ] {
            std::fs::write(&path, format!("{bad}\n")).unwrap();
            assert!(
                matches!(read(&path), Err(ReadError::Format { line: 1 })),
                "{bad:?}"
            );
        }
        std::fs::write(&path, "{\"seq\":1}\n").unwrap();
        assert!(matches!(read(&path), Err(ReadError::Format { line: 1 })));
        assert_eq!(read(&dir.join("missing")).unwrap(), Resume::default());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
