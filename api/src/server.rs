//! The HTTP server: its configuration, the routes it serves and its lifetime.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use std::collections::HashMap;

use serde::Serialize;
use stowage_engine::{Clock, Runtime, Store, StoreOptions, SystemClock};
use warp::Filter;
use warp::http::StatusCode;

use stowage_workflows::catalog::{Catalog, CatalogError, CatalogProjection};
use stowage_workflows::entity::{Entities, EntitiesProjection, Kind};
use stowage_workflows::schedule::run_scheduler;

use crate::audit;
use crate::auth::{
    AuthError, Authenticator, Bootstrap, BootstrapError, BootstrapToken, OidcConfig, OidcVerifier,
    Principal, RoleMapping,
};
use crate::backups;
use crate::catalog_shares;
use crate::catalog_state::{CatalogState, WorkflowSettings, server_runtime};
use crate::clusters;
use crate::entities;
use crate::error::{self, ApiError};
use crate::login_options;
use crate::master_key::{MasterKeyError, MasterKeySource, default_key_file, load_master_key};
use crate::metrics::{Metrics, metrics_reply, route_template};
use crate::openapi;
use crate::restores;
use crate::runs;
use crate::schedules;
use crate::sync;
use crate::tls::{TlsError, TlsFiles, serve_tls};

/// How `stowage server` runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The folder of the RocksDB database (and the bootstrap token file).
    pub data_dir: PathBuf,
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The OIDC issuer whose tokens are accepted; without one only the bootstrap token works.
    pub oidc: Option<OidcConfig>,
    /// Which groups are admins and operators.
    pub roles: RoleMapping,
    /// How backups and restores run.
    pub workflows: WorkflowSettings,
    /// Where the master key that seals stored secrets comes from.
    pub master_key: MasterKeySource,
    /// The certificate to serve HTTPS with; plain HTTP on loopback only without one.
    pub tls: Option<TlsFiles>,
}

