//! The catalog benchmark: what the catalog sync and delete-backup workflows do to a repository
//! with many backups. Run it with `cargo bench -p stowage-storage --bench catalog` (release).
//!
//! It writes `STOWAGE_BENCH_BACKUPS` finished backups (default 300; one small volume each, with
//! the metadata the backup workflow records) and measures: listing them, reading every manifest
//! one at a time and 16 at once (the sync's concurrency), deleting 10 of them
//! (`remove_backup`) and the garbage collection after. Locations: a local folder, and S3 on
//! s3s-fs when its `STOWAGE_TEST_S3S_*` variables are set (`source target/test-services/env`),
//! skipped with a printed reason otherwise. Prints figures, then one JSON line per location.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use stowage_storage::{
    BackupOptions, KdfParams, Location, LocationKind, Repository, Secret, VolumeSource,
};

const PASSPHRASE: &str = "catalog benchmark passphrase";
/// Manifests read at once, as the catalog sync does.
const CONCURRENCY: usize = 16;
/// Backups deleted.
const DELETED: usize = 10;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; test runners list targets with `--list`.
    if args.iter().any(|a| a == "--bench") {
        tokio::runtime::Runtime::new().unwrap().block_on(run());
    } else if !args.iter().any(|a| a == "--list") {
        eprintln!("the catalog benchmark runs under `cargo bench` (see its doc comment)");
    }
}

async fn run() {
    let backups: usize = std::env::var("STOWAGE_BENCH_BACKUPS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(300);
    let root = tempfile::tempdir().unwrap();
    let prefix = format!("bench-catalog-{}", uuid::Uuid::new_v4());
    let mut locations = vec![(
        "local",
        Location {
            kind: LocationKind::Local {
                root: root.path().to_path_buf(),
            },
            prefix: prefix.clone(),
        },
    )];
    match s3s_location(&prefix) {
        Some(location) => locations.push(("s3s", location)),
        None => println!(
            "s3s-fs skipped: STOWAGE_TEST_S3S_ENDPOINT is not set (start the test services and \
             `source target/test-services/env`)"
        ),
    }
    for (name, location) in locations {
        bench_location(name, &location, backups).await;
    }
}

fn s3s_location(prefix: &str) -> Option<Location> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Some(Location {
        kind: LocationKind::S3 {
            bucket: var("STOWAGE_TEST_S3S_BUCKET")?,
            region: "us-east-1".into(),
            endpoint: Some(var("STOWAGE_TEST_S3S_ENDPOINT")?),
            path_style: true,
            access_key_id: var("STOWAGE_TEST_S3S_ACCESS_KEY")?,
            secret_access_key: Secret::new(var("STOWAGE_TEST_S3S_SECRET_KEY")?),
        },
        prefix: prefix.into(),
    })
}

async fn bench_location(name: &str, location: &Location, backups: usize) {
    let kdf = KdfParams {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    };
    let repo = Repository::init(location, PASSPHRASE, kdf).await.unwrap();
    let source = tempfile::tempdir().unwrap();
    let spec = format!(
        "{{\"cluster\":\"c-1\",\"location\":\"l-1\",\"namespaces\":[\"shop\"],\"pad\":\"{}\"}}",
        "x".repeat(200)
    );
    let started = Instant::now();
    for n in 0..backups {
        let file = source.path().join("data.bin");
        std::fs::write(&file, format!("backup {n} ").repeat(400)).unwrap();
        let id = format!("backup-{n:05}");
        let volume = VolumeSource {
            name: "shop.db".into(),
            path: source.path().to_path_buf(),
        };
        repo.backup_volume(
            &id,
            &volume,
            &BackupOptions::default(),
            None,
            &|_| {},
            &|_| {},
        )
        .await
        .unwrap();
        let metadata = BTreeMap::from([
            ("stowage.backup.name".to_string(), format!("nightly {n}")),
            ("stowage.backup.spec".to_string(), spec.clone()),
        ]);
        repo.finalize_backup(&id, "cluster c-1", metadata)
            .await
            .unwrap();
    }
    let written = started.elapsed();

    let started = Instant::now();
    let ids = repo.backups().await.unwrap();
    let listed = started.elapsed();
    assert_eq!(ids.len(), backups);

    let read_all = |concurrency: usize| {
        let (repo, ids) = (&repo, &ids);
        async move {
            let started = Instant::now();
            let read: Vec<_> = futures::stream::iter(ids)
                .map(|id| repo.manifest(id))
                .buffered(concurrency)
                .collect()
                .await;
            assert!(read.iter().all(Result::is_ok));
            started.elapsed()
        }
    };
    let one_at_a_time = read_all(1).await;
    let concurrent = read_all(CONCURRENCY).await;

    let started = Instant::now();
    let mut objects = 0;
    for id in ids.iter().take(DELETED) {
        objects += repo.remove_backup(id).await.unwrap().objects;
    }
    let deleted = started.elapsed();

    let started = Instant::now();
    let report = repo.collect_garbage(Duration::ZERO).await.unwrap();
    let collected = started.elapsed();

    let per_second = |count: usize, time: Duration| count as f64 / time.as_secs_f64();
    println!(
        "{name}: {backups} backups written in {:.1} s",
        written.as_secs_f64()
    );
    println!("{name}: listing {:.0} ms", listed.as_secs_f64() * 1e3);
    println!(
        "{name}: manifests one at a time {:.2} s ({:.0}/s), {CONCURRENCY} at once {:.2} s ({:.0}/s)",
        one_at_a_time.as_secs_f64(),
        per_second(backups, one_at_a_time),
        concurrent.as_secs_f64(),
        per_second(backups, concurrent)
    );
    println!(
        "{name}: {DELETED} backups deleted ({objects} objects) in {:.0} ms, {:.1} ms each",
        deleted.as_secs_f64() * 1e3,
        deleted.as_secs_f64() * 1e3 / DELETED as f64
    );
    println!(
        "{name}: collection over {} backups {:.2} s: {} chunks ({} bytes) deleted",
        report.backups,
        collected.as_secs_f64(),
        report.deleted,
        report.deleted_bytes
    );
    println!(
        "{{\"location\":\"{name}\",\"backups\":{backups},\"list_ms\":{:.1},\
         \"manifests_sequential_s\":{:.3},\"manifests_concurrent_s\":{:.3},\
         \"delete_ms_each\":{:.1},\"gc_s\":{:.3},\"gc_chunks\":{}}}",
        listed.as_secs_f64() * 1e3,
        one_at_a_time.as_secs_f64(),
        concurrent.as_secs_f64(),
        deleted.as_secs_f64() * 1e3 / DELETED as f64,
        collected.as_secs_f64(),
        report.deleted
    );
}
