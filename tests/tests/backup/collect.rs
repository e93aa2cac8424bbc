//! The collect step against a kubesim cluster, through kube-rs as in production: namespaces by
//! name and label, label-selected objects with the PVs, storage classes and CRDs they need,
//! excluded types, a missing namespace named, and a whole-cluster backup holding cluster-scoped
//! objects.

use std::collections::BTreeSet;

use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use stowage_workflows::backup::{
    BackupSpec, CollectError, CollectedObject, ObjectSink, Selection, collect,
};
use stowage_workflows::cluster::{ClusterClient, ClusterSpec};

use crate::kubesim::{TestCluster, start_cluster};

/// Keeps what it is given.
#[derive(Default)]
struct Kept(Vec<CollectedObject>);

impl ObjectSink for Kept {
    async fn put(&mut self, object: CollectedObject) -> Result<(), CollectError> {
        self.0.push(object);
        Ok(())
    }
}

impl Kept {
    /// `Kind namespace/name` (or `Kind name`) of every object.
    fn names(&self) -> BTreeSet<String> {
        self.0
            .iter()
            .map(|o| match &o.namespace {
                Some(ns) => format!("{} {ns}/{}", o.kind, o.name),
                None => format!("{} {}", o.kind, o.name),
            })
            .collect()
    }
}

