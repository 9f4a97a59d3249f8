//! The JSON lines of a run (the `--format json` record's head, the JSON job log's
//! line) as structs serialised straight into the output: no map of values built per
//! task. Their fields are in the order a JSON object with sorted keys has them (the
//! order these lines always had), and a field that is absent is not written, one that
//! is `null` is.

use serde::Serialize;
use serde_json::Value;

/// A field `"KEY"` (text) or `"KEY_base64"` (anything else) of bytes.
pub enum Bytes<'a> {
    Text(&'a str),
    Base64(String),
}

impl<'a> Bytes<'a> {
    /// `data` as text if it is UTF-8, else in base64.
    pub fn of(data: &'a [u8]) -> Bytes<'a> {
        match std::str::from_utf8(data) {
            Ok(s) => Bytes::Text(s),
            Err(_) => {
                use base64::Engine as _;
                Bytes::Base64(base64::engine::general_purpose::STANDARD.encode(data))
            }
        }
    }

    /// The text, if it is text.
    pub fn text(&self) -> Option<&str> {
        match self {
            Bytes::Text(s) => Some(s),
            Bytes::Base64(_) => None,
        }
    }

    /// The base64 form, if it is not text.
    pub fn base64(&self) -> Option<&str> {
        match self {
            Bytes::Text(_) => None,
            Bytes::Base64(s) => Some(s),
        }
    }
}

/// The head of a `--format json` record: everything but a streamed `"output"`.
#[derive(Serialize)]
pub struct RecordHead<'a> {
    pub attempts: u32,
    pub duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RecordError<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_base64: Option<&'a str>,
    pub ok: bool,
    /// A JSON value the task gave (`whoami`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    pub pid: u32,
    pub seq: u64,
}

/// A failed record's `"error"`.
#[derive(Serialize)]
pub struct RecordError<'a> {
    pub exit_code: Option<i32>,
    pub kind: &'a str,
    pub message: &'a str,
    pub signal: Option<i32>,
}

/// A JSON object written member by member into a line: each key as it is (every key
/// here is plain ASCII, nothing to escape), each value as serde_json writes it. The
/// same bytes as serde_json gives the struct (its compact form), without escaping a
/// dozen keys per line, and numbers, flags and plain strings written straight into the
/// line (through serde_json's writer, small copies were a sixth of the CLI's main
/// thread with a JSON job log).
struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

/// A value of a line that is written without serde: the bytes serde_json writes for it.
trait Scalar {
    fn put(&self, out: &mut Vec<u8>);
}

macro_rules! integer_scalar {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(itoa::Buffer::new().format(*self).as_bytes());
            }
        }
    )*};
}
integer_scalar!(u32, u64, i32);

impl Scalar for f64 {
    fn put(&self, out: &mut Vec<u8>) {
        // serde_json writes what is not finite as null, the rest as zmij formats it.
        if self.is_finite() {
            out.extend_from_slice(zmij::Buffer::new().format_finite(*self).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
    }
}

impl Scalar for bool {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

impl Scalar for str {
    fn put(&self, out: &mut Vec<u8>) {
        // A string with nothing to escape (nearly every input line) as it is; any
        // other through serde_json, so the escapes are its own.
        if self.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            out.push(b'"');
            out.extend_from_slice(self.as_bytes());
            out.push(b'"');
        } else {
            // Writing into a Vec cannot fail, and a str always serialises.
            let _ = serde_json::to_writer(&mut *out, self);
        }
    }
}

impl<T: Scalar + ?Sized> Scalar for &T {
    fn put(&self, out: &mut Vec<u8>) {
        (**self).put(out)
    }
}

impl<T: Scalar> Scalar for Option<T> {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            Some(v) => v.put(out),
            None => out.extend_from_slice(b"null"),
        }
    }
}

