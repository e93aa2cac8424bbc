//! What a restore does to each backed-up object before it creates it: whether the object is
//! restored at all (objects owned by a controller come back through their controller; service
//! account tokens, endpoints and the like are made by the cluster), and the rewrite of what the
//! old cluster set (server metadata, status, cluster IPs, node names, token volumes, Job
//! controller-uid selectors, PV bindings) and of names under a namespace or storage-class
//! mapping. `docs/restore.md` lists every rule; this module is the only place that applies them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The label every restored object carries: the restore's id.
pub const RESTORE_LABEL: &str = "stowage.io/restore";

/// How a restore rewrites objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransformOptions {
    /// The restore's id, put in [`RESTORE_LABEL`].
    pub restore_id: String,
    /// Backed-up namespace → namespace to restore into.
    pub namespace_mapping: BTreeMap<String, String>,
    /// Backed-up storage class → storage class to use.
    pub storage_class_mapping: BTreeMap<String, String>,
    /// Keep Services' cluster IPs and node ports (they may clash in the target cluster).
    pub keep_service_addresses: bool,
    /// PVCs (`namespace/name`, as backed up) whose data the restore copies into a freshly
    /// provisioned volume: they lose their binding and their PVs are not restored.
    pub claims_with_data: Vec<String>,
}

/// Why an object is not restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skip(pub String);

fn meta(object: &Value, field: &str) -> Option<String> {
    object
        .get("metadata")?
        .get(field)?
        .as_str()
        .map(str::to_string)
}

fn group_of(object: &Value) -> String {
    object
        .get("apiVersion")
        .and_then(Value::as_str)
        .and_then(|v| v.split_once('/'))
        .map_or(String::new(), |(group, _)| group.to_string())
}

/// `kind` or `kind.group`, the way objects are named in rules and results.
pub fn kind_key(object: &Value) -> String {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let group = group_of(object);
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

/// Whether the object has an owner that is its controller.
fn controller_owner(object: &Value) -> Option<String> {
    object
        .pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|owner| owner.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|owner| {
            format!(
                "{} {}",
                owner.get("kind").and_then(Value::as_str).unwrap_or("?"),
                owner.get("name").and_then(Value::as_str).unwrap_or("?")
            )
        })
}

/// Whether this object is made by the cluster itself and must not be restored.
fn made_by_the_cluster(kind: &str, object: &Value) -> Option<Skip> {
    let name = meta(object, "name").unwrap_or_default();
    match kind {
        "Event" | "Event.events.k8s.io" => Some(Skip("events are not restored".into())),
        "Endpoints" | "EndpointSlice.discovery.k8s.io" => Some(Skip(
            "made by the cluster from the Service's selector".into(),
        )),
        "Secret"
            if object.get("type").and_then(Value::as_str)
                == Some("kubernetes.io/service-account-token") =>
        {
            Some(Skip(
                "service account tokens are issued by the target cluster".into(),
            ))
        }
        "ConfigMap" if name == "kube-root-ca.crt" => {
            Some(Skip("made by the cluster in every namespace".into()))
        }
        "ServiceAccount" if name == "default" => {
            Some(Skip("made by the cluster in every namespace".into()))
        }
        "Namespace"
            if matches!(
                name.as_str(),
                "default" | "kube-system" | "kube-public" | "kube-node-lease"
            ) =>
        {
            Some(Skip("exists in every cluster".into()))
        }
        _ => None,
    }
}

/// Decides whether `object` is restored and rewrites it for the target cluster.
pub fn prepare(mut object: Value, options: &TransformOptions) -> Result<Value, Skip> {
    let kind = kind_key(&object);
    if let Some(skip) = made_by_the_cluster(&kind, &object) {
        return Err(skip);
    }
    if let Some(owner) = controller_owner(&object) {
        return Err(Skip(format!("made by its controller ({owner})")));
    }
    let original_namespace = meta(&object, "namespace");
    if kind == "PersistentVolume" {
        let claim = object.pointer("/spec/claimRef").map(|c| {
            format!(
                "{}/{}",
                c.get("namespace").and_then(Value::as_str).unwrap_or(""),
                c.get("name").and_then(Value::as_str).unwrap_or("")
            )
        });
        if claim.is_some_and(|claim| options.claims_with_data.contains(&claim)) {
            return Err(Skip(
                "its claim's data is restored into a newly provisioned volume".into(),
            ));
        }
    }
    clean_metadata(&mut object, options);
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    match kind.as_str() {
        "Namespace" => {
            if let Some(name) = meta(&object, "name") {
                object["metadata"]["name"] = Value::String(map_namespace(options, &name));
            }
            if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("finalizers");
            }
        }
        "Service" => service(&mut object, options),
        "Pod" => pod_spec(object.get_mut("spec")),
        "Job.batch" => job(&mut object),
        "CronJob.batch" => pod_spec(object.pointer_mut("/spec/jobTemplate/spec/template/spec")),
        "Deployment.apps" | "StatefulSet.apps" | "DaemonSet.apps" | "ReplicaSet.apps" => {
            pod_spec(object.pointer_mut("/spec/template/spec"))
        }
        "PersistentVolumeClaim" => {
            let key = format!(
                "{}/{}",
                original_namespace.as_deref().unwrap_or(""),
                meta(&object, "name").unwrap_or_default()
            );
            claim(
                &mut object,
                options,
                options.claims_with_data.contains(&key),
            );
        }
        "PersistentVolume" => volume(&mut object, options),
        "RoleBinding.rbac.authorization.k8s.io"
        | "ClusterRoleBinding.rbac.authorization.k8s.io" => subjects(&mut object, options),
        _ => {}
    }
    Ok(object)
}

