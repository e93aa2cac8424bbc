//! The REST routes of backups (`/v1/backups`): start one, list and describe them from the
//! catalog, cancel, retry and delete. Starting checks the spec and that the caller may use the
//! cluster, location and rules it names, then hands the run to the engine; the answer is the
//! catalog record, which the run keeps current.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde::Deserialize;
use stowage_engine::StartOptions;
use stowage_workflows::backup::BackupSpec;
use stowage_workflows::backup::workflow::{BACKUP_WORKFLOW, BackupInput};
use stowage_workflows::catalog::{BackupRecord, BackupStatus, DELETE_WORKFLOW};
use stowage_workflows::entity::{Kind, ShareLevel};
use stowage_workflows::validate::{Problems, check_name};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::auth::Principal;
use crate::authz::{self, Owned};
use crate::catalog_state::CatalogState;
use crate::entities::{MAX_BODY, invalid, json_reply, parse_body, rejected, stored_json_reply};
use crate::error::ApiError;
use crate::grants;
use crate::listing::{Filter as ListFilter, catalog_query};

/// Body of `POST /v1/backups`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBackup {
    /// The name: lower-case letters, digits and `-`.
    pub name: String,
    /// Labels, for filtering lists.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What to back up: cluster, location, selection, rules, volumes (see docs/backup.md).
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
}

/// The header whose value makes a repeated start return the first backup.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

pub(crate) fn backup_owned(record: &BackupRecord) -> Owned<'_> {
    Owned {
        kind: "backup",
        id: &record.id,
        name: &record.name,
        owner: &record.owner,
        shares: &record.shares,
    }
}

/// The backup `id` if `principal` holds `needed` on it.
pub(crate) fn visible_backup(
    state: &CatalogState,
    principal: &Principal,
    id: &str,
    needed: ShareLevel,
) -> Result<BackupRecord, ApiError> {
    let record = state
        .catalog
        .backup(id)
        .map_err(|err| ApiError::internal(&err))?
        .ok_or_else(|| authz::not_found("backup", id))?;
    authz::require_on(principal, backup_owned(&record), needed)?;
    Ok(record)
}

/// Starts a backup.
#[utoipa::path(post, path = "/v1/backups", tag = "backups", request_body = CreateBackup,
    params(("idempotency-key" = Option<String>, Header, description = "A repeated request with the same key returns the first backup")),
    responses((status = 202, description = "Started; the catalog record"),
              (status = 403, description = "Starting needs the operator role; or the cluster is shared with you and does not grant you every namespace named (details: namespaces, cluster)", body = ApiError),
              (status = 422, description = "Invalid, or names a cluster, location or rule you may not use", body = ApiError)))]
pub(crate) async fn create(
    state: CatalogState,
    principal: Principal,
    idempotency_key: Option<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    authz::require_operator(&principal)?;
    let body: CreateBackup = parse_body(&body)?;
    let mut problems = Problems::default();
    check_name(&mut problems, "name", &body.name);
    problems.finish().map_err(invalid)?;
    let spec = BackupSpec::parse(&body.spec).map_err(invalid)?;
    let cluster = state.usable(
        &principal,
        Kind::Cluster,
        "spec.cluster",
        &spec.cluster,
        ShareLevel::View,
    )?;
    grants::check_backup(&principal, &cluster, &spec)?;
    state.usable(
        &principal,
        Kind::Location,
        "spec.location",
        &spec.location,
        ShareLevel::View,
    )?;
    for (field, rules) in [
        ("spec.pre_rules", &spec.pre_rules),
        ("spec.post_rules", &spec.post_rules),
    ] {
        for (index, rule) in rules.iter().enumerate() {
            state.usable(
                &principal,
                Kind::Rule,
                &format!("{field}[{index}]"),
                rule,
                ShareLevel::View,
            )?;
        }
    }
    let backup = uuid::Uuid::now_v7().to_string();
    let cluster = spec.cluster.clone();
    let input = BackupInput {
        backup: backup.clone(),
        name: body.name,
        spec,
        labels: body.labels,
        schedule: None,
    };
    let input = serde_json::to_value(&input).map_err(|err| ApiError::internal(&err))?;
    let run = state
        .runtime
        .start(
            BACKUP_WORKFLOW,
            input,
            StartOptions {
                idempotency_key: Some(match idempotency_key {
                    Some(key) => format!("backup-request/{}/{key}", principal.subject),
                    None => format!("backup/{backup}/1"),
                }),
                concurrency_key: Some(format!("cluster/{cluster}")),
                parent: None,
            },
            &principal.subject,
        )
        .await
        .map_err(|err| ApiError::internal(&err))?;
    // The run may be an earlier one (same idempotency key): answer with its backup.
    let id = match state
        .catalog
        .run_owner(&run)
        .map_err(|err| ApiError::internal(&err))?
    {
        Some((_, id)) => id,
        None => backup,
    };
    let record = visible_backup(&state, &principal, &id, ShareLevel::View)?;
    Ok(json_reply(StatusCode::ACCEPTED, &record))
}

