//! What every controller needs to read and write objects through the cluster: field access,
//! owner references, conditions that keep their timestamps, status replacement, and lookups of
//! the objects a controller owns. Writes go through [`Cluster`]'s verbs, so they follow the same
//! rules (and produce the same watch events) as requests from clients.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::super::cluster::{Cluster, DeleteOptions, storage_key};
use super::super::errors::ApiError;
use super::super::patch::PatchKind;
use super::super::resources::ResourceInfo;

/// The current time as the API writes it (RFC 3339, seconds).
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A string field at a JSON pointer, or "".
pub fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `metadata.<field>` as a string, or "".
pub fn meta<'a>(object: &'a Value, field: &str) -> &'a str {
    text(object, &format!("/metadata/{field}"))
}

/// Whether the object carries a deletionTimestamp.
pub fn is_deleting(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// An integer field at a JSON pointer, or `default`.
pub fn int(object: &Value, pointer: &str, default: i64) -> i64 {
    object
        .pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or(default)
}

/// The ownerReference a controller puts on what it creates for `owner`.
pub fn controller_reference(owner: &Value) -> Value {
    json!({
        "apiVersion": owner.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": owner.get("kind").cloned().unwrap_or(Value::Null),
        "name": meta(owner, "name"),
        "uid": meta(owner, "uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// The kind and name of the object's controller (the ownerReference with `controller: true`).
pub fn controller_of(object: &Value) -> Option<(&str, &str)> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|r| (text(r, "/kind"), text(r, "/name")))
}

fn controlled_by(object: &Value, uid: &str) -> bool {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter().any(|r| {
                r.get("controller").and_then(Value::as_bool) == Some(true)
                    && r.get("uid").and_then(Value::as_str) == Some(uid)
            })
        })
}

/// The kinds of resource the controllers read and write.
pub struct Kind {
    /// API group.
    pub group: &'static str,
    /// Version the controllers write.
    pub version: &'static str,
    /// Plural resource name.
    pub plural: &'static str,
}

/// Pods.
pub const PODS: Kind = Kind {
    group: "",
    version: "v1",
    plural: "pods",
};
/// ReplicaSets.
pub const REPLICA_SETS: Kind = Kind {
    group: "apps",
    version: "v1",
    plural: "replicasets",
};
/// ReplicationControllers.
pub const REPLICATION_CONTROLLERS: Kind = Kind {
    group: "",
    version: "v1",
    plural: "replicationcontrollers",
};
/// Deployments.
pub const DEPLOYMENTS: Kind = Kind {
    group: "apps",
    version: "v1",
    plural: "deployments",
};
/// StatefulSets.
pub const STATEFUL_SETS: Kind = Kind {
    group: "apps",
    version: "v1",
    plural: "statefulsets",
};
/// DaemonSets.
pub const DAEMON_SETS: Kind = Kind {
    group: "apps",
    version: "v1",
    plural: "daemonsets",
};
/// Jobs.
pub const JOBS: Kind = Kind {
    group: "batch",
    version: "v1",
    plural: "jobs",
};
/// CronJobs.
pub const CRON_JOBS: Kind = Kind {
    group: "batch",
    version: "v1",
    plural: "cronjobs",
};
/// PersistentVolumeClaims.
pub const CLAIMS: Kind = Kind {
    group: "",
    version: "v1",
    plural: "persistentvolumeclaims",
};
/// PersistentVolumes.
pub const VOLUMES: Kind = Kind {
    group: "",
    version: "v1",
    plural: "persistentvolumes",
};
/// StorageClasses.
pub const STORAGE_CLASSES: Kind = Kind {
    group: "storage.k8s.io",
    version: "v1",
    plural: "storageclasses",
};
/// VolumeSnapshots.
pub const SNAPSHOTS: Kind = Kind {
    group: "snapshot.storage.k8s.io",
    version: "v1",
    plural: "volumesnapshots",
};
/// VolumeSnapshotContents.
pub const SNAPSHOT_CONTENTS: Kind = Kind {
    group: "snapshot.storage.k8s.io",
    version: "v1",
    plural: "volumesnapshotcontents",
};
/// VolumeSnapshotClasses.
pub const SNAPSHOT_CLASSES: Kind = Kind {
    group: "snapshot.storage.k8s.io",
    version: "v1",
    plural: "volumesnapshotclasses",
};

impl Kind {
    /// The store key of the resource (`group/plural`).
    pub fn key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }
}

/// Reads and writes objects of the cluster on behalf of a controller.
pub struct Objects<'a> {
    /// The cluster.
    pub cluster: &'a Arc<Cluster>,
}

