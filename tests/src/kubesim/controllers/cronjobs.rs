//! CronJobs, run on demand: kubesim keeps no clock of schedules, so a test (or the `kubesim`
//! library's user) says when a schedule time comes ([`run`]), and the CronJob controller's work
//! for that time happens: with the CronJob not suspended and its `concurrencyPolicy` allowing it
//! (Forbid: no active Job; Replace: the active ones are deleted first), the Job
//! `<cronjob>-<scheduled time in minutes since the epoch>` is created from
//! `spec.jobTemplate` (its labels, its annotations plus
//! `batch.kubernetes.io/cronjob-scheduled-timestamp`, its spec), controlled by the CronJob
//! (ownerReference with `controller` and `blockOwnerDeletion`), and the CronJob's status gets
//! `lastScheduleTime` and the Job in `active`.
//!
//! Whenever a Job of a CronJob changes, [`reconcile`] keeps `active` to the unfinished Jobs, sets
//! `lastSuccessfulTime` from the latest completion, and deletes finished Jobs beyond
//! `successfulJobsHistoryLimit` and `failedJobsHistoryLimit`, oldest first.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::super::errors::ApiError;
use super::objects::{
    CRON_JOBS, JOBS, Objects, controller_reference, has_true_condition, int, meta, text,
};
use super::report;

/// The annotation holding the schedule time a Job was created for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// How often a status write is retried when another writer got there first.
const STATUS_ATTEMPTS: usize = 5;

/// Why a schedule time started no Job.
#[derive(Debug, thiserror::Error)]
pub enum CronJobRunError {
    /// The CronJob is suspended (`spec.suspend: true`).
    #[error("cronjob {0} is suspended")]
    Suspended(String),
    /// `concurrencyPolicy: Forbid` and a Job of the CronJob is still active.
    #[error(
        "cronjob {0}: not starting job because prior execution is running and concurrency \
         policy is Forbid"
    )]
    AlreadyActive(String),
    /// Reading or writing an object failed: the CronJob does not exist, the Job of that
    /// schedule time exists already, ...
    #[error(transparent)]
    Api(#[from] ApiError),
}

fn is_finished(job: &Value) -> bool {
    let conditions = job.pointer("/status/conditions").unwrap_or(&Value::Null);
    has_true_condition(conditions, "Complete") || has_true_condition(conditions, "Failed")
}

/// Runs the CronJob `name` for the schedule time `scheduled`; answers the Job it created.
pub fn run(
    objects: &Objects<'_>,
    namespace: &str,
    name: &str,
    scheduled: DateTime<Utc>,
) -> Result<Arc<Value>, CronJobRunError> {
    let resource = objects.resource(&CRON_JOBS)?;
    let cron_job = objects
        .get(&CRON_JOBS, namespace, name)
        .ok_or_else(|| ApiError::not_found(&resource.group, &resource.plural, name))?;
    if cron_job.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
        return Err(CronJobRunError::Suspended(name.to_string()));
    }
    let active: Vec<Arc<Value>> = objects
        .owned(&JOBS, namespace, meta(&cron_job, "uid"))
        .into_iter()
        .filter(|job| !is_finished(job))
        .collect();
    match text(&cron_job, "/spec/concurrencyPolicy") {
        "Forbid" if !active.is_empty() => {
            return Err(CronJobRunError::AlreadyActive(name.to_string()));
        }
        "Replace" => {
            for job in &active {
                objects.delete(&JOBS, namespace, meta(job, "name"))?;
            }
        }
        _ => {}
    }
    let template = cron_job
        .pointer("/spec/jobTemplate")
        .cloned()
        .unwrap_or_default();
    let mut annotations = template
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let scheduled_text = scheduled.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), json!(scheduled_text));
    let mut metadata = json!({
        "name": format!("{name}-{}", scheduled.timestamp().div_euclid(60)),
        "namespace": namespace,
        "annotations": annotations,
        "ownerReferences": [controller_reference(&cron_job)],
    });
    if let Some(labels) = template.pointer("/metadata/labels") {
        metadata["labels"] = labels.clone();
    }
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    });
    let job = objects.create(&JOBS, Some(namespace), job)?;
    write_status(objects, namespace, name, Some(&scheduled_text))?;
    Ok(job)
}

