//! The repository against every backend `ops/test` starts (local folder, both S3 servers (moto
//! and s3s-fs), Azurite and the GCS emulator): open with only the passphrase, back up and restore a tree
//! byte-identically, dedup, verify naming damage, encryption of every stored byte, and damaged
//! manifests refused before anything is written.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use stowage_storage::{
    BackupOptions, Error, KdfParams, Location, LocationKind, Repository, VolumeSource,
};
use stowage_tests::gcs_xml::GcsXmlProxy;
use stowage_tests::services;

/// Cheap key derivation: the tests exercise the format, not Argon2's cost.
pub(crate) const TEST_KDF: KdfParams = KdfParams {
    memory_kib: 256,
    iterations: 1,
    parallelism: 1,
};
pub(crate) const PASSPHRASE: &str = "correct horse battery staple";
/// Planted in the backed-up files; must not appear in any stored byte.
const MARKER: &[u8] = b"STOWAGE-PLAINTEXT-MARKER-7f3a9c";

/// One backend under test; the proxy (GCS only) lives as long as the location is used.
pub(crate) struct Backend {
    pub(crate) name: &'static str,
    pub(crate) location: Location,
    _proxy: Option<GcsXmlProxy>,
    _root: Option<tempfile::TempDir>,
}

pub(crate) async fn backends(test: &str) -> Vec<Backend> {
    let prefix = |backend: &str| format!("repo/{test}-{backend}-{}", uuid::Uuid::new_v4());
    let root = tempfile::tempdir().unwrap();
    let local = Location {
        kind: LocationKind::Local {
            root: root.path().to_path_buf(),
        },
        prefix: prefix("local"),
    };
    let (proxy, gcs) = services::gcs().location(&prefix("gcs")).await;
    vec![
        Backend {
            name: "local",
            location: local,
            _proxy: None,
            _root: Some(root),
        },
        Backend {
            name: "s3",
            location: services::moto().location(&prefix("s3")),
            _proxy: None,
            _root: None,
        },
        Backend {
            name: "s3s",
            location: services::s3s().location(&prefix("s3s")),
            _proxy: None,
            _root: None,
        },
        Backend {
            name: "azure",
            location: services::azurite().location(&prefix("azure")),
            _proxy: None,
            _root: None,
        },
        Backend {
            name: "gcs",
            location: gcs,
            _proxy: Some(proxy),
            _root: None,
        },
    ]
}

