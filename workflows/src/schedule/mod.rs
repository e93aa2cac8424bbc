//! Backup schedules: a backup spec made again and again at the times a schedule policy names,
//! keeping the copies the policy says.
//!
//! This module owns the schedule's spec and its validation; [`workflow`] owns the durable tick
//! workflow that waits for each run, starts the backup and applies retention, and [`ticking`]
//! keeps every schedule's chain of ticks going.

mod ticking;
pub mod workflow;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::backup::spec::BackupSpec;
use crate::validate::{FieldError, Problems};

pub use ticking::{TickingError, ensure_all_ticking, ensure_ticking, run_scheduler};
pub use workflow::{SCHEDULE_WORKFLOW, TickInput, schedule_workflow};

/// What happens to a schedule's backups when the schedule is deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reclaim {
    /// They stay, until deleted by hand.
    #[default]
    Retain,
    /// They are deleted with it (their data, then the chunks no other backup uses).
    Delete,
}

/// A backup schedule's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupScheduleSpec {
    /// The schedule policy (entity id): when runs happen and what is kept.
    pub policy: String,
    /// What each run backs up, and where to (as a backup's spec).
    pub backup: BackupSpec,
    /// Labels given to every backup the schedule makes.
    #[serde(default)]
    pub backup_labels: BTreeMap<String, String>,
    /// What happens to its backups when the schedule is deleted.
    #[serde(default)]
    pub reclaim: Reclaim,
    /// While set, no run starts; resuming waits for the next time the policy names.
    #[serde(default)]
    pub suspended: bool,
}

impl BackupScheduleSpec {
    /// Reads and checks a spec, naming every invalid field (paths under `spec`). Whether the
    /// entities it names exist, and may be used, is for the caller to check.
    pub fn parse(spec: &serde_json::Value) -> Result<Self, Vec<FieldError>> {
        let schedule: Self = serde_json::from_value(spec.clone()).map_err(|err| {
            vec![FieldError {
                field: "spec".into(),
                message: err.to_string(),
            }]
        })?;
        let mut problems = Problems::default();
        if schedule.policy.trim().is_empty() {
            problems.add("spec.policy", "must name the schedule policy to follow");
        }
        if let Err(backup_problems) = BackupSpec::parse(&spec["backup"]) {
            for problem in backup_problems {
                let field = match problem.field.strip_prefix("spec") {
                    Some(rest) => format!("spec.backup{rest}"),
                    None => format!("spec.backup.{}", problem.field),
                };
                problems.add(field, problem.message);
            }
        }
        for key in schedule.backup_labels.keys() {
            if key.is_empty() || key.len() > 63 {
                problems.add(
                    format!("spec.backup_labels.{key}"),
                    "label keys are 1 to 63 characters",
                );
            }
        }
        problems.finish().map(|()| schedule)
    }

    /// The entity ids it names, each with the field that names it: the policy, the cluster, the
    /// location and the rules.
    pub fn references(&self) -> Vec<(crate::entity::Kind, String, &str)> {
        use crate::entity::Kind;
        let mut named = vec![
            (
                Kind::SchedulePolicy,
                "spec.policy".to_string(),
                self.policy.as_str(),
            ),
            (
                Kind::Cluster,
                "spec.backup.cluster".to_string(),
                self.backup.cluster.as_str(),
            ),
            (
                Kind::Location,
                "spec.backup.location".to_string(),
                self.backup.location.as_str(),
            ),
        ];
        for (field, rules) in [
            ("spec.backup.pre_rules", &self.backup.pre_rules),
            ("spec.backup.post_rules", &self.backup.post_rules),
        ] {
            for (index, rule) in rules.iter().enumerate() {
                named.push((Kind::Rule, format!("{field}[{index}]"), rule.as_str()));
            }
        }
        named
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn a_valid_spec_reads_with_defaults() {
        let spec = BackupScheduleSpec::parse(&json!({
            "policy": "p1",
            "backup": {"cluster": "c1", "location": "l1", "namespaces": ["shop"]},
        }))
        .unwrap();
        assert_eq!(spec.reclaim, Reclaim::Retain);
        assert!(!spec.suspended);
        assert_eq!(spec.backup.namespaces, vec!["shop".to_string()]);
        assert_eq!(spec.references().len(), 3);
    }

    #[test]
    fn problems_name_fields_under_spec_backup() {
        let problems = BackupScheduleSpec::parse(&json!({
            "policy": "",
            "backup": {"cluster": "", "location": "l1", "namespaces": ["Not_A_Name"]},
        }))
        .unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"spec.policy"), "{fields:?}");
        assert!(fields.contains(&"spec.backup.cluster"), "{fields:?}");
        assert!(fields.contains(&"spec.backup.namespaces[0]"), "{fields:?}");
    }

    #[test]
    fn unknown_fields_and_bad_reclaim_are_refused() {
        for spec in [
            json!({"policy": "p", "backup": {"cluster": "c", "location": "l"}, "every": 5}),
            json!({"policy": "p", "backup": {"cluster": "c", "location": "l"}, "reclaim": "keep"}),
        ] {
            let problems = BackupScheduleSpec::parse(&spec).unwrap_err();
            assert_eq!(problems[0].field, "spec", "{problems:?}");
        }
    }
}