/// Lists the backups you may see, oldest first.
#[utoipa::path(get, path = "/v1/backups", tag = "backups",
    params(("after" = Option<String>, Query, description = "The previous page's next_after"),
           ("limit" = Option<usize>, Query, description = "1 to 1000 (default 100)"),
           ("label" = Option<String>, Query, description = "key=value[,key=value] labels to match"),
           ("status" = Option<String>, Query, description = "running, completed, failed, cancelled or deleting"),
           ("cluster" = Option<String>, Query, description = "Backups of this cluster"),
           ("location" = Option<String>, Query, description = "Backups in this location"),
           ("name" = Option<String>, Query, description = "Backups of this name"),
           ("schedule" = Option<String>, Query, description = "Backups made by this schedule")),
    responses((status = 200, description = "{items, next_after}"),
              (status = 400, description = "A parameter is wrong", body = ApiError)))]
pub(crate) fn list(
    state: &CatalogState,
    principal: &Principal,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    const STATUSES: &[&str] = &["running", "completed", "failed", "cancelled", "deleting"];
    let query = catalog_query(
        query,
        &[
            ListFilter::Status(STATUSES),
            ListFilter::Cluster,
            ListFilter::Location,
            ListFilter::Name,
            ListFilter::Schedule,
            ListFilter::Label,
        ],
    )?;
    let page = state
        .catalog
        .backups_json(&query, |head| {
            authz::level_of(principal, &head.owner, &head.shares).is_some()
        })
        .map_err(|err| ApiError::internal(&err))?;
    Ok(stored_json_reply(page.to_json()))
}

/// One backup, with its progress.
#[utoipa::path(get, path = "/v1/backups/{id}", tag = "backups", params(("id" = String, Path)),
    responses((status = 200, description = "The catalog record"),
              (status = 404, description = "None you may see", body = ApiError)))]
pub(crate) fn get(
    state: &CatalogState,
    principal: &Principal,
    id: &str,
) -> Result<Response, ApiError> {
    let record = visible_backup(state, principal, id, ShareLevel::View)?;
    Ok(json_reply(StatusCode::OK, &record))
}

/// Asks a running backup to stop; its temporary objects are removed.
#[utoipa::path(post, path = "/v1/backups/{id}/cancel", tag = "backups", params(("id" = String, Path)),
    responses((status = 202, description = "Cancellation asked; the record"),
              (status = 409, description = "It is not running", body = ApiError)))]
pub(crate) async fn cancel(
    state: CatalogState,
    principal: Principal,
    id: String,
) -> Result<Response, ApiError> {
    let record = visible_backup(&state, &principal, &id, ShareLevel::Full)?;
    if record.status != BackupStatus::Running {
        return Err(ApiError::conflict(format!(
            "backup `{}` is {}, not running: there is nothing to cancel",
            record.name,
            record.status.as_str()
        ))
        .with_details(serde_json::json!({ "status": record.status })));
    }
    state
        .runtime
        .cancel(&record.run, &principal.subject)
        .await
        .map_err(|err| ApiError::internal(&err))?;
    let record = visible_backup(&state, &principal, &id, ShareLevel::View)?;
    Ok(json_reply(StatusCode::ACCEPTED, &record))
}

/// Runs a failed or cancelled backup again, with the same id and spec.
#[utoipa::path(post, path = "/v1/backups/{id}/retry", tag = "backups", params(("id" = String, Path)),
    responses((status = 202, description = "Started again; the record"),
              (status = 403, description = "The cluster is shared with you and no longer grants you every namespace it backs up", body = ApiError),
              (status = 409, description = "It did not fail and was not cancelled", body = ApiError)))]
