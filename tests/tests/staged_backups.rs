//! Staged backups against every backend: volumes written separately (as data movers do) and
//! resources by the server, restorable only once finalized; finalize naming what is missing;
//! an interrupted volume backup resumed from its checkpoint; garbage collection sparing a
//! staged backup in its grace window and removing an abandoned one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use stowage_storage::{
    BackupOptions, Error, Repository, ResourceFilter, ResourceRecord, VolumeCheckpoint,
    VolumeSource,
};

use crate::repository::{
    PASSPHRASE, TEST_KDF, assert_same_tree, backends, folder_objects, make_tree, noise,
};

fn options() -> BackupOptions {
    BackupOptions {
        concurrency: 4,
        checkpoint_every: Duration::ZERO,
    }
}

#[tokio::test]
async fn volumes_and_resources_staged_apart_are_restorable_once_finalized() {
    let sources = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    make_tree(sources[0].path());
    std::fs::write(sources[1].path().join("db.bin"), noise(2_500_000, 9)).unwrap();
    for backend in backends("staged").await {
        let name = backend.name;
        let repo = Repository::init(&backend.location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap();
        // Two movers at once, one per volume, and the server's resources.
        let volume = |i: usize| VolumeSource {
            name: format!("pvc-{i}"),
            path: sources[i].path().to_path_buf(),
        };
        let (volume0, volume1, options) = (volume(0), volume(1), options());
        let movers = futures::future::join(
            repo.backup_volume("b1", &volume0, &options, None, &|_| {}, &|_| {}),
            repo.backup_volume("b1", &volume1, &options, None, &|_| {}, &|_| {}),
        );
        let (first, second) = movers.await;
        let (first, second) = (first.unwrap(), second.unwrap());
        let mut writer = repo.resource_writer("b1").unwrap();
        writer
            .add(ResourceRecord {
                group: String::new(),
                version: "v1".into(),
                kind: "PersistentVolumeClaim".into(),
                namespace: Some("shop".into()),
                name: "pvc-0".into(),
                body: br#"{"kind":"PersistentVolumeClaim"}"#.to_vec(),
            })
            .await
            .unwrap();
        writer.finish().await.unwrap();

        let target = tempfile::tempdir().unwrap();
        let err = repo
            .restore("b1", "pvc-0", target.path(), None, 4)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no manifest"), "{name}: {err}");
        assert!(repo.backups().await.unwrap().is_empty(), "{name}");

        let metadata = BTreeMap::from([("cluster".to_string(), "east".to_string())]);
        let manifest = repo
            .finalize_backup("b1", "cluster east", metadata.clone())
            .await
            .unwrap();
        assert_eq!(manifest.metadata, metadata, "{name}");
        assert_eq!(
            manifest.volumes,
            vec![first.record, second.record],
            "{name}"
        );
        assert_eq!(manifest.resources.as_ref().unwrap().objects, 1, "{name}");
        assert_eq!(repo.manifest("b1").await.unwrap(), manifest, "{name}");
        assert_eq!(repo.backups().await.unwrap(), vec!["b1"], "{name}");

        for (i, source) in sources.iter().enumerate() {
            let target = tempfile::tempdir().unwrap();
            repo.restore("b1", &format!("pvc-{i}"), target.path(), None, 4)
                .await
                .unwrap();
            if i == 0 {
                assert_same_tree(source.path(), target.path());
            } else {
                assert_eq!(
                    std::fs::read(target.path().join("db.bin")).unwrap(),
                    std::fs::read(source.path().join("db.bin")).unwrap()
                );
            }
        }
        assert!(repo.verify("b1", 4).await.unwrap().is_ok(), "{name}");
        let records = repo
            .read_resources("b1", &ResourceFilter::default())
            .await
            .unwrap();
        assert_eq!(futures::StreamExt::count(records).await, 1);

        // A finalized backup takes no more parts.
        let err = repo
            .finalize_backup("b1", "again", BTreeMap::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::AlreadyFinalized(_)), "{name}: {err}");
        let err = repo
            .backup_volume("b1", &volume(1), &options, None, &|_| {}, &|_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, Error::AlreadyFinalized(_)), "{name}: {err}");

        // Deleting the backup removes its parts too.
        repo.delete_backup("b1").await.unwrap();
        let err = repo
            .finalize_backup("b1", "gone", BTreeMap::new())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("neither a volume"),
            "{name}: {err}"
        );
    }
}

