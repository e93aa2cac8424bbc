//! The conditions the namespace controller writes on a Terminating namespace while it empties
//! it (`kubectl describe namespace` shows them): which resources remain and which finalizers
//! hold them, in the real controller's words.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

/// The five deletion conditions for the objects still in the namespace (`left`, with their
/// store keys `group/plural`), keeping each condition's `lastTransitionTime` from `previous`
/// while its status holds.
pub fn deletion_conditions(previous: &Value, left: &[(Arc<str>, Arc<Value>)], now: &str) -> Value {
    let mut by_resource: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_finalizer: BTreeMap<String, usize> = BTreeMap::new();
    for (key, object) in left {
        let key: &str = key;
        let (group, plural) = key.split_once('/').unwrap_or(("", key));
        *by_resource.entry(format!("{plural}.{group}")).or_default() += 1;
        let finalizers = object
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        for finalizer in finalizers {
            *by_finalizer.entry(finalizer.to_string()).or_default() += 1;
        }
    }
    let content = (!by_resource.is_empty()).then(|| {
        let listed: Vec<String> = by_resource
            .iter()
            .map(|(resource, count)| format!("{resource} has {count} resource instances"))
            .collect();
        (
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", listed.join(", ")),
        )
    });
    let finalizers = (!by_finalizer.is_empty()).then(|| {
        let listed: Vec<String> = by_finalizer
            .iter()
            .map(|(finalizer, count)| format!("{finalizer} in {count} resource instances"))
            .collect();
        (
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                listed.join(", ")
            ),
        )
    });
    let condition = |kind: &str, problem: Option<(&str, String)>, reason: &str, message: &str| {
        let (status, reason, message) = match problem {
            Some((reason, message)) => ("True", reason.to_string(), message),
            None => ("False", reason.to_string(), message.to_string()),
        };
        let kept = previous
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == kind && c["status"] == status)
            .and_then(|c| c["lastTransitionTime"].as_str())
            .unwrap_or(now);
        json!({"type": kind, "status": status, "lastTransitionTime": kept,
               "reason": reason, "message": message})
    };
    json!([
        condition(
            "NamespaceDeletionDiscoveryFailure",
            None,
            "ResourcesDiscovered",
            "All resources successfully discovered"
        ),
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            None,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed"
        ),
        condition(
            "NamespaceDeletionContentFailure",
            None,
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization"
        ),
        condition(
            "NamespaceContentRemaining",
            content,
            "ContentRemoved",
            "All content successfully removed"
        ),
        condition(
            "NamespaceFinalizersRemaining",
            finalizers,
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished"
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_content_and_finalizers_are_counted_in_the_real_words() {
        let held = json!({"metadata": {"name": "a", "finalizers": ["example.com/hold"]}});
        let left = vec![
            (Arc::from("/configmaps"), Arc::new(held.clone())),
            (Arc::from("/configmaps"), Arc::new(held)),
            (
                Arc::from("apps/deployments"),
                Arc::new(json!({"metadata": {"name": "d"}})),
            ),
        ];
        let conditions = deletion_conditions(&Value::Null, &left, "2026-01-01T00:00:00Z");
        assert_eq!(
            conditions[3]["message"],
            "Some resources are remaining: configmaps. has 2 resource instances, \
             deployments.apps has 1 resource instances"
        );
        assert_eq!(
            conditions[4]["message"],
            "Some content in the namespace has finalizers remaining: example.com/hold in 2 \
             resource instances"
        );
        let later = deletion_conditions(&conditions, &left, "2026-01-01T00:00:09Z");
        assert_eq!(later, conditions, "unchanged conditions keep their times");
        let empty = deletion_conditions(&conditions, &[], "2026-01-01T00:00:09Z");
        assert_eq!(empty[4]["status"], "False");
        assert_eq!(empty[4]["reason"], "ContentHasNoFinalizers");
        assert_eq!(empty[4]["lastTransitionTime"], "2026-01-01T00:00:09Z");
    }
}
