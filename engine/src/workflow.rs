//! Durable workflows: a named, ordered list of steps (and cleanup steps) over a JSON input, whose
//! progress is events in one stream per run.
//!
//! A step is an async function of a [`StepContext`]: it sees the run's input, the outputs of the
//! steps before it, its attempt number and its last progress checkpoint, and returns its output.
//! Every step must be idempotent: a step that was running when the process died runs again.

mod events;
mod projection;
mod runtime;
mod state;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;

pub use events::{RunEvent, RunStatus, run_event, run_stream, workflow_event_json};
pub use projection::{
    RunCount, RunSummary, WORKFLOW_PROJECTION, run_counts, runs_projection_is_current,
};
pub use runtime::{Runtime, RuntimeOptions, StartOptions};
pub use state::RunState;

/// How a failed step is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait before the second attempt, in milliseconds.
    pub initial_backoff_ms: u64,
    /// Each further wait is the previous one times this.
    pub multiplier: f64,
    /// No wait is longer than this, in milliseconds.
    pub max_backoff_ms: u64,
    /// Each wait is shortened by a random fraction up to this (0.0 to 1.0).
    pub jitter: f64,
    /// An attempt that runs longer than this fails as retryable, in milliseconds.
    pub timeout_ms: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff_ms: 1_000,
            multiplier: 2.0,
            max_backoff_ms: 60_000,
            jitter: 0.2,
            timeout_ms: None,
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub fn once() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait before attempt `next_attempt` (2 for the first retry), jitter applied with
    /// `random` in [0, 1).
    pub fn backoff_ms(&self, next_attempt: u32, random: f64) -> u64 {
        let exponent = next_attempt.saturating_sub(2).min(63) as i32;
        let raw = self.initial_backoff_ms as f64 * self.multiplier.max(1.0).powi(exponent);
        let capped = raw.min(self.max_backoff_ms as f64);
        let jitter = self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0);
        (capped * (1.0 - jitter)).round() as u64
    }
}

/// Why a step attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    /// What went wrong, for people.
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
}

