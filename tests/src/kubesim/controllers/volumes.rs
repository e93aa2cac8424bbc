//! The storage controllers: the default StorageClass `standard` and the CSIDriver installed at
//! start; the PersistentVolume controller and kubesim's CSI provisioner. A claim of a class
//! whose provisioner is [`CSI_DRIVER`] gets a PersistentVolume `pvc-<claim uid>` backed by the
//! folder `volume_folders().volume(<pv>)` (empty, or a copy of a snapshot's or another claim's
//! folder when the claim has a `dataSource`), bound both ways. A claim naming its volume, or a
//! volume whose claimRef names a claim, binds statically. When a bound claim goes, its volume
//! is deleted with its folder (reclaimPolicy Delete) or Released (Retain).

use serde_json::{Value, json};

use super::super::errors::ApiError;
use super::super::volumes::CSI_DRIVER;
use super::admission::{
    BETA_CLASS_ANNOTATION, CLAIM_PROTECTION, DEFAULT_CLASS_ANNOTATION, VOLUME_PROTECTION, escape,
};
use super::folders;
use super::objects::{
    CLAIMS, Kind, Objects, PODS, SNAPSHOT_CONTENTS, SNAPSHOTS, STORAGE_CLASSES, VOLUMES,
    is_deleting, meta, now, pod_phase, text,
};
use super::report;

/// The default StorageClass every cluster starts with.
pub const DEFAULT_CLASS: &str = "standard";

const CSI_DRIVERS: Kind = Kind {
    group: "storage.k8s.io",
    version: "v1",
    plural: "csidrivers",
};

/// Creates the default StorageClass and the CSIDriver when they are missing.
pub fn install(objects: &Objects<'_>) -> Result<(), ApiError> {
    if objects.get(&STORAGE_CLASSES, "", DEFAULT_CLASS).is_none() {
        objects.create(
            &STORAGE_CLASSES,
            None,
            json!({
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {
                    "name": DEFAULT_CLASS,
                    "annotations": {DEFAULT_CLASS_ANNOTATION: "true"},
                },
                "provisioner": CSI_DRIVER,
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "Immediate",
                "allowVolumeExpansion": true,
            }),
        )?;
    }
    if objects.get(&CSI_DRIVERS, "", CSI_DRIVER).is_none() {
        objects.create(
            &CSI_DRIVERS,
            None,
            json!({
                "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
                "metadata": {"name": CSI_DRIVER},
                "spec": {
                    "attachRequired": false,
                    "podInfoOnMount": false,
                    "requiresRepublish": false,
                    "storageCapacity": false,
                    "fsGroupPolicy": "File",
                    "seLinuxMount": false,
                    "volumeLifecycleModes": ["Persistent"],
                },
            }),
        )?;
    }
    Ok(())
}

/// The class a claim asks for: `spec.storageClassName`, else the beta annotation.
fn claim_class(claim: &Value) -> &str {
    match claim
        .pointer("/spec/storageClassName")
        .and_then(Value::as_str)
    {
        Some(class) => class,
        None => text(
            claim,
            &format!("/metadata/annotations/{}", escape(BETA_CLASS_ANNOTATION)),
        ),
    }
}

fn set_phase(objects: &Objects<'_>, kind: &Kind, object: &Value, phase: &str) {
    if text(object, "/status/phase") == phase {
        return;
    }
    let mut status = object.get("status").cloned().unwrap_or_else(|| json!({}));
    status["phase"] = json!(phase);
    if kind.plural == VOLUMES.plural {
        status["lastPhaseTransitionTime"] = json!(now());
    }
    report(
        "writing a phase",
        meta(object, "name"),
        objects.set_status(kind, object, status),
    );
}

/// Re-reconciles the claims still waiting (in one namespace, or everywhere).
pub fn pending_claims(objects: &Objects<'_>, namespace: Option<&str>) {
    let waiting = objects.list(&CLAIMS, namespace, |claim| {
        text(claim, "/status/phase") != "Bound" && !is_deleting(claim)
    });
    for claim in waiting {
        self::claim(objects, meta(&claim, "namespace"), meta(&claim, "name"));
    }
}