async fn connect(cluster: &TestCluster) -> ClusterClient {
    let kubeconfig = std::fs::read_to_string(cluster.sim.kubeconfig_path()).unwrap();
    ClusterSpec::parse(&json!({ "kubeconfig": kubeconfig }))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn create(client: &kube::Client, api_version: &str, kind: &str, plural: &str, object: Value) {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), &ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let object: DynamicObject = serde_json::from_value(object).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

/// Two namespaces; in `shop` a labelled database (PVC bound to a PV of class `fast`, a custom
/// resource) and an unlabelled web config; in `other` a config map.
async fn populate(client: &kube::Client) {
    create(
        client,
        "v1",
        "Namespace",
        "namespaces",
        json!({"metadata": {"name": "shop", "labels": {"team": "a"}}}),
    )
    .await;
    create(
        client,
        "v1",
        "Namespace",
        "namespaces",
        json!({"metadata": {"name": "other", "labels": {"team": "b"}}}),
    )
    .await;
    create(
        client,
        "storage.k8s.io/v1",
        "StorageClass",
        "storageclasses",
        json!({"metadata": {"name": "fast"}, "provisioner": "example.com/fast"}),
    )
    .await;
    create(
        client,
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        json!({
            "metadata": {"name": "pv-db"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "fast", "hostPath": {"path": "/tmp/pv-db"},
                     "claimRef": {"namespace": "shop", "name": "db-data"}}
        }),
    )
    .await;
    create(
        client,
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        json!({
            "metadata": {"name": "pv-unused"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "hostPath": {"path": "/tmp/pv-unused"}}
        }),
    )
    .await;
    create(
        client,
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        json!({
            "metadata": {"name": "db-data", "namespace": "shop", "labels": {"app": "db"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                     "volumeName": "pv-db", "resources": {"requests": {"storage": "1Gi"}}}
        }),
    )
    .await;
    create(
        client,
        "v1",
        "ConfigMap",
        "configmaps",
        json!({
            "metadata": {"name": "db-config", "namespace": "shop", "labels": {"app": "db"}},
            "data": {"max_connections": "100"}
        }),
    )
    .await;
    create(
        client,
        "v1",
        "ConfigMap",
        "configmaps",
        json!({
            "metadata": {"name": "web-config", "namespace": "shop", "labels": {"app": "web"}}
        }),
    )
    .await;
    create(
        client,
        "v1",
        "ConfigMap",
        "configmaps",
        json!({
            "metadata": {"name": "elsewhere", "namespace": "other", "labels": {"app": "db"}}
        }),
    )
    .await;
    create(
        client,
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        json!({
            "metadata": {"name": "databases.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "databases", "singular": "database", "kind": "Database"},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                       "schema": {"openAPIV3Schema": {"type": "object",
                         "x-kubernetes-preserve-unknown-fields": true}}}]}
        }),
    )
    .await;
    // The CRD's resources are served once it is established.
    for _ in 0..50 {
        let served = kube::discovery::Discovery::new(client.clone())
            .run()
            .await
            .unwrap()
            .has_group("example.com");
        if served {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    create(
        client,
        "example.com/v1",
        "Database",
        "databases",
        json!({
            "metadata": {"name": "orders", "namespace": "shop", "labels": {"app": "db"}},
            "spec": {"engine": "mysql"}
        }),
    )
    .await;
}

fn selection(spec: Value) -> Selection {
    let mut spec = spec;
    spec["cluster"] = json!("c");
    spec["location"] = json!("l");
    BackupSpec::parse(&spec).unwrap().selection()
}

async fn run(
    cluster: &ClusterClient,
    spec: Value,
) -> (Kept, stowage_workflows::backup::CollectSummary) {
    let mut kept = Kept::default();
    let mut last = 0;
    let summary = collect(cluster, &selection(spec), &mut kept, &mut |n| last = n)
        .await
        .unwrap();
    assert_eq!(
        last, summary.objects,
        "the last progress report is the total"
    );
    assert_eq!(summary.objects as usize, kept.0.len());
    (kept, summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_holds_what_each_selection_picks_and_what_it_needs() {
    let sim = start_cluster("collect").await;
    let cluster = connect(&sim).await;
    populate(&cluster.client).await;

    // A label-selected backup: exactly the labelled objects, their namespace, the PV of the
    // claim, its storage class and the CRD of the custom resource.
    let (kept, summary) = run(
        &cluster,
        json!({
            "namespaces": ["shop"], "selector": {"matchLabels": {"app": "db"}}
        }),
    )
    .await;
    let expected: BTreeSet<String> = [
        "Namespace shop",
        "PersistentVolumeClaim shop/db-data",
        "ConfigMap shop/db-config",
        "Database shop/orders",
        "PersistentVolume pv-db",
        "StorageClass fast",
        "CustomResourceDefinition databases.example.com",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(kept.names(), expected);
    assert_eq!(summary.namespaces, ["shop"]);
    assert_eq!(summary.claims.len(), 1);
    assert_eq!(summary.claims[0].volume_name.as_deref(), Some("pv-db"));
    assert_eq!(summary.kinds.get("Database.example.com"), Some(&1));

    // Objects are stored as the API returned them, with their type.
    let config = kept.0.iter().find(|o| o.name == "db-config").unwrap();
    let body: Value = serde_json::from_slice(&config.body).unwrap();
    assert_eq!(body["apiVersion"], "v1");
    assert_eq!(body["kind"], "ConfigMap");
    assert_eq!(body["data"]["max_connections"], "100");
    assert!(body["metadata"]["uid"].is_string() && body["metadata"]["resourceVersion"].is_string());

    // Namespaces by label; config maps excluded by kind.
    let (kept, _) = run(
        &cluster,
        json!({
            "namespace_selector": {"matchLabels": {"team": "b"}},
            "exclude_resources": ["ConfigMap"]
        }),
    )
    .await;
    let names = kept.names();
    assert!(names.contains("Namespace other"), "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| !n.contains("shop") && !n.starts_with("ConfigMap")),
        "{names:?}"
    );
    assert!(!names.contains("PersistentVolume pv-unused"), "{names:?}");

    // Only some types.
    let (kept, _) = run(
        &cluster,
        json!({
            "namespaces": ["shop", "other"], "include_resources": ["configmaps", "namespaces"]
        }),
    )
    .await;
    let names = kept.names();
    for name in [
        "ConfigMap shop/db-config",
        "ConfigMap shop/web-config",
        "ConfigMap other/elsewhere",
        "Namespace shop",
        "Namespace other",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("ConfigMap") || n.starts_with("Namespace")),
        "{names:?}"
    );

    // The whole cluster: cluster-scoped objects too, an unused PV included.
    let (kept, _) = run(&cluster, json!({})).await;
    let names = kept.names();
    for name in [
        "PersistentVolume pv-unused",
        "Namespace default",
        "ConfigMap other/elsewhere",
        "CustomResourceDefinition databases.example.com",
        "Database shop/orders",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }

    // A namespace that does not exist is named.
    let mut kept = Kept::default();
    let error = collect(
        &cluster,
        &selection(json!({"namespaces": ["shop", "ghost"]})),
        &mut kept,
        &mut |_| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, CollectError::MissingNamespaces(missing) if missing == &["ghost"]),
        "{error}"
    );
    assert!(error.to_string().contains("ghost"));
    assert!(
        kept.0.is_empty(),
        "nothing is collected when the selection is wrong"
    );
}
