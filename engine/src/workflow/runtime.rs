//! The workflow runtime: starts runs, drives each through its steps with retries on durable
//! timers, cancellation and cleanup, limits how many run at once, and resumes unfinished runs
//! after a restart.
//!
//! # Guarantees
//! - A completed step never runs again; a step that was running when the process died runs again
//!   with its attempt number raised.
//! - A finished run never changes.
//! - Starting with an idempotency key that was used before returns the earlier run.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Semaphore, watch};
use tracing::Instrument;

use super::events::{
    CancelRequested, CleanupStarted, Finished, IdempotencyClaimed, RetryScheduled, RunStatus,
    Started, StepCompleted, StepFailed, StepProgress, StepStarted, idempotency_stream, run_stream,
};
use super::projection::{
    OPEN_PREFIX, RUN_PREFIX, RunSummary, RunsProjection, WORKFLOW_PROJECTION, run_key,
};
use super::state::RunState;
use super::{Step, StepContext, StepError, Workflow};
use crate::clock::{Clock, SystemClock};
use crate::codec;
use crate::error::{Error, Result};
use crate::event::{EventPayload, ExpectedSeq, NewEvent};
use crate::projection::Projection;
use crate::store::Store;

/// How a [`Runtime`] runs.
pub struct RuntimeOptions {
    /// The workflow types it can run.
    pub workflows: Vec<Workflow>,
    /// The clock its timers wait on. Use the same clock as the store.
    pub clock: Arc<dyn Clock>,
    /// Runs executing at once, in all.
    pub max_concurrent_runs: usize,
    /// Runs executing at once per concurrency key (e.g. per cluster).
    pub max_concurrent_per_key: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            workflows: Vec::new(),
            clock: Arc::new(SystemClock),
            max_concurrent_runs: 64,
            max_concurrent_per_key: 4,
        }
    }
}

/// How a run is started.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Starting again with the same key returns the first run instead of a new one.
    pub idempotency_key: Option<String>,
    /// Runs with the same key share the per-key concurrency limit.
    pub concurrency_key: Option<String>,
    /// The run that started this one.
    pub parent: Option<String>,
}

