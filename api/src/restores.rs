//! The REST routes of restores (`/v1/restores`): start one from a restorable backup into a
//! cluster, list and describe them from the catalog, read every object's result, cancel.

use std::collections::HashMap;

use bytes::Bytes;
use serde::Deserialize;
use stowage_engine::StartOptions;
use stowage_workflows::catalog::{BackupRecord, RestoreRecord, RestoreStatus};
use stowage_workflows::entity::{Kind, ShareLevel};
use stowage_workflows::grants::restore_targets;
use stowage_workflows::restore::workflow::{RESTORE_WORKFLOW, RestoreInput, RestoreSpec};
use stowage_workflows::validate::{Problems, check_name};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::auth::Principal;
use crate::authz::{self, Owned};
use crate::backups::visible_backup;
use crate::catalog_state::CatalogState;
use crate::entities::{MAX_BODY, invalid, json_reply, parse_body, rejected, stored_json_reply};
use crate::error::ApiError;
use crate::grants;
use crate::listing::{Filter as ListFilter, catalog_query};

/// Body of `POST /v1/restores`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRestore {
    /// The name: lower-case letters, digits and `-`.
    pub name: String,
    /// What to restore and where: backup, cluster, mappings, subsets, existing-resource policy
    /// (see docs/restore.md). `location` defaults to the backup's.
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
}

pub(crate) fn visible_restore(
    state: &CatalogState,
    principal: &Principal,
    id: &str,
    needed: ShareLevel,
) -> Result<RestoreRecord, ApiError> {
    let record = state
        .catalog
        .restore(id)
        .map_err(|err| ApiError::internal(&err))?
        .ok_or_else(|| authz::not_found("restore", id))?;
    authz::require_on(
        principal,
        Owned {
            kind: "restore",
            id: &record.id,
            name: &record.name,
            owner: &record.owner,
            shares: &record.shares,
        },
        needed,
    )?;
    Ok(record)
}

/// The namespaces backup `backup` holds: those its run selected, else those its spec names;
/// `None` when neither is known (a synced backup of every namespace).
fn held_namespaces(
    state: &CatalogState,
    backup: &BackupRecord,
) -> Result<Option<Vec<String>>, ApiError> {
    if !backup.run.is_empty()
        && let Some(run) = state
            .runtime
            .run_state(&backup.run)
            .map_err(|err| ApiError::internal(&err))?
        && let Some(selected) = run
            .outputs
            .get("validate")
            .and_then(|validated| validated.get("namespaces"))
            .and_then(|namespaces| serde_json::from_value::<Vec<String>>(namespaces.clone()).ok())
    {
        return Ok(Some(selected));
    }
    let named: Vec<String> = backup
        .spec
        .get("namespaces")
        .and_then(|namespaces| serde_json::from_value(namespaces.clone()).ok())
        .unwrap_or_default();
    Ok((!named.is_empty()).then_some(named))
}

/// Starts a restore.
#[utoipa::path(post, path = "/v1/restores", tag = "restores", request_body = CreateRestore,
    responses((status = 202, description = "Started; the catalog record"),
              (status = 403, description = "Restoring needs the operator role; or the target cluster is shared with you and does not grant you every namespace restored into (details: namespaces, cluster)", body = ApiError),
              (status = 409, description = "The backup is not restorable", body = ApiError),
              (status = 422, description = "Invalid, or names a backup or cluster you may not use", body = ApiError)))]
