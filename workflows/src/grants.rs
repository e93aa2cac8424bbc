//! Cluster grants: which namespaces of a shared cluster a user or group may back up from and
//! restore into.
//!
//! A grant (part of a cluster's spec) names a grantee and namespace names or shell-style
//! patterns (`team-*`, `db-?`, `env-[ab]`). This module owns their validation, their matching,
//! and which namespaces of a backup's selection or a restore's targets fall outside what a
//! caller is granted. Who is bound by grants at all (not the cluster's owner, not admins) is for
//! the caller of this module to decide.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::backup::spec::{BackupSpec, ClusterResources};
use crate::entity::Grantee;
use crate::restore::workflow::RestoreSpec;
use crate::validate::{MAX_NAME, Problems, check_name};

/// Namespaces of a cluster one user or group may back up from and restore into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Who: `{"user": "carol"}` or `{"group": "data-team"}`.
    pub to: Grantee,
    /// Namespace names or shell-style patterns of them (`*`, `?`, `[...]`).
    pub namespaces: Vec<String>,
}

/// Who asks: a subject and the groups its token carries.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The subject.
    pub subject: &'a str,
    /// Its groups.
    pub groups: &'a [String],
}

impl Caller<'_> {
    fn is(&self, grantee: &Grantee) -> bool {
        match grantee {
            Grantee::User(subject) => subject == self.subject,
            Grantee::Group(group) => self.groups.contains(group),
        }
    }
}

/// Why a bound caller's backup or restore is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The backup selects every namespace (none named): only named, granted ones may be used.
    NamespacesNotNamed,
    /// The backup asks for every cluster-scoped object (`cluster_resources: include`).
    ClusterResources,
    /// These namespaces are not granted (sorted, each once).
    NotGranted {
        /// The namespaces outside the caller's grants.
        namespaces: Vec<String>,
        /// Whether the caller holds no grant on the cluster at all.
        nothing_granted: bool,
    },
}

/// Characters a pattern may use besides those of a name.
const WILDCARDS: &[char] = &['*', '?', '[', ']', '!'];

/// Checks a cluster's grants, naming each invalid one under `spec.grants[i]`.
pub fn check(problems: &mut Problems, grants: &[Grant]) {
    for (index, grant) in grants.iter().enumerate() {
        let field = format!("spec.grants[{index}]");
        match &grant.to {
            Grantee::User(name) | Grantee::Group(name) if name.trim().is_empty() => {
                problems.add(format!("{field}.to"), "name the user or group granted");
            }
            _ => {}
        }
        if grant.namespaces.is_empty() {
            problems.add(
                format!("{field}.namespaces"),
                "name at least one namespace or pattern (`team-a`, `team-*`)",
            );
        }
        for (position, pattern) in grant.namespaces.iter().enumerate() {
            check_pattern(
                problems,
                &format!("{field}.namespaces[{position}]"),
                pattern,
            );
        }
    }
}

/// Checks one namespace name or pattern: a DNS-1123 label, or a shell-style pattern of one.
fn check_pattern(problems: &mut Problems, field: &str, pattern: &str) {
    if !pattern.contains(WILDCARDS) {
        check_name(problems, field, pattern);
        return;
    }
    if pattern.len() > MAX_NAME {
        problems.add(
            field,
            format!(
                "must be at most {MAX_NAME} characters, not {}",
                pattern.len()
            ),
        );
    } else if let Some(bad) = pattern.chars().find(|c| {
        !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || WILDCARDS.contains(c))
    }) {
        problems.add(
            field,
            format!(
                "`{pattern}` is not a namespace pattern: `{bad}` cannot be in a namespace name; use lower-case letters, digits, '-' and the wildcards `*`, `?`, `[...]`"
            ),
        );
    } else if let Err(err) = glob::Pattern::new(pattern) {
        problems.add(
            field,
            format!("`{pattern}` is not a valid pattern: {}", err.msg),
        );
    }
}

/// The grants of a stored cluster spec, read alone (not the rest of the spec, whose secrets may
/// be sealed). A spec whose grants cannot be read grants nothing: bound callers are refused.
pub fn of_spec(spec: &serde_json::Value) -> Vec<Grant> {
    spec.get("grants")
        .and_then(|grants| serde_json::from_value(grants.clone()).ok())
        .unwrap_or_default()
}

