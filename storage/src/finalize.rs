//! Finalizing a staged backup: read the volume trees and the resource index written under
//! `backups/<id>/` (by data movers and the server), check that every chunk and frame they need
//! is stored, and write the manifest last, with the caller's metadata.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{info, instrument};

use crate::chunk_id::ChunkId;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, VolumeRecord};
use crate::names;
use crate::object::{self, Kind};
use crate::repository::{FORMAT_VERSION, Repository};
use crate::resources::ResourcesSummary;
use crate::tree::{EntryKind, Tree};

/// The objects of one staged backup, from one listing of its folder.
#[derive(Debug, Default)]
pub(crate) struct StagedParts {
    /// Volume names with a tree.
    pub volumes: Vec<String>,
    /// Whether the resource index is there.
    pub resource_index: bool,
    /// Stored size of each resource frame, by number.
    pub frames: HashMap<u32, u64>,
}

impl Repository {
    /// Writes the manifest of staged backup `backup` from the volume trees and the resource
    /// index under `backups/<id>/`, after checking that each tree and the index open and that
    /// every chunk and frame they name is stored (all problems are listed in one
    /// [`Error::Damaged`]). Fails with [`Error::AlreadyFinalized`] if the backup has a manifest.
    #[instrument(skip(self, metadata), fields(location = %self.description()))]
    pub async fn finalize_backup(
        &self,
        backup: &str,
        source: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<Manifest> {
        names::check_name("backup id", backup)?;
        self.refuse_finalized(backup).await?;
        self.while_locked(backup, async {
            let known = self.chunk_index().await?.ids();
            self.finalize_locked(backup, source, metadata, &known).await
        })
        .await
    }

    /// The parts of a staged backup present in the store.
    pub(crate) async fn staged_parts(&self, backup: &str) -> Result<StagedParts> {
        let mut parts = StagedParts::default();
        for meta in self.list(&names::backup_folder(backup)).await? {
            let path: Vec<String> = meta
                .location
                .parts()
                .map(|part| part.as_ref().to_string())
                .collect();
            match path.as_slice() {
                [_, _, folder, name] if folder == "volumes" => parts.volumes.push(name.clone()),
                [_, _, folder, name] if folder == "resources" && name == "index" => {
                    parts.resource_index = true;
                }
                [_, _, folder, frames, number] if folder == "resources" && frames == "frames" => {
                    if let Ok(number) = number.parse() {
                        parts.frames.insert(number, meta.size);
                    }
                }
                _ => {}
            }
        }
        parts.volumes.sort();
        Ok(parts)
    }

    /// Checks the staged parts against the stored chunks `known` and writes the manifest.
    pub(crate) async fn finalize_locked(
        &self,
        backup: &str,
        source: &str,
        metadata: BTreeMap<String, String>,
        known: &HashSet<ChunkId>,
    ) -> Result<Manifest> {
        let parts = self.staged_parts(backup).await?;
        if parts.volumes.is_empty() && !parts.resource_index {
            return Err(Error::NotFound(format!(
                "backup `{backup}` has neither a volume nor resources in {}",
                self.description()
            )));
        }
        let mut problems = Vec::new();
        let mut volumes = Vec::new();
        for volume in &parts.volumes {
            match self.check_staged_tree(backup, volume, known).await {
                Ok((record, missing)) => {
                    problems.extend(missing);
                    volumes.push(record);
                }
                Err(err) => problems.push(err.to_string()),
            }
        }
        let resources = if parts.resource_index {
            match self.check_staged_resources(backup, &parts).await {
                Ok((summary, missing)) => {
                    problems.extend(missing);
                    Some(summary)
                }
                Err(err) => {
                    problems.push(err.to_string());
                    None
                }
            }
        } else {
            None
        };
        if !problems.is_empty() {
            return Err(Error::Damaged { problems });
        }
        let manifest = Manifest {
            version: FORMAT_VERSION,
            backup: backup.into(),
            finished_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            source: source.into(),
            volumes,
            resources,
            metadata,
        };
        self.write_manifest(&manifest).await?;
        info!(
            volumes = manifest.volumes.len(),
            resources = manifest.resources.as_ref().map(|r| r.objects),
            "backup finalized"
        );
        Ok(manifest)
    }

    /// Reads a staged tree and returns its record and a line per chunk not stored.
    async fn check_staged_tree(
        &self,
        backup: &str,
        volume: &str,
        known: &HashSet<ChunkId>,
    ) -> Result<(VolumeRecord, Vec<String>)> {
        let name = names::volume_tree(backup, volume);
        let bytes = self.get_raw(&name).await?;
        let tree_hash = blake3::hash(&bytes).to_hex().to_string();
        let body = object::open(self.key(), Kind::Tree, &name, &bytes)?;
        let tree: Tree = serde_json::from_slice(&body).map_err(|err| Error::Corrupt {
            object: name.clone(),
            what: format!("not a tree: {err}"),
        })?;
        let mut record = VolumeRecord {
            name: volume.into(),
            tree_hash,
            files: 0,
            bytes: 0,
            chunks: 0,
        };
        let mut missing = Vec::new();
        for entry in &tree.entries {
            if let EntryKind::File { size, chunks } = &entry.kind {
                record.files += 1;
                record.bytes += size;
                record.chunks += chunks.len() as u64;
                for chunk in chunks {
                    if !known.contains(&chunk.id) {
                        missing.push(format!(
                            "missing chunk `{}` (of file {volume}/{}): in no indexed pack",
                            chunk.id, entry.path
                        ));
                    }
                }
            }
        }
        Ok((record, missing))
    }

    /// Reads a staged resource index and returns its summary and a line per frame missing or
    /// of the wrong size.
    async fn check_staged_resources(
        &self,
        backup: &str,
        parts: &StagedParts,
    ) -> Result<(ResourcesSummary, Vec<String>)> {
        let name = names::resource_index(backup);
        let bytes = self.get_raw(&name).await?;
        let index = self.open_resource_index(&name, &bytes, None)?;
        let mut problems = Vec::new();
        for (number, frame) in index.frames.iter().enumerate() {
            let frame_name = names::resource_frame(backup, number as u32);
            match parts.frames.get(&(number as u32)) {
                None => problems.push(format!("missing object `{frame_name}`")),
                Some(&size) if size != frame.stored => problems.push(format!(
                    "corrupt object `{frame_name}`: {size} bytes stored where the index records {}",
                    frame.stored
                )),
                Some(_) => {}
            }
        }
        let summary = ResourcesSummary {
            objects: index.entries.len() as u64,
            frames: index.frames.len() as u64,
            bytes: index.frames.iter().map(|frame| frame.content).sum(),
            index_hash: blake3::hash(&bytes).to_hex().to_string(),
        };
        Ok((summary, problems))
    }
}
