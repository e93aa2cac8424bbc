//! Kubernetes label selectors, in both of their forms: the structured one users write in specs
//! (`matchLabels`, `matchExpressions`) and the query string the API server reads
//! (`app=web,tier in (front,back),!legacy`). This module owns their syntax, the rules for label
//! keys and values, the rendering of a structured selector as a query, and matching a set of
//! labels. Backups, rules and kubesim's API server all select through it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::validate::Problems;

/// A selector in the structured form of the Kubernetes API (`metav1.LabelSelector`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SelectorSpec {
    /// Labels an object must carry with these values.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Further requirements.
    #[serde(default)]
    pub match_expressions: Vec<SelectorRequirement>,
}

/// One requirement of a structured selector: `key` `operator` `values`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectorRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In` and `NotIn`; none for the others.
    #[serde(default)]
    pub values: Vec<String>,
}

/// 1 to 63 alphanumerics, `-`, `_` and `.`, starting and ending with an alphanumeric: the name
/// part of a label key, and a non-empty label value.
fn is_label_word(word: &str) -> bool {
    let bytes = word.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Whether `key` is a label key: an optional DNS-subdomain prefix and `/`, then a name of at most
/// 63 alphanumerics, `-`, `_` and `.`, starting and ending with an alphanumeric.
pub fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    is_label_word(name)
        && prefix.is_none_or(|prefix| {
            !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.')
                })
        })
}

/// Whether `value` is a label value: empty, or at most 63 alphanumerics, `-`, `_` and `.`,
/// starting and ending with an alphanumeric.
pub fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_label_word(value)
}

fn check_key(problems: &mut Problems, field: &str, key: &str) {
    if !is_label_key(key) {
        problems.add(field, format!("`{key}` is not a valid label key"));
    }
}

fn check_value(problems: &mut Problems, field: &str, value: &str) {
    if !is_label_value(value) {
        problems.add(field, format!("`{value}` is not a valid label value"));
    }
}

impl SelectorSpec {
    /// Whether the selector has no requirement (it selects everything).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Records every invalid key, value and operator, with its path under `field`.
    pub fn check(&self, problems: &mut Problems, field: &str) {
        for (key, value) in &self.match_labels {
            check_key(problems, &format!("{field}.matchLabels"), key);
            check_value(problems, &format!("{field}.matchLabels.{key}"), value);
        }
        for (index, requirement) in self.match_expressions.iter().enumerate() {
            let at = format!("{field}.matchExpressions[{index}]");
            check_key(problems, &format!("{at}.key"), &requirement.key);
            match requirement.operator.as_str() {
                "In" | "NotIn" => {
                    if requirement.values.is_empty() {
                        problems.add(
                            format!("{at}.values"),
                            format!("{} needs at least one value", requirement.operator),
                        );
                    }
                    for (n, value) in requirement.values.iter().enumerate() {
                        check_value(problems, &format!("{at}.values[{n}]"), value);
                    }
                }
                "Exists" | "DoesNotExist" => {
                    if !requirement.values.is_empty() {
                        problems.add(
                            format!("{at}.values"),
                            format!("{} takes no values", requirement.operator),
                        );
                    }
                }
                other => problems.add(
                    format!("{at}.operator"),
                    format!("`{other}` is not an operator: use In, NotIn, Exists or DoesNotExist"),
                ),
            }
        }
    }

    /// The selector as a query string for `?labelSelector=`; `None` for an operator that
    /// [`check`](Self::check) refuses.
    pub fn to_query(&self) -> Option<String> {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        for requirement in &self.match_expressions {
            let key = &requirement.key;
            parts.push(match requirement.operator.as_str() {
                "In" => format!("{key} in ({})", requirement.values.join(",")),
                "NotIn" => format!("{key} notin ({})", requirement.values.join(",")),
                "Exists" => key.clone(),
                "DoesNotExist" => format!("!{key}"),
                _ => return None,
            });
        }
        Some(parts.join(","))
    }
}

/// One requirement of a parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    NotExists(String),
}

/// A selector parsed from its query-string form; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// Why a selector string does not parse; the message is the API server's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {why} in selector {selector:?}")]
pub struct SelectorError {
    /// The whole selector.
    pub selector: String,
    /// What is wrong with it.
    pub why: String,
}

