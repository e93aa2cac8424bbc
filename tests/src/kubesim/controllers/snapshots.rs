//! CSI snapshots as the external snapshot-controller and kubesim's CSI snapshotter do them: the
//! snapshot.storage.k8s.io/v1 CRDs and the VolumeSnapshotClass `csi-kubesim` installed at start;
//! a VolumeSnapshot of a bound claim gets a VolumeSnapshotContent `snapcontent-<snapshot uid>`
//! bound both ways and a point-in-time copy of the volume's folder at
//! `volume_folders().snapshot(<content>)`, then both report `readyToUse`. Deleting a snapshot
//! whose content's deletionPolicy is Delete removes the content and the copy. Errors are
//! reported in `status.error` as the real controller reports them.

use serde_json::{Value, json};

use super::super::errors::ApiError;
use super::super::volumes::CSI_DRIVER;
use super::admission::escape;
use super::folders;
use super::objects::{
    CLAIMS, Kind, Objects, SNAPSHOT_CLASSES, SNAPSHOT_CONTENTS, SNAPSHOTS, VOLUMES, is_deleting,
    meta, now, quantity_bytes, text,
};
use super::report;

/// The VolumeSnapshotClass every cluster starts with.
pub const DEFAULT_SNAPSHOT_CLASS: &str = "csi-kubesim";
/// The annotation that marks the default VolumeSnapshotClass of a driver.
pub const DEFAULT_SNAPSHOT_CLASS_ANNOTATION: &str =
    "snapshot.storage.kubernetes.io/is-default-class";

const CRDS: Kind = Kind {
    group: "apiextensions.k8s.io",
    version: "v1",
    plural: "customresourcedefinitions",
};

fn object_schema(properties: Value) -> Value {
    json!({"type": "object", "properties": properties})
}

fn crd(
    plural: &str,
    kind: &str,
    short_names: &[&str],
    scope: &str,
    properties: Value,
    columns: Value,
) -> Value {
    let singular = kind.to_lowercase();
    let mut version = json!({
        "name": "v1", "served": true, "storage": true,
        "schema": {"openAPIV3Schema": object_schema(properties)},
        "additionalPrinterColumns": columns,
    });
    if kind != "VolumeSnapshotClass" {
        version["subresources"] = json!({"status": {}});
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {
            "name": format!("{plural}.snapshot.storage.k8s.io"),
            "annotations": {
                "api-approved.kubernetes.io": "https://github.com/kubernetes-csi/external-snapshotter/pull/814",
            },
        },
        "spec": {
            "group": "snapshot.storage.k8s.io",
            "names": {
                "kind": kind, "listKind": format!("{kind}List"), "plural": plural,
                "singular": singular, "shortNames": short_names,
            },
            "scope": scope,
            "versions": [version],
        },
    })
}

fn column(name: &str, path: &str, kind: &str) -> Value {
    json!({"name": name, "jsonPath": path, "type": kind})
}

