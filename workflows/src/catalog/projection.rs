//! The `catalog` projection: backup and restore records folded from the events of the backup,
//! restore, delete and sync workflow runs.
//!
//! Keys: `backup/<id>` → [`BackupRecord`] as JSON, with an empty `by/<field>/<value>/<id>` for
//! each of its cluster, location, status and schedule (so a filtered listing reads only what
//! matches); `restore/<id>` → [`RestoreRecord`] as JSON; `schedule/<id>` → [`ScheduleRecord`];
//! `meta/format` → the layout's version;
//! `run/<run id>` → which record the run works on ([`RunIndex`]); `shares/backup/<id>` and
//! `shares/restore/<id>` → the version of the record's shares, which outlives the record so that
//! a record made again (a backup synced back) starts at its share stream's head. Share events
//! (`backup/<id>`, `restore/<id>`, see [`super::sharing`]) set a record's shares; they leave
//! status, progress and everything else alone, and the runs' events leave the shares alone.
//! Events of runs of other workflow types pass by. An event whose payload this projection cannot read is skipped, never
//! refused: refusing it would stop the run that wrote it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stowage_engine::{Projection, ProjectionState, RecordedEvent, RunEvent, RunStatus, run_event};

use super::sharing::{SharedEvent, shared_event};
use super::{
    BackupProgress, BackupRecord, BackupStatus, DELETE_WORKFLOW, Deletion, Origin, RestoreProgress,
    RestoreRecord, RestoreStatus, SCHEDULE_WORKFLOW, SYNC_WORKFLOW, ScheduleRecord, SkippedRun,
};
use crate::backup::workflow::{BACKUP_WORKFLOW, BackupInput, UploadProgress};
use crate::restore::workflow::{RESTORE_WORKFLOW, RestoreInput, VolumesRestored};
use crate::schedule::workflow::{BackupStarted, Pruned, TickInput, Waited};
use crate::sync::SyncedCatalog;

/// The projection's name.
pub const CATALOG_PROJECTION: &str = "catalog";

pub(super) const BACKUP_PREFIX: &[u8] = b"backup/";
pub(super) const RESTORE_PREFIX: &[u8] = b"restore/";

pub(super) fn backup_key(id: &str) -> Vec<u8> {
    [BACKUP_PREFIX, id.as_bytes()].concat()
}

pub(super) fn restore_key(id: &str) -> Vec<u8> {
    [RESTORE_PREFIX, id.as_bytes()].concat()
}

/// The key marking which layout the projection's keys follow; a store whose catalog lacks it
/// (or has another) was built by an older server and is rebuilt from the log at start.
pub(super) const FORMAT_KEY: &[u8] = b"meta/format";
/// This layout: records plus the `by/` indexes. Listings answer with records as stored
/// ([`super::JsonPage`]), so a change of what a stored record holds (a new field of
/// [`BackupRecord`] or [`RestoreRecord`]) changes this too, and the catalog is rebuilt in the new
/// form at the next start.
pub(super) const FORMAT: &[u8] = b"2";

/// The index entry of backup `id` under `field` = `value` (`/` and `%` escaped in the value, so
/// that one value's prefix never covers another's).
pub(super) fn index_key(field: &str, value: &str, id: &str) -> Vec<u8> {
    let value = value.replace('%', "%25").replace('/', "%2F");
    format!("by/{field}/{value}/{id}").into_bytes()
}

/// The prefix of every index entry under `field` = `value`.
pub(super) fn index_prefix(field: &str, value: &str) -> Vec<u8> {
    index_key(field, value, "")
}

/// The index entries of a backup record: one per field listings filter on.
fn index_keys(record: &BackupRecord) -> Vec<Vec<u8>> {
    let mut keys = vec![
        index_key("cluster", &record.cluster, &record.id),
        index_key("location", &record.location, &record.id),
        index_key("status", record.status.as_str(), &record.id),
    ];
    if let Some(schedule) = &record.schedule {
        keys.push(index_key("schedule", schedule, &record.id));
    }
    keys
}

