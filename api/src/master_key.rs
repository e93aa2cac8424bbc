//! The server's master key, which seals kubeconfigs, cloud keys and repository passphrases
//! before they are stored ([`stowage_workflows::sealing`]): given in `STOWAGE_MASTER_KEY`, or
//! kept in a file only its owner can read (0600) that the first start generates.
//!
//! A start checks the key against what is stored: a key that did not seal the stored secrets is
//! refused, and a missing key file is not silently replaced while sealed secrets exist.

use std::path::{Path, PathBuf};

use stowage_engine::Store;
use stowage_workflows::entity::{EntityError, sealing_report};
use stowage_workflows::sealing::{MasterKey, SealError};

use crate::private_file::{self, PrivateFileError};

/// Where the master key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    /// Given as base64 text (from the environment); never written anywhere.
    Given(String),
    /// Kept in this file, generated on the first start.
    File(PathBuf),
}

/// Why the master key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    /// The key file could not be read or written, or others may read it.
    #[error("master key file {0}")]
    File(#[from] PrivateFileError),
    /// The key is malformed, or no random bytes were available for a new one.
    #[error(transparent)]
    Key(#[from] SealError),
    /// The stored secrets could not be examined.
    #[error(transparent)]
    Entities(#[from] EntityError),
    /// The key file is gone but sealed secrets are stored.
    #[error(
        "the master key file {path} is missing, but the stored secrets are sealed with master key \
         {sealed_with}: put that key's file back (or give it in STOWAGE_MASTER_KEY); a new key \
         would not open them"
    )]
    Missing {
        /// The file.
        path: PathBuf,
        /// The ids of the keys that sealed the stored secrets.
        sealed_with: String,
    },
    /// The key did not seal the stored secrets.
    #[error(
        "the master key from {origin} is key {current}, but the stored secrets are sealed with \
         master key {sealed_with}: start the server with the key they were sealed with"
    )]
    Mismatch {
        /// Where the key came from.
        origin: String,
        /// The id of the key given.
        current: String,
        /// The ids of the keys that sealed the stored secrets.
        sealed_with: String,
    },
}

/// The master key a start uses.
#[derive(Debug)]
pub struct LoadedKey {
    /// The key.
    pub key: MasterKey,
    /// The file it was generated into on this start (the operator should back it up).
    pub generated: Option<PathBuf>,
}

/// The master key from `source`, checked against the secrets already sealed in `store`;
/// generated into its file when there is none and nothing sealed is stored.
pub fn load_master_key(
    source: &MasterKeySource,
    store: &Store,
) -> Result<LoadedKey, MasterKeyError> {
    let report = sealing_report(store)?;
    let sealed_with = report
        .key_ids
        .iter()
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    let (key, origin, generated) = match source {
        MasterKeySource::Given(text) => (
            MasterKey::from_base64(text, "STOWAGE_MASTER_KEY")?,
            "STOWAGE_MASTER_KEY".to_string(),
            None,
        ),
        MasterKeySource::File(path) => match private_file::read(path)? {
            Some(text) => (
                MasterKey::from_base64(&text, &format!("master key file {}", path.display()))?,
                path.display().to_string(),
                None,
            ),
            None if !report.key_ids.is_empty() => {
                return Err(MasterKeyError::Missing {
                    path: path.clone(),
                    sealed_with,
                });
            }
            None => {
                let (key, text) = MasterKey::generate()?;
                private_file::create(path, &format!("{text}\n"))?;
                (key, path.display().to_string(), Some(path.clone()))
            }
        },
    };
    if report.key_ids.iter().any(|id| id != key.id()) {
        return Err(MasterKeyError::Mismatch {
            origin,
            current: key.id().to_string(),
            sealed_with,
        });
    }
    if report.clear > 0 {
        tracing::warn!(
            secrets = report.clear,
            "stored secrets written before sealing existed are still in clear: update or \
             re-register those entities to seal them"
        );
    }
    tracing::info!(key = key.id(), "master key loaded");
    Ok(LoadedKey { key, generated })
}

/// The default key file of a server whose data is in `data_dir`.
pub fn default_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("master-key")
}
