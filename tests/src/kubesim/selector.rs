//! Label selectors (the full syntax: `=`, `==`, `!=`, `in`, `notin`, exists, `!`not-exists) and
//! field selectors (`=`, `==`, `!=` on a dotted path such as `metadata.name`), parsed from query
//! strings and matched against stored objects.

use std::collections::BTreeSet;

use serde_json::Value;

use super::errors::ApiError;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

fn invalid_selector(selector: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!(
        "unable to parse requirement: {why} in selector {selector:?}"
    ))
}

/// Label keys: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
fn check_key(selector: &str, key: &str) -> Result<(), ApiError> {
    let name = key.rsplit_once('/').map_or(key, |(_, name)| name);
    let valid_name = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid_name {
        Ok(())
    } else {
        Err(invalid_selector(
            selector,
            &format!("invalid label key {key:?}"),
        ))
    }
}

fn check_value(selector: &str, value: &str) -> Result<(), ApiError> {
    let valid = value.is_empty()
        || (value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()));
    if valid {
        Ok(())
    } else {
        Err(invalid_selector(
            selector,
            &format!("invalid label value {value:?}"),
        ))
    }
}

/// Splits at commas that are not inside parentheses.
fn split_requirements(selector: &str) -> Result<Vec<&str>, ApiError> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| invalid_selector(selector, "unbalanced ')'"))?;
            }
            ',' if depth == 0 => {
                parts.push(&selector[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(invalid_selector(selector, "unbalanced '('"));
    }
    parts.push(&selector[start..]);
    Ok(parts)
}

fn parse_set(selector: &str, text: &str) -> Result<BTreeSet<String>, ApiError> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or_else(|| invalid_selector(selector, "expected a set of values in parentheses"))?;
    let mut values = BTreeSet::new();
    for value in inner.split(',') {
        let value = value.trim();
        check_value(selector, value)?;
        values.insert(value.to_string());
    }
    Ok(values)
}

impl LabelSelector {
    /// Parses a `labelSelector` query value.
    pub fn parse(selector: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        if selector.trim().is_empty() {
            return Ok(Self { requirements });
        }
        for part in split_requirements(selector)? {
            let part = part.trim();
            if part.is_empty() {
                return Err(invalid_selector(selector, "empty requirement"));
            }
            let requirement = if let Some(key) = part.strip_prefix('!') {
                let key = key.trim();
                check_key(selector, key)?;
                LabelRequirement::NotExists(key.to_string())
            } else if let Some((key, value)) = part.split_once("!=") {
                let (key, value) = (key.trim(), value.trim());
                check_key(selector, key)?;
                check_value(selector, value)?;
                LabelRequirement::NotEquals(key.to_string(), value.to_string())
            } else if let Some((key, value)) =
                part.split_once("==").or_else(|| part.split_once('='))
            {
                let (key, value) = (key.trim(), value.trim());
                check_key(selector, key)?;
                check_value(selector, value)?;
                LabelRequirement::Equals(key.to_string(), value.to_string())
            } else if let Some((key, set)) = part.split_once(" notin ") {
                let key = key.trim();
                check_key(selector, key)?;
                LabelRequirement::NotIn(key.to_string(), parse_set(selector, set)?)
            } else if let Some((key, set)) = part.split_once(" in ") {
                let key = key.trim();
                check_key(selector, key)?;
                LabelRequirement::In(key.to_string(), parse_set(selector, set)?)
            } else {
                check_key(selector, part)?;
                LabelRequirement::Exists(part.to_string())
            };
            requirements.push(requirement);
        }
        Ok(Self { requirements })
    }

    /// Whether the selector has no requirement.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object's labels satisfy every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let label = |key: &str| {
            labels
                .and_then(|labels| labels.get(key))
                .and_then(Value::as_str)
        };
        self.requirements
            .iter()
            .all(|requirement| match requirement {
                LabelRequirement::Equals(key, value) => label(key) == Some(value.as_str()),
                LabelRequirement::NotEquals(key, value) => label(key) != Some(value.as_str()),
                LabelRequirement::In(key, values) => label(key).is_some_and(|v| values.contains(v)),
                LabelRequirement::NotIn(key, values) => {
                    !label(key).is_some_and(|v| values.contains(v))
                }
                LabelRequirement::Exists(key) => label(key).is_some(),
                LabelRequirement::NotExists(key) => label(key).is_none(),
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
    fn label_selector_supports_every_operator() {
        let obj = object(json!({"app": "web", "tier": "front"}));
        for (selector, expected) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, db)", true),
            ("app notin (web,db)", false),
            ("tier notin (back)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier=front", true),
            ("app=web,tier in (back)", false),
            ("missing!=x", true),
            ("", true),
        ] {
            let parsed = LabelSelector::parse(selector).unwrap();
            assert_eq!(parsed.matches(&obj), expected, "{selector}");
        }
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