impl<'a> Object<'a> {
    fn start(out: &'a mut Vec<u8>) -> Object<'a> {
        out.push(b'{');
        Object { out, empty: true }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A member whose value is written straight into the line.
    fn member<T: Scalar + ?Sized>(&mut self, key: &str, value: &T) {
        self.key(key);
        value.put(self.out);
    }

    /// A member whose value serde_json writes (an error object, a task's JSON value).
    fn member_serde<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> serde_json::Result<()> {
        self.key(key);
        serde_json::to_writer(&mut *self.out, value)
    }

    /// The member if `value` is there (a field serde skips when it is `None`).
    fn some<T: Scalar>(&mut self, key: &str, value: &Option<T>) {
        if let Some(v) = value {
            self.member(key, v);
        }
    }

    fn end(self) {
        self.out.push(b'}');
    }
}

impl<'a> RecordHead<'a> {
    /// Appends the head to `out`: the bytes `serde_json::to_writer` gives it.
    pub fn write_into(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let mut o = Object::start(out);
        o.member("attempts", &self.attempts);
        o.member("duration_ms", &self.duration_ms);
        if let Some(error) = &self.error {
            o.member_serde("error", error)?;
        }
        o.some("exit_code", &self.exit_code);
        o.some("host", &self.host);
        o.some("input", &self.input);
        o.some("input_base64", &self.input_base64);
        o.member("ok", &self.ok);
        if let Some(output) = &self.output {
            o.member_serde("output", output)?;
        }
        o.member("pid", &self.pid);
        o.member("seq", &self.seq);
        o.end();
        Ok(())
    }

    /// Sets the input field.
    pub fn with_input(mut self, input: &'a Bytes<'a>) -> Self {
        self.input = input.text();
        self.input_base64 = input.base64();
        self
    }
}

/// A line of the JSON job log.
#[derive(Serialize)]
pub struct JoblogLine<'a> {
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_base64: Option<&'a str>,
    /// Command mode only: the command's pid, `null` when none ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_pid: Option<Option<u32>>,
    pub duration_ms: f64,
    pub exit_code: Option<i32>,
    /// A remote run only: the agent's host, `null` when the task reached none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_base64: Option<&'a str>,
    pub outcome: &'a str,
    pub peak_rss_kib: Option<u64>,
    pub pid: u32,
    pub seq: u64,
    pub signal: Option<i32>,
    pub start: Option<f64>,
}

impl JoblogLine<'_> {
    /// Appends the line to `out`: the bytes `serde_json::to_writer` gives it.
    pub fn write_into(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let mut o = Object::start(out);
        o.member("attempts", &self.attempts);
        o.some("command", &self.command);
        o.some("command_base64", &self.command_base64);
        o.some("command_pid", &self.command_pid);
        o.member("duration_ms", &self.duration_ms);
        o.member("exit_code", &self.exit_code);
        o.some("host", &self.host);
        o.some("input", &self.input);
        o.some("input_base64", &self.input_base64);
        o.member("outcome", self.outcome);
        o.member("peak_rss_kib", &self.peak_rss_kib);
        o.member("pid", &self.pid);
        o.member("seq", &self.seq);
        o.member("signal", &self.signal);
        o.member("start", &self.start);
        o.end();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use serde_json::json;
    use supervisor::{Captured, Error, ErrorKind, JobMeta};

    use super::super::json_bytes;
    use super::super::report::{self, shorten_bytes, ErrorInfo, Record, INPUT_QUOTE_LIMIT};
    use super::super::tasks::{Failure, Outcome, Output};
    use super::*;

    /// The record's line as it was made before (a map of values, keys sorted).
    fn record_reference(r: &Record, command: bool) -> Vec<u8> {
        let input = match &r.result {
            Ok(_) => std::borrow::Cow::Borrowed(&r.input[..]),
            Err(_) => shorten_bytes(&r.input, INPUT_QUOTE_LIMIT),
        };
        let (k, v) = json_bytes::field("input", &input);
        let duration_ms = (r.meta.duration.as_secs_f64() * 1e6).round() / 1000.0;
        let mut head = json!({
            "seq": r.seq, "ok": r.ok(), "pid": r.meta.pid, "attempts": r.meta.attempts,
            "duration_ms": duration_ms,
        });
        if let Some(host) = r.host.as_deref().filter(|h| !h.is_empty()) {
            head["host"] = host.into();
        }
        head[k] = v;
        let mut output = None;
        match &r.result {
            Ok(out) if out.json => {
                let bytes = out.text.to_vec().unwrap();
                head["output"] = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
            }
            Ok(out) => {
                if command {
                    head["exit_code"] = 0.into();
                }
                output = Some(&out.text);
            }
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
        let mut line = serde_json::to_vec(&head).unwrap();
        if let Some(data) = output {
            line.pop();
            line.push(b',');
            json_bytes::write_field(&mut line, "output", data).unwrap();
            line.push(b'}');
        }
        line.push(b'\n');
        line
    }

    fn output(text: &str, json: bool) -> Output {
        Output {
            text: Captured::from(text.to_string()),
            stderr: Captured::default(),
            json,
            pid: 0,
            slot: 0,
        }
    }

    fn meta(duration_us: u64) -> JobMeta {
        JobMeta {
            pid: 4242,
            attempts: 2,
            started: Some(UNIX_EPOCH + Duration::from_micros(1_764_000_000_123_456)),
            duration: Duration::from_nanos(duration_us * 1000 + 789),
        }
    }

    /// The records' lines are the same bytes as the map of values made: every field,
    /// in the same order, absent and null where they were.
    #[test]
    fn record_lines_are_the_bytes_the_value_map_made() {
        let failure = || ErrorInfo {
            kind: "failed",
            message: "it \"broke\"\n".to_string(),
            signal: Some(9),
            exit_code: None,
            stdout: Captured::from("partial".to_string()),
            stderr: Captured::default(),
        };
        let long = vec![b'x'; INPUT_QUOTE_LIMIT + 10];
        #[expect(clippy::type_complexity)]
        let cases: Vec<(Vec<u8>, Result<Output, ErrorInfo>, Option<&str>)> = vec![
            (b"0ms".to_vec(), Ok(output("0s", false)), None),
            (
                b"caf\xe9".to_vec(),
                Ok(output("x\u{1}\"y", false)),
                Some("a"),
            ),
            (
                b"w".to_vec(),
                Ok(output(r#"{"pid":1,"b":[2]}"#, true)),
                Some(""),
            ),
            (b"w".to_vec(), Ok(output("not json", true)), None),
            (b"bad \"line\"".to_vec(), Err(failure()), Some("h")),
            (long.clone(), Err(failure()), None),
            (long, Ok(output("", false)), None),
        ];
        for (i, (input, result, host)) in cases.into_iter().enumerate() {
            let record = Record {
                seq: i as u64 + 1,
                input,
                meta: meta(1500 + i as u64),
                result,
                host: host.map(str::to_string),
            };
            for command in [false, true] {
                let mut ours = Vec::new();
                record.write_json(&mut ours, command).unwrap();
                let theirs = record_reference(&record, command);
                assert_eq!(
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&theirs),
                    "case {i}, command {command}"
                );
            }
        }
    }

    /// The job log's line as it was made before.
    #[expect(clippy::too_many_arguments)]
    fn joblog_reference(
        seq: u64,
        input: &[u8],
        command: Option<&[u8]>,
        outcome: &str,
        signal: Option<i32>,
        exit_code: Option<i32>,
        peak: Option<u64>,
        command_pid: u32,
        meta: &JobMeta,
        host: Option<&str>,
    ) -> Vec<u8> {
        let start = meta
            .started
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64());
        let duration_ms = (meta.duration.as_secs_f64() * 1e6).round() / 1000.0;
        let mut line = json!({
            "seq": seq, "pid": meta.pid, "start": start, "duration_ms": duration_ms,
            "outcome": outcome, "signal": signal, "exit_code": exit_code,
            "peak_rss_kib": peak, "attempts": meta.attempts,
        });
        if command.is_some() {
            line["command_pid"] = if command_pid == 0 {
                Value::Null
            } else {
                command_pid.into()
            };
        }
        let (k, v) = json_bytes::field("input", &shorten_bytes(input, INPUT_QUOTE_LIMIT));
        line[k] = v;
        if let Some(command) = command {
            let (k, v) = json_bytes::field("command", &shorten_bytes(command, INPUT_QUOTE_LIMIT));
            line[k] = v;
        }
        if let Some(host) = host {
            line["host"] = if host.is_empty() {
                Value::Null
            } else {
                json!(host)
            };
        }
        serde_json::to_vec(&line).unwrap()
    }

    /// The JSON job log's lines are the same bytes as the map of values made.
    #[test]
    fn joblog_lines_are_the_bytes_the_value_map_made() {
        let ok = |pid| -> Result<Outcome, Error> {
            Ok(Ok(Output {
                pid,
                ..output("done", false)
            }))
        };
        let failed = || -> Result<Outcome, Error> {
            Ok(Err(Failure::Failed {
                message: "exit 3".into(),
                exit_code: Some(3),
                signal: None,
                stdout: Captured::default(),
                stderr: Captured::default(),
                pid: 77,
                slot: 1,
            }))
        };
        let terminated = || -> Result<Outcome, Error> {
            Err(ErrorKind::Terminated {
                task: "sleep".into(),
            }
            .into())
        };
        let long = vec![b'y'; INPUT_QUOTE_LIMIT * 2];
        let mut not_started = meta(0);
        not_started.started = None;
        #[expect(clippy::type_complexity)]
        let cases: Vec<(
            &[u8],
            Option<&[u8]>,
            Result<Outcome, Error>,
            (&str, Option<i32>, Option<i32>, Option<u64>, u32),
            JobMeta,
            Option<&str>,
        )> = vec![
            (
                b"0ms",
                None,
                ok(0),
                ("ok", None, None, Some(100), 0),
                meta(3),
                None,
            ),
            (
                b"a\xff",
                Some(b"echo a\xff"),
                ok(55),
                ("ok", None, Some(0), Some(100), 55),
                meta(40),
                Some("h1"),
            ),
            (
                b"x",
                Some(b"false x"),
                failed(),
                ("failed", None, Some(3), Some(100), 77),
                meta(2),
                Some(""),
            ),
            (
                &long,
                Some(&long),
                terminated(),
                ("terminated", None, None, Some(100), 0),
                not_started,
                None,
            ),
            (
                b"t",
                Some(b"cmd"),
                ok(0),
                ("ok", None, Some(0), Some(100), 0),
                meta(9),
                None,
            ),
        ];
        for (i, (input, command, result, expected, meta, host)) in cases.into_iter().enumerate() {
            let mut ours = Vec::new();
            report::write_joblog_json(
                &mut ours,
                i as u64 + 1,
                input,
                command,
                &result,
                &meta,
                Some(100),
                host,
            )
            .unwrap();
            let (outcome, signal, exit_code, peak, command_pid) = expected;
            let outcome = match &result {
                Err(e) => report::kind_of(e),
                Ok(_) => outcome,
            };
            let theirs = joblog_reference(
                i as u64 + 1,
                input,
                command,
                outcome,
                signal,
                exit_code,
                peak,
                command_pid,
                &meta,
                host,
            );
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs),
                "case {i}"
            );
        }
    }