impl ServerConfig {
    /// A server on `listen` with its data in `data_dir`, no OIDC issuer and no role groups.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        let data_dir = data_dir.into();
        Self {
            master_key: MasterKeySource::File(default_key_file(&data_dir)),
            tls: None,
            data_dir,
            listen,
            oidc: None,
            roles: RoleMapping::default(),
            workflows: WorkflowSettings::default(),
        }
    }

    /// The file holding the bootstrap admin token.
    pub fn bootstrap_token_path(&self) -> PathBuf {
        self.data_dir.join("bootstrap-token")
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address is not a loopback address, and the server has no TLS to offer.
    #[error(
        "refusing to listen on {0}: without TLS the server binds to loopback only (127.0.0.1 or \
         ::1); give --tls-cert and --tls-key to serve HTTPS on other addresses"
    )]
    NotLoopback(SocketAddr),
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The database could not be opened.
    #[error(transparent)]
    Database(#[from] stowage_engine::Error),
    /// The catalog could not be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The bootstrap token could not be read or created.
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    /// The master key could not be read, made, or does not open the stored secrets.
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
    /// The OIDC issuer could not be discovered.
    #[error("OIDC issuer: {0}")]
    Oidc(#[source] AuthError),
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

/// What a started server tells its caller.
#[derive(Debug, Clone)]
pub struct Started {
    /// The bound address (useful when the port was 0).
    pub addr: SocketAddr,
    /// `https` with TLS, else `http`.
    pub scheme: &'static str,
    /// The bootstrap admin token when this start generated it: shown once, never again.
    pub new_bootstrap_token: Option<String>,
    /// Where the bootstrap token is kept.
    pub bootstrap_token_path: PathBuf,
    /// The master key file this start generated (to be backed up: without it the stored
    /// secrets cannot be opened).
    pub generated_master_key: Option<PathBuf>,
}

/// What every handler may use.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The event store.
    pub store: Arc<Store>,
    /// Who is calling.
    pub auth: Authenticator,
    /// What `/metrics` reports.
    pub metrics: Arc<Metrics>,
    /// Registered entities (rules, ...), on the same store.
    pub entities: Entities,
    /// The workflow runtime and the catalog of backups and restores.
    pub catalog: CatalogState,
}

impl AppState {
    /// The state of a server whose `runtime` runs on its store (opened with [`open_store`]),
    /// where `entities` are kept.
    pub fn new(runtime: Runtime, entities: Entities, auth: Authenticator) -> Self {
        let store = runtime.store().clone();
        Self {
            entities: entities.clone(),
            catalog: CatalogState::new(runtime, entities),
            store,
            auth,
            metrics: Arc::new(Metrics::new()),
        }
    }
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

/// The authenticated caller of a request; refuses the request when there is none.
fn principal(
    auth: Authenticator,
) -> impl Filter<Extract = (Principal,), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("authorization").and_then(move |header: Option<String>| {
        let auth = auth.clone();
        async move {
            auth.authenticate(header.as_deref())
                .await
                .map_err(|err| ApiError::from(err).reject())
        }
    })
}

/// Every route the server answers (listed in [`crate::openapi::ROUTES`]).
pub fn routes(
    state: AppState,
) -> impl Filter<Extract = (impl warp::Reply,), Error = Infallible> + Clone {
    let store = state.store.clone();
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(move || healthz(&store));
    let store = state.store.clone();
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .map(move || readyz(&store));
    let store = state.store.clone();
    let metrics = state.metrics.clone();
    let metrics_text = warp::path!("metrics")
        .and(warp::get())
        .and_then(move || std::future::ready(metrics_reply(&metrics, &store)));
    let openapi = warp::path!("v1" / "openapi.json")
        .and(warp::get())
        .map(|| warp::reply::json(&openapi::openapi_json()));
    let store = state.store.clone();
    let entities = state.entities.clone();
    let events = warp::path!("v1" / "events")
        .and(warp::get())
        .and(principal(state.auth.clone()))
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::header::optional::<String>("last-event-id"))
        .and_then(move |principal, query, last_event_id| {
            audit::handle(
                store.clone(),
                entities.clone(),
                principal,
                query,
                last_event_id,
            )
        });
    let clusters = entities::routes(
        Kind::Cluster,
        "clusters",
        state.entities.clone(),
        principal(state.auth.clone()),
    );
    let cluster_state = clusters::routes(state.entities.clone(), principal(state.auth.clone()));
    let locations = entities::routes(
        Kind::Location,
        "locations",
        state.entities.clone(),
        principal(state.auth.clone()),
    );
    let credentials = entities::routes(
        Kind::Credential,
        "credentials",
        state.entities.clone(),
        principal(state.auth.clone()),
    );
    let rules = entities::routes(
        Kind::Rule,
        "rules",
        state.entities.clone(),
        principal(state.auth.clone()),
    );
    let schedule_policies = entities::routes(
        Kind::SchedulePolicy,
        "schedule-policies",
        state.entities.clone(),
        principal(state.auth.clone()),
    );
    let backup_schedules = entities::routes(
        Kind::BackupSchedule,
        "backup-schedules",
        state.entities.clone(),
        principal(state.auth.clone()),
    );
    let schedule_actions = schedules::routes(state.entities.clone(), principal(state.auth.clone()));
    let backups = backups::routes(state.catalog.clone(), principal(state.auth.clone()));
    let restores = restores::routes(state.catalog.clone(), principal(state.auth.clone()));
    let catalog_shares =
        catalog_shares::routes(state.catalog.clone(), principal(state.auth.clone()));
    let runs = runs::routes(state.catalog.clone(), principal(state.auth.clone()));
    let sync = sync::routes(state.catalog.clone(), principal(state.auth.clone()));
    let whoami = warp::path!("v1" / "whoami")
        .and(warp::get())
        .and(principal(state.auth.clone()))
        .map(whoami);
    let auth = state.auth.clone();
    let login_options = warp::path!("v1" / "login-options")
        .and(warp::get())
        .map(move || login_options::login_options(&auth));
    let metrics = state.metrics.clone();
    let observe = warp::log::custom(move |info| {
        metrics.observe_request(
            route_template(info.method().as_str(), info.path()),
            info.method().as_str(),
            info.status().as_u16(),
            info.elapsed(),
        )
    });
    healthz
        .or(readyz)
        .or(metrics_text)
        .or(openapi)
        .or(events)
        .or(whoami)
        .or(login_options)
        .or(cluster_state)
        .or(clusters)
        .or(locations)
        .or(credentials)
        .or(rules)
        .or(schedule_policies)
        .or(schedule_actions)
        .or(backup_schedules)
        .or(backups)
        .or(restores)
        .or(catalog_shares)
        .or(runs)
        .or(sync)
        .recover(error::recover)
        .with(observe)
}

/// Whether the server is alive: its database answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    security(()),
    responses(
        (status = 200, description = "Alive; the database format"),
        (status = 503, description = "The database does not answer"),
    ),
)]
pub(crate) fn healthz(store: &Store) -> warp::reply::WithStatus<warp::reply::Json> {
    health_reply(store)
}