/// Writes a backup record and moves its index entries to its new field values.
fn put_backup(state: &mut ProjectionState<'_>, record: &BackupRecord) -> Result<(), String> {
    let key = backup_key(&record.id);
    let new = index_keys(record);
    if let Some(old) = read::<BackupRecord>(state, &key)? {
        for stale in index_keys(&old).into_iter().filter(|k| !new.contains(k)) {
            state.delete(&stale);
        }
    }
    for entry in &new {
        state.put(entry, Vec::new());
    }
    write(state, &key, record)
}

/// Removes a backup record and its index entries.
fn remove_backup(state: &mut ProjectionState<'_>, id: &str) -> Result<(), String> {
    let key = backup_key(id);
    if let Some(old) = read::<BackupRecord>(state, &key)? {
        for entry in index_keys(&old) {
            state.delete(&entry);
        }
    }
    state.delete(&key);
    Ok(())
}

pub(super) fn schedule_key(id: &str) -> Vec<u8> {
    format!("schedule/{id}").into_bytes()
}

/// The key of the shares' version of a backup (`kind` `backup`) or restore.
fn shares_version_key(kind: &str, id: &str) -> Vec<u8> {
    format!("shares/{kind}/{id}").into_bytes()
}

/// The version of the shares of a backup or restore: its share stream's head as last seen.
fn shares_version(state: &ProjectionState<'_>, kind: &str, id: &str) -> Result<u64, String> {
    Ok(read::<u64>(state, &shares_version_key(kind, id))?.unwrap_or(0))
}

/// Applies a share event: the record's shares and their version.
fn shared(state: &mut ProjectionState<'_>, event: SharedEvent, seq: u64) -> Result<(), String> {
    match event {
        SharedEvent::Backup { id, shares } => {
            write(state, &shares_version_key("backup", &id), &seq)?;
            let Some(mut record) = read::<BackupRecord>(state, &backup_key(&id))? else {
                return Ok(());
            };
            record.shares = shares;
            record.shares_version = seq;
            put_backup(state, &record)
        }
        SharedEvent::Restore { id, shares } => {
            write(state, &shares_version_key("restore", &id), &seq)?;
            let key = restore_key(&id);
            let Some(mut record) = read::<RestoreRecord>(state, &key)? else {
                return Ok(());
            };
            record.shares = shares;
            record.shares_version = seq;
            write(state, &key, &record)
        }
    }
}

pub(super) fn run_key(run: &str) -> Vec<u8> {
    format!("run/{run}").into_bytes()
}

/// Which record a run works on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RunIndex {
    /// `backup`, `restore`, `delete` or `sync`.
    pub kind: String,
    /// The backup or restore id (the location id for a sync).
    pub id: String,
    /// Who started the run.
    pub actor: String,
}

/// The input of a delete run (only the backup matters here).
#[derive(Debug, Deserialize)]
struct DeleteInput {
    backup: String,
}

fn rfc3339(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn read<T: serde::de::DeserializeOwned>(
    state: &ProjectionState<'_>,
    key: &[u8],
) -> Result<Option<T>, String> {
    match state.get(key)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| format!("{}: {err}", String::from_utf8_lossy(key))),
        None => Ok(None),
    }
}

fn write<T: Serialize>(
    state: &mut ProjectionState<'_>,
    key: &[u8],
    value: &T,
) -> Result<(), String> {
    let bytes = serde_json::to_vec(value).map_err(|err| err.to_string())?;
    state.put(key, bytes);
    Ok(())
}

