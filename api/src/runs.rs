//! The REST routes of workflow runs (`/v1/workflows/{id}`): a run's state (steps, attempts,
//! outputs, errors) and its events, for `describe` and `logs`. A run is visible to whoever may
//! see the backup or restore it works on; other runs (syncs) to whoever started them, and to admins.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use stowage_engine::RunState;
use stowage_workflows::entity::ShareLevel;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::sse::Event;
use warp::{Filter, Rejection, Reply};

use crate::audit::audit_event;
use crate::auth::Principal;
use crate::authz;
use crate::backups::visible_backup;
use crate::catalog_state::CatalogState;
use crate::entities::{json_reply, rejected};
use crate::error::ApiError;

/// The kind of the event that ends a run.
const FINISHED_EVENT: &str = "workflow.finished";

/// Run `id` if `principal` may see it.
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
    if principal.is_admin() {
        return Ok(run);
    }
    let owner = state
        .catalog
        .run_owner(id)
        .map_err(|err| ApiError::internal(&err))?;
    let allowed = match owner {
        Some((kind, record)) if kind == "backup" || kind == "delete" => {
            visible_backup(state, principal, &record, ShareLevel::View).is_ok()
        }
        Some((kind, record)) if kind == "restore" => state
            .catalog
            .restore(&record)
            .map_err(|err| ApiError::internal(&err))?
            .is_some_and(|restore| {
                authz::level_of(principal, &restore.owner, &restore.shares).is_some()
            }),
        // A sync, or a run of a record that is gone: whoever started it.
        _ => state
            .runtime
            .run_events(id)
            .map_err(|err| ApiError::internal(&err))?
            .first()
            .is_some_and(|started| started.actor == principal.subject),
    };
    if allowed { Ok(run) } else { Err(hidden()) }
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
    get.or(events).unify()
}