/// The three CRDs with the essentials of the real schemas.
fn definitions() -> [Value; 3] {
    let string = json!({"type": "string"});
    let error = object_schema(
        json!({"message": string, "time": {"type": "string", "format": "date-time"}}),
    );
    let snapshot = crd(
        "volumesnapshots",
        "VolumeSnapshot",
        &["vs"],
        "Namespaced",
        json!({
            "apiVersion": string, "kind": string, "metadata": {"type": "object"},
            "spec": {
                "type": "object", "required": ["source"],
                "properties": {
                    "source": object_schema(json!({
                        "persistentVolumeClaimName": string,
                        "volumeSnapshotContentName": string,
                    })),
                    "volumeSnapshotClassName": string,
                },
            },
            "status": object_schema(json!({
                "boundVolumeSnapshotContentName": string,
                "creationTime": {"type": "string", "format": "date-time"},
                "error": error,
                "readyToUse": {"type": "boolean"},
                "restoreSize": {"x-kubernetes-int-or-string": true},
                "volumeGroupSnapshotName": string,
            })),
        }),
        json!([
            column("ReadyToUse", ".status.readyToUse", "boolean"),
            column(
                "SourcePVC",
                ".spec.source.persistentVolumeClaimName",
                "string"
            ),
            column(
                "SourceSnapshotContent",
                ".spec.source.volumeSnapshotContentName",
                "string"
            ),
            column("RestoreSize", ".status.restoreSize", "string"),
            column("SnapshotClass", ".spec.volumeSnapshotClassName", "string"),
            column(
                "SnapshotContent",
                ".status.boundVolumeSnapshotContentName",
                "string"
            ),
            column("CreationTime", ".status.creationTime", "date"),
            column("Age", ".metadata.creationTimestamp", "date"),
        ]),
    );
    let content = crd(
        "volumesnapshotcontents",
        "VolumeSnapshotContent",
        &["vsc", "vscs"],
        "Cluster",
        json!({
            "apiVersion": string, "kind": string, "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "required": ["deletionPolicy", "driver", "source", "volumeSnapshotRef"],
                "properties": {
                    "deletionPolicy": {"type": "string", "enum": ["Delete", "Retain"]},
                    "driver": string,
                    "source": object_schema(json!({"snapshotHandle": string, "volumeHandle": string})),
                    "sourceVolumeMode": string,
                    "volumeSnapshotClassName": string,
                    "volumeSnapshotRef": object_schema(json!({
                        "apiVersion": string, "kind": string, "name": string,
                        "namespace": string, "resourceVersion": string, "uid": string,
                    })),
                },
            },
            "status": object_schema(json!({
                "creationTime": {"type": "integer", "format": "int64"},
                "error": error,
                "readyToUse": {"type": "boolean"},
                "restoreSize": {"type": "integer", "format": "int64", "minimum": 0},
                "snapshotHandle": string,
                "volumeGroupSnapshotHandle": string,
            })),
        }),
        json!([
            column("ReadyToUse", ".status.readyToUse", "boolean"),
            column("RestoreSize", ".status.restoreSize", "integer"),
            column("DeletionPolicy", ".spec.deletionPolicy", "string"),
            column("Driver", ".spec.driver", "string"),
            column(
                "VolumeSnapshotClass",
                ".spec.volumeSnapshotClassName",
                "string"
            ),
            column("VolumeSnapshot", ".spec.volumeSnapshotRef.name", "string"),
            column(
                "VolumeSnapshotNamespace",
                ".spec.volumeSnapshotRef.namespace",
                "string"
            ),
            column("Age", ".metadata.creationTimestamp", "date"),
        ]),
    );
    let class = crd(
        "volumesnapshotclasses",
        "VolumeSnapshotClass",
        &["vsclass", "vsclasses"],
        "Cluster",
        json!({
            "apiVersion": string, "kind": string, "metadata": {"type": "object"},
            "deletionPolicy": {"type": "string", "enum": ["Delete", "Retain"]},
            "driver": string,
            "parameters": {"type": "object", "additionalProperties": string},
        }),
        json!([
            column("Driver", ".driver", "string"),
            column("DeletionPolicy", ".deletionPolicy", "string"),
            column("Age", ".metadata.creationTimestamp", "date"),
        ]),
    );
    [snapshot, content, class]
}

/// Installs the snapshot CRDs and the default VolumeSnapshotClass when missing.
pub fn install(objects: &Objects<'_>) -> Result<(), ApiError> {
    for definition in definitions() {
        if objects.get(&CRDS, "", meta(&definition, "name")).is_none() {
            objects.create(&CRDS, None, definition)?;
        }
    }
    if objects
        .get(&SNAPSHOT_CLASSES, "", DEFAULT_SNAPSHOT_CLASS)
        .is_none()
    {
        objects.create(
            &SNAPSHOT_CLASSES,
            None,
            json!({
                "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
                "metadata": {
                    "name": DEFAULT_SNAPSHOT_CLASS,
                    "annotations": {DEFAULT_SNAPSHOT_CLASS_ANNOTATION: "true"},
                },
                "driver": CSI_DRIVER,
                "deletionPolicy": "Delete",
            }),
        )?;
    }
    Ok(())
}

