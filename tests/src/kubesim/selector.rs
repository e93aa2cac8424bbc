//! Label selectors (the full syntax, parsed by `stowage_workflows::labels`) and field selectors
//! (`=`, `==`, `!=` on a dotted path such as `metadata.name`), parsed from query strings and
//! matched against stored objects.

use serde_json::Value;
use stowage_workflows::labels;

use super::errors::ApiError;

/// A parsed label selector (the project's one parser, in `stowage_workflows::labels`), with the
/// API server's error; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(labels::LabelSelector);

impl LabelSelector {
    /// Parses a `labelSelector` query value; bad syntax is a 400.
    pub fn parse(selector: &str) -> Result<Self, ApiError> {
        labels::LabelSelector::parse(selector)
            .map(Self)
            .map_err(|error| ApiError::bad_request(error.to_string()))
    }

    /// Whether the selector has no requirement.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object's labels satisfy every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        self.0.matches_with(|key| {
            labels
                .and_then(|labels| labels.get(key))
                .and_then(Value::as_str)
        })
    }
}

/// One requirement of a field selector: a dotted path, equal or not, to a value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldRequirement {
    pointer: String,
    path: String,
    value: String,
    equal: bool,
}

/// A parsed field selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses a `fieldSelector` query value such as `metadata.name=web,metadata.namespace!=x`.
    pub fn parse(selector: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        if selector.trim().is_empty() {
            return Ok(Self { requirements });
        }
        for part in selector.split(',') {
            let (path, value, equal) = if let Some((path, value)) = part.split_once("!=") {
                (path, value, false)
            } else if let Some((path, value)) =
                part.split_once("==").or_else(|| part.split_once('='))
            {
                (path, value, true)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector {selector:?}: {part:?} is not of the form field=value"
                )));
            };
            let path = path.trim();
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector {selector:?}: bad field path {path:?}"
                )));
            }
            requirements.push(FieldRequirement {
                pointer: format!("/{}", path.replace('.', "/")),
                path: path.to_string(),
                value: value.trim().to_string(),
                equal,
            });
        }
        Ok(Self { requirements })
    }

    /// The name this selector pins with `metadata.name=`, if any: lists can then skip a scan.
    pub fn pinned_name(&self) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.equal && r.path == "metadata.name")
            .map(|r| r.value.as_str())
    }

    /// Whether the object's fields satisfy every requirement (a missing field is `""`).
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|requirement| {
            let actual = match object.pointer(&requirement.pointer) {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == requirement.value) == requirement.equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(labels: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "shop", "labels": labels}})
    }

    #[test]
    fn label_selectors_match_an_objects_labels() {
        let obj = object(json!({"app": "web", "tier": "front"}));
        assert!(
            LabelSelector::parse("app=web,tier in (front)")
                .unwrap()
                .matches(&obj)
        );
        assert!(!LabelSelector::parse("!app").unwrap().matches(&obj));
        assert!(
            LabelSelector::parse("")
                .unwrap()
                .matches(&json!({"metadata": {}}))
        );
    }

    #[test]
    fn label_selector_rejects_bad_syntax() {
        for selector in ["app in (web", "app=we b!", "=x", "app,,tier", "a in web"] {
            let error = LabelSelector::parse(selector).unwrap_err();
            assert_eq!(error.code, 400, "{selector}");
            assert!(
                error.message.contains("unable to parse requirement"),
                "{selector}"
            );
        }
    }

    #[test]
    fn field_selector_matches_dotted_paths() {
        let obj = object(json!({}));
        let selector = FieldSelector::parse("metadata.name=web,metadata.namespace!=other").unwrap();
        assert!(selector.matches(&obj));
        assert_eq!(selector.pinned_name(), Some("web"));
        assert!(
            !FieldSelector::parse("metadata.name=db")
                .unwrap()
                .matches(&obj)
        );
        assert_eq!(FieldSelector::parse("metadata.name").unwrap_err().code, 400);
    }
}
