//! kubesim judged by real clients: its discovery against a real kube-apiserver's documents,
//! `kubectl` 1.32 driven as a user would, kube-rs, and the API's error answers over HTTPS.

mod binary;
mod controllers;
mod discovery;
mod http_api;
pub mod kube_rs;
pub mod kubectl;
mod kubectl_create;
mod pods;
mod volumes;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stowage_tests::kubesim::{Kubesim, KubesimOptions};

/// A cluster in a temporary folder, in memory, every controller on.
pub struct TestCluster {
    pub sim: Kubesim,
    pub folder: tempfile::TempDir,
}

pub async fn start_cluster(name: &str) -> TestCluster {
    start_cluster_with(name, |_| {}).await
}

/// A cluster like [`start_cluster`]'s with options changed by `configure`.
pub async fn start_cluster_with(
    name: &str,
    configure: impl FnOnce(&mut KubesimOptions),
) -> TestCluster {
    let folder = tempfile::tempdir().unwrap();
    let mut options = KubesimOptions::new(name, folder.path().join("cluster"));
    configure(&mut options);
    let sim = Kubesim::start(options).await.expect("kubesim starts");
    TestCluster { sim, folder }
}

/// The host folder holding PersistentVolume `volume` of the cluster.
pub fn volume_folder(cluster: &TestCluster, volume: &str) -> PathBuf {
    cluster.sim.cluster().volume_folders().volume(volume)
}

/// Polls `check` every 50 ms until it gives a value; fails the test after 20 seconds.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The project's own fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/kubesim")
        .join(name)
}

/// `../shared/testdata/<relative>` if present; otherwise prints why the caller skips.
pub fn shared_testdata(relative: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata")
        .join(relative);
    if path.exists() {
        Some(path)
    } else {
        println!(
            "SKIPPED: {} is absent (the shared Kubernetes test data lives beside the repository \
             as ../shared/testdata)",
            path.display()
        );
        None
    }
}
