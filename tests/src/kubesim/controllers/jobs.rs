//! The Job controller: a Job runs pods (`<job>-<5 chars>`, with the Job's selector labels)
//! until `completions` of them succeeded, then it is Complete (conditions SuccessCriteriaMet and
//! Complete, `completionTime`); when more than `backoffLimit` failed it is Failed (FailureTarget
//! and Failed, reason BackoffLimitExceeded). It reads pod phases whenever they are written.
//!
//! Which pods are simulated: a pod that the pods-running controller made Running at creation is
//! simulated, and this controller marks it Succeeded (exit code 0) right after. A pod that comes
//! back from creation in any other phase (Pending: a pod run as a local process) completes when
//! whoever runs it writes its phase through the status subresource.
//!
//! A Job a CronJob created (`cronjobs.rs`, or `kubectl create job --from=cronjob/NAME`) runs
//! like any other.

use serde_json::{Value, json};

use super::objects::{
    JOBS, Objects, PODS, condition, has_true_condition, int, is_deleting, meta, now,
    pod_from_template, pod_phase,
};
use super::report;

/// Reconciles a Job from its pods.
pub fn reconcile(objects: &Objects<'_>, namespace: &str, name: &str) {
    let Some(job) = objects.get(&JOBS, namespace, name) else {
        return;
    };
    let previous = job
        .pointer("/status/conditions")
        .cloned()
        .unwrap_or(Value::Null);
    if is_deleting(&job)
        || has_true_condition(&previous, "Complete")
        || has_true_condition(&previous, "Failed")
    {
        return;
    }
    let suspended = job.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
    let pods = objects.owned(&PODS, namespace, meta(&job, "uid"));
    let count = |phase: &str| pods.iter().filter(|p| pod_phase(p) == phase).count() as i64;
    let succeeded = count("Succeeded");
    let failed = count("Failed");
    let active: Vec<_> = pods
        .iter()
        .filter(|p| !is_deleting(p) && !matches!(pod_phase(p), "Succeeded" | "Failed"))
        .collect();
    let completions = int(&job, "/spec/completions", 1);
    let parallelism = int(&job, "/spec/parallelism", 1);
    let backoff_limit = int(&job, "/spec/backoffLimit", 6);
    let start_time = job
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .map_or_else(now, str::to_string);
    let mut status = json!({
        "startTime": start_time,
        "active": 0,
        "ready": 0,
        "terminating": 0,
        "uncountedTerminatedPods": {},
    });
    if succeeded > 0 {
        status["succeeded"] = json!(succeeded);
    }
    if failed > 0 {
        status["failed"] = json!(failed);
    }
    let finish = |status: &mut Value, reason: &str, message: &str, first: &str, last: &str| {
        for pod in &active {
            report(
                "deleting an active pod of a finished Job",
                meta(pod, "name"),
                objects.delete(&PODS, namespace, meta(pod, "name")),
            );
        }
        status["conditions"] = json!([
            condition(&previous, first, "True", reason, message, true),
            condition(&previous, last, "True", reason, message, true),
        ]);
    };
    if failed > backoff_limit {
        finish(
            &mut status,
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
            "FailureTarget",
            "Failed",
        );
    } else if succeeded >= completions {
        finish(
            &mut status,
            "CompletionsReached",
            "Reached expected number of succeeded pods",
            "SuccessCriteriaMet",
            "Complete",
        );
        status["completionTime"] = json!(now());
    } else if suspended {
        status = json!({
            "conditions": [condition(&previous, "Suspended", "True", "JobSuspended",
                "Job suspended", true)],
        });
    } else {
        let wanted = parallelism.min(completions - succeeded).max(0);
        let mut running = active.len() as i64;
        let template = job.pointer("/spec/template").cloned().unwrap_or_default();
        while running < wanted {
            let pod = pod_from_template(&template, &job, None, &format!("{name}-"), &[]);
            match objects.create(&PODS, Some(namespace), pod) {
                Ok(pod) => {
                    running += 1;
                    if pod_phase(&pod) == "Running" {
                        simulate_success(objects, &pod);
                    }
                }
                Err(error) => {
                    report("creating a Job's pod", name, Err::<(), _>(error));
                    break;
                }
            }
        }
        status["active"] = json!(running);
        status["ready"] = json!(active.iter().filter(|p| pod_phase(p) == "Running").count());
    }
    report(
        "writing a Job's status",
        name,
        objects.set_status(&JOBS, &job, status),
    );
}

/// A simulated pod's container exits 0: the pod Succeeds.
fn simulate_success(objects: &Objects<'_>, pod: &Value) {
    let finished = now();
    let started = pod
        .pointer("/status/startTime")
        .cloned()
        .unwrap_or_else(|| json!(finished));
    let containers: Vec<Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|containers| {
            containers
                .iter()
                .map(|c| {
                    json!({
                        "name": c.get("name").cloned().unwrap_or(Value::Null),
                        "image": c.get("image").cloned().unwrap_or(Value::Null),
                        "imageID": "",
                        "ready": false,
                        "started": false,
                        "restartCount": 0,
                        "state": {"terminated": {
                            "exitCode": 0, "reason": "Completed",
                            "startedAt": started, "finishedAt": finished,
                        }},
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut status = pod.get("status").cloned().unwrap_or_else(|| json!({}));
    status["phase"] = json!("Succeeded");
    status["containerStatuses"] = json!(containers);
    status["conditions"] = json!([
        {"type": "PodReadyToStartContainers", "status": "False", "lastTransitionTime": finished},
        {"type": "Initialized", "status": "True", "reason": "PodCompleted", "lastTransitionTime": started},
        {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": finished},
        {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": finished},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
    ]);
    report(
        "completing a simulated Job pod",
        meta(pod, "name"),
        objects.set_status(&PODS, pod, status),
    );
}
