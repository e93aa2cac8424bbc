//! A run's state, folded from its events: the only source of truth the runtime resumes from.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::events::{
    CancelRequested, CleanupStarted, Finished, RetryScheduled, RunStatus, Started, StepCompleted,
    StepFailed, StepProgress, StepStarted,
};
use crate::error::{Error, Result};
use crate::event::RecordedEvent;

/// Everything known about a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunState {
    /// The run's id.
    pub run_id: String,
    /// The workflow type.
    pub workflow: String,
    /// The input.
    pub input: Value,
    /// Where it stands.
    pub status: RunStatus,
    /// The idempotency key it was started with.
    pub idempotency_key: Option<String>,
    /// The key its concurrency is limited by.
    pub concurrency_key: Option<String>,
    /// The run that started it.
    pub parent: Option<String>,
    /// Outputs of completed steps (cleanup steps included).
    pub outputs: BTreeMap<String, Value>,
    /// Attempts started, per step.
    pub attempts: BTreeMap<String, u32>,
    /// Last checkpoint, per step.
    pub progress: BTreeMap<String, Value>,
    /// When the next attempt of a step may start, per step waiting for a retry.
    pub retry_at: BTreeMap<String, i64>,
    /// Steps given up after their last failure.
    pub given_up: BTreeSet<String>,
    /// Last error, per step.
    pub errors: BTreeMap<String, String>,
    /// Who asked for cancellation.
    pub cancel_requested_by: Option<String>,
    /// Once cleanup began: what the run ends as, and why.
    pub outcome: Option<(RunStatus, Option<String>)>,
    /// The final error of a failed run.
    pub error: Option<String>,
    /// Sequence of the run's last event.
    pub seq: u64,
    /// When it started and when it last changed (ms since the epoch).
    pub started_at_ms: i64,
    /// See `started_at_ms`.
    pub updated_at_ms: i64,
}

fn json(text: &str, event: &RecordedEvent) -> Result<Value> {
    serde_json::from_str(text).map_err(|err| Error::Corrupt {
        stream: event.stream.clone(),
        seq: event.seq,
        reason: format!("JSON in {}: {err}", event.kind),
    })
}

impl RunState {
    /// Folds a run's events, the first of which must be its `Started`.
    pub fn from_events(run_id: &str, events: &[RecordedEvent]) -> Result<Option<Self>> {
        let Some((first, rest)) = events.split_first() else {
            return Ok(None);
        };
        let started: Started = first.decode()?;
        let mut state = Self {
            run_id: run_id.to_string(),
            workflow: started.workflow,
            input: json(&started.input, first)?,
            status: RunStatus::Running,
            idempotency_key: started.idempotency_key,
            concurrency_key: started.concurrency_key,
            parent: started.parent,
            outputs: BTreeMap::new(),
            attempts: BTreeMap::new(),
            progress: BTreeMap::new(),
            retry_at: BTreeMap::new(),
            given_up: BTreeSet::new(),
            errors: BTreeMap::new(),
            cancel_requested_by: None,
            outcome: None,
            error: None,
            seq: first.seq,
            started_at_ms: first.at_ms,
            updated_at_ms: first.at_ms,
        };
        for event in rest {
            state.apply(event)?;
        }
        Ok(Some(state))
    }

    /// Applies one more event of the run.
    pub fn apply(&mut self, event: &RecordedEvent) -> Result<()> {
        if event.seq != self.seq + 1 {
            return Err(Error::Corrupt {
                stream: event.stream.clone(),
                seq: event.seq,
                reason: format!("follows event {} of the run", self.seq),
            });
        }
        self.seq = event.seq;
        self.updated_at_ms = event.at_ms;
        if self.status.is_finished() {
            // A finished run stays finished: nothing after `Finished` changes it.
            return Ok(());
        }
        if event.is::<StepStarted>() {
            let started: StepStarted = event.decode()?;
            self.retry_at.remove(&started.step);
            self.attempts.insert(started.step, started.attempt);
        } else if event.is::<StepProgress>() {
            let progress: StepProgress = event.decode()?;
            let detail = json(&progress.detail, event)?;
            self.progress.insert(progress.step, detail);
        } else if event.is::<StepCompleted>() {
            let completed: StepCompleted = event.decode()?;
            let output = json(&completed.output, event)?;
            self.retry_at.remove(&completed.step);
            self.outputs.insert(completed.step, output);
        } else if event.is::<StepFailed>() {
            let failed: StepFailed = event.decode()?;
            if !failed.will_retry {
                self.given_up.insert(failed.step.clone());
            }
            self.errors.insert(failed.step, failed.error);
        } else if event.is::<RetryScheduled>() {
            let retry: RetryScheduled = event.decode()?;
            self.retry_at.insert(retry.step, retry.at_ms);
        } else if event.is::<CancelRequested>() {
            let cancel: CancelRequested = event.decode()?;
            self.cancel_requested_by.get_or_insert(cancel.by);
        } else if event.is::<CleanupStarted>() {
            let cleanup: CleanupStarted = event.decode()?;
            self.outcome = Some((cleanup.outcome, cleanup.error));
        } else if event.is::<Finished>() {
            let finished: Finished = event.decode()?;
            self.status = finished.status;
            self.error = finished.error;
        } else {
            return Err(Error::Corrupt {
                stream: event.stream.clone(),
                seq: event.seq,
                reason: format!("`{}` is not a workflow event", event.kind),
            });
        }
        Ok(())
    }
}