    /// The hand-written lines are the bytes serde_json gives the structs, whichever
    /// fields are there, null or absent, whatever their text or number.
    #[test]
    fn written_lines_are_serde_jsons_bytes() {
        let texts = [
            None,
            Some("plain"),
            Some("q\"uo\\te\n\u{8}\u{c}\u{1f}é\u{7f}"),
        ];
        let floats = [
            0.0,
            0.037,
            1796417207.2899263,
            1e21,
            5.0,
            f64::NAN,
            f64::INFINITY,
        ];
        for (i, text) in texts.iter().enumerate() {
            for (j, &f) in floats.iter().enumerate() {
                let some = (i + j) % 2 == 0;
                let error = RecordError {
                    exit_code: some.then_some(-3),
                    kind: "failed",
                    message: text.unwrap_or(""),
                    signal: (!some).then_some(9),
                };
                let head = RecordHead {
                    attempts: j as u32,
                    duration_ms: f,
                    error: some.then_some(error),
                    exit_code: (!some).then_some(0),
                    host: *text,
                    input: *text,
                    input_base64: text.map(|_| "AAE="),
                    ok: some,
                    output: text.map(|t| serde_json::json!({"k": t, "n": [1, 2.5]})),
                    pid: u32::MAX,
                    seq: u64::MAX - j as u64,
                };
                let mut ours = Vec::new();
                head.write_into(&mut ours).unwrap();
                assert_eq!(ours, serde_json::to_vec(&head).unwrap(), "head {i} {j}");
                let line = JoblogLine {
                    attempts: i as u32,
                    command: *text,
                    command_base64: text.map(|_| "Yw=="),
                    command_pid: text.map(|_| some.then_some(41)),
                    duration_ms: f,
                    exit_code: some.then_some(i32::MIN),
                    host: text.map(|t| some.then_some(t)),
                    input: *text,
                    input_base64: (!some).then_some("AAE="),
                    outcome: text.unwrap_or("ok"),
                    peak_rss_kib: some.then_some(6324),
                    pid: 0,
                    seq: j as u64,
                    signal: (!some).then_some(15),
                    start: some.then_some(f),
                };
                let mut ours = Vec::new();
                line.write_into(&mut ours).unwrap();
                assert_eq!(ours, serde_json::to_vec(&line).unwrap(), "line {i} {j}");
            }
        }
    }
}
