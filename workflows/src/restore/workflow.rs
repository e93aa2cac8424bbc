//! The restore workflow: validate → objects → volumes → workloads, with a cleanup that removes
//! the data-mover Jobs and Secrets. Objects are read from the backup's resource pack (only the
//! frames holding the selected ones), prepared for the target and created in dependency order;
//! volume data goes into the restored PVCs before the workloads that mount them are created.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use stowage_engine::{RetryPolicy, StepContext, StepError, StepResult, Workflow};

use super::apply::{Applier, ExistingPolicy, ObjectResult, Outcome};
use super::order;
use super::transform::{self, TransformOptions, kind_key, map_namespace};
use crate::backup::volumes::{self, MoverJob};
use crate::backup::workflow::bind;
use crate::services::Services;
use crate::storage::{GroupKind, ResourceFilter};
use crate::validate::{FieldError, Problems, check_name};

/// The workflow type's name.
pub const RESTORE_WORKFLOW: &str = "restore";

/// What a restore brings back, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreSpec {
    /// The backup's id in the repository.
    pub backup: String,
    /// The location holding it (entity id).
    pub location: String,
    /// The cluster to restore into (entity id).
    pub cluster: String,
    /// Backed-up namespace → namespace to restore into.
    #[serde(default)]
    pub namespace_mapping: BTreeMap<String, String>,
    /// Backed-up storage class → storage class to use.
    #[serde(default)]
    pub storage_class_mapping: BTreeMap<String, String>,
    /// Only these backed-up namespaces (all when empty).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Only these kinds (`ConfigMap`, `Deployment.apps`; all when empty).
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Only objects with these names (all when empty).
    #[serde(default)]
    pub names: Vec<String>,
    /// What to do with objects that exist in the target.
    #[serde(default)]
    pub existing: ExistingPolicy,
    /// Keep Services' cluster IPs and node ports.
    #[serde(default)]
    pub keep_service_addresses: bool,
    /// Kinds to create first, in this order.
    #[serde(default)]
    pub order: Vec<String>,
    /// Whether volume data is restored (else claims are created empty).
    #[serde(default = "yes")]
    pub volume_data: bool,
}

fn yes() -> bool {
    true
}

impl RestoreSpec {
    /// Reads and checks a spec, naming every invalid field (paths under `spec`).
    pub fn parse(spec: &Value) -> Result<Self, Vec<FieldError>> {
        let restore: Self = serde_json::from_value(spec.clone()).map_err(|err| {
            vec![FieldError {
                field: "spec".into(),
                message: err.to_string(),
            }]
        })?;
        let mut problems = Problems::default();
        for (field, value) in [
            ("spec.backup", &restore.backup),
            ("spec.location", &restore.location),
            ("spec.cluster", &restore.cluster),
        ] {
            if value.trim().is_empty() {
                problems.add(field, "must not be empty");
            }
        }
        for (from, to) in &restore.namespace_mapping {
            check_name(&mut problems, &format!("spec.namespace_mapping.{from}"), to);
        }
        for (index, namespace) in restore.namespaces.iter().enumerate() {
            check_name(
                &mut problems,
                &format!("spec.namespaces[{index}]"),
                namespace,
            );
        }
        for (index, kind) in restore.kinds.iter().enumerate() {
            if kind.is_empty() || !kind.starts_with(|c: char| c.is_ascii_uppercase()) {
                problems.add(
                    format!("spec.kinds[{index}]"),
                    format!("`{kind}` is not a kind: use `ConfigMap` or `Deployment.apps`"),
                );
            }
        }
        problems.finish().map(|()| restore)
    }

    fn filter(&self) -> ResourceFilter {
        ResourceFilter {
            namespaces: self.namespaces.clone(),
            cluster_scoped: true,
            kinds: self
                .kinds
                .iter()
                .map(|kind| match kind.split_once('.') {
                    Some((kind, group)) => GroupKind {
                        group: group.into(),
                        kind: kind.into(),
                    },
                    None => GroupKind {
                        group: String::new(),
                        kind: kind.clone(),
                    },
                })
                .collect(),
            names: self.names.clone(),
        }
    }
}

