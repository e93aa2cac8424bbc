//! The volume steps of a backup: a point-in-time copy of each selected PVC (a CSI VolumeSnapshot
//! when its driver has a snapshot class, else none: the live PVC is copied), then a data-mover
//! Job per PVC that reads the copy (a PVC cloned from the snapshot, or the live PVC) and writes
//! it into the repository as one staged volume. Every object made here carries the backup's
//! label, so the cleanup finds and removes them, also after a failure or a cancellation.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::collect::ClaimRef;
use crate::cluster::ClusterClient;
use crate::kube_ops::{KubeError, path};

/// The label on every temporary object of a backup or restore: its id.
pub const OWNER_LABEL: &str = "stowage.io/owner";
/// How often readiness and completion are polled.
const POLL: Duration = Duration::from_millis(200);

/// How data-mover Jobs are made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoverSettings {
    /// The image holding the `stowage` binary.
    pub image: String,
    /// Uploads in flight in one mover.
    pub concurrency: usize,
    /// How long one mover Job may take.
    pub timeout: Duration,
}

impl Default for MoverSettings {
    fn default() -> Self {
        Self {
            image: format!("ghcr.io/stowage/stowage:{}", env!("CARGO_PKG_VERSION")),
            concurrency: 8,
            timeout: Duration::from_secs(6 * 3600),
        }
    }
}

/// Why a volume step failed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A Kubernetes call failed.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// A snapshot reported an error or did not become ready in time.
    #[error("snapshot {namespace}/{name}: {message}")]
    Snapshot {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// A data-mover Job failed or did not finish in time.
    #[error("data mover {namespace}/{job}: {message}")]
    Mover {
        /// Namespace.
        namespace: String,
        /// The Job.
        job: String,
        /// What went wrong, with the end of its log.
        message: String,
    },
}

impl VolumeError {
    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Kube(error) => error.is_retryable(),
            Self::Snapshot { .. } | Self::Mover { .. } => false,
        }
    }
}

/// The point-in-time copy of one PVC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeCopy {
    /// The PVC.
    pub claim: ClaimRef,
    /// The volume's name in the backup: `<namespace>.<claim>`.
    pub volume: String,
    /// The VolumeSnapshot taken, if the PVC's driver can snapshot.
    pub snapshot: Option<String>,
    /// The snapshot class used.
    pub snapshot_class: Option<String>,
    /// The snapshot's size, for the clone.
    pub restore_size: Option<String>,
}

/// A short, unique stem for the names of a run's temporary objects: `stowage-<12 hex>`.
pub fn temporary_stem(run: &str) -> String {
    let hex: String = run.chars().filter(char::is_ascii_hexdigit).collect();
    let tail = &hex[hex.len().saturating_sub(12)..];
    format!("stowage-{}", tail.to_ascii_lowercase())
}

fn labels(owner: &str) -> Value {
    json!({ OWNER_LABEL: owner, "app.kubernetes.io/managed-by": "stowage" })
}

fn snapshot_path(namespace: Option<&str>, plural: &str) -> String {
    path("snapshot.storage.k8s.io", "v1", namespace, plural)
}

/// Snapshot classes by CSI driver: the one marked default for a driver, else the first by name.
async fn snapshot_classes(cluster: &ClusterClient) -> HashMap<String, String> {
    // A cluster without the snapshot CRDs has no classes: its volumes are copied live.
    let Ok(classes) = cluster
        .list(&snapshot_path(None, "volumesnapshotclasses"), "")
        .await
    else {
        return HashMap::new();
    };
    let mut by_driver: BTreeMap<String, (bool, String)> = BTreeMap::new();
    for class in classes {
        let (Some(driver), Some(name)) = (
            class.get("driver").and_then(Value::as_str),
            class.pointer("/metadata/name").and_then(Value::as_str),
        ) else {
            continue;
        };
        let default = class
            .pointer("/metadata/annotations/snapshot.storage.kubernetes.io~1is-default-class")
            .and_then(Value::as_str)
            == Some("true");
        let better = match by_driver.get(driver) {
            None => true,
            Some((was_default, was_name)) => {
                (default && !was_default) || (default == *was_default && name < was_name.as_str())
            }
        };
        if better {
            by_driver.insert(driver.to_string(), (default, name.to_string()));
        }
    }
    by_driver
        .into_iter()
        .map(|(driver, (_, name))| (driver, name))
        .collect()
}