fn number(value: &Value, pointer: &str) -> u64 {
    value.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

/// Maintains the catalog from workflow events.
#[derive(Debug, Default)]
pub struct CatalogProjection;

impl Projection for CatalogProjection {
    fn name(&self) -> &'static str {
        CATALOG_PROJECTION
    }

    fn apply(&self, event: &RecordedEvent, state: &mut ProjectionState<'_>) -> Result<(), String> {
        if state.get(FORMAT_KEY)?.as_deref() != Some(FORMAT) {
            state.put(FORMAT_KEY, FORMAT.to_vec());
        }
        if let Some(shares) = shared_event(event) {
            return shared(state, shares, event.seq);
        }
        let Some(parsed) = run_event(event) else {
            return Ok(());
        };
        let Ok((run, typed)) = parsed else {
            return Ok(());
        };
        let at = rfc3339(event.at_ms);
        if let RunEvent::Started {
            workflow, input, ..
        } = &typed
        {
            return started(state, &run, workflow, input, &event.actor, &at);
        }
        let Some(index) = read::<RunIndex>(state, &run_key(&run))? else {
            return Ok(());
        };
        match index.kind.as_str() {
            "backup" => backup_event(state, &index.id, &run, &typed, &at),
            "restore" => restore_event(state, &index.id, &typed, &at),
            "delete" => delete_event(state, &index.id, &run, &typed, &at),
            "sync" => sync_event(state, &index.actor, &typed, &at),
            "schedule" => schedule_event(state, &index.id, &typed, &at),
            _ => Ok(()),
        }
    }
}

fn started(
    state: &mut ProjectionState<'_>,
    run: &str,
    workflow: &str,
    input: &Value,
    actor: &str,
    at: &str,
) -> Result<(), String> {
    let index = |kind: &str, id: &str| RunIndex {
        kind: kind.into(),
        id: id.into(),
        actor: actor.into(),
    };
    match workflow {
        BACKUP_WORKFLOW => {
            let Ok(input) = serde_json::from_value::<BackupInput>(input.clone()) else {
                return Ok(());
            };
            let key = backup_key(&input.backup);
            let record = match read::<BackupRecord>(state, &key)? {
                // A retry: the same backup, a new run.
                Some(mut record) => {
                    record.run = run.into();
                    record.attempts += 1;
                    record.status = BackupStatus::Running;
                    record.step = None;
                    record.error = None;
                    record.progress = BackupProgress::default();
                    record.finished_at = None;
                    record.updated_at = at.into();
                    record
                }
                None => BackupRecord {
                    id: input.backup.clone(),
                    name: input.name.clone(),
                    owner: actor.into(),
                    shares: Vec::new(),
                    shares_version: shares_version(state, "backup", &input.backup)?,
                    labels: input.labels.clone(),
                    cluster: input.spec.cluster.clone(),
                    location: input.spec.location.clone(),
                    spec: serde_json::to_value(&input.spec).map_err(|err| err.to_string())?,
                    schedule: input.schedule.clone(),
                    status: BackupStatus::Running,
                    step: None,
                    error: None,
                    restorable: false,
                    run: run.into(),
                    attempts: 1,
                    progress: BackupProgress::default(),
                    origin: Origin::Run,
                    deletion: None,
                    created_at: at.into(),
                    updated_at: at.into(),
                    finished_at: None,
                },
            };
            put_backup(state, &record)?;
            write(state, &run_key(run), &index("backup", &input.backup))
        }
        RESTORE_WORKFLOW => {
            let Ok(input) = serde_json::from_value::<RestoreInput>(input.clone()) else {
                return Ok(());
            };
            let record = RestoreRecord {
                id: input.restore.clone(),
                name: input.name.clone(),
                owner: actor.into(),
                shares: Vec::new(),
                shares_version: shares_version(state, "restore", &input.restore)?,
                backup: input.spec.backup.clone(),
                location: input.spec.location.clone(),
                cluster: input.spec.cluster.clone(),
                spec: serde_json::to_value(&input.spec).map_err(|err| err.to_string())?,
                status: RestoreStatus::Running,
                step: None,
                error: None,
                run: run.into(),
                progress: RestoreProgress::default(),
                created_at: at.into(),
                updated_at: at.into(),
                finished_at: None,
            };
            write(state, &restore_key(&input.restore), &record)?;
            write(state, &run_key(run), &index("restore", &input.restore))
        }
        DELETE_WORKFLOW => {
            let Ok(input) = serde_json::from_value::<DeleteInput>(input.clone()) else {
                return Ok(());
            };
            let key = backup_key(&input.backup);
            if let Some(mut record) = read::<BackupRecord>(state, &key)? {
                let previous = match &record.deletion {
                    Some(deletion) if record.status == BackupStatus::Deleting => deletion.previous,
                    _ => record.status,
                };
                record.deletion = Some(Deletion {
                    run: run.into(),
                    previous,
                    error: None,
                });
                record.status = BackupStatus::Deleting;
                record.updated_at = at.into();
                put_backup(state, &record)?;
            }
            write(state, &run_key(run), &index("delete", &input.backup))
        }
        SCHEDULE_WORKFLOW => {
            let Ok(input) = serde_json::from_value::<TickInput>(input.clone()) else {
                return Ok(());
            };
            let key = schedule_key(&input.schedule);
            let mut record =
                read::<ScheduleRecord>(state, &key)?.unwrap_or_else(|| ScheduleRecord {
                    id: input.schedule.clone(),
                    ..ScheduleRecord::default()
                });
            record.tick = run.into();
            record.ticks += 1;
            record.updated_at = at.into();
            write(state, &key, &record)?;
            write(state, &run_key(run), &index("schedule", &input.schedule))
        }
        SYNC_WORKFLOW => {
            let location = input
                .get("location")
                .and_then(Value::as_str)
                .unwrap_or_default();
            write(state, &run_key(run), &index("sync", location))
        }
        _ => Ok(()),
    }
}

