//! The REST routes of workflow runs (`/v1/workflows`): the runs you may see, a page of summaries
//! at a time; a run's state (steps, attempts, outputs, errors) and its events, for `describe` and
//! `logs`. One rule, [`may_see_run`], decides who sees a run: admins every run; others the runs of
//! the backups and restores they may see, and any other run (a sync, a schedule tick) that they
//! started.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use stowage_engine::{RunState, RunStatus, RunSummary};
use stowage_workflows::backup::workflow::BACKUP_WORKFLOW;
use stowage_workflows::catalog::DELETE_WORKFLOW;
use stowage_workflows::restore::workflow::RESTORE_WORKFLOW;
use stowage_workflows::schedule::SCHEDULE_WORKFLOW;
use stowage_workflows::sync::SYNC_WORKFLOW;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::sse::Event;
use warp::{Filter, Rejection, Reply};

use crate::audit::audit_event;
use crate::auth::Principal;
use crate::authz;
use crate::catalog_state::CatalogState;
use crate::entities::{json_reply, rejected};
use crate::error::ApiError;
use crate::listing::{Filter as ListFilter, ListQuery, list_query};

/// The kind of the event that ends a run.
const FINISHED_EVENT: &str = "workflow.finished";

/// The workflow types the server runs, as the `type` filter takes them (a test holds this to
/// the types [`crate::server_runtime`] registers).
pub const WORKFLOW_TYPES: &[&str] = &[
    BACKUP_WORKFLOW,
    DELETE_WORKFLOW,
    SYNC_WORKFLOW,
    RESTORE_WORKFLOW,
    SCHEDULE_WORKFLOW,
];

/// The statuses a run can be in, as the `status` filter takes them.
const RUN_STATUSES: &[&str] = &[
    RunStatus::Running.as_str(),
    RunStatus::Completed.as_str(),
    RunStatus::Failed.as_str(),
    RunStatus::Cancelled.as_str(),
];

/// Summaries read per read of the database while a listing fills a page.
const SCAN_BATCH: usize = 256;

/// Whether `principal` may see run `id`: admins every run; others the runs of the backups
/// (their backup and delete runs) and restores they may see, and any other run (a sync, a
/// schedule tick) that they started.
fn may_see_run(state: &CatalogState, principal: &Principal, id: &str) -> Result<bool, ApiError> {
    if principal.is_admin() {
        return Ok(true);
    }
    let owner = state
        .catalog
        .run_owner(id)
        .map_err(|err| ApiError::internal(&err))?;
    Ok(match owner {
        Some((kind, record)) if kind == "backup" || kind == "delete" => state
            .catalog
            .backup(&record)
            .map_err(|err| ApiError::internal(&err))?
            .is_some_and(|backup| {
                authz::level_of(principal, &backup.owner, &backup.shares).is_some()
            }),
        Some((kind, record)) if kind == "restore" => state
            .catalog
            .restore(&record)
            .map_err(|err| ApiError::internal(&err))?
            .is_some_and(|restore| {
                authz::level_of(principal, &restore.owner, &restore.shares).is_some()
            }),
        // A sync, a schedule tick, or a run the catalog knows nothing of: whoever started it.
        _ => state
            .runtime
            .store()
            .read_stream(&stowage_engine::run_stream(id), 1, 1)
            .map_err(|err| ApiError::internal(&err))?
            .first()
            .is_some_and(|started| started.actor == principal.subject),
    })
}

/// Run `id` if `principal` may see it ([`may_see_run`]); a 404 otherwise, as for no run at all.
fn visible_run(
    state: &CatalogState,
    principal: &Principal,
    id: &str,
) -> Result<RunState, ApiError> {
    let hidden = || authz::not_found("workflow run", id);
    let run = state
        .runtime
        .run_state(id)
        .map_err(|err| ApiError::internal(&err))?
        .ok_or_else(hidden)?;
    if may_see_run(state, principal, id)? {
        Ok(run)
    } else {
        Err(hidden())
    }
}

/// One run in a listing: its summary.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunItem {
    /// The run's id (`GET /v1/workflows/{id}` has its details).
    pub id: String,
    /// The workflow type: backup, backup_delete, catalog_sync, restore or schedule_tick.
    #[serde(rename = "type")]
    pub workflow_type: String,
    /// running, completed, failed or cancelled.
    pub status: String,
    /// The step running (a cleanup step while it cleans up); null once it finished.
    pub step: Option<String>,
    /// Why it failed (known once its cleanup began); null unless it failed.
    pub error: Option<String>,
    /// Steps completed so far, cleanup steps included.
    pub steps_completed: u32,
    /// Whether its cleanup has begun.
    pub cleaning_up: bool,
    /// The run that started it, if a run did.
    pub parent: Option<String>,
    /// When it started (RFC 3339, UTC).
    pub started_at: String,
    /// When it last changed (RFC 3339, UTC).
    pub updated_at: String,
    /// When it finished (RFC 3339, UTC); null while it runs.
    pub finished_at: Option<String>,
}

