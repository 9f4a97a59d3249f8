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
        if let Some(thousandths) = thousandths(*self) {
            put_thousandths(thousandths, out);
        } else if self.is_finite() {
            out.extend_from_slice(zmij::Buffer::new().format_finite(*self).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
    }
}

/// `v` as a whole number of thousandths, if it is one (as every `duration_ms` is: whole
/// microseconds), at least 0 and under 10^12 of them. Then the shortest decimal that
/// reads back as `v` (what zmij writes) is that number's, with its trailing zeros
/// dropped: decimals of 3 places are 0.001 apart, far wider than `v`'s rounding
/// interval (under 2^-13 below 10^9), so no shorter one reads back as `v`.
fn thousandths(v: f64) -> Option<u64> {
    if !(0.0..1e9).contains(&v) || v.is_sign_negative() {
        return None;
    }
    let n = (v * 1000.0).round();
    // Exact: `n` and 1000 are exact doubles and the division rounds once.
    (n / 1000.0 == v).then_some(n as u64)
}

/// Writes `n` thousandths as zmij writes the double nearest them: `12.5`, `0.035`,
/// `7.0` (a whole number keeps `.0`).
fn put_thousandths(n: u64, out: &mut Vec<u8>) {
    let (whole, mut frac) = (n / 1000, n % 1000);
    out.extend_from_slice(itoa::Buffer::new().format(whole).as_bytes());
    out.push(b'.');
    if frac == 0 {
        out.push(b'0');
        return;
    }
    let digits = [
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ];
    let mut len = 3;
    while frac % 10 == 0 {
        frac /= 10;
        len -= 1;
    }
    out.extend_from_slice(&digits[..len]);
}

impl Scalar for bool {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

/// Whether `bytes` are UTF-8 with nothing to escape in a JSON string: written between
/// quotes as they are, by serde_json and by `json_bytes` alike.
pub fn is_plain(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|&b| (0x20..0x80).contains(&b) && b != b'"' && b != b'\\')
        || (bytes.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
            && std::str::from_utf8(bytes).is_ok())
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

    #[inline(always)]
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
    #[inline(always)]
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
    #[inline(always)]
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
mod tests;
