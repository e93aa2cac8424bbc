//! Locations validated against the real object stores when created or updated (a wrong key, a
//! missing bucket and an unreachable endpoint each named), credentials a location names instead
//! of inline keys, and passphrases, secret keys, SAS tokens and service-account keys never shown.

use reqwest::Method as M;
use serde_json::{Value, json};
use stowage_tests::services;
use stowage_workflows::storage::{Location, LocationKind, Secret};

fn prefix(test: &str) -> String {
    format!("entity-routes/{test}-{}", uuid::Uuid::new_v4())
}

fn location_spec(location: &Location, passphrase: &str) -> Value {
    json!({"location": location, "passphrase": passphrase})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locations_are_validated_against_their_store() {
    let users = super::Users::start().await;
    let marker = format!("marker-{}", uuid::Uuid::new_v4());
    let passphrase = format!("pass-{marker}");

    // Good locations: a local folder and S3 (moto).
    let folder = tempfile::tempdir().unwrap();
    let local = Location {
        kind: LocationKind::Local {
            root: folder.path().to_path_buf(),
        },
        prefix: prefix("local"),
    };
    let (status, body) = users
        .call(
            "bob",
            M::POST,
            "/v1/locations",
            Some(json!({"name": "local", "spec": location_spec(&local, &passphrase)})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["spec"]["passphrase"], "<redacted>");
    let local_id = body["id"].as_str().unwrap().to_string();

    let mut s3 = services::s3s().location(&prefix("s3s"));
    let (status, body) = users
        .call(
            "bob",
            M::POST,
            "/v1/locations",
            Some(json!({"name": "s3s", "spec": location_spec(&s3, &passphrase)})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["spec"]["location"]["kind"]["secret_access_key"],
        "<redacted>"
    );
    let s3_secret = match &s3.kind {
        LocationKind::S3 {
            secret_access_key, ..
        } => secret_access_key.expose().to_string(),
        _ => unreachable!(),
    };

    // A wrong key, a missing bucket, an unreachable endpoint: each named.
    if let LocationKind::S3 {
        secret_access_key, ..
    } = &mut s3.kind
    {
        *secret_access_key = Secret::new(format!("wrong-{marker}"));
    }
    let mut missing = services::moto().location(&prefix("missing"));
    if let LocationKind::S3 { bucket, .. } = &mut missing.kind {
        *bucket = format!("no-such-bucket-{}", uuid::Uuid::new_v4().simple());
    }
    let mut unreachable = services::moto().location(&prefix("unreachable"));
    if let LocationKind::S3 { endpoint, .. } = &mut unreachable.kind {
        *endpoint = Some("http://127.0.0.1:1".into());
    }
    for (location, reason) in [
        (&s3, "wrong_credentials"),
        (&missing, "missing_bucket"),
        (&unreachable, "unreachable"),
    ] {
        let (status, body) = users
            .call(
                "bob",
                M::POST,
                "/v1/locations",
                Some(json!({"name": "bad", "spec": location_spec(location, &passphrase)})),
            )
            .await;
        assert_eq!(
            (
                status,
                body["details"]["field"].as_str(),
                body["details"]["reason"].as_str()
            ),
            (422, Some("spec.location"), Some(reason)),
            "{body}"
        );
    }
    let (status, body) = users
        .call(
            "bob",
            M::POST,
            "/v1/locations",
            Some(json!({"name": "short", "spec": location_spec(&local, "short")})),
        )
        .await;
    assert_eq!(
        (status, body["details"]["field"].as_str()),
        (422, Some("spec.passphrase")),
        "{body}"
    );

    // An update is validated too; the redacted passphrase sent back keeps the stored one.
    let (status, body) = users
        .call(
            "bob",
            M::PUT,
            &format!("/v1/locations/{local_id}"),
            Some(json!({"version": 1, "spec": {"location": local, "passphrase": "<redacted>"}})),
        )
        .await;
    assert_eq!((status, &body["version"]), (200, &json!(2)), "{body}");
    let gone = Location {
        kind: LocationKind::Local {
            root: folder.path().join("absent"),
        },
        prefix: String::new(),
    };
    let (status, body) = users
        .call(
            "bob",
            M::PUT,
            &format!("/v1/locations/{local_id}"),
            Some(json!({"version": 2, "spec": location_spec(&gone, &passphrase)})),
        )
        .await;
    assert_eq!(
        (status, body["details"]["field"].as_str()),
        (422, Some("spec.location.root")),
        "{body}"
    );

    users.assert_never_shown(&marker).await;
    users.assert_never_shown(&s3_secret).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locations_name_credentials_whose_keys_are_never_shown() {
    let users = super::Users::start().await;
    let marker = format!("marker-{}", uuid::Uuid::new_v4());
    let s3s = services::s3s();
    let location = s3s.location(&prefix("credential"));
    let LocationKind::S3 {
        bucket,
        endpoint,
        access_key_id,
        secret_access_key,
        ..
    } = &location.kind
    else {
        unreachable!()
    };

    let (status, body) = users
        .call("bob", M::POST, "/v1/credentials", Some(json!({"name": "s3s", "spec": {"type": "s3", "access_key_id": access_key_id, "secret_access_key": secret_access_key}})))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["spec"]["secret_access_key"], "<redacted>");
    let credential = body["id"].as_str().unwrap().to_string();
    for (name, spec) in [
        (
            "azure-sas",
            json!({"type": "azure", "auth": {"sas": format!("sv=2024&sig={marker}")}}),
        ),
        (
            "azure-key",
            json!({"type": "azure", "auth": {"access_key": format!("key-{marker}")}}),
        ),
        (
            "gcs",
            json!({"type": "gcs", "service_account_key": json!({"type": "service_account", "private_key": marker}).to_string()}),
        ),
    ] {
        let (status, body) = users
            .call(
                "bob",
                M::POST,
                "/v1/credentials",
                Some(json!({"name": name, "spec": spec})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = users
        .call(
            "bob",
            M::POST,
            "/v1/credentials",
            Some(
                json!({"name": "bad", "spec": {"type": "gcs", "service_account_key": "not json"}}),
            ),
        )
        .await;
    assert_eq!(
        (status, body["details"]["field"].as_str()),
        (422, Some("spec.service_account_key")),
        "{body}"
    );

    let by_credential = |credential: &str| {
        json!({
            "location": {"kind": {"type": "s3", "bucket": bucket, "region": "us-east-1", "endpoint": endpoint, "path_style": true}, "prefix": location.prefix},
            "passphrase": format!("pass-{marker}"),
            "credential": credential,
        })
    };
    let (status, body) = users
        .call(
            "bob",
            M::POST,
            "/v1/locations",
            Some(json!({"name": "by-credential", "spec": by_credential(&credential)})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["spec"]["credential"], credential.as_str());
    assert!(
        body["spec"]["location"]["kind"]
            .get("secret_access_key")
            .is_none(),
        "{body}"
    );

    // A credential that does not exist, or that the caller may not see, cannot be named.
    let (status, body) = users
        .call(
            "alice",
            M::POST,
            "/v1/locations",
            Some(json!({"name": "unknown", "spec": by_credential("no-such-credential")})),
        )
        .await;
    assert_eq!(
        (status, body["details"]["field"].as_str()),
        (422, Some("spec.credential")),
        "{body}"
    );
    let (_, list) = users.call("bob", M::GET, "/v1/credentials", None).await;
    let azure = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["name"] == "azure-sas")
        .unwrap();
    assert_eq!(azure["spec"]["auth"]["sas"], "<redacted>");
    let (status, body) = users
        .call(
            "bob",
            M::POST,
            "/v1/locations",
            Some(json!({"name": "mismatch", "spec": by_credential(azure["id"].as_str().unwrap())})),
        )
        .await;
    assert_eq!(
        (status, body["details"]["field"].as_str()),
        (422, Some("spec.credential")),
        "{body}"
    );

    // The stored location resolves to the credential's keys, as a backup will use it.
    let entities = users.entities.clone();
    let (_, list) = users.call("bob", M::GET, "/v1/locations", None).await;
    let id = list["items"][0]["id"].as_str().unwrap();
    let stored = entities
        .get(stowage_workflows::entity::Kind::Location, id)
        .unwrap()
        .unwrap();
    let resolved =
        stowage_workflows::credential::resolve_location(&entities, &stored.spec).unwrap();
    resolved.location.validate().await.unwrap();

    users.assert_never_shown(&marker).await;
    users.assert_never_shown(secret_access_key.expose()).await;
}
