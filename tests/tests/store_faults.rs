//! The repository through a fault-injecting proxy in front of the S3 server (moto): with one
//! request in ten failing (503, dropped connection, or a stall past the client's timeout) a
//! backup completes through object_store's retries and verifies; with the store down a backup
//! fails with an error naming what could not be done, and a resume from its checkpoint
//! finishes it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use stowage_storage::{
    BackupOptions, Error, LocationKind, Repository, VolumeCheckpoint, VolumeSource,
};
use stowage_tests::fault_proxy::{FaultProxy, Faults};
use stowage_tests::services;

use crate::repository::{PASSPHRASE, TEST_KDF, assert_same_tree, make_tree, noise};

/// The client's request timeout; a stalled request hangs longer.
const TIMEOUT: Duration = Duration::from_secs(3);

/// A store on moto through `proxy`, with a short timeout and quick retries.
fn store_through(proxy: &FaultProxy, test: &str, retries: usize) -> Arc<dyn ObjectStore> {
    let mut location =
        services::moto().location(&format!("repo/faults-{test}-{}", uuid::Uuid::new_v4()));
    if let LocationKind::S3 { endpoint, .. } = &mut location.kind {
        *endpoint = Some(proxy.endpoint());
    }
    let client = ClientOptions::new()
        .with_timeout(TIMEOUT)
        .with_connect_timeout(Duration::from_secs(1));
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            base: 2.0,
        },
        max_retries: retries,
        retry_timeout: Duration::from_secs(30),
    };
    location.open_with(&client, retry).unwrap()
}

#[tokio::test]
async fn a_backup_through_a_store_failing_one_request_in_ten_completes_and_verifies() {
    let proxy = FaultProxy::start(
        &services::moto().endpoint,
        Faults {
            every: 10,
            stall: TIMEOUT + Duration::from_secs(1),
        },
    )
    .await;
    let store = store_through(&proxy, "flaky", 6);
    let repo = Repository::init_in(
        store,
        "moto through the fault proxy".into(),
        PASSPHRASE,
        TEST_KDF,
    )
    .await
    .unwrap();
    let source = tempfile::tempdir().unwrap();
    make_tree(source.path());
    let summary = repo
        .backup(
            "b1",
            "flaky store",
            &[VolumeSource {
                name: "v".into(),
                path: source.path().to_path_buf(),
            }],
            &BackupOptions::default(),
            &|_| {},
        )
        .await
        .unwrap();
    assert!(
        summary.progress.chunks_uploaded > 3,
        "{:?}",
        summary.progress
    );
    let report = repo.verify("b1", 4).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let target = tempfile::tempdir().unwrap();
    repo.restore("b1", "v", target.path(), None, 4)
        .await
        .unwrap();
    assert_same_tree(source.path(), target.path());
    let counts = proxy.counts();
    let injected = counts.unavailable.load(Ordering::SeqCst)
        + counts.dropped.load(Ordering::SeqCst)
        + counts.stalled.load(Ordering::SeqCst);
    assert!(
        injected >= 3 && counts.stalled.load(Ordering::SeqCst) >= 1,
        "faults were injected: {counts:?}"
    );
}

#[tokio::test]
async fn with_the_store_down_a_backup_fails_clearly_and_a_resume_finishes_it() {
    let proxy = FaultProxy::start(
        &services::moto().endpoint,
        Faults {
            every: 0,
            stall: Duration::ZERO,
        },
    )
    .await;
    let store = store_through(&proxy, "down", 2);
    let repo = Repository::init_in(
        store,
        "moto through the fault proxy".into(),
        PASSPHRASE,
        TEST_KDF,
    )
    .await
    .unwrap();
    let source = tempfile::tempdir().unwrap();
    for i in 0..10 {
        std::fs::write(
            source.path().join(format!("f{i:02}.bin")),
            noise(600_000, 200 + i),
        )
        .unwrap();
    }
    let volume = VolumeSource {
        name: "v".into(),
        path: source.path().to_path_buf(),
    };
    let options = BackupOptions {
        concurrency: 2,
        checkpoint_every: Duration::ZERO,
    };
    // The store goes down once four files are stored.
    let saved: Arc<Mutex<Option<VolumeCheckpoint>>> = Arc::default();
    let save = |checkpoint: &VolumeCheckpoint| {
        *saved.lock().unwrap() = Some(checkpoint.clone());
        let files = checkpoint
            .entries
            .iter()
            .filter(|e| e.path.ends_with(".bin"))
            .count();
        if files >= 4 {
            proxy.set_down(true);
        }
    };
    let err = repo
        .backup_volume("b1", &volume, &options, None, &|_| {}, &save)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            Error::Store {
                action: "write",
                ..
            }
        ) && (text.contains("packs/") || text.contains("index/")),
        "the error names the write that failed: {text}"
    );
    let checkpoint = saved.lock().unwrap().clone().unwrap();

    proxy.set_down(false);
    let summary = repo
        .backup_volume("b1", &volume, &options, Some(&checkpoint), &|_| {}, &|_| {})
        .await
        .unwrap();
    assert!(
        summary.progress.files_unchanged >= 4,
        "{:?}",
        summary.progress
    );
    assert_eq!(summary.progress.files, 10);
    repo.finalize_backup("b1", "resumed", BTreeMap::new())
        .await
        .unwrap();
    let report = repo.verify("b1", 4).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let target = tempfile::tempdir().unwrap();
    repo.restore("b1", "v", target.path(), None, 4)
        .await
        .unwrap();
    for i in 0..10 {
        let file = format!("f{i:02}.bin");
        assert!(
            std::fs::read(target.path().join(&file)).unwrap()
                == std::fs::read(source.path().join(&file)).unwrap(),
            "{file}"
        );
    }
}
