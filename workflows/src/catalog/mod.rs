//! The catalog: every backup and restore the server knows of, with its status and progress, as
//! the API lists and describes them.
//!
//! Nothing is written to the catalog directly. Its records are derived from the runs of the
//! backup, restore, delete and sync workflows (see [`projection`]), so they are exactly as
//! durable as those runs, survive a restart, and come back the same from a replay of the log.
//! A backup found in a location by a sync run enters the catalog as `synced`.

mod listing;
mod projection;
mod sharing;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use stowage_engine::Store;

use crate::entity::Share;

pub use listing::{BackupHead, JsonPage, RestoreHead};
pub use projection::{CATALOG_PROJECTION, CatalogProjection};
pub use sharing::{
    BACKUP_SHARES_PREFIX, RESTORE_SHARES_PREFIX, ShareError, backup_shares_stream, check_shares,
    events_json, restore_shares_stream,
};

pub use crate::backup::delete::DELETE_WORKFLOW;
pub use crate::schedule::SCHEDULE_WORKFLOW;
pub use crate::sync::SYNC_WORKFLOW;

/// Where a backup stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    /// Its run is going.
    Running,
    /// Finalized: restorable.
    Completed,
    /// Its run failed; it may be retried.
    Failed,
    /// Its run was cancelled.
    Cancelled,
    /// Being deleted.
    Deleting,
}

impl BackupStatus {
    /// Every status.
    pub const ALL: [BackupStatus; 5] = [
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
        Self::Deleting,
    ];

    /// The status's name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Deleting => "deleting",
        }
    }

    /// The status named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }
}

/// Where a restore stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreStatus {
    /// Its run is going.
    Running,
    /// Every object was handled (see the counts for failures).
    Completed,
    /// Its run failed.
    Failed,
    /// Its run was cancelled.
    Cancelled,
}

impl RestoreStatus {
    /// Every status.
    pub const ALL: [RestoreStatus; 4] = [
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The status's name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }
}

impl From<stowage_engine::RunStatus> for BackupStatus {
    fn from(status: stowage_engine::RunStatus) -> Self {
        use stowage_engine::RunStatus;
        match status {
            RunStatus::Running => Self::Running,
            RunStatus::Completed => Self::Completed,
            RunStatus::Failed => Self::Failed,
            RunStatus::Cancelled => Self::Cancelled,
        }
    }
}

impl From<stowage_engine::RunStatus> for RestoreStatus {
    fn from(status: stowage_engine::RunStatus) -> Self {
        use stowage_engine::RunStatus;
        match status {
            RunStatus::Running => Self::Running,
            RunStatus::Completed => Self::Completed,
            RunStatus::Failed => Self::Failed,
            RunStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// How a backup came into the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A backup run of this server made it.
    Run,
    /// A sync run found it in its location.
    Synced,
}

/// A backup's figures so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupProgress {
    /// Namespaces selected.
    pub namespaces: u64,
    /// Objects collected.
    pub objects: u64,
    /// Volumes to copy.
    pub volumes_total: u64,
    /// Volumes copied.
    pub volumes_done: u64,
    /// Files in the copied volumes.
    pub files: u64,
    /// Bytes of volume content read.
    pub bytes_read: u64,
    /// Bytes stored in the location (new chunks, compressed and sealed).
    pub bytes_uploaded: u64,
}

/// A deletion under way or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    /// The delete run.
    pub run: String,
    /// The status the backup had before.
    pub previous: BackupStatus,
    /// Why it failed, when it did (the backup stays).
    pub error: Option<String>,
}

/// A backup as the catalog holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// Its id, also its folder in the location.
    pub id: String,
    /// Its name, for people.
    pub name: String,
    /// Who asked for it.
    pub owner: String,
    /// Who else may use it, and how.
    #[serde(default)]
    pub shares: Vec<Share>,
    /// The version of `shares`: the sequence of its last share event (0: never shared). A
    /// change of the shares names it.
    #[serde(default)]
    pub shares_version: u64,
    /// Free labels.
    pub labels: BTreeMap<String, String>,
    /// The cluster it protects (entity id).
    pub cluster: String,
    /// The location it is stored in (entity id).
    pub location: String,
    /// What it selects (the backup spec).
    pub spec: serde_json::Value,
    /// The schedule that made it.
    pub schedule: Option<String>,
    /// Where it stands.
    pub status: BackupStatus,
    /// The step running now.
    pub step: Option<String>,
    /// Why its run failed.
    pub error: Option<String>,
    /// Whether its manifest is written: only then can it be restored.
    pub restorable: bool,
    /// Its current (last) run; empty for a synced backup.
    pub run: String,
    /// Runs so far (a retry adds one).
    pub attempts: u32,
    /// Figures so far.
    pub progress: BackupProgress,
    /// How it came into the catalog.
    pub origin: Origin,
    /// A deletion under way or failed.
    pub deletion: Option<Deletion>,
    /// When it was asked for (RFC 3339).
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// When its run ended.
    pub finished_at: Option<String>,
}

/// A restore's figures so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreProgress {
    /// Objects created.
    pub created: u64,
    /// Objects skipped (existing under `keep`, or left to their controllers).
    pub skipped: u64,
    /// Objects deleted and created again.
    pub replaced: u64,
    /// Objects merged into existing ones.
    pub updated: u64,
    /// Objects the cluster refused.
    pub failed: u64,
    /// Volumes to fill.
    pub volumes_total: u64,
    /// Volumes filled.
    pub volumes_done: u64,
    /// Bytes of volume content written.
    pub bytes: u64,
}

