//! How a CLI [`Job`] and its [`Output`] cross to a worker and back (bincode, through
//! serde): a built-in task's job and output in a compact form that carries only what a
//! built-in has, command mode's in full.
//!
//! Most of [`Job`]'s and [`Output`]'s fields are command mode's (argv, `{%}` slots,
//! streams, a command's pid and stderr). A run of tiny built-in tasks encodes and
//! decodes one job and one output per input line on the run's main thread, so those
//! fields cost it per line for nothing. Each side picks the compact form only when
//! every field it leaves out has its default value, and decoding gives those defaults
//! back: the value that arrives is the value that was sent, whichever form carried it.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_bytes::ByteBuf;
use supervisor::Captured;

use super::tasks::{Job, Output, Stream};

/// A [`Job`] as it is sent (borrowed from it).
#[derive(Serialize)]
enum JobOut<'a> {
    /// A job with no command-mode field set.
    Task {
        line: &'a str,
        seq: u64,
        args: &'a BTreeMap<String, String>,
    },
    /// Any job.
    Full {
        line: &'a str,
        seq: u64,
        args: &'a BTreeMap<String, String>,
        argv: &'a [ByteBuf],
        slots: &'a [(u32, u32)],
        stream: Stream,
        tag: &'a Option<ByteBuf>,
        lock: &'a Option<ByteBuf>,
    },
}

/// A [`Job`] as it arrives: the variants of [`JobOut`], in its order.
#[derive(Deserialize)]
enum JobIn {
    Task {
        line: String,
        seq: u64,
        args: BTreeMap<String, String>,
    },
    Full {
        line: String,
        seq: u64,
        args: BTreeMap<String, String>,
        argv: Vec<ByteBuf>,
        slots: Vec<(u32, u32)>,
        stream: Stream,
        tag: Option<ByteBuf>,
        lock: Option<ByteBuf>,
    },
}

