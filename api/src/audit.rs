//! The audit stream, `GET /v1/events`: the global event log as the API shows it, a page at a
//! time or followed live as server-sent events.
//!
//! Each caller sees only what it may: admins see every event with its actor; everyone else sees
//! the events they caused, the events of the entities they may see (owned or shared), and those
//! of the backups and restores they may see: their runs (the backup, delete and restore runs)
//! and their share streams.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use stowage_engine::{RecordedEvent, Store};
use warp::Reply;
use warp::sse::Event;

use stowage_workflows::catalog::{BACKUP_SHARES_PREFIX, Catalog, RESTORE_SHARES_PREFIX};
use stowage_workflows::entity::{Entities, Kind};

use crate::auth::Principal;
use crate::authz;
use crate::error::ApiError;

/// The most events one page holds.
pub const MAX_PAGE: usize = 1000;
/// Events in a page when the caller does not say.
pub const DEFAULT_PAGE: usize = 100;

/// One server-sent event of a followed audit stream, as its fields arrive.
#[derive(Debug, Clone, utoipa::ToSchema)]
pub struct AuditServerSentEvent {
    /// Always `audit`.
    pub event: String,
    /// The event's global position; resume after it with `Last-Event-ID`.
    pub id: String,
    /// The [`AuditEvent`] as JSON text.
    pub data: String,
}

/// One event of the audit stream.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// Position in the global log, from 1.
    pub global_seq: u64,
    /// The stream (an entity or a workflow run) it belongs to.
    pub stream: String,
    /// Its sequence within the stream.
    pub seq: u64,
    /// When it was recorded (RFC 3339, UTC).
    pub at: String,
    /// Who caused it.
    pub actor: String,
    /// What happened, e.g. `workflow.step_completed`.
    pub kind: String,
    /// The schema version of the payload.
    pub payload_version: u16,
    /// The payload as JSON, or null for a kind this server cannot show.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// A page of the audit stream.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// The events, in log order.
    pub events: Vec<AuditEvent>,
    /// Pass as `after` to get the next page.
    pub next_after: u64,
}

/// What the query string asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Events after this global position.
    pub after: u64,
    /// At most this many (pages only).
    pub limit: usize,
    /// Keep the response open and send events as they happen.
    pub follow: bool,
}

impl AuditQuery {
    /// Reads `after`, `limit` and `follow`, naming any parameter that is wrong or unknown.
    pub fn parse(query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let mut parsed = Self {
            after: 0,
            limit: DEFAULT_PAGE,
            follow: false,
        };
        for (name, value) in query {
            match name.as_str() {
                "after" => parsed.after = value.parse().map_err(|_| {
                    ApiError::bad_parameter(
                        "after",
                        format!(
                            "`after` must be a global position (a whole number ≥ 0), not `{value}`"
                        ),
                    )
                })?,
                "limit" => {
                    parsed.limit = value
                        .parse()
                        .ok()
                        .filter(|limit| (1..=MAX_PAGE).contains(limit))
                        .ok_or_else(|| {
                            ApiError::bad_parameter(
                                "limit",
                                format!("`limit` must be between 1 and {MAX_PAGE}, not `{value}`"),
                            )
                        })?
                }
                "follow" => {
                    parsed.follow = match value.as_str() {
                        "" | "true" | "1" => true,
                        "false" | "0" => false,
                        _ => {
                            return Err(ApiError::bad_parameter(
                                "follow",
                                format!("`follow` must be true or false, not `{value}`"),
                            ));
                        }
                    }
                }
                other => {
                    return Err(ApiError::bad_parameter(
                        other,
                        format!(
                            "unknown parameter `{other}`; this route takes after, limit and follow"
                        ),
                    ));
                }
            }
        }
        Ok(parsed)
    }
}

/// Shows a recorded event, its payload decoded where the server knows the kind.
pub fn audit_event(event: &RecordedEvent) -> AuditEvent {
    let shown = stowage_engine::workflow_event_json(event)
        .or_else(|| stowage_workflows::entity_event_json(event))
        .or_else(|| stowage_workflows::catalog_event_json(event));
    let mut payload = match shown {
        Some(Ok(value)) => value,
        Some(Err(err)) => {
            tracing::warn!(stream = %event.stream, seq = event.seq, error = %err, "cannot show an event");
            serde_json::Value::Null
        }
        None => serde_json::Value::Null,
    };
    stowage_workflows::redact::redact(&mut payload);
    AuditEvent {
        global_seq: event.global_seq,
        stream: event.stream.clone(),
        seq: event.seq,
        at: chrono::DateTime::from_timestamp_millis(event.at_ms)
            .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default(),
        actor: event.actor.clone(),
        kind: event.kind.clone(),
        payload_version: event.payload_version,
        payload,
    }
}

/// Whether `principal` may see `event`: admins see all; others what they caused, and the events
/// of entities, backups and restores they may see now (their own and those shared with them).
pub fn visible_to(entities: &Entities, principal: &Principal, event: &RecordedEvent) -> bool {
    principal.is_admin()
        || event.actor == principal.subject
        || stream_visible_to(entities, principal, &event.stream)
}

/// Whether `stream` is the stream of an entity, or of a backup or restore (a run of it, or its
/// shares), that `principal` may see.
fn stream_visible_to(entities: &Entities, principal: &Principal, stream: &str) -> bool {
    let Some((kind, id)) = stream
        .strip_prefix("entity/")
        .and_then(|rest| rest.split_once('/'))
    else {
        return catalog_stream_visible_to(entities, principal, stream);
    };
    let Some(kind) = Kind::parse(kind) else {
        return false;
    };
    match entities.get(kind, id) {
        Ok(Some(record)) => authz::visible(principal, &record),
        Ok(None) => false,
        Err(err) => {
            tracing::warn!(%stream, error = %err, "cannot read an entity for the audit stream");
            false
        }
    }
}

