//! Backups written straight through the storage API, as the backup workflow writes them (staged
//! volumes, a resource pack, a manifest with the workflow's metadata), for the workflows that
//! work on repositories: delete and catalog sync. Their locations are a local folder and S3 with
//! signature checks (s3s-fs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};
use stowage_storage::{
    BackupOptions, ChunkId, EntryKind, Location, LocationKind, Manifest, Repository,
    ResourceRecord, Tree, VolumeSource,
};
use stowage_tests::services;
use stowage_workflows::backup::BackupSpec;
use stowage_workflows::backup::workflow::{METADATA_NAME, METADATA_SPEC};

use crate::repository::PASSPHRASE;

/// A location under test; a local one's folder lives as long as it.
pub struct TestLocation {
    pub name: &'static str,
    pub location: Location,
    _root: Option<tempfile::TempDir>,
}

/// A local-folder location and one on s3s-fs, each under a fresh prefix.
pub async fn backends_for_workflows(test: &str) -> Vec<TestLocation> {
    let prefix = |backend: &str| format!("workflows/{test}-{backend}-{}", uuid::Uuid::new_v4());
    let root = tempfile::tempdir().unwrap();
    let local = Location {
        kind: LocationKind::Local {
            root: root.path().to_path_buf(),
        },
        prefix: prefix("local"),
    };
    vec![
        TestLocation {
            name: "local",
            location: local,
            _root: Some(root),
        },
        TestLocation {
            name: "s3s",
            location: services::s3s().location(&prefix("s3s")),
            _root: None,
        },
    ]
}

/// A location entity's spec for `location`, with the tests' passphrase.
pub fn location_spec(location: &Location) -> Value {
    json!({"location": location, "passphrase": PASSPHRASE})
}

/// The spec recorded for the test backups of cluster `cluster`.
pub fn backup_spec(cluster: &str) -> BackupSpec {
    BackupSpec::parse(&json!({
        "cluster": cluster, "location": "loc", "namespaces": ["shop"], "volumes": "copy"
    }))
    .unwrap()
}

/// Writes one volume of backup `backup`, as a data mover does (no manifest).
pub async fn stage_volume(repo: &Repository, backup: &str, volume: &str, path: &Path) {
    let source = VolumeSource {
        name: volume.into(),
        path: path.to_path_buf(),
    };
    repo.backup_volume(
        backup,
        &source,
        &BackupOptions::default(),
        None,
        &|_| {},
        &|_| {},
    )
    .await
    .unwrap();
}

/// Writes a finished backup as the backup workflow does: each volume staged, `objects` config
/// maps in the resource pack (none: no pack), then the manifest with the name and the spec of
/// cluster `cluster`.
pub async fn write_backup(
    repo: &Repository,
    backup: &str,
    name: &str,
    cluster: &str,
    volumes: &[(&str, &Path)],
    objects: usize,
) -> Manifest {
    for (volume, path) in volumes {
        stage_volume(repo, backup, volume, path).await;
    }
    if objects > 0 {
        let mut writer = repo.resource_writer(backup).unwrap();
        for n in 0..objects {
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": format!("config-{n}"), "namespace": "shop"}});
            writer
                .add(ResourceRecord {
                    group: String::new(),
                    version: "v1".into(),
                    kind: "ConfigMap".into(),
                    namespace: Some("shop".into()),
                    name: format!("config-{n}"),
                    body: body.to_string().into_bytes(),
                })
                .await
                .unwrap();
        }
        writer.finish().await.unwrap();
    }
    let metadata = BTreeMap::from([
        (METADATA_NAME.to_string(), name.to_string()),
        (
            METADATA_SPEC.to_string(),
            serde_json::to_string(&backup_spec(cluster)).unwrap(),
        ),
    ]);
    repo.finalize_backup(backup, &format!("cluster {cluster}"), metadata)
        .await
        .unwrap()
}

/// The chunk ids a tree refers to.
fn tree_chunks(tree: Tree) -> BTreeSet<ChunkId> {
    tree.entries
        .into_iter()
        .flat_map(|entry| match entry.kind {
            EntryKind::File { chunks, .. } => chunks.into_iter().map(|c| c.id).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// The chunk ids finished backup `backup` refers to.
pub async fn chunks_of(repo: &Repository, backup: &str) -> BTreeSet<ChunkId> {
    let mut chunks = BTreeSet::new();
    for volume in repo.manifest(backup).await.unwrap().volumes {
        chunks.extend(tree_chunks(
            repo.volume_tree(backup, &volume.name).await.unwrap(),
        ));
    }
    chunks
}

/// Every stored chunk's stored size, by id.
pub async fn chunk_sizes(repo: &Repository) -> BTreeMap<ChunkId, u64> {
    repo.stored_chunk_sizes().await.unwrap()
}