impl Serialize for Job {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let built_in = self.argv.is_empty()
            && self.slots.is_empty()
            && self.stream == Stream::default()
            && self.tag.is_none()
            && self.lock.is_none();
        let (line, seq, args) = (self.line.as_str(), self.seq, &self.args);
        if built_in {
            JobOut::Task { line, seq, args }.serialize(s)
        } else {
            JobOut::Full {
                line,
                seq,
                args,
                argv: &self.argv,
                slots: &self.slots,
                stream: self.stream,
                tag: &self.tag,
                lock: &self.lock,
            }
            .serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Job {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Job, D::Error> {
        Ok(match JobIn::deserialize(d)? {
            JobIn::Task { line, seq, args } => Job {
                line,
                seq,
                args,
                argv: Vec::new(),
                slots: Vec::new(),
                stream: Stream::default(),
                tag: None,
                lock: None,
            },
            JobIn::Full {
                line,
                seq,
                args,
                argv,
                slots,
                stream,
                tag,
                lock,
            } => Job {
                line,
                seq,
                args,
                argv,
                slots,
                stream,
                tag,
                lock,
            },
        })
    }
}

/// An [`Output`] as it is sent (borrowed from it).
#[derive(Serialize)]
enum OutputOut<'a> {
    /// Text in memory, and nothing else a command has (stderr, pid, slot).
    Text {
        #[serde(with = "serde_bytes")]
        text: &'a [u8],
        json: bool,
    },
    /// Any output.
    Full {
        text: &'a Captured,
        stderr: &'a Captured,
        json: bool,
        pid: u32,
        slot: u32,
    },
}

/// An [`Output`] as it arrives: the variants of [`OutputOut`], in its order.
#[derive(Deserialize)]
enum OutputIn {
    Text {
        text: BytesIn,
        json: bool,
    },
    Full {
        text: Captured,
        stderr: Captured,
        json: bool,
        pid: u32,
        slot: u32,
    },
}

impl Serialize for Output {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bare = self.pid == 0 && self.slot == 0 && self.stderr.as_bytes() == Some(&[][..]);
        match self.text.as_bytes() {
            Some(text) if bare => OutputOut::Text {
                text,
                json: self.json,
            }
            .serialize(s),
            _ => OutputOut::Full {
                text: &self.text,
                stderr: &self.stderr,
                json: self.json,
                pid: self.pid,
                slot: self.slot,
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Output {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Output, D::Error> {
        Ok(match OutputIn::deserialize(d)? {
            OutputIn::Text { text, json } => Output {
                text: Captured::from_bytes(text.0),
                stderr: Captured::default(),
                json,
                pid: 0,
                slot: 0,
            },
            OutputIn::Full {
                text,
                stderr,
                json,
                pid,
                slot,
            } => Output {
                text,
                stderr,
                json,
                pid,
                slot,
            },
        })
    }
}

/// Bytes as they arrive, the same encoding as [`ByteBuf`]'s: asked for as bytes,
/// which a decoder over a buffer lends, so they are copied once into a vector made for
/// them (a `ByteBuf` asks for a vector of its own: bincode zeroes one, then copies).
struct BytesIn(Vec<u8>);

impl<'de> Deserialize<'de> for BytesIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<BytesIn, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = BytesIn;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }

            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<BytesIn, E> {
                Ok(BytesIn(v.to_vec()))
            }

            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<BytesIn, E> {
                Ok(BytesIn(v))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<BytesIn, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(b) = seq.next_element()? {
                    bytes.push(b);
                }
                Ok(BytesIn(bytes))
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(line: &str) -> Job {
        Job {
            line: line.to_string(),
            seq: 7,
            args: BTreeMap::from([("rounds".to_string(), "3".to_string())]),
            argv: Vec::new(),
            slots: Vec::new(),
            stream: Stream::Group,
            tag: None,
            lock: None,
        }
    }

    fn round_trip<T: Serialize + for<'de> Deserialize<'de>>(value: &T) -> (T, usize) {
        let bytes = supervisor_worker::codec::encode(value).unwrap();
        (
            supervisor_worker::codec::decode(&bytes).unwrap(),
            bytes.len(),
        )
    }

    /// Every field of a job arrives as it was sent, in either form, and a built-in's
    /// job takes the compact one.
    #[test]
    fn jobs_arrive_as_they_were_sent_in_either_form() {
        let plain = job("0ms");
        let (back, compact) = round_trip(&plain);
        assert_eq!(format!("{back:?}"), format!("{plain:?}"));
        let variants: [fn(&mut Job); 5] = [
            |j| j.argv = vec![ByteBuf::from(b"echo".to_vec())],
            |j| j.slots = vec![(1, 2)],
            |j| j.stream = Stream::Lines,
            |j| j.tag = Some(ByteBuf::from(b"t".to_vec())),
            |j| j.lock = Some(ByteBuf::from(b"/proc/1/fd/3".to_vec())),
        ];
        for change in variants {
            let mut full = job("0ms");
            change(&mut full);
            let (back, size) = round_trip(&full);
            assert_eq!(format!("{back:?}"), format!("{full:?}"));
            assert!(size > compact, "{full:?}: {size} bytes, compact {compact}");
        }
    }

    fn fields(o: &Output) -> (Option<Vec<u8>>, Option<Vec<u8>>, bool, u32, u32) {
        let bytes = |c: &Captured| c.as_bytes().map(<[u8]>::to_vec);
        (bytes(&o.text), bytes(&o.stderr), o.json, o.pid, o.slot)
    }

    /// Every field of an output arrives as it was sent, in either form.
    #[test]
    fn outputs_arrive_as_they_were_sent_in_either_form() {
        let output = |stderr: &str, pid, slot, json| Output {
            text: Captured::from_bytes(b"0s\n\"x\"".to_vec()),
            stderr: Captured::from_bytes(stderr.as_bytes().to_vec()),
            json,
            pid,
            slot,
        };
        let (_, compact) = round_trip(&output("", 0, 0, false));
        for sent in [
            output("", 0, 0, false),
            output("", 0, 0, true),
            output("warning", 0, 0, false),
            output("", 41, 0, false),
            output("", 0, 2, true),
        ] {
            let (back, size) = round_trip(&sent);
            assert_eq!(fields(&back), fields(&sent));
            let bare = sent.stderr.is_empty() && sent.pid == 0 && sent.slot == 0;
            assert_eq!(size == compact, bare, "{sent:?}: {size} bytes");
        }
        // The compact form's text, of any length and bytes.
        for text in [Vec::new(), (0..=255u8).cycle().take(70_000).collect()] {
            let sent = Output {
                text: Captured::from_bytes(text),
                ..output("", 0, 0, false)
            };
            assert_eq!(fields(&round_trip(&sent).0), fields(&sent));
        }
    }
}
