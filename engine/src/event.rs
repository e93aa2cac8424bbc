//! Events: what callers append, what is stored, and what readers get back, with the schema
//! versions that keep old bytes readable.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::error::{Error, Result};
use crate::keys::MAX_NAME_LEN;

/// Version of [`StoredEvent`]'s own layout (the envelope), written first in every stored value.
pub const ENVELOPE_VERSION: u8 = 1;

/// A typed event payload with a name and a schema version.
///
/// When a payload type changes, raise `VERSION` and teach [`EventPayload::upcast`] to read the
/// older versions: events already in the log never change.
pub trait EventPayload: Serialize + DeserializeOwned {
    /// The event's kind, e.g. `"workflow.step_completed"`. Never reuse one for another meaning.
    const KIND: &'static str;
    /// The schema version written now.
    const VERSION: u16;

    /// Reads a payload written with an older `version`. The default knows no older version.
    fn upcast(version: u16, _payload: &[u8]) -> std::result::Result<Self, CodecError> {
        Err(CodecError::UnknownFormat(version.min(u8::MAX as u16) as u8))
    }
}

/// An event to append: its kind, the schema version of its payload and the payload's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The event's kind.
    pub kind: String,
    /// The schema version of `payload`.
    pub payload_version: u16,
    /// The encoded payload.
    pub payload: Vec<u8>,
}

impl NewEvent {
    /// Encodes a typed payload.
    pub fn encode<T: EventPayload>(payload: &T) -> Result<Self> {
        Ok(Self {
            kind: T::KIND.to_string(),
            payload_version: T::VERSION,
            payload: codec::encode(payload).map_err(|source| Error::Encode {
                kind: T::KIND.to_string(),
                source,
            })?,
        })
    }
}

/// What the `events` column family holds for one event, after the envelope version byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredEvent {
    pub global_seq: u64,
    pub at_ms: i64,
    pub actor: String,
    pub kind: String,
    pub payload_version: u16,
    /// Encoded as bytes, not as a sequence of numbers: the same bincode layout, decoded in one copy.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

impl StoredEvent {
    pub(crate) fn to_bytes(&self) -> std::result::Result<Vec<u8>, CodecError> {
        let mut bytes = vec![ENVELOPE_VERSION];
        bytes.extend_from_slice(&codec::encode(self)?);
        Ok(bytes)
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> std::result::Result<Self, CodecError> {
        match bytes.split_first() {
            None => Err(CodecError::Empty),
            Some((&ENVELOPE_VERSION, rest)) => codec::decode(rest),
            Some((&other, _)) => Err(CodecError::UnknownFormat(other)),
        }
    }
}

/// An event as it was recorded: where it stands in its stream and in the global log, when and by
/// whom it was appended, and its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedEvent {
    /// The stream it belongs to.
    pub stream: String,
    /// Its sequence in the stream, from 1, without gaps.
    pub seq: u64,
    /// Its position in the global log, from 1, without gaps.
    pub global_seq: u64,
    /// When it was appended, in milliseconds since the Unix epoch (engine clock).
    pub at_ms: i64,
    /// Who caused it: a user, or `system` for the engine's own work.
    pub actor: String,
    /// Its kind.
    pub kind: String,
    /// The schema version of its payload.
    pub payload_version: u16,
    /// The encoded payload.
    pub payload: Vec<u8>,
}

impl RecordedEvent {
    pub(crate) fn from_stored(stream: String, seq: u64, stored: StoredEvent) -> Self {
        Self {
            stream,
            seq,
            global_seq: stored.global_seq,
            at_ms: stored.at_ms,
            actor: stored.actor,
            kind: stored.kind,
            payload_version: stored.payload_version,
            payload: stored.payload,
        }
    }

    /// Whether this event is of payload type `T`.
    pub fn is<T: EventPayload>(&self) -> bool {
        self.kind == T::KIND
    }

    /// Decodes the payload as `T`, upcasting an older schema version.
    pub fn decode<T: EventPayload>(&self) -> Result<T> {
        if self.kind != T::KIND {
            return Err(Error::WrongKind {
                stream: self.stream.clone(),
                seq: self.seq,
                expected: T::KIND,
                found: self.kind.clone(),
            });
        }
        let decoded = if self.payload_version == T::VERSION {
            codec::decode(&self.payload)
        } else {
            T::upcast(self.payload_version, &self.payload)
        };
        decoded.map_err(|source| Error::Corrupt {
            stream: self.stream.clone(),
            seq: self.seq,
            reason: format!(
                "payload of {} (version {}): {source}",
                self.kind, self.payload_version
            ),
        })
    }
}

/// What an append expects the stream's last sequence to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedSeq {
    /// Append whatever the stream holds: no concurrency check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this sequence (0: the stream is empty).
    Exactly(u64),
}

