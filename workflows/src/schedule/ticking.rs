//! Keeps every backup schedule's chain of ticks going: a new schedule gets its first tick, and
//! at start the server gives one to any schedule whose chain is not running (a chain only stops
//! when its schedule is deleted, or when a tick failed on a database error).

use futures::StreamExt;
use stowage_engine::{Runtime, StartOptions};

use super::workflow::{SCHEDULE_WORKFLOW, TickInput};
use crate::catalog::{Catalog, CatalogError};
use crate::entity::{Entities, EntityError, Kind, created_by};

/// Why a chain could not be checked or started.
#[derive(Debug, thiserror::Error)]
pub enum TickingError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] stowage_engine::Error),
    /// The catalog could not be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The schedules could not be listed.
    #[error(transparent)]
    Entities(#[from] EntityError),
    /// The tick's input could not be encoded.
    #[error("tick input: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Starts a tick for `schedule` unless its newest tick is still running; the first time counted
/// from now. Returns the tick started, if one was. Idempotent: concurrent callers start one.
pub async fn ensure_ticking(
    runtime: &Runtime,
    schedule: &str,
) -> Result<Option<String>, TickingError> {
    let catalog = Catalog::new(runtime.store().clone());
    let newest = catalog.schedule(schedule)?.map(|record| record.tick);
    if let Some(tick) = &newest
        && runtime
            .run_state(tick)?
            .is_some_and(|state| !state.status.is_finished())
    {
        return Ok(None);
    }
    let input = TickInput {
        schedule: schedule.to_string(),
        after_ms: runtime.clock().now_ms(),
    };
    let input = serde_json::to_value(&input)?;
    let tick = runtime
        .start(
            SCHEDULE_WORKFLOW,
            input,
            StartOptions {
                idempotency_key: Some(format!(
                    "schedule-start/{schedule}/{}",
                    newest.as_deref().unwrap_or("first")
                )),
                ..StartOptions::default()
            },
            "scheduler",
        )
        .await?;
    tracing::info!(%schedule, %tick, "schedule ticking");
    Ok(Some(tick))
}

/// [`ensure_ticking`] for every backup schedule. Returns how many chains were started.
pub async fn ensure_all_ticking(
    runtime: &Runtime,
    entities: &Entities,
) -> Result<usize, TickingError> {
    let mut started = 0;
    for record in entities.all(Kind::BackupSchedule)? {
        if ensure_ticking(runtime, &record.id).await?.is_some() {
            started += 1;
        }
    }
    Ok(started)
}

/// How often the scheduler looks for chains that stopped (a tick that failed on a database
/// error) and starts them again.
pub const REPAIR_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// The scheduler: gives every backup schedule a chain of ticks now, then each new schedule one as
/// it is created, and every [`REPAIR_INTERVAL`] restarts any chain that stopped. Runs until the
/// store closes; the server runs it beside the API.
pub async fn run_scheduler(runtime: Runtime, entities: Entities) -> Result<(), TickingError> {
    let head = runtime.store().global_head();
    let started = ensure_all_ticking(&runtime, &entities).await?;
    tracing::info!(started, "scheduler running");
    let mut events = std::pin::pin!(runtime.store().subscribe(head));
    let mut repair = tokio::time::interval(REPAIR_INTERVAL);
    // The first tick of an interval is immediate; the pass above was it.
    repair.tick().await;
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else {
                    return Ok(());
                };
                if let Some(schedule) = created_by(&event?, Kind::BackupSchedule) {
                    ensure_ticking(&runtime, schedule).await?;
                }
            }
            _ = repair.tick() => {
                let restarted = ensure_all_ticking(&runtime, &entities).await?;
                if restarted > 0 {
                    tracing::warn!(restarted, "schedule chains that had stopped started again");
                }
            }
        }
    }
}
