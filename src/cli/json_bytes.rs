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

/// Writes `bytes` (known to be UTF-8) as the inside of a JSON string.
fn write_escaped(w: &mut dyn Write, bytes: &[u8]) -> io::Result<()> {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        w.write_all(&bytes[start..i])?;
        if esc.is_empty() {
            write!(w, "\\u{b:04x}")?;
        } else {
            w.write_all(esc)?;
        }
        start = i + 1;
    }
    w.write_all(&bytes[start..])
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

/// `"key":"..."` or `"key_base64":"..."` as a JSON object member, for small values.
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
    fn a_character_split_across_chunks_is_still_utf8() {
        let mut data = vec![b'a'; CHUNK - 1];
        data.extend("é".as_bytes());
        assert!(is_utf8(&data[..]).unwrap());
        data.push(0xff);
        assert!(!is_utf8(&data[..]).unwrap());
        assert!(!is_utf8(&b"\xc3"[..]).unwrap());
    }
}
