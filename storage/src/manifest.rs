//! A backup's manifest: what was backed up, from where, when, and the volumes with the hash of
//! each stored tree. It is written last; a backup without one is incomplete.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::names;
use crate::object::Kind;
use crate::repository::{FORMAT_VERSION, Repository};
use crate::resources::ResourcesSummary;

/// The manifest of one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The format version that wrote it.
    pub version: u32,
    /// The backup's id.
    pub backup: String,
    /// When the backup finished, seconds since the epoch.
    pub finished_at: u64,
    /// What the backup came from, as the caller described it (e.g. cluster and PVC).
    pub source: String,
    /// The volumes.
    pub volumes: Vec<VolumeRecord>,
    /// The resource pack, if the backup has one (absent in manifests written before packs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesSummary>,
    /// The caller's labels of the backup (e.g. cluster, schedule, who asked).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// One volume of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// The volume's name (e.g. the PVC).
    pub name: String,
    /// BLAKE3 of the stored tree object's bytes, hex: a replaced tree is caught.
    pub tree_hash: String,
    /// Files in the tree.
    pub files: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Chunks the tree refers to.
    pub chunks: u64,
}

impl Repository {
    /// Writes a backup's manifest.
    pub(crate) async fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let name = names::manifest(&manifest.backup);
        let body = serde_json::to_vec(manifest).map_err(|err| Error::Corrupt {
            object: name.clone(),
            what: format!("cannot encode: {err}"),
        })?;
        self.put_object(Kind::Manifest, &name, &body).await
    }

    /// Reads a backup's manifest; a backup without one is [`Error::NotFound`].
    pub async fn manifest(&self, backup: &str) -> Result<Manifest> {
        names::check_name("backup id", backup)?;
        let name = names::manifest(backup);
        let body = match self.get_object(Kind::Manifest, &name).await {
            Err(Error::Missing { .. }) => {
                return Err(Error::NotFound(format!(
                    "backup `{backup}` has no manifest in {} (never finished, or deleted)",
                    self.description()
                )));
            }
            other => other?,
        };
        let manifest: Manifest = serde_json::from_slice(&body).map_err(|err| Error::Corrupt {
            object: name.clone(),
            what: format!("not a manifest: {err}"),
        })?;
        if manifest.version != FORMAT_VERSION || manifest.backup != backup {
            return Err(Error::Corrupt {
                object: name,
                what: format!(
                    "it names backup `{}` version {}, not `{backup}` version {FORMAT_VERSION}",
                    manifest.backup, manifest.version
                ),
            });
        }
        Ok(manifest)
    }
}