impl StepError {
    /// A failure that another attempt may not have (a timeout, an unreachable server).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure that will not change (bad input, a refusal).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a step returns.
pub type StepResult = Result<Value, StepError>;
type StepFuture = Pin<Box<dyn Future<Output = StepResult> + Send>>;
type StepFn = dyn Fn(StepContext) -> StepFuture + Send + Sync;

/// One step of a workflow type.
#[derive(Clone)]
pub struct Step {
    pub(crate) name: &'static str,
    pub(crate) policy: RetryPolicy,
    pub(crate) run: Arc<StepFn>,
}

impl Step {
    fn new<F, Fut>(name: &'static str, policy: RetryPolicy, run: F) -> Self
    where
        F: Fn(StepContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = StepResult> + Send + 'static,
    {
        Self {
            name,
            policy,
            run: Arc::new(move |ctx| Box::pin(run(ctx))),
        }
    }
}

/// A workflow type: its name, its steps in order and its cleanup steps, which run after the
/// steps whatever their outcome (success, failure or cancellation).
#[derive(Clone)]
pub struct Workflow {
    pub(crate) name: &'static str,
    pub(crate) steps: Vec<Step>,
    pub(crate) cleanup: Vec<Step>,
}

impl std::fmt::Debug for Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |steps: &[Step]| steps.iter().map(|s| s.name).collect::<Vec<_>>();
        f.debug_struct("Workflow")
            .field("name", &self.name)
            .field("steps", &names(&self.steps))
            .field("cleanup", &names(&self.cleanup))
            .finish()
    }
}

impl Workflow {
    /// A workflow type with no steps yet.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            steps: Vec::new(),
            cleanup: Vec::new(),
        }
    }

    /// Adds a step.
    pub fn step<F, Fut>(mut self, name: &'static str, policy: RetryPolicy, run: F) -> Self
    where
        F: Fn(StepContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = StepResult> + Send + 'static,
    {
        self.steps.push(Step::new(name, policy, run));
        self
    }

    /// Adds a cleanup step: it runs after the steps, also when one failed or the run was
    /// cancelled. A failing cleanup step does not stop the cleanup steps after it.
    pub fn cleanup<F, Fut>(mut self, name: &'static str, policy: RetryPolicy, run: F) -> Self
    where
        F: Fn(StepContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = StepResult> + Send + 'static,
    {
        self.cleanup.push(Step::new(name, policy, run));
        self
    }

    /// The workflow type's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// What a step sees when it runs.
#[derive(Clone)]
pub struct StepContext {
    pub(crate) run_id: String,
    pub(crate) step: &'static str,
    pub(crate) attempt: u32,
    pub(crate) input: Arc<Value>,
    pub(crate) outputs: Arc<BTreeMap<String, Value>>,
    pub(crate) progress: Option<Value>,
    pub(crate) cancelled: watch::Receiver<bool>,
    pub(crate) runtime: Runtime,
}

impl StepContext {
    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The step's name.
    pub fn step(&self) -> &'static str {
        self.step
    }

    /// This attempt's number, from 1. Raised when a retry or a restart runs the step again.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The run's input, decoded.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        serde_json::from_value(self.input.as_ref().clone())
            .map_err(|err| StepError::permanent(format!("workflow input: {err}")))
    }

    /// The output of an earlier step, decoded.
    pub fn output<T: DeserializeOwned>(&self, step: &str) -> Result<T, StepError> {
        let value = self.outputs.get(step).ok_or_else(|| {
            StepError::permanent(format!(
                "step `{step}` has no output (not run before `{}`)",
                self.step
            ))
        })?;
        serde_json::from_value(value.clone())
            .map_err(|err| StepError::permanent(format!("output of step `{step}`: {err}")))
    }

    /// Outputs of every completed step, by name.
    pub fn outputs(&self) -> &BTreeMap<String, Value> {
        &self.outputs
    }

    /// The last checkpoint this step recorded, in an earlier attempt or before a restart.
    pub fn progress<T: DeserializeOwned>(&self) -> Option<T> {
        self.progress
            .as_ref()
            .and_then(|value| serde_json::from_value(value.clone()).ok())
    }

    /// Records a checkpoint durably; a later attempt of this step gets it from
    /// [`StepContext::progress`] and can skip the work it covers.
    pub async fn checkpoint<T: Serialize>(&mut self, progress: &T) -> Result<(), StepError> {
        let value = serde_json::to_value(progress)
            .map_err(|err| StepError::permanent(format!("checkpoint: {err}")))?;
        self.runtime
            .record_progress(&self.run_id, self.step, value.clone())
            .await
            .map_err(|err| StepError::retryable(format!("checkpoint: {err}")))?;
        self.progress = Some(value);
        Ok(())
    }

    /// Whether cancellation was requested. Long steps check it and return early.
    pub fn is_cancelled(&self) -> bool {
        *self.cancelled.borrow()
    }

    /// Completes when cancellation is requested.
    pub async fn cancelled(&mut self) {
        while !*self.cancelled.borrow_and_update() {
            if self.cancelled.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Now, on the runtime's clock, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.runtime.clock().now_ms()
    }

    /// Completes once the runtime's clock shows `at_ms`. A durable timer when `at_ms` comes from
    /// the run's input or an earlier step: a restarted step waits for the same instant.
    pub async fn sleep_until(&self, at_ms: i64) {
        self.runtime.clock().sleep_until(at_ms).await;
    }

    /// The runtime the run belongs to, for steps that start or follow other runs.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Starts a child run of `workflow` (or finds it: the child's idempotency key is derived from
    /// this run, this step and `name`, so a re-run of this step does not start it twice).
    pub async fn start_child(
        &self,
        workflow: &str,
        name: &str,
        input: Value,
    ) -> Result<String, StepError> {
        let options = StartOptions {
            idempotency_key: Some(format!("child:{}:{}:{name}", self.run_id, self.step)),
            parent: Some(self.run_id.clone()),
            ..StartOptions::default()
        };
        self.runtime
            .start(workflow, input, options, "system")
            .await
            .map_err(|err| StepError::retryable(format!("start child `{workflow}`: {err}")))
    }

    /// Waits until run `run_id` is finished and returns its final state.
    pub async fn wait_for(&self, run_id: &str) -> Result<RunState, StepError> {
        self.runtime
            .wait_finished(run_id)
            .await
            .map_err(|err| StepError::retryable(format!("wait for run {run_id}: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jitter_only_shortens() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff_ms: 100,
            multiplier: 2.0,
            max_backoff_ms: 1_000,
            jitter: 0.5,
            timeout_ms: None,
        };
        assert_eq!(policy.backoff_ms(2, 0.0), 100);
        assert_eq!(policy.backoff_ms(3, 0.0), 200);
        assert_eq!(policy.backoff_ms(4, 0.0), 400);
        assert_eq!(policy.backoff_ms(9, 0.0), 1_000);
        assert_eq!(policy.backoff_ms(3, 1.0), 100);
        assert_eq!(policy.backoff_ms(60, 0.5), 750);
    }
}
