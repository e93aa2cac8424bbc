//! The objects benchmark: a backup and a restore of many Kubernetes objects on kubesim, each
//! against its raw baseline in the same run. Run it with `ops/bench/objects`.
//!
//! 1. Starts a kubesim cluster and creates the namespaces, then every namespace's objects (a
//!    mix shaped like small applications, see `mix`), with plain POSTs, as many in flight as
//!    the restore creates at once: the raw create time.
//! 2. Once the workloads' pods exist, lists what a backup of the cluster holds (namespaces, the
//!    created types, ReplicaSets and Pods) with plain paginated lists, as many types at once and
//!    with the page size the collect step uses: the raw list time.
//! 3. Backs the whole cluster up (volumes skipped) through the engine's backup workflow into a
//!    local-folder location: the backup time, start to finish.
//! 4. Stops the first cluster and restores the backup into a second, fresh kubesim cluster
//!    through the restore workflow: the restore time; then checks that every created object is
//!    in the second cluster. (One simulated cluster runs at a time, as during the raw creates:
//!    kubesim's controllers keep reconciling every workload of a cluster while it runs.)
//!
//! Prints the figures, then one JSON line with every figure, the ratios backup/raw list and
//! restore/raw create, the object count and the build profile. Settings from the environment:
//! `STOWAGE_BENCH_NAMESPACES` (default 100) and `STOWAGE_BENCH_OBJECTS_PER_NAMESPACE` (default
//! 100), `STOWAGE_BENCH_DIR` (work folder, default a temporary one).

mod mix;
mod raw;
mod server;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use stowage_tests::bench::{main_under_cargo_bench, setting};
use stowage_tests::kubesim::{Kubesim, KubesimOptions};
use stowage_workflows::backup::BackupSpec;
use stowage_workflows::backup::collect::{LISTS_IN_FLIGHT, PAGE_SIZE};
use stowage_workflows::backup::workflow::{BACKUP_WORKFLOW, BackupInput};
use stowage_workflows::cluster::{ClusterClient, ClusterSpec};
use stowage_workflows::entity::Kind;
use stowage_workflows::restore::apply::CREATES_IN_FLIGHT;
use stowage_workflows::restore::workflow::{RESTORE_WORKFLOW, RestoreInput, RestoreSpec, results};
use stowage_workflows::restore::{ObjectResult, Outcome};

use server::Server;

/// How long the workloads' controllers may take to run their pods.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(300);

fn main() -> anyhow::Result<()> {
    main_under_cargo_bench("objects", run)
}

async fn start_cluster(name: &str, folder: &Path) -> anyhow::Result<(Kubesim, ClusterClient)> {
    let sim = Kubesim::start(KubesimOptions::new(name, folder.join(name)))
        .await
        .with_context(|| format!("starting kubesim {name}"))?;
    let client = ClusterSpec::parse(&json!({ "kubeconfig": kubeconfig(&sim)? }))
        .map_err(|problems| anyhow::anyhow!("kubeconfig of {name}: {problems:?}"))?
        .connect()
        .await
        .with_context(|| format!("connecting to {name}"))?;
    Ok((sim, client))
}

fn kubeconfig(sim: &Kubesim) -> anyhow::Result<String> {
    std::fs::read_to_string(sim.kubeconfig_path())
        .with_context(|| format!("reading {}", sim.kubeconfig_path().display()))
}