/// Writes `status.error` (and readyToUse false) unless the snapshot already reports it.
fn fail(objects: &Objects<'_>, snapshot: &Value, message: &str) {
    if text(snapshot, "/status/error/message") == message {
        return;
    }
    let status = json!({
        "readyToUse": false,
        "error": {"message": message, "time": now()},
    });
    report(
        "reporting a snapshot error",
        meta(snapshot, "name"),
        objects.set_status(&SNAPSHOTS, snapshot, status),
    );
}

/// The class a snapshot of a volume on `driver` uses: the named one, or the driver's default.
fn class_for(objects: &Objects<'_>, snapshot: &Value, driver: &str) -> Result<Value, String> {
    let named = text(snapshot, "/spec/volumeSnapshotClassName");
    if !named.is_empty() {
        return objects
            .get(&SNAPSHOT_CLASSES, "", named)
            .map(|c| (*c).clone())
            .ok_or_else(|| {
                format!("Failed to get snapshot class with error volumesnapshotclass.snapshot.storage.k8s.io \"{named}\" not found")
            });
    }
    let annotation = format!(
        "/metadata/annotations/{}",
        escape(DEFAULT_SNAPSHOT_CLASS_ANNOTATION)
    );
    let defaults = objects.list(&SNAPSHOT_CLASSES, None, |c| {
        text(c, "/driver") == driver && text(c, &annotation) == "true"
    });
    match defaults.as_slice() {
        [class] => Ok((**class).clone()),
        [] => Err(format!(
            "Failed to set default snapshot class with error cannot find default snapshot class for snapshot {}",
            meta(snapshot, "name")
        )),
        _ => Err(format!(
            "Failed to set default snapshot class with error {} default snapshot classes were found",
            defaults.len()
        )),
    }
}

