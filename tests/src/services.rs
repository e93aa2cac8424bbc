//! The real test services: where `ops/test` started them, read from environment variables.
//!
//! Each accessor panics, failing the test that called it, with a message that names the missing
//! service, the variable and the command that starts it. A test never passes without its service.

use std::path::PathBuf;

use object_store::ObjectStore;
use std::sync::Arc;
use stowage_storage::{AzureAuth, Location, LocationKind, Secret};

use crate::gcs_xml::{GcsXmlProxy, ServiceAccount};

/// How to start the services, for the failure messages.
const START_HINT: &str = "start them with `./ops/test-services up` and load their addresses with \
     `source target/test-services/env`, or run the whole suite with `./ops/test`";

fn required(service: &str, variable: &str) -> String {
    match std::env::var(variable) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => panic!(
            "test service {service} is not available: {variable} is not set; {START_HINT} \
             (see docs/testing.md)"
        ),
    }
}

/// An S3-compatible server.
#[derive(Debug, Clone)]
pub struct S3Service {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// A bucket created by the start script.
    pub bucket: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl S3Service {
    /// A location in this server's bucket under `prefix`.
    pub fn location(&self, prefix: &str) -> Location {
        Location {
            kind: LocationKind::S3 {
                bucket: self.bucket.clone(),
                region: "us-east-1".into(),
                endpoint: Some(self.endpoint.clone()),
                path_style: true,
                access_key_id: self.access_key_id.clone(),
                secret_access_key: Secret::new(self.secret_access_key.clone()),
            },
            prefix: prefix.into(),
        }
    }
}

/// moto: the S3 server with faithful semantics (versioning, conditional writes); accepts any key.
pub fn moto() -> S3Service {
    let service = "S3 (moto)";
    S3Service {
        endpoint: required(service, "STOWAGE_TEST_S3_ENDPOINT"),
        bucket: required(service, "STOWAGE_TEST_S3_BUCKET"),
        access_key_id: required(service, "STOWAGE_TEST_S3_ACCESS_KEY"),
        secret_access_key: required(service, "STOWAGE_TEST_S3_SECRET_KEY"),
    }
}

/// s3s-fs: the S3 server that verifies SigV4 signatures, to catch signing bugs.
pub fn s3s() -> S3Service {
    let service = "S3 with signature checks (s3s-fs)";
    S3Service {
        endpoint: required(service, "STOWAGE_TEST_S3S_ENDPOINT"),
        bucket: required(service, "STOWAGE_TEST_S3S_BUCKET"),
        access_key_id: required(service, "STOWAGE_TEST_S3S_ACCESS_KEY"),
        secret_access_key: required(service, "STOWAGE_TEST_S3S_SECRET_KEY"),
    }
}

/// Azurite, the Azure Blob emulator.
#[derive(Debug, Clone)]
pub struct AzuriteService {
    /// `http://127.0.0.1:PORT/ACCOUNT`.
    pub endpoint: String,
    /// The storage account (`devstoreaccount1`).
    pub account: String,
    /// The account's shared key.
    pub key: String,
    /// A container created by the start script.
    pub container: String,
}

impl AzuriteService {
    /// A location in this emulator's container under `prefix`.
    pub fn location(&self, prefix: &str) -> Location {
        Location {
            kind: LocationKind::Azure {
                account: self.account.clone(),
                container: self.container.clone(),
                auth: AzureAuth::AccessKey(Secret::new(self.key.clone())),
                endpoint: Some(self.endpoint.clone()),
            },
            prefix: prefix.into(),
        }
    }
}

impl AzuriteService {
    /// A service SAS for the container (`sr=c`), valid for an hour, with the permissions
    /// `permissions` (e.g. `racwdl`), signed with `key` (base64, as the account's own key is):
    /// Azure's service SAS of version 2019-12-12, the kind a storage admin hands out for one
    /// container.
    pub fn container_sas(&self, permissions: &str, key: &str) -> String {
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD;
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        const VERSION: &str = "2019-12-12";
        let expiry = (chrono::Utc::now() + chrono::Duration::hours(1))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        // Permissions, start, expiry, resource, identifier, IP, protocol, version, resource
        // kind, snapshot time, then the five response-header overrides (all empty here).
        let to_sign = format!(
            "{permissions}\n\n{expiry}\n/blob/{}/{}\n\n\nhttps,http\n{VERSION}\nc\n\n\n\n\n\n",
            self.account, self.container
        );
        let key = STANDARD
            .decode(key)
            .unwrap_or_else(|err| panic!("the Azure key is not base64: {err}"));
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
        let signature = STANDARD.encode(aws_lc_rs::hmac::sign(&key, to_sign.as_bytes()));
        let encode = |value: &str| utf8_percent_encode(value, NON_ALPHANUMERIC).to_string();
        format!(
            "sv={VERSION}&sr=c&sp={permissions}&se={}&spr=https,http&sig={}",
            encode(&expiry),
            encode(&signature)
        )
    }

