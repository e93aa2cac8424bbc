//! The workload controllers: Deployment → ReplicaSets (`<deployment>-<pod-template-hash>`,
//! revision annotations, rollout to a new ReplicaSet when the template changes, old ones scaled
//! to zero) → Pods (`<replicaset>-<5 chars>`); StatefulSet → Pods `<sts>-<ordinal>` and a PVC
//! per volumeClaimTemplate per ordinal; DaemonSet → one pod on the one node;
//! ReplicationController → Pods like a ReplicaSet. Each writes the
//! status fields and conditions `kubectl rollout status` and `kubectl wait` read.

use std::sync::Arc;

use serde_json::{Value, json};

use super::objects::{
    CLAIMS, DAEMON_SETS, DEPLOYMENTS, Kind, Objects, PODS, REPLICA_SETS, REPLICATION_CONTROLLERS,
    STATEFUL_SETS, condition, controller_reference, int, is_deleting, meta, normalized,
    pod_from_template, pod_is_ready, pod_phase, template_hash, text,
};
use super::report;

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH_LABEL: &str = "pod-template-hash";

fn live(pods: Vec<Arc<Value>>) -> Vec<Arc<Value>> {
    pods.into_iter()
        .filter(|p| !is_deleting(p) && !matches!(pod_phase(p), "Succeeded" | "Failed"))
        .collect()
}

fn revision(replica_set: &Value) -> i64 {
    text(
        replica_set,
        "/metadata/annotations/deployment.kubernetes.io~1revision",
    )
    .parse()
    .unwrap_or(0)
}

/// A ReplicaSet's template without the `pod-template-hash` label, to compare with its
/// Deployment's.
fn template_without_hash(replica_set: &Value) -> Value {
    let mut template = replica_set
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    template
}

/// The most pods a rolling update may lack (`maxUnavailable`, 25% by default).
fn max_unavailable(deployment: &Value, replicas: i64) -> i64 {
    if text(deployment, "/spec/strategy/type") == "Recreate" {
        return 0;
    }
    match deployment.pointer("/spec/strategy/rollingUpdate/maxUnavailable") {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(percent)) => {
            let percent: i64 = percent.trim_end_matches('%').parse().unwrap_or(25);
            replicas * percent / 100
        }
        _ => replicas / 4,
    }
}

/// Reconciles a Deployment: its current ReplicaSet, old ones scaled down, its status.
pub fn deployment(objects: &Objects<'_>, namespace: &str, name: &str) {
    let Some(deployment) = objects.get(&DEPLOYMENTS, namespace, name) else {
        return;
    };
    if is_deleting(&deployment) {
        return;
    }
    let replicas = int(&deployment, "/spec/replicas", 1);
    let template = deployment
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let uid = meta(&deployment, "uid");
    let owned = objects.owned(&REPLICA_SETS, namespace, uid);
    let max_revision = owned.iter().map(|rs| revision(rs)).max().unwrap_or(0);
    let wanted = normalized(&template);
    let current = owned
        .iter()
        .find(|rs| normalized(&template_without_hash(rs)) == wanted)
        .cloned();
    let paused = deployment.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
    let current_name = match current {
        Some(rs) => {
            let mut patch = json!({});
            // A rollback to an older template makes its ReplicaSet the newest revision.
            let next_revision = if revision(&rs) < max_revision {
                Some(max_revision + 1)
            } else {
                (revision(&rs) == 0).then_some(1)
            };
            if let Some(next) = next_revision {
                patch["metadata"] = json!({"annotations": {REVISION: next.to_string()}});
            }
            if int(&rs, "/spec/replicas", 1) != replicas && !paused {
                patch["spec"] = json!({"replicas": replicas});
                patch["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
                    json!(replicas.to_string());
            }
            if patch != json!({}) {
                report(
                    "updating a ReplicaSet",
                    meta(&rs, "name"),
                    objects.merge(&REPLICA_SETS, namespace, meta(&rs, "name"), patch),
                );
            }
            meta(&rs, "name").to_string()
        }
        None if paused => return,
        None => {
            let hash = template_hash(&template);
            let rs_name = format!("{name}-{hash}");
            let mut rs_template = template.clone();
            if !rs_template.get("metadata").is_some_and(Value::is_object) {
                rs_template["metadata"] = json!({});
            }
            rs_template["metadata"]["labels"][HASH_LABEL] = json!(hash);
            let mut selector = deployment
                .pointer("/spec/selector")
                .cloned()
                .unwrap_or_else(|| json!({}));
            selector["matchLabels"][HASH_LABEL] = json!(hash);
            let surge = (replicas + 3) / 4;
            let replica_set = json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {
                    "name": rs_name, "namespace": namespace,
                    "labels": rs_template["metadata"]["labels"].clone(),
                    "annotations": {
                        "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                        "deployment.kubernetes.io/max-replicas": (replicas + surge).to_string(),
                        REVISION: (max_revision + 1).to_string(),
                    },
                    "ownerReferences": [controller_reference(&deployment)],
                },
                "spec": {
                    "replicas": replicas,
                    "minReadySeconds": int(&deployment, "/spec/minReadySeconds", 0),
                    "selector": selector,
                    "template": rs_template,
                },
            });
            report(
                "creating a ReplicaSet",
                &rs_name,
                objects.create(&REPLICA_SETS, Some(namespace), replica_set),
            );
            rs_name
        }
    };
    if !paused {
        for old in owned.iter().filter(|rs| meta(rs, "name") != current_name) {
            if int(old, "/spec/replicas", 1) != 0 {
                report(
                    "scaling down an old ReplicaSet",
                    meta(old, "name"),
                    objects.merge(
                        &REPLICA_SETS,
                        namespace,
                        meta(old, "name"),
                        json!({"spec": {"replicas": 0}}),
                    ),
                );
            }
        }
    }
    deployment_status(objects, &deployment, &current_name, replicas);
}

