//! Collected objects restored through the restore steps (prepare, then apply in dependency
//! order): into a second cluster under a namespace mapping, then into the same cluster after the
//! namespace was deleted, and again over existing objects with each existing-resource policy.

use std::time::Duration;

use serde_json::{Value, json};
use stowage_workflows::backup::{BackupSpec, collect};
use stowage_workflows::cluster::ClusterClient;
use stowage_workflows::restore::{
    Applier, ExistingPolicy, ObjectResult, Outcome, RESTORE_LABEL, TransformOptions, prepare,
};

use super::{Kept, connect, create, populate};
use crate::kubesim::start_cluster;

/// The application of the collect tests plus a workload, a service, a secret and RBAC.
async fn populate_app(client: &kube::Client) {
    populate(client).await;
    create(
        client,
        "v1",
        "Secret",
        "secrets",
        json!({
            "metadata": {"name": "db-password", "namespace": "shop"},
            "stringData": {"password": "hunter2"}
        }),
    )
    .await;
    create(
        client,
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        json!({
            "metadata": {"name": "web", "namespace": "shop"}
        }),
    )
    .await;
    create(
        client,
        "rbac.authorization.k8s.io/v1",
        "Role",
        "roles",
        json!({
            "metadata": {"name": "reader", "namespace": "shop"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
        }),
    )
    .await;
    create(
        client,
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
        json!({
            "metadata": {"name": "web-reads", "namespace": "shop"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "shop"}]
        }),
    )
    .await;
    create(
        client,
        "v1",
        "Service",
        "services",
        json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80}]}
        }),
    )
    .await;
    create(
        client,
        "apps/v1",
        "Deployment",
        "deployments",
        json!({
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"serviceAccountName": "web",
                                           "containers": [{"name": "web", "image": "nginx:1.27"}]}}}
        }),
    )
    .await;
}

async fn collect_namespace(cluster: &ClusterClient, namespace: &str) -> Vec<Value> {
    let spec =
        BackupSpec::parse(&json!({"cluster": "c", "location": "l", "namespaces": [namespace]}))
            .unwrap();
    let mut kept = Kept::default();
    collect(cluster, &spec.selection(), &mut kept, &mut |_| {})
        .await
        .unwrap();
    kept.0
        .iter()
        .map(|object| serde_json::from_slice(&object.body).unwrap())
        .collect()
}

async fn restore(
    target: &ClusterClient,
    objects: &[Value],
    options: &TransformOptions,
    policy: ExistingPolicy,
) -> Vec<ObjectResult> {
    let mut prepared = Vec::new();
    let mut skipped = Vec::new();
    for object in objects {
        match prepare(object.clone(), options) {
            Ok(object) => prepared.push(object),
            Err(skip) => skipped.push((object["kind"].clone(), skip.0)),
        }
    }
    let mut applier = Applier::new(target, policy).await.unwrap();
    let results = applier.apply_all(prepared, &[]).await;
    let failed: Vec<&ObjectResult> = results
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .collect();
    assert!(failed.is_empty(), "failed: {failed:?}");
    results
}

/// An object without what the cluster sets, for comparing a restored object with its original.
fn normalised(mut object: Value) -> Value {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "managedFields",
            "namespace",
            "annotations",
            "ownerReferences",
        ] {
            metadata.remove(field);
        }
        if let Some(labels) = metadata.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove(RESTORE_LABEL);
            if labels.is_empty() {
                metadata.remove("labels");
            }
        }
    }
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    if object["kind"] == "Service" {
        for field in ["clusterIP", "clusterIPs"] {
            object["spec"].as_object_mut().unwrap().remove(field);
        }
        for port in object["spec"]["ports"].as_array_mut().unwrap() {
            port.as_object_mut().unwrap().remove("nodePort");
        }
    }
    if object["kind"] == "RoleBinding" {
        object["subjects"][0]
            .as_object_mut()
            .unwrap()
            .remove("namespace");
    }
    if object["kind"] == "PersistentVolume" {
        object["spec"]["claimRef"] = json!({"name": object["spec"]["claimRef"]["name"]});
    }
    if object["kind"] == "PersistentVolumeClaim" {
        object["spec"].as_object_mut().unwrap().remove("volumeName");
    }
    object
}

/// The objects of `namespace` (as `namespaces[...]` collects them) that a restore brings back.
fn restorable(objects: &[Value], options: &TransformOptions) -> Vec<Value> {
    objects
        .iter()
        .filter(|o| prepare((*o).clone(), options).is_ok())
        .filter(|o| o["kind"] != "Namespace")
        .cloned()
        .map(normalised)
        .collect()
}

