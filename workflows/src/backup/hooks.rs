//! Running rules in an application's pods through pods/exec: each rule's actions in order, in one
//! matching pod or all of them, each with its timeout and its on-error choice. A `background`
//! action keeps running (its stdin held open) while the backup goes on, until the post-rules
//! end it: closing its stdin, then its stream.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, AttachedProcess, ListParams};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::ClusterClient;
use crate::rule::{OnError, RuleSpec, RunIn};

/// Bytes of each action's output kept in its outcome.
const OUTPUT_KEPT: usize = 4096;

/// What one action did in one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionOutcome {
    /// The rule (entity id).
    pub rule: String,
    /// `namespace/pod`.
    pub pod: String,
    /// The action's position in the rule.
    pub action: usize,
    /// Whether it succeeded (a background action: whether it started).
    pub ok: bool,
    /// Its exit code, when it ended with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The end of its stdout and stderr.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// Whether it was left running in the background.
    #[serde(default)]
    pub background: bool,
}

/// Why a rule stopped the backup.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// A request to the API server failed.
    #[error("rule {rule}: {message}")]
    Api {
        /// The rule.
        rule: String,
        /// What failed.
        message: String,
    },
    /// An action failed and its rule says the backup fails.
    #[error("rule {rule}: action {action} in pod {pod} failed: {message}")]
    ActionFailed {
        /// The rule.
        rule: String,
        /// The pod.
        pod: String,
        /// The action's position.
        action: usize,
        /// How it failed, with the end of its output.
        message: String,
    },
}

/// Background actions still running, by the run that started them.
#[derive(Default)]
pub struct BackgroundActions {
    running: Mutex<HashMap<String, Vec<(String, AttachedProcess)>>>,
}

impl std::fmt::Debug for BackgroundActions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundActions").finish_non_exhaustive()
    }
}

impl BackgroundActions {
    fn add(&self, run: &str, pod: String, process: AttachedProcess) {
        self.lock()
            .entry(run.to_string())
            .or_default()
            .push((pod, process));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<(String, AttachedProcess)>>> {
        // The map stays consistent whatever panicked while it was held: entries are whole.
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether run `run` has background actions running here.
    pub fn has(&self, run: &str) -> bool {
        self.lock().get(run).is_some_and(|list| !list.is_empty())
    }

    /// Ends run `run`'s background actions: closes their stdin, gives them a moment, then
    /// closes their streams. Returns the pods they ran in.
    pub async fn end(&self, run: &str) -> Vec<String> {
        let processes = self.lock().remove(run).unwrap_or_default();
        let mut pods = Vec::new();
        for (pod, mut process) in processes {
            if let Some(mut stdin) = process.stdin() {
                let _ = stdin.shutdown().await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), process.join()).await;
            pods.push(pod);
        }
        pods
    }
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(OUTPUT_KEPT);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

/// The exit code in an exec's final status (`details.causes[reason=ExitCode]`).
fn exit_code(status: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Status) -> Option<i32> {
    status
        .details
        .as_ref()?
        .causes
        .as_ref()?
        .iter()
        .find(|cause| cause.reason.as_deref() == Some("ExitCode"))?
        .message
        .as_deref()?
        .parse()
        .ok()
}

/// Runs one foreground action to its end.
async fn run_action(
    pods: &Api<Pod>,
    pod: &str,
    container: Option<&str>,
    command: &[String],
    timeout: Duration,
) -> Result<(Option<i32>, String), String> {
    let mut params = AttachParams::default()
        .stdout(true)
        .stderr(true)
        .stdin(false);
    if let Some(container) = container {
        params = params.container(container);
    }
    let mut process = pods
        .exec(pod, command.to_vec(), &params)
        .await
        .map_err(|err| format!("exec failed: {err}"))?;
    let status = process.take_status();
    let mut stdout = process.stdout();
    let mut stderr = process.stderr();
    let work = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let read_out = async {
            if let Some(stream) = stdout.as_mut() {
                let _ = stream.read_to_end(&mut out).await;
            }
        };
        let read_err = async {
            if let Some(stream) = stderr.as_mut() {
                let _ = stream.read_to_end(&mut err).await;
            }
        };
        tokio::join!(read_out, read_err);
        let status = match status {
            Some(status) => status.await,
            None => None,
        };
        out.extend_from_slice(&err);
        (status, out)
    };
    let (status, output) = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("timed out after {} s", timeout.as_secs()))?;
    let output = tail(&output);
    match status {
        Some(status) if status.status.as_deref() == Some("Success") => Ok((Some(0), output)),
        Some(status) => {
            let code = exit_code(&status);
            Err(format!(
                "{} (exit code {}); output: {output}",
                status.message.unwrap_or_default(),
                code.map_or("unknown".to_string(), |c| c.to_string())
            ))
        }
        None => Err(format!(
            "the command ended without a status; output: {output}"
        )),
    }
}

