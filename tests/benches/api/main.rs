//! The API load benchmark: list and get of backups on a catalog of 10,000 backups, at a fixed
//! request rate, measured with `oha`. Run it with `ops/bench/api`.
//!
//! 1. Fills a catalog the way a server's is filled: writes finished backups (manifests with the
//!    workflow's name and spec, spread over ten clusters) into a local-folder repository through
//!    the storage API, registers the location and runs the catalog sync workflow through the
//!    engine. The catalog projection folds the sync run's events into one record per backup,
//!    exactly as for a server that finds a repository other servers wrote.
//! 2. Serves the product's routes on a loopback port with the bootstrap admin token.
//! 3. Drives `GET /v1/backups?limit=100&cluster=...` (a filtered page), `GET
//!    /v1/backups?limit=100` (the first page) and then `GET /v1/backups/{id}` (over every backup
//!    id in turn) with `oha` at a fixed rate for a
//!    fixed time, latency measured from when each request was due (`--latency-correction`).
//!
//! Prints one JSON line per route: requests per second achieved, p50 and p99 in milliseconds,
//! failed requests (connection errors and non-2xx answers; requests still in flight when the
//! time is up are counted apart, as `cut_off_at_end`), the rate asked for, the catalog size
//! and the build profile. Settings from the environment: `STOWAGE_BENCH_BACKUPS` (default
//! 10000), `STOWAGE_BENCH_RATE` (requests per second, default 1000), `STOWAGE_BENCH_SECONDS`
//! (per route, default 20), `STOWAGE_BENCH_OHA` (the oha binary, default `oha` on the PATH).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use stowage::auth::{Authenticator, Bootstrap, BootstrapToken, RoleMapping};
use stowage_engine::{RunStatus, StartOptions};
use stowage_storage::{KdfParams, Location, LocationKind, Repository, ResourceRecord};
use stowage_tests::api_server::ApiServer;
use stowage_tests::bench::{main_under_cargo_bench, setting};
use stowage_workflows::backup::BackupSpec;
use stowage_workflows::backup::workflow::{METADATA_NAME, METADATA_SPEC};
use stowage_workflows::catalog::{Catalog, CatalogQuery};
use stowage_workflows::entity::{Kind, NewEntity};
use stowage_workflows::sync::SYNC_WORKFLOW;

/// The user the catalog is filled as.
const ACTOR: &str = "bench";
/// The repository's passphrase.
const PASSPHRASE: &str = "a passphrase for the api benchmark";
/// A light key derivation: the benchmark measures the API, not Argon2.
const KDF: KdfParams = KdfParams {
    memory_kib: 256,
    iterations: 1,
    parallelism: 1,
};
/// Clusters the backups are spread over; the list route filters on one of them.
const CLUSTERS: usize = 10;
/// Manifests written at once.
const WRITES_IN_FLIGHT: usize = 32;
/// The longest the sync run may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(900);

fn main() -> anyhow::Result<()> {
    main_under_cargo_bench("api", run)
}

