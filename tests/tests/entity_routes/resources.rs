//! The application view of a registered kubesim cluster with an app in it: objects grouped by
//! namespace and kind, custom resources included, filtered by namespace, label selector and kind;
//! a bad selector, an unknown kind and an unknown cluster named.

use kube::Api;
use kube::api::{DynamicObject, PostParams};
use kube::discovery::ApiResource;
use reqwest::Method as M;
use serde_json::{Value, json};

use super::Users;
use crate::kubesim::kube_rs::client;
use crate::kubesim::{fixture, start_cluster};

async fn create(
    client: &kube::Client,
    resource: &ApiResource,
    namespace: Option<&str>,
    object: Value,
) {
    let api: Api<DynamicObject> = match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, resource),
        None => Api::all_with(client.clone(), resource),
    };
    api.create(
        &PostParams::default(),
        &serde_json::from_value(object).unwrap(),
    )
    .await
    .unwrap();
}

fn kinds(namespace: &Value) -> Vec<(String, u64)> {
    namespace["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kind| {
            (
                kind["kind"].as_str().unwrap().to_string(),
                kind["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_view_groups_live_resources_by_namespace_and_kind() {
    let users = Users::start().await;
    let cluster = start_cluster("shop").await;
    let kube = client(&cluster).await;

    let namespace = ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&());
    let config_map = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
    let secret = ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&());
    let crd = ApiResource::erase::<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    >(&());
    create(
        &kube,
        &namespace,
        None,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
    )
    .await;
    for name in ["front", "back"] {
        create(&kube, &config_map, Some("shop"), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "shop", "tier": name}}})).await;
    }
    create(&kube, &secret, Some("shop"), json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "labels": {"app": "shop"}}, "stringData": {"password": "x"}})).await;
    create(&kube, &config_map, Some("default"), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other", "labels": {"app": "other"}}})).await;
    let definition: Value =
        serde_yaml::from_str(&std::fs::read_to_string(fixture("widgets-crd.yaml")).unwrap())
            .unwrap();
    create(&kube, &crd, None, definition).await;
    let widget = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    create(&kube, &widget, Some("shop"), json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "gear", "labels": {"app": "shop"}}, "spec": {"size": 3}})).await;

    let kubeconfig = std::fs::read_to_string(cluster.sim.kubeconfig_path()).unwrap();
    let (status, body) = users
        .call(
            "bob",
            M::POST,
            "/v1/clusters",
            Some(json!({"name": "shop", "spec": {"kubeconfig": kubeconfig}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();

    // The app by its label: one namespace, its kinds counted, the custom resource included.
    let (status, view) = users
        .call(
            "bob",
            M::GET,
            &format!("/v1/clusters/{id}/resources?labelSelector=app%3Dshop"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{view}");
    let namespaces = view["namespaces"].as_array().unwrap();
    assert_eq!(namespaces.len(), 1, "{view}");
    assert_eq!(namespaces[0]["namespace"], "shop");
    let mut found = kinds(&namespaces[0]);
    found.sort();
    assert_eq!(
        found,
        [
            ("ConfigMap".to_string(), 2),
            ("Secret".to_string(), 1),
            ("Widget".to_string(), 1)
        ]
    );
    let maps = namespaces[0]["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|kind| kind["kind"] == "ConfigMap")
        .unwrap();
    assert_eq!(
        maps["items"][0],
        json!({"name": "back", "labels": {"app": "shop", "tier": "back"}})
    );

    // Everything: the other app's namespace shows too.
    let (status, view) = users
        .call("bob", M::GET, &format!("/v1/clusters/{id}/resources"), None)
        .await;
    assert_eq!(status, 200, "{view}");
    let names: Vec<&str> = view["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ns| ns["namespace"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"default") && names.contains(&"shop"),
        "{names:?}"
    );

    // One namespace, one kind (by plural), a set-based selector.
    let (status, view) = users
        .call("bob", M::GET, &format!("/v1/clusters/{id}/resources?namespace=shop&kind=configmaps&labelSelector=tier%20in%20(front)"), None)
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        kinds(&view["namespaces"][0]),
        [("ConfigMap".to_string(), 1)],
        "{view}"
    );
    assert_eq!(
        view["namespaces"][0]["kinds"][0]["items"][0]["name"],
        "front"
    );

    // Bad parameters are named; an unknown cluster is a 404.
    for (query, parameter) in [
        ("labelSelector=app%20in%20(shop", "labelSelector"),
        ("kind=Gizmo", "kind"),
        ("sort=name", "sort"),
    ] {
        let (status, body) = users
            .call(
                "bob",
                M::GET,
                &format!("/v1/clusters/{id}/resources?{query}"),
                None,
            )
            .await;
        assert_eq!(
            (status, body["details"]["parameter"].as_str()),
            (400, Some(parameter)),
            "{body}"
        );
    }
    let (status, body) = users
        .call(
            "bob",
            M::GET,
            "/v1/clusters/no-such-cluster/resources",
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, _) = users
        .call(
            "carol",
            M::GET,
            &format!("/v1/clusters/{id}/resources"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    cluster.sim.stop().await;
}