/// What [`follow`] made of an event.
enum Followed {
    /// The run ended with this status.
    Ended(RunStatus),
    /// The step or the error changed.
    Changed,
    /// Not an event every record follows.
    Other,
}

/// Follows what every record shows of its run: the step running, the error that gave a step
/// up, and the end (the run's final error, and when).
fn follow(
    event: &RunEvent,
    step: &mut Option<String>,
    error: &mut Option<String>,
    finished_at: &mut Option<String>,
    at: &str,
) -> Followed {
    match event {
        RunEvent::StepStarted { step: started, .. } => *step = Some(started.clone()),
        RunEvent::StepFailed {
            error: failed,
            will_retry: false,
            ..
        } => *error = Some(failed.clone()),
        RunEvent::CleanupStarted { .. } => *step = None,
        RunEvent::Finished {
            status,
            error: final_error,
        } => {
            if final_error.is_some() {
                *error = final_error.clone();
            }
            *step = None;
            *finished_at = Some(at.into());
            return Followed::Ended(*status);
        }
        _ => return Followed::Other,
    }
    Followed::Changed
}

fn backup_event(
    state: &mut ProjectionState<'_>,
    id: &str,
    run: &str,
    event: &RunEvent,
    at: &str,
) -> Result<(), String> {
    let key = backup_key(id);
    let Some(mut record) = read::<BackupRecord>(state, &key)? else {
        return Ok(());
    };
    // Events of an earlier attempt, or of a run whose backup is being deleted, change nothing.
    if record.run != run || record.status == BackupStatus::Deleting {
        return Ok(());
    }
    let progress = &mut record.progress;
    match event {
        RunEvent::StepProgress { step, detail } if step == "collect" => {
            progress.objects = number(detail, "/objects");
        }
        RunEvent::StepProgress { step, detail } if step == "upload" => {
            if let Ok(upload) = serde_json::from_value::<UploadProgress>(detail.clone()) {
                progress.volumes_done = upload.done.len() as u64;
                progress.bytes_read = upload.bytes_read;
                progress.bytes_uploaded = upload.bytes_uploaded;
                progress.files = upload.files;
            }
        }
        RunEvent::StepCompleted { step, output } => match step.as_str() {
            "validate" => {
                progress.namespaces = output
                    .get("namespaces")
                    .and_then(Value::as_array)
                    .map_or(0, |namespaces| namespaces.len() as u64);
            }
            "collect" => progress.objects = number(output, "/summary/objects"),
            "snapshot" => {
                progress.volumes_total = output.as_array().map_or(0, |copies| copies.len() as u64)
            }
            "upload" => {
                progress.volumes_done = output
                    .get("volumes")
                    .and_then(Value::as_array)
                    .map_or(0, |volumes| volumes.len() as u64);
                progress.bytes_read = number(output, "/bytes_read");
                progress.bytes_uploaded = number(output, "/bytes_uploaded");
                progress.files = number(output, "/files");
            }
            "finalize" => record.restorable = true,
            _ => {}
        },
        _ => match follow(
            event,
            &mut record.step,
            &mut record.error,
            &mut record.finished_at,
            at,
        ) {
            Followed::Ended(status) => record.status = BackupStatus::from(status),
            Followed::Changed => {}
            Followed::Other => return Ok(()),
        },
    }
    record.updated_at = at.into();
    put_backup(state, &record)
}

