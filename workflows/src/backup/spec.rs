//! What a backup protects: the spec users write (cluster, location, namespaces, label selectors,
//! resource types, rules, volume handling), its validation with every invalid field named, and the
//! [`Selection`] the collect step works from.

use serde::{Deserialize, Serialize};

use crate::labels::SelectorSpec;
use crate::validate::{FieldError, Problems, check_name};

/// Which cluster-scoped objects a backup holds besides those its namespaced objects need.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterResources {
    /// All of them when the backup is of every namespace without a label selector; otherwise only
    /// those the selected objects need (PVs of PVCs, CRDs of custom resources, storage classes).
    #[default]
    Auto,
    /// All cluster-scoped objects (filtered by the label selector and resource types).
    Include,
    /// Only those the selected objects need.
    Needed,
}

/// How volume data is copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeMode {
    /// A CSI snapshot where the PVC's driver has a snapshot class, else a copy of the live PVC.
    #[default]
    Snapshot,
    /// Always a file-level copy of the live PVC.
    Copy,
    /// Objects only, no volume data.
    Skip,
}

/// A backup's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSpec {
    /// The cluster (entity id).
    pub cluster: String,
    /// The backup location (entity id).
    pub location: String,
    /// Namespaces by name; every namespace when empty (narrowed by `namespace_selector`).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Namespaces by their labels.
    #[serde(default)]
    pub namespace_selector: Option<SelectorSpec>,
    /// Objects by their labels.
    #[serde(default)]
    pub selector: Option<SelectorSpec>,
    /// Resource types to hold (`deployments`, `deployments.apps`, `Deployment`); all when empty.
    #[serde(default)]
    pub include_resources: Vec<String>,
    /// Resource types to leave out, in the same forms.
    #[serde(default)]
    pub exclude_resources: Vec<String>,
    /// Which cluster-scoped objects to hold.
    #[serde(default)]
    pub cluster_resources: ClusterResources,
    /// Rules run before the backup (entity ids), in order.
    #[serde(default)]
    pub pre_rules: Vec<String>,
    /// Rules run once the point-in-time copies exist (entity ids), in order.
    #[serde(default)]
    pub post_rules: Vec<String>,
    /// How volume data is copied.
    #[serde(default)]
    pub volumes: VolumeMode,
}

/// What the collect step selects, from a [`BackupSpec`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// Namespaces by name; all when empty.
    pub namespaces: Vec<String>,
    /// Namespaces by label, as a query (`None`: no narrowing).
    pub namespace_selector: Option<String>,
    /// Objects by label, as a query.
    pub selector: Option<String>,
    /// Resource types to hold; all when empty.
    pub include_resources: Vec<String>,
    /// Resource types to leave out.
    pub exclude_resources: Vec<String>,
    /// Which cluster-scoped objects to hold.
    pub cluster_resources: ClusterResources,
}

/// Whether `entry` names a resource type: a plural (`deployments`), a plural and group
/// (`deployments.apps`) or a kind (`Deployment`).
fn is_resource_name(entry: &str) -> bool {
    !entry.is_empty()
        && entry.len() <= 253
        && entry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
        && !entry.starts_with('.')
        && !entry.ends_with('.')
}

fn selector_query(
    problems: &mut Problems,
    field: &str,
    selector: &Option<SelectorSpec>,
) -> Option<String> {
    let selector = selector.as_ref()?;
    selector.check(problems, field);
    selector.to_query().filter(|query| !query.is_empty())
}

impl BackupSpec {
    /// Reads and checks a spec, naming every invalid field (paths under `spec`).
    pub fn parse(spec: &serde_json::Value) -> Result<Self, Vec<FieldError>> {
        let backup: Self = serde_json::from_value(spec.clone()).map_err(|err| {
            vec![FieldError {
                field: "spec".into(),
                message: err.to_string(),
            }]
        })?;
        let mut problems = Problems::default();
        backup.check(&mut problems);
        problems.finish().map(|()| backup)
    }

    fn check(&self, problems: &mut Problems) {
        if self.cluster.trim().is_empty() {
            problems.add("spec.cluster", "must name the cluster to back up");
        }
        if self.location.trim().is_empty() {
            problems.add("spec.location", "must name the location to write to");
        }
        for (index, namespace) in self.namespaces.iter().enumerate() {
            check_name(problems, &format!("spec.namespaces[{index}]"), namespace);
        }
        for (field, entries) in [
            ("spec.include_resources", &self.include_resources),
            ("spec.exclude_resources", &self.exclude_resources),
        ] {
            for (index, entry) in entries.iter().enumerate() {
                if !is_resource_name(entry) {
                    problems.add(
                        format!("{field}[{index}]"),
                        format!(
                            "`{entry}` is not a resource type: use a plural (`deployments`), plural.group (`deployments.apps`) or a kind (`Deployment`)"
                        ),
                    );
                }
            }
        }
        for (field, rules) in [
            ("spec.pre_rules", &self.pre_rules),
            ("spec.post_rules", &self.post_rules),
        ] {
            for (index, rule) in rules.iter().enumerate() {
                if rule.trim().is_empty() {
                    problems.add(format!("{field}[{index}]"), "must name a rule");
                }
            }
        }
        let mut scratch = Problems::default();
        let _ = self.selection_checked(&mut scratch);
        if let Err(found) = scratch.finish() {
            for problem in found {
                problems.add(problem.field, problem.message);
            }
        }
    }

    fn selection_checked(&self, problems: &mut Problems) -> Selection {
        Selection {
            namespaces: self.namespaces.clone(),
            namespace_selector: selector_query(
                problems,
                "spec.namespace_selector",
                &self.namespace_selector,
            ),
            selector: selector_query(problems, "spec.selector", &self.selector),
            include_resources: self.include_resources.clone(),
            exclude_resources: self.exclude_resources.clone(),
            cluster_resources: self.cluster_resources,
        }
    }

    /// What the collect step selects.
    pub fn selection(&self) -> Selection {
        self.selection_checked(&mut Problems::default())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn a_label_selected_backup_reads_with_defaults_and_renders_its_query() {
        let spec = BackupSpec::parse(&json!({
            "cluster": "c1", "location": "l1",
            "namespaces": ["wordpress"],
            "selector": {"matchLabels": {"app": "mysql"}},
            "exclude_resources": ["events.events.k8s.io", "Secret"]
        }))
        .unwrap();
        assert_eq!(spec.volumes, VolumeMode::Snapshot);
        let selection = spec.selection();
        assert_eq!(selection.selector.as_deref(), Some("app=mysql"));
        assert_eq!(selection.namespace_selector, None);
        assert_eq!(selection.cluster_resources, ClusterResources::Auto);
    }

    #[test]
    fn each_invalid_field_is_named() {
        let problems = BackupSpec::parse(&json!({
            "cluster": "", "location": "l1",
            "namespaces": ["Bad_NS"],
            "selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]},
            "include_resources": ["deploy ments"],
            "pre_rules": [""]
        }))
        .unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.cluster",
                "spec.namespaces[0]",
                "spec.include_resources[0]",
                "spec.pre_rules[0]",
                "spec.selector.matchExpressions[0].operator"
            ]
        );
        let unknown =
            BackupSpec::parse(&json!({"cluster": "c", "location": "l", "ttl": 3})).unwrap_err();
        assert_eq!(unknown[0].field, "spec");
        assert!(unknown[0].message.contains("ttl"), "{}", unknown[0].message);
    }
}
