//! kube-rs against kubesim: discovery, `Api<DynamicObject>` lists with selectors and
//! pagination, watch, and a CRD round trip, through the client Stowage itself will use.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{ApiResource, Discovery, Scope};
use kube::{Client, Config};
use serde_json::json;

use super::{TestCluster, start_cluster};

pub async fn client(cluster: &TestCluster) -> Client {
    let kubeconfig = Kubeconfig::read_from(cluster.sim.kubeconfig_path()).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

#[tokio::test]
async fn kube_rs_discovers_the_built_in_groups() {
    let cluster = start_cluster("kube-discovery").await;
    let discovery = Discovery::new(client(&cluster).await).run().await.unwrap();
    let apps = discovery.get("apps").expect("apps group");
    let (deployments, capabilities) = apps
        .recommended_resources()
        .into_iter()
        .find(|(resource, _)| resource.plural == "deployments")
        .expect("deployments");
    assert_eq!(
        (deployments.kind.as_str(), deployments.version.as_str()),
        ("Deployment", "v1")
    );
    assert_eq!(capabilities.scope, Scope::Namespaced);
    let subresources: Vec<&str> = capabilities
        .subresources
        .iter()
        .map(|(sub, _)| sub.plural.as_str())
        .collect();
    assert!(
        subresources.contains(&"status") && subresources.contains(&"scale"),
        "deployments report their subresources: {subresources:?}"
    );
    let aggregated = Discovery::new(client(&cluster).await)
        .run_aggregated()
        .await
        .unwrap();
    let (_, aggregated_capabilities) = aggregated
        .get("apps")
        .expect("apps group through aggregated discovery")
        .recommended_resources()
        .into_iter()
        .find(|(resource, _)| resource.plural == "deployments")
        .expect("deployments through aggregated discovery");
    let aggregated_subresources: Vec<&str> = aggregated_capabilities
        .subresources
        .iter()
        .map(|(sub, _)| sub.plural.as_str())
        .collect();
    assert_eq!(aggregated_subresources, subresources);
    let groups: Vec<String> = discovery.groups().map(|g| g.name().to_string()).collect();
    for group in [
        "",
        "batch",
        "rbac.authorization.k8s.io",
        "storage.k8s.io",
        "apiextensions.k8s.io",
    ] {
        assert!(groups.iter().any(|g| g == group), "{group} in {groups:?}");
    }
}

#[tokio::test]
async fn kube_rs_lists_with_selectors_and_pages() {
    let cluster = start_cluster("kube-list").await;
    let client = client(&cluster).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for index in 0..25 {
        let tier = if index % 5 == 0 { "gold" } else { "silver" };
        let object: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": format!("cm-{index:02}"), "labels": {"tier": tier, "index": index.to_string()}},
            "data": {"n": index.to_string()}
        }))
        .unwrap();
        configmaps
            .create(&PostParams::default(), &object)
            .await
            .unwrap();
    }
    let resource = ApiResource::erase::<ConfigMap>(&());
    let dynamic: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    let gold = dynamic
        .list(&ListParams::default().labels("tier=gold"))
        .await
        .unwrap();
    let names: Vec<String> = gold
        .items
        .iter()
        .map(|o| o.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["cm-00", "cm-05", "cm-10", "cm-15", "cm-20"]);
    let notin = dynamic
        .list(&ListParams::default().labels("tier notin (silver),index in (5,10)"))
        .await
        .unwrap();
    assert_eq!(notin.items.len(), 2);
    let by_field = dynamic
        .list(&ListParams::default().fields("metadata.name=cm-07"))
        .await
        .unwrap();
    assert_eq!(by_field.items.len(), 1);

    let mut seen = Vec::new();
    // `index` leaves out the namespace's kube-root-ca.crt, which the root-CA publisher adds.
    let mut params = ListParams::default().labels("index").limit(10);
    let mut pages = 0;
    loop {
        let page = dynamic.list(&params).await.unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(|o| o.metadata.name.clone().unwrap()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 25);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "pages continue in order without repeats");
}

