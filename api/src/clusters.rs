//! The routes of a registered cluster beyond its record: `GET /v1/clusters/{id}/status`, the
//! live probe (reachable and which Kubernetes, or why not — an answer, never a 500), and
//! `GET /v1/clusters/{id}/resources`, the application view users pick backups from.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use stowage_workflows::cluster::ClusterSpec;
use stowage_workflows::entity::{Entities, Kind, Record, ShareLevel};
use stowage_workflows::inventory::{Inventory, InventoryError, InventoryQuery, inventory};
use stowage_workflows::labels::LabelSelector;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::auth::Principal;
use crate::authz;
use crate::entities::existing;
use crate::error::ApiError;

/// How long the probe waits for the API server.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the live probe of a cluster found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClusterProbe {
    /// Whether the API server answered and accepted the credentials.
    pub reachable: bool,
    /// The API server's address, when the spec gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Its Kubernetes version, e.g. `v1.32.0`, when reachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Why it is not reachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Connects to the cluster and asks its version.
pub async fn probe(spec: &ClusterSpec) -> ClusterProbe {
    let failed = |server: Option<String>, error: String| ClusterProbe {
        reachable: false,
        server,
        version: None,
        error: Some(error),
    };
    let client = match spec.connect().await {
        Ok(client) => client,
        Err(err) => return failed(None, err.to_string()),
    };
    match tokio::time::timeout(PROBE_TIMEOUT, client.probe()).await {
        Ok(Ok(status)) => ClusterProbe {
            reachable: true,
            server: Some(status.server),
            version: Some(status.version),
            error: None,
        },
        Ok(Err(err)) => failed(Some(client.server.clone()), err.to_string()),
        Err(_) => failed(
            Some(client.server.clone()),
            format!(
                "the API server did not answer within {} seconds",
                PROBE_TIMEOUT.as_secs()
            ),
        ),
    }
}

/// The live state of a cluster.
#[utoipa::path(get, path = "/v1/clusters/{id}/status", tag = "clusters",
    params(("id" = String, Path)),
    responses((status = 200, description = "Reachable with its version, or the error", body = ClusterProbe),
              (status = 404, description = "None you may see", body = ApiError)))]
pub(crate) async fn status(
    entities: Entities,
    principal: Principal,
    id: String,
) -> Result<Response, ApiError> {
    let (_, spec) = visible_cluster(&entities, &principal, &id)?;
    let probe = probe(&spec).await;
    Ok(warp::reply::with_status(warp::reply::json(&probe), StatusCode::OK).into_response())
}

/// The cluster `id` with its spec, if `principal` may see it.
fn visible_cluster(
    entities: &Entities,
    principal: &Principal,
    id: &str,
) -> Result<(Record, ClusterSpec), ApiError> {
    let record = existing(entities, Kind::Cluster, id)?;
    authz::require(principal, &record, ShareLevel::View)?;
    let spec = ClusterSpec::parse(&record.spec).map_err(|problems| {
        ApiError::internal(&format!(
            "the stored spec of cluster `{id}` is invalid: {problems:?}"
        ))
    })?;
    Ok((record, spec))
}

/// Reads `namespace`, `labelSelector` and `kind` (comma-separated), naming a wrong one.
fn inventory_query(query: &HashMap<String, String>) -> Result<InventoryQuery, ApiError> {
    let mut parsed = InventoryQuery::default();
    for (name, value) in query {
        match name.as_str() {
            "namespace" => {
                parsed.namespace = Some(value.clone()).filter(|namespace| !namespace.is_empty())
            }
            "labelSelector" => {
                parsed.selector = LabelSelector::parse(value).map_err(|err| {
                    ApiError::bad_parameter("labelSelector", format!("`labelSelector`: {err}"))
                })?;
                parsed.selector_text = value.clone();
            }
            "kind" => {
                parsed.kinds = value
                    .split(',')
                    .map(str::trim)
                    .filter(|kind| !kind.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            other => {
                return Err(ApiError::bad_parameter(
                    other,
                    format!(
                        "unknown parameter `{other}`; this route takes namespace, labelSelector and kind"
                    ),
                ));
            }
        }
    }
    Ok(parsed)
}

/// The live resources of a cluster, by namespace and kind.
#[utoipa::path(get, path = "/v1/clusters/{id}/resources", tag = "clusters",
    params(("id" = String, Path),
           ("namespace" = Option<String>, Query, description = "Only this namespace"),
           ("labelSelector" = Option<String>, Query, description = "Only objects whose labels match, e.g. `app=shop,tier!=cache`"),
           ("kind" = Option<String>, Query, description = "Only these kinds, comma-separated (`Deployment` or `deployments`)")),
    responses((status = 200, description = "{namespaces: [{namespace, kinds: [{group, version, kind, count, items: [{name, labels}]}]}]}"),
              (status = 400, description = "A parameter is wrong; details name it", body = ApiError),
              (status = 404, description = "No cluster you may see", body = ApiError),
              (status = 503, description = "The cluster cannot be reached", body = ApiError)))]
pub(crate) async fn resources(
    entities: Entities,
    principal: Principal,
    id: String,
    query: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let query = inventory_query(&query)?;
    let (record, spec) = visible_cluster(&entities, &principal, &id)?;
    let client = spec
        .connect()
        .await
        .map_err(|err| ApiError::unavailable(format!("cluster `{}`: {err}", record.name)))?;
    let mut found: Inventory = inventory(&client, &query).await.map_err(|err| match err {
        InventoryError::UnknownKind(_) => ApiError::bad_parameter("kind", err.to_string()),
        InventoryError::Api { .. } => {
            ApiError::unavailable(format!("cluster `{}`: {err}", record.name))
        }
    })?;
    crate::grants::keep_granted(&principal, &record, &mut found.namespaces, |namespace| {
        &namespace.namespace
    });
    Ok(warp::reply::with_status(warp::reply::json(&found), StatusCode::OK).into_response())
}

/// The cluster routes beyond the generic entity routes.
pub fn routes(
    entities: Entities,
    principal: impl Filter<Extract = (Principal,), Error = Rejection> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let with = move || {
        let entities = entities.clone();
        warp::any().map(move || entities.clone())
    };
    let status = warp::path!("v1" / "clusters" / String / "status")
        .and(warp::get())
        .and(with())
        .and(principal.clone())
        .and_then(|id, entities, principal| async move {
            status(entities, principal, id)
                .await
                .map_err(ApiError::reject)
        });
    let resources = warp::path!("v1" / "clusters" / String / "resources")
        .and(warp::get())
        .and(with())
        .and(principal)
        .and(warp::query::<HashMap<String, String>>())
        .and_then(|id, entities, principal, query| async move {
            resources(entities, principal, id, query)
                .await
                .map_err(ApiError::reject)
        });
    status.or(resources).unify()
}
