//! The `workflow_runs` projection: a summary of every run, and the set of unfinished runs that
//! start-up resumes.
//!
//! Keys: `run/<id>` → encoded [`RunSummary`]; `open/<id>` → workflow name, removed when the run
//! finishes.

use serde::{Deserialize, Serialize};

use super::events::{
    CleanupStarted, Finished, RUN_STREAM_PREFIX, RunStatus, Started, StepCompleted,
};
use crate::codec;
use crate::event::RecordedEvent;
use crate::projection::{Projection, ProjectionState};

/// The projection's name.
pub const WORKFLOW_PROJECTION: &str = "workflow_runs";

/// A run at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The workflow type.
    pub workflow: String,
    /// Where it stands.
    pub status: RunStatus,
    /// The run that started it.
    pub parent: Option<String>,
    /// Steps completed so far (cleanup steps included).
    pub steps_completed: u32,
    /// Whether its cleanup has begun.
    pub cleaning_up: bool,
    /// When it started (ms since the epoch).
    pub started_at_ms: i64,
    /// When it last changed.
    pub updated_at_ms: i64,
}

pub(crate) fn run_key(run_id: &str) -> Vec<u8> {
    format!("run/{run_id}").into_bytes()
}

pub(crate) const OPEN_PREFIX: &[u8] = b"open/";

fn open_key(run_id: &str) -> Vec<u8> {
    let mut key = OPEN_PREFIX.to_vec();
    key.extend_from_slice(run_id.as_bytes());
    key
}

/// Maintains [`RunSummary`]s and the open-run set from workflow events.
#[derive(Debug, Default)]
pub(crate) struct RunsProjection;

impl Projection for RunsProjection {
    fn name(&self) -> &'static str {
        WORKFLOW_PROJECTION
    }

    fn apply(&self, event: &RecordedEvent, state: &mut ProjectionState<'_>) -> Result<(), String> {
        let Some(run_id) = event.stream.strip_prefix(RUN_STREAM_PREFIX) else {
            return Ok(());
        };
        let key = run_key(run_id);
        if event.is::<Started>() {
            let started: Started = event.decode().map_err(|err| err.to_string())?;
            let summary = RunSummary {
                workflow: started.workflow.clone(),
                status: RunStatus::Running,
                parent: started.parent,
                steps_completed: 0,
                cleaning_up: false,
                started_at_ms: event.at_ms,
                updated_at_ms: event.at_ms,
            };
            state.put(
                &key,
                codec::encode(&summary).map_err(|err| err.to_string())?,
            );
            state.put(&open_key(run_id), started.workflow.into_bytes());
            return Ok(());
        }
        let Some(bytes) = state.get(&key)? else {
            return Err(format!("run {run_id} has events before it started"));
        };
        let mut summary: RunSummary = codec::decode(&bytes).map_err(|err| err.to_string())?;
        if summary.status.is_finished() {
            return Ok(());
        }
        summary.updated_at_ms = event.at_ms;
        if event.is::<StepCompleted>() {
            summary.steps_completed += 1;
        } else if event.is::<CleanupStarted>() {
            summary.cleaning_up = true;
        } else if event.is::<Finished>() {
            let finished: Finished = event.decode().map_err(|err| err.to_string())?;
            summary.status = finished.status;
            state.delete(&open_key(run_id));
        }
        state.put(
            &key,
            codec::encode(&summary).map_err(|err| err.to_string())?,
        );
        Ok(())
    }
}