fn deployment_status(objects: &Objects<'_>, deployment: &Value, current: &str, replicas: i64) {
    let namespace = meta(deployment, "namespace");
    let owned = objects.owned(&REPLICA_SETS, namespace, meta(deployment, "uid"));
    let sum = |field: &str| -> i64 {
        owned
            .iter()
            .map(|rs| int(rs, &format!("/status/{field}"), 0))
            .sum()
    };
    let total = sum("replicas");
    let ready = sum("readyReplicas");
    let available = sum("availableReplicas");
    let updated = owned
        .iter()
        .find(|rs| meta(rs, "name") == current)
        .map_or(0, |rs| int(rs, "/status/replicas", 0));
    let previous = deployment
        .pointer("/status/conditions")
        .cloned()
        .unwrap_or(Value::Null);
    let minimum = available >= replicas - max_unavailable(deployment, replicas);
    let available_condition = if minimum {
        condition(
            &previous,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            true,
        )
    } else {
        condition(
            &previous,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            true,
        )
    };
    let complete = updated == replicas && total == replicas && available >= replicas;
    let progressing = if complete {
        condition(
            &previous,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{current}\" has successfully progressed."),
            true,
        )
    } else {
        condition(
            &previous,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            &format!("ReplicaSet \"{current}\" is progressing."),
            true,
        )
    };
    let mut status = json!({
        "observedGeneration": int(deployment, "/metadata/generation", 1),
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "conditions": [available_condition, progressing],
    });
    let unavailable = (replicas - available).max(0);
    if unavailable > 0 {
        status["unavailableReplicas"] = json!(unavailable);
    }
    omit_zeros(
        &mut status,
        &[
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
        ],
    );
    report(
        "writing a Deployment's status",
        meta(deployment, "name"),
        objects.set_status(&DEPLOYMENTS, deployment, status),
    );
}

/// The API leaves zero counts out (`omitempty`).
fn omit_zeros(status: &mut Value, fields: &[&str]) {
    if let Some(map) = status.as_object_mut() {
        for field in fields {
            if map.get(*field).and_then(Value::as_i64) == Some(0) {
                map.remove(*field);
            }
        }
    }
}

/// Reconciles a ReplicaSet: as many live pods as replicas, and its status.
pub fn replica_set(objects: &Objects<'_>, namespace: &str, name: &str) {
    replicas_of(objects, &REPLICA_SETS, namespace, name);
}

/// Reconciles a ReplicationController the way a ReplicaSet is reconciled.
pub fn replication_controller(objects: &Objects<'_>, namespace: &str, name: &str) {
    replicas_of(objects, &REPLICATION_CONTROLLERS, namespace, name);
}

