//! kubesim: a Kubernetes API server for tests, faithful enough that `kubectl` and kube-rs work
//! against it unchanged. See `docs/kubesim.md` for what it serves and simulates.
//!
//! [`Kubesim::start`] starts one cluster on a loopback port with HTTPS (a generated CA) and
//! bearer-token authentication, and writes a kubeconfig for it; several instances are several
//! clusters. The cluster's folder keeps the CA, the token, the kubeconfig and (when persistent)
//! the journal of every object, so a restarted kubesim comes back with its state.

mod api;
mod cluster;
mod controllers;
mod discovery;
mod errors;
mod exec;
mod kubeconfig;
mod local_pods;
mod logs;
pub mod mounts;
mod namespaces;
mod openapi;
mod patch;
mod pod_status;
mod processes;
mod registry;
mod resources;
mod selector;
mod server;
mod services;
mod store;
mod tables;
mod tls;
mod validation;
mod volumes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use cluster::{Cluster, Controllers, DEFAULT_NAMESPACES};
pub use controllers::CronJobRunError;
pub use errors::{ApiError, StartError};
pub use logs::LogBuffer;
pub use processes::{LocalImage, PodRuntime};
pub use resources::{ResourceInfo, SubresourceInfo, built_in};
pub use store::Store;
pub use volumes::{CSI_DRIVER, VolumeFolders};

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct KubesimOptions {
    /// The cluster's name (kubeconfig cluster and context name).
    pub name: String,
    /// The folder for the CA, token, kubeconfig and, when `persistent`, the object journal.
    pub folder: PathBuf,
    /// Whether objects are journaled to the folder and survive a restart.
    pub persistent: bool,
    /// Where to listen; port 0 picks a free one. Loopback only.
    pub listen: SocketAddr,
    /// The simulated controllers to run.
    pub controllers: Controllers,
    /// Container images whose pods run as local processes (see `docs/kubesim.md`).
    pub local_images: Vec<LocalImage>,
}

impl KubesimOptions {
    /// A cluster named `name` keeping its files in `folder`, in memory, on an ephemeral port,
    /// with every controller on.
    pub fn new(name: impl Into<String>, folder: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            folder: folder.into(),
            persistent: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            controllers: Controllers::default(),
            local_images: Vec::new(),
        }
    }
}

/// A running cluster. Dropping it stops the server too.
#[derive(Debug)]
pub struct Kubesim {
    addr: SocketAddr,
    kubeconfig: PathBuf,
    token: String,
    ca_pem: String,
    cluster: Arc<Cluster>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    controllers_task: Option<tokio::task::JoinHandle<()>>,
    local_pods: Option<tokio::task::JoinHandle<()>>,
}

fn state_error(path: &Path) -> impl FnOnce(std::io::Error) -> StartError + '_ {
    move |source| StartError::State {
        path: path.to_path_buf(),
        source,
    }
}

/// The cluster's bearer token, kept in the folder so that kubeconfigs stay valid.
fn load_or_create_token(folder: &Path) -> Result<String, StartError> {
    let path = folder.join("token");
    if path.exists() {
        let token = std::fs::read_to_string(&path).map_err(state_error(&path))?;
        return Ok(token.trim().to_string());
    }
    let token = format!("kubesim-{}", uuid::Uuid::new_v4().simple());
    std::fs::write(&path, &token).map_err(state_error(&path))?;
    Ok(token)
}

impl Kubesim {
    /// Starts a cluster and writes its kubeconfig to `<folder>/kubeconfig`.
    pub async fn start(options: KubesimOptions) -> Result<Self, StartError> {
        if !options.listen.ip().is_loopback() {
            return Err(StartError::Listen {
                addr: options.listen,
                source: std::io::Error::other("kubesim listens on loopback addresses only"),
            });
        }
        let folder = &options.folder;
        std::fs::create_dir_all(folder).map_err(state_error(folder))?;
        let ca = tls::ClusterCa::load_or_create(folder)?;
        let token = load_or_create_token(folder)?;
        let store = if options.persistent {
            Store::open(&folder.join("objects.jsonl"))?
        } else {
            Store::in_memory()
        };
        let cluster = Cluster::new(store, options.controllers, VolumeFolders::new(folder))
            .map_err(|error| {
                StartError::Certificate(format!("restoring the cluster state: {error}"))
            })?;
        cluster.pod_runtime().set_local_images(options.local_images);
        let listener =
            TcpListener::bind(options.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: options.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: options.listen,
            source,
        })?;
        let kubeconfig_path = folder.join("kubeconfig");
        kubeconfig::write(
            &kubeconfig_path,
            &options.name,
            &format!("https://{addr}"),
            &ca.cert_pem,
            &token,
        )?;
        let shared = Arc::new(server::Shared {
            cluster: Arc::clone(&cluster),
            token: token.clone(),
            server_address: addr.to_string(),
        });
        let (stop, stop_receiver) = watch::channel(false);
        let controllers_task = controllers::start(
            &cluster,
            options.controllers,
            &ca.cert_pem,
            stop_receiver.clone(),
        )
        .map_err(StartError::Install)?;
        let task = tokio::spawn(server::run(
            listener,
            ca.server_config()?,
            shared,
            stop_receiver,
        ));
        let local_pods = local_pods::start(Arc::clone(&cluster));
        tracing::info!(name = %options.name, %addr, "kubesim serving");
        Ok(Self {
            addr,
            kubeconfig: kubeconfig_path,
            token,
            ca_pem: ca.cert_pem,
            cluster,
            stop,
            task: Some(task),
            controllers_task: Some(controllers_task),
            local_pods: Some(local_pods),
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The kubeconfig written for this cluster.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The bearer token clients must send.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The CA certificate (PEM) that signs the serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Runs CronJob `namespace/name` now, as its controller does when a schedule time comes
    /// ([`Cluster::run_cron_job`] with the current time); answers the Job it created.
    pub fn run_cron_job(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<serde_json::Value>, CronJobRunError> {
        self.cluster
            .run_cron_job(namespace, name, chrono::Utc::now())
    }

    /// The cluster behind the server.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Stops serving, kills every local process and waits until every connection is closed and
    /// the controllers stopped.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        self.cluster.pod_runtime().stop_all();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some(task) = self.controllers_task.take() {
            let _ = task.await;
        }
        if let Some(task) = self.local_pods.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Kubesim {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.cluster.pod_runtime().stop_all();
    }
}
