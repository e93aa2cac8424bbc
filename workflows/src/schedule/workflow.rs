//! The schedule tick workflow: wait → next → backup → await → prune. One run per time a
//! schedule's policy names; each run starts the next before it backs up, so the chain of ticks
//! never breaks and the times are durable timers on the engine's clock.
//!
//! - `wait` sleeps until the policy's first time after the tick's `after` instant. It looks
//!   again whenever the log moves (an edited policy or schedule takes effect at once), waits
//!   without a deadline while the schedule is suspended (and, resumed, waits for the next time
//!   after the resumption, not for the times missed), and ends the chain when the schedule is
//!   deleted. A server that was down past the time finds it passed and goes on at once: that is
//!   the one catch-up run; the next tick waits for the first time after *now*, so an outage never
//!   turns into a burst.
//! - `next` starts the following tick (idempotently: a re-run finds the one it started).
//! - `backup` starts the backup, or records why it skipped: the previous backup of the schedule
//!   still running (runs never overlap), or the schedule suspended or deleted meanwhile.
//! - `await` waits for the backup to end.
//! - `prune` applies the policy's retention after a successful backup: the backups beyond what
//!   it keeps are deleted through the delete workflow (data, then unreferenced chunks). Failed
//!   backups never count as copies and the newest successful backup is always kept. When the
//!   chain ended because the schedule was deleted with reclaim `delete`, it deletes all of the
//!   schedule's backups instead.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stowage_engine::{
    RetryPolicy, RunStatus, StartOptions, StepContext, StepError, StepResult, Workflow,
};
use tracing::{Instrument, info, info_span};

use super::{BackupScheduleSpec, Reclaim};
use crate::backup::delete::{DELETE_WORKFLOW, DeleteInput};
use crate::backup::workflow::{BACKUP_WORKFLOW, BackupInput, bind, output};
use crate::catalog::{BackupRecord, BackupStatus, Catalog, CatalogQuery};
use crate::entity::{self, Kind, Record};
use crate::schedule_policy::{SchedulePolicy, SchedulePolicySpec};
use crate::services::Services;

/// The workflow type's name.
pub const SCHEDULE_WORKFLOW: &str = "schedule_tick";

/// A tick's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickInput {
    /// The backup schedule (entity id).
    pub schedule: String,
    /// The tick runs at the policy's first time strictly after this instant (ms since the epoch).
    pub after_ms: i64,
}

/// What the wait step decided.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waited {
    /// The time the tick is for (ms since the epoch), when it ran.
    pub due_ms: Option<i64>,
    /// Why the chain ended instead, when it did.
    pub ended: Option<String>,
    /// Whether the schedule's backups are to be deleted (it was deleted with reclaim `delete`).
    #[serde(default)]
    pub reclaim: bool,
}

/// The wait step's checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct WaitProgress {
    /// The instant the policy's next time is counted from (moved on by a resumption).
    after_ms: i64,
    /// Whether the schedule was suspended when last looked at.
    suspended: bool,
}

/// What the backup step did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStarted {
    /// The backup's id, when one started.
    pub backup: Option<String>,
    /// Its run.
    pub run: Option<String>,
    /// Why no backup started, when none did.
    pub skipped: Option<String>,
}

/// What the prune step deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// The backups deleted.
    pub deleted: Vec<String>,
    /// Deletions that failed, with why (the backup stays and is tried again next time).
    pub failed: BTreeMap<String, String>,
    /// The backups the policy keeps.
    pub kept: Vec<String>,
}

/// A tick step may wait for days: its attempts only fail on database errors.
fn patient() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 100,
        ..RetryPolicy::default()
    }
}

/// The workflow type, over the server's services.
pub fn schedule_workflow(services: Arc<Services>) -> Workflow {
    Workflow::new(SCHEDULE_WORKFLOW)
        .step("wait", patient(), bind(&services, wait))
        .step("next", patient(), bind(&services, next))
        .step("backup", patient(), bind(&services, backup))
        .step("await", patient(), bind(&services, await_backup))
        .step("prune", patient(), bind(&services, prune))
}

fn read_error(what: &str, err: impl std::fmt::Display) -> StepError {
    StepError::retryable(format!("reading {what}: {err}"))
}

fn schedule_record(services: &Services, id: &str) -> Result<Option<Record>, StepError> {
    services
        .entities
        .get(Kind::BackupSchedule, id)
        .map_err(|err| read_error("the schedule", err))
}

/// Why the schedule cannot run now, or its policy and the policy's version.
fn runnable_policy(
    services: &Services,
    spec: &BackupScheduleSpec,
) -> Result<(SchedulePolicy, u64), String> {
    let record = services
        .entities
        .get(Kind::SchedulePolicy, &spec.policy)
        .map_err(|err| format!("reading schedule policy {}: {err}", spec.policy))?
        .ok_or_else(|| format!("schedule policy {} does not exist", spec.policy))?;
    SchedulePolicySpec::parse(&record.spec)
        .map(|policy| (policy, record.version))
        .map_err(|problems| format!("schedule policy {} is invalid: {problems:?}", spec.policy))
}

