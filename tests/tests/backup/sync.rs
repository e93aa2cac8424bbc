//! The catalog sync workflow through the engine of a fresh server, over repositories on a local
//! folder and on S3 (s3s-fs) that other servers wrote: exactly the backups with a manifest are
//! listed, with their names, specs, clusters, object counts and volumes; a corrupted manifest is
//! reported as unreadable instead of failing the scan.

use std::collections::BTreeSet;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::{Value, json};
use stowage_storage::Repository;
use stowage_workflows::entity::Kind;
use stowage_workflows::sync::{
    FoundBackup, FoundVolume, SYNC_WORKFLOW, SyncedCatalog, sync_workflow,
};

use super::server::Server;
use super::stored::{
    backends_for_workflows, backup_spec, location_spec, stage_volume, write_backup,
};
use crate::repository::{PASSPHRASE, TEST_KDF, noise};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fresh_server_finds_exactly_the_finished_backups_and_names_a_damaged_one() {
    let db = tempfile::tempdir().unwrap();
    std::fs::write(db.path().join("table.dat"), noise(700_000, 41)).unwrap();
    std::fs::write(db.path().join("PG_VERSION"), b"17\n").unwrap();
    let web = tempfile::tempdir().unwrap();
    std::fs::write(web.path().join("index.html"), b"<h1>shop</h1>").unwrap();

    for backend in backends_for_workflows("sync").await {
        let name = backend.name;
        let repo = Repository::init(&backend.location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap();
        let before = now();
        let first = write_backup(
            &repo,
            "b-1",
            "shop nightly",
            "cluster-east",
            &[("shop.db", db.path()), ("shop.web", web.path())],
            3,
        )
        .await;
        let second = write_backup(
            &repo,
            "b-2",
            "db only",
            "cluster-west",
            &[("shop.db", db.path())],
            0,
        )
        .await;
        // Unfinished: never listed.
        stage_volume(&repo, "b-3", "shop.db", db.path()).await;
        // Finished, then its manifest damaged.
        write_backup(
            &repo,
            "b-4",
            "damaged",
            "cluster-east",
            &[("shop.web", web.path())],
            1,
        )
        .await;
        let store = backend.location.open().unwrap();
        store
            .put(
                &ObjectPath::from("backups/b-4/manifest"),
                PutPayload::from_static(b"not a sealed manifest at all"),
            )
            .await
            .unwrap();
        let after = now();

        // A new server that knows only the location.
        let server = Server::start(|_| {}, |services| vec![sync_workflow(services.clone())]);
        let location = server
            .register(
                Kind::Location,
                "recovered",
                location_spec(&backend.location),
            )
            .await;
        let outputs = server
            .run(SYNC_WORKFLOW, json!({ "location": location }))
            .await;
        let scan = &outputs["scan"];
        let catalog: SyncedCatalog = serde_json::from_value(scan.clone()).unwrap();
        assert_eq!(catalog.location, location, "{name}");
        let ids: Vec<&str> = catalog.backups.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["b-1", "b-2"], "{name}");

        let found = &catalog.backups[0];
        assert!(
            (before..=after).contains(&found.finished_at),
            "{name}: {}",
            found.finished_at
        );
        assert_eq!(found.finished_at, first.finished_at, "{name}");
        let volume = |record: &stowage_storage::VolumeRecord| FoundVolume {
            name: record.name.clone(),
            files: record.files,
            bytes: record.bytes,
        };
        assert_eq!(
            *found,
            FoundBackup {
                id: "b-1".into(),
                name: "shop nightly".into(),
                cluster: "cluster-east".into(),
                finished_at: first.finished_at,
                spec: Some(backup_spec("cluster-east")),
                objects: 3,
                volumes: first.volumes.iter().map(volume).collect(),
                bytes: 700_000 + 3 + 13,
            },
            "{name}"
        );
        assert_eq!(
            found
                .volumes
                .iter()
                .map(|v| (v.name.as_str(), v.files))
                .collect::<Vec<_>>(),
            [("shop.db", 2), ("shop.web", 1)],
            "{name}"
        );
        assert_eq!(
            catalog.backups[1],
            FoundBackup {
                id: "b-2".into(),
                name: "db only".into(),
                cluster: "cluster-west".into(),
                finished_at: second.finished_at,
                spec: Some(backup_spec("cluster-west")),
                objects: 0,
                volumes: second.volumes.iter().map(volume).collect(),
                bytes: 700_003,
            },
            "{name}"
        );

        assert_eq!(
            catalog.unreadable.len(),
            1,
            "{name}: {:?}",
            catalog.unreadable
        );
        assert_eq!(catalog.unreadable[0].id, "b-4", "{name}");
        assert!(
            catalog.unreadable[0].error.contains("backups/b-4/manifest"),
            "{name}: {}",
            catalog.unreadable[0].error
        );

        // The JSON shape other parts decode, field by field.
        let keys = |value: &Value| -> BTreeSet<String> {
            value.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(
            keys(scan),
            set(&["location", "backups", "unreadable"]),
            "{name}"
        );
        assert_eq!(
            keys(&scan["backups"][0]),
            set(&[
                "id",
                "name",
                "cluster",
                "finished_at",
                "spec",
                "objects",
                "volumes",
                "bytes"
            ]),
            "{name}"
        );
        assert_eq!(
            keys(&scan["backups"][0]["volumes"][0]),
            set(&["name", "files", "bytes"]),
            "{name}"
        );
        assert_eq!(
            scan["backups"][0]["spec"]["cluster"], "cluster-east",
            "{name}"
        );
        assert_eq!(
            keys(&scan["unreadable"][0]),
            set(&["id", "error"]),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_bad_location_or_one_without_a_repository_fails_the_scan_and_creates_nothing() {
    let server = Server::start(|_| {}, |services| vec![sync_workflow(services.clone())]);
    for (input, expected) in [
        (json!({"location": ""}), "input `location`"),
        (
            json!({"location": "nowhere"}),
            "location nowhere does not exist",
        ),
        (json!({}), "missing field `location`"),
    ] {
        let error = server.run_failing(SYNC_WORKFLOW, input.clone()).await;
        assert!(error.contains(expected), "{input}: {error}");
    }
    // A location without a repository is named, and the scan does not create one.
    let empty = tempfile::tempdir().unwrap();
    let location = stowage_storage::Location {
        kind: stowage_storage::LocationKind::Local {
            root: empty.path().to_path_buf(),
        },
        prefix: String::new(),
    };
    let id = server
        .register(Kind::Location, "empty", location_spec(&location))
        .await;
    let error = server
        .run_failing(SYNC_WORKFLOW, json!({ "location": id }))
        .await;
    assert!(error.contains("no Stowage repository"), "{error}");
    assert!(
        std::fs::read_dir(empty.path()).unwrap().next().is_none(),
        "the scan wrote into the location"
    );
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|key| key.to_string()).collect()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
