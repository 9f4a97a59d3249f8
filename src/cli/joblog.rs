//! GNU parallel's job log: a header, then one tab-separated line per job
//! (`Seq Host Starttime JobRuntime Send Receive Exitval Signal Command`), so parallel's
//! own tools and `--resume` / `--resume-failed` read it; and reading one back.

use std::collections::HashSet;
use std::io::{self, BufRead};
use std::path::Path;

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
    /// Start, seconds since the epoch (0 if it never started).
    pub start: f64,
    /// Run time in seconds.
    pub runtime: f64,
    /// Bytes given on its stdin.
    pub sent: u64,
    /// Bytes it wrote on stdout.
    pub received: u64,
    /// Its exit status (parallel's convention: -1 when it never ran, or was killed).
    pub exitval: i64,
    /// The signal that ended it, 0 if none.
    pub signal: i32,
    /// The command line (or, for a built-in task, the task and its input).
    pub command: &'a [u8],
}

impl Row<'_> {
    /// The line, without its newline.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = format!(
            "{}\t{}\t{:.3}\t{:>10.3}\t{}\t{}\t{}\t{}\t",
            self.seq,
            self.host,
            self.start,
            self.runtime,
            self.sent,
            self.received,
            self.exitval,
            self.signal
        )
        .into_bytes();
        // One line per job whatever the command holds.
        line.extend(self.command.iter().map(|&b| match b {
            b'\n' | b'\t' => b' ',
            b => b,
        }));
        line
    }
}

/// What an earlier run's job log says: which jobs ended well, which did not.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resume {
    /// Exit 0 and no signal.
    pub succeeded: HashSet<u64>,
    /// Logged, but failed (the later line of a job wins).
    pub failed: HashSet<u64>,
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

/// Reads a job log written by us or by parallel; a missing file is an empty log.
pub fn read(path: &Path) -> Result<Resume, ReadError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Resume::default()),
        Err(e) => return Err(e.into()),
    };
    let mut resume = Resume::default();
    for (i, line) in io::BufReader::new(file).split(b'\n').enumerate() {
        let line = line?;
        if i == 0 && line.starts_with(b"Seq\t") {
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let cols: Vec<&[u8]> = line.splitn(9, |&b| b == b'\t').collect();
        let num = |c: &[u8]| std::str::from_utf8(c).ok()?.trim().parse::<i64>().ok();
        let (Some(seq), Some(exit), Some(signal)) = (
            cols.first().and_then(|c| num(c)),
            cols.get(6).and_then(|c| num(c)),
            cols.get(7).and_then(|c| num(c)),
        ) else {
            return Err(ReadError::Format { line: i + 1 });
        };
        let Ok(seq) = u64::try_from(seq) else {
            return Err(ReadError::Format { line: i + 1 });
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
            start: 1796204977.345,
            runtime: 0.012,
            sent: 0,
            received: 2,
            exitval: 3,
            signal: 0,
            command: b"echo 3; exit 3",
        };
        // Copied from a job log GNU parallel 20221122 wrote.
        assert_eq!(
            String::from_utf8(row.to_line()).unwrap(),
            "2\t:\t1796204977.345\t     0.012\t0\t2\t3\t0\techo 3; exit 3"
        );
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
        std::fs::write(&path, "{\"seq\":1}\n").unwrap();
        assert!(matches!(read(&path), Err(ReadError::Format { line: 1 })));
        assert_eq!(read(&dir.join("missing")).unwrap(), Resume::default());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