async fn run() -> anyhow::Result<()> {
    let backups = setting("STOWAGE_BENCH_BACKUPS", 10_000)?;
    let rate = setting("STOWAGE_BENCH_RATE", 1000)?;
    let seconds = setting("STOWAGE_BENCH_SECONDS", 20)?;
    let oha = std::env::var("STOWAGE_BENCH_OHA").unwrap_or_else(|_| "oha".into());
    let folder = tempfile::tempdir().context("a work folder")?;

    let store = Arc::new(stowage::open_store(&folder.path().join("db")).context("the store")?);
    let entities = stowage_tests::api_server::test_entities(store.clone());
    let runtime = stowage::server_runtime(entities.clone(), stowage::WorkflowSettings::default())
        .context("the runtime")?;

    let started = Instant::now();
    let location = write_repository(&folder.path().join("bucket"), backups).await?;
    eprintln!(
        "wrote {backups} finished backups in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let location_id = entities
        .create(
            NewEntity {
                kind: Kind::Location,
                name: "bench".into(),
                labels: BTreeMap::new(),
                spec: json!({ "location": location, "passphrase": PASSPHRASE }),
            },
            ACTOR,
            ACTOR,
        )
        .await
        .context("registering the location")?
        .id;
    let sync = runtime
        .start(
            SYNC_WORKFLOW,
            json!({ "location": location_id }),
            StartOptions::default(),
            ACTOR,
        )
        .await
        .context("starting the catalog sync")?;
    let state = tokio::time::timeout(SYNC_TIMEOUT, runtime.wait_finished(&sync))
        .await
        .context("the catalog sync did not finish in time")??;
    anyhow::ensure!(
        state.status == RunStatus::Completed,
        "the catalog sync ended {:?}: {:?}",
        state.status,
        state.error
    );
    let catalog = Catalog::new(store.clone());
    let ids = every_backup(&catalog)?;
    anyhow::ensure!(
        ids.len() == backups,
        "the catalog holds {} backups, not {backups}",
        ids.len()
    );
    eprintln!(
        "synced {backups} backups into the catalog in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let token_path = folder.path().join("bootstrap-token");
    let (bootstrap, token) = match BootstrapToken::load_or_create(&token_path)? {
        Bootstrap::Created(bootstrap, token) => (bootstrap, token),
        Bootstrap::Existing(_) => anyhow::bail!("{} already existed", token_path.display()),
    };
    let auth = Authenticator::new(Some(bootstrap), None, RoleMapping::default());
    let server = ApiServer::start_with(runtime, entities, auth)
        .await
        .context("serving the API")?;

    let urls = folder.path().join("get-urls.txt");
    let lines: Vec<String> = ids
        .iter()
        .map(|id| server.url(&format!("/v1/backups/{id}")))
        .collect();
    std::fs::write(&urls, lines.join("\n") + "\n").context("writing the URL list")?;
    let list = server.url("/v1/backups?limit=100&cluster=cluster-3");
    let unfiltered = server.url("/v1/backups?limit=100");
    let routes = [
        ("GET /v1/backups?limit=100&cluster=", Target::Url(list)),
        ("GET /v1/backups?limit=100", Target::Url(unfiltered)),
        ("GET /v1/backups/{id}", Target::File(&urls)),
    ];
    for (route, target) in routes {
        let figures = drive(&oha, &target, &token, rate, seconds).await?;
        println!(
            "{}",
            json!({
                "benchmark": "api",
                "route": route,
                "rate": rate,
                "seconds": seconds,
                "backups": backups,
                "requests_per_second": figures.requests_per_second,
                "p50_ms": figures.p50_ms,
                "p99_ms": figures.p99_ms,
                "requests": figures.requests,
                "errors": figures.errors,
                "error_kinds": figures.error_kinds,
                "cut_off_at_end": figures.cut_off,
                "profile": if cfg!(debug_assertions) { "dev" } else { "release" },
            })
        );
    }
    Ok(())
}

/// Writes `backups` finished backups into a fresh repository in `root`, as the backup workflow
/// leaves them (a resource pack of one ConfigMap, no volumes, and a manifest with the backup's
/// name and spec); returns the location.
async fn write_repository(root: &Path, backups: usize) -> anyhow::Result<Location> {
    std::fs::create_dir_all(root).context("the location's folder")?;
    let location = Location {
        kind: LocationKind::Local {
            root: root.to_path_buf(),
        },
        prefix: "bench".into(),
    };
    let repository = Repository::init(&location, PASSPHRASE, KDF)
        .await
        .context("initialising the repository")?;
    let specs: Vec<String> = (0..CLUSTERS)
        .map(|cluster| {
            let spec = BackupSpec::parse(&json!({
                "cluster": format!("cluster-{cluster}"),
                "location": "bench",
                "namespaces": ["shop"],
                "volumes": "copy",
            }))
            .map_err(|problems| anyhow::anyhow!("the backup spec: {problems:?}"))?;
            Ok(serde_json::to_string(&spec)?)
        })
        .collect::<anyhow::Result<_>>()?;
    futures::stream::iter(0..backups)
        .map(|n| {
            let repository = &repository;
            let spec = &specs[n % CLUSTERS];
            async move {
                let mut pack = repository.resource_writer(&format!("backup-{n:05}"))?;
                let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                                  "metadata": {"name": "settings", "namespace": "shop"}});
                pack.add(ResourceRecord {
                    group: String::new(),
                    version: "v1".into(),
                    kind: "ConfigMap".into(),
                    namespace: Some("shop".into()),
                    name: "settings".into(),
                    body: body.to_string().into_bytes(),
                })
                .await?;
                pack.finish().await?;
                let metadata = BTreeMap::from([
                    (METADATA_NAME.to_string(), format!("nightly-{n}")),
                    (METADATA_SPEC.to_string(), spec.clone()),
                ]);
                repository
                    .finalize_backup(&format!("backup-{n:05}"), "bench", metadata)
                    .await
                    .with_context(|| format!("writing backup {n}"))
            }
        })
        .buffer_unordered(WRITES_IN_FLIGHT)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(location)
}

