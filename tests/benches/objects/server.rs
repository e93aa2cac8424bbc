//! The server side of the benchmark: a RocksDB store, the entities (clusters, a local-folder
//! location) and the engine's runtime with the backup and restore workflows, as the server runs
//! them; a run is timed from its start to its end, and each step from its events.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use stowage_engine::{
    RunState, RunStatus, Runtime, RuntimeOptions, StartOptions, Store, StoreOptions,
    workflow_event_json,
};
use stowage_workflows::backup::workflow::backup_workflow;
use stowage_workflows::entity::{Entities, EntitiesProjection, Kind, NewEntity};
use stowage_workflows::restore::workflow::restore_workflow;
use stowage_workflows::services::Services;

/// The longest a run may take before the benchmark gives up.
const RUN_TIMEOUT: Duration = Duration::from_secs(1800);

/// The user the benchmark acts as.
const ACTOR: &str = "bench";

/// A finished run: how long it took, its steps' durations, its outputs.
pub struct TimedRun {
    /// From start to finish, as the caller saw it.
    pub seconds: f64,
    /// Each step's duration (first start to completion), in milliseconds, from its events.
    pub steps_ms: BTreeMap<String, i64>,
    /// The outputs of its steps.
    pub outputs: BTreeMap<String, Value>,
}

/// Store, entities and runtime.
pub struct Server {
    entities: Entities,
    runtime: Runtime,
}

impl Server {
    /// Opens a fresh store in `folder` and starts a runtime with both workflows.
    pub fn start(folder: &Path) -> anyhow::Result<Self> {
        let store = Arc::new(
            Store::open_with(
                folder.join("db"),
                StoreOptions {
                    projections: vec![Runtime::projection(), Arc::new(EntitiesProjection)],
                    ..StoreOptions::default()
                },
            )
            .context("opening the store")?,
        );
        let (key, _) = stowage_workflows::sealing::MasterKey::generate()?;
        let entities = Entities::new(store.clone(), Arc::new(key));
        let services = Services::new(entities.clone());
        let runtime = Runtime::new(
            store,
            RuntimeOptions {
                workflows: vec![
                    backup_workflow(services.clone()),
                    restore_workflow(services),
                ],
                ..RuntimeOptions::default()
            },
        )
        .context("starting the runtime")?;
        Ok(Self { entities, runtime })
    }

    /// Registers an entity; returns its id.
    pub async fn register(&self, kind: Kind, name: &str, spec: Value) -> anyhow::Result<String> {
        let entity = self
            .entities
            .create(
                NewEntity {
                    kind,
                    name: name.into(),
                    labels: BTreeMap::new(),
                    spec,
                },
                ACTOR,
                ACTOR,
            )
            .await
            .with_context(|| format!("registering {name}"))?;
        Ok(entity.id)
    }

    /// Runs `workflow` with `input` to its end; an unsuccessful run is an error with its reason.
    pub async fn run(&self, workflow: &str, input: Value) -> anyhow::Result<TimedRun> {
        let started = Instant::now();
        let run = self
            .runtime
            .start(workflow, input, StartOptions::default(), ACTOR)
            .await
            .with_context(|| format!("starting {workflow}"))?;
        let state: RunState = tokio::time::timeout(RUN_TIMEOUT, self.runtime.wait_finished(&run))
            .await
            .with_context(|| format!("{workflow} did not finish in {RUN_TIMEOUT:?}"))??;
        let seconds = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            state.status == RunStatus::Completed,
            "{workflow} ended {:?}: {:?} (step errors: {:?})",
            state.status,
            state.error,
            state.errors
        );
        Ok(TimedRun {
            seconds,
            steps_ms: self.step_durations(&run)?,
            outputs: state.outputs,
        })
    }

    /// Each step's time from its first start to its completion, from the run's events.
    fn step_durations(&self, run: &str) -> anyhow::Result<BTreeMap<String, i64>> {
        let events = self
            .runtime
            .store()
            .read_stream(&format!("wf/{run}"), 1, usize::MAX)?;
        let mut started: BTreeMap<String, i64> = BTreeMap::new();
        let mut durations = BTreeMap::new();
        for event in &events {
            let Some(payload) = workflow_event_json(event).transpose()? else {
                continue;
            };
            let Some(step) = payload.get("step").and_then(Value::as_str) else {
                continue;
            };
            match event.kind.as_str() {
                "workflow.step_started" => {
                    started.entry(step.to_string()).or_insert(event.at_ms);
                }
                "workflow.step_completed" => {
                    if let Some(at) = started.get(step) {
                        durations.insert(step.to_string(), event.at_ms - at);
                    }
                }
                _ => {}
            }
        }
        Ok(durations)
    }
}