fn replicas_of(objects: &Objects<'_>, kind: &Kind, namespace: &str, name: &str) {
    let Some(rs) = objects.get(kind, namespace, name) else {
        return;
    };
    if is_deleting(&rs) {
        return;
    }
    let replicas = int(&rs, "/spec/replicas", 1).max(0) as usize;
    let template = rs.pointer("/spec/template").cloned().unwrap_or_default();
    let mut pods = live(objects.owned(&PODS, namespace, meta(&rs, "uid")));
    for _ in pods.len()..replicas {
        let pod = pod_from_template(&template, &rs, None, &format!("{name}-"), &[]);
        match objects.create(&PODS, Some(namespace), pod) {
            Ok(pod) => pods.push(pod),
            Err(error) => {
                report("creating a pod", name, Err::<(), _>(error));
                break;
            }
        }
    }
    if pods.len() > replicas {
        pods.sort_by(|a, b| {
            meta(b, "creationTimestamp")
                .cmp(meta(a, "creationTimestamp"))
                .then_with(|| meta(b, "name").cmp(meta(a, "name")))
        });
        for pod in pods.drain(..pods.len() - replicas) {
            report(
                "deleting a surplus pod",
                meta(&pod, "name"),
                objects.delete(&PODS, namespace, meta(&pod, "name")),
            );
        }
    }
    let ready = pods.iter().filter(|p| pod_is_ready(p)).count();
    let mut status = json!({
        "replicas": pods.len(),
        "fullyLabeledReplicas": pods.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": int(&rs, "/metadata/generation", 1),
    });
    omit_zeros(
        &mut status,
        &["fullyLabeledReplicas", "readyReplicas", "availableReplicas"],
    );
    report(
        "writing a ReplicaSet's status",
        name,
        objects.set_status(kind, &rs, status),
    );
}

/// Reconciles a StatefulSet: claims and pods for ordinals `0..replicas`, pods of an older
/// revision replaced, pods beyond `replicas` removed (their claims kept, unless the retention
/// policy says Delete), and its status.
pub fn stateful_set(objects: &Objects<'_>, namespace: &str, name: &str) {
    let Some(sts) = objects.get(&STATEFUL_SETS, namespace, name) else {
        return;
    };
    if is_deleting(&sts) {
        return;
    }
    let replicas = int(&sts, "/spec/replicas", 1).max(0);
    let template = sts.pointer("/spec/template").cloned().unwrap_or_default();
    let revision = format!("{name}-{}", template_hash(&template));
    let claim_templates = sts
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let selector_labels = sts
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let delete_claims_with_set = text(
        &sts,
        "/spec/persistentVolumeClaimRetentionPolicy/whenDeleted",
    ) == "Delete";
    for ordinal in 0..replicas {
        let pod_name = format!("{name}-{ordinal}");
        let mut volumes: Vec<Value> = template
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for claim_template in &claim_templates {
            let template_name = meta(claim_template, "name");
            let claim_name = format!("{template_name}-{name}-{ordinal}");
            volumes.retain(|v| text(v, "/name") != template_name);
            volumes.push(json!({
                "name": template_name,
                "persistentVolumeClaim": {"claimName": claim_name},
            }));
            if objects.get(&CLAIMS, namespace, &claim_name).is_some() {
                continue;
            }
            let mut labels = claim_template
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            labels.extend(selector_labels.clone());
            let mut metadata = json!({
                "name": claim_name, "namespace": namespace, "labels": labels,
            });
            if let Some(annotations) = claim_template.pointer("/metadata/annotations") {
                metadata["annotations"] = annotations.clone();
            }
            if delete_claims_with_set {
                let mut owner = controller_reference(&sts);
                owner["controller"] = json!(false);
                metadata["ownerReferences"] = json!([owner]);
            }
            let claim = json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": metadata,
                "spec": claim_template.get("spec").cloned().unwrap_or_else(|| json!({})),
            });
            report(
                "creating a StatefulSet's claim",
                &claim_name,
                objects.create(&CLAIMS, Some(namespace), claim),
            );
        }
        if let Some(existing) = objects.get(&PODS, namespace, &pod_name) {
            let stale = text(&existing, "/metadata/labels/controller-revision-hash") != revision;
            if !stale || is_deleting(&existing) {
                continue;
            }
            report(
                "replacing a pod of an older revision",
                &pod_name,
                objects.delete(&PODS, namespace, &pod_name),
            );
        }
        let mut pod = pod_from_template(
            &template,
            &sts,
            Some(&pod_name),
            "",
            &[
                ("controller-revision-hash", revision.clone()),
                ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
                ("apps.kubernetes.io/pod-index", ordinal.to_string()),
            ],
        );
        pod["spec"]["hostname"] = json!(pod_name);
        if let Some(service) = sts.pointer("/spec/serviceName").and_then(Value::as_str) {
            pod["spec"]["subdomain"] = json!(service);
        }
        if !volumes.is_empty() {
            pod["spec"]["volumes"] = json!(volumes);
        }
        report(
            "creating a StatefulSet's pod",
            &pod_name,
            objects.create(&PODS, Some(namespace), pod),
        );
    }
    let pods = live(objects.owned(&PODS, namespace, meta(&sts, "uid")));
    for pod in &pods {
        let ordinal: i64 = text(pod, "/metadata/labels/apps.kubernetes.io~1pod-index")
            .parse()
            .unwrap_or(i64::MAX);
        if ordinal >= replicas {
            report(
                "removing a pod beyond the replicas",
                meta(pod, "name"),
                objects.delete(&PODS, namespace, meta(pod, "name")),
            );
        }
    }
    let pods: Vec<_> = live(objects.owned(&PODS, namespace, meta(&sts, "uid")));
    let ready = pods.iter().filter(|p| pod_is_ready(p)).count();
    let current = pods
        .iter()
        .filter(|p| text(p, "/metadata/labels/controller-revision-hash") == revision)
        .count();
    let mut status = json!({
        "observedGeneration": int(&sts, "/metadata/generation", 1),
        "replicas": pods.len(),
        "readyReplicas": ready,
        "currentReplicas": current,
        "updatedReplicas": current,
        "availableReplicas": ready,
        "currentRevision": revision,
        "updateRevision": revision,
        "collisionCount": 0,
    });
    omit_zeros(
        &mut status,
        &["readyReplicas", "currentReplicas", "updatedReplicas"],
    );
    report(
        "writing a StatefulSet's status",
        name,
        objects.set_status(&STATEFUL_SETS, &sts, status),
    );
}

