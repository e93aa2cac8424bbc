//! Backup locations: the settings of each kind of store and the object_store client built from
//! them, rooted at the location's prefix.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::secret::Secret;

/// Where backups are written: a kind of store and a prefix inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The store and its settings.
    pub kind: LocationKind,
    /// A folder inside the bucket or container; empty for its root.
    #[serde(default)]
    pub prefix: String,
}

/// The kinds of store a location can be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LocationKind {
    /// Amazon S3 or an S3-compatible store.
    S3 {
        /// The bucket.
        bucket: String,
        /// The region; `us-east-1` suits most S3-compatible stores.
        region: String,
        /// A custom endpoint (`http://host:port`) for S3-compatible stores; AWS when absent.
        #[serde(default)]
        endpoint: Option<String>,
        /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible stores need.
        #[serde(default)]
        path_style: bool,
        /// The access key id.
        access_key_id: String,
        /// The secret access key.
        secret_access_key: Secret,
    },
    /// Azure Blob Storage.
    Azure {
        /// The storage account.
        account: String,
        /// The container.
        container: String,
        /// A shared key or a SAS token.
        auth: AzureAuth,
        /// A custom endpoint (`http://host:port/account`), e.g. an emulator; Azure when absent.
        #[serde(default)]
        endpoint: Option<String>,
    },
    /// Google Cloud Storage.
    Gcs {
        /// The bucket.
        bucket: String,
        /// The service-account key, as the JSON document Google issues.
        service_account_key: Secret,
        /// A custom endpoint (`http://host:port`); Google when absent.
        #[serde(default)]
        endpoint: Option<String>,
    },
    /// A folder on the server's file system.
    Local {
        /// The folder; it must exist.
        root: PathBuf,
    },
}

/// How Stowage authenticates to Azure Blob Storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AzureAuth {
    /// The storage account's shared key.
    AccessKey(Secret),
    /// A shared access signature (the query string, without a leading `?`).
    Sas(Secret),
}

impl Location {
    /// Builds the object_store client for this location, rooted at its prefix, with
    /// object_store's default retries (up to 10 attempts within 3 minutes).
    ///
    /// This checks the settings only; it does not reach the store.
    pub fn open(&self) -> Result<Arc<dyn ObjectStore>> {
        self.open_with(&ClientOptions::new(), RetryConfig::default())
    }

    /// Like [`Location::open`], with the HTTP client options and retry policy given (ignored for
    /// a local folder). Validation uses short ones so an unreachable endpoint is named quickly.
    pub fn open_with(
        &self,
        client: &ClientOptions,
        retry: RetryConfig,
    ) -> Result<Arc<dyn ObjectStore>> {
        let store: Arc<dyn ObjectStore> = match &self.kind {
            LocationKind::S3 {
                bucket,
                region,
                endpoint,
                path_style,
                access_key_id,
                secret_access_key,
            } => {
                require("bucket", bucket)?;
                require("region", region)?;
                require("access_key_id", access_key_id)?;
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_access_key_id(access_key_id)
                    .with_secret_access_key(secret_access_key.expose())
                    .with_virtual_hosted_style_request(!path_style)
                    .with_retry(retry)
                    .with_client_options(client.clone());
                if let Some(endpoint) = endpoint {
                    builder = builder
                        .with_allow_http(is_http("endpoint", endpoint)?)
                        .with_endpoint(endpoint);
                }
                Arc::new(
                    builder
                        .build()
                        .map_err(|source| Error::Open { kind: "s3", source })?,
                )
            }
            LocationKind::Azure {
                account,
                container,
                auth,
                endpoint,
            } => {
                require("account", account)?;
                require("container", container)?;
                let mut builder = MicrosoftAzureBuilder::new()
                    .with_account(account)
                    .with_container_name(container)
                    .with_retry(retry)
                    .with_client_options(client.clone());
                builder = match auth {
                    AzureAuth::AccessKey(key) => builder.with_access_key(key.expose()),
                    AzureAuth::Sas(sas) => builder
                        .with_config(AzureConfigKey::SasKey, sas.expose().trim_start_matches('?')),
                };
                if let Some(endpoint) = endpoint {
                    builder = builder
                        .with_allow_http(is_http("endpoint", endpoint)?)
                        .with_endpoint(endpoint.clone());
                }
                Arc::new(builder.build().map_err(|source| Error::Open {
                    kind: "azure",
                    source,
                })?)
            }
            LocationKind::Gcs {
                bucket,
                service_account_key,
                endpoint,
            } => {
                require("bucket", bucket)?;
                let mut builder = GoogleCloudStorageBuilder::new()
                    .with_bucket_name(bucket)
                    .with_service_account_key(service_account_key.expose())
                    .with_retry(retry);
                let mut options = client.clone();
                if let Some(endpoint) = endpoint {
                    options = options.with_allow_http(is_http("endpoint", endpoint)?);
                    builder = builder.with_base_url(endpoint);
                }
                builder = builder.with_client_options(options);
                Arc::new(builder.build().map_err(|source| Error::Open {
                    kind: "gcs",
                    source,
                })?)
            }
            LocationKind::Local { root } => {
                if !root.is_dir() {
                    return Err(Error::InvalidLocation {
                        field: "root",
                        reason: format!("{} is not an existing folder", root.display()),
                    });
                }
                Arc::new(
                    LocalFileSystem::new_with_prefix(root).map_err(|source| Error::Open {
                        kind: "local",
                        source,
                    })?,
                )
            }
        };
        let prefix = self.prefix.trim_matches('/');
        if prefix.is_empty() {
            return Ok(store);
        }
        Ok(Arc::new(PrefixStore::new(store, prefix)))
    }