fn invalid(selector: &str, why: impl Into<String>) -> SelectorError {
    SelectorError {
        selector: selector.to_string(),
        why: why.into(),
    }
}

fn parse_key(selector: &str, key: &str) -> Result<String, SelectorError> {
    let key = key.trim();
    if is_label_key(key) {
        Ok(key.to_string())
    } else {
        Err(invalid(selector, format!("invalid label key {key:?}")))
    }
}

fn parse_value(selector: &str, value: &str) -> Result<String, SelectorError> {
    let value = value.trim();
    if is_label_value(value) {
        Ok(value.to_string())
    } else {
        Err(invalid(selector, format!("invalid label value {value:?}")))
    }
}

/// Splits at commas that are not inside parentheses.
fn split_requirements(selector: &str) -> Result<Vec<&str>, SelectorError> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| invalid(selector, "unbalanced ')'"))?;
            }
            ',' if depth == 0 => {
                parts.push(&selector[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(invalid(selector, "unbalanced '('"));
    }
    parts.push(&selector[start..]);
    Ok(parts)
}

fn parse_set(selector: &str, text: &str) -> Result<BTreeSet<String>, SelectorError> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or_else(|| invalid(selector, "expected a set of values in parentheses"))?;
    inner
        .split(',')
        .map(|value| parse_value(selector, value))
        .collect()
}

