//! What `run` prints per task: the text or JSON record, the stderr line of a failure,
//! the job-log line. Errors map to kinds in one exhaustive place, [`kind_of`].

use std::io::{self, Write};
use std::time::UNIX_EPOCH;

use serde_json::{json, Value};

use super::json_lines;
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
}

/// The kind of a library error: one of failed, panicked, crashed, oom_killed (a crash
/// by the kernel's OOM killer), exited, timed_out, memory_exceeded (over
/// `--memory-limit`), lost, decode, stopped (running when the run was stopped),
/// cancelled (never started). Every one of them is a failed task: exit code 1.
pub fn kind_of(e: &Error) -> &'static str {
    e.kind().word()
}

/// The signal, exit code and peak RSS a library error records, where it has them.
fn signal_and_code(e: &Error) -> (Option<i32>, Option<i32>, Option<u64>) {
    e.kind().exit_facts()
}

/// The JSON job log's line for a later run of a task already done (a remote task
/// delivered again after its host went quiet, that ran twice): dropped from the
/// output, noted here with its own host, pid, start and duration.
pub fn joblog_duplicate(seq: u64, meta: &JobMeta, host: &str) -> Value {
    let start = meta
        .started
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64());
    let duration_ms = (meta.duration.as_secs_f64() * 1e6).round() / 1000.0;
    json!({
        "seq": seq, "host": host, "pid": meta.pid, "start": start,
        "duration_ms": duration_ms, "attempts": meta.attempts,
        "outcome": "duplicate", "duplicate": true,
    })
}

/// Task `seq`'s line in GNU parallel's job log, naming `command`, written as its result
/// arrives; none for a task stopped or never started (so `--resume` runs it again).
pub fn joblog_row<'a>(
    seq: u64,
    result: &Result<Outcome, Error>,
    meta: &JobMeta,
    command: &'a [&'a [u8]],
    host: &'a str,
) -> Option<super::joblog::Row<'a>> {
    // parallel's columns, as it writes them: a command killed by a signal has
    // Exitval 0 (the high byte of its wait status) and the signal; a timed-out one
    // Exitval -1 and Signal 15 (parallel's TERM); -1 when there is no exit code.
    let exitval = |code: Option<i32>, signal: Option<i32>| match (code, signal) {
        (Some(code), _) => i64::from(code),
        (None, Some(_)) => 0,
        (None, None) => -1,
    };
    let (exitval, signal, received) = match result {
        Ok(Ok(out)) => (0, 0, out.text.len()),
        // A command that could not be started: what a shell exits with for it (GNU
        // parallel runs commands through one), 127 for a program not found, else 126.
        Ok(Err(Failure::Failed {
            start_errno: Some(errno),
            ..
        })) => (if *errno == libc::ENOENT { 127 } else { 126 }, 0, 0),
        Ok(Err(Failure::Failed {
            exit_code,
            signal,
            stdout,
            ..
        })) => (
            exitval(*exit_code, *signal),
            signal.unwrap_or(0),
            stdout.len(),
        ),
        Ok(Err(Failure::Decode(_) | Failure::Output { .. })) => (-1, 0, 0),
        Err(e) if matches!(kind_of(e), "stopped" | "cancelled") => return None,
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut { .. }) => (-1, libc::SIGTERM, 0),
        Err(e) => {
            let (signal, code, _) = signal_and_code(e);
            (exitval(code, signal), signal.unwrap_or(0), 0)
        }
    };
    let start = meta
        .started
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    Some(super::joblog::Row {
        seq,
        host,
        start,
        runtime: meta.duration,
        sent: 0,
        received,
        exitval,
        signal,
        command,
    })
}

