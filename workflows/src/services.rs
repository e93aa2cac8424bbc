//! What the workflows' steps need from the rest of the server: the entities (to resolve the
//! clusters, locations and rules a run names), how data-mover Jobs are made, the background rule
//! actions running in this process, and the waits and windows the steps allow. Every lookup
//! turns a missing or invalid entity into a permanent step error naming it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stowage_engine::StepError;

use crate::backup::hooks::BackgroundActions;
use crate::backup::volumes::MoverSettings;
use crate::cluster::{ClusterClient, ClusterSpec};
use crate::entity::{Entities, Kind, Record};
use crate::location::LocationSpec;
use crate::rule::RuleSpec;
use crate::storage::Repository;

/// The default [`Services::gc_grace`]: a day, longer than any backup should stay interrupted.
pub const DEFAULT_GC_GRACE: Duration = Duration::from_secs(24 * 3600);

/// The workflows' view of the server.
#[derive(Debug)]
pub struct Services {
    /// Clusters, locations, rules and the rest.
    pub entities: Entities,
    /// How data-mover Jobs are made.
    pub mover: MoverSettings,
    /// Background rule actions running in this process.
    pub background: BackgroundActions,
    /// How long a snapshot may take to become ready.
    pub snapshot_timeout: Duration,
    /// Garbage collection's grace window: unreferenced chunks and the objects of unfinished
    /// backups younger than this are kept (an interrupted backup resumes from them).
    pub gc_grace: Duration,
    /// Repositories opened, by location id and version: opening derives the key (Argon2id),
    /// which is slow on purpose.
    repositories: Mutex<HashMap<(String, u64), Repository>>,
}

impl Services {
    /// Services over `entities` with default mover settings.
    pub fn new(entities: Entities) -> Arc<Self> {
        Arc::new(Self {
            entities,
            mover: MoverSettings::default(),
            background: BackgroundActions::default(),
            snapshot_timeout: Duration::from_secs(600),
            gc_grace: DEFAULT_GC_GRACE,
            repositories: Mutex::new(HashMap::new()),
        })
    }

    fn record(&self, kind: Kind, id: &str) -> Result<Record, StepError> {
        self.entities
            .get(kind, id)
            .map_err(|err| StepError::retryable(format!("reading {} {id}: {err}", kind.as_str())))?
            .ok_or_else(|| StepError::permanent(format!("{} {id} does not exist", kind.as_str())))
    }

    /// Connects to cluster `id`.
    pub async fn cluster(&self, id: &str) -> Result<ClusterClient, StepError> {
        let record = self.record(Kind::Cluster, id)?;
        let spec = ClusterSpec::parse(&record.spec).map_err(|problems| {
            StepError::permanent(format!("cluster {id} has an invalid spec: {problems:?}"))
        })?;
        spec.connect()
            .await
            .map_err(|err| StepError::permanent(format!("cluster {id}: {err}")))
    }

    /// Location `id`'s settings.
    pub fn location(&self, id: &str) -> Result<LocationSpec, StepError> {
        self.location_version(id).map(|(spec, _)| spec)
    }

    fn location_version(&self, id: &str) -> Result<(LocationSpec, u64), StepError> {
        let record = self.record(Kind::Location, id)?;
        let spec = crate::credential::resolve_location(&self.entities, &record.spec)
            .map_err(|err| StepError::permanent(format!("location {id}: {err}")))?;
        Ok((spec, record.version))
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), Repository>> {
        // A plain map of opened repositories: consistent whatever panicked while it was held.
        self.repositories
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens (or creates) location `id`'s repository; kept open for later steps until the
    /// location changes.
    pub async fn repository(&self, id: &str) -> Result<(LocationSpec, Repository), StepError> {
        self.open_repository(id, true).await
    }

    /// Opens location `id`'s repository without creating one: a location that holds none is a
    /// permanent error (for steps that only read or delete).
    pub async fn existing_repository(
        &self,
        id: &str,
    ) -> Result<(LocationSpec, Repository), StepError> {
        self.open_repository(id, false).await
    }

    async fn open_repository(
        &self,
        id: &str,
        create: bool,
    ) -> Result<(LocationSpec, Repository), StepError> {
        let (location, version) = self.location_version(id)?;
        let key = (id.to_string(), version);
        if let Some(repository) = self.cached().get(&key) {
            return Ok((location, repository.clone()));
        }
        let opened = if create {
            location.repository().await
        } else {
            location.open_repository().await
        };
        let repository = opened.map_err(|err| {
            let message = format!("location {id}: {err}");
            if err.is_retryable() {
                StepError::retryable(message)
            } else {
                StepError::permanent(message)
            }
        })?;
        self.cached().insert(key, repository.clone());
        Ok((location, repository))
    }

    /// Rules `ids`, in order.
    pub fn rules(&self, ids: &[String]) -> Result<Vec<(String, RuleSpec)>, StepError> {
        ids.iter()
            .map(|id| {
                let record = self.record(Kind::Rule, id)?;
                let spec = RuleSpec::parse(&record.spec).map_err(|problems| {
                    StepError::permanent(format!("rule {id} has an invalid spec: {problems:?}"))
                })?;
                Ok((id.clone(), spec))
            })
            .collect()
    }
}
