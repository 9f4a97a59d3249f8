//! What `run` prints per task: the text or JSON record, the stderr line of a failure,
//! the job-log line. Errors map to kinds in one exhaustive place, [`kind_of`].

use std::io::{self, Write};
use std::time::UNIX_EPOCH;

use serde_json::{json, Value};
use supervisor::{Captured, Error, ErrorKind, JobMeta};

use super::json_bytes;
use super::tasks::{Failure, Outcome, Output};

/// How one task ended, in the CLI's terms.
pub struct Record {
    pub seq: u64,
    /// The input line's bytes.
    pub input: Vec<u8>,
    pub meta: JobMeta,
    pub result: Result<Output, ErrorInfo>,
    pub peak_rss_kib: Option<u64>,
    /// The host of a remote run's agent (none locally).
    pub host: Option<String>,
}

/// A failed task's error, as printed.
pub struct ErrorInfo {
    pub kind: &'static str,
    pub message: String,
    pub signal: Option<i32>,
    pub exit_code: Option<i32>,
    /// A failed command's standard output and standard error.
    pub stdout: Captured,
    pub stderr: Captured,
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
        ErrorKind::Remote { kind, .. } => remote_kind(kind),
        ErrorKind::DeliveryLimit {
            signal: Some(_), ..
        } => "crashed",
        ErrorKind::DeliveryLimit { .. } | ErrorKind::Cluster { .. } => "lost",
        _ => "failed",
    }
}

/// An agent's error kind, as one of [`kind_of`]'s names.
fn remote_kind(kind: &str) -> &'static str {
    const KINDS: &[&str] = &[
        "panicked",
        "crashed",
        "oom_killed",
        "memory_exceeded",
        "exited",
        "timed_out",
        "lost",
        "decode",
        "cancelled",
        "stopped",
    ];
    KINDS
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("failed")
}

/// The signal, exit code and peak RSS a library error records, where it has them.
fn signal_and_code(e: &Error) -> (Option<i32>, Option<i32>, Option<u64>) {
    match e.kind() {
        ErrorKind::Crashed {
            signal,
            peak_rss_kib,
            ..
        } => (Some(signal.number()), None, Some(*peak_rss_kib)),
        ErrorKind::Exited {
            code, peak_rss_kib, ..
        } => (None, Some(*code), Some(*peak_rss_kib)),
        ErrorKind::OomKilled { peak_rss_kib, .. }
        | ErrorKind::MemoryExceeded { peak_rss_kib, .. } => {
            (Some(libc::SIGKILL), None, Some(*peak_rss_kib))
        }
        ErrorKind::Remote {
            signal, exit_code, ..
        } => (*signal, *exit_code, None),
        ErrorKind::DeliveryLimit { signal, .. } => (signal.map(|s| s.number()), None, None),
        _ => (None, None, None),
    }
}

/// Task `seq`'s line in GNU parallel's job log, naming `command`, written as its result
/// arrives; none for a task stopped or never started (so `--resume` runs it again).
pub fn joblog_row<'a>(
    seq: u64,
    result: &Result<Outcome, Error>,
    meta: &JobMeta,
    command: &'a [u8],
    host: &'a str,
) -> Option<super::joblog::Row<'a>> {
    // parallel's convention: -1 when there is no exit code.
    let (exitval, signal, received) = match result {
        Ok(Ok(out)) => (0, 0, out.text.len()),
        Ok(Err(Failure::Failed {
            exit_code,
            signal,
            stdout,
            ..
        })) => (
            exit_code.map_or(-1, i64::from),
            signal.unwrap_or(0),
            stdout.len(),
        ),
        Ok(Err(Failure::Decode(_))) => (-1, 0, 0),
        Err(e) if matches!(kind_of(e), "stopped" | "cancelled") => return None,
        Err(e) => {
            let (signal, code, _) = signal_and_code(e);
            (code.map_or(-1, i64::from), signal.unwrap_or(0), 0)
        }
    };
    let start = meta
        .started
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    Some(super::joblog::Row {
        seq,
        host,
        start,
        runtime: meta.duration.as_secs_f64(),
        sent: 0,
        received,
        exitval,
        signal,
        command,
    })
}

impl Record {
    pub fn new(seq: u64, input: Vec<u8>, meta: JobMeta, result: Result<Outcome, Error>) -> Record {
        let result = match result {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(Failure::Decode(message))) => Err(ErrorInfo {
                kind: "decode",
                message,
                signal: None,
                exit_code: None,
                stdout: Captured::default(),
                stderr: Captured::default(),
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
                let (signal, exit_code, peak) = signal_and_code(&e);
                Err(ErrorInfo {
                    kind: kind_of(&e),
                    message: supervisor_worker::error_chain(&e),
                    signal,
                    exit_code,
                    stdout: Captured::default(),
                    stderr: Captured::default(),
                    peak_rss_kib: peak,
                })
            }
        };
        Record {
            seq,
            input,
            meta,
            peak_rss_kib: None,
            host: None,
            result,
        }
    }

    pub fn ok(&self) -> bool {
        self.result.is_ok()
    }

