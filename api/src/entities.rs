//! The REST routes of entities (`/v1/clusters`, `/v1/locations`, `/v1/credentials`, `/v1/rules`,
//! `/v1/schedule-policies`): create, list, get, update and delete with optimistic concurrency, and
//! sharing. Handlers validate the spec, check authorization, and hand the command to
//! `stowage_workflows::entity`.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde::Deserialize;
use stowage_workflows::catalog::Catalog;
use stowage_workflows::cluster::ClusterSpec;
use stowage_workflows::credential::{self, CredentialSpec};
use stowage_workflows::entity::{
    Entities, EntityError, Kind, ListQuery, NewEntity, Page, Record, Share, ShareLevel,
};
use stowage_workflows::redact;
use stowage_workflows::schedule::BackupScheduleSpec;
use stowage_workflows::schedule_policy::SchedulePolicySpec;
use stowage_workflows::storage::Error as StorageError;
use stowage_workflows::validate::{FieldError, Problems, check_name};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::auth::Principal;
use crate::authz;
use crate::catalog_state::usable;
use crate::error::ApiError;
use crate::grants;
use crate::preconditions::{etag, precondition_failed, requested_version};

/// The largest request body accepted.
pub const MAX_BODY: u64 = 1024 * 1024;

/// Body of a create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// The name: lower-case letters, digits and `-`; unique among your entities of this kind.
    pub name: String,
    /// Labels, for filtering lists.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The kind's settings.
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
}

/// Body of an update: the whole new state, and the version it replaces.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    /// The version read before the change; a newer one answers 409. May be left out when an
    /// `If-Match` header names it.
    #[serde(default)]
    pub version: Option<u64>,
    /// The new labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The new settings.
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
}

/// Body of a share: the complete new list of shares.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SharesBody {
    /// The version read before the change; may be left out when an `If-Match` header names it.
    #[serde(default)]
    pub version: Option<u64>,
    /// Who may use it, and how.
    #[schema(value_type = Vec<Object>)]
    pub shares: Vec<Share>,
}

fn to_spec(value: impl serde::Serialize) -> Result<serde_json::Value, Vec<FieldError>> {
    serde_json::to_value(value).map_err(|err| {
        vec![FieldError {
            field: "spec".into(),
            message: err.to_string(),
        }]
    })
}

/// Checks and normalizes the spec of `kind` (defaults filled in) as far as the spec alone tells.
fn validate_spec(
    kind: Kind,
    spec: &serde_json::Value,
) -> Result<serde_json::Value, Vec<FieldError>> {
    match kind {
        Kind::Rule => to_spec(stowage_workflows::rule::RuleSpec::parse(spec)?),
        Kind::SchedulePolicy => {
            let policy = SchedulePolicySpec::parse(spec)?;
            to_spec(policy.spec())
        }
        Kind::Cluster => to_spec(ClusterSpec::parse(spec)?),
        Kind::Credential => to_spec(CredentialSpec::parse(spec)?),
        Kind::BackupSchedule => to_spec(BackupScheduleSpec::parse(spec)?),
        // Checked against its store by `checked_spec`.
        Kind::Location => Ok(spec.clone()),
    }
}

