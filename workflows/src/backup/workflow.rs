//! The backup workflow: validate → pre-rules → collect → snapshot → post-rules → upload →
//! finalize, with a cleanup that removes every temporary object (snapshots, cloned PVCs, mover
//! Jobs and Secrets) and ends background rule actions, after success, failure or cancellation.
//! Each step is idempotent: run again after a crash it finds what its earlier attempt made.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use stowage_engine::{RetryPolicy, StepContext, StepError, StepResult, Workflow};

use super::collect::{self, CollectError, CollectSummary, CollectedObject, ObjectSink};
use super::hooks::{self, ActionOutcome};
use super::spec::{BackupSpec, VolumeMode};
use super::volumes::{self, MoverJob, VolumeCopy, VolumeError};
use crate::services::Services;
use crate::storage::{ResourceWriter, ResourcesSummary};

/// The workflow type's name.
pub const BACKUP_WORKFLOW: &str = "backup";

/// The manifest metadata key of the backup's name.
pub const METADATA_NAME: &str = "stowage.backup.name";
/// The manifest metadata key of the backup's spec (a [`BackupSpec`] as JSON).
pub const METADATA_SPEC: &str = "stowage.backup.spec";
/// The manifest metadata key of the source cluster's API server.
pub const METADATA_SERVER: &str = "stowage.cluster.server";
/// The manifest metadata key of the source cluster's Kubernetes version.
pub const METADATA_VERSION: &str = "stowage.cluster.version";

/// A backup run's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInput {
    /// The backup's id (also its id in the repository).
    pub backup: String,
    /// The backup's name, for people.
    pub name: String,
    /// What it protects.
    pub spec: BackupSpec,
    /// Free labels, for filtering the catalog.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The schedule that started it, if any.
    #[serde(default)]
    pub schedule: Option<String>,
}

/// What the validate step found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validated {
    /// The cluster's API server.
    pub server: String,
    /// Its Kubernetes version.
    pub version: String,
    /// The repository's id.
    pub repository: String,
    /// The namespaces selected.
    pub namespaces: Vec<String>,
}

/// What the collect step wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collected {
    /// What was selected.
    pub summary: CollectSummary,
    /// The resource pack.
    pub resources: ResourcesSummary,
}

/// What the upload step moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    /// Volume names in the backup.
    pub volumes: Vec<String>,
    /// Bytes of file content the movers read.
    #[serde(default)]
    pub bytes_read: u64,
    /// Bytes the movers stored (new chunks, compressed and sealed).
    #[serde(default)]
    pub bytes_uploaded: u64,
    /// Files the movers saw.
    #[serde(default)]
    pub files: u64,
}

/// The upload step's checkpoint, recorded after each volume: also its progress figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadProgress {
    /// Volumes uploaded so far.
    pub done: Vec<String>,
    /// Volumes to upload in all.
    pub total: usize,
    /// Bytes of file content read so far.
    pub bytes_read: u64,
    /// Bytes stored so far.
    pub bytes_uploaded: u64,
    /// Files seen so far.
    pub files: u64,
}

fn collect_error(error: CollectError) -> StepError {
    if error.is_retryable() {
        StepError::retryable(error.to_string())
    } else {
        StepError::permanent(error.to_string())
    }
}

fn volume_error(error: VolumeError) -> StepError {
    if error.is_retryable() {
        StepError::retryable(error.to_string())
    } else {
        StepError::permanent(error.to_string())
    }
}

/// A storage error as a step error, retryable when another attempt may succeed.
pub(crate) fn storage_error(error: crate::storage::Error) -> StepError {
    if error.is_retryable() {
        StepError::retryable(error.to_string())
    } else {
        StepError::permanent(error.to_string())
    }
}

/// A step's output as JSON.
pub(crate) fn output<T: Serialize>(value: &T) -> StepResult {
    serde_json::to_value(value).map_err(|err| StepError::permanent(err.to_string()))
}

/// Collected objects go into the backup's resource pack.
struct PackSink(ResourceWriter);

impl ObjectSink for PackSink {
    async fn put(&mut self, object: CollectedObject) -> Result<(), CollectError> {
        self.0
            .add(object)
            .await
            .map_err(|err| CollectError::Sink(err.to_string()))
    }
}

#[tracing::instrument(skip_all, fields(run = %ctx.run_id()))]
async fn validate(services: Arc<Services>, ctx: StepContext) -> StepResult {
    let input: BackupInput = ctx.input()?;
    let cluster = services.cluster(&input.spec.cluster).await?;
    let status = cluster
        .probe()
        .await
        .map_err(|err| StepError::retryable(err.to_string()))?;
    let (_, repository) = services.repository(&input.spec.location).await?;
    services.rules(&input.spec.pre_rules)?;
    services.rules(&input.spec.post_rules)?;
    let namespaces = collect::selected_namespaces(&cluster, &input.spec.selection())
        .await
        .map_err(collect_error)?;
    output(&Validated {
        server: status.server,
        version: status.version,
        repository: repository.id().to_string(),
        namespaces,
    })
}

