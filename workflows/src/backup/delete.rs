//! The delete-backup workflow: validate → delete_objects → prune_chunks. It removes one backup
//! from its location's repository, finished or not, then collects the chunks no other backup
//! uses. Every step is idempotent: deleting objects already gone succeeds, so a run interrupted
//! at any point finishes when run again, and deleting a deleted backup completes.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use stowage_engine::{RetryPolicy, StepContext, StepError, StepResult, Workflow};
use tracing::warn;

use super::workflow::{METADATA_NAME, bind, output, storage_error};
use crate::services::Services;
use crate::storage::{self, HeldLock, Repository, STALE_LOCK};

/// The workflow type's name.
pub const DELETE_WORKFLOW: &str = "backup_delete";

/// A deletion's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteInput {
    /// The backup's id in the repository.
    pub backup: String,
    /// The location (entity id) whose repository holds it.
    pub location: String,
}

/// What the validate step found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteValidated {
    /// The repository's id.
    pub repository: String,
    /// Whether the backup has a manifest (it finished). Without one it is incomplete (a backup
    /// that failed or is still running) or already deleted.
    pub manifest: bool,
    /// The backup's name, when its manifest could be read.
    pub name: Option<String>,
}

/// What the delete_objects step removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectsDeleted {
    /// Whether this attempt found (and deleted) the manifest.
    pub manifest: bool,
    /// Objects deleted (manifest, trees, resource pack); 0 when the backup was already gone.
    pub objects: u64,
}

/// A backup lock that kept the collection from deleting anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockingLock {
    /// The backup that holds it.
    pub backup: String,
    /// The lock's name under `locks/`.
    pub lock: String,
    /// Its age in seconds.
    pub age_seconds: u64,
    /// Seconds until collections ignore it as left by a process that died.
    pub ignored_in_seconds: u64,
    /// Whether it is the lock of the backup this run deleted: a backup that crashed (or that
    /// was deleted while running).
    pub of_deleted_backup: bool,
}

/// What the prune_chunks step collected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// Chunks deleted: no backup referred to them and they were older than the grace window.
    pub chunks: u64,
    /// Bytes of those chunks as stored (compressed and sealed).
    pub bytes: u64,
    /// Unreferenced chunks kept because they are younger than the grace window.
    pub kept_in_grace: u64,
    /// Unreferenced chunks kept because they share a pack with referenced ones and are too
    /// small a part of it to rewrite it for them.
    #[serde(default)]
    pub kept_in_used_packs: u64,
    /// Packs deleted whole.
    #[serde(default)]
    pub packs_deleted: u64,
    /// Packs rewritten without their unreferenced chunks.
    #[serde(default)]
    pub packs_rewritten: u64,
    /// Objects of abandoned unfinished backups deleted.
    pub abandoned_objects: u64,
    /// The grace window used, in seconds.
    pub grace_seconds: u64,
    /// Whether the collection was deferred (deleted nothing) because backups were running.
    pub deferred: bool,
    /// The locks of those backups, oldest first.
    pub blocking_locks: Vec<BlockingLock>,
}

/// The backup id and the location id of a run, checked: an empty or invalid one is a
/// permanent error naming the field.
fn checked_input(ctx: &StepContext) -> Result<DeleteInput, StepError> {
    let input: DeleteInput = ctx.input()?;
    storage::check_backup_id(&input.backup)
        .map_err(|err| StepError::permanent(format!("input `backup`: {err}")))?;
    if input.location.trim().is_empty() {
        return Err(StepError::permanent(
            "input `location`: must name a location (entity id)",
        ));
    }
    Ok(input)
}

#[tracing::instrument(skip_all, fields(run = %ctx.run_id()))]
async fn validate(services: Arc<Services>, ctx: StepContext) -> StepResult {
    let input = checked_input(&ctx)?;
    let (_, repository) = services.existing_repository(&input.location).await?;
    let (manifest, name) = match repository.manifest(&input.backup).await {
        Ok(manifest) => (true, manifest.metadata.get(METADATA_NAME).cloned()),
        Err(storage::Error::NotFound(_)) => (false, None),
        // There but unreadable: deleting it is still what was asked.
        Err(err @ storage::Error::Corrupt { .. }) => {
            warn!(%err, backup = %input.backup, "deleting a backup whose manifest is damaged");
            (true, None)
        }
        Err(err) => return Err(storage_error(err)),
    };
    output(&DeleteValidated {
        repository: repository.id().to_string(),
        manifest,
        name,
    })
}

#[tracing::instrument(skip_all, fields(run = %ctx.run_id()))]
async fn delete_objects(services: Arc<Services>, ctx: StepContext) -> StepResult {
    let input = checked_input(&ctx)?;
    let (_, repository) = services.existing_repository(&input.location).await?;
    let removed = repository
        .remove_backup(&input.backup)
        .await
        .map_err(storage_error)?;
    output(&ObjectsDeleted {
        manifest: removed.had_manifest,
        objects: removed.objects,
    })
}

/// The live locks that postponed a collection, each reported (and logged) with its age.
async fn blocking_locks(
    repository: &Repository,
    deleted: &str,
) -> Result<Vec<BlockingLock>, StepError> {
    let locks = repository.backup_locks().await.map_err(storage_error)?;
    Ok(locks
        .into_iter()
        .filter(|lock| !lock.stale)
        .map(
            |HeldLock {
                 name, backup, age, ..
             }: HeldLock| {
                let ignored_in = STALE_LOCK.saturating_sub(age);
                warn!(
                    lock = %name,
                    %backup,
                    age_seconds = age.as_secs(),
                    ignored_in_seconds = ignored_in.as_secs(),
                    "garbage collection deferred by a backup lock; if no backup is running, its \
                     process died and collections ignore the lock once it is stale"
                );
                BlockingLock {
                    of_deleted_backup: backup == deleted,
                    backup,
                    lock: name,
                    age_seconds: age.as_secs(),
                    ignored_in_seconds: ignored_in.as_secs(),
                }
            },
        )
        .collect())
}

#[tracing::instrument(skip_all, fields(run = %ctx.run_id()))]
async fn prune_chunks(services: Arc<Services>, ctx: StepContext) -> StepResult {
    let input = checked_input(&ctx)?;
    let (_, repository) = services.existing_repository(&input.location).await?;
    let grace = services.gc_grace;
    let report = repository
        .collect_garbage(grace)
        .await
        .map_err(storage_error)?;
    let deferred = !report.postponed_by.is_empty();
    let blocking = if deferred {
        blocking_locks(&repository, &input.backup).await?
    } else {
        Vec::new()
    };
    output(&Pruned {
        chunks: report.deleted,
        bytes: report.deleted_bytes,
        kept_in_grace: report.kept_in_grace,
        kept_in_used_packs: report.kept_in_used_packs,
        packs_deleted: report.packs_deleted,
        packs_rewritten: report.packs_repacked,
        abandoned_objects: report.abandoned_objects,
        grace_seconds: grace.as_secs(),
        deferred,
        blocking_locks: blocking,
    })
}

/// The delete-backup workflow type over `services`.
pub fn delete_workflow(services: Arc<Services>) -> Workflow {
    let quick = RetryPolicy::default();
    Workflow::new(DELETE_WORKFLOW)
        .step("validate", quick, bind(&services, validate))
        .step("delete_objects", quick, bind(&services, delete_objects))
        .step("prune_chunks", quick, bind(&services, prune_chunks))
}
