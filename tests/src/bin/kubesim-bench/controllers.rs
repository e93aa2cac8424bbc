//! How fast kubesim's simulated controllers converge, as a client sees it: a Deployment of
//! `REPLICAS` pods until Available, `CLAIMS` claims until Bound (each volume folder then gets a
//! 64 KiB file), and a VolumeSnapshot of each until readyToUse. Each phase is timed from the
//! first create to the list that shows everything done, polling every 50 ms.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures::StreamExt;
use serde_json::{Value, json};
use stowage_tests::kubesim::Kubesim;

const REPLICAS: usize = 200;
const CLAIMS: usize = 200;
const CONCURRENCY: usize = 16;
const LIMIT: Duration = Duration::from_secs(120);

struct Http<'a> {
    sim: &'a Kubesim,
    client: &'a reqwest::Client,
}

impl Http<'_> {
    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<()> {
        let response = self
            .client
            .post(format!("{}{path}", self.sim.url()))
            .bearer_auth(self.sim.token())
            .json(body)
            .send()
            .await?;
        ensure!(
            response.status().as_u16() == 201,
            "POST {path} answered {}",
            response.status()
        );
        Ok(())
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .client
            .get(format!("{}{path}", self.sim.url()))
            .bearer_auth(self.sim.token())
            .send()
            .await?
            .json()
            .await?)
    }

    /// Polls `path` until `done` accepts it; the seconds since `started`.
    async fn until(
        &self,
        path: &str,
        started: Instant,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<f64> {
        loop {
            let current = self.get(path).await?;
            if done(&current) {
                return Ok(started.elapsed().as_secs_f64());
            }
            ensure!(
                started.elapsed() < LIMIT,
                "{path} did not converge: {}",
                current.to_string().chars().take(2000).collect::<String>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn create_all(&self, path: &str, bodies: Vec<Value>) -> anyhow::Result<()> {
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(bodies)
            .map(|body| async move { self.post(path, &body).await })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }
}

fn items(list: &Value) -> &[Value] {
    list["items"].as_array().map_or(&[], Vec::as_slice)
}

/// Runs the three phases, prints each, answers the figures.
pub async fn run(sim: &Kubesim, client: &reqwest::Client) -> anyhow::Result<Value> {
    let http = Http { sim, client };
    let namespace = "/api/v1/namespaces";
    http.post(namespace, &json!({"metadata": {"name": "converge"}}))
        .await?;

    let started = Instant::now();
    http.post(
        "/apis/apps/v1/namespaces/converge/deployments",
        &json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": REPLICAS,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}},
            },
        }),
    )
    .await?;
    let deployment_seconds = http
        .until(
            "/apis/apps/v1/namespaces/converge/deployments/web",
            started,
            |web| web["status"]["availableReplicas"] == REPLICAS,
        )
        .await?;
    println!(
        "deployment of {REPLICAS} replicas Available in {deployment_seconds:.2} s: {:.0} pods/s",
        REPLICAS as f64 / deployment_seconds
    );

    let claims_path = "/api/v1/namespaces/converge/persistentvolumeclaims";
    let started = Instant::now();
    let claims = (0..CLAIMS)
        .map(|index| {
            json!({
                "metadata": {"name": format!("data-{index:03}")},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            })
        })
        .collect();
    http.create_all(claims_path, claims).await?;
    let claim_seconds = http
        .until(claims_path, started, |list| {
            items(list).len() == CLAIMS
                && items(list).iter().all(|c| c["status"]["phase"] == "Bound")
        })
        .await?;
    println!(
        "{CLAIMS} claims provisioned and Bound in {claim_seconds:.2} s: {:.0} claims/s",
        CLAIMS as f64 / claim_seconds
    );
    for claim in items(&http.get(claims_path).await?) {
        let volume = claim["spec"]["volumeName"]
            .as_str()
            .context("a bound claim names its volume")?;
        let folder = sim.cluster().volume_folders().volume(volume);
        std::fs::write(folder.join("data"), vec![7u8; 64 * 1024])?;
    }

    let snapshots_path = "/apis/snapshot.storage.k8s.io/v1/namespaces/converge/volumesnapshots";
    let started = Instant::now();
    let snapshots = (0..CLAIMS)
        .map(|index| {
            json!({
                "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                "metadata": {"name": format!("snap-{index:03}")},
                "spec": {"source": {"persistentVolumeClaimName": format!("data-{index:03}")}},
            })
        })
        .collect();
    http.create_all(snapshots_path, snapshots).await?;
    let snapshot_seconds = http
        .until(snapshots_path, started, |list| {
            items(list).len() == CLAIMS
                && items(list)
                    .iter()
                    .all(|s| s["status"]["readyToUse"] == true)
        })
        .await?;
    println!(
        "{CLAIMS} snapshots (64 KiB each) readyToUse in {snapshot_seconds:.2} s: {:.0} snapshots/s",
        CLAIMS as f64 / snapshot_seconds
    );
    Ok(json!({
        "deployment_pods_per_second": (REPLICAS as f64 / deployment_seconds).round(),
        "claims_bound_per_second": (CLAIMS as f64 / claim_seconds).round(),
        "snapshots_ready_per_second": (CLAIMS as f64 / snapshot_seconds).round(),
    }))
}
