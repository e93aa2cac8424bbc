//! The REST routes of workflow runs (`/v1/workflows/{id}`): a run's state (steps, attempts,
//! outputs, errors) and its events, for `describe` and `logs`. A run is visible to whoever may
//! see the backup or restore it works on; other runs (syncs) to whoever started them, and to admins.

use stowage_engine::RunState;
use stowage_workflows::entity::ShareLevel;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::audit::audit_event;
use crate::auth::Principal;
use crate::authz;
use crate::backups::visible_backup;
use crate::catalog_state::CatalogState;
use crate::entities::{json_reply, rejected};
use crate::error::ApiError;

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

/// A run's events, oldest first.
#[utoipa::path(get, path = "/v1/workflows/{id}/events", tag = "workflows", params(("id" = String, Path)),
    responses((status = 200, description = "{events: [...]} as in the audit stream"),
              (status = 404, description = "None you may see", body = ApiError)))]
pub(crate) fn events(
    state: &CatalogState,
    principal: &Principal,
    id: &str,
) -> Result<Response, ApiError> {
    visible_run(state, principal, id)?;
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
        .and_then(
            |id: String, state: CatalogState, principal: Principal| async move {
                rejected(events(&state, &principal, &id))
            },
        );
    get.or(events).unify()
}
