//! The one place where values become bytes and bytes become values.
//!
//! Everything that crosses a process boundary is encoded here with bincode 2 (serde
//! mode). Decoding is bounded: a peer can never make us allocate more than
//! [`DECODE_LIMIT`] bytes for one message, and a malformed message is an error value,
//! never a panic. Swapping the codec means changing this file only.

use serde::{de::DeserializeOwned, Serialize};

/// The largest message, in bytes, that [`decode`] will accept or allocate for, and
/// that [`encode`] will produce.
pub const DECODE_LIMIT: usize = 1 << 30;

/// The largest task argument or result, encoded: 64 MiB under [`DECODE_LIMIT`], room
/// for the message around it (a merged batch or a `map` chunk closes once it holds
/// more than 16 MiB, so one more value always fits). [`encode_value`] refuses anything
/// bigger the moment its encoding passes the limit, having stored at most 16 MiB of it,
/// so a caller learns of it from `apply` (a worker from its task's return), never from
/// a dying worker, and no copy of the value is made. Data this big belongs in shared
/// memory.
pub const MAX_VALUE: usize = DECODE_LIMIT - (64 << 20);

/// Bytes of arguments after which a merged batch or a `map` chunk takes no more.
pub const BATCH_BYTES: usize = 16 << 20;

/// The encoder's message when a value outgrows its limit.
const TOO_LARGE: &str = "the value outgrew its limit";

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// What bincode's decoder reported, in words. Its own `Display` is its `Debug`
/// (`OtherString("cannot open the queue ...")`); this says the message of an error a
/// decoded type raised (a refused handle) as it is, and the rest as bincode does.
#[derive(Debug)]
pub struct DecodeCause(pub bincode::error::DecodeError);

impl std::fmt::Display for DecodeCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            bincode::error::DecodeError::OtherString(m) => f.write_str(m),
            other => write!(f, "{other}"),
        }
    }
}

impl std::error::Error for DecodeCause {}

/// What bincode's encoder reported, in words (see [`DecodeCause`]).
#[derive(Debug)]
pub struct EncodeCause(pub bincode::error::EncodeError);

impl std::fmt::Display for EncodeCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            bincode::error::EncodeError::OtherString(m) => f.write_str(m),
            other => write!(f, "{other}"),
        }
    }
}

impl std::error::Error for EncodeCause {}

/// A value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Serialising a value failed (for example a map with a non-serialisable key).
    #[error("could not encode {type_name}")]
    Encode {
        /// The Rust type that was being encoded.
        type_name: &'static str,
        /// What the encoder reported.
        #[source]
        source: EncodeCause,
    },
    /// The bytes were not a valid encoding of the expected type.
    #[error("could not decode {type_name}")]
    Decode {
        /// The Rust type that was expected.
        type_name: &'static str,
        /// What the decoder reported.
        #[source]
        source: DecodeCause,
    },
    /// The message was said to be in shared memory that the receiving side does not
    /// hold (or beyond its end).
    #[error("could not decode {type_name}: the message is not where its frame says")]
    Misplaced {
        /// The Rust type that was expected.
        type_name: &'static str,
    },
    /// An encoded value is too long for the 32-bit length that would carry it (an
    /// argument in a `map` chunk).
    #[error(
        "could not encode {type_name}: {len} bytes is more than the 4 GiB a map argument \
         may take; pass data this big through shared memory"
    )]
    TooLong {
        /// The Rust type that was encoded.
        type_name: &'static str,
        /// Its encoded length.
        len: usize,
    },
    /// The value is larger than a message may carry.
    #[error(
        "could not encode {type_name}: it is larger than {limit} bytes, the most a task's \
         argument or result may take; pass data this big through shared memory"
    )]
    TooLarge {
        /// The Rust type that was encoded.
        type_name: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The bytes held a valid value followed by bytes that belong to nothing.
    #[error("could not decode {type_name}: {extra} trailing bytes")]
    Trailing {
        /// The Rust type that was expected.
        type_name: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
}

/// Encodes a message into a fresh buffer (at most [`DECODE_LIMIT`] bytes).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(SMALL_VALUE);
    append_capped(value, &mut out, DECODE_LIMIT)?;
    Ok(out)
}

/// Encodes a message at the end of `dst` (no buffer of its own); returns its length.
/// On error `dst` is left as it was.
pub fn encode_append<T: Serialize + ?Sized>(
    value: &T,
    dst: &mut Vec<u8>,
) -> Result<usize, CodecError> {
    append_capped(value, dst, DECODE_LIMIT)
}

/// Encodes a task's argument or result into a fresh buffer (at most [`MAX_VALUE`]
/// bytes).
pub fn encode_value<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(SMALL_VALUE);
    append_capped(value, &mut out, MAX_VALUE)?;
    Ok(out)
}