#[tokio::test]
async fn kube_rs_watches_from_a_resource_version() {
    let cluster = start_cluster("kube-watch").await;
    let client = client(&cluster).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client, "default");
    let listed = configmaps.list(&ListParams::default()).await.unwrap();
    let version = listed.metadata.resource_version.unwrap();
    let mut events = configmaps
        .watch(
            &WatchParams::default().labels("watched=yes").timeout(10),
            &version,
        )
        .await
        .unwrap()
        .boxed();
    let object: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "w", "labels": {"watched": "yes"}}}))
            .unwrap();
    let ignored: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap();
    configmaps
        .create(&PostParams::default(), &ignored)
        .await
        .unwrap();
    configmaps
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
    configmaps
        .patch(
            "w",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"data": {"a": "b"}})),
        )
        .await
        .unwrap();
    configmaps
        .delete("w", &DeleteParams::default())
        .await
        .unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match events.try_next().await.unwrap().expect("watch events") {
            WatchEvent::Added(o) => kinds.push(format!("ADDED {}", o.metadata.name.unwrap())),
            WatchEvent::Modified(o) => kinds.push(format!("MODIFIED {}", o.data.unwrap()["a"])),
            WatchEvent::Deleted(o) => kinds.push(format!("DELETED {}", o.metadata.name.unwrap())),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(kinds, ["ADDED w", "MODIFIED b", "DELETED w"]);
}

#[tokio::test]
async fn kube_rs_watch_with_a_selector_sees_objects_enter_and_leave_it() {
    let cluster = start_cluster("kube-watch-selector").await;
    let client = client(&cluster).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client, "default");
    let version = configmaps
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let object: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "t", "labels": {"tier": "gold"}}}))
            .unwrap();
    configmaps
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
    let relabel = |tier: &'static str| {
        let configmaps = configmaps.clone();
        async move {
            configmaps
                .patch(
                    "t",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({"metadata": {"labels": {"tier": tier}}})),
                )
                .await
                .unwrap()
        }
    };
    let left = relabel("silver").await;
    let unmatched = relabel("bronze").await;
    relabel("gold").await;
    // From history (a resourceVersion before all of it) and live (the next changes).
    let mut events = configmaps
        .watch(
            &WatchParams::default().labels("tier=gold").timeout(10),
            &version,
        )
        .await
        .unwrap()
        .boxed();
    relabel("silver").await;
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let line = match events.try_next().await.unwrap().expect("watch events") {
            WatchEvent::Added(o) => format!("ADDED {}", o.metadata.labels.unwrap()["tier"]),
            WatchEvent::Modified(o) => format!("MODIFIED {}", o.metadata.labels.unwrap()["tier"]),
            WatchEvent::Deleted(o) => format!(
                "DELETED {} at {}",
                o.metadata.labels.unwrap()["tier"],
                o.metadata.resource_version.unwrap()
            ),
            other => panic!("unexpected event {other:?}"),
        };
        seen.push(line);
    }
    let left_at = left.metadata.resource_version.unwrap();
    assert_ne!(left_at, unmatched.metadata.resource_version.unwrap());
    // Leaving the selection is a DELETED of the object as it last matched, at the version
    // that made it leave; changes while outside it are not sent.
    assert_eq!(seen[0], "ADDED gold");
    assert_eq!(seen[1], format!("DELETED gold at {left_at}"));
    assert_eq!(seen[2], "ADDED gold");
    assert!(seen[3].starts_with("DELETED gold at "), "{seen:?}");
}

#[tokio::test]
async fn kube_rs_round_trips_a_custom_resource_definition() {
    let cluster = start_cluster("kube-crd").await;
    let client = client(&cluster).await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let definition =
        serde_yaml::from_str(&std::fs::read_to_string(super::fixture("widgets-crd.yaml")).unwrap())
            .unwrap();
    let created = crds
        .create(&PostParams::default(), &definition)
        .await
        .unwrap();
    let conditions = created.status.unwrap().conditions.unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );

    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let group = discovery
        .get("example.com")
        .expect("the CRD's group is discovered");
    let (resource, _) = group.recommended_resources().into_iter().next().unwrap();
    assert_eq!(
        (resource.kind.as_str(), resource.version.as_str()),
        ("Widget", "v1")
    );

    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "round"}, "spec": {"size": 7}
    }))
    .unwrap();
    widgets
        .create(&PostParams::default(), &widget)
        .await
        .unwrap();
    let fetched = widgets.get("round").await.unwrap();
    assert_eq!(fetched.data["spec"]["size"], 7);
    assert_eq!(fetched.metadata.generation, Some(1));

    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    let error = widgets.get("round").await.unwrap_err();
    match error {
        kube::Error::Api(status) => assert_eq!(status.code, 404),
        other => panic!("expected 404, got {other:?}"),
    }
    let rediscovered = Discovery::new(client).run().await.unwrap();
    assert!(
        rediscovered.get("example.com").is_none(),
        "the group is no longer served"
    );
}
