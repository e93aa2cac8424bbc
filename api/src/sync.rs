//! `POST /v1/locations/{id}/sync`: starts a catalog sync of a location, which lists the finished
//! backups found in its repository into this server's catalog (as `synced` backups the caller
//! owns). This is how a new server, after the old one and its database are lost, finds the
//! backups it can restore.

use stowage_engine::StartOptions;
use stowage_workflows::catalog::SYNC_WORKFLOW;
use stowage_workflows::entity::{Kind, ShareLevel};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::auth::Principal;
use crate::authz;
use crate::catalog_state::CatalogState;
use crate::entities::{existing, json_reply, rejected};
use crate::error::ApiError;

/// Starts a sync of a location's backups into the catalog.
#[utoipa::path(post, path = "/v1/locations/{id}/sync", tag = "locations", params(("id" = String, Path)),
    responses((status = 202, description = "{run}: the sync run; follow it at /v1/workflows/{run}"),
              (status = 403, description = "Syncing needs the operator role", body = ApiError),
              (status = 404, description = "No location you may see", body = ApiError)))]
pub(crate) async fn sync(
    state: CatalogState,
    principal: Principal,
    id: String,
) -> Result<Response, ApiError> {
    authz::require_operator(&principal)?;
    let location = existing(&state.entities, Kind::Location, &id)?;
    authz::require(&principal, &location, ShareLevel::View)?;
    let run = state
        .runtime
        .start(
            SYNC_WORKFLOW,
            serde_json::json!({ "location": id }),
            StartOptions {
                idempotency_key: None,
                concurrency_key: Some(format!("location/{id}")),
                parent: None,
            },
            &principal.subject,
        )
        .await
        .map_err(|err| ApiError::internal(&err))?;
    Ok(json_reply(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "run": run }),
    ))
}

/// The route.
pub fn routes(
    state: CatalogState,
    principal: impl Filter<Extract = (Principal,), Error = Rejection> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "locations" / String / "sync")
        .and(warp::post())
        .and(warp::any().map(move || state.clone()))
        .and(principal)
        .and_then(|id, state, principal| async move { rejected(sync(state, principal, id).await) })
}