/// Encodes a message into a fresh buffer, at most `limit` bytes (and at most
/// [`DECODE_LIMIT`]): a Queue or Pipe item, refused as soon as it outgrows the buffer
/// it must fit in, before it is copied whole.
pub fn encode_within<T: Serialize + ?Sized>(
    value: &T,
    limit: usize,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(SMALL_VALUE);
    append_capped(value, &mut out, limit.min(DECODE_LIMIT))?;
    Ok(out)
}

/// What [`encode`] and [`encode_value`] reserve before they start: growing from
/// nothing reallocated four or five times for a line of text or a 64-byte message (a
/// twentieth of the CLI's time on tiny tasks).
const SMALL_VALUE: usize = 128;

/// [`encode_value`] at the end of `dst`; on error `dst` is left as it was.
pub fn encode_value_append<T: Serialize + ?Sized>(
    value: &T,
    dst: &mut Vec<u8>,
) -> Result<usize, CodecError> {
    append_capped(value, dst, MAX_VALUE)
}

/// Bytes a value is encoded straight into its buffer before the encoder stops storing
/// and only counts: a bigger value is measured to its end first (and refused the moment
/// it passes its limit, with nothing more than these bytes stored), then encoded again
/// into a buffer of its exact size. So a value over the limit costs the caller no copy
/// of itself, a value under it no growth of its buffer past its size, and values this
/// small (every Pipe or Queue message, nearly every argument) a single pass.
const STORE_FIRST: usize = 16 << 20;

/// Appends at most `room` bytes to a `Vec`, failing as soon as more come.
struct Capped<'a> {
    out: &'a mut Vec<u8>,
    room: usize,
}

impl bincode::enc::write::Writer for Capped<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        if bytes.len() > self.room {
            return Err(bincode::error::EncodeError::Other(TOO_LARGE));
        }
        self.room -= bytes.len();
        self.out.extend_from_slice(bytes);
        Ok(())
    }
}

/// Counts at most `room` bytes, failing as soon as more come; stores nothing.
struct Counted {
    room: usize,
}

impl bincode::enc::write::Writer for Counted {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        if bytes.len() > self.room {
            return Err(bincode::error::EncodeError::Other(TOO_LARGE));
        }
        self.room -= bytes.len();
        Ok(())
    }
}

/// Encodes `value` at the end of `dst`, at most `limit` bytes: straight into `dst` up
/// to [`STORE_FIRST`] bytes (one pass, the common case); past that, a pass that only
/// counts (and stops at the limit), then one into the exact room.
#[inline(always)]
fn append_capped<T: Serialize + ?Sized>(
    value: &T,
    dst: &mut Vec<u8>,
    limit: usize,
) -> Result<usize, CodecError> {
    let start = dst.len();
    let mut writer = Capped {
        out: dst,
        room: limit.min(STORE_FIRST),
    };
    match bincode::serde::encode_into_writer(value, &mut writer, config()) {
        Ok(()) => Ok(dst.len() - start),
        Err(bincode::error::EncodeError::Other(TOO_LARGE)) if limit > STORE_FIRST => {
            dst.truncate(start);
            append_measured(value, dst, limit)
        }
        Err(source) => Err(encode_failed::<T>(dst, start, limit, source)),
    }
}

/// [`append_capped`] for a value bigger than [`STORE_FIRST`]: measures it (stopping at
/// the limit), then encodes it into its exact room.
#[cold]
#[inline(never)]
fn append_measured<T: Serialize + ?Sized>(
    value: &T,
    dst: &mut Vec<u8>,
    limit: usize,
) -> Result<usize, CodecError> {
    let start = dst.len();
    let mut size = Counted { room: limit };
    if let Err(source) = bincode::serde::encode_into_writer(value, &mut size, config()) {
        return Err(encode_failed::<T>(dst, start, limit, source));
    }
    dst.reserve_exact(limit - size.room);
    let mut writer = Capped {
        out: dst,
        room: limit,
    };
    match bincode::serde::encode_into_writer(value, &mut writer, config()) {
        Ok(()) => Ok(dst.len() - start),
        Err(source) => Err(encode_failed::<T>(dst, start, limit, source)),
    }
}

/// Leaves `dst` as it was before `start` and names the error.
#[cold]
fn encode_failed<T: ?Sized>(
    dst: &mut Vec<u8>,
    start: usize,
    limit: usize,
    source: bincode::error::EncodeError,
) -> CodecError {
    dst.truncate(start);
    let type_name = std::any::type_name::<T>();
    match source {
        bincode::error::EncodeError::Other(TOO_LARGE) => CodecError::TooLarge { type_name, limit },
        source => CodecError::Encode {
            type_name,
            source: EncodeCause(source),
        },
    }
}

