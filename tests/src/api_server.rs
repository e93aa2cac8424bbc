//! A Stowage API server for tests: the product's routes over a loopback socket, on a store and
//! an authenticator the test chooses, stopped when dropped.

use std::sync::Arc;

use stowage::auth::{Authenticator, OidcConfig, OidcVerifier, RoleMapping};
use stowage_engine::Store;
use stowage_workflows::entity::Entities;
use stowage_workflows::sealing::MasterKey;

/// A running API server.
pub struct ApiServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The store it serves.
    pub store: Arc<Store>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ApiServer {
    /// Serves the routes on `store` (opened with [`stowage::open_store`] or with the projections
    /// the test needs) with `auth`, on an ephemeral loopback port.
    /// Secrets are sealed with a new master key.
    pub async fn start(store: Arc<Store>, auth: Authenticator) -> std::io::Result<Self> {
        let entities = test_entities(store);
        let runtime =
            stowage::server_runtime(entities.clone(), stowage::WorkflowSettings::default())
                .map_err(std::io::Error::other)?;
        Self::start_with(runtime, entities, auth).await
    }

    /// Serves the routes over `runtime` (and its store, where `entities` are kept) with `auth`.
    pub async fn start_with(
        runtime: stowage_engine::Runtime,
        entities: Entities,
        auth: Authenticator,
    ) -> std::io::Result<Self> {
        let store = runtime.store().clone();
        // The scheduler, as `stowage server` runs it: new backup schedules get their ticks.
        tokio::spawn(stowage_workflows::schedule::run_scheduler(
            runtime.clone(),
            entities.clone(),
        ));
        let routes = stowage::routes(stowage::AppState::new(runtime, entities, auth));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(
            warp::serve(routes)
                .incoming(listener)
                .graceful(async {
                    let _ = stopped.await;
                })
                .run(),
        );
        Ok(Self {
            base,
            store,
            stop: Some(stop),
        })
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// The entities of `store`, their secrets sealed with a new master key (each call a new key:
/// keep the result for everything that reads the same store).
pub fn test_entities(store: Arc<Store>) -> Entities {
    // A test has randomness, or nothing works.
    #[allow(clippy::expect_used)]
    let (key, _) = MasterKey::generate().expect("random bytes for a master key");
    Entities::new(store, Arc::new(key))
}

/// An authenticator trusting the test OIDC issuer, with these admin and operator groups.
pub async fn oidc_authenticator(
    oidc: &crate::services::OidcService,
    admin_groups: &[&str],
    operator_groups: &[&str],
) -> Authenticator {
    let verifier = OidcVerifier::discover(OidcConfig::new(&oidc.issuer, &oidc.audience))
        .await
        .unwrap_or_else(|err| panic!("cannot discover the test OIDC issuer: {err}"));
    let names = |groups: &[&str]| groups.iter().map(|group| group.to_string()).collect();
    Authenticator::new(
        None,
        Some(verifier),
        RoleMapping {
            admin_groups: names(admin_groups),
            operator_groups: names(operator_groups),
        },
    )
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