/// Checks the spec of `kind` as [`validate_spec`] does, and a location's against its store: the
/// credential it names must be one `principal` may see, and the store must take a probe object's
/// write, read, list and delete.
async fn checked_spec(
    kind: Kind,
    spec: &serde_json::Value,
    entities: &Entities,
    principal: &Principal,
) -> Result<serde_json::Value, ApiError> {
    let spec = validate_spec(kind, spec).map_err(invalid)?;
    if kind == Kind::BackupSchedule {
        let schedule = BackupScheduleSpec::parse(&spec).map_err(invalid)?;
        for (kind, field, id) in schedule.references() {
            let record = usable(entities, principal, kind, &field, id, ShareLevel::View)?;
            if kind == Kind::Cluster {
                grants::check_backup(principal, &record, &schedule.backup)?;
            }
        }
    }
    if kind != Kind::Location {
        return Ok(spec);
    }
    let credential = match credential::named_credential(&spec) {
        None => None,
        Some(id) => match entities.get(Kind::Credential, id).map_err(entity_error)? {
            Some(record) if authz::require(principal, &record, ShareLevel::View).is_ok() => {
                Some(CredentialSpec::parse(&record.spec).map_err(invalid)?)
            }
            _ => None,
        },
    };
    let location = credential::resolve(&spec, credential.as_ref()).map_err(invalid)?;
    if let Err(err) = location.location.validate().await {
        let reason = match &err {
            StorageError::Credentials { .. } => "wrong_credentials",
            StorageError::MissingBucket { .. } => "missing_bucket",
            StorageError::Unreachable { .. } => "unreachable",
            StorageError::InvalidLocation { .. } => "invalid_setting",
            _ => "probe_failed",
        };
        let secrets = redact::secret_values(&serde_json::to_value(&location).unwrap_or_default());
        let message = redact::scrub(&err.to_string(), &secrets);
        tracing::info!(reason, error = %message, "location refused");
        return Err(ApiError::invalid("spec.location", message)
            .with_details(serde_json::json!({ "field": "spec.location", "reason": reason })));
    }
    Ok(spec)
}

pub(crate) fn invalid(problems: Vec<FieldError>) -> ApiError {
    let field = problems
        .first()
        .map(|problem| problem.field.clone())
        .unwrap_or_default();
    let message = problems
        .iter()
        .map(|problem| format!("{}: {}", problem.field, problem.message))
        .collect::<Vec<_>>()
        .join("; ");
    ApiError::invalid(&field, message)
        .with_details(serde_json::json!({ "field": field, "problems": problems }))
}

pub(crate) fn entity_error(err: EntityError) -> ApiError {
    match err {
        EntityError::NotFound { kind, id } => authz::not_found(kind, &id),
        EntityError::VersionConflict { current, .. } => ApiError::conflict(err.to_string())
            .with_details(serde_json::json!({ "current_version": current })),
        EntityError::NameTaken { .. } => {
            ApiError::conflict(err.to_string()).with_details(serde_json::json!({ "field": "name" }))
        }
        EntityError::Invalid { problems, .. } => invalid(problems),
        EntityError::Store(_) | EntityError::Corrupt { .. } | EntityError::Secret(_) => {
            ApiError::internal(&err)
        }
    }
}

pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| match err.classify() {
        serde_json::error::Category::Data => ApiError::invalid("body", format!("{err}")),
        _ => ApiError::bad_request(format!("the body is not valid JSON: {err}")),
    })
}

/// Upcoming runs shown with a schedule policy.
const NEXT_RUNS_SHOWN: usize = 3;

