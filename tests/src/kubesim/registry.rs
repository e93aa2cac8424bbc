//! Which resources the cluster serves right now: the built-in table plus the resources of every
//! established CustomResourceDefinition, looked up by group, version and plural.

use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::errors::{ApiError, FieldCause};
use super::resources::{ALL_VERBS, ResourceInfo, SubresourceInfo, built_in, verbs};

/// The served resources. Shared by the API handlers and discovery.
#[derive(Debug)]
pub struct Registry {
    built_in: Vec<Arc<ResourceInfo>>,
    /// Custom resources by the CRD name (`plural.group`) they come from.
    custom: RwLock<Vec<(String, Vec<Arc<ResourceInfo>>)>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// The built-in resources only.
    pub fn new() -> Self {
        Self {
            built_in: built_in().into_iter().map(Arc::new).collect(),
            custom: RwLock::new(Vec::new()),
        }
    }

    fn custom_read(&self) -> std::sync::RwLockReadGuard<'_, Vec<(String, Vec<Arc<ResourceInfo>>)>> {
        // Writers replace whole entries, so a poisoned lock still holds a consistent list.
        self.custom
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every served resource: built-in first, in table order, then custom ones by CRD name.
    pub fn all(&self) -> Vec<Arc<ResourceInfo>> {
        let mut all = self.built_in.clone();
        for (_, resources) in self.custom_read().iter() {
            all.extend(resources.iter().cloned());
        }
        all
    }

    /// The resource `plural` in `group`/`version`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        let matches =
            |r: &Arc<ResourceInfo>| r.group == group && r.version == version && r.plural == plural;
        if let Some(found) = self.built_in.iter().find(|r| matches(r)) {
            return Some(found.clone());
        }
        self.custom_read()
            .iter()
            .flat_map(|(_, resources)| resources.iter())
            .find(|r| matches(r))
            .cloned()
    }

    /// Whether a resource is one of the built-in kinds (not from a CRD).
    pub fn is_built_in(&self, resource: &ResourceInfo) -> bool {
        self.built_in
            .iter()
            .any(|r| r.group == resource.group && r.plural == resource.plural)
    }

    /// Whether `group`/`version` is served at all.
    pub fn serves_group_version(&self, group: &str, version: &str) -> bool {
        self.all()
            .iter()
            .any(|r| r.group == group && r.version == version)
    }

    /// Serves (or stops serving) the resources a CRD defines. `None` removes them.
    pub fn set_custom(&self, crd_name: &str, resources: Option<Vec<ResourceInfo>>) {
        // See `custom_read` for why a poisoned lock is still usable.
        let mut custom = self
            .custom
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        custom.retain(|(name, _)| name != crd_name);
        if let Some(resources) = resources {
            custom.push((
                crd_name.to_string(),
                resources.into_iter().map(Arc::new).collect(),
            ));
            custom.sort_by(|a, b| a.0.cmp(&b.0));
        }
    }
}

/// The string at a JSON pointer, or `""` when it is absent or not a string.
pub(crate) fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn string_list(value: &Value, pointer: &str) -> Vec<String> {
    value
        .pointer(pointer)
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

fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// The resources a CustomResourceDefinition serves (one per served version), or the reasons it
/// is invalid, as the real server's validation names them.
pub fn crd_resources(crd: &Value) -> Result<Vec<ResourceInfo>, ApiError> {
    let name = text(crd, "/metadata/name");
    let group = text(crd, "/spec/group");
    let plural = text(crd, "/spec/names/plural");
    let kind = text(crd, "/spec/names/kind");
    let scope = text(crd, "/spec/scope");
    let mut causes = Vec::new();
    let mut cause = |field: &str, message: String| {
        causes.push(FieldCause {
            field: field.into(),
            message,
            reason: "FieldValueInvalid",
        })
    };
    if group.is_empty() || !group.contains('.') {
        cause(
            "spec.group",
            format!("Invalid value: {group:?}: should be a domain with at least one dot"),
        );
    }
    if !is_dns_label(plural) {
        cause(
            "spec.names.plural",
            format!("Invalid value: {plural:?}: a lowercase RFC 1123 label is required"),
        );
    }
    if kind.is_empty() {
        cause("spec.names.kind", "Required value".into());
    }
    if name != format!("{plural}.{group}") {
        cause(
            "metadata.name",
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        );
    }
    if scope != "Namespaced" && scope != "Cluster" {
        cause(
            "spec.scope",
            format!("Unsupported value: {scope:?}: supported values: \"Cluster\", \"Namespaced\""),
        );
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        cause(
            "spec.versions",
            "Required value: must have exactly one version marked as storage version".into(),
        );
    } else if versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count()
        != 1
    {
        cause(
            "spec.versions",
            "Invalid value: must have exactly one version marked as storage version".into(),
        );
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(
            "CustomResourceDefinition",
            "apiextensions.k8s.io",
            name,
            causes,
        ));
    }
    let singular = match text(crd, "/spec/names/singular") {
        "" => kind.to_lowercase(),
        singular => singular.to_string(),
    };
    Ok(versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        .map(|version| {
            let mut subresources = Vec::new();
            if version.pointer("/subresources/scale").is_some() {
                subresources.push(SubresourceInfo {
                    name: "scale".into(),
                    group: "autoscaling".into(),
                    version: "v1".into(),
                    kind: "Scale".into(),
                    verbs: verbs("gpu"),
                });
            }
            if version.pointer("/subresources/status").is_some() {
                subresources.push(SubresourceInfo {
                    name: "status".into(),
                    group: String::new(),
                    version: String::new(),
                    kind: kind.to_string(),
                    verbs: verbs("gpu"),
                });
            }
            ResourceInfo {
                group: group.to_string(),
                version: text(version, "/name").to_string(),
                plural: plural.to_string(),
                singular: singular.clone(),
                kind: kind.to_string(),
                namespaced: scope == "Namespaced",
                verbs: verbs(ALL_VERBS),
                short_names: string_list(crd, "/spec/names/shortNames"),
                categories: string_list(crd, "/spec/names/categories"),
                subresources,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd() -> Value {
        json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
                    {"name": "v1beta1", "served": true, "storage": false},
                    {"name": "v1alpha1", "served": false, "storage": false}
                ]
            }
        })
    }

    #[test]
    fn a_crd_serves_each_served_version() {
        let resources = crd_resources(&crd()).unwrap();
        let versions: Vec<_> = resources.iter().map(|r| r.version.as_str()).collect();
        assert_eq!(versions, ["v1", "v1beta1"]);
        assert_eq!(resources[0].singular, "widget");
        assert!(resources[0].subresource("status").is_some());
        assert!(resources[1].subresource("status").is_none());
        let registry = Registry::new();
        registry.set_custom("widgets.example.com", Some(resources));
        assert!(registry.find("example.com", "v1beta1", "widgets").is_some());
        registry.set_custom("widgets.example.com", None);
        assert!(registry.find("example.com", "v1", "widgets").is_none());
    }

    #[test]
    fn an_invalid_crd_names_its_fields() {
        let mut bad = crd();
        bad["spec"]["group"] = json!("nodots");
        bad["spec"]["versions"][0]["storage"] = json!(false);
        let error = crd_resources(&bad).unwrap_err();
        assert_eq!(error.code, 422);
        let fields: Vec<_> = error
            .details
            .causes
            .iter()
            .map(|c| c.field.as_str())
            .collect();
        assert_eq!(fields, ["spec.group", "metadata.name", "spec.versions"]);
    }
}