/// Waits until the cluster runs `expected` pods (the workloads' controllers work after the
/// creates have been answered).
async fn pods_settled(client: &kube::Client, expected: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let pods = raw::list_all(client, &[mix::POD], LISTS_IN_FLIGHT, PAGE_SIZE, None).await?;
        if pods >= expected {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {pods} of {expected} pods after {SETTLE_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ratio(numerator: f64, denominator: f64) -> f64 {
    (numerator / denominator * 100.0).round() / 100.0
}

fn seconds(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

async fn run() -> anyhow::Result<()> {
    let namespaces = setting("STOWAGE_BENCH_NAMESPACES", 100)?;
    let per_namespace = setting("STOWAGE_BENCH_OBJECTS_PER_NAMESPACE", 100)?;
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    let temporary = tempfile::tempdir()?;
    let folder = match std::env::var_os("STOWAGE_BENCH_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => temporary.path().to_path_buf(),
    };
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    println!(
        "objects benchmark ({profile} build): {namespaces} namespaces × {per_namespace} objects, in {}",
        folder.display()
    );

    // 1. Raw creates.
    let (source, source_client) = start_cluster("source", &folder).await?;
    let names: Vec<String> = (0..namespaces).map(mix::namespace_name).collect();
    let namespace_objects: Vec<mix::Planned> = names.iter().map(|n| mix::namespace(n)).collect();
    let objects: Vec<mix::Planned> = names
        .iter()
        .flat_map(|n| mix::objects(n, per_namespace))
        .collect();
    let started = Instant::now();
    let created_namespaces =
        raw::create_all(&source_client.client, namespace_objects, CREATES_IN_FLIGHT).await?;
    let created_objects =
        raw::create_all(&source_client.client, objects, CREATES_IN_FLIGHT).await?;
    let raw_create = started.elapsed().as_secs_f64();
    let created = created_namespaces + created_objects;
    println!(
        "raw create: {created} objects ({created_namespaces} namespaces) in {raw_create:.2} s, {CREATES_IN_FLIGHT} in flight: {:.0} objects/s",
        created as f64 / raw_create
    );
    pods_settled(
        &source_client.client,
        namespaces * mix::pods_per_namespace(per_namespace),
    )
    .await?;

    // 2. Raw list.
    let started = Instant::now();
    let listed = raw::list_all(
        &source_client.client,
        &mix::held_types(),
        LISTS_IN_FLIGHT,
        PAGE_SIZE,
        None,
    )
    .await?;
    let raw_list = started.elapsed().as_secs_f64();
    println!(
        "raw list: {listed} objects of {} types in {raw_list:.2} s, pages of {PAGE_SIZE}, {LISTS_IN_FLIGHT} types at once: {:.0} objects/s",
        mix::held_types().len(),
        listed as f64 / raw_list
    );

    // 3. Backup.
    let server = Server::start(&folder)?;
    let location_root = folder.join("location");
    std::fs::create_dir_all(&location_root)
        .with_context(|| format!("creating {}", location_root.display()))?;
    let source_id = server
        .register(
            Kind::Cluster,
            "source",
            json!({"kubeconfig": kubeconfig(&source)?}),
        )
        .await?;
    let location = server
        .register(
            Kind::Location,
            "local",
            json!({
                "location": {"kind": {"type": "local", "root": location_root}, "prefix": "bench"},
                "passphrase": "objects benchmark passphrase"
            }),
        )
        .await?;
    let spec = BackupSpec::parse(&json!({
        "cluster": source_id, "location": location, "volumes": "skip"
    }))
    .map_err(|problems| anyhow::anyhow!("backup spec: {problems:?}"))?;
    let input = BackupInput {
        backup: "objects".into(),
        name: "objects".into(),
        spec,
        labels: Default::default(),
        schedule: None,
    };
    let backup = server
        .run(BACKUP_WORKFLOW, serde_json::to_value(input)?)
        .await?;
    let collected = backup.outputs["collect"]["summary"]["objects"]
        .as_u64()
        .context("the collect step's output has no object count")?;
    let pack_bytes = backup.outputs["collect"]["resources"]["bytes"]
        .as_u64()
        .unwrap_or_default();
    println!(
        "backup: {collected} objects ({:.1} MiB of JSON) in {:.2} s: {:.0} objects/s; steps (ms): {:?}",
        pack_bytes as f64 / 1_048_576.0,
        backup.seconds,
        collected as f64 / backup.seconds,
        backup.steps_ms
    );

    // 4. Restore into a fresh cluster. The source goes first: its controllers keep reconciling
    // every workload it runs, and the raw creates ran with one cluster too.
    source.stop().await;
    let (target, target_client) = start_cluster("target", &folder).await?;
    let target_id = server
        .register(
            Kind::Cluster,
            "target",
            json!({"kubeconfig": kubeconfig(&target)?}),
        )
        .await?;
    let spec = RestoreSpec::parse(&json!({
        "backup": "objects", "location": location, "cluster": target_id
    }))
    .map_err(|problems| anyhow::anyhow!("restore spec: {problems:?}"))?;
    let input = RestoreInput {
        restore: "r-objects".into(),
        name: "objects".into(),
        spec,
    };
    let restore = server
        .run(RESTORE_WORKFLOW, serde_json::to_value(input)?)
        .await?;
    let results: Vec<ObjectResult> = results(&restore.outputs);
    let failed: Vec<&ObjectResult> = results
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "{} objects failed to restore, the first: {:?}",
        failed.len(),
        failed.first()
    );
    let restored_created = results
        .iter()
        .filter(|r| r.outcome == Outcome::Created)
        .count();
    let selector = format!("{}={}", mix::LABEL, mix::LABEL_VALUE);
    let mut counted_types = vec![mix::NAMESPACE];
    counted_types.extend(mix::created_types());
    let restored = raw::list_all(
        &target_client.client,
        &counted_types,
        LISTS_IN_FLIGHT,
        PAGE_SIZE,
        Some(&selector),
    )
    .await?;
    anyhow::ensure!(
        restored == created,
        "the target cluster holds {restored} of the {created} created objects"
    );
    println!(
        "restore: {restored_created} objects created in {:.2} s: {:.0} objects/s; steps (ms): {:?}; all {restored} benchmark objects are in the target",
        restore.seconds,
        restored_created as f64 / restore.seconds,
        restore.steps_ms
    );

    let backup_ratio = ratio(backup.seconds, raw_list);
    let restore_ratio = ratio(restore.seconds, raw_create);
    println!(
        "backup / raw list: {backup_ratio} (target ≤ 2); restore / raw create: {restore_ratio} (target ≤ 2)"
    );
    let figures: Value = json!({
        "bench": "objects",
        "profile": profile,
        "namespaces": namespaces,
        "objects_per_namespace": per_namespace,
        "objects_created": created,
        "raw_create_seconds": seconds(raw_create),
        "raw_create_in_flight": CREATES_IN_FLIGHT,
        "raw_list_objects": listed,
        "raw_list_seconds": seconds(raw_list),
        "raw_list_page_size": PAGE_SIZE,
        "raw_list_types_in_flight": LISTS_IN_FLIGHT,
        "backup_objects": collected,
        "backup_pack_bytes": pack_bytes,
        "backup_seconds": seconds(backup.seconds),
        "backup_steps_ms": backup.steps_ms,
        "restore_objects_created": restored_created,
        "restore_seconds": seconds(restore.seconds),
        "restore_steps_ms": restore.steps_ms,
        "restored_objects_checked": restored,
        "backup_over_raw_list": backup_ratio,
        "restore_over_raw_create": restore_ratio,
    });
    println!("{figures}");
    target.stop().await;
    Ok(())
}
