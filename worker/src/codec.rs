//! The one place where values become bytes and bytes become values.
//!
//! Everything that crosses a process boundary is encoded here with bincode 2 (serde
//! mode). Decoding is bounded: a peer can never make us allocate more than
//! [`DECODE_LIMIT`] bytes for one message, and a malformed message is an error value,
//! never a panic. Swapping the codec means changing this file only.

use serde::{de::DeserializeOwned, Serialize};

/// The largest message, in bytes, that [`decode`] will accept or allocate for.
pub const DECODE_LIMIT: usize = 1 << 30;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

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
        source: bincode::error::EncodeError,
    },
    /// The bytes were not a valid encoding of the expected type.
    #[error("could not decode {type_name}")]
    Decode {
        /// The Rust type that was expected.
        type_name: &'static str,
        /// What the decoder reported.
        #[source]
        source: bincode::error::DecodeError,
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
    /// The bytes held a valid value followed by bytes that belong to nothing.
    #[error("could not decode {type_name}: {extra} trailing bytes")]
    Trailing {
        /// The Rust type that was expected.
        type_name: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
}

/// Encodes `value` into a fresh buffer.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|source| CodecError::Encode {
        type_name: std::any::type_name::<T>(),
        source,
    })
}

/// Encodes `value` at the end of `dst` (no buffer of its own); returns its length.
/// On error `dst` is left as it was.
pub fn encode_append<T: Serialize + ?Sized>(
    value: &T,
    dst: &mut Vec<u8>,
) -> Result<usize, CodecError> {
    let start = dst.len();
    match bincode::serde::encode_into_std_write(value, dst, config()) {
        Ok(written) => Ok(written),
        Err(source) => {
            dst.truncate(start);
            Err(CodecError::Encode {
                type_name: std::any::type_name::<T>(),
                source,
            })
        }
    }
}

/// How many bytes [`encode`] would produce for `value` (a pass without copying).
pub fn encoded_size<T: Serialize + ?Sized>(value: &T) -> Result<usize, CodecError> {
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut size, config()).map_err(|source| {
        CodecError::Encode {
            type_name: std::any::type_name::<T>(),
            source,
        }
    })?;
    Ok(size.bytes_written)
}

/// Encodes `value` into the start of `dst`, which must be large enough (see
/// [`encoded_size`]); returns the number of bytes written.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, dst: &mut [u8]) -> Result<usize, CodecError> {
    bincode::serde::encode_into_slice(value, dst, config()).map_err(|source| CodecError::Encode {
        type_name: std::any::type_name::<T>(),
        source,
    })
}

/// Decodes a whole buffer as one `T`; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let type_name = std::any::type_name::<T>();
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|source| CodecError::Decode { type_name, source })?;
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