impl Objects<'_> {
    /// The served resource of a kind.
    pub fn resource(&self, kind: &Kind) -> Result<Arc<ResourceInfo>, ApiError> {
        self.cluster.resource(kind.group, kind.version, kind.plural)
    }

    /// One object, if it exists.
    pub fn get(&self, kind: &Kind, namespace: &str, name: &str) -> Option<Arc<Value>> {
        let resource = self.resource(kind).ok()?;
        self.cluster
            .store()
            .get(&storage_key(&resource), namespace, name)
    }

    /// Every object of a kind in a namespace (`None`: everywhere) that `filter` accepts.
    pub fn list(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        filter: impl Fn(&Value) -> bool,
    ) -> Vec<Arc<Value>> {
        self.cluster
            .store()
            .list(&kind.key(), namespace, None, 0, filter)
            .items
    }

    /// The objects of a kind in `namespace` whose controller is the object with `uid`.
    pub fn owned(&self, kind: &Kind, namespace: &str, uid: &str) -> Vec<Arc<Value>> {
        self.list(kind, Some(namespace), |o| controlled_by(o, uid))
    }

    /// Creates an object.
    pub fn create(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        object: Value,
    ) -> Result<Arc<Value>, ApiError> {
        let resource = self.resource(kind)?;
        self.cluster.create(&resource, namespace, object)
    }

    /// Applies a JSON merge patch to an object (never a conflict).
    pub fn merge(
        &self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        patch: Value,
    ) -> Result<Arc<Value>, ApiError> {
        let resource = self.resource(kind)?;
        self.cluster
            .patch(&resource, namespace, name, None, PatchKind::Merge, patch)
            .map(|(_, object)| object)
    }

    /// Replaces the status of an object; nothing changes (and no event follows) when it is
    /// already that status.
    pub fn set_status(
        &self,
        kind: &Kind,
        object: &Value,
        status: Value,
    ) -> Result<Arc<Value>, ApiError> {
        let resource = self.resource(kind)?;
        let mut next = object.clone();
        if let Some(metadata) = next.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("resourceVersion");
        }
        next["status"] = status;
        self.cluster.update(
            &resource,
            meta(object, "namespace"),
            meta(object, "name"),
            Some("status"),
            next,
        )
    }

    /// Replaces the status of `object` unless it changed since it was read (409 Conflict then,
    /// so that a read-modify-write loses no other writer's change).
    pub fn replace_status(
        &self,
        kind: &Kind,
        object: &Value,
        status: Value,
    ) -> Result<Arc<Value>, ApiError> {
        let resource = self.resource(kind)?;
        let mut next = object.clone();
        next["status"] = status;
        self.cluster.update(
            &resource,
            meta(object, "namespace"),
            meta(object, "name"),
            Some("status"),
            next,
        )
    }

    /// Deletes an object in the background; a missing object is not an error.
    pub fn delete(&self, kind: &Kind, namespace: &str, name: &str) -> Result<(), ApiError> {
        let resource = self.resource(kind)?;
        match self
            .cluster
            .delete(&resource, namespace, name, &DeleteOptions::default())
        {
            Ok(_) => Ok(()),
            Err(error) if error.code == 404 => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// A condition as the controllers write it, keeping `lastTransitionTime` (and
/// `lastUpdateTime`, when `with_update_time`) from `previous` while nothing about it changed, so
/// that a status written again is the same status.
pub fn condition(
    previous: &Value,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    with_update_time: bool,
) -> Value {
    let old = previous
        .as_array()
        .and_then(|c| c.iter().find(|c| text(c, "/type") == kind));
    let now = now();
    let transition = match old {
        Some(old) if text(old, "/status") == status => text(old, "/lastTransitionTime").to_string(),
        _ => now.clone(),
    };
    let mut condition = Map::new();
    condition.insert("type".into(), json!(kind));
    condition.insert("status".into(), json!(status));
    if with_update_time {
        let updated = match old {
            Some(old)
                if text(old, "/status") == status
                    && text(old, "/reason") == reason
                    && text(old, "/message") == message =>
            {
                text(old, "/lastUpdateTime").to_string()
            }
            _ => now.clone(),
        };
        condition.insert("lastUpdateTime".into(), json!(updated));
    }
    condition.insert("lastTransitionTime".into(), json!(transition));
    condition.insert("reason".into(), json!(reason));
    condition.insert("message".into(), json!(message));
    Value::Object(condition)
}

/// Whether `conditions` hold a condition of `kind` with status True.
pub fn has_true_condition(conditions: &Value, kind: &str) -> bool {
    conditions.as_array().is_some_and(|c| {
        c.iter()
            .any(|c| text(c, "/type") == kind && text(c, "/status") == "True")
    })
}

/// Whether a pod counts as ready (its Ready condition is True).
pub fn pod_is_ready(pod: &Value) -> bool {
    has_true_condition(
        pod.pointer("/status/conditions").unwrap_or(&Value::Null),
        "Ready",
    )
}

/// A pod's phase, or "".
pub fn pod_phase(pod: &Value) -> &str {
    text(pod, "/status/phase")
}

/// A template without nulls, empty objects and empty lists: what the API server's typed
/// round trip makes equal (`creationTimestamp: null`, `resources: {}` from clients that send
/// Go structs, such as `kubectl rollout undo`) compares equal here.
pub fn normalized(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), normalized(value)))
                .filter(|(_, value)| !is_empty(value))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// A short hash of a pod template (normalized), spelled with the alphabet the real controllers
