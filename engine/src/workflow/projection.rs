//! The `workflow_runs` projection: a summary of every run, and the set of unfinished runs that
//! start-up resumes.
//!
//! Keys: `run/<id>` → encoded [`RunSummary`]; `open/<id>` → workflow name, removed when the run
//! finishes; `count/<status>/<workflow>` → number of runs of that type in that status (u64
//! big-endian), so that totals cost one short scan whatever the number of runs; `format` →
//! [`FORMAT`], the layout of the summaries, so that a store written by an older build is known
//! and rebuilt ([`runs_projection_is_current`]) before its summaries are read.

use serde::{Deserialize, Serialize};

use super::events::{
    CleanupStarted, Finished, RUN_STREAM_PREFIX, RunStatus, Started, StepCompleted, StepStarted,
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
    /// When it last changed; for a finished run, when it finished.
    pub updated_at_ms: i64,
    /// The step running (a cleanup step once the cleanup runs); none once it finished.
    pub step: Option<String>,
    /// Why it failed: once its cleanup began after a failure, and when it finished failed.
    pub error: Option<String>,
}

impl RunSummary {
    /// When it finished (ms since the epoch), if it has.
    pub fn finished_at_ms(&self) -> Option<i64> {
        self.status.is_finished().then_some(self.updated_at_ms)
    }
}

pub(crate) const RUN_PREFIX: &[u8] = b"run/";

pub(crate) fn run_key(run_id: &str) -> Vec<u8> {
    let mut key = RUN_PREFIX.to_vec();
    key.extend_from_slice(run_id.as_bytes());
    key
}

/// The key of the summaries' layout.
const FORMAT_KEY: &[u8] = b"format";
/// This layout: [`RunSummary`] with `step` and `error`. A change of what a summary holds
/// changes this too, and the projection is rebuilt in the new form at the next start.
pub(crate) const FORMAT: &[u8] = b"2";

/// Whether the `workflow_runs` projection of `store` follows this build's layout. One written
/// by an older build does not (nor does an empty one, which costs nothing to rebuild): call
/// [`Store::rebuild_projections`] before a [`crate::Runtime`] reads it.
pub fn runs_projection_is_current(store: &Store) -> Result<bool> {
    Ok(store
        .projection_get(WORKFLOW_PROJECTION, FORMAT_KEY)?
        .as_deref()
        == Some(FORMAT))
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
        if state.get(FORMAT_KEY)?.as_deref() != Some(FORMAT) {
            state.put(FORMAT_KEY, FORMAT.to_vec());
        }
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
                step: None,
                error: None,
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
        if event.is::<StepStarted>() {
            let started: StepStarted = event.decode().map_err(|err| err.to_string())?;
            summary.step = Some(started.step);
        } else if event.is::<StepCompleted>() {
            summary.steps_completed += 1;
        } else if event.is::<CleanupStarted>() {
            let cleanup: CleanupStarted = event.decode().map_err(|err| err.to_string())?;
            summary.cleaning_up = true;
            summary.step = None;
            summary.error = cleanup.error;
        } else if event.is::<Finished>() {
            let finished: Finished = event.decode().map_err(|err| err.to_string())?;
            summary.status = finished.status;
            summary.step = None;
            summary.error = finished.error;
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