/// The patterns `caller` is granted, through its subject or any of its groups. Grants are
/// validated when the cluster is stored; one that does not compile matches nothing.
fn granted(grants: &[Grant], caller: Caller<'_>) -> Vec<glob::Pattern> {
    grants
        .iter()
        .filter(|grant| caller.is(&grant.to))
        .flat_map(|grant| &grant.namespaces)
        .filter_map(|pattern| glob::Pattern::new(pattern).ok())
        .collect()
}

/// Whether some grant names `caller` (as its user or one of its groups).
pub fn has_grant(grants: &[Grant], caller: Caller<'_>) -> bool {
    grants.iter().any(|grant| caller.is(&grant.to))
}

/// Whether `caller` is granted `namespace`.
pub fn grants_namespace(grants: &[Grant], caller: Caller<'_>, namespace: &str) -> bool {
    granted(grants, caller)
        .iter()
        .any(|pattern| pattern.matches(namespace))
}

/// Which of `namespaces` `caller` is not granted, sorted and each once; `None` when all are.
pub fn refused<'n>(
    grants: &[Grant],
    caller: Caller<'_>,
    namespaces: impl IntoIterator<Item = &'n str>,
) -> Option<Refusal> {
    let patterns = granted(grants, caller);
    let outside: BTreeSet<&str> = namespaces
        .into_iter()
        .filter(|namespace| !patterns.iter().any(|pattern| pattern.matches(namespace)))
        .collect();
    if outside.is_empty() {
        return None;
    }
    Some(Refusal::NotGranted {
        namespaces: outside.into_iter().map(str::to_string).collect(),
        nothing_granted: !has_grant(grants, caller),
    })
}

/// Why a bound `caller` may not start backup `spec`, if it may not: the backup must name its
/// namespaces, every one granted, and must not ask for every cluster-scoped object.
pub fn backup_refusal(grants: &[Grant], caller: Caller<'_>, spec: &BackupSpec) -> Option<Refusal> {
    if spec.namespaces.is_empty() {
        return Some(Refusal::NamespacesNotNamed);
    }
    if let Some(refusal) = refused(grants, caller, spec.namespaces.iter().map(String::as_str)) {
        return Some(refusal);
    }
    (spec.cluster_resources == ClusterResources::Include).then_some(Refusal::ClusterResources)
}

