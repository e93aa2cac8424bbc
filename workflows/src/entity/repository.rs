//! Commands and queries on entities: create, read, list, update with optimistic concurrency,
//! share and delete. Callers decide who may do what; this module keeps the log consistent.

use std::collections::BTreeMap;
use std::sync::Arc;

use stowage_engine::{EventPayload, ExpectedSeq, NewEvent, Store};

use super::events::{Created, Deleted, Shared, Updated};
use super::projection::{ENTITIES_PROJECTION, NAME_TAKEN, record_key, records_prefix};
use super::{Kind, Record, Share, stream};
use crate::sealing::{MasterKey, SealError};
use crate::validate::FieldError;

/// Why an entity command failed.
#[derive(Debug, thiserror::Error)]
pub enum EntityError {
    /// No entity of this kind has this id.
    #[error("no {kind} with id `{id}`")]
    NotFound {
        /// The kind.
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The entity changed since the caller read it.
    #[error("{kind} `{id}` is at version {current}, not {expected}: read it again and retry")]
    VersionConflict {
        /// The kind.
        kind: &'static str,
        /// The id.
        id: String,
        /// The version the caller named.
        expected: u64,
        /// The version it is at.
        current: u64,
    },
    /// The owner already has an entity of this kind with this name.
    #[error("a {kind} named `{name}` already exists")]
    NameTaken {
        /// The kind.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// The input is invalid.
    #[error("invalid {kind}: {}", .problems.iter().map(|p| format!("{}: {}", p.field, p.message)).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// The kind.
        kind: &'static str,
        /// Each invalid field.
        problems: Vec<FieldError>,
    },
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] stowage_engine::Error),
    /// A secret could not be sealed or opened with the server's master key.
    #[error(transparent)]
    Secret(#[from] SealError),
    /// A stored record cannot be read.
    #[error("stored {kind} `{id}` is unreadable: {reason}")]
    Corrupt {
        /// The kind.
        kind: &'static str,
        /// The id.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

/// A new entity, as a command.
#[derive(Debug, Clone)]
pub struct NewEntity {
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its spec, validated and with secrets sealed.
    pub spec: serde_json::Value,
}

/// Which entities a list wants.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Entities after this id (the previous page's `next_after`).
    pub after: Option<String>,
    /// At most this many.
    pub limit: usize,
    /// Labels an entity must carry, with these values.
    pub labels: BTreeMap<String, String>,
}

/// A page of entities.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Page {
    /// The entities, by id (creation order).
    pub items: Vec<Record>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next_after: Option<String>,
}

/// Entities on an event store, their secrets sealed with the server's master key: sealed before
/// they are stored, opened when a record is read.
#[derive(Debug, Clone)]
pub struct Entities {
    store: Arc<Store>,
    key: Arc<MasterKey>,
}

fn encode<T: stowage_engine::EventPayload>(payload: &T) -> Result<NewEvent, EntityError> {
    Ok(NewEvent::encode(payload)?)
}

impl Entities {
    /// Entities kept in `store`, which must have the [`super::EntitiesProjection`], their
    /// secrets sealed with `key`.
    pub fn new(store: Arc<Store>, key: Arc<MasterKey>) -> Self {
        Self { store, key }
    }

    /// The master key secrets are sealed with.
    pub fn master_key(&self) -> &Arc<MasterKey> {
        &self.key
    }

    /// `spec` of entity `id` of `kind` with its secrets sealed: what is stored.
    fn sealed(
        &self,
        kind: Kind,
        id: &str,
        mut spec: serde_json::Value,
    ) -> Result<String, EntityError> {
        self.key.seal_spec(&stream(kind, id), &mut spec)?;
        Ok(spec.to_string())
    }

    /// `record` as stored, with its secrets opened.
    fn opened(&self, mut record: Record) -> Result<Record, EntityError> {
        self.key
            .open_spec(&stream(record.kind, &record.id), &mut record.spec)?;
        Ok(record)
    }

    /// The store the entities are kept in.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Registers a new entity owned by `owner`.
    pub async fn create(
        &self,
        entity: NewEntity,
        owner: &str,
        actor: &str,
    ) -> Result<Record, EntityError> {
        let id = uuid::Uuid::now_v7().to_string();
        let created = Created {
            kind: entity.kind,
            id: id.clone(),
            name: entity.name.clone(),
            owner: owner.to_string(),
            labels: entity.labels,
            spec: self.sealed(entity.kind, &id, entity.spec)?,
        };
        let appended = self
            .store
            .append(
                &stream(entity.kind, &id),
                ExpectedSeq::NoStream,
                vec![encode(&created)?],
                actor,
            )
            .await;
        match appended {
            Ok(_) => self.require(entity.kind, &id),
            Err(stowage_engine::Error::Projection { reason, .. })
                if reason.starts_with(NAME_TAKEN) =>
            {
                Err(EntityError::NameTaken {
                    kind: entity.kind.as_str(),
                    name: entity.name,
                })
            }
            Err(err) => Err(err.into()),
        }
    }

    /// The entity, if it exists.
    pub fn get(&self, kind: Kind, id: &str) -> Result<Option<Record>, EntityError> {
        let Some(bytes) = self
            .store
            .projection_get(ENTITIES_PROJECTION, &record_key(kind, id))?
        else {
            return Ok(None);
        };
        let record = serde_json::from_slice(&bytes).map_err(|err| EntityError::Corrupt {
            kind: kind.as_str(),
            id: id.to_string(),
            reason: err.to_string(),
        })?;
        self.opened(record).map(Some)
    }