/// Takes a snapshot of each claim whose driver has a snapshot class and waits until each is
/// ready; claims without one are left for a live copy.
pub async fn snapshot_claims(
    cluster: &ClusterClient,
    owner: &str,
    claims: &[ClaimRef],
    use_snapshots: bool,
    timeout: Duration,
) -> Result<Vec<VolumeCopy>, VolumeError> {
    let classes = if use_snapshots {
        snapshot_classes(cluster).await
    } else {
        HashMap::new()
    };
    let stem = temporary_stem(owner);
    let mut copies = Vec::new();
    // A claim not bound to a volume holds no data yet: there is nothing to copy.
    for (index, claim) in claims
        .iter()
        .enumerate()
        .filter(|(_, claim)| claim.volume_name.is_some())
    {
        let volume = format!("{}.{}", claim.namespace, claim.name);
        let driver = match &claim.volume_name {
            Some(pv) => cluster
                .get(&path("", "v1", None, "persistentvolumes"), pv)
                .await?
                .and_then(|pv| {
                    pv.pointer("/spec/csi/driver")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                }),
            None => None,
        };
        let class = driver.and_then(|driver| classes.get(&driver).cloned());
        let Some(class) = class else {
            copies.push(VolumeCopy {
                claim: claim.clone(),
                volume,
                snapshot: None,
                snapshot_class: None,
                restore_size: None,
            });
            continue;
        };
        let name = format!("{stem}-{index}");
        let snapshot = json!({
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": {"name": name, "namespace": claim.namespace, "labels": labels(owner)},
            "spec": {"volumeSnapshotClassName": class,
                     "source": {"persistentVolumeClaimName": claim.name}}
        });
        cluster
            .create_or_get(
                &snapshot_path(Some(&claim.namespace), "volumesnapshots"),
                &snapshot,
            )
            .await?;
        copies.push(VolumeCopy {
            claim: claim.clone(),
            volume,
            snapshot: Some(name),
            snapshot_class: Some(class),
            restore_size: None,
        });
    }
    for copy in &mut copies {
        if let Some(name) = &copy.snapshot {
            copy.restore_size =
                wait_snapshot_ready(cluster, &copy.claim.namespace, name, timeout).await?;
        }
    }
    Ok(copies)
}