/// Reconciles a VolumeSnapshot: its content, the copy, both statuses.
pub fn snapshot(objects: &Objects<'_>, namespace: &str, name: &str) {
    let Some(snapshot) = objects.get(&SNAPSHOTS, namespace, name) else {
        return;
    };
    if is_deleting(&snapshot)
        || snapshot
            .pointer("/status/readyToUse")
            .and_then(Value::as_bool)
            == Some(true)
    {
        return;
    }
    let static_content = text(&snapshot, "/spec/source/volumeSnapshotContentName");
    if !static_content.is_empty() {
        bind_static(objects, &snapshot, static_content);
        return;
    }
    let claim_name = text(&snapshot, "/spec/source/persistentVolumeClaimName");
    let Some(claim) = objects.get(&CLAIMS, namespace, claim_name) else {
        fail(
            objects,
            &snapshot,
            &format!(
                "Failed to create snapshot content with error snapshot controller failed to update \
                 {namespace}/{name} on API server: cannot get claim from snapshot: \
                 persistentvolumeclaims \"{claim_name}\" not found"
            ),
        );
        return;
    };
    let volume = objects.get(&VOLUMES, "", text(&claim, "/spec/volumeName"));
    let Some(volume) = volume.filter(|_| text(&claim, "/status/phase") == "Bound") else {
        fail(
            objects,
            &snapshot,
            &format!(
                "the PVC {claim_name} is not yet bound to a PV, will not attempt to take a snapshot"
            ),
        );
        return;
    };
    let driver = text(&volume, "/spec/csi/driver");
    let class = match class_for(objects, &snapshot, driver) {
        Ok(class) => class,
        Err(message) => return fail(objects, &snapshot, &message),
    };
    if text(&class, "/driver") != driver {
        return fail(
            objects,
            &snapshot,
            &format!(
                "Failed to create snapshot content with error the volume's driver {driver:?} is not \
                 the snapshot class's {:?}",
                text(&class, "/driver")
            ),
        );
    }
    let class_name = meta(&class, "name").to_string();
    if text(&snapshot, "/spec/volumeSnapshotClassName").is_empty() {
        report(
            "setting a snapshot's class",
            name,
            objects.merge(
                &SNAPSHOTS,
                namespace,
                name,
                json!({"spec": {"volumeSnapshotClassName": class_name}}),
            ),
        );
    }
    let content_name = format!("snapcontent-{}", meta(&snapshot, "uid"));
    let folder = objects.cluster.volume_folders().snapshot(&content_name);
    if !folder.exists() {
        let source = objects
            .cluster
            .volume_folders()
            .volume(meta(&volume, "name"));
        if let Err(error) = folders::copy_tree(&source, &folder) {
            return fail(
                objects,
                &snapshot,
                &format!(
                    "Failed to create snapshot: copying {}: {error}",
                    source.display()
                ),
            );
        }
    }
    let size = volume
        .pointer("/spec/capacity/storage")
        .or_else(|| claim.pointer("/status/capacity/storage"))
        .and_then(Value::as_str)
        .unwrap_or("0")
        .to_string();
    let created = chrono::Utc::now();
    let content = match objects.get(&SNAPSHOT_CONTENTS, "", &content_name) {
        Some(content) => content,
        None => {
            let content = json!({
                "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
                "metadata": {"name": content_name},
                "spec": {
                    "deletionPolicy": class.get("deletionPolicy").cloned().unwrap_or_else(|| json!("Delete")),
                    "driver": driver,
                    "source": {"volumeHandle": text(&volume, "/spec/csi/volumeHandle")},
                    "sourceVolumeMode": volume.pointer("/spec/volumeMode").cloned().unwrap_or_else(|| json!("Filesystem")),
                    "volumeSnapshotClassName": class_name,
                    "volumeSnapshotRef": {
                        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                        "name": name, "namespace": namespace,
                        "uid": meta(&snapshot, "uid"),
                        "resourceVersion": meta(&snapshot, "resourceVersion"),
                    },
                },
            });
            match objects.create(&SNAPSHOT_CONTENTS, None, content) {
                Ok(content) => content,
                Err(error) => {
                    return fail(
                        objects,
                        &snapshot,
                        &format!("Failed to create snapshot content with error {error}"),
                    );
                }
            }
        }
    };
    if content
        .pointer("/status/readyToUse")
        .and_then(Value::as_bool)
        != Some(true)
    {
        let status = json!({
            "creationTime": created.timestamp_nanos_opt().unwrap_or_default(),
            "readyToUse": true,
            "restoreSize": quantity_bytes(&size).unwrap_or_default(),
            "snapshotHandle": content_name,
        });
        report(
            "writing a snapshot content's status",
            &content_name,
            objects.set_status(&SNAPSHOT_CONTENTS, &content, status),
        );
    }
    let status = json!({
        "boundVolumeSnapshotContentName": content_name,
        "creationTime": created.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "readyToUse": true,
        "restoreSize": size,
    });
    if let Some(snapshot) = objects.get(&SNAPSHOTS, namespace, name) {
        report(
            "writing a snapshot's status",
            name,
            objects.set_status(&SNAPSHOTS, &snapshot, status),
        );
    }
}

/// A snapshot of a pre-provisioned content (`spec.source.volumeSnapshotContentName`).
fn bind_static(objects: &Objects<'_>, snapshot: &Value, content_name: &str) {
    let Some(content) = objects.get(&SNAPSHOT_CONTENTS, "", content_name) else {
        return fail(
            objects,
            snapshot,
            &format!(
                "VolumeSnapshotContent is missing: volumesnapshotcontent.snapshot.storage.k8s.io \
                 \"{content_name}\" not found"
            ),
        );
    };
    let names_it = text(&content, "/spec/volumeSnapshotRef/name") == meta(snapshot, "name")
        && text(&content, "/spec/volumeSnapshotRef/namespace") == meta(snapshot, "namespace");
    if !names_it {
        return fail(
            objects,
            snapshot,
            &format!("VolumeSnapshotContent {content_name} is bound to a different snapshot"),
        );
    }
    content_status(objects, &content);
    let Some(content) = objects.get(&SNAPSHOT_CONTENTS, "", content_name) else {
        return;
    };
    let ready = content
        .pointer("/status/readyToUse")
        .and_then(Value::as_bool)
        == Some(true);
    let bytes = content
        .pointer("/status/restoreSize")
        .and_then(Value::as_u64)
        .unwrap_or_default();
    let status = json!({
        "boundVolumeSnapshotContentName": content_name,
        "creationTime": meta(&content, "creationTimestamp"),
        "readyToUse": ready,
        "restoreSize": bytes.to_string(),
    });
    report(
        "writing a snapshot's status",
        meta(snapshot, "name"),
        objects.set_status(&SNAPSHOTS, snapshot, status),
    );
}

