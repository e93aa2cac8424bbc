//! A minimal OpenAPI v3 surface: the `/openapi/v3` index of group versions and, per group
//! version, one path per resource whose PATCH operation names its kind and accepts the
//! `fieldValidation` query parameter. That is what kubectl 1.32 reads to decide that the server
//! validates fields itself, so `create -f` and `apply -f` work without `--validate=false`.
//! Schemas are not served (see docs/kubesim.md).

use serde_json::{Map, Value, json};

use super::registry::Registry;

fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: where each built-in group version's document is. Custom resources are left
/// out on purpose: kubectl then checks them through the apiextensions document, as it does for
/// CRDs without a published schema.
pub fn index(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for resource in registry.all() {
        if !registry.is_built_in(&resource) {
            continue;
        }
        let path = group_version_path(&resource.group, &resource.version);
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash=kubesim")}),
        );
    }
    json!({"paths": paths})
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/G/V`, or `None` when not served.
pub fn group_version(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    for resource in registry.all() {
        if resource.group != group
            || resource.version != version
            || !registry.is_built_in(&resource)
        {
            continue;
        }
        let prefix = format!("/{}", group_version_path(group, version));
        let path = if resource.namespaced {
            format!(
                "{prefix}/namespaces/{{namespace}}/{}/{{name}}",
                resource.plural
            )
        } else {
            format!("{prefix}/{}/{{name}}", resource.plural)
        };
        paths.insert(
            path,
            json!({
                "patch": {
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {
                        "group": group, "version": version, "kind": resource.kind,
                    },
                    "parameters": [
                        {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                        {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {"200": {"description": "OK"}},
                },
            }),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0-kubesim"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