/// Reconciles a DaemonSet: one pod on the one node, replaced when the template changes.
pub fn daemon_set(objects: &Objects<'_>, namespace: &str, name: &str) {
    let Some(ds) = objects.get(&DAEMON_SETS, namespace, name) else {
        return;
    };
    if is_deleting(&ds) {
        return;
    }
    let template = ds.pointer("/spec/template").cloned().unwrap_or_default();
    let hash = template_hash(&template);
    let generation = int(&ds, "/metadata/generation", 1);
    let mut pods = live(objects.owned(&PODS, namespace, meta(&ds, "uid")));
    pods.retain(|pod| {
        let current = text(pod, "/metadata/labels/controller-revision-hash") == hash;
        if !current {
            report(
                "replacing a DaemonSet pod of an older revision",
                meta(pod, "name"),
                objects.delete(&PODS, namespace, meta(pod, "name")),
            );
        }
        current
    });
    for surplus in pods.iter().skip(1) {
        report(
            "removing a second DaemonSet pod",
            meta(surplus, "name"),
            objects.delete(&PODS, namespace, meta(surplus, "name")),
        );
    }
    pods.truncate(1);
    if pods.is_empty() {
        let pod = pod_from_template(
            &template,
            &ds,
            None,
            &format!("{name}-"),
            &[
                ("controller-revision-hash", hash.clone()),
                ("pod-template-generation", generation.to_string()),
            ],
        );
        match objects.create(&PODS, Some(namespace), pod) {
            Ok(pod) => pods.push(pod),
            Err(error) => report("creating a DaemonSet pod", name, Err::<(), _>(error)),
        }
    }
    let ready = pods.iter().filter(|p| pod_is_ready(p)).count();
    let status = json!({
        "currentNumberScheduled": pods.len(),
        "desiredNumberScheduled": 1,
        "numberMisscheduled": 0,
        "numberReady": ready,
        "numberAvailable": ready,
        "updatedNumberScheduled": pods.len(),
        "observedGeneration": generation,
    });
    report(
        "writing a DaemonSet's status",
        name,
        objects.set_status(&DAEMON_SETS, &ds, status),
    );
}