/// The next [`NEXT_RUNS_SHOWN`] times of policy `spec` after now (RFC 3339, UTC); none for an
/// invalid policy.
fn next_runs(spec: &serde_json::Value) -> Vec<String> {
    let Ok(policy) = SchedulePolicySpec::parse(spec) else {
        return Vec::new();
    };
    let mut at = chrono::Utc::now();
    let mut runs = Vec::new();
    while runs.len() < NEXT_RUNS_SHOWN
        && let Some(next) = policy.next_run(at)
    {
        runs.push(next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        at = next;
    }
    runs
}

/// A record as the API shows it: secrets redacted; schedule policies with `next_runs` (RFC
/// 3339, UTC) computed now; backup schedules with their `next_runs` (none while suspended) and
/// `status`, what their runs did (see `ScheduleRecord`).
fn shown(record: &Record, entities: &Entities) -> serde_json::Value {
    let mut value = serde_json::to_value(record).unwrap_or_default();
    redact::redact(&mut value["spec"]);
    match record.kind {
        Kind::SchedulePolicy => value["next_runs"] = serde_json::json!(next_runs(&record.spec)),
        Kind::BackupSchedule => {
            let spec = BackupScheduleSpec::parse(&record.spec).ok();
            let runs = match &spec {
                Some(spec) if !spec.suspended => entities
                    .get(Kind::SchedulePolicy, &spec.policy)
                    .ok()
                    .flatten()
                    .map(|policy| next_runs(&policy.spec))
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            value["next_runs"] = serde_json::json!(runs);
            let status = Catalog::new(entities.store().clone())
                .schedule(&record.id)
                .ok()
                .flatten();
            value["status"] = serde_json::to_value(status).unwrap_or_default();
        }
        _ => {}
    }
    value
}

/// A record's reply, with its version as the `ETag`.
pub(crate) fn record_reply(status: StatusCode, record: &Record, entities: &Entities) -> Response {
    let mut response = json_reply(status, &shown(record, entities));
    response
        .headers_mut()
        .insert(warp::http::header::ETAG, etag(record.version));
    response
}

/// The version a change of `record` is made at: from `If-Match` or the request's own `version`,
/// one of which is required.
fn version_to_change(
    record: &Record,
    if_match: Option<&str>,
    from_request: Option<u64>,
) -> Result<u64, ApiError> {
    requested_version(if_match, from_request, record.version)?.ok_or_else(|| {
        ApiError::invalid(
            "version",
            "give the version you read, as `version` or as an `If-Match` header (its ETag)",
        )
    })
}

/// An entity error of a change made under `If-Match`: a version conflict is then a failed
/// precondition (412), not a 409.
fn change_error(err: EntityError, if_match: Option<&str>) -> ApiError {
    match err {
        EntityError::VersionConflict { current, .. } if if_match.is_some() => {
            precondition_failed(current)
        }
        err => entity_error(err),
    }
}

pub(crate) fn json_reply(status: StatusCode, value: &impl serde::Serialize) -> Response {
    warp::reply::with_status(warp::reply::json(value), status).into_response()
}

/// A 200 whose body is JSON already encoded (a catalog page spliced from stored records).
pub(crate) fn stored_json_reply(body: Vec<u8>) -> Response {
    let mut response = Response::new(body.into());
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    response
}

pub(crate) fn existing(entities: &Entities, kind: Kind, id: &str) -> Result<Record, ApiError> {
    entities
        .get(kind, id)
        .map_err(entity_error)?
        .ok_or_else(|| authz::not_found(kind.as_str(), id))
}

async fn create(
    kind: Kind,
    entities: Entities,
    principal: Principal,
    body: Bytes,
) -> Result<Response, ApiError> {
    authz::require_operator(&principal)?;
    let body: CreateBody = parse_body(&body)?;
    let mut problems = Problems::default();
    check_name(&mut problems, "name", &body.name);
    problems.finish().map_err(invalid)?;
    let spec = checked_spec(kind, &body.spec, &entities, &principal).await?;
    let record = entities
        .create(
            NewEntity {
                kind,
                name: body.name,
                labels: body.labels,
                spec,
            },
            &principal.subject,
            &principal.subject,
        )
        .await
        .map_err(entity_error)?;
    Ok(record_reply(StatusCode::CREATED, &record, &entities))
}

fn list(
    kind: Kind,
    entities: &Entities,
    principal: &Principal,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let mut list = ListQuery {
        limit: 100,
        ..ListQuery::default()
    };
    for (name, value) in query {
        match name.as_str() {
            "after" => list.after = Some(value.clone()),
            "limit" => {
                list.limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=1000).contains(limit))
                    .ok_or_else(|| {
                        ApiError::bad_parameter(
                            "limit",
                            format!("`limit` must be between 1 and 1000, not `{value}`"),
                        )
                    })?
            }
            "label" => {
                for pair in value.split(',') {
                    let (key, value) = pair.split_once('=').ok_or_else(|| {
                        ApiError::bad_parameter(
                            "label",
                            format!(
                                "`label` takes key=value pairs separated by commas, not `{pair}`"
                            ),
                        )
                    })?;
                    list.labels.insert(key.to_string(), value.to_string());
                }
            }
            other => {
                return Err(ApiError::bad_parameter(
                    other,
                    format!("unknown parameter `{other}`; this route takes after, limit and label"),
                ));
            }
        }
    }
    let page: Page = entities
        .list(kind, &list, |record| authz::visible(principal, record))
        .map_err(entity_error)?;
    let items: Vec<serde_json::Value> = page
        .items
        .iter()
        .map(|record| shown(record, entities))
        .collect();
    Ok(json_reply(
        StatusCode::OK,
        &serde_json::json!({ "items": items, "next_after": page.next_after }),
    ))
}

