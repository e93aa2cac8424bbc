//! The `workflow_runs` projection: a summary of every run, and the set of unfinished runs that
//! start-up resumes.
//!
//! Keys: `run/<id>` → encoded [`RunSummary`]; `open/<id>` → workflow name, removed when the run
//! finishes; `count/<status>/<workflow>` → number of runs of that type in that status (u64
//! big-endian), so that totals cost one short scan whatever the number of runs.

use serde::{Deserialize, Serialize};

use super::events::{
    CleanupStarted, Finished, RUN_STREAM_PREFIX, RunStatus, Started, StepCompleted,
};
use crate::codec;
use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::projection::{Projection, ProjectionState};
use crate::store::Store;

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

pub(crate) const COUNT_PREFIX: &[u8] = b"count/";

fn count_key(status: RunStatus, workflow: &str) -> Vec<u8> {
    format!("count/{}/{workflow}", status.as_str()).into_bytes()
}

/// Adds `delta` to the count of runs of `workflow` in `status`; a count that reaches 0 is removed.
fn add_to_count(
    state: &mut ProjectionState<'_>,
    status: RunStatus,
    workflow: &str,
    delta: i64,
) -> Result<(), String> {
    let key = count_key(status, workflow);
    let current =
        match state.get(&key)? {
            Some(bytes) => u64::from_be_bytes(bytes.as_slice().try_into().map_err(|_| {
                format!("run count {} is not 8 bytes", String::from_utf8_lossy(&key))
            })?),
            None => 0,
        };
    let next = current.checked_add_signed(delta).ok_or_else(|| {
        format!(
            "run count {} would go below zero",
            String::from_utf8_lossy(&key)
        )
    })?;
    if next == 0 {
        state.delete(&key);
    } else {
        state.put(&key, next.to_be_bytes().to_vec());
    }
    Ok(())
}

/// Reads the counts back: (workflow, status, runs), from `count/` keys of the projection.
fn parse_count(key: &[u8], value: &[u8]) -> Option<(String, RunStatus, u64)> {
    let rest = std::str::from_utf8(key.strip_prefix(COUNT_PREFIX)?).ok()?;
    let (status, workflow) = rest.split_once('/')?;
    let status = RunStatus::parse(status)?;
    let count = u64::from_be_bytes(value.try_into().ok()?);
    Some((workflow.to_string(), status, count))
}

/// How many runs of one workflow type are in one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCount {
    /// The workflow type.
    pub workflow: String,
    /// The status.
    pub status: RunStatus,
    /// Runs of that type in that status.
    pub runs: u64,
}

/// Runs by workflow type and status, read from the `workflow_runs` projection of `store`.
pub fn run_counts(store: &Store) -> Result<Vec<RunCount>> {
    store
        .projection_scan(WORKFLOW_PROJECTION, COUNT_PREFIX)?
        .into_iter()
        .map(|(key, value)| {
            parse_count(&key, &value)
                .map(|(workflow, status, runs)| RunCount {
                    workflow,
                    status,
                    runs,
                })
                .ok_or_else(|| Error::Corrupt {
                    stream: format!("<projection {WORKFLOW_PROJECTION}>"),
                    seq: 0,
                    reason: format!("malformed run count {}", String::from_utf8_lossy(&key)),
                })
        })
        .collect()
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
            add_to_count(state, RunStatus::Running, &started.workflow, 1)?;
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
            add_to_count(state, RunStatus::Running, &summary.workflow, -1)?;
            add_to_count(state, finished.status, &summary.workflow, 1)?;
            state.delete(&open_key(run_id));
        }
        state.put(
            &key,
            codec::encode(&summary).map_err(|err| err.to_string())?,
        );
        Ok(())
    }
}