    /// A short description for messages: the kind, the bucket or folder, the endpoint and the
    /// prefix. It never contains a secret.
    pub fn describe(&self) -> String {
        let place = match &self.kind {
            LocationKind::S3 {
                bucket, endpoint, ..
            } => format!(
                "s3 bucket `{bucket}` at {}",
                endpoint.as_deref().unwrap_or("AWS")
            ),
            LocationKind::Azure {
                account,
                container,
                endpoint,
                ..
            } => format!(
                "azure container `{container}` of account `{account}` at {}",
                endpoint.as_deref().unwrap_or("Azure")
            ),
            LocationKind::Gcs {
                bucket, endpoint, ..
            } => format!(
                "gcs bucket `{bucket}` at {}",
                endpoint.as_deref().unwrap_or("Google")
            ),
            LocationKind::Local { root } => format!("local folder {}", root.display()),
        };
        let prefix = self.prefix.trim_matches('/');
        if prefix.is_empty() {
            place
        } else {
            format!("{place}, prefix `{prefix}`")
        }
    }
}

fn require(field: &'static str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::InvalidLocation {
            field,
            reason: "must not be empty".into(),
        });
    }
    Ok(())
}

/// Whether an endpoint is plain HTTP; anything but `http://` or `https://` is refused.
fn is_http(field: &'static str, endpoint: &str) -> Result<bool> {
    if endpoint.starts_with("http://") {
        Ok(true)
    } else if endpoint.starts_with("https://") {
        Ok(false)
    } else {
        Err(Error::InvalidLocation {
            field,
            reason: format!("`{endpoint}` is not an http:// or https:// address"),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn s3(bucket: &str, endpoint: &str) -> Location {
        Location {
            kind: LocationKind::S3 {
                bucket: bucket.into(),
                region: "us-east-1".into(),
                endpoint: Some(endpoint.into()),
                path_style: true,
                access_key_id: "key".into(),
                secret_access_key: Secret::new("secret"),
            },
            prefix: String::new(),
        }
    }

    #[test]
    fn an_empty_bucket_is_named() {
        let err = s3(" ", "http://127.0.0.1:1").open().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid location setting `bucket`: must not be empty"
        );
    }

    #[test]
    fn an_endpoint_without_scheme_is_named() {
        let err = s3("b", "127.0.0.1:9000").open().unwrap_err();
        assert!(err.to_string().contains("`endpoint`"), "{err}");
    }

    #[test]
    fn a_missing_local_folder_is_named() {
        let location = Location {
            kind: LocationKind::Local {
                root: "/nonexistent/stowage".into(),
            },
            prefix: String::new(),
        };
        let err = location.open().unwrap_err();
        assert!(err.to_string().contains("`root`"), "{err}");
    }

    #[test]
    fn settings_round_trip_through_json_and_debug_hides_secrets() {
        let location = s3("b", "http://127.0.0.1:9000");
        let json = serde_json::to_string(&location).unwrap();
        assert!(json.contains(r#""type":"s3""#), "{json}");
        let back: Location = serde_json::from_str(&json).unwrap();
        assert_eq!(back, location);
        let debug = format!("{location:?}");
        assert!(!debug.contains("\"secret\""), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }
}
