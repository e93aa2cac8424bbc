//! What the backup, restore and workflow routes share: the workflow runtime that runs what they
//! start, the catalog they read, and the entities a start names. Also builds the server's
//! runtime with every workflow type it runs.

use std::sync::Arc;

use stowage_engine::{Clock, Runtime, RuntimeOptions};
use stowage_workflows::backup::delete_workflow;
use stowage_workflows::backup::volumes::MoverSettings;
use stowage_workflows::backup::workflow::backup_workflow;
use stowage_workflows::catalog::Catalog;
use stowage_workflows::entity::{Entities, Kind, Record, ShareLevel};
use stowage_workflows::restore::workflow::restore_workflow;
use stowage_workflows::schedule::schedule_workflow;
use stowage_workflows::services::Services;
use stowage_workflows::sync::sync_workflow;

use crate::auth::Principal;
use crate::authz;
use crate::entities::entity_error;
use crate::error::ApiError;

/// How the server's workflows run.
#[derive(Clone, Default)]
pub struct WorkflowSettings {
    /// How data-mover Jobs are made (image, concurrency, timeout).
    pub mover: MoverSettings,
    /// The clock timers wait on (schedules, retries); the system clock when `None`. Give the
    /// store the same one ([`crate::open_store_with_clock`]).
    pub clock: Option<Arc<dyn Clock>>,
}

impl std::fmt::Debug for WorkflowSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowSettings")
            .field("mover", &self.mover)
            .field("clock", &self.clock.as_ref().map(|_| "custom"))
            .finish()
    }
}

/// The runtime of a server whose `entities` live on a store opened with [`crate::open_store`]:
/// every workflow type registered, nothing resumed yet (see [`Runtime::recover`]).
pub fn server_runtime(
    entities: Entities,
    settings: WorkflowSettings,
) -> Result<Runtime, stowage_engine::Error> {
    let store = entities.store().clone();
    let mut services = Services::new(entities);
    // Just made, so this is the only handle and `get_mut` always succeeds.
    if let Some(services) = Arc::get_mut(&mut services) {
        services.mover = settings.mover;
    }
    let defaults = RuntimeOptions::default();
    Runtime::new(
        store,
        RuntimeOptions {
            clock: settings.clock.unwrap_or(defaults.clock),
            workflows: vec![
                backup_workflow(services.clone()),
                restore_workflow(services.clone()),
                delete_workflow(services.clone()),
                sync_workflow(services.clone()),
                schedule_workflow(services.clone()),
            ],
            ..defaults
        },
    )
}

/// The routes' shared state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CatalogState {
    /// Runs what the routes start.
    pub runtime: Runtime,
    /// Backups and restores.
    pub catalog: Catalog,
    /// Clusters, locations and rules.
    pub entities: Entities,
}

impl CatalogState {
    /// The state over `runtime`'s store, where `entities` are kept.
    pub fn new(runtime: Runtime, entities: Entities) -> Self {
        let store = runtime.store().clone();
        Self {
            runtime,
            catalog: Catalog::new(store),
            entities,
        }
    }

    /// Entity `id` of `kind`, named by request field `field`, if `principal` holds `needed` on
    /// it; otherwise a 422 naming the field (never revealing whether a foreign one exists).
    pub fn usable(
        &self,
        principal: &Principal,
        kind: Kind,
        field: &str,
        id: &str,
        needed: ShareLevel,
    ) -> Result<Record, ApiError> {
        usable(&self.entities, principal, kind, field, id, needed)
    }
}

/// Entity `id` of `kind`, named by request field `field`, if `principal` holds `needed` on it;
/// otherwise a 422 naming the field (never revealing whether a foreign one exists).
pub(crate) fn usable(
    entities: &Entities,
    principal: &Principal,
    kind: Kind,
    field: &str,
    id: &str,
    needed: ShareLevel,
) -> Result<Record, ApiError> {
    let record = entities.get(kind, id).map_err(entity_error)?;
    match record {
        Some(record) => match authz::level(principal, &record) {
            Some(held) if held >= needed => Ok(record),
            Some(held) => Err(ApiError::invalid(
                field,
                format!(
                    "{field}: you hold {held:?} on {} `{}`; this needs {needed:?}",
                    kind.as_str(),
                    record.name
                ),
            )),
            None => Err(unknown(kind, field, id)),
        },
        None => Err(unknown(kind, field, id)),
    }
}

fn unknown(kind: Kind, field: &str, id: &str) -> ApiError {
    ApiError::invalid(
        field,
        format!(
            "{field}: no {} with id `{id}` that you may use (list them with GET /v1/{})",
            kind.as_str(),
            kind.collection()
        ),
    )
}
