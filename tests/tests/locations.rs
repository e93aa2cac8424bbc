//! Validating backup locations against the real services: a good location passes on every
//! backend; a wrong key, a missing bucket and an unreachable endpoint are each named as such.

use stowage_storage::{AzureAuth, Error, Location, LocationKind, Secret};
use stowage_tests::services;

fn unique_prefix(test: &str) -> String {
    format!("validate/{test}-{}", uuid::Uuid::new_v4())
}

#[tokio::test]
async fn a_good_location_passes_on_every_backend() {
    let local_root = tempfile::tempdir().unwrap();
    let local = Location {
        kind: LocationKind::Local {
            root: local_root.path().to_path_buf(),
        },
        prefix: unique_prefix("local"),
    };
    let (_proxy, gcs) = services::gcs().location(&unique_prefix("gcs")).await;
    for location in [
        local,
        services::moto().location(&unique_prefix("moto")),
        services::s3s().location(&unique_prefix("s3s")),
        services::azurite().location(&unique_prefix("azurite")),
        gcs,
    ] {
        location
            .validate()
            .await
            .unwrap_or_else(|err| panic!("{} should validate: {err}", location.describe()));
    }
}

fn assert_credentials(result: Result<(), Error>) {
    match result {
        Err(err @ Error::Credentials { .. }) => {
            assert!(err.to_string().contains("refused the credentials"), "{err}")
        }
        other => panic!("expected a credentials error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_s3_secret_is_named() {
    let mut service = services::s3s();
    service.secret_access_key.push_str("-wrong");
    assert_credentials(service.location(&unique_prefix("s3s")).validate().await);
}

#[tokio::test]
async fn a_wrong_azure_key_is_named() {
    let service = services::azurite();
    let mut location = service.location(&unique_prefix("azurite"));
    if let LocationKind::Azure { auth, .. } = &mut location.kind {
        // A valid base64 key, but not the account's.
        *auth = AzureAuth::AccessKey(Secret::new(
            "d3JvbmcgYXp1cml0ZSBrZXkgZm9yIHN0b3dhZ2UgdGVzdHMgd3Jvbmcga2V5IHdyb25nIGtleQ==",
        ));
    }
    assert_credentials(location.validate().await);
}

#[tokio::test]
async fn an_azure_container_sas_works_and_a_forged_or_too_narrow_one_is_named() {
    let service = services::azurite();
    let good = service.container_sas("racwdl", &service.key);
    service
        .sas_location(&unique_prefix("azurite-sas"), good.clone())
        .validate()
        .await
        .unwrap_or_else(|err| panic!("a SAS with every permission should validate: {err}"));
    // The whole repository works through it.
    let location = service.sas_location(&unique_prefix("azurite-sas-repo"), good);
    let repo = stowage_storage::Repository::init(
        &location,
        "sas passphrase",
        stowage_storage::KdfParams {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
        },
    )
    .await
    .unwrap();
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("f"), b"through a SAS").unwrap();
    let volume = stowage_storage::VolumeSource {
        name: "v".into(),
        path: source.path().to_path_buf(),
    };
    repo.backup("b1", "t", &[volume], &Default::default(), &|_| {})
        .await
        .unwrap();
    assert!(repo.verify("b1", 2).await.unwrap().is_ok());

    // Signed with another key, or without the right to delete: refused, and said so.
    let other_key = "d3JvbmcgYXp1cml0ZSBrZXkgZm9yIHN0b3dhZ2UgdGVzdHMgd3Jvbmcga2V5IHdyb25nIGtleQ==";
    let forged = service.container_sas("racwdl", other_key);
    assert_credentials(
        service
            .sas_location(&unique_prefix("azurite-sas"), forged)
            .validate()
            .await,
    );
    // Without the right to delete, the probe names the step that was refused, and why.
    let no_delete = service.container_sas("racwl", &service.key);
    match service
        .sas_location(&unique_prefix("azurite-sas"), no_delete)
        .validate()
        .await
    {
        Err(err @ Error::Probe { step, .. }) => {
            assert_eq!(step, "delete the probe object", "{err}");
            assert!(err.to_string().contains("not authorized"), "{err}");
        }
        other => panic!("expected the delete step to be refused, got {other:?}"),
    }
}

#[tokio::test]
async fn a_gcs_key_of_another_service_account_is_named() {
    let (other_key, _) = services::rsa_key_pair();
    let (_proxy, location) = services::gcs()
        .location_signed_by(&unique_prefix("gcs-wrong-key"), &other_key)
        .await;
    assert_credentials(location.validate().await);
}

fn assert_missing_bucket(result: Result<(), Error>) {
    match result {
        Err(err @ Error::MissingBucket { .. }) => {
            assert!(err.to_string().contains("does not exist"), "{err}")
        }
        other => panic!("expected a missing-bucket error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_bucket_is_named_on_s3() {
    // moto answers NoSuchBucket (404) to a write into a bucket never created, as S3 does.
    // s3s-fs is not used here: it accepts the write (its file-system backend creates the
    // folder), so it cannot show this case.
    let mut moto = services::moto();
    moto.bucket = format!("stowage-no-such-bucket-{}", uuid::Uuid::new_v4().simple());
    assert_missing_bucket(moto.location("p").validate().await);
}

#[tokio::test]
async fn a_missing_container_or_bucket_is_named_on_azure_gcs_and_local() {
    let mut azurite = services::azurite();
    azurite.container = "stowage-no-such-container".into();
    assert_missing_bucket(azurite.location("p").validate().await);

    let mut gcs = services::gcs();
    gcs.bucket = "stowage-no-such-bucket".into();
    let (_proxy, location) = gcs.location("p").await;
    assert_missing_bucket(location.validate().await);

    let local = Location {
        kind: LocationKind::Local {
            root: "/nonexistent/stowage-validate".into(),
        },
        prefix: String::new(),
    };
    let err = local.validate().await.unwrap_err();
    assert!(err.to_string().contains("not an existing folder"), "{err}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_named() {
    // Bind and drop a listener: the port is then closed, so connections are refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);

    let mut s3 = services::moto();
    s3.endpoint = endpoint.clone();
    let mut azurite = services::azurite();
    azurite.endpoint = format!("{endpoint}/{}", azurite.account);
    let (_proxy, mut gcs) = services::gcs().location("p").await;
    if let LocationKind::Gcs {
        endpoint: gcs_endpoint,
        ..
    } = &mut gcs.kind
    {
        *gcs_endpoint = Some(endpoint.clone());
    }
    for location in [s3.location("p"), azurite.location("p"), gcs] {
        match location.validate().await {
            Err(err @ Error::Unreachable { .. }) => {
                assert!(err.to_string().contains("cannot be reached"), "{err}");
                assert!(err.to_string().contains(&endpoint), "{err}");
            }
            other => panic!("expected an unreachable error, got {other:?}"),
        }
    }
}