/// A restore as the catalog holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreRecord {
    /// Its id.
    pub id: String,
    /// Its name, for people.
    pub name: String,
    /// Who asked for it.
    pub owner: String,
    /// Who else may see it.
    #[serde(default)]
    pub shares: Vec<Share>,
    /// The version of `shares`: the sequence of its last share event (0: never shared).
    #[serde(default)]
    pub shares_version: u64,
    /// The backup restored.
    pub backup: String,
    /// The location read.
    pub location: String,
    /// The cluster restored into.
    pub cluster: String,
    /// What it brings back, and how (the restore spec).
    pub spec: serde_json::Value,
    /// Where it stands.
    pub status: RestoreStatus,
    /// The step running now.
    pub step: Option<String>,
    /// Why its run failed.
    pub error: Option<String>,
    /// Its run.
    pub run: String,
    /// Figures so far.
    pub progress: RestoreProgress,
    /// When it was asked for (RFC 3339).
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// When its run ended.
    pub finished_at: Option<String>,
}

/// A scheduled run that started no backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedRun {
    /// The time it was for (RFC 3339).
    pub due: String,
    /// Why no backup started.
    pub reason: String,
}

/// What a backup schedule's ticks have done, as the catalog holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    /// The schedule (entity id).
    pub id: String,
    /// Its newest tick run: the one waiting for the next time.
    pub tick: String,
    /// Ticks started so far.
    pub ticks: u64,
    /// The time of the last tick that came due (RFC 3339).
    pub last_due: Option<String>,
    /// The last backup it started.
    pub last_backup: Option<String>,
    /// Backups it started.
    pub backups_started: u64,
    /// Ticks that started no backup.
    pub skipped: u64,
    /// The last of those.
    pub last_skipped: Option<SkippedRun>,
    /// Backups its retention deleted.
    pub pruned: u64,
    /// Why its chain of ticks ended, if it did.
    pub ended: Option<String>,
    /// When it last changed.
    pub updated_at: String,
}

/// Which records a listing wants; every field that is set must match.
#[derive(Debug, Clone, Default)]
pub struct CatalogQuery {
    /// Only this status (its serialized name).
    pub status: Option<String>,
    /// Only this cluster.
    pub cluster: Option<String>,
    /// Only this location.
    pub location: Option<String>,
    /// Only this name.
    pub name: Option<String>,
    /// Only backups of this schedule.
    pub schedule: Option<String>,
    /// Only backups of this backup (restores).
    pub backup: Option<String>,
    /// Only records with all these labels.
    pub labels: BTreeMap<String, String>,
    /// Only ids after this one (the previous page's `next_after`).
    pub after: Option<String>,
    /// At most this many.
    pub limit: usize,
}

impl CatalogQuery {
    /// Whether the filters every record has (status, cluster, location, name) admit these.
    fn matches(&self, status: &str, cluster: &str, location: &str, name: &str) -> bool {
        let admits =
            |filter: &Option<String>, value: &str| filter.as_deref().is_none_or(|f| f == value);
        admits(&self.status, status)
            && admits(&self.cluster, cluster)
            && admits(&self.location, location)
            && admits(&self.name, name)
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogPage<T> {
    /// The records, by id (creation order).
    pub items: Vec<T>,
    /// Where the next page starts, if there is one.
    pub next_after: Option<String>,
}

/// Why the catalog could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] stowage_engine::Error),
    /// A record does not decode.
    #[error("catalog record `{key}` is corrupt: {reason}")]
    Corrupt {
        /// Its key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// Reads the catalog projection.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Arc<Store>,
}

impl Catalog {
    /// The catalog of `store`, which must have been opened with [`CatalogProjection`].
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    fn get<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, CatalogError> {
        let Some(bytes) = self.store.projection_get(CATALOG_PROJECTION, key)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| CatalogError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                reason: err.to_string(),
            })
    }

    /// The backup with id `id`.
    pub fn backup(&self, id: &str) -> Result<Option<BackupRecord>, CatalogError> {
        self.get(&projection::backup_key(id))
    }

    /// The restore with id `id`.
    pub fn restore(&self, id: &str) -> Result<Option<RestoreRecord>, CatalogError> {
        self.get(&projection::restore_key(id))
    }

    /// What schedule `id`'s ticks have done, if any started.
    pub fn schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, CatalogError> {
        self.get(&projection::schedule_key(id))
    }

    /// The backup or restore that run `run` belongs to, as `(kind, id)` with kind `backup`,
    /// `restore`, `delete` or `sync`.
    pub fn run_owner(&self, run: &str) -> Result<Option<(String, String)>, CatalogError> {
        let index: Option<projection::RunIndex> = self.get(&projection::run_key(run))?;
        Ok(index.map(|index| (index.kind, index.id)))
    }

    /// Whether the catalog's keys follow this version's layout. A catalog built by an older
    /// server does not, and must be rebuilt from the log ([`Store::rebuild_projections`]) before
    /// it is read; an empty one does not either, and rebuilding it costs nothing.
    pub fn is_current(&self) -> Result<bool, CatalogError> {
        Ok(self
            .store
            .projection_get(CATALOG_PROJECTION, projection::FORMAT_KEY)?
            .as_deref()
            == Some(projection::FORMAT))
    }
}
