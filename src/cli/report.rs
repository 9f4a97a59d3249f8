//! What `run` prints per task: the text or JSON record, the stderr line of a failure,
//! the job-log line. Errors map to kinds in one exhaustive place, [`kind_of`].

use std::time::UNIX_EPOCH;

use serde_json::{json, Value};
use supervisor::{Error, ErrorKind, JobMeta};

use super::tasks::{Failure, Outcome, Output};

/// How one task ended, in the CLI's terms.
pub struct Record {
    pub seq: u64,
    pub input: String,
    pub meta: JobMeta,
    pub result: Result<Output, ErrorInfo>,
    pub peak_rss_kib: Option<u64>,
}

/// A failed task's error, as printed.
pub struct ErrorInfo {
    pub kind: &'static str,
    pub message: String,
    pub signal: Option<i32>,
    pub exit_code: Option<i32>,
    /// A failed command's standard output and standard error.
    pub stdout: String,
    pub stderr: String,
    pub peak_rss_kib: Option<u64>,
}

/// The kind of a library error: one of failed, panicked, crashed, oom_killed (a crash
/// by the kernel's OOM killer), exited, timed_out, memory_exceeded (over
/// `--memory-limit`), lost, decode, stopped (running when the run was stopped),
/// cancelled (never started). Every one of them is a failed task: exit code 1.
pub fn kind_of(e: &Error) -> &'static str {
    match e.kind() {
        ErrorKind::Panicked { .. } => "panicked",
        ErrorKind::Crashed { .. } => "crashed",
        ErrorKind::OomKilled { .. } => "oom_killed",
        ErrorKind::MemoryExceeded { .. } => "memory_exceeded",
        ErrorKind::Exited { .. } => "exited",
        ErrorKind::TimedOut { .. } => "timed_out",
        ErrorKind::Lost { .. }
        | ErrorKind::ResultLost { .. }
        | ErrorKind::Protocol { .. }
        | ErrorKind::PoolBroken { .. } => "lost",
        ErrorKind::EncodeArgument { .. }
        | ErrorKind::DecodeArgument { .. }
        | ErrorKind::EncodeResult { .. }
        | ErrorKind::DecodeResult { .. } => "decode",
        ErrorKind::Cancelled { .. } | ErrorKind::Terminated { .. } | ErrorKind::PoolClosed => {
            "cancelled"
        }
        ErrorKind::Stopped { .. } => "stopped",
        _ => "failed",
    }
}