fn by_identity(objects: Vec<Value>) -> std::collections::BTreeMap<String, Value> {
    objects
        .into_iter()
        .map(|o| (format!("{} {}", o["kind"], o["metadata"]["name"]), o))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_come_back_in_another_cluster_and_in_the_same_one() {
    let source_sim = start_cluster("restore-source").await;
    let target_sim = start_cluster("restore-target").await;
    let source = connect(&source_sim).await;
    let target = connect(&target_sim).await;
    populate_app(&source.client).await;
    let backed_up = collect_namespace(&source, "shop").await;

    // Into a second cluster, under a namespace mapping.
    let options = TransformOptions {
        restore_id: "r-1".into(),
        namespace_mapping: [("shop".to_string(), "shop-copy".to_string())].into(),
        ..TransformOptions::default()
    };
    let results = restore(&target, &backed_up, &options, ExistingPolicy::Keep).await;
    let created = results
        .iter()
        .filter(|r| r.outcome == Outcome::Created)
        .count();
    assert!(created >= 12, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| r.namespace.as_deref().is_none_or(|ns| ns == "shop-copy"))
    );
    let restored = collect_namespace(&target, "shop-copy").await;
    let expected = by_identity(restorable(&backed_up, &options));
    let actual = by_identity(restorable(&restored, &options));
    for (identity, object) in &expected {
        assert_eq!(
            actual.get(identity),
            Some(object),
            "{identity} differs after the restore"
        );
    }
    let copy = restored
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "db-config")
        .unwrap();
    assert_eq!(copy["metadata"]["labels"][RESTORE_LABEL], "r-1");
    let binding = restored
        .iter()
        .find(|o| o["kind"] == "RoleBinding")
        .unwrap();
    assert_eq!(binding["subjects"][0]["namespace"], "shop-copy");
    let pv = restored
        .iter()
        .find(|o| o["kind"] == "PersistentVolume")
        .unwrap();
    assert_eq!(pv["spec"]["claimRef"]["namespace"], "shop-copy");

    // Again over what is there: kept, then updated.
    let options = TransformOptions {
        restore_id: "r-1b".into(),
        ..options
    };
    let again = restore(&target, &backed_up, &options, ExistingPolicy::Keep).await;
    assert!(
        again.iter().all(|r| r.outcome == Outcome::Skipped),
        "{again:?}"
    );
    let mut changed = backed_up.clone();
    for object in &mut changed {
        if object["kind"] == "ConfigMap" && object["metadata"]["name"] == "db-config" {
            object["data"]["max_connections"] = json!("200");
        }
    }
    let options = TransformOptions {
        restore_id: "r-1c".into(),
        ..options
    };
    let updated = restore(&target, &changed, &options, ExistingPolicy::Update).await;
    assert!(
        updated
            .iter()
            .any(|r| r.outcome == Outcome::Updated && r.name == "db-config")
    );
    let options = TransformOptions {
        restore_id: "r-1d".into(),
        ..options
    };
    let replaced = restore(&target, &backed_up, &options, ExistingPolicy::Replace).await;
    assert!(
        replaced
            .iter()
            .any(|r| r.outcome == Outcome::Replaced && r.name == "db-config")
    );
    let config: Value = target
        .client
        .request(
            kube::core::Request::new("/api/v1/namespaces/shop-copy/configmaps")
                .get("db-config", &Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        config["data"]["max_connections"], "100",
        "the replace brought the backed-up copy"
    );

    // Into the same cluster after the namespace is gone.
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(source.client.clone());
    namespaces
        .delete("shop", &Default::default())
        .await
        .unwrap();
    for _ in 0..100 {
        if namespaces.get_opt("shop").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let same = TransformOptions {
        restore_id: "r-2".into(),
        ..TransformOptions::default()
    };
    restore(&source, &backed_up, &same, ExistingPolicy::Keep).await;
    let back = by_identity(restorable(&collect_namespace(&source, "shop").await, &same));
    for (identity, object) in &by_identity(restorable(&backed_up, &same)) {
        if identity.starts_with("\"PersistentVolume\"")
            || identity.starts_with("\"StorageClass\"")
            || identity.starts_with("\"CustomResourceDefinition\"")
        {
            continue; // cluster-scoped: they stayed when the namespace went
        }
        assert_eq!(
            back.get(identity),
            Some(object),
            "{identity} differs after the restore"
        );
    }
}
