//! The lines are the bytes serde_json (and, before, the map of values) made.

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
        (
            b"u".to_vec(),
            Ok(output("caf\u{e9} \u{2713}\u{7f}", false)),
            None,
        ),
        (
            b"b".to_vec(),
            Ok(Output {
                text: Captured::from_bytes(b"ok\xff\xfe".to_vec()),
                ..output("", false)
            }),
            None,
        ),
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
            start_errno: None,
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

/// Durations written as thousandths are zmij's bytes: every count of microseconds
/// up to 3 s, a spread of larger ones up to the fast path's end, the doubles next to
/// them (not whole thousandths) and values outside it.
#[test]
fn thousandths_are_written_as_zmij_writes_them() {
    let zmij = |v: f64| zmij::Buffer::new().format_finite(v).to_string();
    let ours = |v: f64| {
        let mut out = Vec::new();
        v.put(&mut out);
        String::from_utf8(out).unwrap()
    };
    let mut micros: Vec<u64> = (0..3_000_000).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..300_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        micros.push(x % 1_000_000_000_000);
    }
    micros.extend([999_999_999_999, 1_000_000_000_000, 1 << 40, 123_456_789_000]);
    let mut fast = 0;
    for us in micros {
        // As the records compute it from a duration.
        let v = (Duration::from_micros(us).as_secs_f64() * 1e6).round() / 1000.0;
        fast += usize::from(thousandths(v).is_some());
        assert_eq!(ours(v), zmij(v), "{us} us");
        for near in [v.next_up(), v.next_down()] {
            assert_eq!(ours(near), zmij(near), "next to {us} us");
        }
    }
    assert!(fast > 3_000_000, "the fast path was taken {fast} times");
    for v in [-0.0, -0.001, -5.0, 1e9, 1e9 + 0.5, 1e12, 1e-4, 0.0005] {
        assert_eq!(ours(v), zmij(v), "{v}");
    }
}
