//! The backup and restore workflows' steps against kubesim clusters: what is collected for each
//! selection, and how collected objects come back in another cluster or the same one; and the
//! delete and catalog sync workflows against repositories on a local folder and on S3.

mod access_matrix;
mod collect;
mod delete;
pub(crate) mod end_to_end;
mod grants;
mod recovery;
mod restore;
mod routes;
mod schedule_routes;
mod schedules;
mod sealed;
mod served;
mod server;
mod sharing;
mod stored;
mod sync;

use std::collections::BTreeSet;

use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use stowage_workflows::backup::{CollectError, CollectedObject, ObjectSink};
use stowage_workflows::cluster::{ClusterClient, ClusterSpec};

use crate::kubesim::TestCluster;

/// Fails when the server at `base_url` has answered a request that matches no operation of its
/// OpenAPI document (`/metrics` counts those under `route="unmatched"`): a served route the
/// document lacks.
pub(crate) async fn assert_every_answered_route_is_documented(base_url: &str) {
    let metrics = reqwest::get(format!("{base_url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        stowage::metrics::undocumented_routes(&metrics),
        Vec::<&str>::new(),
        "served routes missing from the OpenAPI document"
    );
}

/// Keeps what it is given.
#[derive(Default)]
pub struct Kept(pub Vec<CollectedObject>);

impl ObjectSink for Kept {
    async fn put(&mut self, object: CollectedObject) -> Result<(), CollectError> {
        self.0.push(object);
        Ok(())
    }
}

impl Kept {
    /// `Kind namespace/name` (or `Kind name`) of every object.
    pub fn names(&self) -> BTreeSet<String> {
        self.0
            .iter()
            .map(|o| match &o.namespace {
                Some(ns) => format!("{} {ns}/{}", o.kind, o.name),
                None => format!("{} {}", o.kind, o.name),
            })
            .collect()
    }
}

pub async fn connect(cluster: &TestCluster) -> ClusterClient {
    let kubeconfig = std::fs::read_to_string(cluster.sim.kubeconfig_path()).unwrap();
    ClusterSpec::parse(&json!({ "kubeconfig": kubeconfig }))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

pub async fn create(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
    plural: &str,
    object: Value,
) {
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
pub async fn populate(client: &kube::Client) {
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
