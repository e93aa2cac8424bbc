//! What the real API server's admission and defaulting do to an object at creation, before it
//! is stored: the ServiceAccount admission plugin (pods get `spec.serviceAccountName`), the
//! DefaultStorageClass plugin (claims without a class get the default one), the Job
//! strategy's generated selector and labels, and the CronJob defaults.

use serde_json::{Value, json};

use super::super::store::Store;
use super::objects::{STORAGE_CLASSES, meta, text};

/// The annotation that marks the default StorageClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// The annotation older manifests use instead of `spec.storageClassName`.
pub const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// A pod without `spec.serviceAccountName` runs as the namespace's `default` ServiceAccount.
pub fn default_service_account(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let account = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .or_else(|| {
            spec.get("serviceAccount")
                .and_then(Value::as_str)
                .filter(|name| !name.is_empty())
        })
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), json!(account));
    spec.insert("serviceAccount".into(), json!(account));
}

/// A claim that names no class (neither `spec.storageClassName` nor the beta annotation) and no
/// volume gets the default StorageClass; with several defaults, the newest wins.
pub fn default_storage_class(store: &Store, claim: &mut Value) {
    if claim.pointer("/spec/storageClassName").is_some()
        || claim.pointer("/spec/volumeName").is_some()
        || !text(
            claim,
            &format!("/metadata/annotations/{}", escape(BETA_CLASS_ANNOTATION)),
        )
        .is_empty()
    {
        return;
    }
    let defaults = store
        .list(&STORAGE_CLASSES.key(), None, None, 0, |class| {
            text(
                class,
                &format!("/metadata/annotations/{}", escape(DEFAULT_CLASS_ANNOTATION)),
            ) == "true"
        })
        .items;
    let newest = defaults.iter().max_by(|a, b| {
        meta(a, "creationTimestamp")
            .cmp(meta(b, "creationTimestamp"))
            .then_with(|| meta(b, "name").cmp(meta(a, "name")))
    });
    if let (Some(class), Some(spec)) =
        (newest, claim.get_mut("spec").and_then(Value::as_object_mut))
    {
        spec.insert("storageClassName".into(), json!(meta(class, "name")));
    }
}

/// The finalizer the PVC protection admission plugin puts on every claim.
pub const CLAIM_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// The finalizer the PV protection admission plugin puts on every volume.
pub const VOLUME_PROTECTION: &str = "kubernetes.io/pv-protection";

/// Adds `finalizer` to the object's finalizers unless it is there.
pub fn protect(object: &mut Value, finalizer: &str) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let finalizers = metadata.entry("finalizers").or_insert_with(|| json!([]));
    if let Value::Array(list) = finalizers
        && !list.iter().any(|f| f.as_str() == Some(finalizer))
    {
        list.push(json!(finalizer));
    }
}

/// A claim's `dataSource` and `dataSourceRef` mirror each other when only one is set (and the
/// ref names no other namespace), as the API server does.
pub fn mirror_data_source(claim: &mut Value) {
    let Some(spec) = claim.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let source = spec.get("dataSource").filter(|s| s.is_object()).cloned();
    let reference = spec.get("dataSourceRef").filter(|s| s.is_object()).cloned();
    match (source, reference) {
        (Some(source), None) => {
            spec.insert("dataSourceRef".into(), source);
        }
        (None, Some(reference)) if reference.get("namespace").is_none() => {
            spec.insert("dataSource".into(), reference);
        }
        _ => {}
    }
}

