//! Validation of what clients send: object names (DNS label, DNS subdomain or path segment, as
//! each resource requires), `apiVersion`/`kind` against the URL, and the namespace in the body
//! against the namespace in the URL.

use serde_json::Value;

use super::errors::{ApiError, FieldCause};
use super::resources::ResourceInfo;

/// How a resource's names are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameRule {
    /// RFC 1123 label: at most 63 of `[a-z0-9-]`, alphanumeric at both ends.
    Label,
    /// RFC 1123 subdomain: labels joined by dots, at most 253 characters.
    Subdomain,
    /// Anything without `/` or `%` that is not `.` or `..` (RBAC names such as `system:node`).
    PathSegment,
}

fn rule_for(resource: &ResourceInfo) -> NameRule {
    match (resource.group.as_str(), resource.plural.as_str()) {
        ("", "namespaces" | "services") => NameRule::Label,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    }
}

fn is_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_label)
}

/// Why `name` is not a valid name for `resource`, if it is not.
pub fn name_problem(resource: &ResourceInfo, name: &str) -> Option<String> {
    match rule_for(resource) {
        NameRule::Label if !is_label(name) => Some(format!(
            "Invalid value: {name:?}: a lowercase RFC 1123 label must consist of lower case \
             alphanumeric characters or '-', and must start and end with an alphanumeric character"
        )),
        NameRule::Subdomain if !is_subdomain(name) => Some(format!(
            "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case \
             alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
             character"
        )),
        NameRule::PathSegment
            if name.is_empty() || name == "." || name == ".." || name.contains(['/', '%']) =>
        {
            Some(format!(
                "Invalid value: {name:?}: may not contain '/' or '%' or be '.' or '..'"
            ))
        }
        _ => None,
    }
}

/// Checks the name (present, or to be generated) and answers 422 naming the field.
pub fn check_name(resource: &ResourceInfo, name: &str) -> Result<(), ApiError> {
    let problem = if name.is_empty() {
        Some("Required value: name or generateName is required".to_string())
    } else {
        name_problem(resource, name)
    };
    match problem {
        None => Ok(()),
        Some(message) => Err(ApiError::invalid(
            &resource.kind,
            &resource.group,
            name,
            vec![FieldCause {
                field: "metadata.name".into(),
                message,
                reason: if name.is_empty() {
                    "FieldValueRequired"
                } else {
                    "FieldValueInvalid"
                },
            }],
        )),
    }
}

/// Fills in or checks `apiVersion` and `kind` of a body sent to `resource` (400 on a mismatch).
pub fn check_type(resource: &ResourceInfo, object: &mut Value) -> Result<(), ApiError> {
    let Some(map) = object.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    };
    let expected_version = resource.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), Value::String(expected_version));
        }
        Some(version) if version != expected_version => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({version}) does not match the expected API version \
                 ({expected_version})"
            )));
        }
        Some(_) => {}
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), Value::String(resource.kind.clone()));
        }
        Some(kind) if kind != resource.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                resource.kind
            )));
        }
        Some(_) => {}
    }
    if !map.get("metadata").is_none_or(Value::is_object) {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    map.entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    Ok(())
}

/// Puts the URL's namespace into the body (400 if the body names another one); cluster-scoped
/// objects lose any namespace.
pub fn settle_namespace(
    resource: &ResourceInfo,
    url_namespace: Option<&str>,
    object: &mut Value,
) -> Result<(), ApiError> {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Err(ApiError::bad_request("metadata must be an object"));
    };
    if !resource.namespaced {
        metadata.remove("namespace");
        return Ok(());
    }
    let url_namespace = url_namespace.unwrap_or_default();
    match metadata.get("namespace").and_then(Value::as_str) {
        Some(body) if !body.is_empty() && body != url_namespace => {
            Err(ApiError::bad_request(format!(
                "the namespace of the provided object ({body}) does not match the namespace sent \
                 on the request ({url_namespace})"
            )))
        }
        _ => {
            metadata.insert("namespace".into(), Value::String(url_namespace.to_string()));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubesim::resources::built_in;
    use serde_json::json;

    fn resource(plural: &str) -> ResourceInfo {
        built_in().into_iter().find(|r| r.plural == plural).unwrap()
    }

    #[test]
    fn names_follow_each_resources_rule() {
        assert!(check_name(&resource("configmaps"), "app.config-1").is_ok());
        assert!(check_name(&resource("namespaces"), "app.config").is_err());
        assert!(check_name(&resource("clusterroles"), "system:controller:x").is_ok());
        let error = check_name(&resource("configmaps"), "Bad_Name").unwrap_err();
        assert_eq!(error.code, 422);
        assert_eq!(error.details.causes[0].field, "metadata.name");
        assert!(
            check_name(&resource("configmaps"), "")
                .unwrap_err()
                .message
                .contains("Required")
        );
    }

    #[test]
    fn type_and_namespace_must_agree_with_the_url() {
        let configmaps = resource("configmaps");
        let mut object = json!({"metadata": {"name": "x"}});
        check_type(&configmaps, &mut object).unwrap();
        assert_eq!(object["kind"], "ConfigMap");
        let mut wrong = json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {}});
        assert_eq!(check_type(&configmaps, &mut wrong).unwrap_err().code, 400);
        let mut other = json!({"metadata": {"namespace": "b"}});
        assert_eq!(
            settle_namespace(&configmaps, Some("a"), &mut other)
                .unwrap_err()
                .code,
            400
        );
        settle_namespace(&configmaps, Some("a"), &mut object).unwrap();
        assert_eq!(object["metadata"]["namespace"], "a");
    }
}