/// Whether the server is ready to serve: its database answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "meta",
    security(()),
    responses(
        (status = 200, description = "Ready"),
        (status = 503, description = "Not ready"),
    ),
)]
pub(crate) fn readyz(store: &Store) -> warp::reply::WithStatus<warp::reply::Json> {
    health_reply(store)
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

/// Opens the server's database with every projection the server keeps.
pub fn open_store(data_dir: &std::path::Path) -> Result<Store, stowage_engine::Error> {
    open_store_with_clock(data_dir, Arc::new(SystemClock))
}

/// [`open_store`] with events stamped by `clock` (the one the runtime's timers wait on).
pub fn open_store_with_clock(
    data_dir: &std::path::Path,
    clock: Arc<dyn Clock>,
) -> Result<Store, stowage_engine::Error> {
    Store::open_with(
        data_dir,
        StoreOptions {
            projections: vec![
                Runtime::projection(),
                Arc::new(EntitiesProjection),
                Arc::new(CatalogProjection),
            ],
            clock,
        },
    )
}

/// Who the server takes the caller for.
#[utoipa::path(
    get,
    path = "/v1/whoami",
    tag = "auth",
    responses(
        (status = 200, description = "The caller's subject, groups and role"),
        (status = 401, description = "No valid bearer token", body = ApiError),
    ),
)]
pub(crate) fn whoami(principal: Principal) -> warp::reply::Json {
    warp::reply::json(&principal)
}

/// Opens the database, sets up authentication, binds the address and serves until `shutdown`
/// completes. `on_ready` is called once the server accepts connections.
pub async fn serve(
    config: ServerConfig,
    on_ready: impl FnOnce(&Started),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    if config.tls.is_none() && !config.listen.ip().is_loopback() {
        return Err(ServerError::NotLoopback(config.listen));
    }
    let tls = config
        .tls
        .as_ref()
        .map(TlsFiles::server_config)
        .transpose()?;
    let store = Arc::new(open_store(&config.data_dir)?);
    if !Catalog::new(store.clone()).is_current()?
        || !stowage_engine::runs_projection_is_current(&store)?
    {
        let events = store.rebuild_projections().await?;
        tracing::info!(
            events,
            "projections rebuilt: the layout of the catalog or of the run summaries changed"
        );
    }
    let master_key = load_master_key(&config.master_key, &store)?;
    let entities = Entities::new(store.clone(), Arc::new(master_key.key));
    let bootstrap_token_path = config.bootstrap_token_path();
    let (bootstrap, new_bootstrap_token) =
        match BootstrapToken::load_or_create(&bootstrap_token_path)? {
            Bootstrap::Created(token, shown) => (token, Some(shown)),
            Bootstrap::Existing(token) => (token, None),
        };
    let oidc = match &config.oidc {
        Some(oidc) => Some(
            OidcVerifier::discover(oidc.clone())
                .await
                .map_err(ServerError::Oidc)?,
        ),
        None => None,
    };
    let auth = Authenticator::new(Some(bootstrap), oidc, config.roles.clone());
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
    let runtime = server_runtime(entities.clone(), config.workflows.clone())?;
    let resumed = runtime.recover().await?;
    let scheduler = runtime.clone();
    let scheduled = entities.clone();
    tokio::spawn(async move {
        if let Err(err) = run_scheduler(scheduler, scheduled).await {
            tracing::error!(error = %err, "the scheduler stopped: no new schedule runs until a restart");
        }
    });
    tracing::info!(%addr, data_dir = %config.data_dir.display(), resumed, "stowage server listening");
    on_ready(&Started {
        addr,
        scheme: if tls.is_some() { "https" } else { "http" },
        new_bootstrap_token,
        bootstrap_token_path,
        generated_master_key: master_key.generated,
    });
    let routes = routes(AppState::new(runtime, entities, auth));
    match tls {
        Some(tls) => serve_tls(listener, tls, routes, shutdown).await,
        None => {
            warp::serve(routes)
                .incoming(listener)
                .graceful(shutdown)
                .run()
                .await
        }
    }
    tracing::info!("stowage server stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn state(dir: &std::path::Path) -> AppState {
        let store = Arc::new(open_store(dir).unwrap());
        let (key, _) = stowage_workflows::sealing::MasterKey::generate().unwrap();
        let entities = Entities::new(store, Arc::new(key));
        let runtime = server_runtime(entities.clone(), WorkflowSettings::default()).unwrap();
        AppState::new(runtime, entities, Authenticator::default())
    }

    #[tokio::test]
    async fn the_type_filter_of_runs_names_every_workflow_type_the_server_runs() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        let mut types = crate::runs::WORKFLOW_TYPES.to_vec();
        types.sort_unstable();
        assert_eq!(state.catalog.runtime.workflow_types(), types);
    }

    #[tokio::test]
    async fn healthz_reports_the_database_format() {
        let dir = tempfile::tempdir().unwrap();
        let filter = routes(state(dir.path()));
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
        let filter = routes(state(dir.path()));
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
        let config = ServerConfig::new(dir.path(), "0.0.0.0:0".parse().unwrap());
        let err = serve(config, |_| {}, async {}).await.unwrap_err();
        assert!(err.to_string().contains("loopback only"), "{err}");
    }
}