fn get(
    kind: Kind,
    entities: &Entities,
    principal: &Principal,
    id: &str,
) -> Result<Response, ApiError> {
    let record = existing(entities, kind, id)?;
    authz::require(principal, &record, ShareLevel::View)?;
    Ok(record_reply(StatusCode::OK, &record, entities))
}

async fn update(
    kind: Kind,
    entities: Entities,
    principal: Principal,
    id: String,
    if_match: Option<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let record = existing(&entities, kind, &id)?;
    authz::require(&principal, &record, ShareLevel::Full)?;
    let body: UpdateBody = parse_body(&body)?;
    let version = version_to_change(&record, if_match.as_deref(), body.version)?;
    let mut spec = body.spec;
    redact::keep_unchanged_secrets(&mut spec, &record.spec);
    let spec = checked_spec(kind, &spec, &entities, &principal).await?;
    if kind == Kind::Cluster {
        grants::check_change(&principal, &record, &spec)?;
    }
    let record = entities
        .update(kind, &id, version, body.labels, spec, &principal.subject)
        .await
        .map_err(|err| change_error(err, if_match.as_deref()))?;
    Ok(record_reply(StatusCode::OK, &record, &entities))
}

async fn share(
    kind: Kind,
    entities: Entities,
    principal: Principal,
    id: String,
    if_match: Option<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let record = existing(&entities, kind, &id)?;
    authz::require(&principal, &record, ShareLevel::Full)?;
    let body: SharesBody = parse_body(&body)?;
    let version = version_to_change(&record, if_match.as_deref(), body.version)?;
    let record = entities
        .share(kind, &id, version, body.shares, &principal.subject)
        .await
        .map_err(|err| change_error(err, if_match.as_deref()))?;
    Ok(record_reply(StatusCode::OK, &record, &entities))
}