#[tokio::test]
async fn finalize_names_a_missing_chunk_and_writes_no_manifest() {
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("a.bin"), noise(1_500_000, 3)).unwrap();
    for backend in backends("finalize-missing").await {
        let name = backend.name;
        let repo = Repository::init(&backend.location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap();
        let volume = VolumeSource {
            name: "v".into(),
            path: source.path().to_path_buf(),
        };
        repo.backup_volume("b1", &volume, &options(), None, &|_| {}, &|_| {})
            .await
            .unwrap();
        let store = backend.location.open().unwrap();
        // The file's one pack gone (1.5 MB is far below a pack's size).
        let packs = folder_objects(&store, "packs").await;
        assert_eq!(packs.len(), 1, "{name}: {packs:?}");
        store
            .delete(&ObjectPath::from(packs[0].as_str()))
            .await
            .unwrap();
        let err = repo
            .finalize_backup("b1", "x", BTreeMap::new())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, Error::Damaged { .. })
                && text.contains("missing chunk")
                && text.contains("v/a.bin"),
            "{name}: {text}"
        );
        assert!(repo.backups().await.unwrap().is_empty(), "{name}");
    }
}

#[tokio::test]
async fn a_run_leaves_one_index_object_however_many_checkpoints_it_made() {
    let source = tempfile::tempdir().unwrap();
    for i in 0..6 {
        std::fs::write(
            source.path().join(format!("f{i}.bin")),
            noise(300_000, 60 + i),
        )
        .unwrap();
    }
    for backend in backends("one-index").await {
        let name = backend.name;
        let repo = Repository::init(&backend.location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap();
        let volume = VolumeSource {
            name: "v".into(),
            path: source.path().to_path_buf(),
        };
        let checkpoints = std::sync::atomic::AtomicUsize::new(0);
        repo.backup_volume("b1", &volume, &options(), None, &|_| {}, &|_| {
            checkpoints.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
        .await
        .unwrap();
        // Every checkpoint wrote an index object; the run's last one replaced them.
        assert!(checkpoints.into_inner() >= 6, "{name}");
        let store = backend.location.open().unwrap();
        let index = folder_objects(&store, "index").await;
        assert_eq!(index.len(), 1, "{name}: {index:?}");
        repo.finalize_backup("b1", "t", BTreeMap::new())
            .await
            .unwrap();
        assert!(repo.verify("b1", 4).await.unwrap().is_ok(), "{name}");
    }
}

#[tokio::test]
async fn an_interrupted_volume_backup_resumes_from_its_checkpoint_without_rereading() {
    let source = tempfile::tempdir().unwrap();
    for i in 0..12 {
        std::fs::write(
            source.path().join(format!("f{i:02}.bin")),
            noise(700_000, 100 + i),
        )
        .unwrap();
    }
    for backend in backends("resume").await {
        let name = backend.name;
        let repo = Repository::init(&backend.location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap();
        let volume = VolumeSource {
            name: "v".into(),
            path: source.path().to_path_buf(),
        };
        // Stop the first run (as a killed process would) once five files are complete.
        let saved: Arc<Mutex<Option<VolumeCheckpoint>>> = Arc::default();
        let enough = Arc::new(tokio::sync::Notify::new());
        let save = |checkpoint: &VolumeCheckpoint| {
            let files = checkpoint
                .entries
                .iter()
                .filter(|e| e.path.ends_with(".bin"))
                .count();
            *saved.lock().unwrap() = Some(checkpoint.clone());
            if files >= 5 {
                enough.notify_one();
            }
        };
        let first_options = options();
        tokio::select! {
            result = repo.backup_volume("b1", &volume, &first_options, None, &|_| {}, &save) => {
                panic!("{name}: the first run was to be stopped, but it ended: {result:?}")
            }
            () = enough.notified() => {}
        }
        let checkpoint = saved.lock().unwrap().clone().unwrap();
        let completed = checkpoint.entries.len() as u64;
        assert!(completed >= 5, "{name}");

        let summary = repo
            .backup_volume(
                "b1",
                &volume,
                &options(),
                Some(&checkpoint),
                &|_| {},
                &|_| {},
            )
            .await
            .unwrap();
        let progress = summary.progress;
        assert_eq!(progress.files, 12, "{name}");
        assert!(
            progress.files_unchanged >= completed,
            "{name}: {progress:?}"
        );
        assert_eq!(
            progress.bytes_read,
            (12 - progress.files_unchanged) * 700_000,
            "{name}: only files not in the checkpoint are read: {progress:?}"
        );
        repo.finalize_backup("b1", "resumed", BTreeMap::new())
            .await
            .unwrap();
        assert!(repo.verify("b1", 4).await.unwrap().is_ok(), "{name}");
        let target = tempfile::tempdir().unwrap();
        repo.restore("b1", "v", target.path(), None, 4)
            .await
            .unwrap();
        for i in 0..12 {
            let file = format!("f{i:02}.bin");
            assert!(
                std::fs::read(target.path().join(&file)).unwrap()
                    == std::fs::read(source.path().join(&file)).unwrap(),
                "{name}: {file}"
            );
        }

        // A checkpoint of another volume is refused.
        let other = VolumeSource {
            name: "w".into(),
            path: source.path().to_path_buf(),
        };
        let err = repo
            .backup_volume(
                "b2",
                &other,
                &options(),
                Some(&checkpoint),
                &|_| {},
                &|_| {},
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidCheckpoint(_)), "{name}: {err}");
    }
}

/// Sets a local object's modification time `age` in the past.
fn age(root: &std::path::Path, object: &str, age: Duration) {
    let file = std::fs::File::options()
        .write(true)
        .open(root.join(object))
        .unwrap();
    file.set_modified(std::time::SystemTime::now() - age)
        .unwrap();
}

#[tokio::test]
async fn garbage_collection_keeps_a_staged_backup_in_grace_and_removes_an_abandoned_one() {
    // Local folder only: it is the one backend where a test can age objects (set mtimes).
    let root = tempfile::tempdir().unwrap();
    let location = stowage_storage::Location {
        kind: stowage_storage::LocationKind::Local {
            root: root.path().to_path_buf(),
        },
        prefix: "repo".into(),
    };
    let repo = Repository::init(&location, PASSPHRASE, TEST_KDF)
        .await
        .unwrap();
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("a.bin"), noise(1_500_000, 5)).unwrap();
    let volume = VolumeSource {
        name: "v".into(),
        path: source.path().to_path_buf(),
    };
    repo.backup_volume("staged", &volume, &options(), None, &|_| {}, &|_| {})
        .await
        .unwrap();
    let mut writer = repo.resource_writer("staged").unwrap();
    writer
        .add(ResourceRecord {
            group: String::new(),
            version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: "shop".into(),
            body: b"{}".to_vec(),
        })
        .await
        .unwrap();
    writer.finish().await.unwrap();
    let repo_root = root.path().join("repo");
    let objects = |folder: &str| -> Vec<String> {
        walkdir(&repo_root.join(folder))
            .into_iter()
            .map(|p| {
                p.strip_prefix(&repo_root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let packs = objects("packs");
    assert!(!packs.is_empty());
    // The packs are older than the grace window; the staged tree is not.
    for pack in &packs {
        age(&repo_root, pack, Duration::from_secs(7200));
    }
    let grace = Duration::from_secs(3600);
    let report = repo.collect_garbage(grace).await.unwrap();
    assert_eq!((report.staged, report.deleted), (1, 0), "{report:?}");
    assert_eq!(objects("packs"), packs);

    // Untouched for longer than the grace window: abandoned, removed with its chunks.
    for object in objects("backups") {
        age(&repo_root, &object, Duration::from_secs(7200));
    }
    let report = repo.collect_garbage(grace).await.unwrap();
    assert_eq!(report.packs_deleted, packs.len() as u64, "{report:?}");
    assert!(report.deleted >= report.packs_deleted, "{report:?}");
    assert_eq!(
        report.abandoned_objects, 3,
        "tree, frame, index: {report:?}"
    );
    assert!(objects("packs").is_empty() && objects("backups").is_empty());
    let err = repo
        .finalize_backup("staged", "late", BTreeMap::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("neither a volume"), "{err}");
}

/// Every file under `root` (none if it does not exist).
fn walkdir(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(items) = std::fs::read_dir(&dir) else {
            continue;
        };
        for item in items {
            let path = item.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn an_incremental_backup_from_a_parent_reads_only_the_changed_files() {
    let source = tempfile::tempdir().unwrap();
    for i in 0..4 {
        std::fs::write(
            source.path().join(format!("f{i}.bin")),
            noise(600_000, 300 + i),
        )
        .unwrap();
    }
    for backend in backends("parent").await {
        let name = backend.name;
        let repo = Repository::init(&backend.location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap();
        let volume = VolumeSource {
            name: "v".into(),
            path: source.path().to_path_buf(),
        };
        repo.backup(
            "b1",
            "first",
            std::slice::from_ref(&volume),
            &options(),
            &|_| {},
        )
        .await
        .unwrap();
        let changed = source.path().join("f2.bin");
        std::fs::write(&changed, noise(600_000, 999)).unwrap();
        let parent = repo.checkpoint_from_parent("b1", "b2", "v").await.unwrap();
        let summary = repo
            .backup_volume("b2", &volume, &options(), Some(&parent), &|_| {}, &|_| {})
            .await
            .unwrap();
        assert_eq!(
            (
                summary.progress.files_unchanged,
                summary.progress.bytes_read
            ),
            (3, 600_000),
            "{name}: {:?}",
            summary.progress
        );
        repo.finalize_backup("b2", "second", BTreeMap::new())
            .await
            .unwrap();
        let target = tempfile::tempdir().unwrap();
        repo.restore("b2", "v", target.path(), None, 4)
            .await
            .unwrap();
        assert!(
            std::fs::read(target.path().join("f2.bin")).unwrap()
                == std::fs::read(&changed).unwrap(),
            "{name}"
        );
        let err = repo
            .checkpoint_from_parent("missing", "b3", "v")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no manifest"), "{name}: {err}");
        // Restore the source for the next backend.
        std::fs::write(&changed, noise(600_000, 302)).unwrap();
    }
}