    fn duration_ms(&self) -> f64 {
        (self.meta.duration.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
    }

    /// Writes the `--format json` line: the record's fields, then its output (a
    /// command's stdout, also when it failed; a built-in task's result) as `"output"`
    /// when it is UTF-8, else `"output_base64"`, streamed from a spool whatever its
    /// size. The input is `"input"` or `"input_base64"` the same way.
    pub fn write_json(&self, w: &mut dyn Write, command: bool) -> io::Result<()> {
        let (k, v) = json_bytes::field("input", &self.input);
        let mut head = json!({
            "seq": self.seq, "ok": self.ok(),
            "pid": self.meta.pid, "attempts": self.meta.attempts,
            "duration_ms": self.duration_ms(),
        });
        head[k] = v;
        let mut output = None;
        match &self.result {
            Ok(out) if out.json => {
                let bytes = out.text.to_vec()?;
                let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&bytes).into_owned())
                });
                head["output"] = value;
            }
            Ok(out) => output = Some(&out.text),
            Err(e) => {
                head["error"] = json!({
                    "kind": e.kind, "message": e.message,
                    "signal": e.signal, "exit_code": e.exit_code,
                });
                if command {
                    output = Some(&e.stdout);
                }
            }
        }
        let head = serde_json::to_vec(&head).map_err(io::Error::other)?;
        match output {
            Some(data) => {
                w.write_all(&head[..head.len() - 1])?;
                w.write_all(b",")?;
                json_bytes::write_field(w, "output", data)?;
                w.write_all(b"}\n")
            }
            None => {
                w.write_all(&head)?;
                w.write_all(b"\n")
            }
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
        let (k, v) = json_bytes::field("input", &self.input);
        let mut line = json!({
            "seq": self.seq, "pid": self.meta.pid,
            "start": start, "duration_ms": self.duration_ms(), "outcome": outcome,
            "signal": signal, "exit_code": exit_code, "peak_rss_kib": peak,
            "attempts": self.meta.attempts,
        });
        line[k] = v;
        if let Some(host) = &self.host {
            line["host"] = json!(host);
        }
        line
    }

    /// Writes the text-mode stdout: a command's output exactly as it wrote it (even
    /// when it failed); a built-in task's output as one line (empty included, so output
    /// lines stay aligned with input lines).
    pub fn write_stdout<W: Write>(&self, w: &mut W, command: bool) -> io::Result<()> {
        let text = match &self.result {
            Ok(out) => &out.text,
            Err(e) if command => &e.stdout,
            Err(_) => return Ok(()),
        };
        text.write_to(w)?;
        if !command && text.last_byte()? != Some(b'\n') {
            w.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Writes a command's own standard error (nothing for built-in tasks), ending in a
    /// newline.
    pub fn write_command_stderr(&self, w: &mut dyn Write) -> io::Result<()> {
        let err = self.command_stderr();
        if !err.is_empty() {
            err.write_to(w)?;
            if err.last_byte()? != Some(b'\n') {
                w.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    /// A command's own standard error (empty for built-in tasks).
    pub fn command_stderr(&self) -> &Captured {
        match &self.result {
            Ok(out) => &out.stderr,
            Err(e) => &e.stderr,
        }
    }

    /// Whether there is anything for [`Record::write_stderr`] to write.
    pub fn has_stderr(&self) -> bool {
        self.result.is_err() || !self.command_stderr().is_empty()
    }

    /// What goes to stderr in text mode: a command's stderr, and one line per failure.
    pub fn write_stderr(&self, w: &mut dyn Write) -> io::Result<()> {
        self.write_command_stderr(w)?;
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
            writeln!(
                w,
                "supervisor: line {} ({:?}): {message}{at}",
                self.seq,
                shorten(&String::from_utf8_lossy(&self.input), 120),
            )?;
        }
        Ok(())
    }
}

impl Record {
    /// `--results DIR`: the task's stdout and stderr (and its sequence number) in
    /// parallel's layout, `DIR/1/VALUE1/2/VALUE2/{seq,stdout,stderr}` (a `/` in a
    /// value is written `\_`, a `\` as `\\`).
    pub fn write_results(&self, dir: &std::path::Path, values: &[Vec<u8>]) -> io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let mut path = dir.to_path_buf();
        for (i, value) in values.iter().enumerate() {
            let mut name = Vec::with_capacity(value.len());
            for &b in value {
                match b {
                    b'/' => name.extend_from_slice(b"\\_"),
                    b'\\' => name.extend_from_slice(b"\\\\"),
                    b => name.push(b),
                }
            }
            path.push((i + 1).to_string());
            path.push(std::ffi::OsStr::from_bytes(&name));
        }
        std::fs::create_dir_all(&path)?;
        std::fs::write(path.join("seq"), self.seq.to_string())?;
        let (stdout, stderr) = match &self.result {
            Ok(out) => (&out.text, &out.stderr),
            Err(e) => (&e.stdout, &e.stderr),
        };
        stdout.write_to(&mut std::fs::File::create(path.join("stdout"))?)?;
        stderr.write_to(&mut std::fs::File::create(path.join("stderr"))?)?;
        Ok(())
    }
}

/// A writer that puts `tag` and a tab before every line (`--tag`).
pub struct Tagged<'a, W: Write> {
    inner: &'a mut W,
    tag: &'a [u8],
    at_line_start: bool,
}

impl<'a, W: Write> Tagged<'a, W> {
    /// Tags what is written to `inner` with `tag`.
    pub fn new(inner: &'a mut W, tag: &'a [u8]) -> Self {
        Tagged {
            inner,
            tag,
            at_line_start: true,
        }
    }

    /// Ends the last line if the output did not.
    pub fn finish(self) -> io::Result<()> {
        if !self.at_line_start {
            self.inner.write_all(b"\n")?;
        }
        Ok(())
    }
}

impl<W: Write> Write for Tagged<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for line in buf.split_inclusive(|&b| b == b'\n') {
            if self.at_line_start {
                self.inner.write_all(self.tag)?;
                self.inner.write_all(b"\t")?;
            }
            self.inner.write_all(line)?;
            self.at_line_start = line.ends_with(b"\n");
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
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
