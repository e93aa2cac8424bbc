//! Resource packs against every backend: Kubernetes objects written as a stream of frames and
//! an index, read back by namespace, kind and name reading only the frames needed, and a
//! damaged frame, index or manifest reported by name before any object is given out.

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use stowage_storage::{
    Error, GroupKind, Repository, ResourceFilter, ResourceRecord, ResourcesSummary,
};

use crate::repository::{PASSPHRASE, TEST_KDF, backends, noise};

/// Objects in the test pack: enough for several 4 MiB frames.
const OBJECTS: usize = 1000;

/// Hex text the object bodies are cut from (made once: building it is slow in debug builds).
static BLOB: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    noise(64 * 1024, 42)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
});

/// Object `i`: a ConfigMap in namespace `ns-<i % 3>`, every 100th a cluster-scoped
/// ClusterRole, every 7th a Deployment; bodies of ~10 KiB that do not compress away.
fn object(i: usize) -> ResourceRecord {
    let (group, kind, namespace) = if i.is_multiple_of(100) {
        ("rbac.authorization.k8s.io", "ClusterRole", None)
    } else if i.is_multiple_of(7) {
        ("apps", "Deployment", Some(format!("ns-{}", i % 3)))
    } else {
        ("", "ConfigMap", Some(format!("ns-{}", i % 3)))
    };
    let start = (i * 97) % (BLOB.len() - 10 * 1024);
    let body = serde_json::json!({
        "kind": kind,
        "metadata": {"name": format!("obj-{i}"), "namespace": namespace},
        "data": {"blob": &BLOB[start..start + 10 * 1024]},
    });
    ResourceRecord {
        group: group.into(),
        version: "v1".into(),
        kind: kind.into(),
        namespace,
        name: format!("obj-{i}"),
        body: serde_json::to_vec(&body).unwrap(),
    }
}

async fn write_pack(repo: &Repository, backup: &str) -> ResourcesSummary {
    let mut writer = repo.resource_writer(backup).unwrap();
    for i in 0..OBJECTS {
        writer.add(object(i)).await.unwrap();
    }
    writer.finish().await.unwrap()
}

async fn read(
    repo: &Repository,
    backup: &str,
    filter: &ResourceFilter,
) -> Result<Vec<ResourceRecord>, Error> {
    repo.read_resources(backup, filter)
        .await?
        .try_collect()
        .await
}

#[tokio::test]
async fn objects_come_back_by_namespace_kind_and_name_reading_only_their_frames() {
    for backend in backends("resources").await {
        let name = backend.name;
        let repo = Repository::init(&backend.location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap();
        let summary = write_pack(&repo, "b1").await;
        assert_eq!(summary.objects, OBJECTS as u64, "{name}");
        assert!(summary.frames >= 3, "{name}: {} frames", summary.frames);

        // Readable before the manifest (a staged backup), and after finalize.
        let all = read(&repo, "b1", &ResourceFilter::default()).await.unwrap();
        assert_eq!(all.len(), OBJECTS, "{name}");
        let manifest = repo
            .finalize_backup("b1", "cluster a", Default::default())
            .await
            .unwrap();
        assert_eq!(manifest.resources.as_ref(), Some(&summary), "{name}");
        let all = read(&repo, "b1", &ResourceFilter::default()).await.unwrap();
        for (i, record) in all.iter().enumerate() {
            assert_eq!(record, &object(i), "{name}: object {i}");
        }

        let index = repo.resource_index("b1").await.unwrap();
        let by_kind = index.counts_by_kind();
        let cluster_roles = (0..OBJECTS).filter(|i| i.is_multiple_of(100)).count() as u64;
        let deployments = (0..OBJECTS)
            .filter(|i| !i.is_multiple_of(100) && i.is_multiple_of(7))
            .count() as u64;
        assert_eq!(
            by_kind["ClusterRole.rbac.authorization.k8s.io"],
            cluster_roles
        );
        assert_eq!(by_kind["Deployment.apps"], deployments, "{name}");
        assert_eq!(index.counts_by_namespace()[""], cluster_roles, "{name}");

        let deployments_in_ns1 = ResourceFilter {
            namespaces: vec!["ns-1".into()],
            kinds: vec![GroupKind {
                group: "apps".into(),
                kind: "Deployment".into(),
            }],
            ..Default::default()
        };
        let expected: Vec<ResourceRecord> = (0..OBJECTS)
            .filter(|i| !i.is_multiple_of(100) && i.is_multiple_of(7) && i % 3 == 1)
            .map(object)
            .collect();
        assert_eq!(
            read(&repo, "b1", &deployments_in_ns1).await.unwrap(),
            expected,
            "{name}"
        );
        let with_cluster = ResourceFilter {
            namespaces: vec!["ns-2".into()],
            cluster_scoped: true,
            ..Default::default()
        };
        let expected = (0..OBJECTS)
            .filter(|i| i.is_multiple_of(100) || i % 3 == 2)
            .count();
        assert_eq!(
            read(&repo, "b1", &with_cluster).await.unwrap().len(),
            expected
        );

        // Only the frames of the objects asked for are read: with the last frame gone, an
        // object of the first still comes back, and one of the last is reported missing.
        let store = backend.location.open().unwrap();
        let last_frame = index.frames.len() - 1;
        let last_name = index
            .entries
            .iter()
            .rfind(|e| e.frame as usize == last_frame)
            .unwrap()
            .name
            .clone();
        let frame_path = format!("backups/b1/resources/frames/{last_frame:08}");
        store.delete(&ObjectPath::from(frame_path)).await.unwrap();
        let first = ResourceFilter {
            names: vec!["obj-1".into()],
            ..Default::default()
        };
        assert_eq!(
            read(&repo, "b1", &first).await.unwrap(),
            vec![object(1)],
            "{name}"
        );
        let last = ResourceFilter {
            names: vec![last_name.clone()],
            ..Default::default()
        };
        let err = read(&repo, "b1", &last).await.unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, Error::Missing { .. })
                && text.contains(&format!("frames/{last_frame:08}"))
                && text.contains(&last_name),
            "{name}: {text}"
        );
    }
}