impl RunItem {
    fn new(id: String, summary: RunSummary) -> Self {
        let rfc3339 = |at_ms: i64| {
            chrono::DateTime::from_timestamp_millis(at_ms)
                .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default()
        };
        Self {
            id,
            status: summary.status.as_str().to_string(),
            finished_at: summary.finished_at_ms().map(rfc3339),
            started_at: rfc3339(summary.started_at_ms),
            updated_at: rfc3339(summary.updated_at_ms),
            workflow_type: summary.workflow,
            step: summary.step,
            error: summary.error,
            steps_completed: summary.steps_completed,
            cleaning_up: summary.cleaning_up,
            parent: summary.parent,
        }
    }
}

/// A page of runs.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunPage {
    /// The runs, oldest first (by id: run ids are UUID v7).
    pub items: Vec<RunItem>,
    /// Pass as `after` for the next page; null when there is none.
    pub next_after: Option<String>,
}

/// The runs you may see, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/workflows", tag = "workflows",
    params(("after" = Option<String>, Query, description = "The previous page's next_after"),
           ("limit" = Option<usize>, Query, description = "1 to 1000 (default 100)"),
           ("type" = Option<String>, Query, description = "Runs of this workflow type: backup, backup_delete, catalog_sync, restore or schedule_tick"),
           ("status" = Option<String>, Query, description = "Runs in this status: running, completed, failed or cancelled")),
    responses((status = 200, description = "A page of the runs you may see: those of the backups and restores you may see, and the others you started (every run for admins)", body = RunPage),
              (status = 400, description = "A parameter is wrong; details.parameter names it", body = ApiError)))]
pub(crate) fn list(
    state: &CatalogState,
    principal: &Principal,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let query = list_query(
        query,
        &[
            ListFilter::Type(WORKFLOW_TYPES),
            ListFilter::Status(RUN_STATUSES),
        ],
    )?;
    let page = runs_page(state, principal, &query)?;
    Ok(json_reply(StatusCode::OK, &page))
}

/// The page `query` asks for: runs after `query.after` in id order that match its filters and
/// that `principal` may see, until `query.limit` of them; `next_after` is set only when another
/// such run follows.
fn runs_page(
    state: &CatalogState,
    principal: &Principal,
    query: &ListQuery,
) -> Result<RunPage, ApiError> {
    let (workflow_type, status) = (query.filter("type"), query.filter("status"));
    let mut items: Vec<RunItem> = Vec::new();
    let mut cursor = query.after.clone();
    loop {
        let batch = state
            .runtime
            .run_summaries(cursor.as_deref(), SCAN_BATCH)
            .map_err(|err| ApiError::internal(&err))?;
        let exhausted = batch.len() < SCAN_BATCH;
        for (id, summary) in batch {
            cursor = Some(id.clone());
            let wanted = workflow_type.is_none_or(|wanted| summary.workflow == wanted)
                && status.is_none_or(|wanted| summary.status.as_str() == wanted);
            if !wanted || !may_see_run(state, principal, &id)? {
                continue;
            }
            if items.len() == query.limit {
                let next_after = items.last().map(|item| item.id.clone());
                return Ok(RunPage { items, next_after });
            }
            items.push(RunItem::new(id, summary));
        }
        if exhausted {
            return Ok(RunPage {
                items,
                next_after: None,
            });
        }
    }
}

/// A run's state.
#[utoipa::path(get, path = "/v1/workflows/{id}", tag = "workflows", params(("id" = String, Path)),
    responses((status = 200, description = "Its status, steps, attempts, outputs and errors"),
              (status = 404, description = "None you may see", body = ApiError)))]
pub(crate) fn get(
    state: &CatalogState,
    principal: &Principal,
    id: &str,
) -> Result<Response, ApiError> {
    let run = visible_run(state, principal, id)?;
    Ok(json_reply(StatusCode::OK, &run))
}

