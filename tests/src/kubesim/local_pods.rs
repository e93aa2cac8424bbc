//! The local-image controller: a pod whose container image is one of the configured local
//! images runs that container's `command` + `args` as a host process (argv[0] replaced by the
//! host binary, volumes mapped per [`super::mounts`]). Its phase goes Pending → Running →
//! Succeeded or Failed, with `containerStatuses[].state.terminated.exitCode` and reason, written
//! through the status subresource as any client would; its output becomes the container log.
//! The controller also kills a pod's processes (local ones and exec sessions) when the pod is
//! deleted, and every process when kubesim stops.

use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use super::cluster::Cluster;
use super::logs::LogBuffer;
use super::mounts;
use super::patch::PatchKind;
use super::pod_status::{self, container_status, containers};
use super::processes;
use super::registry::text;
use super::store::ChangeType;

const PODS: &str = "/pods";

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Starts the controller; it ends when kubesim stops.
pub(crate) fn start(cluster: Arc<Cluster>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let runtime = cluster.pod_runtime();
        let mut stopping = runtime.stopping();
        let (initial, _, mut changes) = cluster.store().watch_now(PODS);
        let mut started = HashSet::new();
        for pod in initial {
            consider(&cluster, &pod, &mut started);
        }
        loop {
            let change = tokio::select! {
                _ = processes::signalled(&mut stopping) => break,
                change = changes.recv() => change,
            };
            match change {
                Ok(change) if &*change.resource == PODS => {
                    let uid = text(&change.object, "/metadata/uid").to_string();
                    if change.change == ChangeType::Deleted {
                        forget(&cluster, &uid, &mut started);
                    } else if change
                        .object
                        .pointer("/metadata/deletionTimestamp")
                        .is_some()
                    {
                        runtime.pod_terminating(&uid);
                    } else {
                        consider(&cluster, &change.object, &mut started);
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    let pods = cluster.store().list(PODS, None, None, 0, |_| true).items;
                    let live: HashSet<String> = pods
                        .iter()
                        .map(|pod| text(pod, "/metadata/uid").to_string())
                        .collect();
                    let gone: Vec<String> = started.difference(&live).cloned().collect();
                    for uid in gone {
                        forget(&cluster, &uid, &mut started);
                    }
                    for pod in pods {
                        consider(&cluster, &pod, &mut started);
                    }
                }
                Err(RecvError::Closed) => break,
            }
        }
        runtime.stop_all();
    })
}

/// A pod went away: its processes die, its logs and its folder go.
fn forget(cluster: &Cluster, uid: &str, started: &mut HashSet<String>) {
    cluster.pod_runtime().pod_deleted(uid);
    started.remove(uid);
    let folder = cluster.volume_folders().pod(uid);
    if folder.exists()
        && let Err(error) = std::fs::remove_dir_all(&folder)
    {
        tracing::warn!(%error, folder = %folder.display(), "removing a deleted pod's folder");
    }
}

/// Starts a local pod that has not run yet.
fn consider(cluster: &Arc<Cluster>, pod: &Arc<Value>, started: &mut HashSet<String>) {
    let phase = text(pod, "/status/phase");
    if !matches!(phase, "" | "Pending")
        || pod.pointer("/metadata/deletionTimestamp").is_some()
        || !cluster.pod_runtime().runs_locally(pod)
    {
        return;
    }
    let uid = text(pod, "/metadata/uid").to_string();
    if started.insert(uid) {
        tokio::spawn(run_pod(Arc::clone(cluster), Arc::clone(pod)));
    }
}

/// Writes `status` through the status subresource; a pod deleted meanwhile is no error.
fn write_status(cluster: &Cluster, pod: &Value, status: Value) {
    let result = cluster.resource("", "v1", "pods").and_then(|pods| {
        cluster.patch(
            &pods,
            text(pod, "/metadata/namespace"),
            text(pod, "/metadata/name"),
            Some("status"),
            PatchKind::Merge,
            json!({ "status": status }),
        )
    });
    match result {
        Ok(_) => {}
        Err(error) if error.code == 404 => {}
        Err(error) => tracing::warn!(%error, pod = text(pod, "/metadata/name"), "pod status"),
    }
}

/// How one container ended.
struct Ended {
    exit_code: i32,
    reason: &'static str,
    message: Option<String>,
    started_at: String,
    finished_at: String,
}

impl Ended {
    fn state(&self) -> Value {
        let mut terminated = json!({
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
        });
        if let Some(message) = &self.message {
            terminated["message"] = json!(message);
        }
        json!({ "terminated": terminated })
    }
}