/// The namespaces restore `spec` writes into: each of the backed-up namespaces it restores
/// (its `namespaces` subset, else `held`, those the backup holds) after its namespace mapping;
/// sorted, each once.
pub fn restore_targets(spec: &RestoreSpec, held: &[String]) -> Vec<String> {
    let sources = if spec.namespaces.is_empty() {
        held
    } else {
        &spec.namespaces
    };
    let targets: BTreeSet<String> = sources
        .iter()
        .map(|namespace| {
            spec.namespace_mapping
                .get(namespace)
                .unwrap_or(namespace)
                .clone()
        })
        .collect();
    targets.into_iter().collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn grants() -> Vec<Grant> {
        serde_json::from_value(json!([
            {"to": {"group": "data-team"}, "namespaces": ["team-*", "shared"]},
            {"to": {"user": "carol"}, "namespaces": ["db-?", "env-[ab]"]},
            {"to": {"group": "platform"}, "namespaces": ["*"]},
        ]))
        .unwrap()
    }

    fn data_team() -> Vec<String> {
        vec!["data-team".to_string()]
    }

    fn problems(grants: serde_json::Value) -> Vec<(String, String)> {
        let grants: Vec<Grant> = serde_json::from_value(grants).unwrap();
        let mut problems = Problems::default();
        check(&mut problems, &grants);
        problems
            .finish()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|problem| (problem.field, problem.message))
            .collect()
    }

    #[test]
    fn names_and_patterns_of_names_are_valid_and_anything_else_is_named() {
        assert!(problems(json!([
            {"to": {"user": "u"}, "namespaces": ["team-a", "team-*", "*", "db-?", "env-[a-c]", "x-[!b]"]}
        ]))
        .is_empty());
        let found = problems(json!([
            {"to": {"user": "u"}, "namespaces": ["ok", "Team_*", "team.a", "[a", "-a"]},
            {"to": {"group": ""}, "namespaces": []},
            {"to": {"user": "u"}, "namespaces": [format!("{}*", "x".repeat(63))]},
        ]));
        let fields: Vec<&str> = found.iter().map(|(field, _)| field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.grants[0].namespaces[1]",
                "spec.grants[0].namespaces[2]",
                "spec.grants[0].namespaces[3]",
                "spec.grants[0].namespaces[4]",
                "spec.grants[1].to",
                "spec.grants[1].namespaces",
                "spec.grants[2].namespaces[0]",
            ]
        );
        assert!(found[0].1.contains("`T`"), "{found:?}");
        assert!(found[2].1.contains("not a valid pattern"), "{found:?}");
    }

    #[test]
    fn a_caller_is_granted_through_its_subject_and_its_groups() {
        let grants = grants();
        let carol = Caller {
            subject: "carol",
            groups: &data_team(),
        };
        assert_eq!(
            refused(&grants, carol, ["team-a", "shared", "db-1", "env-b"]),
            None
        );
        assert_eq!(
            refused(
                &grants,
                carol,
                ["kube-system", "team-a", "db-10", "env-c", "kube-system"]
            ),
            Some(Refusal::NotGranted {
                namespaces: vec!["db-10".into(), "env-c".into(), "kube-system".into()],
                nothing_granted: false,
            })
        );
        let erin = Caller {
            subject: "erin",
            groups: &data_team(),
        };
        assert!(
            refused(&grants, erin, ["db-1"]).is_some(),
            "a user grant is carol's only"
        );
        let platform = vec!["platform".to_string()];
        let bob = Caller {
            subject: "bob",
            groups: &platform,
        };
        assert_eq!(refused(&grants, bob, ["kube-system", "anything"]), None);
        let dave = Caller {
            subject: "dave",
            groups: &[],
        };
        assert_eq!(
            refused(&grants, dave, ["team-a"]),
            Some(Refusal::NotGranted {
                namespaces: vec!["team-a".into()],
                nothing_granted: true,
            })
        );
    }

    #[test]
    fn a_bound_backup_names_granted_namespaces_and_leaves_cluster_objects_out() {
        let grants = grants();
        let groups = data_team();
        let carol = Caller {
            subject: "carol",
            groups: &groups,
        };
        let spec = |value: serde_json::Value| {
            let mut base = json!({"cluster": "c", "location": "l"});
            base.as_object_mut()
                .unwrap()
                .extend(value.as_object().unwrap().clone());
            BackupSpec::parse(&base).unwrap()
        };
        assert_eq!(
            backup_refusal(&grants, carol, &spec(json!({"namespaces": ["team-a"]}))),
            None
        );
        assert_eq!(
            backup_refusal(
                &grants,
                carol,
                &spec(json!({"namespace_selector": {"matchLabels": {"team": "a"}}}))
            ),
            Some(Refusal::NamespacesNotNamed)
        );
        assert_eq!(
            backup_refusal(
                &grants,
                carol,
                &spec(json!({"namespaces": ["team-a"], "cluster_resources": "include"}))
            ),
            Some(Refusal::ClusterResources)
        );
        assert!(matches!(
            backup_refusal(
                &grants,
                carol,
                &spec(json!({"namespaces": ["team-a", "kube-system"]}))
            ),
            Some(Refusal::NotGranted { namespaces, .. }) if namespaces == ["kube-system"]
        ));
    }

    #[test]
    fn restore_targets_are_the_mapped_subset_or_the_mapped_held_namespaces() {
        let spec = |value: serde_json::Value| {
            let mut base = json!({"backup": "b", "location": "l", "cluster": "c"});
            base.as_object_mut()
                .unwrap()
                .extend(value.as_object().unwrap().clone());
            RestoreSpec::parse(&base).unwrap()
        };
        let held = vec!["shop".to_string(), "team-a".to_string()];
        assert_eq!(restore_targets(&spec(json!({})), &held), held);
        assert_eq!(
            restore_targets(
                &spec(json!({"namespace_mapping": {"shop": "kube-system"}})),
                &held
            ),
            ["kube-system", "team-a"]
        );
        assert_eq!(
            restore_targets(
                &spec(json!({"namespaces": ["team-a"], "namespace_mapping": {"team-a": "team-b"}})),
                &held
            ),
            ["team-b"]
        );
    }
}
