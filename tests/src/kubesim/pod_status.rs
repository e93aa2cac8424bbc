//! The shapes of a pod's `status` as the kubelet reports them, shared by the controller that
//! makes pods Running at once and by the one that runs local-image pods as processes:
//! pending (scheduled, containers creating), running, and the per-container statuses.

use serde_json::{Value, json};

/// The one node every pod is scheduled on.
pub(crate) const NODE: &str = "kubesim-node";

/// The pod's containers.
pub(crate) fn containers(pod: &Value) -> Vec<Value> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// One entry of `containerStatuses` in `state`.
pub(crate) fn container_status(container: &Value, state: Value, ready: bool) -> Value {
    json!({
        "name": container.get("name").cloned().unwrap_or(Value::Null),
        "image": container.get("image").cloned().unwrap_or(Value::Null),
        "imageID": "",
        "ready": ready,
        "started": ready,
        "restartCount": 0,
        "state": state,
    })
}

/// The pod conditions: scheduled and initialized, ready or not (`PodCompleted` once done).
pub(crate) fn conditions(ready: bool, at: &str) -> Vec<Value> {
    ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
        .iter()
        .map(|kind| {
            let is_ready = matches!(*kind, "ContainersReady" | "Ready");
            let mut condition = json!({
                "type": kind,
                "status": if ready || !is_ready { "True" } else { "False" },
                "lastTransitionTime": at,
            });
            if is_ready && !ready {
                condition["reason"] = json!("PodCompleted");
            }
            condition
        })
        .collect()
}

/// Scheduled, every container waiting in `ContainerCreating`.
pub(crate) fn pending(pod: &Value, at: &str) -> Value {
    let statuses: Vec<Value> = containers(pod)
        .iter()
        .map(|c| {
            container_status(
                c,
                json!({"waiting": {"reason": "ContainerCreating"}}),
                false,
            )
        })
        .collect();
    json!({
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": at}],
        "hostIP": "127.0.0.1",
        "containerStatuses": statuses,
    })
}

/// Running and Ready since `started`, every container running.
pub(crate) fn running(pod: &Value, started: &str) -> Value {
    let statuses: Vec<Value> = containers(pod)
        .iter()
        .map(|c| container_status(c, json!({"running": {"startedAt": started}}), true))
        .collect();
    json!({
        "phase": "Running",
        "conditions": conditions(true, started),
        "hostIP": "127.0.0.1",
        "podIP": "127.0.0.1",
        "startTime": started,
        "containerStatuses": statuses,
    })
}
