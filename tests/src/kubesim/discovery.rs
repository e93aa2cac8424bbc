//! Discovery documents built from the [`Registry`]: `/api`, `/api/v1`, `/apis`, `/apis/G`,
//! `/apis/G/V` in the legacy format, and `/api`, `/apis` as aggregated discovery
//! (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`), which kubectl asks for first.

use serde_json::{Map, Value, json};

use super::registry::Registry;
use super::resources::ResourceInfo;

/// The media type of aggregated discovery, as clients ask for it and the server labels it.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an `Accept` header asks for aggregated discovery v2 (kubectl lists it first).
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

/// Group names in the order they are served: built-in order, then custom groups.
fn groups(resources: &[std::sync::Arc<ResourceInfo>]) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for resource in resources {
        match groups.iter_mut().find(|(name, _)| *name == resource.group) {
            Some((_, versions)) => {
                if !versions.contains(&resource.version) {
                    versions.push(resource.version.clone());
                }
            }
            None => groups.push((resource.group.clone(), vec![resource.version.clone()])),
        }
    }
    for (_, versions) in &mut groups {
        versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
    }
    groups
}

/// Kubernetes version priority: GA over beta over alpha, then by number.
fn version_priority(version: &str) -> (u8, u32, u32) {
    let Some(rest) = version.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    let (stage, number) = if let Some(n) = tail.strip_prefix("beta") {
        (2, n)
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n)
    } else {
        return (0, 0, 0);
    };
    (stage, major, number.parse().unwrap_or(0))
}

/// `/api`: the core versions.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_document(name: &str, versions: &[String]) -> Value {
    let entries: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "name": name,
        "versions": entries,
        "preferredVersion": entries.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/apis`: every named group.
pub fn group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = groups(&registry.all())
        .iter()
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, versions)| group_document(name, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/G`, or `None` when the group is not served.
pub fn group(registry: &Registry, name: &str) -> Option<Value> {
    let groups = groups(&registry.all());
    let (_, versions) = groups
        .iter()
        .find(|(group, _)| group == name && !name.is_empty())?;
    let mut document = group_document(name, versions);
    document["kind"] = json!("APIGroup");
    document["apiVersion"] = json!("v1");
    Some(document)
}

fn insert_list(object: &mut Map<String, Value>, key: &str, items: &[String]) {
    if !items.is_empty() {
        object.insert(key.into(), json!(items));
    }
}

/// `/api/v1` or `/apis/G/V`, or `None` when that group version is not served.
pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let all = registry.all();
    let served: Vec<_> = all
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut entries = Vec::new();
    for resource in served {
        let mut entry = Map::new();
        entry.insert("name".into(), json!(resource.plural));
        entry.insert("singularName".into(), json!(resource.singular));
        entry.insert("namespaced".into(), json!(resource.namespaced));
        entry.insert("kind".into(), json!(resource.kind));
        entry.insert("verbs".into(), json!(resource.verbs));
        insert_list(&mut entry, "shortNames", &resource.short_names);
        insert_list(&mut entry, "categories", &resource.categories);
        entries.push(Value::Object(entry));
        for sub in &resource.subresources {
            let mut entry = Map::new();
            entry.insert(
                "name".into(),
                json!(format!("{}/{}", resource.plural, sub.name)),
            );
            entry.insert("singularName".into(), json!(""));
            entry.insert("namespaced".into(), json!(resource.namespaced));
            if !sub.group.is_empty() || !sub.version.is_empty() {
                entry.insert("group".into(), json!(sub.group));
                entry.insert("version".into(), json!(sub.version));
            }
            entry.insert("kind".into(), json!(sub.kind));
            entry.insert("verbs".into(), json!(sub.verbs));
            entries.push(Value::Object(entry));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    }))
}

fn aggregated_resource(resource: &ResourceInfo) -> Value {
    let mut entry = Map::new();
    entry.insert("resource".into(), json!(resource.plural));
    entry.insert(
        "responseKind".into(),
        json!({"group": "", "version": "", "kind": resource.kind}),
    );
    entry.insert(
        "scope".into(),
        json!(if resource.namespaced {
            "Namespaced"
        } else {
            "Cluster"
        }),
    );
    entry.insert("singularResource".into(), json!(resource.singular));
    entry.insert("verbs".into(), json!(resource.verbs));
    insert_list(&mut entry, "shortNames", &resource.short_names);
    insert_list(&mut entry, "categories", &resource.categories);
    if !resource.subresources.is_empty() {
        let subs: Vec<Value> = resource
            .subresources
            .iter()
            .map(|sub| {
                json!({
                    "subresource": sub.name,
                    "responseKind": {"group": sub.group, "version": sub.version, "kind": sub.kind},
                    "verbs": sub.verbs,
                })
            })
            .collect();
        entry.insert("subresources".into(), Value::Array(subs));
    }
    Value::Object(entry)
}

/// Aggregated discovery of the core group (`core = true`, for `/api`) or of every named group
/// (for `/apis`).
pub fn aggregated(registry: &Registry, core: bool) -> Value {
    let all = registry.all();
    let items: Vec<Value> = groups(&all)
        .iter()
        .filter(|(name, _)| name.is_empty() == core)
        .map(|(name, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|version| {
                    let mut resources: Vec<&std::sync::Arc<ResourceInfo>> = all
                        .iter()
                        .filter(|r| r.group == *name && r.version == *version)
                        .collect();
                    resources.sort_by(|a, b| a.plural.cmp(&b.plural));
                    let resources: Vec<Value> = resources
                        .into_iter()
                        .map(|r| aggregated_resource(r))
                        .collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let metadata = if name.is_empty() {
                json!({"creationTimestamp": null})
            } else {
                json!({"name": name, "creationTimestamp": null})
            };
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_ordered_by_kubernetes_priority() {
        let mut versions = vec!["v1alpha1", "v1beta2", "v2", "v1", "v1beta1", "v10"];
        versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(
            versions,
            ["v10", "v2", "v1", "v1beta2", "v1beta1", "v1alpha1"]
        );
    }

    #[test]
    fn aggregated_accept_header_is_recognised() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
                       application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,\
                       application/json";
        assert!(wants_aggregated(kubectl));
        assert!(!wants_aggregated("application/json"));
    }

    #[test]
    fn autoscaling_prefers_v2() {
        let document = group(&Registry::new(), "autoscaling").unwrap();
        assert_eq!(
            document["preferredVersion"]["groupVersion"],
            "autoscaling/v2"
        );
        assert!(group(&Registry::new(), "nothing.example.com").is_none());
    }
}