/// Deterministic bytes that do not compress to nothing.
/// The names of the objects under `folder`, as the store lists them.
pub(crate) async fn folder_objects(store: &Arc<dyn ObjectStore>, folder: &str) -> Vec<String> {
    store
        .list(Some(&ObjectPath::from(folder)))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A tree with every kind of entry the format stores.
pub(crate) fn make_tree(root: &Path) {
    let set_mtime = |path: &Path, secs: u64| {
        let file = std::fs::File::open(path).unwrap();
        file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::new(secs, 123_456_789))
            .unwrap();
    };
    std::fs::create_dir_all(root.join("etc/conf.d")).unwrap();
    std::fs::create_dir_all(root.join("data/empty-dir")).unwrap();
    let mut small = b"small file with the marker: ".to_vec();
    small.extend_from_slice(MARKER);
    std::fs::write(root.join("etc/conf.d/app.conf"), &small).unwrap();
    std::fs::write(root.join("etc/empty"), b"").unwrap();
    // Several chunks, and a copy of the same content under another name (dedup).
    let mut big = noise(3 * 1024 * 1024 + 17, 1);
    big[1_000_000..1_000_000 + MARKER.len()].copy_from_slice(MARKER);
    std::fs::write(root.join("data/big.bin"), &big).unwrap();
    std::fs::write(root.join("data/big-copy.bin"), &big).unwrap();
    // Sparse: data in the middle, holes around it.
    let sparse = std::fs::File::create(root.join("data/sparse.img")).unwrap();
    sparse.set_len(12 * 1024 * 1024).unwrap();
    use std::io::{Seek, SeekFrom, Write};
    let mut sparse = sparse;
    sparse.seek(SeekFrom::Start(4 * 1024 * 1024)).unwrap();
    sparse.write_all(&noise(4096, 2)).unwrap();
    drop(sparse);
    std::os::unix::fs::symlink("../etc/conf.d/app.conf", root.join("data/link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/dangling", root.join("data/dangling")).unwrap();
    std::fs::hard_link(
        root.join("data/big.bin"),
        root.join("data/big-hardlink.bin"),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("etc/conf.d/app.conf"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::set_permissions(root.join("etc"), std::fs::Permissions::from_mode(0o750)).unwrap();
    for (path, secs) in [
        ("etc/conf.d/app.conf", 1_600_000_000),
        ("data/big.bin", 1_600_000_100),
        ("data/sparse.img", 1_600_000_200),
        ("etc/empty", 1_600_000_300),
        ("data/empty-dir", 1_600_000_400),
        ("etc/conf.d", 1_600_000_500),
        ("etc", 1_600_000_600),
        ("data", 1_600_000_700),
    ] {
        set_mtime(&root.join(path), secs);
    }
    // A symlink's own mtime.
    let link_time = filetime::FileTime::from_unix_time(1_600_000_800, 5);
    filetime::set_symlink_file_times(root.join("data/link"), link_time, link_time).unwrap();
    // Files of other owners, when the tests may give them (as root): each is restored with
    // its owner.
    for (path, uid, gid) in [
        ("etc/conf.d/app.conf", 1234, 5678),
        ("data/sparse.img", 4321, 8765),
        ("data/link", 2222, 3333),
    ] {
        let _ = std::os::unix::fs::lchown(root.join(path), Some(uid), Some(gid));
    }
}

/// Asserts `restored` holds what `original` holds: same names, kinds, content, modes, mtimes,
/// symlink targets, hard links; sparse files not larger on disk than the original.
pub(crate) fn assert_same_tree(original: &Path, restored: &Path) {
    let list = |root: &Path| -> Vec<String> {
        let mut paths: Vec<String> = walk(root)
            .into_iter()
            .map(|p| p.strip_prefix(root).unwrap().to_str().unwrap().to_string())
            .collect();
        paths.sort();
        paths
    };
    let names = list(original);
    assert_eq!(names, list(restored), "different names");
    for name in &names {
        let a = std::fs::symlink_metadata(original.join(name)).unwrap();
        let b = std::fs::symlink_metadata(restored.join(name)).unwrap();
        assert_eq!(a.file_type(), b.file_type(), "{name}: type");
        if a.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(original.join(name)).unwrap(),
                std::fs::read_link(restored.join(name)).unwrap(),
                "{name}: symlink target"
            );
            assert_eq!(
                (a.mtime(), a.mtime_nsec()),
                (b.mtime(), b.mtime_nsec()),
                "{name}: symlink mtime"
            );
            assert_eq!(
                (a.uid(), a.gid()),
                (b.uid(), b.gid()),
                "{name}: symlink owner"
            );
            continue;
        }
        assert_eq!(a.mode(), b.mode(), "{name}: mode");
        assert_eq!(
            (a.mtime(), a.mtime_nsec()),
            (b.mtime(), b.mtime_nsec()),
            "{name}: mtime"
        );
        assert_eq!((a.uid(), a.gid()), (b.uid(), b.gid()), "{name}: owner");
        if a.is_file() {
            assert_eq!(a.len(), b.len(), "{name}: size");
            assert!(
                std::fs::read(original.join(name)).unwrap()
                    == std::fs::read(restored.join(name)).unwrap(),
                "{name}: content differs"
            );
            assert_eq!(a.nlink(), b.nlink(), "{name}: hard links");
        }
    }
    let sparse = std::fs::metadata(restored.join("data/sparse.img")).unwrap();
    assert!(
        sparse.blocks() * 512 < sparse.len() / 2,
        "the sparse file was restored dense: {} blocks for {} bytes",
        sparse.blocks(),
        sparse.len()
    );
    let a = std::fs::metadata(restored.join("data/big.bin")).unwrap();
    let b = std::fs::metadata(restored.join("data/big-hardlink.bin")).unwrap();
    assert_eq!(a.ino(), b.ino(), "the hard link is a link again");
}

fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in std::fs::read_dir(&dir).unwrap() {
            let path = item.unwrap().path();
            if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

/// Every stored object under the location, with its bytes.
pub(crate) async fn stored_objects(store: &Arc<dyn ObjectStore>) -> Vec<(String, Vec<u8>)> {
    let metas: Vec<_> = store.list(None).try_collect().await.unwrap();
    let mut out = Vec::new();
    for meta in metas {
        let bytes = store
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        out.push((meta.location.to_string(), bytes.to_vec()));
    }
    out
}

#[tokio::test]
async fn a_repository_opens_with_only_its_passphrase() {
    for backend in backends("open").await {
        let location = &backend.location;
        let name = backend.name;
        let missing = Repository::open(location, PASSPHRASE).await.unwrap_err();
        assert!(
            matches!(missing, Error::NotARepository { .. }),
            "{name}: {missing}"
        );
        let created = Repository::init(location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap();
        let again = Repository::init(location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap_err();
        assert!(
            matches!(again, Error::AlreadyInitialized { .. }),
            "{name}: {again}"
        );
        let opened = Repository::open(location, PASSPHRASE).await.unwrap();
        assert_eq!(opened.id(), created.id(), "{name}");
        let wrong = Repository::open(location, "not the passphrase")
            .await
            .unwrap_err();
        assert!(
            matches!(wrong, Error::WrongPassphrase { .. }),
            "{name}: {wrong}"
        );
        assert!(wrong.to_string().contains("wrong passphrase"), "{wrong}");
    }
}

#[tokio::test]
async fn a_tree_comes_back_byte_identical_and_unchanged_data_is_not_sent_again() {
    let source = tempfile::tempdir().unwrap();
    make_tree(source.path());
    let volumes = [VolumeSource {
        name: "pvc-data".into(),
        path: source.path().to_path_buf(),
    }];
    for backend in backends("roundtrip").await {
        let name = backend.name;
        let repo = Repository::init(&backend.location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap();
        let calls = AtomicU64::new(0);
        let first = repo
            .backup("b1", "test", &volumes, &BackupOptions::default(), &|_| {
                calls.fetch_add(1, Ordering::Relaxed);
            })
            .await
            .unwrap();
        assert!(
            calls.load(Ordering::Relaxed) > 0,
            "{name}: progress was reported"
        );
        assert!(first.progress.chunks_uploaded > 0, "{name}");
        assert!(
            first.progress.chunks_reused > 0,
            "{name}: the copied file's chunks were reused: {:?}",
            first.progress
        );

        // A second backup of the same data, from a freshly opened repository, sends no chunk.
        let reopened = Repository::open(&backend.location, PASSPHRASE)
            .await
            .unwrap();
        let second = reopened
            .backup("b2", "test", &volumes, &BackupOptions::default(), &|_| {})
            .await
            .unwrap();
        assert_eq!(
            second.progress.chunks_uploaded, 0,
            "{name}: {:?}",
            second.progress
        );

        let target = tempfile::tempdir().unwrap();
        reopened
            .restore("b2", "pvc-data", target.path(), None, 4)
            .await
            .unwrap();
        assert_same_tree(source.path(), target.path());

        // One path only.
        let one = tempfile::tempdir().unwrap();
        reopened
            .restore("b1", "pvc-data", one.path(), Some("etc/conf.d/app.conf"), 4)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(one.path().join("etc/conf.d/app.conf")).unwrap(),
            std::fs::read(source.path().join("etc/conf.d/app.conf")).unwrap(),
            "{name}"
        );
        assert!(
            !one.path().join("data").exists(),
            "{name}: only the path asked for"
        );
        // The second name of a hard link alone: a file with the first name's content.
        let second = tempfile::tempdir().unwrap();
        reopened
            .restore(
                "b1",
                "pvc-data",
                second.path(),
                Some("data/big-hardlink.bin"),
                4,
            )
            .await
            .unwrap();
        let restored = second.path().join("data/big-hardlink.bin");
        let original = source.path().join("data/big-hardlink.bin");
        assert!(
            std::fs::read(&restored).unwrap() == std::fs::read(&original).unwrap(),
            "{name}: the second name has the content"
        );
        let (a, b) = (
            std::fs::metadata(&original).unwrap(),
            std::fs::metadata(&restored).unwrap(),
        );
        assert_eq!((a.mode(), a.mtime()), (b.mode(), b.mtime()), "{name}");
        assert!(!second.path().join("data/big.bin").exists(), "{name}");
        let err = reopened
            .restore("b1", "pvc-data", one.path(), Some("no/such/path"), 4)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no path `no/such/path`"), "{err}");

        let report = reopened.verify("b1", 4).await.unwrap();
        assert!(report.is_ok(), "{name}: {:?}", report.problems);
        assert!(report.chunks_checked > 0);
    }
}

#[tokio::test]
async fn nothing_stored_is_readable_without_the_passphrase() {
    let source = tempfile::tempdir().unwrap();
    make_tree(source.path());
    for backend in backends("marker").await {
        let repo = Repository::init(&backend.location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap();
        repo.backup(
            "b1",
            "test",
            &[VolumeSource {
                name: "v".into(),
                path: source.path().to_path_buf(),
            }],
            &BackupOptions::default(),
            &|_| {},
        )
        .await
        .unwrap();
        let store = backend.location.open().unwrap();
        let objects = stored_objects(&store).await;
        assert!(
            objects.len() > 3,
            "{}: {} objects",
            backend.name,
            objects.len()
        );
        for (object, bytes) in &objects {
            for needle in [MARKER, b"app.conf".as_slice(), b"sparse.img".as_slice()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{}: `{}` found in plaintext in {object}",
                    backend.name,
                    String::from_utf8_lossy(needle)
                );
            }
        }
    }
}

#[tokio::test]
async fn verify_names_a_flipped_byte_and_the_chunks_of_a_missing_pack_and_restore_writes_nothing() {
    let source = tempfile::tempdir().unwrap();
    make_tree(source.path());
    for backend in backends("verify").await {
        let name = backend.name;
        let repo = Repository::init(&backend.location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap();
        repo.backup(
            "b1",
            "test",
            &[VolumeSource {
                name: "v".into(),
                path: source.path().to_path_buf(),
            }],
            &BackupOptions::default(),
            &|_| {},
        )
        .await
        .unwrap();
        let store = backend.location.open().unwrap();
        let tree = repo.volume_tree("b1", "v").await.unwrap();
        let chunk_of = |file: &str| {
            tree.entries
                .iter()
                .find_map(|entry| match &entry.kind {
                    stowage_storage::EntryKind::File { chunks, .. } if entry.path == file => {
                        Some(chunks[0].id)
                    }
                    _ => None,
                })
                .unwrap()
        };
        let flipped_id = chunk_of("etc/conf.d/app.conf");
        let flipped = flipped_id.to_string();
        let (pack, range) = repo.locate_chunk(&flipped_id).await.unwrap().unwrap();
        assert!(pack.starts_with("packs/"), "{name}: {pack}");
        let pack_path = ObjectPath::from(pack.as_str());
        let original = store
            .get(&pack_path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        // The one problem `verify` finds once byte `at` of the pack is flipped.
        let only_problem_with_flipped = async |at: usize| {
            let mut bytes = original.clone();
            bytes[at] ^= 0x01;
            store
                .put(&pack_path, PutPayload::from(bytes))
                .await
                .unwrap();
            let report = repo.verify("b1", 4).await.unwrap();
            assert_eq!(report.problems.len(), 1, "{name}: {:?}", report.problems);
            report.problems[0].clone()
        };

        // A flipped byte: the one chunk it is in is named, with its pack and its file.
        let text = only_problem_with_flipped(((range.start + range.end) / 2) as usize).await;
        assert!(
            text.contains(&flipped)
                && text.contains(&pack)
                && text.contains("v/etc/conf.d/app.conf"),
            "{name}: {text}"
        );
        assert_restore_fails_writing_nothing(&repo, &flipped, name).await;

        // The pack gone: every chunk it held is missing, each named with its file.
        store.delete(&pack_path).await.unwrap();
        let missing = chunk_of("data/sparse.img").to_string();
        let report = repo.verify("b1", 4).await.unwrap();
        let text = report.problems.join("\n");
        assert!(report.problems.len() >= 2, "{name}: {text}");
        assert!(
            report
                .problems
                .iter()
                .all(|problem| problem.contains("missing")),
            "{name}: {text}"
        );
        assert!(
            text.contains(&missing)
                && text.contains("v/data/sparse.img")
                && text.contains(&flipped),
            "{name}: {text}"
        );
        assert_restore_fails_writing_nothing(&repo, "missing", name).await;

        // A flipped byte in the pack's header (just before its 4-byte trailer): every chunk
        // still reads, and the header is named, since an index rebuilt from it would be wrong.
        let text = only_problem_with_flipped(original.len() - 5).await;
        assert!(
            text.contains("header") && text.contains(&pack),
            "{name}: {text}"
        );

        // Put back as it was, the backup is whole again.
        store
            .put(&pack_path, PutPayload::from(original))
            .await
            .unwrap();
        let report = repo.verify("b1", 4).await.unwrap();
        assert!(report.is_ok(), "{name}: {:?}", report.problems);
        assert!(report.packs_checked >= 1, "{name}: {report:?}");
    }
}

/// Restoring volume `v` of backup `b1` fails with an error that says `expected`, and leaves
/// the target empty.
async fn assert_restore_fails_writing_nothing(repo: &Repository, expected: &str, name: &str) {
    let target = tempfile::tempdir().unwrap();
    let err = repo
        .restore("b1", "v", target.path(), None, 4)
        .await
        .unwrap_err();
    assert!(err.to_string().contains(expected), "{name}: {err}");
    let left: Vec<_> = std::fs::read_dir(target.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "{name}: a damaged backup was half-restored: {left:?}"
    );
}

#[tokio::test]
async fn a_truncated_or_corrupted_manifest_is_reported_and_nothing_is_restored() {
    let source = tempfile::tempdir().unwrap();
    make_tree(source.path());
    for backend in backends("manifest").await {
        let name = backend.name;
        let repo = Repository::init(&backend.location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap();
        for backup in ["b1", "b2"] {
            repo.backup(
                backup,
                "test",
                &[VolumeSource {
                    name: "v".into(),
                    path: source.path().to_path_buf(),
                }],
                &BackupOptions::default(),
                &|_| {},
            )
            .await
            .unwrap();
        }
        let store = backend.location.open().unwrap();
        let manifest = ObjectPath::from("backups/b1/manifest");
        let bytes = store.get(&manifest).await.unwrap().bytes().await.unwrap();
        store
            .put(&manifest, PutPayload::from(bytes.slice(..bytes.len() / 2)))
            .await
            .unwrap();
        let tree = ObjectPath::from("backups/b2/volumes/v");
        let mut bytes = store
            .get(&tree)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        bytes[10] ^= 0x80;
        store.put(&tree, PutPayload::from(bytes)).await.unwrap();

        let target = tempfile::tempdir().unwrap();
        let err = repo
            .restore("b1", "v", target.path(), None, 4)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { object, .. } if object == "backups/b1/manifest"),
            "{name}: {err}"
        );
        let err = repo
            .restore("b2", "v", target.path(), None, 4)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { object, .. } if object == "backups/b2/volumes/v"),
            "{name}: {err}"
        );
        let err = repo.verify("b1", 4).await.unwrap_err();
        assert!(
            err.to_string().contains("backups/b1/manifest"),
            "{name}: {err}"
        );
        let left: Vec<_> = std::fs::read_dir(target.path()).unwrap().collect();
        assert!(left.is_empty(), "{name}: {left:?}");
    }
}

/// Runs `work` with the repository at `location` opened anew (connections of its own), on a
/// runtime of its own on a thread of its own. A test that holds the work inside a callback (a
/// blocking wait) then blocks only that runtime: none of the test runtime's tasks, such as the
/// connections of the test's own repository, can be parked on the blocked thread.
fn on_own_runtime<T, F>(
    location: Location,
    work: impl FnOnce(Repository) -> F + Send + 'static,
) -> std::thread::JoinHandle<T>
where
    F: std::future::Future<Output = T>,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let repo = Repository::open(&location, PASSPHRASE).await.unwrap();
            work(repo).await
        })
    })
}