async fn wait(services: Arc<Services>, mut ctx: StepContext) -> StepResult {
    let input: TickInput = ctx.input()?;
    let mut progress: WaitProgress = ctx.progress().unwrap_or(WaitProgress {
        after_ms: input.after_ms,
        suspended: false,
    });
    let mut head = ctx.runtime().store().head_changes();
    let mut stop = ctx.clone();
    loop {
        let Some(record) = schedule_record(&services, &input.schedule)? else {
            let reclaim = services
                .entities
                .last_spec(Kind::BackupSchedule, &input.schedule)
                .map_err(|err| read_error("the deleted schedule", err))?
                .and_then(|spec| BackupScheduleSpec::parse(&spec).ok())
                .is_some_and(|spec| spec.reclaim == Reclaim::Delete);
            return output(&Waited {
                due_ms: None,
                ended: Some("the schedule was deleted".into()),
                reclaim,
            });
        };
        let spec = BackupScheduleSpec::parse(&record.spec);
        let policy_id = spec.as_ref().ok().map(|spec| spec.policy.clone());
        // The versions the time below is computed from (a policy that is missing or cannot be
        // read counts as version 0).
        let mut seen = (record.version, 0);
        let due = match spec {
            Err(problems) => Err(format!("the schedule's spec is invalid: {problems:?}")),
            Ok(spec) if spec.suspended => {
                if !progress.suspended {
                    progress.suspended = true;
                    ctx.checkpoint(&progress).await?;
                }
                Err("suspended".to_string())
            }
            Ok(spec) => {
                if progress.suspended {
                    // Resumed: the times missed while suspended are not made up.
                    progress = WaitProgress {
                        after_ms: progress.after_ms.max(ctx.now_ms()),
                        suspended: false,
                    };
                    ctx.checkpoint(&progress).await?;
                }
                runnable_policy(&services, &spec).and_then(|(policy, version)| {
                    seen.1 = version;
                    DateTime::from_timestamp_millis(progress.after_ms)
                        .and_then(|after| policy.next_run(after))
                        .map(|due| due.timestamp_millis())
                        .ok_or_else(|| "the policy names no further time".to_string())
                })
            }
        };
        if let Err(reason) = &due {
            tracing::debug!(schedule = %input.schedule, %reason, "schedule waits for a change");
        }
        // Wait for the time, or until the schedule or its policy changes (a new version); other
        // events of the log only cost two reads of stream heads.
        loop {
            let time = async {
                match due {
                    Ok(due_ms) => ctx.sleep_until(due_ms).await,
                    Err(_) => std::future::pending().await,
                }
            };
            tokio::select! {
                () = time => {
                    if let Ok(due_ms) = due {
                        return output(&Waited { due_ms: Some(due_ms), ended: None, reclaim: false });
                    }
                }
                changed = head.changed() => if changed.is_err() {
                    return Err(StepError::retryable("the store closed"));
                },
                () = stop.cancelled() => {
                    return Err(StepError::permanent("cancelled"));
                }
            }
            head.borrow_and_update();
            if versions(&ctx, &input.schedule, policy_id.as_deref())? != seen {
                break;
            }
        }
    }
}

/// The versions of a schedule and of its policy (0 for none): what the wait step's choice of
/// time depends on.
fn versions(
    ctx: &StepContext,
    schedule: &str,
    policy: Option<&str>,
) -> Result<(u64, u64), StepError> {
    let store = ctx.runtime().store();
    let head = |kind: Kind, id: &str| {
        store
            .stream_head(&entity::stream(kind, id))
            .map_err(|err| read_error("an entity's version", err))
    };
    Ok((
        head(Kind::BackupSchedule, schedule)?,
        match policy {
            Some(policy) => head(Kind::SchedulePolicy, policy)?,
            None => 0,
        },
    ))
}

async fn next(_services: Arc<Services>, ctx: StepContext) -> StepResult {
    let input: TickInput = ctx.input()?;
    let waited: Waited = ctx.output("wait")?;
    let Some(due_ms) = waited.due_ms else {
        return output(&serde_json::json!({ "tick": null }));
    };
    // Counted from now when the tick ran late (after an outage): one catch-up, not a burst.
    let after_ms = due_ms.max(ctx.now_ms());
    let following = TickInput {
        schedule: input.schedule.clone(),
        after_ms,
    };
    let tick = ctx
        .runtime()
        .start(
            SCHEDULE_WORKFLOW,
            serde_json::to_value(&following)
                .map_err(|err| StepError::permanent(format!("tick input: {err}")))?,
            StartOptions {
                idempotency_key: Some(format!("schedule-tick/after/{}", ctx.run_id())),
                ..StartOptions::default()
            },
            "scheduler",
        )
        .await
        .map_err(|err| StepError::retryable(format!("starting the next tick: {err}")))?;
    output(&serde_json::json!({ "tick": tick }))
}