#[tracing::instrument(skip_all, fields(pod = text(&pod, "/metadata/name")))]
async fn run_pod(cluster: Arc<Cluster>, pod: Arc<Value>) {
    let runtime = cluster.pod_runtime();
    let uid = text(&pod, "/metadata/uid").to_string();
    let pod_name = text(&pod, "/metadata/name").to_string();
    let containers = containers(&pod);
    let mut local = Vec::new();
    for container in &containers {
        let image = text(container, "/image");
        let Some(binary) = runtime.binary_for(image) else {
            continue;
        };
        match mounts::resolve(cluster.store(), cluster.volume_folders(), &pod, container) {
            Ok(view) => local.push((container.clone(), binary, view)),
            Err(error) => {
                let waiting = json!({"waiting": {
                    "reason": "CreateContainerConfigError",
                    "message": error.to_string(),
                }});
                let mut status = pod_status::pending(&pod, &now());
                for status in status["containerStatuses"]
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                {
                    if status["name"] == container["name"] {
                        status["state"] = waiting.clone();
                    }
                }
                write_status(&cluster, &pod, status);
                return;
            }
        }
    }
    let started_at = now();
    let mut killed = runtime.kill_signal(&uid);
    let mut running = Vec::new();
    for (container, binary, view) in local {
        let mut command: Vec<String> = string_list(&container, "command");
        let args = string_list(&container, "args");
        if command.is_empty() {
            command.push(binary.to_string_lossy().into_owned());
        }
        command.extend(args);
        let mut argv = view.argv(&command);
        argv[0] = binary.to_string_lossy().into_owned();
        let log = runtime.log(&uid, &view.container);
        let kill = killed.clone();
        let spawned = processes::spawn(&view, &pod_name, &argv, false);
        let started_at = started_at.clone();
        running.push((
            container.clone(),
            tokio::spawn(async move {
                match spawned {
                    Ok(guard) => supervise(guard, log, kill, started_at).await,
                    Err(error) => {
                        log.finish();
                        Ended {
                            exit_code: 128,
                            reason: "StartError",
                            message: Some(format!("starting {}: {error}", argv[0])),
                            started_at: started_at.clone(),
                            finished_at: now(),
                        }
                    }
                }
            }),
        ));
    }
    let running_status = pod_status::running(&pod, &started_at);
    let mut statuses = running_status["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    write_status(&cluster, &pod, running_status);
    let mut failed = false;
    for (container, task) in running {
        let Ok(ended) = task.await else {
            return;
        };
        failed |= ended.exit_code != 0;
        for status in &mut statuses {
            if status["name"] == container["name"] {
                *status = container_status(&container, ended.state(), false);
            }
        }
    }
    if *killed.borrow_and_update() {
        // The pod is being deleted or kubesim stops: nobody is left to read a final phase.
        return;
    }
    write_status(
        &cluster,
        &pod,
        json!({
            "phase": if failed { "Failed" } else { "Succeeded" },
            "conditions": pod_status::conditions(false, &now()),
            "containerStatuses": statuses,
        }),
    );
}

fn string_list(container: &Value, field: &str) -> Vec<String> {
    container
        .get(field)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Copies a pipe into the log until it closes.
async fn pump(mut pipe: impl AsyncRead + Unpin, log: &LogBuffer) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => log.append(&buffer[..read]),
        }
    }
}

/// Waits for the process (or kills it when its pod goes), keeping its output as the log.
async fn supervise(
    mut guard: processes::ProcessGuard,
    log: Arc<LogBuffer>,
    mut kill: tokio::sync::watch::Receiver<bool>,
    started_at: String,
) -> Ended {
    let stdout = guard.child().stdout.take();
    let stderr = guard.child().stderr.take();
    let output = async {
        if let Some(stdout) = stdout {
            pump(stdout, &log).await;
        }
    };
    let errors = async {
        if let Some(stderr) = stderr {
            pump(stderr, &log).await;
        }
    };
    let status = async {
        let status = tokio::select! {
            status = guard.child().wait() => status,
            _ = processes::signalled(&mut kill) => {
                guard.kill();
                guard.child().wait().await
            }
        };
        // Whatever the process left running in its group dies with it.
        guard.kill();
        status
    };
    let ((), (), status) = tokio::join!(output, errors, status);
    log.finish();
    let (exit_code, message) = match status {
        Ok(status) => (
            status
                .code()
                .or_else(|| status.signal().map(|signal| 128 + signal))
                .unwrap_or(1),
            None,
        ),
        Err(error) => (1, Some(format!("waiting for the process: {error}"))),
    };
    Ended {
        exit_code,
        reason: if exit_code == 0 { "Completed" } else { "Error" },
        message,
        started_at,
        finished_at: now(),
    }
}