async fn delete(
    kind: Kind,
    entities: Entities,
    principal: Principal,
    id: String,
    if_match: Option<String>,
    query: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let record = existing(&entities, kind, &id)?;
    authz::require(&principal, &record, ShareLevel::Full)?;
    let mut named = None;
    for (name, value) in &query {
        match name.as_str() {
            "version" => {
                named = Some(value.parse().map_err(|_| {
                    ApiError::bad_parameter(
                        "version",
                        format!("`version` must be a whole number, not `{value}`"),
                    )
                })?)
            }
            other => {
                return Err(ApiError::bad_parameter(
                    other,
                    format!("unknown parameter `{other}`; this route takes version"),
                ));
            }
        }
    }
    // Without a version the delete is unconditional: at the version just read.
    let version =
        requested_version(if_match.as_deref(), named, record.version)?.unwrap_or(record.version);
    refuse_if_scheduled(&entities, &principal, kind, &id)?;
    entities
        .delete(kind, &id, version, &principal.subject)
        .await
        .map_err(|err| change_error(err, if_match.as_deref()))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A 409 when backup schedules name entity `id` of `kind` (their policy, cluster, location or a
/// rule): removing it would leave them unable to run. Names the schedules `principal` may see
/// and counts the others.
fn refuse_if_scheduled(
    entities: &Entities,
    principal: &Principal,
    kind: Kind,
    id: &str,
) -> Result<(), ApiError> {
    if kind == Kind::BackupSchedule {
        return Ok(());
    }
    let mut shown = Vec::new();
    let mut hidden = 0;
    for schedule in entities.all(Kind::BackupSchedule).map_err(entity_error)? {
        let names_it = BackupScheduleSpec::parse(&schedule.spec).is_ok_and(|spec| {
            spec.references()
                .iter()
                .any(|(named, _, named_id)| *named == kind && *named_id == id)
        });
        if !names_it {
            continue;
        }
        if authz::visible(principal, &schedule) {
            shown.push(schedule.name.clone());
        } else {
            hidden += 1;
        }
    }
    if shown.is_empty() && hidden == 0 {
        return Ok(());
    }
    let mut users: Vec<String> = shown.iter().map(|name| format!("`{name}`")).collect();
    if hidden > 0 {
        users.push(format!("{hidden} you cannot see"));
    }
    Err(ApiError::conflict(format!(
        "{} `{id}` is used by backup schedules {}: change or remove them first",
        kind.as_str(),
        users.join(", ")
    ))
    .with_details(serde_json::json!({ "used_by": shown, "hidden": hidden })))
}

/// The OpenAPI operations of one entity kind's routes. The handlers above serve every kind; the
/// items this makes carry each route's annotations for `crate::openapi` (utoipa reads the
/// attributes, nothing calls the functions), and the route table test keeps them in step with
/// what [`routes`] serves.
macro_rules! entity_route_docs {
    ($module:ident, $tag:literal, $collection:literal, $item:literal, $shares:literal) => {
        #[allow(dead_code)]
        pub(crate) mod $module {
            use crate::entities::{CreateBody, SharesBody, UpdateBody};
            use crate::error::ApiError;

            /// Creates one.
            #[utoipa::path(post, path = $collection, tag = $tag, request_body = CreateBody,
                responses((status = 201, description = "Created; the record"),
                          (status = 403, description = "Creating needs the operator role", body = ApiError),
                          (status = 409, description = "You already have one of that name", body = ApiError),
                          (status = 422, description = "Invalid; details name the field", body = ApiError)))]
            pub(crate) fn create() {}

            /// Lists those you may see, by creation time.
            #[utoipa::path(get, path = $collection, tag = $tag,
                params(("after" = Option<String>, Query, description = "The previous page's next_after"),
                       ("limit" = Option<usize>, Query, description = "1 to 1000 (default 100)"),
                       ("label" = Option<String>, Query, description = "key=value[,key=value] labels to match")),
                responses((status = 200, description = "{items, next_after}")))]
            pub(crate) fn list() {}

            /// One, by id.
            #[utoipa::path(get, path = $item, tag = $tag, params(("id" = String, Path)),
                responses((status = 200, description = "The record",
                           headers(("ETag" = String, description = "The version, `\"<version>\"`; send it back as `If-Match`"))),
                          (status = 404, description = "None you may see", body = ApiError)))]
            pub(crate) fn get() {}

            /// Replaces labels and spec.
            #[utoipa::path(put, path = $item, tag = $tag, request_body = UpdateBody,
                params(("id" = String, Path),
                       ("If-Match" = Option<String>, Header, description = "The ETag read (instead of `version`)")),
                responses((status = 200, description = "The new record"),
                          (status = 409, description = "It changed since `version`", body = ApiError),
                          (status = 412, description = "It changed since the `If-Match` ETag", body = ApiError),
                          (status = 422, description = "Invalid", body = ApiError)))]
            pub(crate) fn update() {}

            /// Deletes it (at `version` when given).
            #[utoipa::path(delete, path = $item, tag = $tag,
                params(("id" = String, Path), ("version" = Option<u64>, Query, description = "Delete only if still at this version"),
                       ("If-Match" = Option<String>, Header, description = "Delete only if still at this ETag")),
                responses((status = 204, description = "Deleted"),
                          (status = 409, description = "It changed since `version`", body = ApiError),
                          (status = 412, description = "It changed since the `If-Match` ETag", body = ApiError)))]
            pub(crate) fn delete() {}

            /// Replaces who it is shared with.
            #[utoipa::path(put, path = $shares, tag = $tag, request_body = SharesBody,
                params(("id" = String, Path),
                       ("If-Match" = Option<String>, Header, description = "The ETag read (instead of `version`)")),
                responses((status = 200, description = "The new record"),
                          (status = 409, description = "It changed since `version`", body = ApiError),
                          (status = 412, description = "It changed since the `If-Match` ETag", body = ApiError),
                          (status = 403, description = "Sharing needs full rights", body = ApiError),
                          (status = 422, description = "A share is invalid; details name it", body = ApiError)))]
            pub(crate) fn share() {}
        }
    };
}