/// A run's events, oldest first; with `follow=true`, as server-sent events (`event: audit`)
/// that go on live until the run finishes.
#[utoipa::path(get, path = "/v1/workflows/{id}/events", tag = "workflows",
    params(("id" = String, Path),
           ("follow" = Option<bool>, Query, description = "Send the events as server-sent events, live until the run ends")),
    responses((status = 200, description = "{events: [...]} as in the audit stream; with follow, each as an `audit` server-sent event"),
              (status = 400, description = "An unknown parameter or a follow that is not true or false", body = ApiError),
              (status = 404, description = "None you may see", body = ApiError)))]
pub(crate) fn events(
    state: &CatalogState,
    principal: &Principal,
    id: &str,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let mut follow = false;
    for (name, value) in query {
        match (name.as_str(), value.as_str()) {
            ("follow", "true") => follow = true,
            ("follow", "false") => follow = false,
            ("follow", other) => {
                return Err(ApiError::bad_parameter(
                    "follow",
                    format!("`follow` must be true or false, not `{other}`"),
                ));
            }
            (other, _) => {
                return Err(ApiError::bad_parameter(
                    other,
                    format!("unknown parameter `{other}`; this route takes follow"),
                ));
            }
        }
    }
    visible_run(state, principal, id)?;
    if follow {
        return Ok(follow_run(state, id)?.into_response());
    }
    let events: Vec<_> = state
        .runtime
        .run_events(id)
        .map_err(|err| ApiError::internal(&err))?
        .iter()
        .map(audit_event)
        .collect();
    Ok(json_reply(
        StatusCode::OK,
        &serde_json::json!({ "events": events }),
    ))
}

/// The events of run `id` as server-sent events: those written so far, then each new one, until
/// the one that finishes the run.
fn follow_run(state: &CatalogState, id: &str) -> Result<impl Reply + use<>, ApiError> {
    let store = state.runtime.store().clone();
    let stream = stowage_engine::run_stream(id);
    // Live events from the head as it is now; the run's own stream up to it is read first, so
    // nothing falls between the two (an event in both is sent once, by its sequence).
    let head = store.global_head();
    let written = state
        .runtime
        .run_events(id)
        .map_err(|err| ApiError::internal(&err))?;
    let last_written = written.last().map_or(0, |event| event.seq);
    let live = store.subscribe(head).try_filter(move |event| {
        std::future::ready(event.stream == stream && event.seq > last_written)
    });
    let events = futures::stream::iter(written.into_iter().map(Ok))
        .chain(live)
        // After the event that finishes the run, an end marker: the stream stops there, not at
        // an event that would never come.
        .flat_map(|event| {
            let finished = matches!(&event, Ok(event) if event.kind == FINISHED_EVENT);
            let mut items = vec![Some(event)];
            if finished {
                items.push(None);
            }
            futures::stream::iter(items)
        })
        .take_while(|item| std::future::ready(item.is_some()))
        .filter_map(std::future::ready)
        .map(|event| -> Result<Event, Infallible> {
            Ok(match event {
                Ok(event) => Event::default()
                    .id(event.global_seq.to_string())
                    .event("audit")
                    .json_data(audit_event(&event))
                    .unwrap_or_else(|err| Event::default().event("error").data(err.to_string())),
                Err(err) => Event::default().event("error").data(err.to_string()),
            })
        });
    Ok(warp::sse::reply(
        warp::sse::keep_alive()
            .interval(Duration::from_secs(15))
            .stream(events),
    ))
}

/// The routes under `/v1/workflows`.
pub fn routes(
    state: CatalogState,
    principal: impl Filter<Extract = (Principal,), Error = Rejection> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let base = warp::path("v1").and(warp::path("workflows"));
    let with = move || {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };
    let list = base
        .and(warp::path::end())
        .and(warp::get())
        .and(with())
        .and(principal.clone())
        .and(warp::query::<HashMap<String, String>>())
        .and_then(
            |state: CatalogState, principal: Principal, query| async move {
                rejected(list(&state, &principal, &query))
            },
        );
    let get = base
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::get())
        .and(with())
        .and(principal.clone())
        .and_then(
            |id: String, state: CatalogState, principal: Principal| async move {
                rejected(get(&state, &principal, &id))
            },
        );
    let events = base
        .and(warp::path::param::<String>())
        .and(warp::path("events"))
        .and(warp::path::end())
        .and(warp::get())
        .and(with())
        .and(principal)
        .and(warp::query::<HashMap<String, String>>())
        .and_then(
            |id: String, state: CatalogState, principal: Principal, query| async move {
                rejected(events(&state, &principal, &id, &query))
            },
        );
    list.or(get).unify().or(events).unify()
}