#[tokio::test]
async fn a_damaged_frame_index_or_manifest_is_named_and_no_object_is_given_out() {
    for backend in backends("resources-damage").await {
        let name = backend.name;
        let repo = Repository::init(&backend.location, PASSPHRASE, TEST_KDF)
            .await
            .unwrap();
        write_pack(&repo, "b1").await;
        repo.finalize_backup("b1", "cluster a", Default::default())
            .await
            .unwrap();
        let store = backend.location.open().unwrap();
        let object_path = |rest: &str| ObjectPath::from(format!("backups/b1/{rest}"));
        let original = |rest: &'static str| {
            let store = store.clone();
            let path = object_path(rest);
            async move { store.get(&path).await.unwrap().bytes().await.unwrap() }
        };

        // A truncated frame: named, with an object it holds; nothing read.
        let frame = original("resources/frames/00000001").await;
        store
            .put(
                &object_path("resources/frames/00000001"),
                PutPayload::from(frame.slice(..frame.len() / 2)),
            )
            .await
            .unwrap();
        let err = read(&repo, "b1", &ResourceFilter::default())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("frames/00000001") && text.contains("obj-") && text.contains("bytes"),
            "{name}: {text}"
        );
        store
            .put(
                &object_path("resources/frames/00000001"),
                PutPayload::from(frame),
            )
            .await
            .unwrap();
        assert_eq!(
            read(&repo, "b1", &ResourceFilter::default())
                .await
                .unwrap()
                .len(),
            OBJECTS
        );

        // A flipped byte in the index: caught by the manifest's hash.
        let index = original("resources/index").await;
        let mut flipped = index.to_vec();
        flipped[20] ^= 1;
        store
            .put(&object_path("resources/index"), PutPayload::from(flipped))
            .await
            .unwrap();
        let err = read(&repo, "b1", &ResourceFilter::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { ref object, .. } if object == "backups/b1/resources/index"),
            "{name}: {err}"
        );
        store
            .put(&object_path("resources/index"), PutPayload::from(index))
            .await
            .unwrap();

        // A truncated manifest.
        let manifest = original("manifest").await;
        store
            .put(
                &object_path("manifest"),
                PutPayload::from(manifest.slice(..manifest.len() - 3)),
            )
            .await
            .unwrap();
        let err = read(&repo, "b1", &ResourceFilter::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { ref object, .. } if object == "backups/b1/manifest"),
            "{name}: {err}"
        );
    }
}

#[tokio::test]
async fn an_object_with_an_empty_field_is_refused_by_name() {
    let backend = backends("resources-invalid").await.remove(0);
    let repo = Repository::init(&backend.location, PASSPHRASE, TEST_KDF)
        .await
        .unwrap();
    let mut writer = repo.resource_writer("b1").unwrap();
    let mut nameless = object(1);
    nameless.name.clear();
    let err = writer.add(nameless).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("ConfigMap ns-1/ has an empty name"),
        "{err}"
    );
    let mut empty_namespace = object(2);
    empty_namespace.namespace = Some(String::new());
    let err = writer.add(empty_namespace).await.unwrap_err();
    assert!(err.to_string().contains("empty namespace"), "{err}");
    let err = repo.resource_writer("../b").unwrap_err();
    assert!(err.to_string().contains("invalid backup id"), "{err}");
}