entity_route_docs!(
    rule_docs,
    "rules",
    "/v1/rules",
    "/v1/rules/{id}",
    "/v1/rules/{id}/shares"
);
entity_route_docs!(
    cluster_docs,
    "clusters",
    "/v1/clusters",
    "/v1/clusters/{id}",
    "/v1/clusters/{id}/shares"
);
entity_route_docs!(
    location_docs,
    "locations",
    "/v1/locations",
    "/v1/locations/{id}",
    "/v1/locations/{id}/shares"
);
entity_route_docs!(
    credential_docs,
    "credentials",
    "/v1/credentials",
    "/v1/credentials/{id}",
    "/v1/credentials/{id}/shares"
);
entity_route_docs!(
    backup_schedule_docs,
    "backup-schedules",
    "/v1/backup-schedules",
    "/v1/backup-schedules/{id}",
    "/v1/backup-schedules/{id}/shares"
);
entity_route_docs!(
    schedule_policy_docs,
    "schedule-policies",
    "/v1/schedule-policies",
    "/v1/schedule-policies/{id}",
    "/v1/schedule-policies/{id}/shares"
);

pub(crate) fn rejected(result: Result<Response, ApiError>) -> Result<Response, Rejection> {
    result.map_err(ApiError::reject)
}

/// The routes of one kind under `/v1/<plural>`.
pub fn routes(
    kind: Kind,
    plural: &'static str,
    entities: Entities,
    principal: impl Filter<Extract = (Principal,), Error = Rejection> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let body = warp::body::content_length_limit(MAX_BODY).and(warp::body::bytes());
    let base = warp::path("v1").and(warp::path(plural));
    let with = move || {
        let entities = entities.clone();
        warp::any().map(move || entities.clone())
    };
    let create = base
        .and(warp::path::end())
        .and(warp::post())
        .and(with())
        .and(principal.clone())
        .and(body)
        .and_then(move |entities, principal, body| async move {
            rejected(create(kind, entities, principal, body).await)
        });
    let list = base
        .and(warp::path::end())
        .and(warp::get())
        .and(with())
        .and(principal.clone())
        .and(warp::query::<HashMap<String, String>>())
        .and_then(
            move |entities: Entities, principal: Principal, query| async move {
                rejected(list(kind, &entities, &principal, &query))
            },
        );
    let get = base
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::get())
        .and(with())
        .and(principal.clone())
        .and_then(
            move |id: String, entities: Entities, principal: Principal| async move {
                rejected(get(kind, &entities, &principal, &id))
            },
        );
    let update = base
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::put())
        .and(with())
        .and(principal.clone())
        .and(warp::header::optional::<String>("if-match"))
        .and(body)
        .and_then(move |id, entities, principal, if_match, body| async move {
            rejected(update(kind, entities, principal, id, if_match, body).await)
        });
    let delete = base
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::delete())
        .and(with())
        .and(principal.clone())
        .and(warp::header::optional::<String>("if-match"))
        .and(warp::query::<HashMap<String, String>>())
        .and_then(move |id, entities, principal, if_match, query| async move {
            rejected(delete(kind, entities, principal, id, if_match, query).await)
        });
    let share = base
        .and(warp::path::param::<String>())
        .and(warp::path("shares"))
        .and(warp::path::end())
        .and(warp::put())
        .and(with())
        .and(principal)
        .and(warp::header::optional::<String>("if-match"))
        .and(body)
        .and_then(move |id, entities, principal, if_match, body| async move {
            rejected(share(kind, entities, principal, id, if_match, body).await)
        });
    create
        .or(list)
        .unify()
        .or(get)
        .unify()
        .or(update)
        .unify()
        .or(delete)
        .unify()
        .or(share)
        .unify()
}
