//! kubesim's resource table and discovery documents against a real kube-apiserver's.

use std::collections::BTreeMap;

use serde_json::Value;
use stowage_tests::kubesim::{ResourceInfo, built_in};

use super::{shared_testdata, start_cluster};

/// A resource reduced to what clients read from discovery, in a comparable form.
fn summary(
    kind: &str,
    namespaced: bool,
    singular: &str,
    verbs: &[String],
    short: &[String],
    categories: &[String],
    subresources: Vec<String>,
) -> String {
    let mut verbs = verbs.to_vec();
    verbs.sort();
    format!(
        "kind={kind} namespaced={namespaced} singular={singular} verbs={verbs:?} short={short:?} \
         categories={categories:?} subresources={subresources:?}"
    )
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn ours(resource: &ResourceInfo) -> String {
    let mut subs: Vec<String> = resource
        .subresources
        .iter()
        .map(|s| {
            let mut verbs = s.verbs.clone();
            verbs.sort();
            format!("{}:{}:{}/{}:{verbs:?}", s.name, s.kind, s.group, s.version)
        })
        .collect();
    subs.sort();
    summary(
        &resource.kind,
        resource.namespaced,
        &resource.singular,
        &resource.verbs,
        &resource.short_names,
        &resource.categories,
        subs,
    )
}

/// The real aggregated document's resources of one group version, by plural.
fn reference_group_version(
    document: &Value,
    group: &str,
    version: &str,
) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for item in document["items"].as_array().unwrap() {
        if item["metadata"]["name"].as_str().unwrap_or_default() != group {
            continue;
        }
        for served in item["versions"].as_array().unwrap() {
            if served["version"] != version {
                continue;
            }
            for resource in served["resources"].as_array().unwrap() {
                let mut subs: Vec<String> = resource["subresources"]
                    .as_array()
                    .map(|subs| {
                        subs.iter()
                            .map(|s| {
                                let kind = s["responseKind"]["kind"].as_str().unwrap();
                                let mut verbs = strings(s.get("verbs"));
                                verbs.sort();
                                format!(
                                    "{}:{}:{}/{}:{verbs:?}",
                                    s["subresource"].as_str().unwrap(),
                                    kind,
                                    s["responseKind"]["group"].as_str().unwrap_or_default(),
                                    s["responseKind"]["version"].as_str().unwrap_or_default(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                subs.sort();
                found.insert(
                    resource["resource"].as_str().unwrap().to_string(),
                    summary(
                        resource["responseKind"]["kind"].as_str().unwrap(),
                        resource["scope"] == "Namespaced",
                        resource["singularResource"].as_str().unwrap(),
                        &strings(resource.get("verbs")),
                        &strings(resource.get("shortNames")),
                        &strings(resource.get("categories")),
                        subs,
                    ),
                );
            }
        }
    }
    found
}

/// The real legacy `/api/v1` document's resources, by plural, with subresources folded in.
fn reference_core(document: &Value) -> BTreeMap<String, String> {
    let resources = document["resources"].as_array().unwrap();
    let mut found = BTreeMap::new();
    for resource in resources {
        let name = resource["name"].as_str().unwrap();
        if name.contains('/') {
            continue;
        }
        let mut subs: Vec<String> = resources
            .iter()
            .filter_map(|sub| {
                let sub_name = sub["name"].as_str()?.strip_prefix(&format!("{name}/"))?;
                let mut verbs = strings(sub.get("verbs"));
                verbs.sort();
                Some(format!(
                    "{sub_name}:{}:{}/{}:{verbs:?}",
                    sub["kind"].as_str().unwrap(),
                    sub["group"].as_str().unwrap_or_default(),
                    sub["version"].as_str().unwrap_or_default(),
                ))
            })
            .collect();
        subs.sort();
        found.insert(
            name.to_string(),
            summary(
                resource["kind"].as_str().unwrap(),
                resource["namespaced"].as_bool().unwrap(),
                resource["singularName"].as_str().unwrap(),
                &strings(resource.get("verbs")),
                &strings(resource.get("shortNames")),
                &strings(resource.get("categories")),
                subs,
            ),
        );
    }
    found
}

#[test]
fn resource_table_matches_a_real_api_server() {
    let Some(aggregated) = shared_testdata("discovery/aggregated_v2.json") else {
        return;
    };
    let Some(core) = shared_testdata("discovery/api__v1.json") else {
        return;
    };
    let aggregated: Value = serde_json::from_slice(&std::fs::read(aggregated).unwrap()).unwrap();
    let core: Value = serde_json::from_slice(&std::fs::read(core).unwrap()).unwrap();
    let table = built_in();
    let mut group_versions: Vec<(String, String)> = table
        .iter()
        .map(|r| (r.group.clone(), r.version.clone()))
        .collect();
    group_versions.dedup();
    let required = [
        "",
        "apps",
        "batch",
        "rbac.authorization.k8s.io",
        "networking.k8s.io",
        "policy",
        "storage.k8s.io",
        "apiextensions.k8s.io",
        "coordination.k8s.io",
        "autoscaling",
        "discovery.k8s.io",
        "scheduling.k8s.io",
    ];
    for group in required {
        assert!(
            group_versions.iter().any(|(g, _)| g == group),
            "the table serves group {group:?}"
        );
    }
    for (group, version) in &group_versions {
        let reference = if group.is_empty() {
            reference_core(&core)
        } else {
            reference_group_version(&aggregated, group, version)
        };
        let mine: BTreeMap<String, String> = table
            .iter()
            .filter(|r| &r.group == group && &r.version == version)
            .map(|r| (r.plural.clone(), ours(r)))
            .collect();
        assert_eq!(mine, reference, "resources of {group}/{version}");
    }
}

#[tokio::test]
async fn served_discovery_documents_match_the_real_ones() {
    let Some(core_path) = shared_testdata("discovery/api__v1.json") else {
        return;
    };
    let Some(aggregated_path) = shared_testdata("discovery/aggregated_v2.json") else {
        return;
    };
    let cluster = start_cluster("discovery").await;
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(cluster.sim.ca_pem().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let get = |path: &str, accept: &str| {
        client
            .get(format!("{}{path}", cluster.sim.url()))
            .bearer_auth(cluster.sim.token())
            .header("Accept", accept)
            .send()
    };

    // Legacy /api/v1: every entry (subresources included) as the real server lists it.
    let served: Value = get("/api/v1", "application/json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let real: Value = serde_json::from_slice(&std::fs::read(core_path).unwrap()).unwrap();
    let strip = |document: &Value| -> BTreeMap<String, Value> {
        document["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.as_object_mut().unwrap().remove("storageVersionHash");
                (r["name"].as_str().unwrap().to_string(), r)
            })
            .collect()
    };
    assert_eq!(strip(&served), strip(&real));
    assert_eq!(served["groupVersion"], "v1");

    // Aggregated /apis: the apps group exactly as the real server serves it.
    let accept =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let response = get("/apis", accept).await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    let served: Value = response.json().await.unwrap();
    let real: Value = serde_json::from_slice(&std::fs::read(aggregated_path).unwrap()).unwrap();
    let group = |document: &Value, name: &str| {
        document["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        group(&served, "apps")["versions"],
        group(&real, "apps")["versions"]
    );
    assert_eq!(
        group(&served, "batch")["versions"],
        group(&real, "batch")["versions"]
    );

    // Plain /apis and /apis/G.
    let groups: Value = get("/apis", "application/json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(groups["kind"], "APIGroupList");
    let autoscaling: Value = get("/apis/autoscaling", "application/json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        autoscaling["preferredVersion"]["groupVersion"],
        "autoscaling/v2"
    );
    let version: Value = get("/version", "application/json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (version["major"].as_str(), version["minor"].as_str()),
        (Some("1"), Some("32"))
    );
}