/// Keeps a CronJob's status and Job history in line with its Jobs.
pub fn reconcile(objects: &Objects<'_>, namespace: &str, name: &str) {
    report(
        "writing a CronJob's status",
        name,
        write_status(objects, namespace, name, None),
    );
    let Some(cron_job) = objects.get(&CRON_JOBS, namespace, name) else {
        return;
    };
    let mut finished: Vec<Arc<Value>> = objects
        .owned(&JOBS, namespace, meta(&cron_job, "uid"))
        .into_iter()
        .filter(|job| is_finished(job))
        .collect();
    finished.sort_by(|a, b| {
        text(a, "/status/startTime")
            .cmp(text(b, "/status/startTime"))
            .then_with(|| meta(a, "creationTimestamp").cmp(meta(b, "creationTimestamp")))
            .then_with(|| meta(a, "name").cmp(meta(b, "name")))
    });
    let (succeeded, failed): (Vec<_>, Vec<_>) = finished.iter().partition(|job| {
        has_true_condition(
            job.pointer("/status/conditions").unwrap_or(&Value::Null),
            "Complete",
        )
    });
    for (jobs, limit) in [
        (
            succeeded,
            int(&cron_job, "/spec/successfulJobsHistoryLimit", 3),
        ),
        (failed, int(&cron_job, "/spec/failedJobsHistoryLimit", 1)),
    ] {
        let surplus = jobs
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        for job in jobs.into_iter().take(surplus) {
            report(
                "deleting a CronJob's old Job",
                meta(job, "name"),
                objects.delete(&JOBS, namespace, meta(job, "name")),
            );
        }
    }
}

/// Writes `active` (the unfinished Jobs), `lastSuccessfulTime` and, when given, a new
/// `lastScheduleTime`, retrying when the CronJob changed under the write.
fn write_status(
    objects: &Objects<'_>,
    namespace: &str,
    name: &str,
    scheduled: Option<&str>,
) -> Result<(), ApiError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(cron_job) = objects.get(&CRON_JOBS, namespace, name) else {
            return Ok(());
        };
        let jobs = objects.owned(&JOBS, namespace, meta(&cron_job, "uid"));
        let mut status = cron_job.get("status").cloned().unwrap_or_else(|| json!({}));
        if !status.is_object() {
            status = json!({});
        }
        let active: Vec<Value> = jobs
            .iter()
            .filter(|job| !is_finished(job))
            .map(|job| {
                json!({
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": meta(job, "name"),
                    "namespace": namespace,
                    "uid": meta(job, "uid"),
                    "resourceVersion": meta(job, "resourceVersion"),
                })
            })
            .collect();
        if !active.is_empty() {
            status["active"] = json!(active);
        } else if let Some(map) = status.as_object_mut() {
            map.remove("active");
        }
        let completed = jobs
            .iter()
            .filter(|job| {
                has_true_condition(
                    job.pointer("/status/conditions").unwrap_or(&Value::Null),
                    "Complete",
                )
            })
            .map(|job| text(job, "/status/completionTime"))
            .chain(std::iter::once(text(&status, "/lastSuccessfulTime")))
            .max()
            .unwrap_or_default()
            .to_string();
        if !completed.is_empty() {
            status["lastSuccessfulTime"] = json!(completed);
        }
        if let Some(scheduled) = scheduled {
            status["lastScheduleTime"] = json!(scheduled);
        }
        let unchanged = match cron_job.get("status") {
            Some(current) => *current == status,
            None => status.as_object().is_some_and(serde_json::Map::is_empty),
        };
        if unchanged {
            return Ok(());
        }
        match objects.replace_status(&CRON_JOBS, &cron_job, status) {
            Err(error) if error.code == 409 && attempt < STATUS_ATTEMPTS => continue,
            result => return result.map(|_| ()),
        }
    }
}