/// A restore run's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreInput {
    /// The restore's id.
    pub restore: String,
    /// The restore's name, for people.
    #[serde(default)]
    pub name: String,
    /// What it brings back.
    pub spec: RestoreSpec,
}

/// What the validate step found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Validated {
    /// Volumes the backup holds (`namespace.claim`).
    volumes: Vec<String>,
}

/// What the objects step did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ObjectsDone {
    /// Every object's result, skipped ones included.
    results: Vec<ObjectResult>,
    /// Claims whose data is to be restored: (target namespace, claim, volume in the backup).
    claims: Vec<(String, String, String)>,
    /// Workloads a replace restore removed before replacing claims: (kind, namespace, name).
    #[serde(default)]
    removed: Vec<(String, Option<String>, String)>,
}

fn permanent(error: impl std::fmt::Display) -> StepError {
    StepError::permanent(error.to_string())
}

fn output<T: Serialize>(value: &T) -> StepResult {
    serde_json::to_value(value).map_err(permanent)
}

/// Whether a cluster-scoped object belongs in a restore limited to some namespaces: the
/// namespaces themselves, and what namespaced objects need (volumes, classes, definitions).
fn wanted_cluster_scoped(object: &Value, spec: &RestoreSpec) -> bool {
    if spec.namespaces.is_empty() || object.pointer("/metadata/namespace").is_some() {
        return true;
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match kind_key(object).as_str() {
        "Namespace" => spec.namespaces.iter().any(|n| n == name),
        "PersistentVolume" => object
            .pointer("/spec/claimRef/namespace")
            .and_then(Value::as_str)
            .is_some_and(|ns| spec.namespaces.iter().any(|n| n == ns)),
        "StorageClass.storage.k8s.io" | "CustomResourceDefinition.apiextensions.k8s.io" => true,
        _ => false,
    }
}

#[tracing::instrument(skip_all, fields(run = %ctx.run_id()))]
async fn validate(services: Arc<Services>, ctx: StepContext) -> StepResult {
    let input: RestoreInput = ctx.input()?;
    let cluster = services.cluster(&input.spec.cluster).await?;
    cluster
        .probe()
        .await
        .map_err(|err| StepError::retryable(err.to_string()))?;
    let (_, repository) = services.repository(&input.spec.location).await?;
    let manifest = repository
        .manifest(&input.spec.backup)
        .await
        .map_err(permanent)?;
    output(&Validated {
        volumes: manifest.volumes.into_iter().map(|v| v.name).collect(),
    })
}

/// Reads, selects and prepares the backup's objects; returns them and the skipped ones' results.
async fn prepared_objects(
    services: &Services,
    input: &RestoreInput,
    validated: &Validated,
) -> Result<(Vec<Value>, Vec<ObjectResult>, Vec<(String, String, String)>), StepError> {
    let spec = &input.spec;
    let (_, repository) = services.repository(&spec.location).await?;
    let records: Vec<_> = repository
        .read_resources(&spec.backup, &spec.filter())
        .await
        .map_err(permanent)?
        .try_collect()
        .await
        .map_err(permanent)?;
    let volumes: BTreeSet<&str> = validated.volumes.iter().map(String::as_str).collect();
    let mut objects = Vec::new();
    let mut claims = Vec::new();
    for record in records {
        let object: Value = serde_json::from_slice(&record.body).map_err(|err| {
            permanent(format!(
                "object {} {} in the backup: {err}",
                record.kind, record.name
            ))
        })?;
        if !wanted_cluster_scoped(&object, spec) {
            continue;
        }
        if record.kind == "PersistentVolumeClaim" && record.group.is_empty() {
            let namespace = record.namespace.clone().unwrap_or_default();
            let volume = format!("{namespace}.{}", record.name);
            if spec.volume_data && volumes.contains(volume.as_str()) {
                claims.push((namespace, record.name.clone(), volume));
            }
        }
        objects.push(object);
    }
    let options = TransformOptions {
        restore_id: input.restore.clone(),
        namespace_mapping: spec.namespace_mapping.clone(),
        storage_class_mapping: spec.storage_class_mapping.clone(),
        keep_service_addresses: spec.keep_service_addresses,
        claims_with_data: claims
            .iter()
            .map(|(namespace, claim, _)| format!("{namespace}/{claim}"))
            .collect(),
    };
    let mut prepared = Vec::new();
    let mut skipped = Vec::new();
    for object in objects {
        let kind = kind_key(&object);
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(|ns| map_namespace(&options, ns));
        match transform::prepare(object, &options) {
            Ok(object) => prepared.push(object),
            Err(skip) => skipped.push(ObjectResult {
                kind,
                namespace,
                name,
                outcome: Outcome::Skipped,
                reason: Some(skip.0),
            }),
        }
    }
    let claims = claims
        .into_iter()
        .map(|(namespace, claim, volume)| (map_namespace(&options, &namespace), claim, volume))
        .collect();
    Ok((prepared, skipped, claims))
}

#[tracing::instrument(skip_all, fields(run = %ctx.run_id()))]
async fn objects(services: Arc<Services>, ctx: StepContext) -> StepResult {
    let input: RestoreInput = ctx.input()?;
    let validated: Validated = ctx.output("validate")?;
    let (prepared, skipped, claims) = prepared_objects(&services, &input, &validated).await?;
    let (workloads, others): (Vec<Value>, Vec<Value>) = prepared
        .into_iter()
        .partition(|object| order::is_workload(&kind_key(object)));
    let cluster = services.cluster(&input.spec.cluster).await?;
    let mut applier = Applier::new(&cluster, input.spec.existing)
        .await
        .map_err(|err| StepError::retryable(err.to_string()))?;
    let mut removed = Vec::new();
    if input.spec.existing == ExistingPolicy::Replace {
        // Workloads go before the claims they mount are replaced; they come back in `workloads`.
        for gone in applier.remove_existing(workloads).await {
            if gone.outcome == Outcome::Failed {
                return Err(StepError::retryable(format!(
                    "removing {} {}/{} before replacing its claims: {}",
                    gone.kind,
                    gone.namespace.unwrap_or_default(),
                    gone.name,
                    gone.reason.unwrap_or_default()
                )));
            }
            removed.push((gone.kind, gone.namespace, gone.name));
        }
    }
    let mut results = applier.apply_all(others, &input.spec.order).await;
    // Only claims the restore created (or replaced) get the backed-up data.
    let fresh: BTreeSet<(String, String)> = results
        .iter()
        .filter(|r| r.kind == "PersistentVolumeClaim")
        .filter(|r| matches!(r.outcome, Outcome::Created | Outcome::Replaced))
        .map(|r| (r.namespace.clone().unwrap_or_default(), r.name.clone()))
        .collect();
    let claims = claims
        .into_iter()
        .filter(|(namespace, claim, _)| fresh.contains(&(namespace.clone(), claim.clone())))
        .collect();
    results.extend(skipped);
    output(&ObjectsDone {
        results,
        claims,
        removed,
    })
}

#[tracing::instrument(skip_all, fields(run = %ctx.run_id()))]
async fn volume_data(services: Arc<Services>, mut ctx: StepContext) -> StepResult {
    let input: RestoreInput = ctx.input()?;
    let done: ObjectsDone = ctx.output("objects")?;
    if done.claims.is_empty() {
        return output(&VolumesRestored::default());
    }
    let cluster = services.cluster(&input.spec.cluster).await?;
    let location = services.location(&input.spec.location)?;
    let location_json = serde_json::to_string(&location.location).map_err(permanent)?;
    // Claims filled by an earlier attempt are not filled again.
    let mut progress: VolumesRestored = ctx.progress().unwrap_or_default();
    for (index, (namespace, claim, volume)) in done.claims.iter().enumerate() {
        let target = format!("{namespace}/{claim}");
        if progress.volumes.contains(&target) {
            continue;
        }
        let job = MoverJob {
            owner: ctx.run_id(),
            index,
            namespace,
            claim,
            read_only: false,
            args: vec![
                "restore".into(),
                "--backup".into(),
                input.spec.backup.clone(),
                "--volume".into(),
                volume.clone(),
                "--target".into(),
                "/data".into(),
            ],
            location_json: &location_json,
            passphrase: location.passphrase.expose(),
        };
        let summary = volumes::run_mover(&cluster, &services.mover, &job)
            .await
            .map_err(|err| {
                if err.is_retryable() {
                    StepError::retryable(err.to_string())
                } else {
                    StepError::permanent(err.to_string())
                }
            })?;
        progress.volumes.push(target);
        progress.total = done.claims.len();
        progress.bytes += summary.get("bytes").and_then(Value::as_u64).unwrap_or(0);
        ctx.checkpoint(&progress).await?;
    }
    output(&progress)
}

/// What the volumes step restored; also its checkpoint, recorded after each claim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumesRestored {
    /// Claims filled so far (`namespace/claim`).
    pub volumes: Vec<String>,
    /// Claims to fill in all.
    pub total: usize,
    /// Bytes of file content written so far.
    pub bytes: u64,
}