/// Whether `stream` is a run of a backup or restore, or the share stream of one, that
/// `principal` may see.
fn catalog_stream_visible_to(entities: &Entities, principal: &Principal, stream: &str) -> bool {
    let catalog = Catalog::new(entities.store().clone());
    let owner = if let Some(run) = stream.strip_prefix(stowage_engine::run_stream("").as_str()) {
        catalog.run_owner(run)
    } else if let Some(id) = stream.strip_prefix(BACKUP_SHARES_PREFIX) {
        Ok(Some(("backup".to_string(), id.to_string())))
    } else if let Some(id) = stream.strip_prefix(RESTORE_SHARES_PREFIX) {
        Ok(Some(("restore".to_string(), id.to_string())))
    } else {
        return false;
    };
    let level = owner.and_then(|owner| match owner {
        Some((kind, id)) if kind == "backup" || kind == "delete" => Ok(catalog
            .backup(&id)?
            .and_then(|record| authz::level_of(principal, &record.owner, &record.shares))),
        Some((kind, id)) if kind == "restore" => Ok(catalog
            .restore(&id)?
            .and_then(|record| authz::level_of(principal, &record.owner, &record.shares))),
        _ => Ok(None),
    });
    match level {
        Ok(level) => level.is_some(),
        Err(err) => {
            tracing::warn!(%stream, error = %err, "cannot read the catalog for the audit stream");
            false
        }
    }
}

/// The audit stream: events of the global log the caller may see, after a position; a page, or
/// with `follow` the same events then live ones as server-sent events (`id` is the global position,
/// so a reconnecting client resumes with `Last-Event-ID`).
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "audit",
    params(
        ("after" = Option<u64>, Query, description = "Events after this global position (default 0)"),
        ("limit" = Option<usize>, Query, description = "Events in a page, 1 to 1000 (default 100)"),
        ("follow" = Option<bool>, Query, description = "Keep the response open and send events as server-sent events"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume a followed stream after this position"),
    ),
    responses(
        (status = 200, description = "A page of events; with follow, the events as server-sent events (`event: audit`, data: an AuditEvent)",
         content((AuditPage = "application/json"), (AuditServerSentEvent = "text/event-stream"))),
        (status = 400, description = "A parameter is wrong; details.parameter names it", body = ApiError),
        (status = 401, description = "No valid bearer token", body = ApiError),
    ),
)]
pub async fn handle(
    store: Arc<Store>,
    entities: Entities,
    principal: Principal,
    query: HashMap<String, String>,
    last_event_id: Option<String>,
) -> Result<warp::reply::Response, warp::Rejection> {
    let mut query = AuditQuery::parse(&query).map_err(ApiError::reject)?;
    if let Some(id) = last_event_id {
        // A reconnecting event source resumes after the last event it received.
        query.after = id.trim().parse().map_err(|_| {
            ApiError::bad_request(format!(
                "Last-Event-ID must be a global position, not `{id}`"
            ))
            .reject()
        })?;
        query.follow = true;
    }
    if query.follow {
        return Ok(follow(store, entities, principal, query.after).into_response());
    }
    page(&store, &entities, &principal, &query).map(|page| warp::reply::json(&page).into_response())
}

fn page(
    store: &Store,
    entities: &Entities,
    principal: &Principal,
    query: &AuditQuery,
) -> Result<AuditPage, warp::Rejection> {
    let mut events = Vec::new();
    let mut after = query.after;
    // One read of an entity per stream and page, not one per event.
    let mut streams: HashMap<String, bool> = HashMap::new();
    // Read past events the caller may not see until the page is full or the log ends.
    loop {
        let chunk = store
            .read_global(after, MAX_PAGE)
            .map_err(|err| ApiError::internal(&err).reject())?;
        let Some(last) = chunk.last() else { break };
        let last_seq = last.global_seq;
        for event in &chunk {
            let visible = principal.is_admin()
                || event.actor == principal.subject
                || *streams
                    .entry(event.stream.clone())
                    .or_insert_with(|| stream_visible_to(entities, principal, &event.stream));
            if visible {
                events.push(audit_event(event));
                if events.len() == query.limit {
                    return Ok(AuditPage {
                        events,
                        next_after: event.global_seq,
                    });
                }
            }
        }
        after = last_seq;
    }
    Ok(AuditPage {
        events,
        next_after: after,
    })
}

fn follow(store: Arc<Store>, entities: Entities, principal: Principal, after: u64) -> impl Reply {
    let events = store
        .subscribe(after)
        .try_filter(move |event| std::future::ready(visible_to(&entities, &principal, event)))
        .map(|event| -> Result<Event, Infallible> {
            Ok(match event {
                Ok(event) => {
                    let shown = audit_event(&event);
                    match Event::default()
                        .id(shown.global_seq.to_string())
                        .event("audit")
                        .json_data(&shown)
                    {
                        Ok(sse) => sse,
                        Err(err) => Event::default().event("error").data(err.to_string()),
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, "audit stream stopped");
                    Event::default().event("error").data(err.to_string())
                }
            })
        });
    warp::sse::reply(
        warp::sse::keep_alive()
            .interval(Duration::from_secs(15))
            .stream(events),
    )
}
