//! Backup locations as users register them: where the repository is (an S3 or S3-compatible
//! bucket, an Azure container, a GCS bucket or a local folder, with a prefix) and the passphrase
//! that unlocks it; the spec's validation, and opening (or, the first time, creating) the
//! repository it names.

use serde::{Deserialize, Serialize};

use crate::storage::{self, KdfParams, Location, Repository, Secret};
use crate::validate::{FieldError, Problems};

/// A location's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationSpec {
    /// The store, bucket and prefix.
    pub location: Location,
    /// The repository's passphrase: without it nothing in the location can be read.
    pub passphrase: Secret,
}

/// The shortest passphrase accepted.
pub const MIN_PASSPHRASE: usize = 8;

impl LocationSpec {
    /// Reads and checks a spec, naming every invalid field (paths under `spec`).
    pub fn parse(spec: &serde_json::Value) -> Result<Self, Vec<FieldError>> {
        let location: Self = serde_json::from_value(spec.clone()).map_err(|err| {
            vec![FieldError {
                field: "spec".into(),
                message: err.to_string(),
            }]
        })?;
        let mut problems = Problems::default();
        if location.passphrase.expose().chars().count() < MIN_PASSPHRASE {
            problems.add(
                "spec.passphrase",
                format!("must be at least {MIN_PASSPHRASE} characters"),
            );
        }
        if let Err(storage::Error::InvalidLocation { field, reason }) = location.location.open() {
            problems.add(format!("spec.location.{field}"), reason);
        }
        problems.finish().map(|()| location)
    }

    /// Opens the location's repository; a location that holds none is
    /// [`storage::Error::NotARepository`].
    pub async fn open_repository(&self) -> Result<Repository, storage::Error> {
        Repository::open(&self.location, self.passphrase.expose()).await
    }

    /// Opens the location's repository, creating it when the location holds none yet.
    pub async fn repository(&self) -> Result<Repository, storage::Error> {
        match self.open_repository().await {
            Err(storage::Error::NotARepository { .. }) => {
                match Repository::init(
                    &self.location,
                    self.passphrase.expose(),
                    KdfParams::default(),
                )
                .await
                {
                    // Another backup created it meanwhile: open that one.
                    Err(storage::Error::AlreadyInitialized { .. }) => {
                        Repository::open(&self.location, self.passphrase.expose()).await
                    }
                    other => other,
                }
            }
            other => other,
        }
    }
}
