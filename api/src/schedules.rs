//! The routes that act on a backup schedule beyond the entity routes it shares with every kind
//! (`/v1/backup-schedules`): suspend and resume. Both change the schedule's spec like an update
//! does (a new version), so the scheduler sees them through the log.

use stowage_workflows::entity::{Entities, Kind, ShareLevel};
use stowage_workflows::schedule::BackupScheduleSpec;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::auth::Principal;
use crate::authz;
use crate::entities::{entity_error, existing, invalid, record_reply, rejected};
use crate::error::ApiError;

/// Sets the schedule's `suspended` flag; the same flag again changes nothing.
async fn set_suspended(
    entities: Entities,
    principal: Principal,
    id: String,
    suspended: bool,
) -> Result<Response, ApiError> {
    let record = existing(&entities, Kind::BackupSchedule, &id)?;
    authz::require(&principal, &record, ShareLevel::Full)?;
    let mut spec = BackupScheduleSpec::parse(&record.spec).map_err(invalid)?;
    if spec.suspended == suspended {
        return Ok(record_reply(StatusCode::OK, &record, &entities));
    }
    spec.suspended = suspended;
    let spec = serde_json::to_value(&spec).map_err(|err| ApiError::internal(&err))?;
    let record = entities
        .update(
            Kind::BackupSchedule,
            &id,
            record.version,
            record.labels.clone(),
            spec,
            &principal.subject,
        )
        .await
        .map_err(entity_error)?;
    Ok(record_reply(StatusCode::OK, &record, &entities))
}

/// Stops a schedule from starting backups until it is resumed. (The OpenAPI operation: utoipa
/// reads the attributes, nothing calls the function.)
#[allow(dead_code)]
#[utoipa::path(post, path = "/v1/backup-schedules/{id}/suspend", tag = "backup-schedules",
    params(("id" = String, Path)),
    responses((status = 200, description = "The schedule, suspended"),
              (status = 403, description = "Suspending needs full rights", body = ApiError),
              (status = 404, description = "No schedule you may see", body = ApiError)))]
pub(crate) fn suspend() {}

/// Lets a suspended schedule run again from the next time its policy names. (The OpenAPI
/// operation.)
#[allow(dead_code)]
#[utoipa::path(post, path = "/v1/backup-schedules/{id}/resume", tag = "backup-schedules",
    params(("id" = String, Path)),
    responses((status = 200, description = "The schedule, running"),
              (status = 403, description = "Resuming needs full rights", body = ApiError),
              (status = 404, description = "No schedule you may see", body = ApiError)))]
pub(crate) fn resume() {}

/// `POST /v1/backup-schedules/{id}/suspend` and `.../resume`.
pub fn routes(
    entities: Entities,
    principal: impl Filter<Extract = (Principal,), Error = Rejection> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "backup-schedules" / String / String)
        .and(warp::post())
        .and(warp::any().map(move || entities.clone()))
        .and(principal)
        .and_then(
            |id: String, action: String, entities: Entities, principal: Principal| async move {
                let suspended = match action.as_str() {
                    "suspend" => true,
                    "resume" => false,
                    _ => return Err(warp::reject::not_found()),
                };
                rejected(set_suspended(entities, principal, id, suspended).await)
            },
        )
}
