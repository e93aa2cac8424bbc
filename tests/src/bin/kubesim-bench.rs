//! kubesim's benchmark: starts a cluster in-process, creates 10,000 ConfigMaps over HTTPS from
//! 16 concurrent clients, then lists them in pages of 500, and prints creates/s and listed
//! objects/s (and a final JSON line). Run with
//! `cargo run --release -p stowage-tests --bin kubesim-bench` (see BENCHMARKS.md).
//! Then it times the simulated controllers (see `controllers`).

#[path = "kubesim-bench/controllers.rs"]
mod controllers;

use std::time::Instant;

use anyhow::{Context, ensure};
use futures::StreamExt;
use serde_json::{Value, json};
use stowage_tests::kubesim::{Kubesim, KubesimOptions};

const OBJECTS: usize = 10_000;
const CONCURRENCY: usize = 16;
const PAGE: usize = 500;
const LIST_ROUNDS: usize = 5;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let folder = tempfile_folder()?;
    let sim = Kubesim::start(KubesimOptions::new("bench", &folder))
        .await
        .context("starting kubesim")?;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(sim.ca_pem().as_bytes())?)
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    let url = format!("{}/api/v1/namespaces/default/configmaps", sim.url());

    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..OBJECTS)
        .map(|index| {
            let client = client.clone();
            let url = url.clone();
            let token = sim.token().to_string();
            async move {
                let body = json!({
                    "metadata": {"name": format!("bench-{index:05}"), "labels": {"app": "bench", "shard": (index % 10).to_string()}},
                    "data": {"index": index.to_string(), "payload": "x".repeat(200)},
                });
                let response = client.post(&url).bearer_auth(token).json(&body).send().await?;
                ensure!(response.status().as_u16() == 201, "create answered {}", response.status());
                Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for result in results {
        result?;
    }
    let create_seconds = started.elapsed().as_secs_f64();
    let creates_per_second = OBJECTS as f64 / create_seconds;
    println!(
        "created {OBJECTS} ConfigMaps in {create_seconds:.2} s: {creates_per_second:.0} creates/s ({CONCURRENCY} concurrent clients)"
    );

    let mut best_list = 0f64;
    for round in 1..=LIST_ROUNDS {
        let started = Instant::now();
        let mut listed = 0usize;
        let mut token = String::new();
        loop {
            let response: Value = client
                .get(&url)
                .bearer_auth(sim.token())
                .query(&[("limit", PAGE.to_string()), ("continue", token.clone())])
                .send()
                .await?
                .json()
                .await?;
            // The namespace also holds kube-root-ca.crt, which the controllers publish.
            listed += response["items"].as_array().map_or(0, |items| {
                items
                    .iter()
                    .filter(|item| {
                        item["metadata"]["name"]
                            .as_str()
                            .is_some_and(|name| name.starts_with("bench-"))
                    })
                    .count()
            });
            match response["metadata"]["continue"].as_str() {
                Some(next) if !next.is_empty() => token = next.to_string(),
                _ => break,
            }
        }
        ensure!(listed == OBJECTS, "listed {listed} of {OBJECTS}");
        let seconds = started.elapsed().as_secs_f64();
        let per_second = listed as f64 / seconds;
        best_list = best_list.max(per_second);
        println!(
            "list round {round}: {listed} objects in pages of {PAGE} in {seconds:.3} s: {per_second:.0} objects/s (parsed by the client)"
        );
    }
    let controllers = controllers::run(&sim, &client).await?;
    println!(
        "{}",
        json!({"bench": "kubesim", "objects": OBJECTS, "creates_per_second": creates_per_second.round(), "listed_objects_per_second_best": best_list.round(), "controllers": controllers})
    );
    sim.stop().await;
    std::fs::remove_dir_all(&folder).ok();
    Ok(())
}

fn tempfile_folder() -> anyhow::Result<std::path::PathBuf> {
    let folder = std::env::temp_dir().join(format!("kubesim-bench-{}", std::process::id()));
    std::fs::create_dir_all(&folder)?;
    Ok(folder)
}
