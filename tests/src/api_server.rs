//! A Stowage API server for tests: the product's routes over a loopback socket, on a store and
//! an authenticator the test chooses, stopped when dropped.

use std::sync::Arc;

use stowage::auth::Authenticator;
use stowage_engine::Store;

/// A running API server.
pub struct ApiServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The store it serves.
    pub store: Arc<Store>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ApiServer {
    /// Serves the routes on `store` with `auth`, on an ephemeral loopback port.
    pub async fn start(store: Arc<Store>, auth: Authenticator) -> std::io::Result<Self> {
        let routes = stowage::routes(stowage::AppState {
            store: store.clone(),
            auth,
            metrics: Arc::new(stowage::metrics::Metrics::new()),
        });
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

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
