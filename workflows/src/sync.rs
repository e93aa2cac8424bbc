//! The catalog sync workflow: one step, `scan`, that lists every finished backup in a
//! location's repository from the repository alone (its manifests), so a server that lost its
//! catalog (a new server after a disaster) can fill it again. Its output is a
//! [`SyncedCatalog`], the types the consumer decodes it with.
//!
//! The step only reads, so running it again is harmless.

use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use stowage_engine::{RetryPolicy, StepContext, StepError, StepResult, Workflow};
use tracing::warn;

use crate::backup::BackupSpec;
use crate::backup::workflow::{METADATA_NAME, METADATA_SPEC, bind, output, storage_error};
use crate::services::Services;
use crate::storage::{self, Manifest};

/// The workflow type's name.
pub const SYNC_WORKFLOW: &str = "catalog_sync";

/// Manifests read at once.
const MANIFEST_READS: usize = 16;

/// A sync's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncInput {
    /// The location (entity id) to scan.
    pub location: String,
}

/// The `scan` step's output: every finished backup found in the location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncedCatalog {
    /// The location (entity id) scanned.
    pub location: String,
    /// Every backup with a readable manifest, by id.
    pub backups: Vec<FoundBackup>,
    /// Backups whose manifest is there but cannot be read or decoded, by id.
    #[serde(default)]
    pub unreadable: Vec<UnreadableBackup>,
}

/// A finished backup, as its manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundBackup {
    /// The backup's id.
    pub id: String,
    /// Its name, for people (empty when the manifest does not record one).
    pub name: String,
    /// The cluster (entity id) its spec names; empty without a spec.
    pub cluster: String,
    /// When it finished, seconds since the Unix epoch.
    pub finished_at: u64,
    /// Its spec; `None` when the manifest records none (or one this version cannot read).
    pub spec: Option<BackupSpec>,
    /// Kubernetes objects in its resource pack; 0 without a pack.
    pub objects: u64,
    /// Its volumes.
    pub volumes: Vec<FoundVolume>,
    /// Bytes of file content over all volumes.
    pub bytes: u64,
}

/// One volume of a found backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundVolume {
    /// The volume's name in the backup (`namespace.claim`).
    pub name: String,
    /// Files in it.
    pub files: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// A backup whose manifest could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadableBackup {
    /// The backup's id.
    pub id: String,
    /// Why it could not be read.
    pub error: String,
}

impl FoundBackup {
    /// The catalog entry of a manifest. A spec recorded but unreadable (written by another
    /// version) leaves `spec` empty and is logged: the backup itself is still restorable.
    pub fn from_manifest(manifest: Manifest) -> Self {
        let spec = manifest.metadata.get(METADATA_SPEC).and_then(|json| {
            serde_json::from_str::<BackupSpec>(json)
                .inspect_err(|err| {
                    warn!(backup = %manifest.backup, %err, "the manifest's backup spec is unreadable");
                })
                .ok()
        });
        let volumes: Vec<FoundVolume> = manifest
            .volumes
            .into_iter()
            .map(|volume| FoundVolume {
                name: volume.name,
                files: volume.files,
                bytes: volume.bytes,
            })
            .collect();
        Self {
            name: manifest
                .metadata
                .get(METADATA_NAME)
                .cloned()
                .unwrap_or_default(),
            cluster: spec
                .as_ref()
                .map(|spec| spec.cluster.clone())
                .unwrap_or_default(),
            id: manifest.backup,
            finished_at: manifest.finished_at,
            spec,
            objects: manifest.resources.map_or(0, |pack| pack.objects),
            bytes: volumes.iter().map(|volume| volume.bytes).sum(),
            volumes,
        }
    }
}

#[tracing::instrument(skip_all, fields(run = %ctx.run_id()))]
async fn scan(services: Arc<Services>, ctx: StepContext) -> StepResult {
    let input: SyncInput = ctx.input()?;
    if input.location.trim().is_empty() {
        return Err(StepError::permanent(
            "input `location`: must name a location (entity id)",
        ));
    }
    let (_, repository) = services.existing_repository(&input.location).await?;
    let ids = repository.backups().await.map_err(storage_error)?;
    let mut reads = futures::stream::iter(ids)
        .map(|id| {
            let repository = &repository;
            async move {
                let manifest = repository.manifest(&id).await;
                (id, manifest)
            }
        })
        .buffered(MANIFEST_READS);
    let mut catalog = SyncedCatalog {
        location: input.location.clone(),
        backups: Vec::new(),
        unreadable: Vec::new(),
    };
    while let Some((id, manifest)) = reads.next().await {
        match manifest {
            Ok(manifest) => catalog.backups.push(FoundBackup::from_manifest(manifest)),
            // The store failing is worth another attempt; a damaged manifest is not.
            Err(err) if err.is_retryable() => return Err(storage_error(err)),
            Err(err @ storage::Error::NotFound(_)) => {
                // Deleted between the listing and the read: no longer a backup.
                tracing::info!(%id, %err, "backup deleted while scanning");
            }
            Err(err) => {
                warn!(%id, %err, "unreadable manifest");
                catalog.unreadable.push(UnreadableBackup {
                    id,
                    error: err.to_string(),
                });
            }
        }
    }
    output(&catalog)
}

/// The catalog sync workflow type over `services`.
pub fn sync_workflow(services: Arc<Services>) -> Workflow {
    Workflow::new(SYNC_WORKFLOW).step("scan", RetryPolicy::default(), bind(&services, scan))
}