/// A JSON pointer segment for a key holding `/` (`~1`) or `~` (`~0`).
pub fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The labels a Job's pods carry, naming the Job and its uid.
pub fn job_labels(name: &str, uid: &str) -> [(&'static str, String); 4] {
    [
        ("batch.kubernetes.io/controller-uid", uid.to_string()),
        ("batch.kubernetes.io/job-name", name.to_string()),
        ("controller-uid", uid.to_string()),
        ("job-name", name.to_string()),
    ]
}

/// A CronJob gets the API server's defaults: `concurrencyPolicy: Allow`, `suspend: false`,
/// and history limits of 3 succeeded and 1 failed Job.
pub fn default_cron_job(cron_job: &mut Value) {
    let Some(spec) = cron_job.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for (field, value) in [
        ("concurrencyPolicy", json!("Allow")),
        ("suspend", json!(false)),
        ("successfulJobsHistoryLimit", json!(3)),
        ("failedJobsHistoryLimit", json!(1)),
    ] {
        spec.entry(field).or_insert(value);
    }
}

/// A Job's defaults and, unless `spec.manualSelector`, its generated selector
/// (`batch.kubernetes.io/controller-uid`) and the matching template labels; a Job without
/// labels takes its template's.
pub fn default_job(job: &mut Value) {
    let name = meta(job, "name").to_string();
    let uid = meta(job, "uid").to_string();
    let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    let completions_unset = spec.get("completions").is_none_or(Value::is_null);
    let parallelism_unset = spec.get("parallelism").is_none_or(Value::is_null);
    if completions_unset && parallelism_unset {
        spec.insert("completions".into(), json!(1));
    }
    if parallelism_unset {
        spec.insert("parallelism".into(), json!(1));
    }
    for (field, value) in [
        ("backoffLimit", json!(6)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("podReplacementPolicy", json!("TerminatingOrFailed")),
    ] {
        spec.entry(field).or_insert(value);
    }
    if manual {
        return;
    }
    spec.insert(
        "selector".into(),
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
    let template = spec.entry("template").or_insert_with(|| json!({}));
    if !template.get("metadata").is_some_and(Value::is_object) {
        template["metadata"] = json!({});
    }
    let labels = template["metadata"]
        .as_object_mut()
        .map(|m| m.entry("labels").or_insert_with(|| json!({})));
    if let Some(Value::Object(labels)) = labels {
        for (key, value) in job_labels(&name, &uid) {
            labels.insert(key.to_string(), json!(value));
        }
    }
    let template_labels = template.pointer("/metadata/labels").cloned();
    let own_labels = job.pointer("/metadata/labels");
    if own_labels.is_none_or(|l| l.as_object().is_none_or(serde_json::Map::is_empty))
        && let Some(labels) = template_labels
    {
        job["metadata"]["labels"] = labels;
    }
}

/// A ReplicationController without a selector selects its template's labels; without labels
/// it takes them from the template too; replicas default to 1.
pub fn default_replication_controller(controller: &mut Value) {
    let template_labels = controller
        .pointer("/spec/template/metadata/labels")
        .cloned();
    let Some(spec) = controller.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.entry("replicas").or_insert(json!(1));
    let Some(labels) = template_labels else {
        return;
    };
    spec.entry("selector").or_insert_with(|| labels.clone());
    if controller
        .pointer("/metadata/labels")
        .is_none_or(|l| l.as_object().is_none_or(serde_json::Map::is_empty))
    {
        controller["metadata"]["labels"] = labels;
    }
}

/// The defaults the API server gives Deployments, StatefulSets and DaemonSets (replicas,
/// update strategies, history limits), which `kubectl rollout status` reads.
pub fn default_workload(plural: &str, object: &mut Value) {
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let defaults = match plural {
        "deployments" => vec![
            ("replicas", json!(1)),
            (
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
            ),
            ("revisionHistoryLimit", json!(10)),
            ("progressDeadlineSeconds", json!(600)),
        ],
        "statefulsets" => vec![
            ("replicas", json!(1)),
            ("podManagementPolicy", json!("OrderedReady")),
            (
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            ),
            ("revisionHistoryLimit", json!(10)),
            (
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            ),
        ],
        "daemonsets" => vec![
            (
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
            ),
            ("revisionHistoryLimit", json!(10)),
        ],
        _ => return,
    };
    for (field, value) in defaults {
        spec.entry(field).or_insert(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_gets_its_selector_labels_and_defaults() {
        let mut job = json!({
            "metadata": {"name": "backup", "uid": "u-1"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": []}}},
        });
        default_job(&mut job);
        assert_eq!(
            job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u-1"
        );
        let labels = &job["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["job-name"], "backup");
        assert_eq!(labels["controller-uid"], "u-1");
        assert_eq!(
            job["metadata"]["labels"]["batch.kubernetes.io/job-name"],
            "backup"
        );
        assert_eq!(job["spec"]["backoffLimit"], 6);
        assert_eq!(job["spec"]["completions"], 1);
    }

    #[test]
    fn a_claims_data_source_and_ref_mirror_each_other() {
        let source =
            json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "s"});
        let mut claim = json!({"spec": {"dataSource": source.clone()}});
        mirror_data_source(&mut claim);
        assert_eq!(claim["spec"]["dataSourceRef"], source);
        let mut claim = json!({"spec": {"dataSourceRef": source.clone()}});
        mirror_data_source(&mut claim);
        assert_eq!(claim["spec"]["dataSource"], source);
    }

    #[test]
    fn a_pod_runs_as_the_default_service_account_unless_it_names_one() {
        let mut pod = json!({"spec": {"containers": []}});
        default_service_account(&mut pod);
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        let mut named = json!({"spec": {"serviceAccountName": "mover"}});
        default_service_account(&mut named);
        assert_eq!(named["spec"]["serviceAccountName"], "mover");
    }
}