async fn run_rules(
    services: &Services,
    ctx: &StepContext,
    rule_ids: &[String],
) -> Result<Vec<ActionOutcome>, StepError> {
    let input: BackupInput = ctx.input()?;
    let validated: Validated = ctx.output("validate")?;
    let rules = services.rules(rule_ids)?;
    if rules.is_empty() {
        return Ok(Vec::new());
    }
    let cluster = services.cluster(&input.spec.cluster).await?;
    hooks::run_rules(
        &cluster,
        &rules,
        &validated.namespaces,
        ctx.run_id(),
        &services.background,
    )
    .await
    .map_err(|err| StepError::permanent(err.to_string()))
}

#[tracing::instrument(skip_all, fields(run = %ctx.run_id()))]
async fn pre_rules(services: Arc<Services>, ctx: StepContext) -> StepResult {
    let input: BackupInput = ctx.input()?;
    // A retried pre-rule starts its background actions afresh.
    services.background.end(ctx.run_id()).await;
    let outcomes = run_rules(&services, &ctx, &input.spec.pre_rules).await?;
    output(&outcomes)
}

#[tracing::instrument(skip_all, fields(run = %ctx.run_id()))]
async fn collect_objects(services: Arc<Services>, mut ctx: StepContext) -> StepResult {
    let input: BackupInput = ctx.input()?;
    let cluster = services.cluster(&input.spec.cluster).await?;
    let (_, repository) = services.repository(&input.spec.location).await?;
    let writer = repository
        .resource_writer(&input.backup)
        .map_err(storage_error)?;
    let mut sink = PackSink(writer);
    // The count so far is recorded as a progress event every few seconds while objects come in.
    let (count_tx, count_rx) = tokio::sync::watch::channel(0u64);
    let selection = input.spec.selection();
    let mut report = move |objects: u64| {
        count_tx.send_replace(objects);
    };
    let summary = {
        let collecting = collect::collect(&cluster, &selection, &mut sink, &mut report);
        tokio::pin!(collecting);
        let mut ticks = tokio::time::interval(COLLECT_PROGRESS_EVERY);
        ticks.tick().await;
        let mut reported = 0;
        loop {
            tokio::select! {
                summary = &mut collecting => break summary.map_err(collect_error)?,
                _ = ticks.tick() => {
                    let objects = *count_rx.borrow();
                    if objects > reported {
                        reported = objects;
                        ctx.checkpoint(&json!({ "objects": objects })).await?;
                    }
                }
            }
        }
    };
    let resources = sink.0.finish().await.map_err(storage_error)?;
    output(&Collected { summary, resources })
}

/// How often the collect step records how many objects it has so far.
const COLLECT_PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

#[tracing::instrument(skip_all, fields(run = %ctx.run_id()))]
async fn snapshot(services: Arc<Services>, ctx: StepContext) -> StepResult {
    let input: BackupInput = ctx.input()?;
    let collected: Collected = ctx.output("collect")?;
    if input.spec.volumes == VolumeMode::Skip {
        return output(&Vec::<VolumeCopy>::new());
    }
    let cluster = services.cluster(&input.spec.cluster).await?;
    let copies = volumes::snapshot_claims(
        &cluster,
        ctx.run_id(),
        &collected.summary.claims,
        input.spec.volumes == VolumeMode::Snapshot,
        services.snapshot_timeout,
    )
    .await
    .map_err(volume_error)?;
    output(&copies)
}

#[tracing::instrument(skip_all, fields(run = %ctx.run_id()))]
async fn post_rules(services: Arc<Services>, ctx: StepContext) -> StepResult {
    let input: BackupInput = ctx.input()?;
    let ended = services.background.end(ctx.run_id()).await;
    let outcomes = run_rules(&services, &ctx, &input.spec.post_rules).await?;
    output(&json!({"background_ended": ended, "actions": outcomes}))
}

#[tracing::instrument(skip_all, fields(run = %ctx.run_id()))]
async fn upload(services: Arc<Services>, mut ctx: StepContext) -> StepResult {
    let input: BackupInput = ctx.input()?;
    let copies: Vec<VolumeCopy> = ctx.output("snapshot")?;
    if copies.is_empty() {
        return output(&Uploaded {
            volumes: Vec::new(),
            bytes_read: 0,
            bytes_uploaded: 0,
            files: 0,
        });
    }
    let cluster = services.cluster(&input.spec.cluster).await?;
    let location = services.location(&input.spec.location)?;
    let location_json = serde_json::to_string(&location.location)
        .map_err(|err| StepError::permanent(err.to_string()))?;
    // Volumes finished by an earlier attempt are not moved again.
    let mut progress: UploadProgress = ctx.progress().unwrap_or_default();
    for (index, copy) in copies.iter().enumerate() {
        if progress.done.contains(&copy.volume) {
            continue;
        }
        let (claim, _) = volumes::source_claim(&cluster, ctx.run_id(), index, copy)
            .await
            .map_err(volume_error)?;
        let job = MoverJob {
            owner: ctx.run_id(),
            index,
            namespace: &copy.claim.namespace,
            claim: &claim,
            read_only: true,
            args: vec![
                "backup".into(),
                "--backup".into(),
                input.backup.clone(),
                "--volume".into(),
                copy.volume.clone(),
                "--path".into(),
                "/data".into(),
                "--staged".into(),
            ],
            location_json: &location_json,
            passphrase: location.passphrase.expose(),
        };
        let summary = volumes::run_mover(&cluster, &services.mover, &job)
            .await
            .map_err(volume_error)?;
        progress.done.push(copy.volume.clone());
        progress.bytes_read += figure(&summary, "bytes_read");
        progress.bytes_uploaded += figure(&summary, "bytes_uploaded");
        progress.files += figure(&summary, "files");
        progress.total = copies.len();
        ctx.checkpoint(&progress).await?;
    }
    output(&Uploaded {
        volumes: progress.done,
        bytes_read: progress.bytes_read,
        bytes_uploaded: progress.bytes_uploaded,
        files: progress.files,
    })
}