impl ExpectedSeq {
    pub(crate) fn admits(self, head: u64) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => head == 0,
            Self::Exactly(seq) => head == seq,
        }
    }
}

/// Where an append's events landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The sequence of the first appended event in its stream.
    pub first_seq: u64,
    /// The sequence of the last appended event: the stream's new head.
    pub last_seq: u64,
    /// The global position of the last appended event.
    pub last_global_seq: u64,
}

/// Checks a stream id or projection name: not empty, at most [`MAX_NAME_LEN`] bytes.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(Error::InvalidName {
            what,
            name: name.chars().take(64).collect(),
            reason: format!("must be 1 to {MAX_NAME_LEN} bytes long"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An event envelope as written by envelope version 1 and codec format 1, laid out by hand
    /// from the documented format: these bytes are on disks and must always decode.
    const GOLDEN_ENVELOPE_V1: [u8; 61] = [
        0x01, // envelope version
        0x01, // codec format: bincode 1, fixint, little-endian
        0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // global_seq 7
        0x7b, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, // at_ms 1_700_000_000_123
        0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, b'a', b'l', b'i', b'c', b'e', // actor
        0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, b't', b'e', b's', b't', b'.', b'k', b'i',
        b'n', b'd', // kind
        0x02, 0x00, // payload_version 2
        0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, // payload
    ];

    fn golden_event() -> StoredEvent {
        StoredEvent {
            global_seq: 7,
            at_ms: 1_700_000_000_123,
            actor: "alice".into(),
            kind: "test.kind".into(),
            payload_version: 2,
            payload: vec![1, 2, 3],
        }
    }

    #[test]
    fn the_envelope_format_is_pinned() {
        assert_eq!(golden_event().to_bytes().unwrap(), GOLDEN_ENVELOPE_V1);
        assert_eq!(
            StoredEvent::from_bytes(&GOLDEN_ENVELOPE_V1).unwrap(),
            golden_event()
        );
    }

    #[test]
    fn an_unknown_envelope_version_is_an_error() {
        let mut bytes = GOLDEN_ENVELOPE_V1;
        bytes[0] = 9;
        assert!(StoredEvent::from_bytes(&bytes).is_err());
        assert!(StoredEvent::from_bytes(&[]).is_err());
        assert!(StoredEvent::from_bytes(&GOLDEN_ENVELOPE_V1[..30]).is_err());
    }

    /// Version 1 had a single `name`; version 2 splits it in two.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Renamed {
        first: String,
        last: String,
    }

    #[derive(Serialize, Deserialize)]
    struct RenamedV1 {
        name: String,
    }

    impl EventPayload for Renamed {
        const KIND: &'static str = "test.renamed";
        const VERSION: u16 = 2;

        fn upcast(version: u16, payload: &[u8]) -> std::result::Result<Self, CodecError> {
            match version {
                1 => {
                    let old: RenamedV1 = codec::decode(payload)?;
                    let (first, last) = old.name.split_once(' ').unwrap_or((&old.name, ""));
                    Ok(Self {
                        first: first.into(),
                        last: last.into(),
                    })
                }
                other => Err(CodecError::UnknownFormat(other as u8)),
            }
        }
    }

    fn recorded(kind: &str, payload_version: u16, payload: Vec<u8>) -> RecordedEvent {
        RecordedEvent {
            stream: "s".into(),
            seq: 4,
            global_seq: 9,
            at_ms: 0,
            actor: "a".into(),
            kind: kind.into(),
            payload_version,
            payload,
        }
    }

    #[test]
    fn old_payload_versions_are_upcast() {
        let v1 = codec::encode(&RenamedV1 {
            name: "Ada Lovelace".into(),
        })
        .unwrap();
        let event = recorded("test.renamed", 1, v1);
        assert_eq!(
            event.decode::<Renamed>().unwrap(),
            Renamed {
                first: "Ada".into(),
                last: "Lovelace".into()
            }
        );
        let current = NewEvent::encode(&Renamed {
            first: "Grace".into(),
            last: "Hopper".into(),
        })
        .unwrap();
        assert_eq!(current.payload_version, 2);
        let event = recorded(&current.kind, 2, current.payload);
        assert_eq!(event.decode::<Renamed>().unwrap().last, "Hopper");
    }

    #[test]
    fn decoding_names_the_wrong_kind_and_the_corrupt_event() {
        let event = recorded("test.other", 2, vec![]);
        let err = event.decode::<Renamed>().unwrap_err();
        assert!(err.to_string().contains("is a `test.other`"), "{err}");
        let event = recorded("test.renamed", 2, vec![1, 0xff]);
        let err = event.decode::<Renamed>().unwrap_err();
        assert!(
            err.to_string().starts_with("corrupt event 4 of stream `s`"),
            "{err}"
        );
    }
}