#[tracing::instrument(skip_all, fields(run = %ctx.run_id()))]
async fn workloads(services: Arc<Services>, ctx: StepContext) -> StepResult {
    let done: ObjectsDone = ctx.output("objects")?;
    let input: RestoreInput = ctx.input()?;
    let validated: Validated = ctx.output("validate")?;
    let (prepared, _, _) = prepared_objects(&services, &input, &validated).await?;
    let workloads: Vec<Value> = prepared
        .into_iter()
        .filter(|object| order::is_workload(&kind_key(object)))
        .collect();
    let cluster = services.cluster(&input.spec.cluster).await?;
    let mut applier = Applier::new(&cluster, input.spec.existing)
        .await
        .map_err(|err| StepError::retryable(err.to_string()))?;
    let mut results = applier.apply_all(workloads, &input.spec.order).await;
    // A workload removed for a replace and created again here was replaced.
    for result in &mut results {
        let identity = (
            result.kind.clone(),
            result.namespace.clone(),
            result.name.clone(),
        );
        if result.outcome == Outcome::Created && done.removed.contains(&identity) {
            result.outcome = Outcome::Replaced;
        }
    }
    output(&json!({ "results": results }))
}

#[tracing::instrument(skip_all, fields(run = %ctx.run_id()))]
async fn remove_temporaries(services: Arc<Services>, ctx: StepContext) -> StepResult {
    let input: RestoreInput = ctx.input()?;
    let Ok(done) = ctx.output::<ObjectsDone>("objects") else {
        return output(&json!({"removed": 0}));
    };
    let namespaces: BTreeSet<String> = done.claims.iter().map(|(ns, _, _)| ns.clone()).collect();
    let cluster = services.cluster(&input.spec.cluster).await?;
    let namespaces: Vec<String> = namespaces.into_iter().collect();
    let removed = volumes::remove_temporaries(&cluster, ctx.run_id(), &namespaces)
        .await
        .map_err(|err| StepError::retryable(err.to_string()))?;
    output(&json!({ "removed": removed }))
}

/// Every object's result of a finished restore run, from its step outputs.
pub fn results(outputs: &BTreeMap<String, Value>) -> Vec<ObjectResult> {
    let mut all: Vec<ObjectResult> = Vec::new();
    for step in ["objects", "workloads"] {
        if let Some(results) = outputs
            .get(step)
            .and_then(|o| o.get("results"))
            .and_then(|r| serde_json::from_value::<Vec<ObjectResult>>(r.clone()).ok())
        {
            all.extend(results);
        }
    }
    all
}

/// The restore workflow type over `services`.
pub fn restore_workflow(services: Arc<Services>) -> Workflow {
    let quick = RetryPolicy::default();
    Workflow::new(RESTORE_WORKFLOW)
        .step("validate", quick, bind(&services, validate))
        .step("objects", quick, bind(&services, objects))
        .step("volumes", quick, bind(&services, volume_data))
        .step("workloads", quick, bind(&services, workloads))
        .cleanup(
            "remove_temporaries",
            quick,
            bind(&services, remove_temporaries),
        )
}