    /// A location in this emulator's container under `prefix` that authenticates with `sas`.
    pub fn sas_location(&self, prefix: &str, sas: String) -> Location {
        let mut location = self.location(prefix);
        if let LocationKind::Azure { auth, .. } = &mut location.kind {
            *auth = AzureAuth::Sas(Secret::new(sas));
        }
        location
    }
}

/// Azurite (Azure Blob).
pub fn azurite() -> AzuriteService {
    let service = "Azure Blob (Azurite)";
    AzuriteService {
        endpoint: required(service, "STOWAGE_TEST_AZURITE_ENDPOINT"),
        account: required(service, "STOWAGE_TEST_AZURITE_ACCOUNT"),
        key: required(service, "STOWAGE_TEST_AZURITE_KEY"),
        container: required(service, "STOWAGE_TEST_AZURITE_CONTAINER"),
    }
}

/// fake-gcs-server, the GCS emulator (JSON API only).
#[derive(Debug, Clone)]
pub struct GcsService {
    /// The emulator's JSON API, `http://127.0.0.1:PORT`.
    pub json_endpoint: String,
    /// A bucket created by the start script.
    pub bucket: String,
}

impl GcsService {
    /// Starts a [`GcsXmlProxy`] in front of the emulator and returns it with a location in the
    /// bucket under `prefix` that goes through it, signing with the test service account's
    /// key. Keep the proxy alive while the location is used.
    pub async fn location(&self, prefix: &str) -> (GcsXmlProxy, Location) {
        self.location_signed_by(prefix, &test_service_account().private_key_pem)
            .await
    }

    /// [`GcsService::location`], but the location signs with `private_key_pem` (PKCS #8) while
    /// the proxy still admits only the test service account.
    pub async fn location_signed_by(
        &self,
        prefix: &str,
        private_key_pem: &str,
    ) -> (GcsXmlProxy, Location) {
        let account = test_service_account();
        let proxy = GcsXmlProxy::start(&self.json_endpoint, account.admitted.clone()).await;
        let key = serde_json::json!({
            "private_key": private_key_pem,
            "private_key_id": "stowage-test",
            "client_email": account.admitted.email,
        });
        let location = Location {
            kind: LocationKind::Gcs {
                bucket: self.bucket.clone(),
                service_account_key: Secret::new(key.to_string()),
                endpoint: Some(proxy.base_url()),
            },
            prefix: prefix.into(),
        };
        (proxy, location)
    }
}

/// The service account of the GCS tests: a key pair made once per test process.
pub struct TestServiceAccount {
    /// Its private key, PKCS #8 PEM, as a service-account key file holds it.
    pub private_key_pem: String,
    /// What the proxy admits.
    pub admitted: ServiceAccount,
}

/// The test service account (an RSA key made on first use).
pub fn test_service_account() -> &'static TestServiceAccount {
    static ACCOUNT: std::sync::OnceLock<TestServiceAccount> = std::sync::OnceLock::new();
    ACCOUNT.get_or_init(|| {
        let (private_key_pem, public_key_der) = rsa_key_pair();
        TestServiceAccount {
            private_key_pem,
            admitted: ServiceAccount {
                email: "stowage-test@stowage-tests.iam.gserviceaccount.com".into(),
                public_key: jsonwebtoken::DecodingKey::from_rsa_der(&public_key_der),
            },
        }
    })
}

/// A fresh RSA key pair (2048 bits): the private key as PKCS #8 PEM, the public one as PKCS #1
/// DER.
pub fn rsa_key_pair() -> (String, Vec<u8>) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
        .unwrap_or_else(|err| panic!("cannot make an RSA key: {err}"));
    (pair.serialize_pem(), pair.public_key_raw().to_vec())
}

/// fake-gcs-server (Google Cloud Storage).
pub fn gcs() -> GcsService {
    let service = "Google Cloud Storage (fake-gcs-server)";
    GcsService {
        json_endpoint: required(service, "STOWAGE_TEST_GCS_ENDPOINT"),
        bucket: required(service, "STOWAGE_TEST_GCS_BUCKET"),
    }
}

