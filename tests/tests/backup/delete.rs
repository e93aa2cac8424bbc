//! The delete-backup workflow through the engine, on a local-folder location and on S3
//! (s3s-fs): backups written through the storage API share content; deleting one removes it
//! and exactly its own chunks while the other still verifies and restores byte for byte;
//! deleting it again completes; an incomplete backup (no manifest) is deleted too, and a lock
//! left by a crashed backup is reported instead of silently deferring the collection.

use std::collections::BTreeSet;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::json;
use stowage_storage::{ChunkId, Location, Repository, STALE_LOCK};
use stowage_workflows::backup::delete::{DeleteValidated, ObjectsDeleted, Pruned};
use stowage_workflows::backup::{DELETE_WORKFLOW, delete_workflow};
use stowage_workflows::entity::Kind;
use stowage_workflows::services::DEFAULT_GC_GRACE;

use super::server::Server;
use super::stored::{
    backends_for_workflows, chunk_sizes, chunks_of, location_spec, stage_volume, write_backup,
};
use crate::repository::{PASSPHRASE, TEST_KDF, assert_same_tree, folder_objects, make_tree, noise};

/// A server running the delete workflow with the given grace window, and the id of the
/// location entity it has for `location`.
async fn server(grace: Duration, location: &Location) -> (Server, String) {
    let server = Server::start(
        |services| services.gc_grace = grace,
        |services| vec![delete_workflow(services.clone())],
    );
    let id = server
        .register(Kind::Location, "loc", location_spec(location))
        .await;
    (server, id)
}

/// The outputs of a completed deletion's steps.
struct Deletion {
    validated: DeleteValidated,
    deleted: ObjectsDeleted,
    pruned: Pruned,
}