/// Writes task `seq`'s line in the JSON job log (`--joblog-format json`), without its
/// newline, as its result arrives: the worker's pid and the command's own, the command
/// line (command mode), the outcome in words, the exit code (0 for a command that
/// succeeded), the signal and the peak RSS.
#[expect(clippy::too_many_arguments)]
pub fn write_joblog_json(
    w: &mut dyn Write,
    seq: u64,
    input: &[u8],
    command: Option<&[u8]>,
    result: &Result<Outcome, Error>,
    meta: &JobMeta,
    worker_peak_kib: Option<u64>,
    host: Option<&str>,
) -> io::Result<()> {
    let start = meta
        .started
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64());
    let (outcome, signal, exit_code, peak, command_pid) = match result {
        Ok(Ok(out)) => (
            "ok",
            None,
            command.is_some().then_some(0),
            worker_peak_kib,
            out.pid,
        ),
        Ok(Err(Failure::Decode(_))) => ("decode", None, None, worker_peak_kib, 0),
        Ok(Err(Failure::Output { .. })) => ("output_error", None, None, worker_peak_kib, 0),
        Ok(Err(Failure::Failed {
            exit_code,
            signal,
            pid,
            ..
        })) => ("failed", *signal, *exit_code, worker_peak_kib, *pid),
        Err(e) => {
            let (signal, code, peak) = signal_and_code(e);
            (kind_of(e), signal, code, peak.or(worker_peak_kib), 0)
        }
    };
    let input = shorten_bytes(input, INPUT_QUOTE_LIMIT);
    let input = json_lines::Bytes::of(&input);
    let command = command.map(|c| shorten_bytes(c, INPUT_QUOTE_LIMIT));
    let command = command.as_deref().map(json_lines::Bytes::of);
    let line = json_lines::JoblogLine {
        attempts: meta.attempts,
        command: command.as_ref().and_then(json_lines::Bytes::text),
        command_base64: command.as_ref().and_then(json_lines::Bytes::base64),
        command_pid: command
            .is_some()
            .then_some((command_pid != 0).then_some(command_pid)),
        duration_ms: (meta.duration.as_secs_f64() * 1e6).round() / 1000.0,
        exit_code,
        // A remote task that never reached an agent ran nowhere.
        host: host.map(|h| (!h.is_empty()).then_some(h)),
        input: input.text(),
        input_base64: input.base64(),
        outcome,
        peak_rss_kib: peak,
        pid: meta.pid,
        seq,
        signal,
        start,
    };
    thread_local! {
        /// The line's bytes, reused from line to line: one write each.
        static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    LINE.with_borrow_mut(|bytes| {
        bytes.clear();
        line.write_into(bytes).map_err(io::Error::other)?;
        w.write_all(bytes)
    })
}

/// Characters of an error message a record keeps (a message quoting a huge input line
/// keeps its start).
pub const MESSAGE_LIMIT: usize = 2000;

/// Bytes of an input (or command line) a record quotes: past it, a prefix and the
/// size (a 50 MB line would otherwise make a 50 MB record).
pub const INPUT_QUOTE_LIMIT: usize = 4096;

/// `bytes` cut to at most `max` bytes, with `... (N bytes)` after the cut.
pub fn shorten_bytes(bytes: &[u8], max: usize) -> std::borrow::Cow<'_, [u8]> {
    if bytes.len() <= max {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let mut end = max;
    // Not in the middle of a character of a text (which would make it base64).
    if let Err(e) = std::str::from_utf8(&bytes[..max]) {
        if e.error_len().is_none() && std::str::from_utf8(&bytes[e.valid_up_to()..]).is_ok() {
            end = e.valid_up_to();
        }
    }
    let mut cut = bytes[..end].to_vec();
    cut.extend_from_slice(format!("... ({} bytes)", bytes.len()).as_bytes());
    std::borrow::Cow::Owned(cut)
}

