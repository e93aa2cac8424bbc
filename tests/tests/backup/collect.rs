//! The collect step against a kubesim cluster, through kube-rs as in production: namespaces by
//! name and label, label-selected objects with the PVs, storage classes and CRDs they need,
//! excluded types, a missing namespace named, and a whole-cluster backup holding cluster-scoped
//! objects.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use stowage_workflows::backup::{BackupSpec, CollectError, Selection, collect};
use stowage_workflows::cluster::ClusterClient;

use super::{Kept, connect, populate};
use crate::kubesim::start_cluster;

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