/// How many bytes [`encode`] would produce for `value` (a pass without copying).
pub fn encoded_size<T: Serialize + ?Sized>(value: &T) -> Result<usize, CodecError> {
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut size, config()).map_err(|source| {
        CodecError::Encode {
            type_name: std::any::type_name::<T>(),
            source: EncodeCause(source),
        }
    })?;
    Ok(size.bytes_written)
}

/// Encodes `value` into the start of `dst`, which must be large enough (see
/// [`encoded_size`]); returns the number of bytes written.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, dst: &mut [u8]) -> Result<usize, CodecError> {
    bincode::serde::encode_into_slice(value, dst, config()).map_err(|source| CodecError::Encode {
        type_name: std::any::type_name::<T>(),
        source: EncodeCause(source),
    })
}

/// Decodes a whole buffer as one `T`; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let type_name = std::any::type_name::<T>();
    let (value, used) = bincode::serde::decode_from_slice(bytes, config()).map_err(|source| {
        CodecError::Decode {
            type_name,
            source: DecodeCause(source),
        }
    })?;
    if used != bytes.len() {
        return Err(CodecError::Trailing {
            type_name,
            extra: bytes.len() - used,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_encode_into_agree_with_encode() {
        let value = (7u64, serde_bytes::ByteBuf::from(vec![9u8; 70_000]), "x");
        let bytes = encode(&value).unwrap();
        assert_eq!(encoded_size(&value).unwrap(), bytes.len());
        let mut dst = vec![0u8; bytes.len() + 10];
        assert_eq!(encode_into(&value, &mut dst).unwrap(), bytes.len());
        assert_eq!(&dst[..bytes.len()], &bytes[..]);
        assert!(encode_into(&value, &mut dst[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn a_value_past_what_is_stored_first_is_encoded_as_in_one_pass() {
        // Many small writes (bytes one by one) and one big write (a ByteBuf), each past
        // the bytes stored before the encoder only counts; appended after a prefix.
        let bytes = vec![7u8; STORE_FIRST + 3];
        let buf = serde_bytes::ByteBuf::from(vec![9u8; STORE_FIRST + 5]);
        for value in [(1u8, bytes.clone(), None), (2, vec![], Some(buf))] {
            let mut one_pass = Vec::new();
            let mut writer = Capped {
                out: &mut one_pass,
                room: usize::MAX,
            };
            bincode::serde::encode_into_writer(&value, &mut writer, config()).unwrap();
            let mut dst = vec![1, 2, 3];
            let len = encode_value_append(&value, &mut dst).unwrap();
            assert_eq!(len, one_pass.len());
            assert_eq!(&dst[..3], &[1, 2, 3]);
            assert!(dst[3..] == one_pass[..], "the encodings differ");
            let back: (u8, Vec<u8>, Option<serde_bytes::ByteBuf>) = decode(&dst[3..]).unwrap();
            assert_eq!(back, value);
        }
    }

    #[test]
    fn a_value_over_its_limit_is_refused_and_leaves_the_buffer_as_it_was() {
        let value = vec![7u8; STORE_FIRST * 2];
        for limit in [10, STORE_FIRST - 1, STORE_FIRST + 1, STORE_FIRST * 2] {
            let mut dst = vec![1, 2, 3];
            let e = append_capped(&value, &mut dst, limit).unwrap_err();
            assert!(
                matches!(e, CodecError::TooLarge { limit: l, .. } if l == limit),
                "{e:?}"
            );
            assert_eq!(dst, [1, 2, 3]);
        }
        // Exactly at the limit (its length takes 5 bytes: 0xfc and a u32).
        let mut dst = Vec::new();
        assert_eq!(
            append_capped(&value, &mut dst, STORE_FIRST * 2 + 5).unwrap(),
            STORE_FIRST * 2 + 5
        );
        assert_eq!(dst.capacity(), dst.len(), "not encoded into its exact room");
    }

    #[test]
    fn round_trips_nested_values() {
        let value = (7u64, String::from("héllo"), vec![Some(1.5f64), None]);
        let bytes = encode(&value).unwrap();
        let back: (u64, String, Vec<Option<f64>>) = decode(&bytes).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = decode::<(String, Vec<u64>)>(&bytes);
        }
        assert!(decode::<String>(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn huge_announced_length_does_not_allocate() {
        // A varint length of u64::MAX followed by nothing.
        let bytes = [0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        let err = decode::<Vec<u8>>(&bytes).unwrap_err();
        assert!(matches!(err, CodecError::Decode { .. }), "{err:?}");
    }

    #[test]
    fn trailing_bytes_are_reported() {
        let mut bytes = encode(&5u32).unwrap();
        bytes.push(0);
        let err = decode::<u32>(&bytes).unwrap_err();
        assert_eq!(err.to_string(), "could not decode u32: 1 trailing bytes");
    }
}