async fn delete(server: &Server, backup: &str, location: &str) -> Deletion {
    let outputs = server
        .run(
            DELETE_WORKFLOW,
            json!({"backup": backup, "location": location}),
        )
        .await;
    let step = |name: &str| outputs[name].clone();
    Deletion {
        validated: serde_json::from_value(step("validate")).unwrap(),
        deleted: serde_json::from_value(step("delete_objects")).unwrap(),
        pruned: serde_json::from_value(step("prune_chunks")).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_backup_removes_only_its_own_chunks_and_completes_when_repeated() {
    // `b` is a tree of every kind of entry; `a` shares its big file and has one of its own.
    let source_b = tempfile::tempdir().unwrap();
    make_tree(source_b.path());
    let source_a = tempfile::tempdir().unwrap();
    std::fs::copy(
        source_b.path().join("data/big.bin"),
        source_a.path().join("shared.bin"),
    )
    .unwrap();
    std::fs::write(source_a.path().join("only-a.bin"), noise(1_500_000, 21)).unwrap();

    for backend in backends_for_workflows("delete").await {
        let name = backend.name;
        let repo = Repository::init(&backend.location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap();
        write_backup(&repo, "a", "nightly-a", "c1", &[("v", source_a.path())], 2).await;
        write_backup(&repo, "b", "nightly-b", "c1", &[("v", source_b.path())], 0).await;
        let chunks_a = chunks_of(&repo, "a").await;
        let chunks_b = chunks_of(&repo, "b").await;
        let only_a: BTreeSet<ChunkId> = chunks_a.difference(&chunks_b).cloned().collect();
        assert!(!only_a.is_empty(), "{name}: `a` has chunks of its own");
        assert!(
            chunks_a.intersection(&chunks_b).next().is_some(),
            "{name}: `a` and `b` share chunks"
        );
        let sizes = chunk_sizes(&repo).await;

        // With the default grace window the unreferenced chunks are only counted.
        let (patient, location) = server(DEFAULT_GC_GRACE, &backend.location).await;
        let first = delete(&patient, "a", &location).await;
        assert_eq!(
            first.validated,
            DeleteValidated {
                repository: repo.id().to_string(),
                manifest: true,
                name: Some("nightly-a".into()),
            },
            "{name}"
        );
        // The manifest, the tree, and the pack's index and frame.
        assert_eq!(first.deleted, deleted(true, 4), "{name}");
        assert_eq!(first.pruned.chunks, 0, "{name}: {:?}", first.pruned);
        assert_eq!(first.pruned.kept_in_grace, only_a.len() as u64, "{name}");
        assert_eq!(repo.backups().await.unwrap(), ["b"], "{name}");

        // Without one, deleting `a` again completes and its own chunks go, and only those.
        let (eager, location) = server(Duration::ZERO, &backend.location).await;
        let again = delete(&eager, "a", &location).await;
        assert!(!again.validated.manifest, "{name}: {:?}", again.validated);
        assert_eq!(again.deleted, deleted(false, 0), "{name}");
        let pruned = &again.pruned;
        assert!(!pruned.deferred, "{name}: {pruned:?}");
        assert_eq!(pruned.chunks, only_a.len() as u64, "{name}: {pruned:?}");
        let only_a_bytes: u64 = only_a.iter().map(|id| sizes[id]).sum();
        assert_eq!(pruned.bytes, only_a_bytes, "{name}: {pruned:?}");
        let left = chunk_sizes(&repo).await;
        assert!(
            only_a.iter().all(|id| !left.contains_key(id)),
            "{name}: chunks of `a` are still stored"
        );
        assert!(
            chunks_b.iter().all(|id| left.contains_key(id)),
            "{name}: chunks of `b` are gone"
        );
        assert_eq!(left.len(), chunks_b.len(), "{name}: stray chunks remain");

        // `b` is whole and comes back byte for byte.
        let report = repo.verify("b", 4).await.unwrap();
        assert!(report.is_ok(), "{name}: {:?}", report.problems);
        let target = tempfile::tempdir().unwrap();
        repo.restore("b", "v", target.path(), None, 4)
            .await
            .unwrap();
        assert_same_tree(source_b.path(), target.path());

        // A third time, nothing left to do: still completes.
        let third = delete(&eager, "a", &location).await;
        assert_eq!(third.deleted, deleted(false, 0), "{name}");
        assert_eq!((third.pruned.chunks, third.pruned.bytes), (0, 0), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_incomplete_backup_is_deleted_and_a_crashed_backups_lock_is_reported() {
    let kept = tempfile::tempdir().unwrap();
    std::fs::write(kept.path().join("kept.bin"), noise(1_200_000, 31)).unwrap();
    let crashed = tempfile::tempdir().unwrap();
    std::fs::write(crashed.path().join("partial.bin"), noise(1_300_000, 32)).unwrap();

    for backend in backends_for_workflows("delete-incomplete").await {
        let name = backend.name;
        let repo = Repository::init(&backend.location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap();
        write_backup(&repo, "kept", "kept", "c1", &[("v", kept.path())], 1).await;
        // A backup whose process died after one volume: a tree and chunks, no manifest, and
        // the lock it never removed.
        let store = backend.location.open().unwrap();
        let before: BTreeSet<ChunkId> = chunk_sizes(&repo).await.into_keys().collect();
        stage_volume(&repo, "crashed", "v", crashed.path()).await;
        let crashed_chunks: BTreeSet<ChunkId> = chunk_sizes(&repo)
            .await
            .into_keys()
            .filter(|id| !before.contains(id))
            .collect();
        assert!(!crashed_chunks.is_empty(), "{name}");
        let lock = format!("locks/backup-crashed-{}", uuid::Uuid::new_v4());
        store
            .put(
                &ObjectPath::from(lock.as_str()),
                PutPayload::from_static(b"stowage lock"),
            )
            .await
            .unwrap();

        let (server, location) = server(Duration::ZERO, &backend.location).await;
        let deletion = delete(&server, "crashed", &location).await;
        assert!(!deletion.validated.manifest, "{name}");
        assert_eq!(deletion.deleted, deleted(false, 1), "{name}: the tree");
        assert!(
            folder_objects(&store, "backups/crashed").await.is_empty(),
            "{name}: objects of the deleted backup remain"
        );
        // The crashed process's lock defers the collection, and says so.
        let pruned = &deletion.pruned;
        assert!(pruned.deferred, "{name}: {pruned:?}");
        assert_eq!(pruned.chunks, 0, "{name}: {pruned:?}");
        assert_eq!(pruned.blocking_locks.len(), 1, "{name}: {pruned:?}");
        let blocking = &pruned.blocking_locks[0];
        assert_eq!(blocking.backup, "crashed", "{name}");
        assert!(blocking.of_deleted_backup, "{name}");
        assert_eq!(format!("locks/{}", blocking.lock), lock, "{name}");
        assert!(
            blocking.ignored_in_seconds > STALE_LOCK.as_secs() - 600,
            "{name}: {blocking:?}"
        );

        // Once the lock is gone (removed, or stale), deleting again completes the collection.
        store
            .delete(&ObjectPath::from(lock.as_str()))
            .await
            .unwrap();
        let pruned = delete(&server, "crashed", &location).await.pruned;
        assert!(!pruned.deferred, "{name}: {pruned:?}");
        assert_eq!(
            pruned.chunks,
            crashed_chunks.len() as u64,
            "{name}: {pruned:?}"
        );
        let left = chunk_sizes(&repo).await;
        for id in &crashed_chunks {
            assert!(
                !left.contains_key(id),
                "{name}: chunk {id} of the crashed backup"
            );
        }
        assert_eq!(repo.backups().await.unwrap(), ["kept"], "{name}");
        let report = repo.verify("kept", 4).await.unwrap();
        assert!(report.is_ok(), "{name}: {:?}", report.problems);
    }
}

#[tokio::test]
async fn a_bad_input_fails_the_run_naming_the_field() {
    let server = Server::start(|_| {}, |services| vec![delete_workflow(services.clone())]);
    for (input, expected) in [
        (
            json!({"backup": "../etc", "location": "x"}),
            "input `backup`",
        ),
        (json!({"backup": "b", "location": ""}), "input `location`"),
        (
            json!({"backup": "b", "location": "missing"}),
            "location missing does not exist",
        ),
        (json!({"backup": "b"}), "missing field `location`"),
    ] {
        let error = server.run_failing(DELETE_WORKFLOW, input.clone()).await;
        assert!(error.contains(expected), "{input}: {error}");
    }
}

/// What a deletion's delete_objects step reports.
fn deleted(manifest: bool, objects: u64) -> ObjectsDeleted {
    ObjectsDeleted { manifest, objects }
}