fn restore_event(
    state: &mut ProjectionState<'_>,
    id: &str,
    event: &RunEvent,
    at: &str,
) -> Result<(), String> {
    let key = restore_key(id);
    let Some(mut record) = read::<RestoreRecord>(state, &key)? else {
        return Ok(());
    };
    let progress = &mut record.progress;
    let count = |progress: &mut RestoreProgress, results: Option<&Value>| {
        for result in results.and_then(Value::as_array).into_iter().flatten() {
            match result.get("outcome").and_then(Value::as_str) {
                Some("created") => progress.created += 1,
                Some("skipped") => progress.skipped += 1,
                Some("replaced") => progress.replaced += 1,
                Some("updated") => progress.updated += 1,
                Some("failed") => progress.failed += 1,
                _ => {}
            }
        }
    };
    match event {
        RunEvent::StepProgress { step, detail } if step == "volumes" => {
            if let Ok(volumes) = serde_json::from_value::<VolumesRestored>(detail.clone()) {
                progress.volumes_total = volumes.total as u64;
                progress.volumes_done = volumes.volumes.len() as u64;
                progress.bytes = volumes.bytes;
            }
        }
        RunEvent::StepCompleted { step, output } => match step.as_str() {
            "objects" => {
                count(progress, output.get("results"));
                progress.volumes_total = output
                    .get("claims")
                    .and_then(Value::as_array)
                    .map_or(0, |claims| claims.len() as u64);
            }
            "volumes" => {
                if let Ok(volumes) = serde_json::from_value::<VolumesRestored>(output.clone()) {
                    progress.volumes_done = volumes.volumes.len() as u64;
                    progress.bytes = volumes.bytes;
                }
            }
            "workloads" => count(progress, output.get("results")),
            _ => {}
        },
        _ => match follow(
            event,
            &mut record.step,
            &mut record.error,
            &mut record.finished_at,
            at,
        ) {
            Followed::Ended(status) => record.status = RestoreStatus::from(status),
            Followed::Changed => {}
            Followed::Other => return Ok(()),
        },
    }
    record.updated_at = at.into();
    write(state, &key, &record)
}