/// The namespace a backed-up namespace is restored into.
pub fn map_namespace(options: &TransformOptions, namespace: &str) -> String {
    options
        .namespace_mapping
        .get(namespace)
        .cloned()
        .unwrap_or_else(|| namespace.to_string())
}

/// Server-set metadata goes; the namespace is mapped; the restore label is added.
fn clean_metadata(object: &mut Value, options: &TransformOptions) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for field in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "managedFields",
        "selfLink",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "ownerReferences",
        "generateName",
    ] {
        metadata.remove(field);
    }
    if let Some(namespace) = metadata.get("namespace").and_then(Value::as_str) {
        let mapped = map_namespace(options, namespace);
        metadata.insert("namespace".into(), Value::String(mapped));
    }
    if let Some(annotations) = metadata
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        annotations.remove("deployment.kubernetes.io/revision");
    }
    let labels = metadata
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(labels) = labels.as_object_mut() {
        labels.insert(
            RESTORE_LABEL.into(),
            Value::String(options.restore_id.clone()),
        );
    }
}

fn service(object: &mut Value, options: &TransformOptions) {
    if options.keep_service_addresses {
        return;
    }
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    if !headless {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    spec.remove("healthCheckNodePort");
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            if let Some(port) = port.as_object_mut() {
                port.remove("nodePort");
            }
        }
    }
}

/// A pod template's node binding and service-account token volume go: the target cluster
/// schedules the pod and mounts its own token.
fn pod_spec(spec: Option<&mut Value>) {
    let Some(spec) = spec.and_then(Value::as_object_mut) else {
        return;
    };
    spec.remove("nodeName");
    let token_volumes: Vec<String> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .map(|volumes| {
            volumes
                .iter()
                .filter_map(|v| v.get("name").and_then(Value::as_str))
                .filter(|name| name.starts_with("kube-api-access-"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if token_volumes.is_empty() {
        return;
    }
    if let Some(volumes) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        volumes.retain(|v| {
            !v.get("name")
                .and_then(Value::as_str)
                .is_some_and(|name| token_volumes.iter().any(|t| t == name))
        });
    }
    for list in ["containers", "initContainers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for container in containers {
                if let Some(mounts) = container
                    .get_mut("volumeMounts")
                    .and_then(Value::as_array_mut)
                {
                    mounts.retain(|m| {
                        !m.get("name")
                            .and_then(Value::as_str)
                            .is_some_and(|name| token_volumes.iter().any(|t| t == name))
                    });
                }
            }
        }
    }
}

/// A Job's generated selector and controller-uid labels go (the target cluster makes new ones),
/// unless the Job chose its selector itself.
fn job(object: &mut Value) {
    let manual = object
        .pointer("/spec/manualSelector")
        .and_then(Value::as_bool)
        == Some(true);
    if !manual {
        if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("selector");
        }
        if let Some(labels) = object
            .pointer_mut("/spec/template/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            for label in [
                "controller-uid",
                "batch.kubernetes.io/controller-uid",
                "job-name",
                "batch.kubernetes.io/job-name",
            ] {
                labels.remove(label);
            }
        }
    }
    pod_spec(object.pointer_mut("/spec/template/spec"));
}

fn map_storage_class(options: &TransformOptions, spec: &mut Map<String, Value>) {
    if let Some(class) = spec.get("storageClassName").and_then(Value::as_str)
        && let Some(mapped) = options.storage_class_mapping.get(class)
    {
        spec.insert("storageClassName".into(), Value::String(mapped.clone()));
    }
}

/// A PVC keeps its binding to a restored PV, or loses it when its data is copied into a new one.
fn claim(object: &mut Value, options: &TransformOptions, with_data: bool) {
    if let Some(annotations) = object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        for annotation in [
            "pv.kubernetes.io/bind-completed",
            "pv.kubernetes.io/bound-by-controller",
            "volume.beta.kubernetes.io/storage-provisioner",
            "volume.kubernetes.io/storage-provisioner",
            "volume.kubernetes.io/selected-node",
        ] {
            annotations.remove(annotation);
        }
    }
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
        if with_data {
            spec.remove("volumeName");
            spec.remove("dataSource");
            spec.remove("dataSourceRef");
        }
        map_storage_class(options, spec);
    }
}

/// A PV's claim reference points at the claim's new namespace, without the old uid.
fn volume(object: &mut Value, options: &TransformOptions) {
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    map_storage_class(options, spec);
    if let Some(claim) = spec.get_mut("claimRef").and_then(Value::as_object_mut) {
        claim.remove("uid");
        claim.remove("resourceVersion");
        if let Some(namespace) = claim.get("namespace").and_then(Value::as_str) {
            let mapped = map_namespace(options, namespace);
            claim.insert("namespace".into(), Value::String(mapped));
        }
    }
}