/// use for `pod-template-hash` and `controller-revision-hash`.
pub fn template_hash(template: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let digest = blake3::hash(normalized(template).to_string().as_bytes());
    let bytes = digest.as_bytes();
    let number = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    number
        .to_string()
        .bytes()
        .map(|digit| ALPHABET[usize::from(digit) % ALPHABET.len()] as char)
        .collect()
}

/// A new pod from a pod template: its labels and annotations, `extra_labels`, the owner, and
/// either `name` or a generated name after `<generate_prefix>`.
pub fn pod_from_template(
    template: &Value,
    owner: &Value,
    name: Option<&str>,
    generate_prefix: &str,
    extra_labels: &[(&str, String)],
) -> Value {
    let mut labels = template
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (key, value) in extra_labels {
        labels.insert((*key).to_string(), json!(value));
    }
    let mut metadata = json!({
        "namespace": meta(owner, "namespace"),
        "labels": labels,
        "ownerReferences": [controller_reference(owner)],
    });
    if let Some(annotations) = template.pointer("/metadata/annotations") {
        metadata["annotations"] = annotations.clone();
    }
    match name {
        Some(name) => metadata["name"] = json!(name),
        None => metadata["generateName"] = json!(generate_prefix),
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Bytes in a Kubernetes quantity (`1Gi`, `500M`, `1024`), if it is one kubesim understands.
pub fn quantity_bytes(quantity: &str) -> Option<u64> {
    let quantity = quantity.trim();
    let split = quantity
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "Pi" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((number * factor).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_read_in_bytes() {
        assert_eq!(quantity_bytes("1Gi"), Some(1 << 30));
        assert_eq!(quantity_bytes("500M"), Some(500_000_000));
        assert_eq!(quantity_bytes("1024"), Some(1024));
        assert_eq!(quantity_bytes("1.5Ki"), Some(1536));
        assert_eq!(quantity_bytes("3 apples"), None);
    }

    #[test]
    fn template_hashes_are_stable_and_differ_by_template() {
        let a = json!({"spec": {"containers": [{"name": "a", "image": "nginx:1"}]}});
        let b = json!({"spec": {"containers": [{"name": "a", "image": "nginx:2"}]}});
        assert_eq!(template_hash(&a), template_hash(&a));
        assert_ne!(template_hash(&a), template_hash(&b));
        assert!(
            template_hash(&a)
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
        );
    }

    #[test]
    fn templates_from_typed_clients_compare_equal() {
        let sent = json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}});
        let typed = json!({"metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1", "resources": {}}]}});
        assert_eq!(normalized(&sent), normalized(&typed));
        assert_eq!(template_hash(&sent), template_hash(&typed));
    }

    #[test]
    fn a_condition_keeps_its_times_while_unchanged() {
        let first = condition(&Value::Null, "Ready", "True", "Done", "done", true);
        let previous = json!([{
            "type": "Ready", "status": "True", "reason": "Done", "message": "done",
            "lastTransitionTime": "2020-01-01T00:00:00Z", "lastUpdateTime": "2020-01-01T00:00:00Z",
        }]);
        let again = condition(&previous, "Ready", "True", "Done", "done", true);
        assert_eq!(again["lastTransitionTime"], "2020-01-01T00:00:00Z");
        assert_eq!(again["lastUpdateTime"], "2020-01-01T00:00:00Z");
        let flipped = condition(&previous, "Ready", "False", "Gone", "gone", true);
        assert_ne!(flipped["lastTransitionTime"], "2020-01-01T00:00:00Z");
        assert_eq!(first["status"], "True");
    }
}