/// Reconciles the snapshots of a claim that are not ready yet (the claim may just have bound).
pub fn waiting_for_claim(objects: &Objects<'_>, namespace: &str, claim: &str) {
    let waiting = objects.list(&SNAPSHOTS, Some(namespace), |snapshot| {
        text(snapshot, "/spec/source/persistentVolumeClaimName") == claim
            && snapshot
                .pointer("/status/readyToUse")
                .and_then(Value::as_bool)
                != Some(true)
    });
    for snapshot in waiting {
        self::snapshot(objects, namespace, meta(&snapshot, "name"));
    }
}

/// A pre-provisioned content of this driver is ready when its copy exists; its handle is the
/// name of the content the copy was taken for.
fn content_status(objects: &Objects<'_>, content: &Value) {
    if content
        .pointer("/status/readyToUse")
        .and_then(Value::as_bool)
        == Some(true)
        || text(content, "/spec/driver") != CSI_DRIVER
    {
        return;
    }
    let handle = text(content, "/spec/source/snapshotHandle");
    if handle.is_empty() {
        return;
    }
    let own = objects
        .cluster
        .volume_folders()
        .snapshot(meta(content, "name"));
    let source = objects.cluster.volume_folders().snapshot(handle);
    if !own.exists()
        && source.is_dir()
        && handle != meta(content, "name")
        && let Err(error) = folders::copy_tree(&source, &own)
    {
        tracing::warn!(%error, "copying a pre-provisioned snapshot failed");
        return;
    }
    if !own.is_dir() {
        return;
    }
    let status = json!({
        "creationTime": chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
        "readyToUse": true,
        "restoreSize": 0,
        "snapshotHandle": handle,
    });
    report(
        "writing a snapshot content's status",
        meta(content, "name"),
        objects.set_status(&SNAPSHOT_CONTENTS, content, status),
    );
}

/// Reconciles a content: a pre-provisioned one becomes ready, its snapshot follows.
pub fn content(objects: &Objects<'_>, content: &Value) {
    if is_deleting(content) {
        return;
    }
    content_status(objects, content);
    let namespace = text(content, "/spec/volumeSnapshotRef/namespace");
    let name = text(content, "/spec/volumeSnapshotRef/name");
    if !name.is_empty() {
        snapshot(objects, namespace, name);
    }
}

/// A snapshot was deleted: its content goes too when the content's deletionPolicy is Delete.
pub fn snapshot_gone(objects: &Objects<'_>, snapshot: &Value) {
    let mut content_name = text(snapshot, "/status/boundVolumeSnapshotContentName").to_string();
    if content_name.is_empty() {
        content_name = format!("snapcontent-{}", meta(snapshot, "uid"));
    }
    let Some(content) = objects.get(&SNAPSHOT_CONTENTS, "", &content_name) else {
        return;
    };
    if text(&content, "/spec/volumeSnapshotRef/uid") != meta(snapshot, "uid")
        && !text(&content, "/spec/volumeSnapshotRef/uid").is_empty()
    {
        return;
    }
    if text(&content, "/spec/deletionPolicy") == "Delete" {
        report(
            "deleting a snapshot's content",
            &content_name,
            objects.delete(&SNAPSHOT_CONTENTS, "", &content_name),
        );
    }
}

/// A content was deleted: with deletionPolicy Delete its copy goes too.
pub fn content_gone(objects: &Objects<'_>, content: &Value) {
    if text(content, "/spec/deletionPolicy") != "Delete" {
        return;
    }
    let folder = objects
        .cluster
        .volume_folders()
        .snapshot(meta(content, "name"));
    if let Err(error) = folders::remove_tree(&folder) {
        tracing::warn!(%error, folder = %folder.display(), "removing a snapshot copy failed");
    }
}