pub(crate) async fn create(
    state: CatalogState,
    principal: Principal,
    body: Bytes,
) -> Result<Response, ApiError> {
    authz::require_operator(&principal)?;
    let body: CreateRestore = parse_body(&body)?;
    let mut problems = Problems::default();
    check_name(&mut problems, "name", &body.name);
    problems.finish().map_err(invalid)?;
    let mut spec = body.spec;
    let Some(backup_id) = spec
        .get("backup")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
    else {
        return Err(ApiError::invalid(
            "spec.backup",
            "spec.backup: name the backup to restore (its id)",
        ));
    };
    let backup = visible_backup(&state, &principal, &backup_id, ShareLevel::Restore).map_err(
        |err| match err.status.as_u16() {
            404 => ApiError::invalid(
                "spec.backup",
                format!("spec.backup: no backup with id `{backup_id}` that you may restore"),
            ),
            _ => err,
        },
    )?;
    if !backup.restorable {
        return Err(ApiError::conflict(format!(
            "backup `{}` is {} and has no manifest: only a completed backup can be restored",
            backup.name,
            backup.status.as_str()
        ))
        .with_details(serde_json::json!({ "field": "spec.backup", "status": backup.status })));
    }
    if let Some(object) = spec.as_object_mut() {
        object
            .entry("location")
            .or_insert_with(|| serde_json::Value::String(backup.location.clone()));
    }
    let mut spec = RestoreSpec::parse(&spec).map_err(invalid)?;
    if spec.location != backup.location {
        state.usable(
            &principal,
            Kind::Location,
            "spec.location",
            &spec.location,
            ShareLevel::View,
        )?;
    }
    let cluster = state.usable(
        &principal,
        Kind::Cluster,
        "spec.cluster",
        &spec.cluster,
        ShareLevel::Restore,
    )?;
    if grants::bound(&principal, &cluster) {
        let held = held_namespaces(&state, &backup)?;
        let targets = match (&held, spec.namespaces.is_empty()) {
            (None, true) => None,
            (held, _) => Some(restore_targets(&spec, held.as_deref().unwrap_or_default())),
        };
        grants::check_restore(&principal, &cluster, targets.as_deref())?;
        // Restored as if named: cluster-scoped objects come back only as these namespaces need.
        if spec.namespaces.is_empty()
            && let Some(held) = held
        {
            spec.namespaces = held;
        }
    }
    let restore = uuid::Uuid::now_v7().to_string();
    let cluster = spec.cluster.clone();
    let input = RestoreInput {
        restore: restore.clone(),
        name: body.name,
        spec,
    };
    let input = serde_json::to_value(&input).map_err(|err| ApiError::internal(&err))?;
    state
        .runtime
        .start(
            RESTORE_WORKFLOW,
            input,
            StartOptions {
                idempotency_key: Some(format!("restore/{restore}")),
                concurrency_key: Some(format!("cluster/{cluster}")),
                parent: None,
            },
            &principal.subject,
        )
        .await
        .map_err(|err| ApiError::internal(&err))?;
    let record = visible_restore(&state, &principal, &restore, ShareLevel::View)?;
    Ok(json_reply(StatusCode::ACCEPTED, &record))
}

/// Lists the restores you may see, oldest first.
#[utoipa::path(get, path = "/v1/restores", tag = "restores",
    params(("after" = Option<String>, Query, description = "The previous page's next_after"),
           ("limit" = Option<usize>, Query, description = "1 to 1000 (default 100)"),
           ("status" = Option<String>, Query, description = "running, completed, failed or cancelled"),
           ("cluster" = Option<String>, Query, description = "Restores into this cluster"),
           ("backup" = Option<String>, Query, description = "Restores of this backup"),
           ("location" = Option<String>, Query, description = "Restores from this location"),
           ("name" = Option<String>, Query, description = "Restores of this name")),
    responses((status = 200, description = "{items, next_after}"),
              (status = 400, description = "A parameter is wrong", body = ApiError)))]
pub(crate) fn list(
    state: &CatalogState,
    principal: &Principal,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    const STATUSES: &[&str] = &["running", "completed", "failed", "cancelled"];
    let query = catalog_query(
        query,
        &[
            ListFilter::Status(STATUSES),
            ListFilter::Cluster,
            ListFilter::Backup,
            ListFilter::Location,
            ListFilter::Name,
        ],
    )?;
    let page = state
        .catalog
        .restores_json(&query, |head| {
            authz::level_of(principal, &head.owner, &head.shares).is_some()
        })
        .map_err(|err| ApiError::internal(&err))?;
    Ok(stored_json_reply(page.to_json()))
}

