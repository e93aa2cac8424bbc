//! The server side of workflow tests: an engine store in a temporary folder, the entities, and
//! a runtime with the workflows a test names over shared `Services`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use stowage_engine::{
    RunState, RunStatus, Runtime, RuntimeOptions, StartOptions, Store, StoreOptions, Workflow,
};
use stowage_workflows::entity::{Entities, EntitiesProjection, Kind, NewEntity};
use stowage_workflows::services::Services;

/// Store, entities and runtime.
pub struct Server {
    pub entities: Entities,
    pub runtime: Runtime,
    _folder: tempfile::TempDir,
}

impl Server {
    /// A server whose services `configure` adjusts, running the workflows `workflows` makes.
    pub fn start(
        configure: impl FnOnce(&mut Services),
        workflows: impl FnOnce(&Arc<Services>) -> Vec<Workflow>,
    ) -> Self {
        let folder = tempfile::tempdir().unwrap();
        let store = Arc::new(
            Store::open_with(
                folder.path().join("db"),
                StoreOptions {
                    projections: vec![Runtime::projection(), Arc::new(EntitiesProjection)],
                    ..StoreOptions::default()
                },
            )
            .unwrap(),
        );
        let entities = stowage_tests::api_server::test_entities(store.clone());
        let mut services = Services::new(entities.clone());
        configure(Arc::get_mut(&mut services).unwrap());
        let runtime = Runtime::new(
            store,
            RuntimeOptions {
                workflows: workflows(&services),
                ..RuntimeOptions::default()
            },
        )
        .unwrap();
        Self {
            entities,
            runtime,
            _folder: folder,
        }
    }

    /// Creates an entity as alice and returns its id.
    pub async fn register(&self, kind: Kind, name: &str, spec: Value) -> String {
        self.entities
            .create(
                NewEntity {
                    kind,
                    name: name.into(),
                    labels: BTreeMap::new(),
                    spec,
                },
                "alice",
                "alice",
            )
            .await
            .unwrap()
            .id
    }

    /// Runs `workflow` to its end.
    async fn run_to_end(&self, workflow: &str, input: Value) -> RunState {
        let run = self
            .runtime
            .start(workflow, input, StartOptions::default(), "alice")
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(120), self.runtime.wait_finished(&run))
            .await
            .expect("the run finishes within two minutes")
            .unwrap()
    }

    /// Runs `workflow` to its end and returns its step outputs; fails unless it completed.
    pub async fn run(&self, workflow: &str, input: Value) -> BTreeMap<String, Value> {
        let state = self.run_to_end(workflow, input).await;
        assert_eq!(
            state.status,
            RunStatus::Completed,
            "{workflow} ended {:?}: {:?}",
            state.status,
            state.error
        );
        state.outputs
    }

    /// Runs `workflow` to its end and returns its error; fails unless it failed.
    pub async fn run_failing(&self, workflow: &str, input: Value) -> String {
        let state = self.run_to_end(workflow, input).await;
        assert_eq!(state.status, RunStatus::Failed, "{workflow}: {state:?}");
        state.error.unwrap_or_default()
    }
}
