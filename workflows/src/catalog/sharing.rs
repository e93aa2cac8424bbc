//! Sharing backups and restores: who besides the owner may see, restore from or manage one.
//!
//! A backup's shares are events on its own stream `backup/<id>` (a restore's on `restore/<id>`),
//! each replacing the whole list, and the stream's sequence is the shares' version (optimistic
//! concurrency, as an entity's version). They are kept off the run's stream because a run's
//! stream belongs to the engine: its sequence is the run's own, it ends with the run, and a
//! backup outlives its runs (a retry is a new run, a synced backup has none). The catalog
//! projection folds these events into the record's `shares` and `shares_version`, so the shares
//! come back the same from a rebuild of the catalog.

use serde::{Deserialize, Serialize};
use stowage_engine::{EventPayload, ExpectedSeq, NewEvent, RecordedEvent};

use super::{Catalog, CatalogError};
use crate::entity::{Grantee, Share};
use crate::validate::{FieldError, Problems};

/// The prefix of every backup's share stream.
pub const BACKUP_SHARES_PREFIX: &str = "backup/";
/// The prefix of every restore's share stream.
pub const RESTORE_SHARES_PREFIX: &str = "restore/";

/// The stream holding backup `id`'s shares.
pub fn backup_shares_stream(id: &str) -> String {
    format!("{BACKUP_SHARES_PREFIX}{id}")
}

/// The stream holding restore `id`'s shares.
pub fn restore_shares_stream(id: &str) -> String {
    format!("{RESTORE_SHARES_PREFIX}{id}")
}

/// A backup's shares were replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BackupShared {
    pub shares: Vec<Share>,
}

impl EventPayload for BackupShared {
    const KIND: &'static str = "backup.shared";
    const VERSION: u16 = 1;
}

/// A restore's shares were replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RestoreShared {
    pub shares: Vec<Share>,
}

impl EventPayload for RestoreShared {
    const KIND: &'static str = "restore.shared";
    const VERSION: u16 = 1;
}

/// What a share event says, for the projection: which record, and its new shares.
pub(super) enum SharedEvent {
    /// Backup `id`'s shares.
    Backup { id: String, shares: Vec<Share> },
    /// Restore `id`'s shares.
    Restore { id: String, shares: Vec<Share> },
}

/// The share event `event` is, if it is one that decodes (an undecodable one is passed by).
pub(super) fn shared_event(event: &RecordedEvent) -> Option<SharedEvent> {
    if let Some(id) = event.stream.strip_prefix(BACKUP_SHARES_PREFIX)
        && event.is::<BackupShared>()
    {
        let shared: BackupShared = event.decode().ok()?;
        return Some(SharedEvent::Backup {
            id: id.to_string(),
            shares: shared.shares,
        });
    }
    if let Some(id) = event.stream.strip_prefix(RESTORE_SHARES_PREFIX)
        && event.is::<RestoreShared>()
    {
        let shared: RestoreShared = event.decode().ok()?;
        return Some(SharedEvent::Restore {
            id: id.to_string(),
            shares: shared.shares,
        });
    }
    None
}

/// The payload of a share event as JSON, for the audit stream; `None` for other kinds.
pub fn events_json(event: &RecordedEvent) -> Option<stowage_engine::Result<serde_json::Value>> {
    fn show<T: EventPayload>(event: &RecordedEvent) -> stowage_engine::Result<serde_json::Value> {
        let payload: T = event.decode()?;
        Ok(serde_json::to_value(payload).unwrap_or_default())
    }
    Some(match event.kind.as_str() {
        BackupShared::KIND => show::<BackupShared>(event),
        RestoreShared::KIND => show::<RestoreShared>(event),
        _ => return None,
    })
}

/// Checks a list of shares: every grantee names a user or a group (not blank), and each grantee
/// appears once. Fields are named `shares[<i>].to.user` / `.to.group`.
pub fn check_shares(shares: &[Share]) -> Result<(), Vec<FieldError>> {
    let mut problems = Problems::default();
    for (index, share) in shares.iter().enumerate() {
        let (field, name) = match &share.to {
            Grantee::User(name) => ("user", name),
            Grantee::Group(name) => ("group", name),
        };
        if name.trim().is_empty() {
            problems.add(
                format!("shares[{index}].to.{field}"),
                format!("the {field} a share is for must be named"),
            );
        } else if shares[..index].iter().any(|earlier| earlier.to == share.to) {
            problems.add(
                format!("shares[{index}].to.{field}"),
                format!("{field} `{name}` is given a share twice; give each one level"),
            );
        }
    }
    problems.finish()
}

