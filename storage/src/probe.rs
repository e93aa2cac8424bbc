//! Validating a location before it is used: write, read, list and delete a probe object, and
//! name the cause of a failure (credentials, missing bucket, unreachable endpoint).

use std::time::Duration;

use futures::TryStreamExt;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStoreExt, PutPayload, RetryConfig};
use tracing::instrument;

use crate::error::{Error, Result};
use crate::location::Location;

/// Where probe objects are written, under the location's prefix.
const PROBE_FOLDER: &str = "stowage-probe";

/// How long validation waits to connect, and for a whole request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Location {
    /// Checks that the location can be used: writes a small probe object, reads it back, finds
    /// it in a listing, deletes it and checks that it is gone.
    ///
    /// A refused key is [`Error::Credentials`], a missing bucket or container
    /// [`Error::MissingBucket`], an endpoint that cannot be reached [`Error::Unreachable`]; any
    /// other failure is [`Error::Probe`] naming the step.
    #[instrument(skip(self), fields(location = %self.describe()))]
    pub async fn validate(&self) -> Result<()> {
        let client = ClientOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: Duration::from_secs(20),
        };
        let store = self.open_with(&client, retry)?;
        let name = format!("{PROBE_FOLDER}/{}", uuid::Uuid::new_v4());
        let path = Path::from(name.as_str());
        let body = format!("stowage location probe {name}");

        store
            .put(&path, PutPayload::from(body.clone().into_bytes()))
            .await
            .map_err(|err| self.classify("write the probe object", err, true))?;
        let read = async { store.get(&path).await?.bytes().await }
            .await
            .map_err(|err| self.classify("read the probe object back", err, false))?;
        if read.as_ref() != body.as_bytes() {
            return Err(Error::ProbeMismatch {
                location: self.describe(),
                what: format!(
                    "the probe object {name} read back as {} bytes, not the {} written",
                    read.len(),
                    body.len()
                ),
            });
        }
        let folder = Path::from(PROBE_FOLDER);
        let listed: Vec<_> = store
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(|err| self.classify("list the probe folder", err, false))?;
        if !listed.iter().any(|meta| meta.location == path) {
            return Err(Error::ProbeMismatch {
                location: self.describe(),
                what: format!("the probe object {name} is missing from the listing"),
            });
        }
        store
            .delete(&path)
            .await
            .map_err(|err| self.classify("delete the probe object", err, false))?;
        match store.head(&path).await {
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Ok(_) => Err(Error::ProbeMismatch {
                location: self.describe(),
                what: format!("the probe object {name} is still there after it was deleted"),
            }),
            Err(err) => Err(self.classify("check the probe object is gone", err, false)),
        }
    }

    /// Names the cause of a failed probe step. `first_write` says the step was the first
    /// request, where "not found" can only mean the bucket or container is missing.
    fn classify(&self, step: &'static str, err: object_store::Error, first_write: bool) -> Error {
        let location = self.describe();
        match err {
            object_store::Error::Unauthenticated { .. }
            | object_store::Error::PermissionDenied { .. } => Error::Credentials {
                location,
                source: err,
            },
            object_store::Error::NotFound { .. } if first_write => Error::MissingBucket {
                location,
                source: err,
            },
            err if is_connection_failure(&err) => Error::Unreachable {
                location,
                source: err,
            },
            err => Error::Probe {
                location,
                step,
                source: err,
            },
        }
    }
}

/// Whether the error, or one it wraps, is an HTTP client failure to connect or a timeout.
fn is_connection_failure(err: &object_store::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = next {
        if let Some(http) = current.downcast_ref::<HttpError>() {
            return matches!(http.kind(), HttpErrorKind::Connect | HttpErrorKind::Timeout);
        }
        next = current.source();
    }
    false
}