/// Starts a background action and keeps it.
async fn start_background(
    pods: &Api<Pod>,
    pod: &str,
    container: Option<&str>,
    command: &[String],
) -> Result<AttachedProcess, String> {
    let mut params = AttachParams::default()
        .stdin(true)
        .stdout(true)
        .stderr(false);
    if let Some(container) = container {
        params = params.container(container);
    }
    pods.exec(pod, command.to_vec(), &params)
        .await
        .map_err(|err| format!("exec failed: {err}"))
}

/// Runs `rules` (id and spec, in order) in the matching pods of `namespaces`. `run` names the
/// run that owns any background action started.
pub async fn run_rules(
    cluster: &ClusterClient,
    rules: &[(String, RuleSpec)],
    namespaces: &[String],
    run: &str,
    background: &BackgroundActions,
) -> Result<Vec<ActionOutcome>, RuleError> {
    let mut outcomes = Vec::new();
    for (rule_id, rule) in rules {
        let selector = rule.pod_selector.to_query().unwrap_or_default();
        let mut targets: Vec<(String, String)> = Vec::new();
        for namespace in namespaces {
            let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|err| RuleError::Api {
                    rule: rule_id.clone(),
                    message: format!("listing pods in {namespace}: {err}"),
                })?;
            for pod in list.items {
                let running =
                    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                if let (true, Some(name)) = (running, pod.metadata.name) {
                    targets.push((namespace.clone(), name));
                }
            }
        }
        targets.sort();
        if rule.run_in == RunIn::One {
            targets.truncate(1);
        }
        for (namespace, pod) in targets {
            let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &namespace);
            let at = format!("{namespace}/{pod}");
            for (index, action) in rule.actions.iter().enumerate() {
                let timeout = Duration::from_secs(action.timeout_seconds);
                let container = rule.container.as_deref();
                let result = if action.background {
                    match tokio::time::timeout(
                        timeout,
                        start_background(&pods, &pod, container, &action.command),
                    )
                    .await
                    {
                        Ok(Ok(process)) => {
                            background.add(run, at.clone(), process);
                            Ok((None, String::new()))
                        }
                        Ok(Err(message)) => Err(message),
                        Err(_) => Err(format!("did not start within {} s", timeout.as_secs())),
                    }
                } else {
                    run_action(&pods, &pod, container, &action.command, timeout).await
                };
                match result {
                    Ok((exit_code, output)) => outcomes.push(ActionOutcome {
                        rule: rule_id.clone(),
                        pod: at.clone(),
                        action: index,
                        ok: true,
                        exit_code,
                        output,
                        background: action.background,
                    }),
                    Err(message) if action.on_error == OnError::Continue => {
                        tracing::warn!(rule = %rule_id, pod = %at, action = index, %message, "rule action failed; continuing");
                        outcomes.push(ActionOutcome {
                            rule: rule_id.clone(),
                            pod: at.clone(),
                            action: index,
                            ok: false,
                            exit_code: None,
                            output: message,
                            background: action.background,
                        });
                    }
                    Err(message) => {
                        return Err(RuleError::ActionFailed {
                            rule: rule_id.clone(),
                            pod: at,
                            action: index,
                            message,
                        });
                    }
                }
            }
        }
    }
    Ok(outcomes)
}