/// The workflow runtime. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    workflows: HashMap<&'static str, Workflow>,
    clock: Arc<dyn Clock>,
    global: Arc<Semaphore>,
    per_key_limit: usize,
    per_key: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Runs being driven in this process, with the sender that tells their steps to stop.
    active: Mutex<HashMap<String, watch::Sender<bool>>>,
    /// Bumped whenever a run driven here finishes.
    finished: watch::Sender<u64>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field(
                "workflows",
                &self.inner.workflows.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// What a run does next.
enum Next {
    Run(Step),
    BeginCleanup(RunStatus, Option<String>),
    Finish(RunStatus, Option<String>),
    Done,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these short locks leaves plain maps behind: still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn encode<T: EventPayload>(payload: &T) -> Result<NewEvent> {
    NewEvent::encode(payload)
}

impl Runtime {
    /// The projection the runtime needs; register it in the store's options.
    pub fn projection() -> Arc<dyn Projection> {
        Arc::new(RunsProjection)
    }

    /// A runtime over `store`, which must have been opened with [`Runtime::projection`].
    pub fn new(store: Arc<Store>, options: RuntimeOptions) -> Result<Self> {
        if !store.has_projection(WORKFLOW_PROJECTION) {
            return Err(Error::InvalidName {
                what: "projection name",
                name: WORKFLOW_PROJECTION.into(),
                reason: "the store was opened without Runtime::projection()".into(),
            });
        }
        let mut workflows = HashMap::new();
        for workflow in options.workflows {
            workflows.insert(workflow.name, workflow);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                workflows,
                clock: options.clock,
                global: Arc::new(Semaphore::new(options.max_concurrent_runs.max(1))),
                per_key_limit: options.max_concurrent_per_key.max(1),
                per_key: Mutex::new(HashMap::new()),
                active: Mutex::new(HashMap::new()),
                finished: watch::Sender::new(0),
            }),
        })
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    /// The clock the runtime's timers wait on.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Resumes every unfinished run from its events. Returns how many were resumed.
    pub async fn recover(&self) -> Result<usize> {
        let open = self
            .inner
            .store
            .projection_scan(WORKFLOW_PROJECTION, OPEN_PREFIX)?;
        let mut resumed = 0;
        for (key, _) in open {
            let run_id = String::from_utf8_lossy(&key[OPEN_PREFIX.len()..]).into_owned();
            let Some(state) = self.run_state(&run_id)? else {
                return Err(Error::Corrupt {
                    stream: run_stream(&run_id),
                    seq: 0,
                    reason: "listed as unfinished but has no events".into(),
                });
            };
            self.spawn(state);
            resumed += 1;
        }
        tracing::info!(runs = resumed, "unfinished workflow runs resumed");
        Ok(resumed)
    }

    /// Starts a run of `workflow` with `input`, or returns the run its idempotency key names.
    pub async fn start(
        &self,
        workflow: &str,
        input: Value,
        options: StartOptions,
        actor: &str,
    ) -> Result<String> {
        if !self.inner.workflows.contains_key(workflow) {
            return Err(Error::InvalidName {
                what: "workflow",
                name: workflow.into(),
                reason: "no such workflow type is registered".into(),
            });
        }
        let run_id = match &options.idempotency_key {
            Some(key) => self.claim(key, actor).await?,
            None => uuid::Uuid::now_v7().to_string(),
        };
        let started = Started {
            workflow: workflow.to_string(),
            input: input.to_string(),
            idempotency_key: options.idempotency_key.clone(),
            concurrency_key: options.concurrency_key.clone(),
            parent: options.parent.clone(),
        };
        match self
            .inner
            .store
            .append(
                &run_stream(&run_id),
                ExpectedSeq::NoStream,
                vec![encode(&started)?],
                actor,
            )
            .await
        {
            Ok(_) => {}
            // The run exists: an idempotent start found it.
            Err(Error::Conflict { .. }) => return Ok(run_id),
            Err(other) => return Err(other),
        }
        if let Some(state) = self.run_state(&run_id)? {
            self.spawn(state);
        }
        Ok(run_id)
    }

    /// The run an idempotency key is bound to, if a start has claimed it.
    pub fn claimed_run(&self, key: &str) -> Result<Option<String>> {
        match self
            .inner
            .store
            .read_stream(&idempotency_stream(key), 1, 1)?
            .first()
        {
            Some(first) => Ok(Some(first.decode::<IdempotencyClaimed>()?.run_id)),
            None => Ok(None),
        }
    }

    /// The run id an idempotency key is bound to, binding it to a new run if it is not yet.
    async fn claim(&self, key: &str, actor: &str) -> Result<String> {
        let stream = idempotency_stream(key);
        loop {
            if let Some(first) = self.inner.store.read_stream(&stream, 1, 1)?.first() {
                return Ok(first.decode::<IdempotencyClaimed>()?.run_id);
            }
            let claim = IdempotencyClaimed {
                run_id: uuid::Uuid::now_v7().to_string(),
            };
            match self
                .inner
                .store
                .append(&stream, ExpectedSeq::NoStream, vec![encode(&claim)?], actor)
                .await
            {
                Ok(_) => return Ok(claim.run_id),
                Err(Error::Conflict { .. }) => continue,
                Err(other) => return Err(other),
            }
        }
    }

    /// Asks run `run_id` to stop: its running step sees it, no further step starts, and its
    /// cleanup steps run. Cancelling a finished run changes nothing.
    pub async fn cancel(&self, run_id: &str, by: &str) -> Result<()> {
        loop {
            let Some(state) = self.run_state(run_id)? else {
                return Err(Error::InvalidName {
                    what: "run",
                    name: run_id.into(),
                    reason: "no such run".into(),
                });
            };
            if state.status.is_finished() || state.cancel_requested_by.is_some() {
                return Ok(());
            }
            let cancel = CancelRequested { by: by.to_string() };
            // Appended only onto the state just read: a run that finishes meanwhile is left alone.
            match self
                .inner
                .store
                .append(
                    &run_stream(run_id),
                    ExpectedSeq::Exactly(state.seq),
                    vec![encode(&cancel)?],
                    by,
                )
                .await
            {
                Ok(_) => break,
                Err(Error::Conflict { .. }) => continue,
                Err(other) => return Err(other),
            }
        }
        if let Some(signal) = lock(&self.inner.active).get(run_id) {
            signal.send_replace(true);
        }
        Ok(())
    }

    /// The ids of every unfinished run, in id (start) order.
    pub fn open_runs(&self) -> Result<Vec<String>> {
        Ok(self
            .inner
            .store
            .projection_scan(WORKFLOW_PROJECTION, OPEN_PREFIX)?
            .into_iter()
            .map(|(key, _)| String::from_utf8_lossy(&key[OPEN_PREFIX.len()..]).into_owned())
            .collect())
    }

    /// The state of run `run_id`, folded from its events.
    pub fn run_state(&self, run_id: &str) -> Result<Option<RunState>> {
        let events = self
            .inner
            .store
            .read_stream(&run_stream(run_id), 1, usize::MAX)?;
        RunState::from_events(run_id, &events)
    }

    /// The events of run `run_id`, in order (empty for an unknown run).
    pub fn run_events(&self, run_id: &str) -> Result<Vec<crate::event::RecordedEvent>> {
        self.inner
            .store
            .read_stream(&run_stream(run_id), 1, usize::MAX)
    }

    /// The summary of run `run_id` from the projection.
    pub fn summary(&self, run_id: &str) -> Result<Option<RunSummary>> {
        let Some(bytes) = self
            .inner
            .store
            .projection_get(WORKFLOW_PROJECTION, &run_key(run_id))?
        else {
            return Ok(None);
        };
        codec::decode(&bytes)
            .map(Some)
            .map_err(|err| Error::Corrupt {
                stream: run_stream(run_id),
                seq: 0,
                reason: format!("run summary: {err}"),
            })
    }

    /// Up to `limit` runs whose ids sort after `after` (all of them without it), in id order,
    /// each with its summary from the projection: one page of a listing of every run. Run ids
    /// are UUID v7, so id order is the order the runs started in.
    pub fn run_summaries(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, RunSummary)>> {
        let after = after.map(run_key);
        self.inner
            .store
            .projection_page(WORKFLOW_PROJECTION, RUN_PREFIX, after.as_deref(), limit)?
            .into_iter()
            .map(|(key, bytes)| {
                let run_id = String::from_utf8_lossy(&key[RUN_PREFIX.len()..]).into_owned();
                let summary = codec::decode(&bytes).map_err(|err| Error::Corrupt {
                    stream: run_stream(&run_id),
                    seq: 0,
                    reason: format!("run summary: {err}"),
                })?;
                Ok((run_id, summary))
            })
            .collect()
    }

    /// The names of the workflow types this runtime runs, sorted.
    pub fn workflow_types(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.inner.workflows.keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// Waits until run `run_id` is finished and returns its final state.
    pub async fn wait_finished(&self, run_id: &str) -> Result<RunState> {
        let mut finished = self.inner.finished.subscribe();
        loop {
            finished.borrow_and_update();
            if let Some(state) = self.run_state(run_id)?
                && state.status.is_finished()
            {
                return Ok(state);
            }
            if finished.changed().await.is_err() {
                return Err(Error::Closed);
            }
        }
    }

    pub(crate) async fn record_progress(
        &self,
        run_id: &str,
        step: &str,
        detail: Value,
    ) -> Result<()> {
        let progress = StepProgress {
            step: step.to_string(),
            detail: detail.to_string(),
        };
        self.inner
            .store
            .append(
                &run_stream(run_id),
                ExpectedSeq::Any,
                vec![encode(&progress)?],
                "system",
            )
            .await?;
        Ok(())
    }

    /// Drives a run in a task of its own, unless this process drives it already.
    fn spawn(&self, state: RunState) {
        if state.status.is_finished() {
            return;
        }
        let (signal, cancelled) = watch::channel(state.cancel_requested_by.is_some());
        {
            let mut active = lock(&self.inner.active);
            if active.contains_key(&state.run_id) {
                return;
            }
            active.insert(state.run_id.clone(), signal);
        }
        let runtime = self.clone();
        let span = tracing::info_span!("workflow", run = %state.run_id, workflow = %state.workflow);
        tokio::spawn(
            async move {
                let run_id = state.run_id.clone();
                if let Err(err) = runtime.drive(state, cancelled).await {
                    tracing::error!(error = %err, "workflow run stopped; it resumes at the next start");
                }
                lock(&runtime.inner.active).remove(&run_id);
                runtime.inner.finished.send_modify(|count| *count += 1);
            }
            .instrument(span),
        );
    }

    fn key_semaphore(&self, key: &str) -> Arc<Semaphore> {
        lock(&self.inner.per_key)
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.inner.per_key_limit)))
            .clone()
    }

    async fn drive(&self, mut state: RunState, mut cancelled: watch::Receiver<bool>) -> Result<()> {
        let Some(workflow) = self.inner.workflows.get(state.workflow.as_str()).cloned() else {
            return Err(Error::InvalidName {
                what: "workflow",
                name: state.workflow.clone(),
                reason: "no such workflow type is registered in this process".into(),
            });
        };
        let _global = self
            .inner
            .global
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Closed)?;
        let _per_key = match &state.concurrency_key {
            Some(key) => Some(
                self.key_semaphore(key)
                    .acquire_owned()
                    .await
                    .map_err(|_| Error::Closed)?,
            ),
            None => None,
        };
        loop {
            self.refresh(&mut state)?;
            match next_step(&workflow, &state) {
                Next::Done => return Ok(()),
                Next::Finish(status, error) => {
                    let finished = Finished { status, error };
                    self.append(&mut state, vec![encode(&finished)?]).await?;
                    tracing::info!(status = ?status, "workflow run finished");
                }
                Next::BeginCleanup(outcome, error) => {
                    let cleanup = CleanupStarted { outcome, error };
                    self.append(&mut state, vec![encode(&cleanup)?]).await?;
                }
                Next::Run(step) => {
                    self.run_step(&mut state, &step, &mut cancelled).await?;
                }
            }
        }
    }

    /// Runs one attempt of `step`, after its retry timer if one is set, and records the result.
    async fn run_step(
        &self,
        state: &mut RunState,
        step: &Step,
        cancelled: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        let in_cleanup = state.outcome.is_some();
        if let Some(at_ms) = state.retry_at.get(step.name).copied() {
            tokio::select! {
                _ = self.inner.clock.sleep_until(at_ms) => {}
                _ = cancelled.wait_for(|cancelled| *cancelled), if !in_cleanup => {
                    // Cancelled while waiting: the loop begins the cleanup.
                    return Ok(());
                }
            }
        }
        let attempt = state.attempts.get(step.name).copied().unwrap_or(0) + 1;
        let started = StepStarted {
            step: step.name.to_string(),
            attempt,
        };
        self.append(state, vec![encode(&started)?]).await?;
        let span = tracing::info_span!("step", step = step.name, attempt);
        let ctx = StepContext {
            run_id: state.run_id.clone(),
            step: step.name,
            attempt,
            input: Arc::new(state.input.clone()),
            outputs: Arc::new(state.outputs.clone()),
            progress: state.progress.get(step.name).cloned(),
            cancelled: cancelled.clone(),
            runtime: self.clone(),
        };
        let attempt_future = (step.run)(ctx).instrument(span);
        let result = match step.policy.timeout_ms {
            Some(timeout) => tokio::time::timeout(Duration::from_millis(timeout), attempt_future)
                .await
                .unwrap_or_else(|_| {
                    Err(StepError::retryable(format!(
                        "timed out after {timeout} ms"
                    )))
                }),
            None => attempt_future.await,
        };
        match result {
            Ok(output) => {
                let completed = StepCompleted {
                    step: step.name.to_string(),
                    output: output.to_string(),
                };
                self.append(state, vec![encode(&completed)?]).await
            }
            Err(error) => {
                let stopping = !in_cleanup && *cancelled.borrow();
                let will_retry = error.retryable && attempt < step.policy.max_attempts && !stopping;
                tracing::warn!(step = step.name, attempt, will_retry, error = %error, "step failed");
                let mut events = vec![encode(&StepFailed {
                    step: step.name.to_string(),
                    attempt,
                    error: error.message.clone(),
                    retryable: error.retryable,
                    will_retry,
                })?];
                if will_retry {
                    let wait = step.policy.backoff_ms(attempt + 1, fastrand::f64());
                    events.push(encode(&RetryScheduled {
                        step: step.name.to_string(),
                        at_ms: self.inner.clock.now_ms() + wait as i64,
                    })?);
                } else if !in_cleanup && !stopping {
                    events.push(encode(&CleanupStarted {
                        outcome: RunStatus::Failed,
                        error: Some(format!("step `{}`: {}", step.name, error.message)),
                    })?);
                }
                self.append(state, events).await
            }
        }
    }

    /// Reads the run's events appended since `state` was folded (checkpoints, cancellation).
    fn refresh(&self, state: &mut RunState) -> Result<()> {
        let newer =
            self.inner
                .store
                .read_stream(&run_stream(&state.run_id), state.seq + 1, usize::MAX)?;
        for event in &newer {
            state.apply(event)?;
        }
        Ok(())
    }

    /// Appends this driver's events, after any checkpoint or cancellation that came in between.
    async fn append(&self, state: &mut RunState, events: Vec<NewEvent>) -> Result<()> {
        loop {
            match self
                .inner
                .store
                .append(
                    &run_stream(&state.run_id),
                    ExpectedSeq::Exactly(state.seq),
                    events.clone(),
                    "system",
                )
                .await
            {
                Ok(_) => return self.refresh(state),
                Err(Error::Conflict { .. }) => {
                    let before = state.clone();
                    self.refresh(state)?;
                    let foreign = state.attempts != before.attempts
                        || state.outputs != before.outputs
                        || state.outcome != before.outcome
                        || state.status != before.status;
                    if foreign {
                        return Err(Error::Conflict {
                            stream: run_stream(&state.run_id),
                            expected: ExpectedSeq::Exactly(before.seq),
                            actual: state.seq,
                        });
                    }
                }
                Err(other) => return Err(other),
            }
        }
    }
}

