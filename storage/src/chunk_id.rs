//! The id of a chunk: the keyed BLAKE3 hash of its content, held as its 32 bytes and written
//! (in trees, index objects, names and messages) as 64 lowercase hex digits.
//!
//! A backup holds the id of every stored chunk and of every chunk of the volume it walks, and
//! a restore those of the whole tree: millions in a large volume. As 32 bytes inline an id
//! costs a third of what its hex text in a `String` does.

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A chunk's id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId([u8; 32]);

impl ChunkId {
    /// The id of these 32 bytes.
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Its 32 bytes.
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Its 64 hex digits.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl From<blake3::Hash> for ChunkId {
    fn from(hash: blake3::Hash) -> Self {
        Self(*hash.as_bytes())
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(blake3::Hash::from_bytes(self.0).to_hex().as_str())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({self})")
    }
}

/// A text that is not a chunk id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chunk id `{0}` is not 64 hex digits")]
pub struct NotAChunkId(pub String);

impl FromStr for ChunkId {
    type Err = NotAChunkId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        blake3::Hash::from_hex(text)
            .map(Self::from)
            .map_err(|_| NotAChunkId(text.to_string()))
    }
}

impl Serialize for ChunkId {
    fn serialize<S: Serializer>(&self, to: S) -> Result<S::Ok, S::Error> {
        to.serialize_str(blake3::Hash::from_bytes(self.0).to_hex().as_str())
    }
}

impl<'de> Deserialize<'de> for ChunkId {
    fn deserialize<D: Deserializer<'de>>(from: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(from)?;
        text.parse().map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_id_is_written_and_read_as_hex_and_a_bad_one_is_named() {
        let id = ChunkId::from(blake3::hash(b"content"));
        let hex = blake3::hash(b"content").to_hex().to_string();
        assert_eq!(id.to_string(), hex);
        assert_eq!(id.to_hex(), hex);
        assert_eq!(hex.parse::<ChunkId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{hex}\""));
        assert_eq!(serde_json::from_str::<ChunkId>(&json).unwrap(), id);
        for bad in ["c0ffee", "", &hex[1..], &format!("{}g", &hex[1..])] {
            assert_eq!(
                bad.parse::<ChunkId>().unwrap_err().to_string(),
                format!("chunk id `{bad}` is not 64 hex digits")
            );
        }
        let err = serde_json::from_str::<ChunkId>("\"c0ffee\"").unwrap_err();
        assert!(
            err.to_string()
                .contains("chunk id `c0ffee` is not 64 hex digits"),
            "{err}"
        );
    }
}
