//! Every kind of backup location, through stowage-storage's `Location` and object_store, against
//! the real service behind it: put, get (whole and ranged), head, list, conditional create,
//! multipart upload, copy and delete.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use stowage_storage::{Location, LocationKind};
use stowage_tests::services;

/// A fresh prefix per test run so that runs and tests never see each other's objects.
fn unique_prefix(test: &str) -> String {
    format!("smoke/{test}-{}", uuid::Uuid::new_v4())
}

/// Bytes that differ from part to part, so a misordered multipart upload is caught.
fn patterned(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The conformance run every location must pass.
async fn exercise(store: Arc<dyn ObjectStore>) {
    // put and get
    let small = Path::from("dir/small.bin");
    store
        .put(&small, PutPayload::from_static(b"hello stowage"))
        .await
        .unwrap();
    let got = store.get(&small).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), b"hello stowage");

    // ranged get and head
    let range = store.get_range(&small, 6..13).await.unwrap();
    assert_eq!(range.as_ref(), b"stowage");
    let meta = store.head(&small).await.unwrap();
    assert_eq!(meta.size, 13);
    assert_eq!(meta.location, small);

    // conditional create: the second one must be refused, not overwrite
    let once = Path::from("dir/once.bin");
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store
        .put_opts(&once, PutPayload::from_static(b"first"), create())
        .await
        .unwrap();
    let second = store
        .put_opts(&once, PutPayload::from_static(b"second"), create())
        .await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "a second create must be refused, got {second:?}"
    );
    let kept = store.get(&once).await.unwrap().bytes().await.unwrap();
    assert_eq!(kept.as_ref(), b"first");

    // multipart: three parts, the first two at the 5 MiB minimum S3 imposes
    let large = Path::from("dir/large.bin");
    let parts = [
        patterned(5 * 1024 * 1024, 1),
        patterned(5 * 1024 * 1024, 2),
        patterned(123_457, 3),
    ];
    let mut upload = store.put_multipart(&large).await.unwrap();
    for part in &parts {
        upload
            .put_part(PutPayload::from(Bytes::from(part.clone())))
            .await
            .unwrap();
    }
    upload.complete().await.unwrap();
    let whole = store.get(&large).await.unwrap().bytes().await.unwrap();
    let expected: Vec<u8> = parts.concat();
    assert_eq!(whole.len(), expected.len());
    assert!(
        whole.as_ref() == expected.as_slice(),
        "multipart content differs"
    );

    // copy
    let copied = Path::from("other/copied.bin");
    store.copy(&small, &copied).await.unwrap();
    let got = store.get(&copied).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), b"hello stowage");

    // list: recursive and by delimiter
    let mut all: Vec<String> = store
        .list(None)
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap();
    all.sort();
    assert_eq!(
        all,
        [
            "dir/large.bin",
            "dir/once.bin",
            "dir/small.bin",
            "other/copied.bin"
        ]
    );
    let top = store.list_with_delimiter(None).await.unwrap();
    let mut folders: Vec<String> = top
        .common_prefixes
        .iter()
        .map(|prefix| prefix.to_string())
        .collect();
    folders.sort();
    assert_eq!(folders, ["dir", "other"]);
    assert!(top.objects.is_empty());

    // delete, then the object is gone
    for path in [&small, &once, &large, &copied] {
        store.delete(path).await.unwrap();
    }
    let gone = store.get(&small).await;
    assert!(
        matches!(gone, Err(object_store::Error::NotFound { .. })),
        "deleted object still readable: {gone:?}"
    );
    let left: Vec<_> = store.list(None).try_collect().await.unwrap();
    assert!(left.is_empty(), "objects left after delete: {left:?}");
}

#[tokio::test]
async fn s3_moto() {
    let location = services::moto().location(&unique_prefix("moto"));
    exercise(services::open(&location)).await;
}

#[tokio::test]
async fn s3_with_signature_checks() {
    let location = services::s3s().location(&unique_prefix("s3s"));
    exercise(services::open(&location)).await;
}

#[tokio::test]
async fn s3_rejects_a_wrong_secret_key() {
    let service = services::s3s();
    let mut wrong = service.clone();
    wrong.secret_access_key.push_str("-wrong");
    let store = services::open(&wrong.location(&unique_prefix("s3s-wrong")));
    let err = store
        .put(&Path::from("x"), PutPayload::from_static(b"x"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("SignatureDoesNotMatch") || text.contains("403"),
        "expected a signature error, got: {text}"
    );
}

#[tokio::test]
async fn azure_blob_azurite() {
    let location = services::azurite().location(&unique_prefix("azurite"));
    exercise(services::open(&location)).await;
}

#[tokio::test]
async fn google_cloud_storage_emulator() {
    let (_proxy, location) = services::gcs().location(&unique_prefix("gcs")).await;
    exercise(services::open(&location)).await;
}

#[tokio::test]
async fn local_folder() {
    let root = tempfile::tempdir().unwrap();
    let location = Location {
        kind: LocationKind::Local {
            root: root.path().to_path_buf(),
        },
        prefix: unique_prefix("local"),
    };
    exercise(services::open(&location)).await;
}