impl Record {
    pub fn new(seq: u64, input: String, meta: JobMeta, result: Result<Outcome, Error>) -> Record {
        let result = match result {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(Failure::Decode(message))) => Err(ErrorInfo {
                kind: "decode",
                message,
                signal: None,
                exit_code: None,
                stdout: String::new(),
                stderr: String::new(),
                peak_rss_kib: None,
            }),
            Ok(Err(Failure::Failed {
                message,
                exit_code,
                signal,
                stdout,
                stderr,
            })) => Err(ErrorInfo {
                kind: "failed",
                message,
                signal,
                exit_code,
                stdout,
                stderr,
                peak_rss_kib: None,
            }),
            Err(e) => {
                let (signal, exit_code, peak) = match e.kind() {
                    ErrorKind::Crashed {
                        signal,
                        peak_rss_kib,
                        ..
                    } => (Some(signal.number()), None, Some(*peak_rss_kib)),
                    ErrorKind::Exited {
                        code, peak_rss_kib, ..
                    } => (None, Some(*code), Some(*peak_rss_kib)),
                    ErrorKind::OomKilled { peak_rss_kib, .. } => {
                        (Some(libc::SIGKILL), None, Some(*peak_rss_kib))
                    }
                    ErrorKind::MemoryExceeded { peak_rss_kib, .. } => {
                        (Some(libc::SIGKILL), None, Some(*peak_rss_kib))
                    }
                    _ => (None, None, None),
                };
                Err(ErrorInfo {
                    kind: kind_of(&e),
                    message: supervisor_worker::error_chain(&e),
                    signal,
                    exit_code,
                    stdout: String::new(),
                    stderr: String::new(),
                    peak_rss_kib: peak,
                })
            }
        };
        Record {
            seq,
            input,
            meta,
            peak_rss_kib: None,
            result,
        }
    }

    pub fn ok(&self) -> bool {
        self.result.is_ok()
    }

    fn duration_ms(&self) -> f64 {
        (self.meta.duration.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
    }

    /// The `--format json` object.
    pub fn to_json(&self) -> Value {
        match &self.result {
            Ok(out) => {
                let output = if out.json {
                    serde_json::from_str(&out.text)
                        .unwrap_or_else(|_| Value::String(out.text.clone()))
                } else {
                    Value::String(out.text.clone())
                };
                json!({
                    "seq": self.seq, "input": self.input, "ok": true, "output": output,
                    "pid": self.meta.pid, "attempts": self.meta.attempts,
                    "duration_ms": self.duration_ms(),
                })
            }
            Err(e) => json!({
                "seq": self.seq, "input": self.input, "ok": false,
                "error": {
                    "kind": e.kind, "message": e.message,
                    "signal": e.signal, "exit_code": e.exit_code,
                },
                "pid": self.meta.pid, "attempts": self.meta.attempts,
                "duration_ms": self.duration_ms(),
            }),
        }
    }

    /// The `--joblog` line.
    pub fn to_joblog(&self) -> Value {
        let start = self
            .meta
            .started
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64());
        let (outcome, signal, exit_code, peak) = match &self.result {
            Ok(_) => ("ok", None, None, self.peak_rss_kib),
            Err(e) => (
                e.kind,
                e.signal,
                e.exit_code,
                e.peak_rss_kib.or(self.peak_rss_kib),
            ),
        };
        json!({
            "seq": self.seq, "input": self.input, "pid": self.meta.pid,
            "start": start, "duration_ms": self.duration_ms(), "outcome": outcome,
            "signal": signal, "exit_code": exit_code, "peak_rss_kib": peak,
            "attempts": self.meta.attempts,
        })
    }

    /// The text-mode stdout: a command's output exactly as it wrote it (even when it
    /// failed); a built-in task's output as one line (empty included, so output lines
    /// stay aligned with input lines).
    pub fn stdout_text(&self, command: bool) -> Option<String> {
        let text = match &self.result {
            Ok(out) => &out.text,
            Err(e) if command => &e.stdout,
            Err(_) => return None,
        };
        if command || text.ends_with('\n') {
            (!text.is_empty()).then(|| text.clone())
        } else {
            Some(format!("{text}\n"))
        }
    }

    /// A command's own standard error (empty for built-in tasks).
    pub fn command_stderr(&self) -> String {
        let mut s = match &self.result {
            Ok(out) => out.stderr.clone(),
            Err(e) => e.stderr.clone(),
        };
        if !s.is_empty() && !s.ends_with('\n') {
            s.push('\n');
        }
        s
    }

    /// What goes to stderr in text mode: a command's stderr, and one line per failure.
    pub fn stderr_text(&self) -> String {
        let mut s = match &self.result {
            Ok(out) => out.stderr.clone(),
            Err(e) => e.stderr.clone(),
        };
        if !s.is_empty() && !s.ends_with('\n') {
            s.push('\n');
        }
        if let Err(e) = &self.result {
            // The library's messages name the task's process; a command's own failure
            // gets it added. Never both (before: "stopped in pid 7: task `sleep` was
            // stopped in process 7: ...").
            let message = shorten(&e.message, 2000);
            let pid = self.meta.pid;
            let at = if pid == 0 {
                " (before it ran)".to_string()
            } else if message.contains(&format!("process {pid}")) {
                String::new()
            } else {
                format!(" (worker {pid})")
            };
            s.push_str(&format!(
                "supervisor: line {} ({:?}): {message}{at}\n",
                self.seq,
                shorten(&self.input, 120),
            ));
        }
        s
    }
}

/// `s` cut to at most `max` characters, with an ellipsis.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}... ({} bytes)", s.len())
    }
}
