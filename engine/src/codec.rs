//! The one binary codec for everything the engine stores: a format byte, then bincode.
//!
//! bincode is wrapped here so that it can be swapped (it carries an "unmaintained" advisory,
//! RUSTSEC-2025-0141): bytes written today start with [`FORMAT_BINCODE1`], and a future format
//! gets a new byte while this one keeps decoding. Decoding is bounded by [`MAX_DECODED_BYTES`] so
//! that a corrupt length prefix cannot make the process allocate without limit.

use bincode::Options;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// bincode 1.3, fixed-width integers, little-endian: the format of every value written so far.
pub const FORMAT_BINCODE1: u8 = 1;

/// The most a single decoded value may claim to hold.
pub const MAX_DECODED_BYTES: u64 = 64 * 1024 * 1024;

/// Why bytes could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value has no bytes at all.
    #[error("empty value")]
    Empty,
    /// The first byte names a format this build does not know.
    #[error("unknown codec format {0}")]
    UnknownFormat(u8),
    /// bincode refused the bytes or the value.
    #[error("bincode: {0}")]
    Bincode(#[from] bincode::Error),
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(MAX_DECODED_BYTES)
        .reject_trailing_bytes()
}

/// Encodes `value` as the format byte followed by its bincode bytes.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut bytes = Vec::with_capacity(64);
    bytes.push(FORMAT_BINCODE1);
    options().serialize_into(&mut bytes, value)?;
    Ok(bytes)
}

/// Decodes bytes written by [`encode`], in any format this build knows.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&FORMAT_BINCODE1, rest)) => Ok(options().deserialize(rest)?),
        Some((&other, _)) => Err(CodecError::UnknownFormat(other)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        id: u64,
        name: String,
    }

    #[test]
    fn round_trip_and_format_byte() {
        let sample = Sample {
            id: 7,
            name: "x".into(),
        };
        let bytes = encode(&sample).unwrap();
        assert_eq!(bytes[0], FORMAT_BINCODE1);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), sample);
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        assert!(matches!(decode::<Sample>(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            decode::<Sample>(&[9, 1, 2]),
            Err(CodecError::UnknownFormat(9))
        ));
        // a string claiming to be 2^60 bytes long
        let mut huge = vec![FORMAT_BINCODE1];
        huge.extend_from_slice(&7u64.to_le_bytes());
        huge.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(matches!(
            decode::<Sample>(&huge),
            Err(CodecError::Bincode(_))
        ));
        let mut trailing = encode(&Sample {
            id: 1,
            name: String::new(),
        })
        .unwrap();
        trailing.push(0);
        assert!(decode::<Sample>(&trailing).is_err());
    }
}