/// A number from a mover's summary; 0 when it is missing.
fn figure(summary: &Value, name: &str) -> u64 {
    summary.get(name).and_then(Value::as_u64).unwrap_or(0)
}

#[tracing::instrument(skip_all, fields(run = %ctx.run_id()))]
async fn finalize(services: Arc<Services>, ctx: StepContext) -> StepResult {
    let input: BackupInput = ctx.input()?;
    let validated: Validated = ctx.output("validate")?;
    let (_, repository) = services.repository(&input.spec.location).await?;
    let spec =
        serde_json::to_string(&input.spec).map_err(|err| StepError::permanent(err.to_string()))?;
    let metadata = BTreeMap::from([
        (METADATA_NAME.to_string(), input.name.clone()),
        (METADATA_SPEC.to_string(), spec),
        (METADATA_SERVER.to_string(), validated.server.clone()),
        (METADATA_VERSION.to_string(), validated.version.clone()),
    ]);
    let source = format!("cluster {} ({})", input.spec.cluster, validated.server);
    let manifest = match repository
        .finalize_backup(&input.backup, &source, metadata)
        .await
    {
        // Finalized by an attempt that died before recording it.
        Err(crate::storage::Error::AlreadyFinalized(_)) => repository
            .manifest(&input.backup)
            .await
            .map_err(storage_error)?,
        other => other.map_err(storage_error)?,
    };
    output(&json!({
        "finished_at": manifest.finished_at,
        "volumes": manifest.volumes,
        "resources": manifest.resources,
    }))
}

#[tracing::instrument(skip_all, fields(run = %ctx.run_id()))]
async fn remove_temporaries(services: Arc<Services>, ctx: StepContext) -> StepResult {
    services.background.end(ctx.run_id()).await;
    let input: BackupInput = ctx.input()?;
    let Ok(collected) = ctx.output::<Collected>("collect") else {
        // Temporary objects are made for the collected claims only, after the collection.
        return output(&json!({"removed": 0}));
    };
    // Snapshots, cloned claims, mover Jobs and their Secrets live in their claims' namespaces:
    // only those are searched, not every selected namespace.
    let namespaces: BTreeSet<String> = collected
        .summary
        .claims
        .iter()
        .map(|claim| claim.namespace.clone())
        .collect();
    if namespaces.is_empty() {
        return output(&json!({"removed": 0}));
    }
    let namespaces: Vec<String> = namespaces.into_iter().collect();
    let cluster = services.cluster(&input.spec.cluster).await?;
    let removed = volumes::remove_temporaries(&cluster, ctx.run_id(), &namespaces)
        .await
        .map_err(|err| StepError::retryable(err.to_string()))?;
    output(&json!({ "removed": removed }))
}

/// The backup workflow type over `services`.
pub fn backup_workflow(services: Arc<Services>) -> Workflow {
    let quick = RetryPolicy::default();
    let long = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    Workflow::new(BACKUP_WORKFLOW)
        .step("validate", quick, bind(&services, validate))
        .step("pre_rules", RetryPolicy::once(), bind(&services, pre_rules))
        .step("collect", quick, bind(&services, collect_objects))
        .step("snapshot", quick, bind(&services, snapshot))
        .step(
            "post_rules",
            RetryPolicy::once(),
            bind(&services, post_rules),
        )
        .step("upload", long, bind(&services, upload))
        .step("finalize", quick, bind(&services, finalize))
        .cleanup(
            "remove_temporaries",
            quick,
            bind(&services, remove_temporaries),
        )
}

/// A step function over the shared services.
pub(crate) fn bind<F, Fut>(
    services: &Arc<Services>,
    step: F,
) -> impl Fn(StepContext) -> Fut + Send + Sync + 'static
where
    F: Fn(Arc<Services>, StepContext) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = StepResult> + Send + 'static,
{
    let services = Arc::clone(services);
    move |ctx| step(Arc::clone(&services), ctx)
}