    /// The last spec entity `id` of `kind` had, deleted or not (read from its stream): what a
    /// deleted entity's clean-up needs to know.
    pub fn last_spec(
        &self,
        kind: Kind,
        id: &str,
    ) -> Result<Option<serde_json::Value>, EntityError> {
        let mut spec = None;
        for event in self.store.read_stream(&stream(kind, id), 1, usize::MAX)? {
            let text = match event.kind.as_str() {
                Created::KIND => event.decode::<Created>()?.spec,
                Updated::KIND => event.decode::<Updated>()?.spec,
                _ => continue,
            };
            spec = Some(text);
        }
        let Some(text) = spec else { return Ok(None) };
        let mut spec = serde_json::from_str(&text).map_err(|err| EntityError::Corrupt {
            kind: kind.as_str(),
            id: id.to_string(),
            reason: err.to_string(),
        })?;
        self.key.open_spec(&stream(kind, id), &mut spec)?;
        Ok(Some(spec))
    }

    fn require(&self, kind: Kind, id: &str) -> Result<Record, EntityError> {
        self.get(kind, id)?.ok_or_else(|| EntityError::NotFound {
            kind: kind.as_str(),
            id: id.to_string(),
        })
    }

    /// A page of the entities of `kind` that `visible` admits and the query's labels match.
    pub fn list(
        &self,
        kind: Kind,
        query: &ListQuery,
        visible: impl Fn(&Record) -> bool,
    ) -> Result<Page, EntityError> {
        let mut items = Vec::new();
        let limit = query.limit.max(1);
        for (key, value) in self
            .store
            .projection_scan(ENTITIES_PROJECTION, &records_prefix(kind))?
        {
            let id = String::from_utf8_lossy(&key[records_prefix(kind).len()..]).to_string();
            if query
                .after
                .as_deref()
                .is_some_and(|after| id.as_str() <= after)
            {
                continue;
            }
            let record: Record =
                serde_json::from_slice(&value).map_err(|err| EntityError::Corrupt {
                    kind: kind.as_str(),
                    id: id.clone(),
                    reason: err.to_string(),
                })?;
            let labelled = query
                .labels
                .iter()
                .all(|(key, value)| record.labels.get(key) == Some(value));
            if !labelled || !visible(&record) {
                continue;
            }
            if items.len() == limit {
                let next_after = items.last().map(|last: &Record| last.id.clone());
                return Ok(Page { items, next_after });
            }
            items.push(self.opened(record)?);
        }
        Ok(Page {
            items,
            next_after: None,
        })
    }

    /// Every entity of `kind`, whoever owns it (for server-side checks, never for answers).
    pub fn all(&self, kind: Kind) -> Result<Vec<Record>, EntityError> {
        let mut query = ListQuery {
            limit: 1000,
            ..ListQuery::default()
        };
        let mut records = Vec::new();
        loop {
            let page = self.list(kind, &query, |_| true)?;
            records.extend(page.items);
            match page.next_after {
                Some(after) => query.after = Some(after),
                None => return Ok(records),
            }
        }
    }

    async fn append_to(
        &self,
        kind: Kind,
        id: &str,
        expected: u64,
        event: NewEvent,
        actor: &str,
    ) -> Result<(), EntityError> {
        match self
            .store
            .append(
                &stream(kind, id),
                ExpectedSeq::Exactly(expected),
                vec![event],
                actor,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(stowage_engine::Error::Conflict { actual, .. }) => {
                Err(EntityError::VersionConflict {
                    kind: kind.as_str(),
                    id: id.to_string(),
                    expected,
                    current: actual,
                })
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Replaces labels and spec of an entity at version `expected`.
    pub async fn update(
        &self,
        kind: Kind,
        id: &str,
        expected: u64,
        labels: BTreeMap<String, String>,
        spec: serde_json::Value,
        actor: &str,
    ) -> Result<Record, EntityError> {
        self.require(kind, id)?;
        let updated = Updated {
            labels,
            spec: self.sealed(kind, id, spec)?,
        };
        self.append_to(kind, id, expected, encode(&updated)?, actor)
            .await?;
        self.require(kind, id)
    }

    /// Replaces the shares of an entity at version `expected`.
    pub async fn share(
        &self,
        kind: Kind,
        id: &str,
        expected: u64,
        shares: Vec<Share>,
        actor: &str,
    ) -> Result<Record, EntityError> {
        self.require(kind, id)?;
        self.append_to(kind, id, expected, encode(&Shared { shares })?, actor)
            .await?;
        self.require(kind, id)
    }

    /// Removes an entity at version `expected`.
    pub async fn delete(
        &self,
        kind: Kind,
        id: &str,
        expected: u64,
        actor: &str,
    ) -> Result<(), EntityError> {
        self.require(kind, id)?;
        self.append_to(kind, id, expected, encode(&Deleted {})?, actor)
            .await
    }
}

/// How the secrets stored in a database are sealed: what a server checks at start-up before it
/// chooses or makes its master key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealingReport {
    /// The ids of the master keys that sealed stored secrets.
    pub key_ids: std::collections::BTreeSet<String>,
    /// Stored secrets that are not sealed (written before sealing existed).
    pub clear: usize,
}

/// How the secrets of every entity in `store` are sealed, read without opening any.
pub fn sealing_report(store: &Store) -> Result<SealingReport, EntityError> {
    let mut report = SealingReport::default();
    for kind in Kind::ALL {
        for (key, value) in store.projection_scan(ENTITIES_PROJECTION, &records_prefix(kind))? {
            let mut record: Record =
                serde_json::from_slice(&value).map_err(|err| EntityError::Corrupt {
                    kind: kind.as_str(),
                    id: String::from_utf8_lossy(&key).to_string(),
                    reason: err.to_string(),
                })?;
            let (key_ids, clear) = crate::sealing::sealing_of(&mut record.spec);
            report.key_ids.extend(key_ids);
            report.clear += clear;
        }
    }
    Ok(report)
}