impl LabelSelector {
    /// Parses the query-string form (`=`, `==`, `!=`, `in`, `notin`, exists, `!` not-exists).
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        if selector.trim().is_empty() {
            return Ok(Self { requirements });
        }
        for part in split_requirements(selector)? {
            let part = part.trim();
            if part.is_empty() {
                return Err(invalid(selector, "empty requirement"));
            }
            let requirement = if let Some(key) = part.strip_prefix('!') {
                Requirement::NotExists(parse_key(selector, key)?)
            } else if let Some((key, value)) = part.split_once("!=") {
                Requirement::NotEquals(parse_key(selector, key)?, parse_value(selector, value)?)
            } else if let Some((key, value)) =
                part.split_once("==").or_else(|| part.split_once('='))
            {
                Requirement::Equals(parse_key(selector, key)?, parse_value(selector, value)?)
            } else if let Some((key, set)) = part.split_once(" notin ") {
                Requirement::NotIn(parse_key(selector, key)?, parse_set(selector, set)?)
            } else if let Some((key, set)) = part.split_once(" in ") {
                Requirement::In(parse_key(selector, key)?, parse_set(selector, set)?)
            } else {
                Requirement::Exists(parse_key(selector, part)?)
            };
            requirements.push(requirement);
        }
        Ok(Self { requirements })
    }

    /// Whether the selector has no requirement.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The same selector in the structured form (`key=value` as a match label, `key!=value` as
    /// `NotIn` with one value), as a spec holds it.
    pub fn to_spec(&self) -> SelectorSpec {
        let mut spec = SelectorSpec::default();
        let requirement = |key: &str, operator: &str, values: Vec<String>| SelectorRequirement {
            key: key.to_string(),
            operator: operator.to_string(),
            values,
        };
        for entry in &self.requirements {
            match entry {
                Requirement::Equals(key, value) if !spec.match_labels.contains_key(key) => {
                    spec.match_labels.insert(key.clone(), value.clone());
                }
                Requirement::Equals(key, value) => {
                    spec.match_expressions
                        .push(requirement(key, "In", vec![value.clone()]))
                }
                Requirement::NotEquals(key, value) => {
                    spec.match_expressions
                        .push(requirement(key, "NotIn", vec![value.clone()]))
                }
                Requirement::In(key, values) => spec.match_expressions.push(requirement(
                    key,
                    "In",
                    values.iter().cloned().collect(),
                )),
                Requirement::NotIn(key, values) => spec.match_expressions.push(requirement(
                    key,
                    "NotIn",
                    values.iter().cloned().collect(),
                )),
                Requirement::Exists(key) => {
                    spec.match_expressions
                        .push(requirement(key, "Exists", Vec::new()))
                }
                Requirement::NotExists(key) => {
                    spec.match_expressions
                        .push(requirement(key, "DoesNotExist", Vec::new()))
                }
            }
        }
        spec
    }

    /// Whether labels looked up through `label` satisfy every requirement.
    pub fn matches_with<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements
            .iter()
            .all(|requirement| match requirement {
                Requirement::Equals(key, value) => label(key) == Some(value.as_str()),
                Requirement::NotEquals(key, value) => label(key) != Some(value.as_str()),
                Requirement::In(key, values) => label(key).is_some_and(|v| values.contains(v)),
                Requirement::NotIn(key, values) => !label(key).is_some_and(|v| values.contains(v)),
                Requirement::Exists(key) => label(key).is_some(),
                Requirement::NotExists(key) => label(key).is_none(),
            })
    }

    /// Whether a label map satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|key| labels.get(key).map(String::as_str))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |values: &BTreeSet<String>| values.iter().cloned().collect::<Vec<_>>().join(",");
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            match requirement {
                Requirement::Equals(key, value) => write!(f, "{key}={value}")?,
                Requirement::NotEquals(key, value) => write!(f, "{key}!={value}")?,
                Requirement::In(key, values) => write!(f, "{key} in ({})", join(values))?,
                Requirement::NotIn(key, values) => write!(f, "{key} notin ({})", join(values))?,
                Requirement::Exists(key) => write!(f, "{key}")?,
                Requirement::NotExists(key) => write!(f, "!{key}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_operator_of_the_query_form_matches_as_the_api_server_does() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
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
            assert_eq!(parsed.matches(&web), expected, "{selector}");
        }
    }

    #[test]
    fn bad_syntax_is_named_in_the_api_servers_words() {
        for selector in ["app in (web", "app=we b!", "=x", "app,,tier", "a in web"] {
            let error = LabelSelector::parse(selector).unwrap_err();
            assert!(
                error.to_string().starts_with("unable to parse requirement"),
                "{selector}: {error}"
            );
        }
    }

    #[test]
    fn a_structured_selector_renders_as_a_query_that_parses_back_to_the_same_meaning() {
        let spec: SelectorSpec = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "mysql"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["db", "cache"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "team", "operator": "Exists"},
                {"key": "env", "operator": "NotIn", "values": ["dev"]}
            ]
        }))
        .unwrap();
        let query = spec.to_query().unwrap();
        assert_eq!(
            query,
            "app=mysql,tier in (db,cache),!legacy,team,env notin (dev)"
        );
        let parsed = LabelSelector::parse(&query).unwrap();
        assert!(parsed.matches(&labels(&[("app", "mysql"), ("tier", "db"), ("team", "a")])));
        assert!(!parsed.matches(&labels(&[("app", "mysql"), ("tier", "web"), ("team", "a")])));
        assert!(!parsed.matches(&labels(&[
            ("app", "mysql"),
            ("tier", "db"),
            ("team", "a"),
            ("legacy", "1")
        ])));
        assert_eq!(
            parsed.to_string(),
            "app=mysql,tier in (cache,db),!legacy,team,env notin (dev)"
        );
        let back = parsed.to_spec();
        assert_eq!(back.match_labels, spec.match_labels);
        assert_eq!(
            LabelSelector::parse(&back.to_query().unwrap()).unwrap(),
            parsed,
            "query → structured → query keeps the meaning"
        );
        let not_equal = LabelSelector::parse("app!=web,app=db,app=db2")
            .unwrap()
            .to_spec();
        assert_eq!(
            not_equal.match_labels.get("app").map(String::as_str),
            Some("db")
        );
        assert_eq!(not_equal.match_expressions.len(), 2);
        assert_eq!(not_equal.match_expressions[0].operator, "NotIn");
        assert_eq!(not_equal.match_expressions[1].operator, "In");
    }

    #[test]
    fn invalid_parts_of_a_structured_selector_are_named_by_path() {
        let spec: SelectorSpec = serde_json::from_value(serde_json::json!({
            "matchLabels": {"bad key!": "x", "app": "-no"},
            "matchExpressions": [{"key": "a", "operator": "Near", "values": []}]
        }))
        .unwrap();
        let mut problems = Problems::default();
        spec.check(&mut problems, "spec.selector");
        let fields: Vec<String> = problems
            .finish()
            .unwrap_err()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.selector.matchLabels.app",
                "spec.selector.matchLabels",
                "spec.selector.matchExpressions[0].operator"
            ]
        );
        assert_eq!(spec.to_query(), None);
    }
}
