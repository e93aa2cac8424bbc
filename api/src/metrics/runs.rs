//! What `/metrics` tells of the workflow runs themselves, folded from the engine's log: each
//! step attempt's duration (from its `StepStarted` to its `StepCompleted` or `StepFailed`
//! event), and the bytes backups uploaded and restores wrote (from the outputs of the backup's
//! `upload` step and the restore's `volumes` step). The log is read from where the last scrape
//! stopped, so the figures cover every run the log holds, across server restarts.

use std::collections::HashMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::Value;
use stowage_engine::{RunEvent, Store, run_event};
use stowage_workflows::backup::workflow::BACKUP_WORKFLOW;
use stowage_workflows::restore::workflow::RESTORE_WORKFLOW;

/// Events read from the log at once.
const PAGE: usize = 1000;

/// Labels of the step duration histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    workflow: String,
    step: String,
    /// `completed` or `failed`.
    outcome: &'static str,
}

/// Where the folding stands.
#[derive(Debug, Default)]
struct Folded {
    /// The global position of the last event folded.
    after: u64,
    /// The workflow type of each unfinished run.
    workflows: HashMap<String, String>,
    /// When each running step attempt started (ms since the epoch), by run and step.
    started: HashMap<(String, String), i64>,
}

/// The run metrics and how far the log has been folded into them.
#[derive(Debug)]
pub(super) struct RunMetrics {
    steps: Family<StepLabels, Histogram>,
    bytes_uploaded: Counter,
    bytes_restored: Counter,
    folded: std::sync::Mutex<Folded>,
}

impl RunMetrics {
    /// The metrics, registered in `registry`.
    pub(super) fn new(registry: &mut Registry) -> Self {
        let steps = Family::<StepLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 4.0, 10))
        });
        registry.register(
            "workflow_step_duration_seconds",
            "Time from a step attempt's start to its completion or failure, by workflow type, step and outcome",
            steps.clone(),
        );
        let bytes_uploaded = Counter::default();
        registry.register(
            "backup_uploaded_bytes",
            "Bytes backups uploaded to their locations (after deduplication and compression)",
            bytes_uploaded.clone(),
        );
        let bytes_restored = Counter::default();
        registry.register(
            "restore_restored_bytes",
            "Bytes restores wrote into volumes",
            bytes_restored.clone(),
        );
        Self {
            steps,
            bytes_uploaded,
            bytes_restored,
            folded: std::sync::Mutex::new(Folded::default()),
        }
    }

    /// Folds the events committed since the last call.
    pub(super) fn catch_up(&self, store: &Store) -> Result<(), stowage_engine::Error> {
        // A panic while folding leaves at worst a few events uncounted; go on with the state.
        let mut folded = self
            .folded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            let events = store.read_global(folded.after, PAGE)?;
            let Some(last) = events.last() else {
                return Ok(());
            };
            folded.after = last.global_seq;
            for event in &events {
                if let Some(Ok((run, typed))) = run_event(event) {
                    self.fold(&mut folded, run, typed, event.at_ms);
                }
            }
            if events.len() < PAGE {
                return Ok(());
            }
        }
    }

    fn fold(&self, folded: &mut Folded, run: String, event: RunEvent, at_ms: i64) {
        match event {
            RunEvent::Started { workflow, .. } => {
                folded.workflows.insert(run, workflow);
            }
            RunEvent::StepStarted { step, .. } => {
                folded.started.insert((run, step), at_ms);
            }
            RunEvent::StepCompleted { step, output } => {
                let workflow = folded.workflows.get(&run).cloned().unwrap_or_default();
                let bytes = |pointer: &str| output.pointer(pointer).and_then(Value::as_u64);
                match (workflow.as_str(), step.as_str()) {
                    (BACKUP_WORKFLOW, "upload") => {
                        self.bytes_uploaded
                            .inc_by(bytes("/bytes_uploaded").unwrap_or(0));
                    }
                    (RESTORE_WORKFLOW, "volumes") => {
                        self.bytes_restored.inc_by(bytes("/bytes").unwrap_or(0));
                    }
                    _ => {}
                }
                self.step_ended(folded, run, workflow, step, "completed", at_ms);
            }
            RunEvent::StepFailed { step, .. } => {
                let workflow = folded.workflows.get(&run).cloned().unwrap_or_default();
                self.step_ended(folded, run, workflow, step, "failed", at_ms);
            }
            RunEvent::Finished { .. } => {
                folded.workflows.remove(&run);
                folded
                    .started
                    .retain(|(started_run, _), _| *started_run != run);
            }
            RunEvent::StepProgress { .. }
            | RunEvent::CancelRequested { .. }
            | RunEvent::CleanupStarted { .. } => {}
        }
    }

    fn step_ended(
        &self,
        folded: &mut Folded,
        run: String,
        workflow: String,
        step: String,
        outcome: &'static str,
        at_ms: i64,
    ) {
        // A run whose start this server never saw (none: the log is read from its beginning)
        // or a step end without a start has no duration to tell.
        let Some(started) = folded.started.remove(&(run, step.clone())) else {
            return;
        };
        if workflow.is_empty() {
            return;
        }
        let seconds = (at_ms - started).max(0) as f64 / 1000.0;
        self.steps
            .get_or_create(&StepLabels {
                workflow,
                step,
                outcome,
            })
            .observe(seconds);
    }
}