async fn wait_snapshot_ready(
    cluster: &ClusterClient,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<Option<String>, VolumeError> {
    let collection = snapshot_path(Some(namespace), "volumesnapshots");
    let deadline = tokio::time::Instant::now() + timeout;
    let failed = |message: String| VolumeError::Snapshot {
        namespace: namespace.to_string(),
        name: name.to_string(),
        message,
    };
    loop {
        let snapshot = cluster
            .get(&collection, name)
            .await?
            .ok_or_else(|| failed("it was deleted while the backup waited for it".into()))?;
        if snapshot
            .pointer("/status/readyToUse")
            .and_then(Value::as_bool)
            == Some(true)
        {
            return Ok(snapshot
                .pointer("/status/restoreSize")
                .and_then(Value::as_str)
                .map(str::to_string));
        }
        if let Some(message) = snapshot
            .pointer("/status/error/message")
            .and_then(Value::as_str)
        {
            return Err(failed(message.to_string()));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(failed(format!("not ready after {} s", timeout.as_secs())));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What a mover Job is asked to do.
#[derive(Debug, Clone)]
pub struct MoverJob<'a> {
    /// The run whose temporary objects these are.
    pub owner: &'a str,
    /// Its number among the run's volumes (for unique names).
    pub index: usize,
    /// The namespace it runs in.
    pub namespace: &'a str,
    /// The PVC it mounts at `/data`.
    pub claim: &'a str,
    /// Whether the PVC is mounted read-only.
    pub read_only: bool,
    /// The `stowage mover ...` arguments after `stowage mover`.
    pub args: Vec<String>,
    /// The location (JSON) and passphrase, given through a Secret.
    pub location_json: &'a str,
    /// The passphrase.
    pub passphrase: &'a str,
}

/// Runs one data-mover Job to its end: creates its Secret and Job (or finds them from an earlier
/// attempt), waits until it completes, and fails with the end of its log if it fails. Returns the
/// mover's JSON summary (the last line of its log), or `null` when the log cannot be read: the
/// Job's completion is what counts, the summary only feeds progress figures.
pub async fn run_mover(
    cluster: &ClusterClient,
    settings: &MoverSettings,
    job: &MoverJob<'_>,
) -> Result<Value, VolumeError> {
    let stem = temporary_stem(job.owner);
    let secret_name = format!("{stem}-mover");
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": secret_name, "namespace": job.namespace, "labels": labels(job.owner)},
        "type": "Opaque",
        "data": {"STOWAGE_LOCATION": BASE64.encode(job.location_json),
                 "STOWAGE_PASSPHRASE": BASE64.encode(job.passphrase),
                 "STOWAGE_MOVER_CONCURRENCY": BASE64.encode(settings.concurrency.to_string())}
    });
    cluster
        .create_or_get(&path("", "v1", Some(job.namespace), "secrets"), &secret)
        .await?;
    let name = format!("{stem}-{}", job.index);
    let mut command = vec!["stowage".to_string(), "mover".to_string()];
    command.extend(job.args.iter().cloned());
    let manifest = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": job.namespace, "labels": labels(job.owner)},
        "spec": {
            "backoffLimit": 2,
            "template": {
                "metadata": {"labels": labels(job.owner)},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "mover",
                        "image": settings.image,
                        "command": command,
                        "envFrom": [{"secretRef": {"name": secret_name}}],
                        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": job.read_only}]
                    }],
                    "volumes": [{"name": "data",
                                 "persistentVolumeClaim": {"claimName": job.claim, "readOnly": job.read_only}}]
                }
            }
        }
    });
    let jobs = path("batch", "v1", Some(job.namespace), "jobs");
    cluster.create_or_get(&jobs, &manifest).await?;
    let deadline = tokio::time::Instant::now() + settings.timeout;
    let failed = |message: String| VolumeError::Mover {
        namespace: job.namespace.to_string(),
        job: name.clone(),
        message,
    };
    loop {
        let current = cluster
            .get(&jobs, &name)
            .await?
            .ok_or_else(|| failed("the Job was deleted while the run waited for it".into()))?;
        let condition = |kind: &str| {
            current
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|conditions| {
                    conditions.iter().any(|c| {
                        c.get("type").and_then(Value::as_str) == Some(kind)
                            && c.get("status").and_then(Value::as_str) == Some("True")
                    })
                })
        };
        if condition("Complete") {
            let log = last_pod_log(cluster, job.namespace, &name).await;
            return Ok(log
                .lines()
                .last()
                .and_then(|line| serde_json::from_str(line).ok())
                .unwrap_or(Value::Null));
        }
        if condition("Failed") {
            let log = last_pod_log(cluster, job.namespace, &name).await;
            return Err(failed(format!("failed; its log ends with: {log}")));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(failed(format!(
                "not finished after {} s",
                settings.timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The end of the log of the newest pod of Job `job`, or why it cannot be read.
async fn last_pod_log(cluster: &ClusterClient, namespace: &str, job: &str) -> String {
    let pods = path("", "v1", Some(namespace), "pods");
    let pod = match cluster.list(&pods, &format!("job-name={job}")).await {
        Ok(pods) => pods.into_iter().max_by_key(|pod| {
            pod.pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .map(str::to_string)
        }),
        Err(error) => return format!("(pods unreadable: {error})"),
    };
    let Some(name) = pod
        .as_ref()
        .and_then(|pod| pod.pointer("/metadata/name"))
        .and_then(Value::as_str)
    else {
        return "(no pod)".into();
    };
    match cluster.log_tail(namespace, name, None, 20).await {
        Ok(log) => log.trim().to_string(),
        Err(error) => format!("(log unreadable: {error})"),
    }
}

/// Makes the PVC a mover reads for `copy`: a clone of its snapshot, or the live PVC itself.
/// Returns the PVC's name and whether it is a temporary clone.
pub async fn source_claim(
    cluster: &ClusterClient,
    owner: &str,
    index: usize,
    copy: &VolumeCopy,
) -> Result<(String, bool), VolumeError> {
    let Some(snapshot) = &copy.snapshot else {
        return Ok((copy.claim.name.clone(), false));
    };
    let claims = path(
        "",
        "v1",
        Some(&copy.claim.namespace),
        "persistentvolumeclaims",
    );
    let original = cluster.get(&claims, &copy.claim.name).await?;
    let size = copy
        .restore_size
        .clone()
        .or_else(|| {
            original
                .as_ref()
                .and_then(|o| o.pointer("/spec/resources/requests/storage"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "1Gi".to_string());
    let name = format!("{}-{index}-src", temporary_stem(owner));
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
        "dataSource": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snapshot}
    });
    if let Some(class) = &copy.claim.storage_class {
        spec["storageClassName"] = json!(class);
    }
    let clone = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": copy.claim.namespace, "labels": labels(owner)},
        "spec": spec
    });
    cluster.create_or_get(&claims, &clone).await?;
    Ok((name, true))
}

/// Removes every temporary object of run `owner` in `namespaces`: Jobs (and their pods),
/// cloned PVCs, VolumeSnapshots, mover Secrets. Returns how many were removed.
pub async fn remove_temporaries(
    cluster: &ClusterClient,
    owner: &str,
    namespaces: &[String],
) -> Result<usize, KubeError> {
    let selector = format!("{OWNER_LABEL}={owner}");
    let mut removed = 0;
    for namespace in namespaces {
        let ns = Some(namespace.as_str());
        for collection in [
            path("batch", "v1", ns, "jobs"),
            path("", "v1", ns, "pods"),
            path("", "v1", ns, "persistentvolumeclaims"),
            path("", "v1", ns, "secrets"),
        ] {
            removed += cluster.delete_labelled(&collection, &selector).await?;
        }
        // Without the snapshot CRDs there are no snapshots to remove.
        if let Ok(count) = cluster
            .delete_labelled(&snapshot_path(ns, "volumesnapshots"), &selector)
            .await
        {
            removed += count;
        }
    }
    Ok(removed)
}
