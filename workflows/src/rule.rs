//! Rules: commands run in an application's pods before or after a backup (quiesce a database,
//! flush, freeze a filesystem), one rule usable by many backups.
//!
//! This module owns a rule's spec and its validation; running it through pods/exec belongs to the
//! backup workflow.

use serde::{Deserialize, Serialize};

use crate::labels::SelectorSpec;
use crate::validate::{Problems, check_name};

/// The longest an action may run.
pub const MAX_TIMEOUT_SECONDS: u64 = 24 * 3600;

/// Which pods a rule runs in: a label selector in the Kubernetes structured form.
pub type PodSelector = SelectorSpec;

/// In how many of the matching pods the actions run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunIn {
    /// Every matching pod.
    #[default]
    All,
    /// One matching pod (the first by name).
    One,
}

/// What a failed action does to the backup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The backup fails.
    #[default]
    Fail,
    /// The backup goes on; the failure is recorded.
    Continue,
}

/// One command of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// The command and its arguments, run without a shell (use `["sh", "-c", "..."]` for one).
    pub command: Vec<String>,
    /// Keeps running while the backup goes on, until the post-rule ends it (e.g. a session
    /// holding `FLUSH TABLES WITH READ LOCK`). Only in rules used before a backup.
    #[serde(default)]
    pub background: bool,
    /// Seconds the action may take (for a background action: to start).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// What a failure does.
    #[serde(default)]
    pub on_error: OnError,
}

fn default_timeout() -> u64 {
    60
}

/// A rule's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The pods it runs in.
    pub pod_selector: PodSelector,
    /// The container it runs in; the pod's first container when absent.
    #[serde(default)]
    pub container: Option<String>,
    /// In all matching pods or one.
    #[serde(default)]
    pub run_in: RunIn,
    /// The commands, in order.
    pub actions: Vec<Action>,
}

impl RuleSpec {
    /// Reads and checks a spec, naming every invalid field (paths under `spec`).
    pub fn parse(spec: &serde_json::Value) -> Result<Self, Vec<crate::validate::FieldError>> {
        let rule: Self = serde_json::from_value(spec.clone()).map_err(|err| {
            vec![crate::validate::FieldError {
                field: "spec".into(),
                message: err.to_string(),
            }]
        })?;
        let mut problems = Problems::default();
        if rule.pod_selector.is_empty() {
            problems.add(
                "spec.pod_selector",
                "must select something: an empty selector would run the rule in every pod",
            );
        }
        rule.pod_selector.check(&mut problems, "spec.pod_selector");
        if let Some(container) = &rule.container {
            check_name(&mut problems, "spec.container", container);
        }
        if rule.actions.is_empty() {
            problems.add("spec.actions", "needs at least one action");
        }
        for (index, action) in rule.actions.iter().enumerate() {
            let at = format!("spec.actions[{index}]");
            if action
                .command
                .first()
                .is_none_or(|program| program.trim().is_empty())
            {
                problems.add(format!("{at}.command"), "needs a program to run");
            }
            if action.timeout_seconds == 0 || action.timeout_seconds > MAX_TIMEOUT_SECONDS {
                problems.add(
                    format!("{at}.timeout_seconds"),
                    format!(
                        "must be between 1 and {MAX_TIMEOUT_SECONDS}, not {}",
                        action.timeout_seconds
                    ),
                );
            }
        }
        problems.finish().map(|()| rule)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn fields(spec: serde_json::Value) -> Vec<String> {
        RuleSpec::parse(&spec)
            .unwrap_err()
            .into_iter()
            .map(|problem| problem.field)
            .collect()
    }

    #[test]
    fn a_mysql_quiesce_rule_is_read_with_defaults() {
        let rule = RuleSpec::parse(&json!({
            "pod_selector": {"matchLabels": {"app": "mysql"},
                             "matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]},
            "container": "mysql",
            "actions": [
                {"command": ["mysql", "-e", "FLUSH TABLES WITH READ LOCK; SELECT SLEEP(600)"], "background": true},
                {"command": ["sync"], "on_error": "continue", "timeout_seconds": 5}
            ]
        }))
        .unwrap();
        assert_eq!(rule.run_in, RunIn::All);
        assert!(rule.actions[0].background);
        assert_eq!(rule.actions[0].timeout_seconds, 60);
        assert_eq!(rule.actions[1].on_error, OnError::Continue);
    }

    #[test]
    fn each_invalid_field_is_named() {
        assert_eq!(
            fields(json!({"pod_selector": {}, "actions": []})),
            ["spec.pod_selector", "spec.actions"]
        );
        assert_eq!(
            fields(json!({
                "pod_selector": {"matchLabels": {"bad key!": "x", "app": "-no"},
                                 "matchExpressions": [
                                    {"key": "a", "operator": "In"},
                                    {"key": "b", "operator": "Exists", "values": ["x"]},
                                    {"key": "c", "operator": "Near", "values": ["x"]}]},
                "container": "Main",
                "actions": [{"command": []}, {"command": ["x"], "timeout_seconds": 0}]
            })),
            [
                "spec.pod_selector.matchLabels.app",
                "spec.pod_selector.matchLabels",
                "spec.pod_selector.matchExpressions[0].values",
                "spec.pod_selector.matchExpressions[1].values",
                "spec.pod_selector.matchExpressions[2].operator",
                "spec.container",
                "spec.actions[0].command",
                "spec.actions[1].timeout_seconds",
            ]
        );
        // Unknown fields and wrong types are named by serde.
        let problems = RuleSpec::parse(
            &json!({"pod_selector": {"matchLabels": {"a": "b"}}, "actions": [], "retries": 3}),
        )
        .unwrap_err();
        assert_eq!(problems[0].field, "spec");
        assert!(
            problems[0].message.contains("retries"),
            "{}",
            problems[0].message
        );
    }
}