/// Service-account subjects of role bindings follow their namespace.
fn subjects(object: &mut Value, options: &TransformOptions) {
    if let Some(subjects) = object.get_mut("subjects").and_then(Value::as_array_mut) {
        for subject in subjects {
            if subject.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                && let Some(namespace) = subject.get("namespace").and_then(Value::as_str)
            {
                let mapped = map_namespace(options, namespace);
                subject["namespace"] = Value::String(mapped);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn options() -> TransformOptions {
        TransformOptions {
            restore_id: "r1".into(),
            namespace_mapping: [("shop".to_string(), "shop-copy".to_string())].into(),
            storage_class_mapping: [("fast".to_string(), "standard".to_string())].into(),
            keep_service_addresses: false,
            claims_with_data: vec!["shop/data".into()],
        }
    }

    #[test]
    fn server_metadata_and_status_go_and_the_namespace_is_mapped() {
        let object = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "shop", "uid": "u", "resourceVersion": "9",
                         "creationTimestamp": "t", "managedFields": [], "labels": {"app": "x"},
                         "ownerReferences": [{"kind": "Thing", "name": "t", "uid": "u2"}]},
            "data": {"a": "b"}, "status": {"x": 1}
        });
        let restored = prepare(object, &options()).unwrap();
        assert_eq!(
            restored,
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "namespace": "shop-copy",
                             "labels": {"app": "x", RESTORE_LABEL: "r1"}},
                "data": {"a": "b"}
            })
        );
    }

    #[test]
    fn controller_owned_and_cluster_made_objects_are_skipped_with_a_reason() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1",
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web", "controller": true}]}});
        assert_eq!(
            prepare(pod, &options()).unwrap_err().0,
            "made by its controller (ReplicaSet web)"
        );
        let token = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"},
            "type": "kubernetes.io/service-account-token"});
        assert!(prepare(token, &options()).is_err());
        let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "s"}});
        assert!(prepare(slice, &options()).is_err());
        let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv"},
            "spec": {"claimRef": {"namespace": "shop", "name": "data"}}});
        assert!(
            prepare(pv, &options())
                .unwrap_err()
                .0
                .contains("newly provisioned")
        );
    }

    #[test]
    fn services_pods_jobs_claims_volumes_and_bindings_are_rewritten() {
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"clusterIP": "10.0.0.9", "clusterIPs": ["10.0.0.9"], "type": "NodePort",
                     "ports": [{"port": 80, "nodePort": 30080}]}});
        let service = prepare(service, &options()).unwrap();
        assert_eq!(
            service["spec"],
            json!({"type": "NodePort", "ports": [{"port": 80}]})
        );
        let headless = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "h"},
            "spec": {"clusterIP": "None"}});
        assert_eq!(
            prepare(headless, &options()).unwrap()["spec"]["clusterIP"],
            "None"
        );

        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"},
            "spec": {"nodeName": "n1",
                     "volumes": [{"name": "data"}, {"name": "kube-api-access-x1"}],
                     "containers": [{"name": "c", "volumeMounts": [{"name": "data"}, {"name": "kube-api-access-x1"}]}]}});
        let pod = prepare(pod, &options()).unwrap();
        assert_eq!(
            pod["spec"],
            json!({"volumes": [{"name": "data"}],
            "containers": [{"name": "c", "volumeMounts": [{"name": "data"}]}]})
        );

        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
            "spec": {"selector": {"matchLabels": {"controller-uid": "u"}},
                     "template": {"metadata": {"labels": {"controller-uid": "u", "job-name": "j", "app": "a"}},
                                  "spec": {"containers": []}}}});
        let job = prepare(job, &options()).unwrap();
        assert_eq!(
            job["spec"],
            json!({"template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": []}}})
        );

        let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "shop",
                         "annotations": {"pv.kubernetes.io/bind-completed": "yes", "keep": "me"}},
            "spec": {"volumeName": "pv-1", "storageClassName": "fast"}});
        let claim = prepare(claim, &options()).unwrap();
        assert_eq!(claim["spec"], json!({"storageClassName": "standard"}));
        assert_eq!(claim["metadata"]["annotations"], json!({"keep": "me"}));

        let static_pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-2"},
            "spec": {"storageClassName": "fast",
                     "claimRef": {"namespace": "shop", "name": "other", "uid": "u", "resourceVersion": "3"}}});
        let static_pv = prepare(static_pv, &options()).unwrap();
        assert_eq!(
            static_pv["spec"],
            json!({"storageClassName": "standard",
            "claimRef": {"namespace": "shop-copy", "name": "other"}})
        );

        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "b", "namespace": "shop"},
            "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "shop"},
                         {"kind": "User", "name": "alice"}]});
        let binding = prepare(binding, &options()).unwrap();
        assert_eq!(binding["subjects"][0]["namespace"], "shop-copy");
        assert_eq!(binding["metadata"]["namespace"], "shop-copy");
    }
}
