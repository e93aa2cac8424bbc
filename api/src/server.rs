//! The HTTP server: its configuration, the routes it serves and its lifetime.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use stowage_engine::Store;
use warp::Filter;
use warp::http::StatusCode;

/// How `stowage server` runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The folder of the RocksDB database.
    pub data_dir: PathBuf,
    /// The address to listen on.
    pub listen: SocketAddr,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address is not a loopback address, and the server has no TLS to offer.
    #[error(
        "refusing to listen on {0}: without TLS the server binds to loopback only (127.0.0.1 or ::1)"
    )]
    NotLoopback(SocketAddr),
    /// The database could not be opened.
    #[error(transparent)]
    Database(#[from] stowage_engine::Error),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

/// The body of `/healthz` and `/readyz`.
#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    database_format: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Every route the server answers.
pub fn routes(
    store: Arc<Store>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = Infallible> + Clone {
    let health = warp::path!("healthz")
        .or(warp::path!("readyz"))
        .unify()
        .and(warp::get())
        .map(move || health_reply(&store));
    health.recover(not_found)
}

fn health_reply(store: &Store) -> warp::reply::WithStatus<warp::reply::Json> {
    let (status, body) = match store.format_version() {
        Ok(version) => (
            StatusCode::OK,
            Health {
                status: "ok",
                database_format: Some(version),
                error: None,
            },
        ),
        Err(err) => {
            tracing::warn!(error = %err, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Health {
                    status: "unavailable",
                    database_format: None,
                    error: Some(err.to_string()),
                },
            )
        }
    };
    warp::reply::with_status(warp::reply::json(&body), status)
}

async fn not_found(rejection: warp::Rejection) -> Result<impl warp::Reply, Infallible> {
    let (status, code) = if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "not_found")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    } else {
        (StatusCode::BAD_REQUEST, "bad_request")
    };
    let body = serde_json::json!({
        "code": code,
        "message": format!("{rejection:?}"),
        "details": null,
    });
    Ok(warp::reply::with_status(warp::reply::json(&body), status))
}

/// Opens the database, binds the address and serves until `shutdown` completes.
///
/// `on_ready` is called with the bound address (useful when the port was 0) once the server
/// accepts connections.
pub async fn serve(
    config: ServerConfig,
    on_ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    if !config.listen.ip().is_loopback() {
        return Err(ServerError::NotLoopback(config.listen));
    }
    let store = Arc::new(Store::open(&config.data_dir)?);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "stowage server listening");
    on_ready(addr);
    warp::serve(routes(store))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
    tracing::info!("stowage server stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn healthz_reports_the_database_format() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let filter = routes(store);
        for path in ["/healthz", "/readyz"] {
            let reply = warp::test::request().path(path).reply(&filter).await;
            assert_eq!(reply.status(), 200, "{path}");
            let body: serde_json::Value = serde_json::from_slice(reply.body()).unwrap();
            assert_eq!(body["status"], "ok");
            assert_eq!(body["database_format"], stowage_engine::FORMAT_VERSION);
        }
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_get_error_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let filter = routes(Arc::new(Store::open(dir.path()).unwrap()));
        let reply = warp::test::request().path("/nope").reply(&filter).await;
        assert_eq!(reply.status(), 404);
        let body: serde_json::Value = serde_json::from_slice(reply.body()).unwrap();
        assert_eq!(body["code"], "not_found");
        let reply = warp::test::request()
            .method("POST")
            .path("/healthz")
            .reply(&filter)
            .await;
        assert_eq!(reply.status(), 405);
    }

    #[tokio::test]
    async fn a_public_address_is_refused_without_tls() {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            data_dir: dir.path().to_path_buf(),
            listen: "0.0.0.0:0".parse().unwrap(),
        };
        let err = serve(config, |_| {}, async {}).await.unwrap_err();
        assert!(err.to_string().contains("loopback only"), "{err}");
    }
}