/// One restore, with its counts.
#[utoipa::path(get, path = "/v1/restores/{id}", tag = "restores", params(("id" = String, Path)),
    responses((status = 200, description = "The catalog record"),
              (status = 404, description = "None you may see", body = ApiError)))]
pub(crate) fn get(
    state: &CatalogState,
    principal: &Principal,
    id: &str,
) -> Result<Response, ApiError> {
    let record = visible_restore(state, principal, id, ShareLevel::View)?;
    Ok(json_reply(StatusCode::OK, &record))
}

/// Every object's result so far: created, skipped, replaced, updated or failed, with the reason.
#[utoipa::path(get, path = "/v1/restores/{id}/results", tag = "restores", params(("id" = String, Path)),
    responses((status = 200, description = "{items: [{kind, namespace, name, outcome, reason}]}"),
              (status = 404, description = "None you may see", body = ApiError)))]
pub(crate) fn results(
    state: &CatalogState,
    principal: &Principal,
    id: &str,
) -> Result<Response, ApiError> {
    let record = visible_restore(state, principal, id, ShareLevel::View)?;
    let run = state
        .runtime
        .run_state(&record.run)
        .map_err(|err| ApiError::internal(&err))?;
    let mut items = Vec::new();
    for step in ["objects", "workloads"] {
        if let Some(results) = run
            .as_ref()
            .and_then(|run| run.outputs.get(step))
            .and_then(|output| output.get("results"))
            .and_then(serde_json::Value::as_array)
        {
            items.extend(results.iter().cloned());
        }
    }
    Ok(json_reply(
        StatusCode::OK,
        &serde_json::json!({ "items": items }),
    ))
}

/// Asks a running restore to stop.
#[utoipa::path(post, path = "/v1/restores/{id}/cancel", tag = "restores", params(("id" = String, Path)),
    responses((status = 202, description = "Cancellation asked; the record"),
              (status = 409, description = "It is not running", body = ApiError)))]
pub(crate) async fn cancel(
    state: CatalogState,
    principal: Principal,
    id: String,
) -> Result<Response, ApiError> {
    let record = visible_restore(&state, &principal, &id, ShareLevel::Full)?;
    if record.status != RestoreStatus::Running {
        return Err(ApiError::conflict(format!(
            "restore `{}` is {}, not running: there is nothing to cancel",
            record.name,
            record.status.as_str()
        )));
    }
    state
        .runtime
        .cancel(&record.run, &principal.subject)
        .await
        .map_err(|err| ApiError::internal(&err))?;
    let record = visible_restore(&state, &principal, &id, ShareLevel::View)?;
    Ok(json_reply(StatusCode::ACCEPTED, &record))
}

/// The routes under `/v1/restores`.
pub fn routes(
    state: CatalogState,
    principal: impl Filter<Extract = (Principal,), Error = Rejection> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let body = warp::body::content_length_limit(MAX_BODY).and(warp::body::bytes());
    let base = warp::path("v1").and(warp::path("restores"));
    let with = move || {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };
    let create = base
        .and(warp::path::end())
        .and(warp::post())
        .and(with())
        .and(principal.clone())
        .and(body)
        .and_then(|state, principal, body| async move {
            rejected(create(state, principal, body).await)
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
    let results = base
        .and(warp::path::param::<String>())
        .and(warp::path("results"))
        .and(warp::path::end())
        .and(warp::get())
        .and(with())
        .and(principal.clone())
        .and_then(
            |id: String, state: CatalogState, principal: Principal| async move {
                rejected(results(&state, &principal, &id))
            },
        );
    let cancel = base
        .and(warp::path::param::<String>())
        .and(warp::path("cancel"))
        .and(warp::path::end())
        .and(warp::post())
        .and(with())
        .and(principal)
        .and_then(
            |id, state, principal| async move { rejected(cancel(state, principal, id).await) },
        );
    create
        .or(list)
        .unify()
        .or(get)
        .unify()
        .or(results)
        .unify()
        .or(cancel)
        .unify()
}