fn catalog(ctx: &StepContext) -> Catalog {
    Catalog::new(ctx.runtime().store().clone())
}

/// Every backup the catalog holds of `schedule`.
fn schedule_backups(catalog: &Catalog, schedule: &str) -> Result<Vec<BackupRecord>, StepError> {
    let mut query = CatalogQuery {
        schedule: Some(schedule.to_string()),
        limit: 1000,
        ..CatalogQuery::default()
    };
    let mut backups = Vec::new();
    loop {
        let page = catalog
            .backups(&query, |_| true)
            .map_err(|err| read_error("the catalog", err))?;
        backups.extend(page.items);
        match page.next_after {
            Some(after) => query.after = Some(after),
            None => return Ok(backups),
        }
    }
}

/// A backup name for the run due at `due`: the schedule's name and the time, within 63
/// characters.
fn backup_name(schedule: &str, due: DateTime<Utc>) -> String {
    let stamp = due.format("%Y%m%d-%H%M%S").to_string();
    let room = crate::validate::MAX_NAME - stamp.len() - 1;
    let prefix = schedule[..schedule.len().min(room)].trim_end_matches('-');
    format!("{prefix}-{stamp}")
}

async fn backup(services: Arc<Services>, ctx: StepContext) -> StepResult {
    let input: TickInput = ctx.input()?;
    let waited: Waited = ctx.output("wait")?;
    let skip = |reason: String| {
        info!(schedule = %input.schedule, %reason, "scheduled backup skipped");
        output(&BackupStarted {
            skipped: Some(reason),
            ..BackupStarted::default()
        })
    };
    let Some(due_ms) = waited.due_ms else {
        return output(&BackupStarted::default());
    };
    let due = DateTime::from_timestamp_millis(due_ms)
        .ok_or_else(|| StepError::permanent(format!("due time {due_ms} is out of range")))?;
    let Some(record) = schedule_record(&services, &input.schedule)? else {
        return skip("the schedule was deleted".into());
    };
    let spec = match BackupScheduleSpec::parse(&record.spec) {
        Ok(spec) => spec,
        Err(problems) => return skip(format!("the schedule's spec is invalid: {problems:?}")),
    };
    if spec.suspended {
        return skip("the schedule is suspended".into());
    }
    let key = format!("schedule/{}/{due_ms}", input.schedule);
    let started = ctx
        .runtime()
        .claimed_run(&key)
        .map_err(|err| read_error("the backup's start", err))?;
    if started.is_none() {
        let running = schedule_backups(&catalog(&ctx), &input.schedule)?
            .into_iter()
            .find(|backup| backup.status == BackupStatus::Running);
        if let Some(previous) = running {
            return skip(format!(
                "the previous backup `{}` ({}) is still running",
                previous.name, previous.id
            ));
        }
    }
    let mut labels = spec.backup_labels.clone();
    labels.insert("stowage.io/schedule".into(), record.name.clone());
    let cluster = spec.backup.cluster.clone();
    let backup = BackupInput {
        backup: uuid::Uuid::now_v7().to_string(),
        name: backup_name(&record.name, due),
        spec: spec.backup,
        labels,
        schedule: Some(input.schedule.clone()),
    };
    let run = ctx
        .runtime()
        .start(
            BACKUP_WORKFLOW,
            serde_json::to_value(&backup)
                .map_err(|err| StepError::permanent(format!("backup input: {err}")))?,
            StartOptions {
                idempotency_key: Some(key),
                concurrency_key: Some(format!("cluster/{cluster}")),
                parent: Some(ctx.run_id().to_string()),
            },
            &record.owner,
        )
        .await
        .map_err(|err| StepError::retryable(format!("starting the backup: {err}")))?;
    // A re-run of this step finds the run the first attempt started, with that attempt's id.
    let state = ctx
        .runtime()
        .run_state(&run)
        .map_err(|err| read_error("the backup run", err))?
        .ok_or_else(|| StepError::retryable(format!("backup run {run} has no events")))?;
    let id = state
        .input
        .get("backup")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(&backup.backup)
        .to_string();
    info!(schedule = %input.schedule, backup = %id, %run, "scheduled backup started");
    output(&BackupStarted {
        backup: Some(id),
        run: Some(run),
        skipped: None,
    })
}