pub(crate) async fn retry(
    state: CatalogState,
    principal: Principal,
    id: String,
) -> Result<Response, ApiError> {
    authz::require_operator(&principal)?;
    let record = visible_backup(&state, &principal, &id, ShareLevel::Full)?;
    if !matches!(
        record.status,
        BackupStatus::Failed | BackupStatus::Cancelled
    ) || record.run.is_empty()
    {
        return Err(ApiError::conflict(format!(
            "backup `{}` is {}: only a failed or cancelled backup can be retried",
            record.name,
            record.status.as_str()
        ))
        .with_details(serde_json::json!({ "status": record.status })));
    }
    let previous = state
        .runtime
        .run_state(&record.run)
        .map_err(|err| ApiError::internal(&err))?
        .ok_or_else(|| ApiError::conflict(format!("the run of backup `{id}` is gone")))?;
    // The grants are those of now, for the one retrying: a revoked grant stops a retry too.
    if let Ok(spec) = serde_json::from_value::<BackupSpec>(previous.input["spec"].clone())
        && let Some(cluster) = state
            .entities
            .get(Kind::Cluster, &spec.cluster)
            .map_err(|err| ApiError::internal(&err))?
    {
        grants::check_backup(&principal, &cluster, &spec)?;
    }
    let cluster = record.cluster.clone();
    state
        .runtime
        .start(
            BACKUP_WORKFLOW,
            previous.input,
            StartOptions {
                idempotency_key: Some(format!("backup/{id}/{}", record.attempts + 1)),
                concurrency_key: Some(format!("cluster/{cluster}")),
                parent: None,
            },
            &principal.subject,
        )
        .await
        .map_err(|err| ApiError::internal(&err))?;
    let record = visible_backup(&state, &principal, &id, ShareLevel::View)?;
    Ok(json_reply(StatusCode::ACCEPTED, &record))
}

/// Deletes a backup: its objects in the location, then chunks nothing else uses.
#[utoipa::path(delete, path = "/v1/backups/{id}", tag = "backups", params(("id" = String, Path)),
    responses((status = 202, description = "Deletion started; the record (status deleting)"),
              (status = 409, description = "It is running: cancel it first", body = ApiError)))]
pub(crate) async fn delete(
    state: CatalogState,
    principal: Principal,
    id: String,
) -> Result<Response, ApiError> {
    let record = visible_backup(&state, &principal, &id, ShareLevel::Full)?;
    match record.status {
        BackupStatus::Running => {
            return Err(ApiError::conflict(format!(
                "backup `{}` is running: cancel it first (POST /v1/backups/{id}/cancel)",
                record.name
            ))
            .with_details(serde_json::json!({ "status": record.status })));
        }
        BackupStatus::Deleting => return Ok(json_reply(StatusCode::ACCEPTED, &record)),
        BackupStatus::Completed | BackupStatus::Failed | BackupStatus::Cancelled => {}
    }
    state
        .runtime
        .start(
            DELETE_WORKFLOW,
            serde_json::json!({ "backup": record.id, "location": record.location }),
            StartOptions {
                idempotency_key: None,
                concurrency_key: Some(format!("location/{}", record.location)),
                parent: None,
            },
            &principal.subject,
        )
        .await
        .map_err(|err| ApiError::internal(&err))?;
    let record = visible_backup(&state, &principal, &id, ShareLevel::View)?;
    Ok(json_reply(StatusCode::ACCEPTED, &record))
}

/// The routes under `/v1/backups`.
pub fn routes(
    state: CatalogState,
    principal: impl Filter<Extract = (Principal,), Error = Rejection> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let body = warp::body::content_length_limit(MAX_BODY).and(warp::body::bytes());
    let base = warp::path("v1").and(warp::path("backups"));
    let with = move || {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };
    let create = base
        .and(warp::path::end())
        .and(warp::post())
        .and(with())
        .and(principal.clone())
        .and(warp::header::optional::<String>(IDEMPOTENCY_HEADER))
        .and(body)
        .and_then(|state, principal, key, body| async move {
            rejected(create(state, principal, key, body).await)
        });
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
    let delete = base
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::delete())
        .and(with())
        .and(principal.clone())
        .and_then(
            |id, state, principal| async move { rejected(delete(state, principal, id).await) },
        );
    let cancel = base
        .and(warp::path::param::<String>())
        .and(warp::path("cancel"))
        .and(warp::path::end())
        .and(warp::post())
        .and(with())
        .and(principal.clone())
        .and_then(
            |id, state, principal| async move { rejected(cancel(state, principal, id).await) },
        );
    let retry = base
        .and(warp::path::param::<String>())
        .and(warp::path("retry"))
        .and(warp::path::end())
        .and(warp::post())
        .and(with())
        .and(principal)
        .and_then(
            |id, state, principal| async move { rejected(retry(state, principal, id).await) },
        );
    create
        .or(list)
        .unify()
        .or(get)
        .unify()
        .or(delete)
        .unify()
        .or(cancel)
        .unify()
        .or(retry)
        .unify()
}