/// What a thread of [`on_own_runtime`] returned, waited for off the test's runtime.
async fn joined<T: Send + 'static>(thread: std::thread::JoinHandle<T>) -> T {
    tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_collection_sweeps_only_unreferenced_chunks_and_spares_a_running_backup() {
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("shared.bin"), noise(2 * 1024 * 1024, 7)).unwrap();
    let only_old = tempfile::tempdir().unwrap();
    std::fs::write(only_old.path().join("old.bin"), noise(1024 * 1024, 8)).unwrap();
    let volume = |path: &Path| {
        [VolumeSource {
            name: "v".into(),
            path: path.to_path_buf(),
        }]
    };
    for backend in backends("gc").await {
        let name = backend.name;
        let repo = Repository::init(&backend.location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap();
        let options = BackupOptions::default();
        // Both trees backed up, then the backups deleted: every chunk is unreferenced.
        repo.backup("old-shared", "t", &volume(shared.path()), &options, &|_| {})
            .await
            .unwrap();
        repo.backup("old-only", "t", &volume(only_old.path()), &options, &|_| {})
            .await
            .unwrap();
        repo.delete_backup("old-shared").await.unwrap();
        repo.delete_backup("old-only").await.unwrap();
        assert!(repo.backups().await.unwrap().is_empty(), "{name}");

        // Within the grace window nothing goes.
        let report = repo
            .collect_garbage(std::time::Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(report.deleted, 0, "{name}: {report:?}");
        assert!(report.kept_in_grace > 0, "{name}: {report:?}");

        // A backup that reuses the unreferenced shared chunks is held after it took its lock
        // and listed the chunks; a collection with no grace runs meanwhile.
        let (reached, reached_rx) = std::sync::mpsc::channel::<()>();
        let (resume, resume_rx) = std::sync::mpsc::channel::<()>();
        let resume_rx = std::sync::Mutex::new(resume_rx);
        let held = std::sync::atomic::AtomicBool::new(false);
        let shared_path = shared.path().to_path_buf();
        let running = on_own_runtime(backend.location.clone(), move |backup_repo| async move {
            backup_repo
                .backup(
                    "running",
                    "t",
                    &volume(&shared_path),
                    &BackupOptions::default(),
                    &|_| {
                        if !held.swap(true, Ordering::SeqCst) {
                            reached.send(()).unwrap();
                            resume_rx.lock().unwrap().recv().unwrap();
                        }
                    },
                )
                .await
        });
        tokio::task::spawn_blocking(move || reached_rx.recv().unwrap())
            .await
            .unwrap();
        let during = repo
            .collect_garbage(std::time::Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(during.deleted, 0, "{name}: {during:?}");
        assert_eq!(during.postponed_by.len(), 1, "{name}: {during:?}");
        resume.send(()).unwrap();
        let summary = joined(running).await.unwrap();
        assert_eq!(
            summary.progress.chunks_uploaded, 0,
            "{name}: the running backup reused the stored chunks"
        );

        // With no backup running, the chunks only the deleted backup had are swept, and the
        // running backup's survive.
        let after = repo
            .collect_garbage(std::time::Duration::ZERO)
            .await
            .unwrap();
        assert!(after.postponed_by.is_empty(), "{name}: {after:?}");
        assert_eq!(after.backups, 1, "{name}: {after:?}");
        assert!(after.deleted > 0, "{name}: {after:?}");
        let report = repo.verify("running", 4).await.unwrap();
        assert!(report.is_ok(), "{name}: {:?}", report.problems);
        let target = tempfile::tempdir().unwrap();
        repo.restore("running", "v", target.path(), None, 4)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(target.path().join("shared.bin")).unwrap(),
            std::fs::read(shared.path().join("shared.bin")).unwrap(),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_rewrites_a_mostly_unreferenced_pack_and_reindexes_one_whose_index_is_lost()
 {
    let kept = tempfile::tempdir().unwrap();
    std::fs::write(kept.path().join("kept.bin"), noise(1024 * 1024, 21)).unwrap();
    let both = tempfile::tempdir().unwrap();
    std::fs::write(both.path().join("kept.bin"), noise(1024 * 1024, 21)).unwrap();
    std::fs::write(both.path().join("gone.bin"), noise(3 * 1024 * 1024, 22)).unwrap();
    let volume = |path: &Path| {
        [VolumeSource {
            name: "v".into(),
            path: path.to_path_buf(),
        }]
    };
    let options = BackupOptions::default();
    for backend in backends("repack").await {
        let name = backend.name;
        let repo = Repository::init(&backend.location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap();
        let store = backend.location.open().unwrap();
        let listed = |folder: &'static str| folder_objects(&store, folder);
        // One pack holds both files; the backup that keeps only one of them reuses its chunks.
        repo.backup("a", "t", &volume(both.path()), &options, &|_| {})
            .await
            .unwrap();
        let reused = repo
            .backup("b", "t", &volume(kept.path()), &options, &|_| {})
            .await
            .unwrap();
        assert_eq!(reused.progress.chunks_uploaded, 0, "{name}");
        let before = listed("packs").await;
        assert_eq!(before.len(), 1, "{name}: {before:?}");
        repo.delete_backup("a").await.unwrap();

        // Three quarters of the pack is unreferenced: it is rewritten with the rest.
        let report = repo
            .collect_garbage(std::time::Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(
            (report.packs_repacked, report.packs_deleted),
            (1, 0),
            "{name}: {report:?}"
        );
        assert!(
            report.deleted >= 2 && report.deleted_bytes > 2 * 1024 * 1024,
            "{name}: {report:?}"
        );
        let after = listed("packs").await;
        assert_eq!(after.len(), 1, "{name}: {after:?}");
        assert_ne!(after, before, "{name}");
        assert_eq!(listed("index").await.len(), 1, "{name}");
        let report = repo.verify("b", 4).await.unwrap();
        assert!(report.is_ok(), "{name}: {:?}", report.problems);

        // The index lost: the chunks are missing until a collection reads the pack's header
        // and indexes it again, deleting nothing.
        for object in listed("index").await {
            store.delete(&ObjectPath::from(object)).await.unwrap();
        }
        let report = repo.verify("b", 4).await.unwrap();
        assert!(
            !report.is_ok(),
            "{name}: the chunks are unknown without the index"
        );
        let report = repo
            .collect_garbage(std::time::Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(
            (report.deleted, report.packs_deleted),
            (0, 0),
            "{name}: {report:?}"
        );
        assert_eq!(listed("packs").await, after, "{name}");
        let report = repo.verify("b", 4).await.unwrap();
        assert!(report.is_ok(), "{name}: {:?}", report.problems);
        let target = tempfile::tempdir().unwrap();
        repo.restore("b", "v", target.path(), None, 4)
            .await
            .unwrap();
        assert!(
            std::fs::read(target.path().join("kept.bin")).unwrap()
                == std::fs::read(kept.path().join("kept.bin")).unwrap(),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_collection_drops_the_second_copy_of_chunks_two_runs_stored_at_once() {
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("same.bin"), noise(2 * 1024 * 1024, 41)).unwrap();
    let volume = |name: &str| VolumeSource {
        name: name.into(),
        path: source.path().to_path_buf(),
    };
    for backend in backends("dup").await {
        let name = backend.name;
        let repo = Repository::init(&backend.location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap();
        // Two data movers of one backup at once: the first is held after its first chunk
        // (packed, not yet indexed) while the second runs whole, so each stores the chunks.
        let (reached, reached_rx) = std::sync::mpsc::channel::<()>();
        let (resume, resume_rx) = std::sync::mpsc::channel::<()>();
        let resume_rx = std::sync::Mutex::new(resume_rx);
        let held = std::sync::atomic::AtomicBool::new(false);
        let first_volume = volume("a");
        let first = on_own_runtime(backend.location.clone(), move |first_repo| async move {
            first_repo
                .backup_volume(
                    "b1",
                    &first_volume,
                    &BackupOptions::default(),
                    None,
                    &|_| {
                        if !held.swap(true, Ordering::SeqCst) {
                            reached.send(()).unwrap();
                            resume_rx.lock().unwrap().recv().unwrap();
                        }
                    },
                    &|_| {},
                )
                .await
        });
        tokio::task::spawn_blocking(move || reached_rx.recv().unwrap())
            .await
            .unwrap();
        let b = repo
            .backup_volume(
                "b1",
                &volume("b"),
                &BackupOptions::default(),
                None,
                &|_| {},
                &|_| {},
            )
            .await
            .unwrap();
        resume.send(()).unwrap();
        let a = joined(first).await.unwrap();
        assert_eq!(
            (a.progress.chunks_uploaded, b.progress.chunks_uploaded),
            (a.record.chunks, a.record.chunks),
            "{name}: each stored every chunk"
        );
        repo.finalize_backup("b1", "t", Default::default())
            .await
            .unwrap();
        let store = backend.location.open().unwrap();
        let packs = async |store: Arc<dyn ObjectStore>| folder_objects(&store, "packs").await.len();
        assert_eq!(packs(store.clone()).await, 2, "{name}");
        let report = repo
            .collect_garbage(std::time::Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(report.packs_deleted, 1, "{name}: {report:?}");
        assert_eq!(report.deleted, a.record.chunks, "{name}: {report:?}");
        assert_eq!(packs(store.clone()).await, 1, "{name}");
        let report = repo.verify("b1", 4).await.unwrap();
        assert!(report.is_ok(), "{name}: {:?}", report.problems);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_share_packs_and_a_lost_pack_loses_only_its_chunks_which_the_next_backup_sends_again()
 {
    // 1,100 small files and 20 MiB of incompressible content: more chunks than a store lists
    // in one page, in more than one pack (a few objects per backup, so every backend runs it).
    const SMALL: usize = 1100;
    let source = tempfile::tempdir().unwrap();
    for n in 0..SMALL {
        let folder = source.path().join(format!("d{:02}", n / 100));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("f{n}")), noise(2048, n as u64 + 10)).unwrap();
    }
    for n in 0..20 {
        std::fs::write(
            source.path().join(format!("big{n}")),
            noise(1024 * 1024, n + 5000),
        )
        .unwrap();
    }
    let volumes = [VolumeSource {
        name: "many".into(),
        path: source.path().to_path_buf(),
    }];
    for backend in backends("packs").await {
        let name = backend.name;
        let repo = Repository::init(&backend.location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap();
        let first = repo
            .backup("b1", "test", &volumes, &BackupOptions::default(), &|_| {})
            .await
            .unwrap();
        let ids: Vec<stowage_storage::ChunkId> = repo
            .volume_tree("b1", "many")
            .await
            .unwrap()
            .entries
            .iter()
            .flat_map(|entry| match &entry.kind {
                stowage_storage::EntryKind::File { chunks, .. } => {
                    chunks.iter().map(|chunk| chunk.id).collect()
                }
                _ => Vec::new(),
            })
            .collect();
        assert!(ids.len() > SMALL, "{name}: {} chunks", ids.len());
        assert_eq!(first.progress.chunks_uploaded, ids.len() as u64, "{name}");
        let id_refs: Vec<&stowage_storage::ChunkId> = ids.iter().collect();
        let places = repo.locate_chunks(&id_refs).await.unwrap();
        let mut per_pack: std::collections::BTreeMap<String, u64> = Default::default();
        for place in &places {
            let (object, _) = place.clone().unwrap();
            assert!(object.starts_with("packs/"), "{name}: {object}");
            *per_pack.entry(object).or_default() += 1;
        }
        let store = backend.location.open().unwrap();
        let listed = folder_objects(&store, "packs").await;
        assert_eq!(listed.len(), per_pack.len(), "{name}: {per_pack:?}");
        assert!(per_pack.len() >= 2, "{name}: {per_pack:?}");

        let second = repo
            .backup("b2", "test", &volumes, &BackupOptions::default(), &|_| {})
            .await
            .unwrap();
        assert_eq!(
            (
                second.progress.chunks_uploaded,
                second.progress.chunks_reused
            ),
            (0, ids.len() as u64),
            "{name}: every stored chunk was known from the index"
        );
        // One pack gone: exactly its chunks are missing, and the next backup sends them again.
        let (lost, lost_chunks) = per_pack.iter().next().unwrap();
        store
            .delete(&ObjectPath::from(lost.as_str()))
            .await
            .unwrap();
        let third = repo
            .backup("b3", "test", &volumes, &BackupOptions::default(), &|_| {})
            .await
            .unwrap();
        assert_eq!(third.progress.chunks_uploaded, *lost_chunks, "{name}");
        let report = repo.verify("b3", 4).await.unwrap();
        assert!(report.is_ok(), "{name}: {:?}", report.problems);
    }
}