/// What the run does next, from its state alone.
fn next_step(workflow: &Workflow, state: &RunState) -> Next {
    if state.status.is_finished() {
        return Next::Done;
    }
    match &state.outcome {
        None => {
            if state.cancel_requested_by.is_some() {
                return Next::BeginCleanup(RunStatus::Cancelled, None);
            }
            for step in &workflow.steps {
                if state.outputs.contains_key(step.name) {
                    continue;
                }
                if state.given_up.contains(step.name) {
                    let error = state.errors.get(step.name).cloned().unwrap_or_default();
                    return Next::BeginCleanup(
                        RunStatus::Failed,
                        Some(format!("step `{}`: {error}", step.name)),
                    );
                }
                return Next::Run(step.clone());
            }
            Next::BeginCleanup(RunStatus::Completed, None)
        }
        Some((outcome, error)) => {
            for step in &workflow.cleanup {
                if !state.outputs.contains_key(step.name) && !state.given_up.contains(step.name) {
                    return Next::Run(step.clone());
                }
            }
            let failed_cleanup: BTreeMap<_, _> = workflow
                .cleanup
                .iter()
                .filter(|step| state.given_up.contains(step.name))
                .map(|step| {
                    (
                        step.name,
                        state.errors.get(step.name).cloned().unwrap_or_default(),
                    )
                })
                .collect();
            if *outcome == RunStatus::Completed && !failed_cleanup.is_empty() {
                let reasons: Vec<String> = failed_cleanup
                    .iter()
                    .map(|(step, error)| format!("cleanup step `{step}`: {error}"))
                    .collect();
                return Next::Finish(RunStatus::Failed, Some(reasons.join("; ")));
            }
            Next::Finish(*outcome, error.clone())
        }
    }
}
