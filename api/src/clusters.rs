//! The routes of a registered cluster beyond its record: `GET /v1/clusters/{id}/status`, the
//! live probe (reachable and which Kubernetes, or why not — an answer, never a 500).

use std::time::Duration;

use serde::Serialize;
use stowage_workflows::cluster::ClusterSpec;
use stowage_workflows::entity::{Entities, Kind, ShareLevel};
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
    let record = existing(&entities, Kind::Cluster, &id)?;
    authz::require(&principal, &record, ShareLevel::View)?;
    let spec = ClusterSpec::parse(&record.spec).map_err(|problems| {
        ApiError::internal(&format!(
            "the stored spec of cluster `{id}` is invalid: {problems:?}"
        ))
    })?;
    let probe = probe(&spec).await;
    Ok(warp::reply::with_status(warp::reply::json(&probe), StatusCode::OK).into_response())
}

/// The cluster routes beyond the generic entity routes.
pub fn routes(
    entities: Entities,
    principal: impl Filter<Extract = (Principal,), Error = Rejection> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "clusters" / String / "status")
        .and(warp::get())
        .and(principal)
        .and_then(move |id: String, principal: Principal| {
            let entities = entities.clone();
            async move {
                status(entities, principal, id)
                    .await
                    .map_err(ApiError::reject)
            }
        })
}