/// Why shares could not be set.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// No such backup or restore.
    #[error("no {kind} with id `{id}`")]
    NotFound {
        /// `backup` or `restore`.
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The shares changed since the caller read them.
    #[error(
        "the shares of {kind} `{id}` are at version {current}, not {expected}: read it again and retry"
    )]
    VersionConflict {
        /// `backup` or `restore`.
        kind: &'static str,
        /// The id.
        id: String,
        /// The version the caller named.
        expected: u64,
        /// The version they are at.
        current: u64,
    },
    /// A share is invalid.
    #[error("invalid shares: {}", .0.iter().map(|p| format!("{}: {}", p.field, p.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// The catalog could not be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] stowage_engine::Error),
}

impl Catalog {
    /// Replaces the shares of backup `id`, if they are at version `expected`; returns the
    /// record with its new shares.
    pub async fn share_backup(
        &self,
        id: &str,
        expected: u64,
        shares: Vec<Share>,
        actor: &str,
    ) -> Result<super::BackupRecord, ShareError> {
        check_shares(&shares).map_err(ShareError::Invalid)?;
        let not_found = || ShareError::NotFound {
            kind: "backup",
            id: id.to_string(),
        };
        self.backup(id)?.ok_or_else(not_found)?;
        let event = NewEvent::encode(&BackupShared { shares })?;
        self.append_share(
            "backup",
            id,
            &backup_shares_stream(id),
            expected,
            event,
            actor,
        )
        .await?;
        self.backup(id)?.ok_or_else(not_found)
    }

    /// Replaces the shares of restore `id`, if they are at version `expected`; returns the
    /// record with its new shares.
    pub async fn share_restore(
        &self,
        id: &str,
        expected: u64,
        shares: Vec<Share>,
        actor: &str,
    ) -> Result<super::RestoreRecord, ShareError> {
        check_shares(&shares).map_err(ShareError::Invalid)?;
        let not_found = || ShareError::NotFound {
            kind: "restore",
            id: id.to_string(),
        };
        self.restore(id)?.ok_or_else(not_found)?;
        let event = NewEvent::encode(&RestoreShared { shares })?;
        self.append_share(
            "restore",
            id,
            &restore_shares_stream(id),
            expected,
            event,
            actor,
        )
        .await?;
        self.restore(id)?.ok_or_else(not_found)
    }

    async fn append_share(
        &self,
        kind: &'static str,
        id: &str,
        stream: &str,
        expected: u64,
        event: NewEvent,
        actor: &str,
    ) -> Result<(), ShareError> {
        match self
            .store
            .append(stream, ExpectedSeq::Exactly(expected), vec![event], actor)
            .await
        {
            Ok(_) => Ok(()),
            Err(stowage_engine::Error::Conflict { actual, .. }) => {
                Err(ShareError::VersionConflict {
                    kind,
                    id: id.to_string(),
                    expected,
                    current: actual,
                })
            }
            Err(err) => Err(err.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use stowage_engine::{decode_value, encode_value};

    use super::*;
    use crate::entity::ShareLevel;

    fn share(to: Grantee, level: ShareLevel) -> Share {
        Share { to, level }
    }

    #[test]
    fn share_events_survive_their_own_encoding() {
        let shares = vec![
            share(Grantee::User("carol".into()), ShareLevel::View),
            share(Grantee::Group("data-team".into()), ShareLevel::Restore),
        ];
        let backup = BackupShared {
            shares: shares.clone(),
        };
        let bytes = encode_value(&backup).unwrap();
        assert_eq!(decode_value::<BackupShared>(&bytes).unwrap(), backup);
        let restore = RestoreShared { shares };
        let bytes = encode_value(&restore).unwrap();
        assert_eq!(decode_value::<RestoreShared>(&bytes).unwrap(), restore);
    }

    /// Version 1 of `backup.shared` as written: these bytes are in existing logs and must
    /// always decode.
    const GOLDEN_BACKUP_SHARED_V1: [u8; 34] = [
        0x01, // codec format
        0x01, 0, 0, 0, 0, 0, 0, 0, // one share
        0x01, 0, 0, 0, // Grantee::Group
        0x09, 0, 0, 0, 0, 0, 0, 0, b'd', b'a', b't', b'a', b'-', b't', b'e', b'a',
        b'm', // "data-team"
        0x00, 0, 0, 0, // ShareLevel::View
    ];

    #[test]
    fn backup_shared_v1_bytes_are_pinned() {
        let shared = BackupShared {
            shares: vec![share(Grantee::Group("data-team".into()), ShareLevel::View)],
        };
        assert_eq!(encode_value(&shared).unwrap(), GOLDEN_BACKUP_SHARED_V1);
        assert_eq!(
            decode_value::<BackupShared>(&GOLDEN_BACKUP_SHARED_V1).unwrap(),
            shared
        );
    }

    #[test]
    fn blank_and_repeated_grantees_are_named() {
        assert!(check_shares(&[]).is_ok());
        let problems = check_shares(&[
            share(Grantee::User("bob".into()), ShareLevel::View),
            share(Grantee::Group(" ".into()), ShareLevel::View),
            share(Grantee::User("bob".into()), ShareLevel::Full),
        ])
        .unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["shares[1].to.group", "shares[2].to.user"]);
    }
}