/// One test user of the OIDC provider: an OAuth client whose tokens carry its groups.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct OidcUser {
    /// The client id; it is the token's `sub`.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
    /// The groups claim; `None` for a user whose tokens have no groups claim.
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// A short token lifetime, for expiry tests.
    #[serde(default)]
    pub token_ttl_seconds: Option<u64>,
    /// How far in the future its tokens' `nbf` lies, for not-before tests.
    #[serde(default)]
    pub not_before_seconds: Option<u64>,
}

/// The OIDC provider (panva's oidc-provider) and its users.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct OidcService {
    /// The issuer URL, `http://127.0.0.1:PORT`.
    #[serde(skip)]
    pub issuer: String,
    /// A second, unrelated issuer of the same users (wrong-issuer tests).
    #[serde(skip)]
    pub other_issuer: String,
    /// The audience of Stowage's access tokens.
    pub audience: String,
    /// Other audiences the provider issues tokens for (wrong-audience tests).
    pub other_audiences: Vec<String>,
    /// The claim that carries groups.
    pub groups_claim: String,
    /// The public client of the device flow (`stowage login --device`).
    pub device_client_id: String,
    /// The test users.
    pub users: Vec<OidcUser>,
}

impl OidcService {
    /// The user with this client id; panics if the users file has none.
    pub fn user(&self, client_id: &str) -> &OidcUser {
        self.users
            .iter()
            .find(|user| user.client_id == client_id)
            .unwrap_or_else(|| panic!("the OIDC users file has no user `{client_id}`"))
    }

    /// Fetches an access token (a signed JWT) for `user` through the client-credentials grant,
    /// for `audience` or the default one.
    pub async fn token(&self, user: &OidcUser, audience: Option<&str>) -> reqwest::Result<String> {
        self.token_from(&self.issuer, user, audience).await
    }

    /// Like [`token`](Self::token), from `issuer` (the main or the other one).
    pub async fn token_from(
        &self,
        issuer: &str,
        user: &OidcUser,
        audience: Option<&str>,
    ) -> reqwest::Result<String> {
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            access_token: String,
        }
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(audience) = audience {
            form.push(("resource", audience));
        }
        let response: TokenResponse = reqwest::Client::new()
            .post(format!("{issuer}/token"))
            .basic_auth(&user.client_id, Some(&user.client_secret))
            .form(&form)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(response.access_token)
    }
}

impl OidcService {
    /// Does what `account` does in a browser on the device-flow page: signs in and approves the
    /// pending `user_code`.
    pub async fn approve_device(&self, user_code: &str, account: &str) -> reqwest::Result<()> {
        reqwest::Client::new()
            .post(format!("{}/test-admin/approve-device", self.issuer))
            .json(&serde_json::json!({ "user_code": user_code, "account": account }))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Makes `issuer` sign with a new key from now on, keeping the previous one published, as a
    /// provider rotating its keys does. Returns the new key id.
    pub async fn rotate_keys(&self, issuer: &str) -> reqwest::Result<String> {
        #[derive(serde::Deserialize)]
        struct Rotated {
            signing_kid: String,
        }
        let rotated: Rotated = reqwest::Client::new()
            .post(format!("{issuer}/test-admin/rotate-keys"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(rotated.signing_kid)
    }
}

/// The OIDC provider.
pub fn oidc() -> OidcService {
    let service = "OIDC provider (oidc-provider)";
    let issuer = required(service, "STOWAGE_TEST_OIDC_ISSUER");
    let users_file = PathBuf::from(required(service, "STOWAGE_TEST_OIDC_USERS"));
    let text = std::fs::read_to_string(&users_file).unwrap_or_else(|err| {
        panic!(
            "cannot read the OIDC users file {}: {err}",
            users_file.display()
        )
    });
    let mut config: OidcService = serde_json::from_str(&text).unwrap_or_else(|err| {
        panic!(
            "the OIDC users file {} is not valid: {err}",
            users_file.display()
        )
    });
    config.issuer = issuer;
    config.other_issuer = required(service, "STOWAGE_TEST_OIDC_OTHER_ISSUER");
    config
}

/// Opens a location's store, failing the test with the location's error if it cannot.
pub fn open(location: &Location) -> Arc<dyn ObjectStore> {
    location
        .open()
        .unwrap_or_else(|err| panic!("cannot open test location: {err}"))
}
