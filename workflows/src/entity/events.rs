//! The events of an entity's stream, each a versioned payload. Specs travel as JSON text (their
//! secrets already sealed), so a spec's shape can grow without a new event version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stowage_engine::EventPayload;

use super::{Kind, Share};

/// The entity was registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Created {
    pub kind: Kind,
    pub id: String,
    pub name: String,
    pub owner: String,
    pub labels: BTreeMap<String, String>,
    /// The spec, as JSON text.
    pub spec: String,
}

impl EventPayload for Created {
    const KIND: &'static str = "entity.created";
    const VERSION: u16 = 1;
}

/// Its settings or labels changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Updated {
    pub labels: BTreeMap<String, String>,
    /// The new spec, as JSON text.
    pub spec: String,
}

impl EventPayload for Updated {
    const KIND: &'static str = "entity.updated";
    const VERSION: u16 = 1;
}

/// Its shares were replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Shared {
    pub shares: Vec<Share>,
}

impl EventPayload for Shared {
    const KIND: &'static str = "entity.shared";
    const VERSION: u16 = 1;
}

/// It was removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Deleted {}

impl EventPayload for Deleted {
    const KIND: &'static str = "entity.deleted";
    const VERSION: u16 = 1;
}

/// The payload of an entity event as JSON, for the audit stream, secrets redacted; `None` for
/// other kinds.
pub fn events_json(
    event: &stowage_engine::RecordedEvent,
) -> Option<stowage_engine::Result<serde_json::Value>> {
    fn show<T: EventPayload>(
        event: &stowage_engine::RecordedEvent,
    ) -> stowage_engine::Result<serde_json::Value> {
        let payload: T = event.decode()?;
        let mut value = serde_json::to_value(payload).unwrap_or_default();
        if let Some(spec) = value.get_mut("spec")
            && let Some(text) = spec.as_str()
            && let Ok(parsed) = serde_json::from_str::<serde_json::Value>(text)
        {
            *spec = parsed;
        }
        crate::redact::redact(&mut value);
        Ok(value)
    }
    Some(match event.kind.as_str() {
        Created::KIND => show::<Created>(event),
        Updated::KIND => show::<Updated>(event),
        Shared::KIND => show::<Shared>(event),
        Deleted::KIND => show::<Deleted>(event),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use stowage_engine::{decode_value, encode_value};

    use super::super::{Grantee, ShareLevel};
    use super::*;

    fn round_trip<T: EventPayload + PartialEq + std::fmt::Debug>(payload: T) {
        let bytes = encode_value(&payload).unwrap();
        assert_eq!(decode_value::<T>(&bytes).unwrap(), payload, "{}", T::KIND);
    }

    #[test]
    fn every_entity_event_survives_its_own_encoding() {
        round_trip(Created {
            kind: Kind::Rule,
            id: "01".into(),
            name: "quiesce".into(),
            owner: "alice".into(),
            labels: BTreeMap::from([("team".into(), "db".into())]),
            spec: r#"{"a":1}"#.into(),
        });
        round_trip(Updated {
            labels: BTreeMap::new(),
            spec: "{}".into(),
        });
        round_trip(Shared {
            shares: vec![
                Share {
                    to: Grantee::User("bob".into()),
                    level: ShareLevel::View,
                },
                Share {
                    to: Grantee::Group("data-team".into()),
                    level: ShareLevel::Full,
                },
            ],
        });
        round_trip(Deleted {});
    }

    /// Version 1 of `entity.shared` as written, laid out by hand from the codec's format: these
    /// bytes are in existing logs and must always decode.
    const GOLDEN_SHARED_V1: [u8; 28] = [
        0x01, // codec format
        0x01, 0, 0, 0, 0, 0, 0, 0, // one share
        0x00, 0, 0, 0, // Grantee::User
        0x03, 0, 0, 0, 0, 0, 0, 0, b'b', b'o', b'b', // "bob"
        0x01, 0, 0, 0, // ShareLevel::Restore
    ];

    #[test]
    fn shared_v1_bytes_are_pinned() {
        let shared = Shared {
            shares: vec![Share {
                to: Grantee::User("bob".into()),
                level: ShareLevel::Restore,
            }],
        };
        assert_eq!(encode_value(&shared).unwrap(), GOLDEN_SHARED_V1);
        assert_eq!(decode_value::<Shared>(&GOLDEN_SHARED_V1).unwrap(), shared);
    }
}