/// Reconciles a claim: binds it to its volume, provisioning one when its class is ours.
pub fn claim(objects: &Objects<'_>, namespace: &str, name: &str) {
    let Some(claim) = objects.get(&CLAIMS, namespace, name) else {
        return;
    };
    if is_deleting(&claim) {
        if !in_use(objects, namespace, name) {
            unprotect(objects, &CLAIMS, &claim, CLAIM_PROTECTION);
        }
        return;
    }
    let uid = meta(&claim, "uid");
    let volume_name = text(&claim, "/spec/volumeName");
    if !volume_name.is_empty() {
        match objects.get(&VOLUMES, "", volume_name) {
            Some(volume) => {
                let claimed_by = text(&volume, "/spec/claimRef/uid");
                let names_other = text(&volume, "/spec/claimRef/name") != name
                    && !text(&volume, "/spec/claimRef/name").is_empty();
                if (claimed_by.is_empty() || claimed_by == uid) && !names_other {
                    bind(objects, &claim, &volume, false);
                } else {
                    set_phase(objects, &CLAIMS, &claim, "Pending");
                }
            }
            // A bound claim whose volume went is Lost, as the real controller reports it.
            None if text(&claim, "/status/phase") == "Bound" => {
                set_phase(objects, &CLAIMS, &claim, "Lost")
            }
            None if text(&claim, "/status/phase") == "Lost" => {}
            None => set_phase(objects, &CLAIMS, &claim, "Pending"),
        }
        return;
    }
    let prebound = objects
        .list(&VOLUMES, None, |volume| {
            text(volume, "/spec/claimRef/namespace") == namespace
                && text(volume, "/spec/claimRef/name") == name
                && [String::new(), uid.to_string()]
                    .contains(&text(volume, "/spec/claimRef/uid").to_string())
        })
        .into_iter()
        .next();
    if let Some(volume) = prebound {
        bind(objects, &claim, &volume, true);
        return;
    }
    let class_name = claim_class(&claim);
    let class = objects.get(&STORAGE_CLASSES, "", class_name);
    let Some(class) = class.filter(|c| text(c, "/provisioner") == CSI_DRIVER) else {
        set_phase(objects, &CLAIMS, &claim, "Pending");
        return;
    };
    let volume_name = format!("pvc-{uid}");
    let volume = match objects.get(&VOLUMES, "", &volume_name) {
        Some(volume) => volume,
        None => {
            let folder = objects.cluster.volume_folders().volume(&volume_name);
            match populate(objects, &claim, &folder) {
                Ok(true) => {}
                Ok(false) => {
                    set_phase(objects, &CLAIMS, &claim, "Pending");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, claim = name, "provisioning a volume folder failed");
                    set_phase(objects, &CLAIMS, &claim, "Pending");
                    return;
                }
            }
            match objects.create(&VOLUMES, None, provisioned(&claim, &class, &volume_name)) {
                Ok(volume) => volume,
                Err(error) => {
                    report("provisioning a volume", &volume_name, Err::<(), _>(error));
                    return;
                }
            }
        }
    };
    bind(objects, &claim, &volume, true);
}

/// Fills a new volume's folder: a copy of the claim's data source, or empty. False when the
/// source is not ready yet (the claim waits).
fn populate(
    objects: &Objects<'_>,
    claim: &Value,
    folder: &std::path::Path,
) -> std::io::Result<bool> {
    if folder.exists() {
        return Ok(true);
    }
    let source = claim
        .pointer("/spec/dataSourceRef")
        .or_else(|| claim.pointer("/spec/dataSource"))
        .filter(|s| s.is_object());
    let Some(source) = source else {
        std::fs::create_dir_all(folder)?;
        return Ok(true);
    };
    let namespace = meta(claim, "namespace");
    let source_name = text(source, "/name");
    let from = match (text(source, "/apiGroup"), text(source, "/kind")) {
        ("snapshot.storage.k8s.io", "VolumeSnapshot") => {
            let Some(snapshot) = objects.get(&SNAPSHOTS, namespace, source_name) else {
                return Ok(false);
            };
            let content = text(&snapshot, "/status/boundVolumeSnapshotContentName");
            if snapshot
                .pointer("/status/readyToUse")
                .and_then(Value::as_bool)
                != Some(true)
                || objects.get(&SNAPSHOT_CONTENTS, "", content).is_none()
            {
                return Ok(false);
            }
            objects.cluster.volume_folders().snapshot(content)
        }
        ("", "PersistentVolumeClaim") => {
            let Some(source) = objects.get(&CLAIMS, namespace, source_name) else {
                return Ok(false);
            };
            if text(&source, "/status/phase") != "Bound" {
                return Ok(false);
            }
            objects
                .cluster
                .volume_folders()
                .volume(text(&source, "/spec/volumeName"))
        }
        _ => return Ok(false),
    };
    if !from.is_dir() {
        return Ok(false);
    }
    folders::copy_tree(&from, folder)?;
    Ok(true)
}