/// The id of every backup in the catalog, page by page.
fn every_backup(catalog: &Catalog) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut query = CatalogQuery {
        limit: 1000,
        ..CatalogQuery::default()
    };
    loop {
        let page = catalog.backups(&query, |_| true)?;
        ids.extend(page.items.into_iter().map(|record| record.id));
        match page.next_after {
            Some(after) => query.after = Some(after),
            None => return Ok(ids),
        }
    }
}

/// What `oha` requests: one URL, or the URLs of a file in turn.
enum Target<'a> {
    Url(String),
    File(&'a Path),
}

/// What one `oha` run measured.
struct Figures {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    errors: u64,
    /// What the errors were: oha's error messages and non-2xx statuses, with their counts.
    error_kinds: Value,
    /// Requests in flight when the time was up.
    cut_off: u64,
}

/// oha's name for the requests in flight when its time is up.
const DEADLINE: &str = "aborted due to deadline";

/// Runs `oha` against `target` at `rate` requests per second for `seconds`.
async fn drive(
    oha: &str,
    target: &Target<'_>,
    token: &str,
    rate: usize,
    seconds: usize,
) -> anyhow::Result<Figures> {
    let mut command = tokio::process::Command::new(oha);
    command
        .args([
            "--no-tui",
            "--output-format",
            "json",
            "--latency-correction",
        ])
        .args(["-q", &rate.to_string(), "-z", &format!("{seconds}s")])
        .args(["-c", "50"])
        .args(["-H", &format!("Authorization: Bearer {token}")]);
    match target {
        Target::Url(url) => command.arg(url),
        Target::File(path) => command.arg("--urls-from-file").arg(path),
    };
    let output = command
        .output()
        .await
        .with_context(|| format!("running `{oha}` (install it with ops/lib/install.sh)"))?;
    anyhow::ensure!(
        output.status.success(),
        "{oha} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).context("oha's JSON report")?;
    let number = |pointer: &str| {
        report
            .pointer(pointer)
            .and_then(Value::as_f64)
            .with_context(|| format!("oha's report has no {pointer}: {report}"))
    };
    let statuses = report
        .get("statusCodeDistribution")
        .and_then(Value::as_object)
        .context("oha's report has no statusCodeDistribution")?;
    let count = |value: &Value| value.as_u64().unwrap_or(0);
    let answered: u64 = statuses.values().map(count).sum();
    let not_ok: u64 = statuses
        .iter()
        .filter(|(status, _)| !status.starts_with('2'))
        .map(|(_, value)| count(value))
        .sum();
    let failures = report
        .get("errorDistribution")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    // Requests still in flight when the time is up are cut off by oha, not failed by the server.
    let failed: u64 = failures
        .iter()
        .filter(|(kind, _)| kind.as_str() != DEADLINE)
        .map(|(_, value)| count(value))
        .sum();
    let cut_off = failures.get(DEADLINE).map_or(0, count);
    let mut error_kinds = failures;
    error_kinds.remove(DEADLINE);
    for (status, value) in statuses
        .iter()
        .filter(|(status, _)| !status.starts_with('2'))
    {
        error_kinds.insert(format!("HTTP {status}"), value.clone());
    }
    Ok(Figures {
        requests_per_second: number("/summary/requestsPerSec")?,
        p50_ms: number("/latencyPercentiles/p50")? * 1000.0,
        p99_ms: number("/latencyPercentiles/p99")? * 1000.0,
        requests: answered + failed,
        errors: not_ok + failed,
        cut_off,
        error_kinds: Value::Object(error_kinds),
    })
}
