//! The patch types of `PATCH` requests: JSON patch (RFC 6902) and JSON merge patch (RFC 7386)
//! through the `json-patch` crate, and strategic merge patch for the built-in kinds, with the
//! merge keys of the fields kubectl patches (containers by name, ports by port, ...) and the
//! `$patch`, `$retainKeys`, `$deleteFromPrimitiveList` and `$setElementOrder` directives.

use serde_json::{Map, Value};

use super::errors::ApiError;

/// The kind of patch, from the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchKind {
    /// The patch kind of a content type, or 415.
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        match media {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(Self::Apply),
            _ => Err(ApiError::unsupported_media_type(content_type)),
        }
    }
}

/// Applies an RFC 6902 JSON patch.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let patch: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|error| ApiError::bad_request(format!("invalid JSON patch: {error}")))?;
    json_patch::patch(target, &patch).map_err(|error| ApiError {
        code: 422,
        reason: "Invalid",
        ..ApiError::bad_request(format!("the JSON patch could not be applied: {error}"))
    })
}

/// Applies an RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// The merge key of a list field in the built-in kinds, or `None` when the list is replaced
/// whole. `Some("")` marks a list of plain values that is merged as a set.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "topologySpreadConstraints" => "topologyKey",
        "finalizers" => "",
        _ => return None,
    })
}

/// The merge key of a `ports` list depends on where it is: containers key by `containerPort`,
/// services by `port`.
fn ports_key(items: &[Value]) -> &'static str {
    if items.iter().any(|item| item.get("containerPort").is_some()) {
        "containerPort"
    } else {
        "port"
    }
}

/// Applies a strategic merge patch.
pub fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = patch_map.clone();
        replaced.remove("$patch");
        *target = Value::Object(replaced);
        return Ok(());
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return Ok(());
    };
    if let Some(retain) = patch_map.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        target_map.retain(|key, _| keep.contains(&key.as_str()));
    }
    for (key, value) in patch_map {
        if key.starts_with("$setElementOrder/") || key == "$retainKeys" || key == "$patch" {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = target_map.get_mut(field) {
                items.retain(|item| !remove.contains(item));
            }
            continue;
        }
        if key.starts_with('$') {
            return Err(ApiError::bad_request(format!(
                "unknown strategic merge patch directive {key:?}"
            )));
        }
        match value {
            Value::Null => {
                target_map.remove(key);
            }
            Value::Object(_) => {
                let slot = target_map.entry(key.clone()).or_insert(Value::Null);
                strategic_merge(slot, value)?;
            }
            Value::Array(items) => {
                let merge_by = if key == "ports" {
                    Some(ports_key(items))
                } else {
                    merge_key(key)
                };
                match (merge_by, target_map.get_mut(key)) {
                    (Some(""), Some(Value::Array(existing))) => {
                        for item in items {
                            if !existing.contains(item) {
                                existing.push(item.clone());
                            }
                        }
                    }
                    (Some(merge_key), Some(Value::Array(existing))) if !merge_key.is_empty() => {
                        merge_list(existing, items, merge_key)?;
                    }
                    _ => {
                        let cleaned: Vec<Value> = items
                            .iter()
                            .filter(|item| item.get("$patch").is_none())
                            .cloned()
                            .collect();
                        target_map.insert(key.clone(), Value::Array(cleaned));
                    }
                }
            }
            _ => {
                target_map.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(())
}

fn merge_list(existing: &mut Vec<Value>, items: &[Value], key: &str) -> Result<(), ApiError> {
    for item in items {
        let Some(id) = item.get(key) else {
            return Err(ApiError::bad_request(format!(
                "a strategic merge patch list item has no merge key {key:?}"
            )));
        };
        let position = existing.iter().position(|old| old.get(key) == Some(id));
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(position) = position {
                existing.remove(position);
            }
            continue;
        }
        match position {
            Some(position) => strategic_merge(&mut existing[position], item)?,
            None => {
                let mut fresh = Value::Null;
                strategic_merge(&mut fresh, item)?;
                existing.push(fresh);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_can_be_deleted() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "app", "image": "app:1", "ports": [{"containerPort": 80}]},
            {"name": "sidecar", "image": "side:1"}
        ]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [
                {"name": "app", "image": "app:2", "ports": [{"containerPort": 443}]},
                {"name": "sidecar", "$patch": "delete"}
            ]
        }});
        strategic_merge(&mut pod, &patch).unwrap();
        assert_eq!(
            pod,
            json!({"spec": {"containers": [
                {"name": "app", "image": "app:2", "ports": [{"containerPort": 80}, {"containerPort": 443}]}
            ]}})
        );
    }

    #[test]
    fn plain_lists_are_replaced_and_nulls_remove() {
        let mut object = json!({"spec": {"args": ["a", "b"], "keep": 1, "drop": 2},
                                "metadata": {"finalizers": ["x"]}});
        let patch = json!({"spec": {"args": ["c"], "drop": null},
                           "metadata": {"finalizers": ["y"], "$deleteFromPrimitiveList/finalizers": ["x"]}});
        strategic_merge(&mut object, &patch).unwrap();
        assert_eq!(object["spec"], json!({"args": ["c"], "keep": 1}));
        assert_eq!(object["metadata"]["finalizers"], json!(["y"]));
    }

    #[test]
    fn json_and_merge_patches_use_their_rfcs() {
        let mut object = json!({"data": {"a": "1", "b": "2"}});
        merge_patch(&mut object, &json!({"data": {"a": null, "c": "3"}}));
        assert_eq!(object, json!({"data": {"b": "2", "c": "3"}}));
        json_patch(
            &mut object,
            &json!([{"op": "replace", "path": "/data/b", "value": "9"}]),
        )
        .unwrap();
        assert_eq!(object["data"]["b"], "9");
        let error = json_patch(
            &mut object,
            &json!([{"op": "remove", "path": "/data/missing"}]),
        )
        .unwrap_err();
        assert_eq!(error.code, 422);
        assert_eq!(
            PatchKind::from_content_type("text/plain").unwrap_err().code,
            415
        );
    }
}
