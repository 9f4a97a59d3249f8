//! Bytes in JSON records, streamed: a field `"KEY":"..."` when the bytes are UTF-8,
//! else `"KEY_base64":"..."` (standard alphabet, padded). A spooled output of any size
//! is written in chunks, never held whole in memory.

use std::io::{self, Read, Write};

use base64::engine::general_purpose::STANDARD;
use base64::write::EncoderWriter;
use supervisor::Captured;

const CHUNK: usize = 64 << 10;

/// Whether everything `r` yields is UTF-8 (read in chunks; a character split across
/// two chunks is carried over).
fn is_utf8(mut r: impl Read) -> io::Result<bool> {
    let mut buf = vec![0u8; CHUNK + 4];
    let mut carry = 0;
    loop {
        let n = match r.read(&mut buf[carry..carry + CHUNK]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(carry == 0);
        }
        let end = carry + n;
        match std::str::from_utf8(&buf[..end]) {
            Ok(_) => carry = 0,
            Err(e) if e.error_len().is_none() => {
                let valid = e.valid_up_to();
                buf.copy_within(valid..end, 0);
                carry = end - valid;
            }
            Err(_) => return Ok(false),
        }
    }
}

/// Writes `bytes` (known to be UTF-8) as the inside of a JSON string: escapes are
/// gathered in a buffer written a chunk at a time, so output made mostly of control
/// characters (300 MB of NULs) costs a few writes per 64 KiB, not two per byte.
fn write_escaped(w: &mut dyn Write, bytes: &[u8]) -> io::Result<()> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Almost every output has nothing to escape: one write, no buffer.
    if !bytes.iter().any(|&b| needs_escape(b)) {
        return w.write_all(bytes);
    }
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len().min(CHUNK) + 8);
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        let clean = &bytes[start..i];
        if clean.len() >= CHUNK {
            // A long stretch with nothing to escape goes out as it is.
            w.write_all(&out)?;
            out.clear();
            w.write_all(clean)?;
        } else {
            out.extend_from_slice(clean);
        }
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
        start = i + 1;
        if out.len() >= CHUNK {
            w.write_all(&out)?;
            out.clear();
        }
    }
    w.write_all(&out)?;
    w.write_all(&bytes[start..])
}

/// Whether `b` is written escaped inside a JSON string.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Writes `"key":"..."` or `"key_base64":"..."` for `data` (see the module).
pub fn write_field(w: &mut dyn Write, key: &str, data: &Captured) -> io::Result<()> {
    // Inline bytes (almost every output) need no chunked reading nor buffers.
    if let Some(bytes) = data.as_bytes().filter(|b| std::str::from_utf8(b).is_ok()) {
        w.write_all(b"\"")?;
        w.write_all(key.as_bytes())?;
        w.write_all(b"\":\"")?;
        write_escaped(w, bytes)?;
        return w.write_all(b"\"");
    }
    if is_utf8(data.reader()?)? {
        write!(w, "\"{key}\":\"")?;
        let mut r = data.reader()?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            write_escaped(w, &buf[..n])?;
        }
    } else {
        write!(w, "\"{key}_base64\":\"")?;
        let mut enc = EncoderWriter::new(&mut *w, &STANDARD);
        data.write_to(&mut enc)?;
        enc.finish()?;
    }
    w.write_all(b"\"")
}

/// `"key":"..."` or `"key_base64":"..."` as a JSON object member, for small values
/// (what the records were made of before `json_lines`: the tests' reference).
#[cfg(test)]
pub fn field(key: &str, data: &[u8]) -> (String, serde_json::Value) {
    match std::str::from_utf8(data) {
        Ok(s) => (key.to_string(), serde_json::Value::String(s.to_string())),
        Err(_) => {
            use base64::Engine as _;
            (format!("{key}_base64"), STANDARD.encode(data).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(data: &[u8]) -> serde_json::Value {
        let mut out = b"{".to_vec();
        write_field(&mut out, "output", &Captured::from_bytes(data.to_vec())).unwrap();
        out.push(b'}');
        serde_json::from_slice(&out).expect("valid JSON")
    }

    #[test]
    fn utf8_is_a_string_and_anything_else_base64() {
        let text = "é \"q\" \\ \n\t\u{1}\u{7f} ✓".as_bytes();
        assert_eq!(render(text)["output"], std::str::from_utf8(text).unwrap());
        assert_eq!(render(b"caf\xe9")["output_base64"], "Y2Fm6Q==");
        assert_eq!(render(b"")["output"], "");
    }

    #[test]
    fn control_characters_are_escaped_and_read_back_the_same() {
        let mut data: Vec<u8> = (0u8..0x80).collect();
        data.extend(vec![0u8; 3 * CHUNK]);
        data.extend(vec![b'x'; 2 * CHUNK]);
        data.extend(b"\"\\\0end");
        let text = std::str::from_utf8(&data).unwrap();
        let mut out = b"\"".to_vec();
        write_escaped(&mut out, &data).unwrap();
        out.push(b'"');
        let back: String = serde_json::from_slice(&out).expect("valid JSON");
        assert!(back == text, "the escaped string reads back different");
        assert!(out.len() < data.len() * 6 + 2);
    }

    /// 300 MB of NULs took 40 s: two writes (one through `fmt`) per byte.
    #[test]
    fn output_of_control_characters_is_escaped_in_a_few_writes_per_chunk() {
        struct Counting(usize, usize);
        impl Write for Counting {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0 += 1;
                self.1 += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let data = vec![0u8; 1 << 20];
        let mut w = Counting(0, 0);
        write_escaped(&mut w, &data).unwrap();
        assert_eq!(w.1, 6 << 20);
        assert!(w.0 <= 6 * 16 + 2, "{} writes for 1 MiB", w.0);
    }

    #[test]
    fn a_character_split_across_chunks_is_still_utf8() {
        let mut data = vec![b'a'; CHUNK - 1];
        data.extend("é".as_bytes());
        assert!(is_utf8(&data[..]).unwrap());
        data.push(0xff);
        assert!(!is_utf8(&data[..]).unwrap());
        assert!(!is_utf8(&b"\xc3"[..]).unwrap());
    }
}