fn delete_event(
    state: &mut ProjectionState<'_>,
    backup: &str,
    run: &str,
    event: &RunEvent,
    at: &str,
) -> Result<(), String> {
    let RunEvent::Finished { status, error } = event else {
        return Ok(());
    };
    let key = backup_key(backup);
    let Some(mut record) = read::<BackupRecord>(state, &key)? else {
        return Ok(());
    };
    let Some(deletion) = record
        .deletion
        .clone()
        .filter(|deletion| deletion.run == run)
    else {
        return Ok(());
    };
    if *status == RunStatus::Completed {
        remove_backup(state, backup)?;
        return Ok(());
    }
    // The backup stays as it was; the failure is shown with it.
    record.status = deletion.previous;
    record.deletion = Some(Deletion {
        error: Some(
            error
                .clone()
                .unwrap_or_else(|| format!("the deletion was {}", status.as_str())),
        ),
        ..deletion
    });
    record.updated_at = at.into();
    put_backup(state, &record)
}

fn sync_event(
    state: &mut ProjectionState<'_>,
    actor: &str,
    event: &RunEvent,
    at: &str,
) -> Result<(), String> {
    let RunEvent::StepCompleted { step, output } = event else {
        return Ok(());
    };
    if step != "scan" {
        return Ok(());
    }
    let Ok(scanned) = serde_json::from_value::<SyncedCatalog>(output.clone()) else {
        return Ok(());
    };
    for found in scanned.backups {
        let key = backup_key(&found.id);
        if read::<BackupRecord>(state, &key)?.is_some() {
            continue;
        }
        let finished = rfc3339(i64::try_from(found.finished_at).unwrap_or(i64::MAX / 1000) * 1000);
        let record = BackupRecord {
            id: found.id.clone(),
            name: if found.name.is_empty() {
                found.id.clone()
            } else {
                found.name
            },
            owner: actor.into(),
            shares: Vec::new(),
            shares_version: shares_version(state, "backup", &found.id)?,
            labels: Default::default(),
            cluster: found.cluster,
            location: scanned.location.clone(),
            spec: serde_json::to_value(&found.spec).map_err(|err| err.to_string())?,
            schedule: None,
            status: BackupStatus::Completed,
            step: None,
            error: None,
            restorable: true,
            run: String::new(),
            attempts: 0,
            progress: BackupProgress {
                objects: found.objects,
                volumes_total: found.volumes.len() as u64,
                volumes_done: found.volumes.len() as u64,
                bytes_read: found.bytes,
                ..BackupProgress::default()
            },
            origin: Origin::Synced,
            deletion: None,
            created_at: finished.clone(),
            updated_at: at.into(),
            finished_at: Some(finished),
        };
        put_backup(state, &record)?;
    }
    Ok(())
}

/// Folds what a schedule's tick did into the schedule's record.
fn schedule_event(
    state: &mut ProjectionState<'_>,
    id: &str,
    event: &RunEvent,
    at: &str,
) -> Result<(), String> {
    let RunEvent::StepCompleted { step, output } = event else {
        return Ok(());
    };
    let key = schedule_key(id);
    let Some(mut record) = read::<ScheduleRecord>(state, &key)? else {
        return Ok(());
    };
    match step.as_str() {
        "wait" => {
            let Ok(waited) = serde_json::from_value::<Waited>(output.clone()) else {
                return Ok(());
            };
            if let Some(due_ms) = waited.due_ms {
                record.last_due = Some(rfc3339(due_ms));
            }
            if waited.ended.is_some() {
                record.ended = waited.ended;
            }
        }
        "backup" => {
            let Ok(started) = serde_json::from_value::<BackupStarted>(output.clone()) else {
                return Ok(());
            };
            if let Some(backup) = started.backup {
                record.last_backup = Some(backup);
                record.backups_started += 1;
            }
            if let Some(reason) = started.skipped {
                record.skipped += 1;
                record.last_skipped = Some(SkippedRun {
                    due: record.last_due.clone().unwrap_or_default(),
                    reason,
                });
            }
        }
        "prune" => {
            if let Ok(pruned) = serde_json::from_value::<Pruned>(output.clone()) {
                record.pruned += pruned.deleted.len() as u64;
            }
        }
        _ => return Ok(()),
    }
    record.updated_at = at.into();
    write(state, &key, &record)
}