async fn await_backup(_services: Arc<Services>, ctx: StepContext) -> StepResult {
    let started: BackupStarted = ctx.output("backup")?;
    let Some(run) = started.run else {
        return output(&serde_json::json!({ "status": null }));
    };
    let state = ctx.wait_for(&run).await?;
    output(&serde_json::json!({
        "status": state.status.as_str(),
        "error": state.error,
    }))
}

/// A backup's creation time.
fn taken_at(backup: &BackupRecord) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&backup.created_at)
        .map(|at| at.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Which of a schedule's backups the policy lets go: successful ones it does not keep, and
/// failed or cancelled ones older than the oldest successful one it keeps (a failure newer than
/// that stays visible). Running and deleting backups are left alone.
pub fn beyond_policy(
    policy: &SchedulePolicy,
    backups: &[BackupRecord],
) -> (Vec<String>, Vec<String>) {
    let finished: Vec<(String, DateTime<Utc>, bool)> = backups
        .iter()
        .filter_map(|backup| match backup.status {
            BackupStatus::Completed => Some((backup.id.clone(), taken_at(backup), true)),
            BackupStatus::Failed | BackupStatus::Cancelled => {
                Some((backup.id.clone(), taken_at(backup), false))
            }
            BackupStatus::Running | BackupStatus::Deleting => None,
        })
        .collect();
    let kept = policy.retained(&finished);
    let oldest_kept = finished
        .iter()
        .filter(|(id, _, _)| kept.contains(id.as_str()))
        .map(|(_, at, _)| *at)
        .min();
    let mut deleted: Vec<(DateTime<Utc>, String)> = finished
        .iter()
        .filter(|(id, at, ok)| {
            !kept.contains(id.as_str()) && (*ok || oldest_kept.is_some_and(|oldest| *at < oldest))
        })
        .map(|(id, at, _)| (*at, id.clone()))
        .collect();
    deleted.sort();
    (
        deleted.into_iter().map(|(_, id)| id).collect(),
        kept.into_iter().map(str::to_string).collect(),
    )
}

async fn prune(services: Arc<Services>, ctx: StepContext) -> StepResult {
    let input: TickInput = ctx.input()?;
    let waited: Waited = ctx.output("wait")?;
    let finished: serde_json::Value = ctx.output("await")?;
    let backups = schedule_backups(&catalog(&ctx), &input.schedule)?;
    let (doomed, kept) = if waited.reclaim {
        let doomed = backups
            .iter()
            .filter(|backup| backup.status != BackupStatus::Deleting)
            .map(|backup| backup.id.clone())
            .collect();
        (doomed, Vec::new())
    } else if finished["status"] == RunStatus::Completed.as_str() {
        let record = schedule_record(&services, &input.schedule)?;
        let policy = record
            .and_then(|record| BackupScheduleSpec::parse(&record.spec).ok())
            .map(|spec| runnable_policy(&services, &spec));
        match policy {
            Some(Ok((policy, _))) => beyond_policy(&policy, &backups),
            Some(Err(reason)) => {
                info!(schedule = %input.schedule, %reason, "retention skipped");
                (Vec::new(), Vec::new())
            }
            None => (Vec::new(), Vec::new()),
        }
    } else {
        (Vec::new(), Vec::new())
    };
    let locations: BTreeMap<&str, &str> = backups
        .iter()
        .map(|backup| (backup.id.as_str(), backup.location.as_str()))
        .collect();
    let mut runs = Vec::new();
    for id in &doomed {
        let delete = DeleteInput {
            backup: id.clone(),
            location: locations
                .get(id.as_str())
                .copied()
                .unwrap_or_default()
                .to_string(),
        };
        let value = serde_json::to_value(&delete)
            .map_err(|err| StepError::permanent(format!("delete input: {err}")))?;
        runs.push((
            id.clone(),
            ctx.start_child(DELETE_WORKFLOW, id, value).await?,
        ));
    }
    let mut pruned = Pruned {
        kept,
        ..Pruned::default()
    };
    for (id, run) in runs {
        let state = ctx
            .wait_for(&run)
            .instrument(info_span!("delete", backup = %id))
            .await?;
        if state.status == RunStatus::Completed {
            pruned.deleted.push(id);
        } else {
            pruned.failed.insert(
                id,
                state.error.unwrap_or_else(|| state.status.as_str().into()),
            );
        }
    }
    info!(
        schedule = %input.schedule,
        deleted = pruned.deleted.len(),
        failed = pruned.failed.len(),
        "retention applied"
    );
    output(&pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_fit_and_carry_the_time() {
        let due = DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default();
        assert_eq!(backup_name("nightly", due), "nightly-20251124-160000");
        let long = "a".repeat(70);
        let name = backup_name(&long, due);
        assert_eq!(name.len(), crate::validate::MAX_NAME);
        assert!(name.ends_with("-20251124-160000"));
    }
}
