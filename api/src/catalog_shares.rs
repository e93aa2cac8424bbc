//! Sharing backups and restores: `PUT /v1/backups/{id}/shares` and `PUT /v1/restores/{id}/shares`
//! replace who besides the owner may see (`view`), restore from (`restore`) or manage (`full`)
//! one. Only a caller with full rights on it may; the change names the shares' version
//! (`shares_version` of the record, as the `version` field or an `If-Match` ETag), as entity
//! shares do. The shares are events of the catalog (`stowage_workflows::catalog`), so the
//! record's `shares` are what the backup and restore routes check.

use bytes::Bytes;
use stowage_workflows::catalog::ShareError;
use stowage_workflows::entity::ShareLevel;
use warp::http::StatusCode;
use warp::http::header::ETAG;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::auth::Principal;
use crate::authz;
use crate::backups::visible_backup;
use crate::catalog_state::CatalogState;
use crate::entities::{MAX_BODY, SharesBody, invalid, json_reply, parse_body, rejected};
use crate::error::ApiError;
use crate::preconditions::{etag, precondition_failed, requested_version};
use crate::restores::visible_restore;

/// The version a share change is made at: `If-Match` or the body's `version` (one is needed).
fn version_to_change(
    if_match: Option<&str>,
    from_body: Option<u64>,
    current: u64,
) -> Result<u64, ApiError> {
    requested_version(if_match, from_body, current)?.ok_or_else(|| {
        ApiError::invalid(
            "version",
            "give the shares_version you read, as `version` or as an `If-Match` header",
        )
    })
}

/// The answer for a failed share change; a stale version under `If-Match` is a failed
/// precondition (412), a stale `version` field a conflict (409).
fn share_error(err: ShareError, if_match: Option<&str>) -> ApiError {
    match err {
        ShareError::VersionConflict { current, .. } if if_match.is_some() => {
            precondition_failed(current)
        }
        ShareError::VersionConflict { current, .. } => ApiError::conflict(err.to_string())
            .with_details(serde_json::json!({ "current_version": current })),
        ShareError::Invalid(problems) => invalid(problems),
        ShareError::NotFound { kind, ref id } => authz::not_found(kind, id),
        ShareError::Catalog(_) | ShareError::Store(_) => ApiError::internal(&err),
    }
}

/// The record, with its shares' version as the `ETag`.
fn shares_reply(record: &impl serde::Serialize, version: u64) -> Response {
    let mut response = json_reply(StatusCode::OK, record);
    response.headers_mut().insert(ETAG, etag(version));
    response
}

/// Replaces who a backup is shared with.
#[utoipa::path(put, path = "/v1/backups/{id}/shares", tag = "backups", request_body = SharesBody,
    params(("id" = String, Path),
           ("If-Match" = Option<String>, Header, description = "The shares_version read, as `\"<version>\"` (instead of `version`)")),
    responses((status = 200, description = "The backup's record with its new shares",
               headers(("ETag" = String, description = "The new shares_version, `\"<version>\"`"))),
              (status = 403, description = "Sharing needs full rights on the backup", body = ApiError),
              (status = 409, description = "The shares changed since `version`", body = ApiError),
              (status = 412, description = "The shares changed since the `If-Match` ETag", body = ApiError),
              (status = 422, description = "A share or the version is invalid; details name the field", body = ApiError)))]
pub(crate) async fn share_backup(
    state: CatalogState,
    principal: Principal,
    id: String,
    if_match: Option<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let record = visible_backup(&state, &principal, &id, ShareLevel::Full)?;
    let body: SharesBody = parse_body(&body)?;
    let version = version_to_change(if_match.as_deref(), body.version, record.shares_version)?;
    let record = state
        .catalog
        .share_backup(&id, version, body.shares, &principal.subject)
        .await
        .map_err(|err| share_error(err, if_match.as_deref()))?;
    Ok(shares_reply(&record, record.shares_version))
}

/// Replaces who a restore is shared with.
#[utoipa::path(put, path = "/v1/restores/{id}/shares", tag = "restores", request_body = SharesBody,
    params(("id" = String, Path),
           ("If-Match" = Option<String>, Header, description = "The shares_version read, as `\"<version>\"` (instead of `version`)")),
    responses((status = 200, description = "The restore's record with its new shares",
               headers(("ETag" = String, description = "The new shares_version, `\"<version>\"`"))),
              (status = 403, description = "Sharing needs full rights on the restore", body = ApiError),
              (status = 409, description = "The shares changed since `version`", body = ApiError),
              (status = 412, description = "The shares changed since the `If-Match` ETag", body = ApiError),
              (status = 422, description = "A share or the version is invalid; details name the field", body = ApiError)))]
pub(crate) async fn share_restore(
    state: CatalogState,
    principal: Principal,
    id: String,
    if_match: Option<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let record = visible_restore(&state, &principal, &id, ShareLevel::Full)?;
    let body: SharesBody = parse_body(&body)?;
    let version = version_to_change(if_match.as_deref(), body.version, record.shares_version)?;
    let record = state
        .catalog
        .share_restore(&id, version, body.shares, &principal.subject)
        .await
        .map_err(|err| share_error(err, if_match.as_deref()))?;
    Ok(shares_reply(&record, record.shares_version))
}

/// The routes `PUT /v1/backups/{id}/shares` and `PUT /v1/restores/{id}/shares`.
pub fn routes(
    state: CatalogState,
    principal: impl Filter<Extract = (Principal,), Error = Rejection> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let body = warp::body::content_length_limit(MAX_BODY).and(warp::body::bytes());
    let with = move || {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };
    let shares_of = |collection: &'static str| {
        warp::path("v1")
            .and(warp::path(collection))
            .and(warp::path::param::<String>())
            .and(warp::path("shares"))
            .and(warp::path::end())
            .and(warp::put())
    };
    let backup = shares_of("backups")
        .and(with())
        .and(principal.clone())
        .and(warp::header::optional::<String>("if-match"))
        .and(body)
        .and_then(|id, state, principal, if_match, body| async move {
            rejected(share_backup(state, principal, id, if_match, body).await)
        });
    let restore = shares_of("restores")
        .and(with())
        .and(principal)
        .and(warp::header::optional::<String>("if-match"))
        .and(body)
        .and_then(|id, state, principal, if_match, body| async move {
            rejected(share_restore(state, principal, id, if_match, body).await)
        });
    backup.or(restore).unify()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_stale_version_is_a_conflict_or_a_failed_precondition() {
        let stale = || ShareError::VersionConflict {
            kind: "backup",
            id: "b1".into(),
            expected: 1,
            current: 2,
        };
        let field = share_error(stale(), None);
        assert_eq!(field.status, 409);
        assert_eq!(field.details["current_version"], 2);
        let header = share_error(stale(), Some("\"1\""));
        assert_eq!(header.status, 412);
        assert_eq!(header.details["current_version"], 2);
        assert_eq!(
            version_to_change(None, None, 3).unwrap_err().details["field"],
            "version"
        );
    }
}