impl Record {
    pub fn new(seq: u64, input: Vec<u8>, meta: JobMeta, result: Result<Outcome, Error>) -> Record {
        let result = match result {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(Failure::Output { message, .. })) => Err(ErrorInfo {
                kind: "output_error",
                message: shorten(&message, MESSAGE_LIMIT),
                signal: None,
                exit_code: None,
                stdout: Captured::default(),
                stderr: Captured::default(),
            }),
            Ok(Err(Failure::Decode(message))) => Err(ErrorInfo {
                kind: "decode",
                message: shorten(&message, MESSAGE_LIMIT),
                signal: None,
                exit_code: None,
                stdout: Captured::default(),
                stderr: Captured::default(),
            }),
            Ok(Err(Failure::Failed {
                message,
                exit_code,
                signal,
                stdout,
                stderr,
                ..
            })) => Err(ErrorInfo {
                kind: "failed",
                message: shorten(&message, MESSAGE_LIMIT),
                signal,
                exit_code,
                stdout,
                stderr,
            }),
            Err(e) => {
                let (signal, exit_code, _) = signal_and_code(&e);
                Err(ErrorInfo {
                    kind: kind_of(&e),
                    message: shorten(&supervisor_worker::error_chain(&e), MESSAGE_LIMIT),
                    signal,
                    exit_code,
                    stdout: Captured::default(),
                    stderr: Captured::default(),
                })
            }
        };
        Record {
            seq,
            input,
            meta,
            result,
            host: None,
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
        // A failure's record quotes a bounded prefix of its input (a 50 MB line made a
        // 100 MB record: the line, and the message quoting it); a success keeps it all.
        let input = match &self.result {
            Ok(_) => std::borrow::Cow::Borrowed(&self.input[..]),
            Err(_) => shorten_bytes(&self.input, INPUT_QUOTE_LIMIT),
        };
        let input = json_lines::Bytes::of(&input);
        let mut head = json_lines::RecordHead {
            attempts: self.meta.attempts,
            duration_ms: self.duration_ms(),
            error: None,
            exit_code: None,
            // Where a remote task ran, as the job log says it.
            host: self.host.as_deref().filter(|h| !h.is_empty()),
            input: None,
            input_base64: None,
            ok: self.ok(),
            output: None,
            pid: self.meta.pid,
            seq: self.seq,
        }
        .with_input(&input);
        let mut output = None;
        match &self.result {
            Ok(out) if out.json => {
                let bytes = out.text.to_vec()?;
                let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&bytes).into_owned())
                });
                head.output = Some(value);
            }
            Ok(out) => {
                // A command that succeeded exited with 0 (said, not left null).
                if command {
                    head.exit_code = Some(0);
                }
                output = Some(&out.text)
            }
            Err(e) => {
                head.error = Some(json_lines::RecordError {
                    exit_code: e.exit_code,
                    kind: e.kind,
                    message: &e.message,
                    signal: e.signal,
                });
                if command {
                    output = Some(&e.stdout);
                }
            }
        }
        thread_local! {
            /// The head's bytes, reused from record to record.
            static HEAD: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        HEAD.with_borrow_mut(|line| {
            line.clear();
            head.write_into(line).map_err(io::Error::other)?;
            match output {
                // Inline bytes (almost every output) join the head: one write.
                Some(data) if data.as_bytes().is_some() => {
                    line.pop();
                    match data.as_bytes() {
                        // Text with nothing to escape (a built-in task's answer): the
                        // bytes `write_field` writes, without its checks and calls.
                        Some(text) if json_lines::is_plain(text) => {
                            line.extend_from_slice(b",\"output\":\"");
                            line.extend_from_slice(text);
                            line.extend_from_slice(b"\"}\n");
                        }
                        _ => {
                            line.push(b',');
                            json_bytes::write_field(&mut *line, "output", data)?;
                            line.extend_from_slice(b"}\n");
                        }
                    }
                    w.write_all(line)
                }
                Some(data) => {
                    w.write_all(&line[..line.len() - 1])?;
                    w.write_all(b",")?;
                    json_bytes::write_field(w, "output", data)?;
                    w.write_all(b"}\n")
                }
                None => {
                    line.push(b'\n');
                    w.write_all(line)
                }
            }
        })
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
        self.write_failure(w)
    }

    /// The one line saying why the task failed (nothing if it did not).
    pub fn write_failure(&self, w: &mut dyn Write) -> io::Result<()> {
        if let Err(e) = &self.result {
            // The library's messages name the task's process; a command's own failure
            // gets it added. Never both (before: "stopped in pid 7: task `sleep` was
            // stopped in process 7: ...").
            let message = &e.message;
            let pid = self.meta.pid;
            // A remote task's failure says where it ran too, unless its message does
            // (`... (on host a)`, a delivery limit's `(hosts: a, b)`).
            let host = self.host.as_deref().filter(|h| {
                !h.is_empty()
                    && !message.contains(&format!("host {h}"))
                    && !message.contains("(hosts: ")
            });
            let on = host.map(|h| format!(" on host {h}")).unwrap_or_default();
            let at = if pid == 0 {
                format!(
                    " (before it ran{})",
                    host.map(|h| format!(", on host {h}")).unwrap_or_default()
                )
            } else if message.contains(&format!("process {pid}")) {
                host.map(|h| format!(" (on host {h})")).unwrap_or_default()
            } else {
                format!(" (worker {pid}{on})")
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

/// A `--results` directory's name for `value` (see [`Record::write_results`]), not yet
/// cut to [`NAME_MAX`].
fn result_name(value: &[u8]) -> Vec<u8> {
    match value {
        b"" => return b"\\e".to_vec(),
        b"." => return b"\\.".to_vec(),
        b".." => return b"\\..".to_vec(),
        _ => {}
    }
    let mut name = Vec::with_capacity(value.len());
    for &b in value {
        match b {
            b'/' => name.extend_from_slice(b"\\_"),
            b'\\' => name.extend_from_slice(b"\\\\"),
            b => name.push(b),
        }
    }
    name
}

/// The longest file name Linux file systems take, in bytes.
const NAME_MAX: usize = 255;

impl Record {
    /// `--results DIR`: the task's stdout and stderr (and its sequence number) in
    /// parallel's layout, `DIR/1/VALUE1/2/VALUE2/{seq,stdout,stderr}` (a `/` in a
    /// value is written `\_`, a `\` as `\\`; a name is cut to the 255 bytes a file
    /// name may have, as parallel cuts it). The values a file name cannot be get names
    /// no other value gets (a `\` is always doubled otherwise): `.` is `\.`, `..` is
    /// `\..` and an empty value `\e`. GNU parallel writes those into the level above,
    /// where they overwrite each other.
    pub fn write_results(&self, dir: &std::path::Path, values: &[Vec<u8>]) -> io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let mut path = dir.to_path_buf();
        for (i, value) in values.iter().enumerate() {
            let mut name = result_name(value);
            name.truncate(NAME_MAX);
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

    /// The end of the output: a last line without a newline stays so, as in GNU
    /// parallel (`--tag printf x%s ::: a b` prints `a\txab\txb`).
    pub fn finish(self) -> io::Result<()> {
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