/// The PersistentVolume kubesim's CSI provisioner makes for a claim.
fn provisioned(claim: &Value, class: &Value, name: &str) -> Value {
    let capacity = claim
        .pointer("/spec/resources/requests/storage")
        .cloned()
        .unwrap_or_else(|| json!("1Gi"));
    let mut spec = json!({
        "capacity": {"storage": capacity},
        "accessModes": claim.pointer("/spec/accessModes").cloned().unwrap_or_else(|| json!(["ReadWriteOnce"])),
        "persistentVolumeReclaimPolicy": class.get("reclaimPolicy").cloned().unwrap_or_else(|| json!("Delete")),
        "storageClassName": meta(class, "name"),
        "volumeMode": claim.pointer("/spec/volumeMode").cloned().unwrap_or_else(|| json!("Filesystem")),
        "csi": {
            "driver": CSI_DRIVER,
            "volumeHandle": name,
            "fsType": "ext4",
            "volumeAttributes": {"storage.kubernetes.io/csiProvisionerIdentity": format!("kubesim-{CSI_DRIVER}")},
        },
        "claimRef": claim_reference(claim),
    });
    if let Some(options) = class.get("mountOptions") {
        spec["mountOptions"] = options.clone();
    }
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "annotations": {"pv.kubernetes.io/provisioned-by": CSI_DRIVER},
        },
        "spec": spec,
    })
}

fn claim_reference(claim: &Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": meta(claim, "namespace"),
        "name": meta(claim, "name"),
        "uid": meta(claim, "uid"),
        "resourceVersion": meta(claim, "resourceVersion"),
    })
}

/// Binds a claim and a volume both ways.
fn bind(objects: &Objects<'_>, claim: &Value, volume: &Value, by_controller: bool) {
    let volume_name = meta(volume, "name");
    let mut volume = volume.clone();
    if text(&volume, "/spec/claimRef/uid").is_empty() {
        let patch = json!({
            "metadata": {"annotations": {"pv.kubernetes.io/bound-by-controller": "yes"}},
            "spec": {"claimRef": claim_reference(claim)},
        });
        match objects.merge(&VOLUMES, "", volume_name, patch) {
            Ok(updated) => volume = (*updated).clone(),
            Err(error) => {
                report("binding a volume", volume_name, Err::<(), _>(error));
                return;
            }
        }
    }
    if let Some(driver) = volume.pointer("/spec/csi/driver").and_then(Value::as_str)
        && driver == CSI_DRIVER
        && let Err(error) =
            std::fs::create_dir_all(objects.cluster.volume_folders().volume(volume_name))
    {
        tracing::warn!(%error, volume = volume_name, "creating a volume folder failed");
    }
    set_phase(objects, &VOLUMES, &volume, "Bound");
    let namespace = meta(claim, "namespace");
    let name = meta(claim, "name");
    let mut annotations = json!({"pv.kubernetes.io/bind-completed": "yes"});
    if by_controller {
        annotations["pv.kubernetes.io/bound-by-controller"] = json!("yes");
    }
    if text(
        &volume,
        "/metadata/annotations/pv.kubernetes.io~1provisioned-by",
    ) == CSI_DRIVER
    {
        annotations["volume.beta.kubernetes.io/storage-provisioner"] = json!(CSI_DRIVER);
        annotations["volume.kubernetes.io/storage-provisioner"] = json!(CSI_DRIVER);
    }
    let mut patch = json!({"metadata": {"annotations": annotations}});
    if text(claim, "/spec/volumeName").is_empty() {
        patch["spec"] = json!({"volumeName": volume_name});
    }
    let claim = match objects.merge(&CLAIMS, namespace, name, patch) {
        Ok(claim) => claim,
        Err(error) => {
            report("binding a claim", name, Err::<(), _>(error));
            return;
        }
    };
    let status = json!({
        "phase": "Bound",
        "accessModes": volume.pointer("/spec/accessModes").cloned().unwrap_or(Value::Null),
        "capacity": volume.pointer("/spec/capacity").cloned().unwrap_or(Value::Null),
    });
    report(
        "writing a claim's status",
        name,
        objects.set_status(&CLAIMS, &claim, status),
    );
}

/// Reconciles a volume: its phase, and its claim when it names one.
pub fn volume(objects: &Objects<'_>, name: &str) {
    let Some(volume) = objects.get(&VOLUMES, "", name) else {
        return;
    };
    if is_deleting(&volume) {
        let claim = objects.get(
            &CLAIMS,
            text(&volume, "/spec/claimRef/namespace"),
            text(&volume, "/spec/claimRef/name"),
        );
        let bound = claim.is_some_and(|c| meta(&c, "uid") == text(&volume, "/spec/claimRef/uid"));
        if !bound {
            unprotect(objects, &VOLUMES, &volume, VOLUME_PROTECTION);
        }
        return;
    }
    let claim_namespace = text(&volume, "/spec/claimRef/namespace");
    let claim_name = text(&volume, "/spec/claimRef/name");
    if claim_name.is_empty() {
        set_phase(objects, &VOLUMES, &volume, "Available");
        return;
    }
    let claim_uid = text(&volume, "/spec/claimRef/uid");
    match objects.get(&CLAIMS, claim_namespace, claim_name) {
        Some(claim) if claim_uid.is_empty() || claim_uid == meta(&claim, "uid") => {
            if text(&claim, "/status/phase") != "Bound" {
                self::claim(objects, claim_namespace, claim_name);
            }
        }
        _ if claim_uid.is_empty() => set_phase(objects, &VOLUMES, &volume, "Available"),
        _ => release(objects, &volume),
    }
}

/// Whether a pod that has not finished uses the claim.
fn in_use(objects: &Objects<'_>, namespace: &str, claim: &str) -> bool {
    !objects
        .list(&PODS, Some(namespace), |pod| {
            !matches!(pod_phase(pod), "Succeeded" | "Failed") && uses_claim(pod, claim)
        })
        .is_empty()
}

fn uses_claim(pod: &Value, claim: &str) -> bool {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .is_some_and(|volumes| {
            volumes
                .iter()
                .any(|v| text(v, "/persistentVolumeClaim/claimName") == claim)
        })
}

/// The claims a pod mounts.
pub fn claims_of(pod: &Value) -> Vec<String> {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .map(|volumes| {
            volumes
                .iter()
                .map(|v| text(v, "/persistentVolumeClaim/claimName"))
                .filter(|name| !name.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Removes a protection finalizer, letting a deleted object go.
fn unprotect(objects: &Objects<'_>, kind: &Kind, object: &Value, finalizer: &str) {
    let Some(finalizers) = object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
    else {
        return;
    };
    if !finalizers.iter().any(|f| f.as_str() == Some(finalizer)) {
        return;
    }
    let remaining: Vec<&Value> = finalizers
        .iter()
        .filter(|f| f.as_str() != Some(finalizer))
        .collect();
    report(
        "removing a protection finalizer",
        meta(object, "name"),
        objects.merge(
            kind,
            meta(object, "namespace"),
            meta(object, "name"),
            json!({"metadata": {"finalizers": remaining}}),
        ),
    );
}

/// A volume whose claim went: deleted (reclaimPolicy Delete) or Released.
fn release(objects: &Objects<'_>, volume: &Value) {
    if text(volume, "/spec/persistentVolumeReclaimPolicy") == "Delete" {
        report(
            "deleting a released volume",
            meta(volume, "name"),
            objects.delete(&VOLUMES, "", meta(volume, "name")),
        );
    } else {
        set_phase(objects, &VOLUMES, volume, "Released");
    }
}

/// A claim was deleted: its bound volume is reclaimed.
pub fn claim_gone(objects: &Objects<'_>, claim: &Value) {
    let volume_name = text(claim, "/spec/volumeName");
    if volume_name.is_empty() {
        return;
    }
    if let Some(volume) = objects.get(&VOLUMES, "", volume_name)
        && text(&volume, "/spec/claimRef/uid") == meta(claim, "uid")
    {
        release(objects, &volume);
    }
}

/// A volume was deleted: the folder of a volume this driver provisioned goes with it when its
/// reclaimPolicy is Delete.
pub fn volume_gone(objects: &Objects<'_>, volume: &Value) {
    if text(volume, "/spec/csi/driver") != CSI_DRIVER
        || text(volume, "/spec/persistentVolumeReclaimPolicy") != "Delete"
    {
        return;
    }
    let folder = objects
        .cluster
        .volume_folders()
        .volume(meta(volume, "name"));
    if let Err(error) = folders::remove_tree(&folder) {
        tracing::warn!(%error, folder = %folder.display(), "removing a volume folder failed");
    }
}
