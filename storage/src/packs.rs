//! Pack files and the chunk index. A backup does not store each chunk as an object of its own:
//! it appends the sealed chunks to a pack (about [`PACK_TARGET`] bytes), uploads the pack as
//! `packs/<xx>/<id>` and records in an index object (`index/<id>`) where each chunk lies. A
//! pack ends with a sealed header naming its chunks, so the index can be rebuilt from the packs.
//!
//! The [`ChunkIndex`] a reader loads is every index object, checked against one listing of
//! `packs/`: a chunk counts as stored only when its pack is listed with the size the index
//! records, so a pack lost or cut short makes its chunks missing (and a backup sends them
//! again), never silently present. Chunks of version-1 repositories, one object each under
//! `chunks/`, are listed too and read as they are.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::chunk_id::ChunkId;
use crate::error::{Error, Result};
use crate::names;
use crate::object::{self, Kind};
use crate::repository::Repository;

/// A pack is closed and uploaded once it holds this many bytes.
pub(crate) const PACK_TARGET: usize = 16 * 1024 * 1024;
/// Index objects read at once.
const INDEX_READS_AT_ONCE: usize = 16;
/// Bytes of the trailer that ends a pack: the sealed header's length, little-endian.
const TRAILER_LEN: usize = 4;

/// Where one chunk lies in its pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PackedChunk {
    /// The chunk's id.
    pub(crate) id: ChunkId,
    /// Offset of its sealed bytes in the pack.
    pub(crate) offset: u64,
    /// Length of its sealed bytes.
    pub(crate) length: u64,
}

/// A pack as the index records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IndexedPack {
    /// The pack's id (random, 32 hex digits).
    pub(crate) id: String,
    /// Its size in the store, trailer included.
    pub(crate) size: u64,
    /// The chunks in it, in the order they were written.
    pub(crate) chunks: Vec<PackedChunk>,
}

/// The body of an index object.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct IndexBody {
    pub(crate) packs: Vec<IndexedPack>,
}

/// [`IndexBody`] as it is written, over packs the writer keeps.
#[derive(Serialize)]
struct IndexBodyOut<'a> {
    packs: &'a [IndexedPack],
}

/// Bytes of one chunk's record in a pack header: its id, then the length of its sealed bytes
/// (u32, little-endian). Offsets are not recorded: the chunks lie one after the other from the
/// start of the pack.
const HEADER_RECORD_LEN: usize = 32 + 4;

/// A pack header's body: a record per chunk, in order.
fn encode_pack_header(chunks: &[PackedChunk]) -> std::result::Result<Vec<u8>, String> {
    let mut body = Vec::with_capacity(chunks.len() * HEADER_RECORD_LEN);
    for chunk in chunks {
        let length = u32::try_from(chunk.length)
            .map_err(|_| format!("chunk `{}` is larger than 4 GiB", chunk.id))?;
        body.extend_from_slice(chunk.id.as_bytes());
        body.extend_from_slice(&length.to_le_bytes());
    }
    Ok(body)
}

/// The chunks a pack header's body records, with their offsets.
fn decode_pack_header(body: &[u8]) -> std::result::Result<Vec<PackedChunk>, String> {
    if !body.len().is_multiple_of(HEADER_RECORD_LEN) {
        return Err(format!(
            "a header of {} bytes is not a whole number of {HEADER_RECORD_LEN}-byte records",
            body.len()
        ));
    }
    let mut offset = 0u64;
    Ok(body
        .chunks_exact(HEADER_RECORD_LEN)
        .map(|record| {
            // Records are exactly HEADER_RECORD_LEN bytes: 32 of id, 4 of length.
            let (id_bytes, length_bytes) = record.split_at(32);
            let mut id = [0u8; 32];
            id.copy_from_slice(id_bytes);
            let mut length = [0u8; 4];
            length.copy_from_slice(length_bytes);
            let length = u64::from(u32::from_le_bytes(length));
            let chunk = PackedChunk {
                id: ChunkId::from_bytes(id),
                offset,
                length,
            };
            offset += length;
            chunk
        })
        .collect())
}

/// Where a stored chunk can be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChunkPlace {
    /// In a pack, at a range.
    Packed {
        pack: Arc<str>,
        offset: u64,
        length: u64,
    },
    /// An object of its own (version 1).
    Loose,
}

/// Every chunk the repository holds, and where.
#[derive(Debug, Default)]
pub(crate) struct ChunkIndex {
    places: HashMap<ChunkId, ChunkPlace>,
    /// The index objects read, by name, with what they hold (for garbage collection).
    pub(crate) objects: Vec<(String, IndexBody)>,
    /// Every pack listed, by id: its size and age.
    pub(crate) listed_packs: HashMap<String, object_store::ObjectMeta>,
}

impl ChunkIndex {
    /// Where chunk `id` is, if stored.
    pub(crate) fn place(&self, id: &ChunkId) -> Option<&ChunkPlace> {
        self.places.get(id)
    }

    /// The ids of every stored chunk.
    pub(crate) fn ids(&self) -> HashSet<ChunkId> {
        self.places.keys().copied().collect()
    }
}

/// A pack being filled: the sealed chunks, kept as they were sealed (uploaded without copying).
#[derive(Debug, Default)]
pub(crate) struct OpenPack {
    parts: Vec<Bytes>,
    chunks: Vec<PackedChunk>,
    bytes: u64,
}

impl OpenPack {
    /// Appends a sealed chunk.
    pub(crate) fn push(&mut self, id: ChunkId, sealed: Bytes) {
        let length = sealed.len() as u64;
        self.chunks.push(PackedChunk {
            id,
            offset: self.bytes,
            length,
        });
        self.bytes += length;
        self.parts.push(sealed);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes of sealed chunks in it.
    pub(crate) fn len(&self) -> u64 {
        self.bytes
    }
}

/// The packs of one backup run: the one being filled, those uploaded but not yet in an index
/// object, and those the run's checkpoints indexed (with the index objects they wrote, which
/// the run's last index replaces). Shared by the uploads in flight.
#[derive(Debug, Default)]
pub(crate) struct Packer {
    open: Mutex<OpenPack>,
    uploaded: Mutex<Vec<IndexedPack>>,
    indexed: Mutex<(Vec<IndexedPack>, Vec<String>)>,
}

impl Packer {
    /// Adds a sealed chunk to the open pack; when that makes it full, takes it (for the caller
    /// to upload) and opens a new one.
    pub(crate) fn add(&self, id: ChunkId, sealed: Bytes) -> Option<OpenPack> {
        // The lock is held for a push and a comparison, which do not panic.
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.push(id, sealed);
        (open.bytes >= PACK_TARGET as u64).then(|| std::mem::take(&mut *open))
    }

    fn take_open(&self) -> OpenPack {
        std::mem::take(&mut *self.open.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn uploaded(&self, pack: IndexedPack) {
        self.uploaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(pack);
    }

    fn take_uploaded(&self) -> Vec<IndexedPack> {
        std::mem::take(&mut *self.uploaded.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Records packs a checkpoint indexed, and the index object that holds them.
    fn indexed(&self, packs: Vec<IndexedPack>, object: String) {
        let mut indexed = self.indexed.lock().unwrap_or_else(PoisonError::into_inner);
        indexed.0.extend(packs);
        indexed.1.push(object);
    }

    fn take_indexed(&self) -> (Vec<IndexedPack>, Vec<String>) {
        std::mem::take(&mut *self.indexed.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Repository {
    /// Loads the chunk index: every index object, one listing of `packs/` and one of the
    /// version-1 `chunks/`.
    pub(crate) async fn chunk_index(&self) -> Result<ChunkIndex> {
        let (objects, packs, loose) = futures::try_join!(
            self.index_objects(),
            self.list(names::PACKS),
            self.stored_chunks()
        )?;
        let mut index = ChunkIndex {
            listed_packs: packs
                .into_iter()
                .filter_map(|meta| Some((meta.location.filename()?.to_string(), meta)))
                .collect(),
            ..ChunkIndex::default()
        };
        // A chunk object is named by its id; anything else under `chunks/` is not a chunk.
        index.places.extend(
            loose
                .iter()
                .filter_map(|id| Some((id.parse().ok()?, ChunkPlace::Loose))),
        );
        for (_, body) in &objects {
            for pack in &body.packs {
                let present = index
                    .listed_packs
                    .get(&pack.id)
                    .is_some_and(|meta| meta.size == pack.size);
                if !present {
                    continue;
                }
                let name: Arc<str> = Arc::from(pack.id.as_str());
                for chunk in &pack.chunks {
                    index.places.insert(
                        chunk.id,
                        ChunkPlace::Packed {
                            pack: name.clone(),
                            offset: chunk.offset,
                            length: chunk.length,
                        },
                    );
                }
            }
        }
        index.objects = objects;
        info!(
            chunks = index.places.len(),
            packs = index.listed_packs.len(),
            "loaded the chunk index"
        );
        Ok(index)
    }

    /// Every index object, read and opened, by name.
    async fn index_objects(&self) -> Result<Vec<(String, IndexBody)>> {
        let listed = self.list(names::INDEX).await?;
        futures::stream::iter(listed)
            .map(|meta| async move {
                let name = meta.location.to_string();
                let body = self.get_object(Kind::ChunkIndex, &name).await?;
                let index: IndexBody =
                    serde_json::from_slice(&body).map_err(|err| Error::Corrupt {
                        object: name.clone(),
                        what: format!("not a chunk index: {err}"),
                    })?;
                Ok::<_, Error>((name, index))
            })
            .buffer_unordered(INDEX_READS_AT_ONCE)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    /// Writes an index object recording `packs`; nothing when there are none.
    pub(crate) async fn write_index(&self, packs: &[IndexedPack]) -> Result<Option<String>> {
        if packs.is_empty() {
            return Ok(None);
        }
        let name = names::index(&uuid::Uuid::new_v4().simple().to_string());
        let body = serde_json::to_vec(&IndexBodyOut { packs }).map_err(|err| Error::Corrupt {
            object: name.clone(),
            what: format!("cannot encode: {err}"),
        })?;
        self.put_object(Kind::ChunkIndex, &name, &body).await?;
        Ok(Some(name))
    }

    /// Seals the pack's header, uploads the pack and returns what the index records of it.
    pub(crate) async fn upload_pack(&self, pack: OpenPack) -> Result<IndexedPack> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = names::pack(&id);
        let header = encode_pack_header(&pack.chunks).map_err(|what| Error::Corrupt {
            object: name.clone(),
            what: format!("cannot encode its header: {what}"),
        })?;
        let sealed_header = object::seal(self.key(), Kind::PackHeader, &name, &header)?;
        let header_len = u32::try_from(sealed_header.len()).map_err(|_| Error::Corrupt {
            object: name.clone(),
            what: "its header is larger than 4 GiB".into(),
        })?;
        let size = pack.bytes + sealed_header.len() as u64 + TRAILER_LEN as u64;
        let mut parts = pack.parts;
        parts.push(Bytes::from(sealed_header));
        parts.push(Bytes::copy_from_slice(&header_len.to_le_bytes()));
        self.store()
            .put(&Path::from(name.as_str()), PutPayload::from_iter(parts))
            .await
            .map_err(|source| Error::Store {
                action: "write",
                object: name.clone(),
                source,
            })?;
        Ok(IndexedPack {
            id,
            size,
            chunks: pack.chunks,
        })
    }

    /// Adds a sealed chunk to the run's packs, uploading the open pack when it is full.
    pub(crate) async fn pack_chunk(
        &self,
        packer: &Packer,
        id: ChunkId,
        sealed: Bytes,
    ) -> Result<()> {
        if let Some(full) = packer.add(id, sealed) {
            let uploaded = self.upload_pack(full).await?;
            packer.uploaded(uploaded);
        }
        Ok(())
    }

    /// Uploads the open pack, if any, and records every pack uploaded so far in a new index
    /// object (a checkpoint's): after it, each chunk given to the packer before is stored and
    /// indexed (or still in an upload in flight, indexed by a later flush).
    pub(crate) async fn flush_packs(&self, packer: &Packer) -> Result<()> {
        self.close_open_pack(packer).await?;
        let packs = packer.take_uploaded();
        if let Some(object) = self.write_index(&packs).await? {
            packer.indexed(packs, object);
        }
        Ok(())
    }

    /// Uploads the open pack, if it holds anything, and records it among the run's packs
    /// waiting for an index object.
    async fn close_open_pack(&self, packer: &Packer) -> Result<()> {
        let open = packer.take_open();
        if !open.is_empty() {
            let uploaded = self.upload_pack(open).await?;
            packer.uploaded(uploaded);
        }
        Ok(())
    }

    /// Ends a run's packing (no upload is in flight any more): uploads the open pack and
    /// writes one index object of every pack the run stored, then deletes the index objects
    /// its checkpoints wrote, which that one holds whole. A run of an hour leaves one index
    /// object, not one per checkpoint. The new object is written first, so a failure at any
    /// point leaves every pack indexed; a checkpoint object that cannot be deleted only waits
    /// for the next garbage collection, which merges all index objects into one.
    pub(crate) async fn finish_packs(&self, packer: &Packer) -> Result<()> {
        self.close_open_pack(packer).await?;
        let (mut packs, checkpoints) = packer.take_indexed();
        let uploaded = packer.take_uploaded();
        if uploaded.is_empty() && checkpoints.len() <= 1 {
            // One object (or none, when nothing was stored) already holds the run's packs.
            return Ok(());
        }
        packs.extend(uploaded);
        self.write_index(&packs).await?;
        for object in checkpoints {
            if let Err(err) = self.delete_object(object.clone()).await {
                tracing::warn!(%object, %err, "a checkpoint's index object could not be deleted");
            }
        }
        Ok(())
    }

    /// Where chunk `id` is stored: the object that holds it and the range of its sealed bytes
    /// in that object; `None` when the repository does not hold it.
    pub async fn locate_chunk(&self, id: &ChunkId) -> Result<Option<(String, Range<u64>)>> {
        Ok(self.locate_chunks(&[id]).await?.pop().flatten())
    }

    /// [`Repository::locate_chunk`] for several chunks, loading the index once: for
    /// diagnostics and tests.
    pub async fn locate_chunks(
        &self,
        ids: &[&ChunkId],
    ) -> Result<Vec<Option<(String, Range<u64>)>>> {
        let index = self.chunk_index().await?;
        self.locate_in(&index, ids).await
    }

    /// Where each of `ids` is stored according to `index` (a chunk object's size is asked of
    /// the store).
    async fn locate_in(
        &self,
        index: &ChunkIndex,
        ids: &[&ChunkId],
    ) -> Result<Vec<Option<(String, Range<u64>)>>> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            found.push(match index.place(id) {
                Some(ChunkPlace::Packed {
                    pack,
                    offset,
                    length,
                }) => Some((names::pack(pack), *offset..offset + length)),
                Some(ChunkPlace::Loose) => {
                    let name = names::chunk(id);
                    let size = self
                        .store()
                        .head(&Path::from(name.as_str()))
                        .await
                        .map_err(|source| Error::Store {
                            action: "read",
                            object: name.clone(),
                            source,
                        })?
                        .size;
                    Some((name, 0..size))
                }
                None => None,
            });
        }
        Ok(found)
    }

    /// Every chunk the repository holds, with the bytes it takes as stored (sealed): for
    /// diagnostics and tests.
    pub async fn stored_chunk_sizes(&self) -> Result<BTreeMap<ChunkId, u64>> {
        let index = self.chunk_index().await?;
        let ids: Vec<&ChunkId> = index.places.keys().collect();
        Ok(self
            .locate_in(&index, &ids)
            .await?
            .into_iter()
            .zip(&ids)
            .filter_map(|(place, id)| place.map(|(_, range)| (**id, range.end - range.start)))
            .collect())
    }

    /// Reads a pack's header: the chunks it holds.
    pub(crate) async fn pack_header(&self, id: &str, size: u64) -> Result<Vec<PackedChunk>> {
        let name = names::pack(id);
        let corrupt = |what: String| Error::Corrupt {
            object: name.clone(),
            what,
        };
        if size < TRAILER_LEN as u64 {
            return Err(corrupt(format!("{size} bytes is too short for a pack")));
        }
        let trailer = self
            .get_range_raw(&name, size - TRAILER_LEN as u64..size)
            .await?;
        let mut length = [0u8; TRAILER_LEN];
        length.copy_from_slice(&trailer);
        let length = u64::from(u32::from_le_bytes(length));
        let start = (size - TRAILER_LEN as u64)
            .checked_sub(length)
            .ok_or_else(|| corrupt(format!("its trailer claims a header of {length} bytes")))?;
        let sealed = self
            .get_range_raw(&name, start..size - TRAILER_LEN as u64)
            .await?;
        let body = object::open(self.key(), Kind::PackHeader, &name, &sealed)?;
        decode_pack_header(&body).map_err(|what| corrupt(format!("not a pack header: {what}")))
    }

    /// Reads the sealed bytes of a stored chunk, wherever it is; the name they are bound to
    /// and a description of where they were read, for errors.
    pub(crate) async fn read_sealed_chunk(
        &self,
        index: &ChunkIndex,
        id: &ChunkId,
    ) -> Result<(Bytes, String)> {
        let name = names::chunk(id);
        match index.place(id) {
            Some(ChunkPlace::Packed {
                pack,
                offset,
                length,
            }) => {
                let pack = names::pack(pack);
                let bytes = self.get_range_raw(&pack, *offset..offset + length).await?;
                Ok((bytes, format!("{name} in {pack}")))
            }
            Some(ChunkPlace::Loose) => Ok((self.get_raw(&name).await?, name)),
            None => Err(Error::Missing { object: name }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::backup::{BackupOptions, VolumeSource};
    use crate::chunker::Chunking;
    use crate::chunker::tests::pseudo_random;
    use crate::crypto::KdfParams;
    use crate::location::{Location, LocationKind};
    use crate::repository::{CONFIG_OBJECT, FORMAT_VERSION};
    use crate::tree::EntryKind;

    const KDF: KdfParams = KdfParams {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    };

    fn config_version(root: &std::path::Path) -> u64 {
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join("r").join(CONFIG_OBJECT)).unwrap())
                .unwrap();
        config["version"].as_u64().unwrap()
    }

    #[test]
    fn a_pack_header_records_ids_and_lengths_and_derives_offsets() {
        let chunks: Vec<PackedChunk> = [(7u8, 100u64), (8, 2), (9, 70_000)]
            .iter()
            .scan(0u64, |offset, (seed, length)| {
                let chunk = PackedChunk {
                    id: blake3::hash(&[*seed]).into(),
                    offset: *offset,
                    length: *length,
                };
                *offset += length;
                Some(chunk)
            })
            .collect();
        let body = encode_pack_header(&chunks).unwrap();
        assert_eq!(body.len(), 3 * HEADER_RECORD_LEN);
        assert_eq!(decode_pack_header(&body).unwrap(), chunks);
        let err = decode_pack_header(&body[..body.len() - 1]).unwrap_err();
        assert!(err.contains("whole number"), "{err}");
        let huge = PackedChunk {
            length: 5 << 30,
            ..chunks[0].clone()
        };
        assert!(
            encode_pack_header(&[huge])
                .unwrap_err()
                .contains("larger than 4 GiB")
        );
    }

    #[test]
    fn an_index_writes_chunk_ids_in_hex_and_names_one_that_is_not() {
        let pack = IndexedPack {
            id: "p".into(),
            size: 10,
            chunks: vec![PackedChunk {
                id: blake3::hash(b"c").into(),
                offset: 0,
                length: 6,
            }],
        };
        let json = serde_json::to_value(IndexBodyOut {
            packs: std::slice::from_ref(&pack),
        })
        .unwrap();
        let hex = blake3::hash(b"c").to_hex().to_string();
        assert_eq!(json["packs"][0]["chunks"][0]["id"], hex.as_str());
        let body: IndexBody = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(body.packs, vec![pack]);
        let mut bad = json;
        bad["packs"][0]["chunks"][0]["id"] = "c0ffee".into();
        let err = serde_json::from_value::<IndexBody>(bad).unwrap_err();
        assert!(
            err.to_string()
                .contains("chunk id `c0ffee` is not 64 hex digits"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_version_1_repository_is_read_its_chunks_are_reused_and_its_version_raised() {
        let root = tempfile::tempdir().unwrap();
        let location = Location {
            kind: LocationKind::Local {
                root: root.path().to_path_buf(),
            },
            prefix: "r".into(),
        };
        Repository::init(&location, "pass", KDF).await.unwrap();
        // Made a version-1 repository: the config says 1, and a chunk is an object of its own.
        let config_path = root.path().join("r").join(CONFIG_OBJECT);
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
        config["version"] = 1.into();
        config.as_object_mut().unwrap().remove("chunking").unwrap();
        std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
        let repo = Repository::open(&location, "pass").await.unwrap();
        assert_eq!(repo.chunking(), Chunking::UNRECORDED);
        let content = b"written by a version-1 backup".repeat(100);
        let id = ChunkId::from(repo.key().chunk_id(&content));
        repo.put_object(Kind::Chunk, &names::chunk(&id), &content)
            .await
            .unwrap();

        let index = repo.chunk_index().await.unwrap();
        assert_eq!(index.place(&id), Some(&ChunkPlace::Loose));
        assert_eq!(repo.read_chunk(&index, &id, "f").await.unwrap(), content);
        let (object, range) = repo.locate_chunk(&id).await.unwrap().unwrap();
        assert_eq!(object, names::chunk(&id));
        let stored = std::fs::metadata(root.path().join("r").join(&object)).unwrap();
        assert_eq!(range, 0..stored.len());

        // A backup of the same content reuses the loose chunk and raises the version first.
        let source = tempfile::tempdir().unwrap();
        std::fs::write(source.path().join("f"), &content).unwrap();
        std::fs::write(source.path().join("g"), b"new content").unwrap();
        std::fs::write(
            source.path().join("h"),
            pseudo_random(6 << 20, 0x9e37_79b9_7f4a_7c15),
        )
        .unwrap();
        let summary = repo
            .backup(
                "b1",
                "test",
                &[VolumeSource {
                    name: "v".into(),
                    path: source.path().to_path_buf(),
                }],
                &BackupOptions::default(),
                &|_| {},
            )
            .await
            .unwrap();
        assert_eq!(
            (
                summary.progress.chunks_reused,
                summary.progress.chunks_uploaded
            ),
            (1, 1 + chunk_lengths(&repo, "b1", "h").await.len() as u64)
        );
        assert_eq!(config_version(root.path()), u64::from(FORMAT_VERSION));
        // Its content was cut to the sizes such repositories were always cut to, and raising
        // the version recorded them.
        let lengths = chunk_lengths(&repo, "b1", "h").await;
        assert!(
            lengths[..lengths.len() - 1]
                .iter()
                .all(|&len| len >= Chunking::UNRECORDED.min),
            "{lengths:?}"
        );
        let raised: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
        assert_eq!(
            serde_json::from_value::<Chunking>(raised["chunking"].clone()).unwrap(),
            Chunking::UNRECORDED
        );
        assert!(repo.verify("b1", 2).await.unwrap().is_ok());
        let target = tempfile::tempdir().unwrap();
        repo.restore("b1", "v", target.path(), None, 2)
            .await
            .unwrap();
        assert_eq!(std::fs::read(target.path().join("f")).unwrap(), content);
        assert_eq!(
            std::fs::read(target.path().join("g")).unwrap(),
            b"new content"
        );

        // A version this build does not know is refused by name.
        config["version"] = 9.into();
        std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
        let err = Repository::open(&location, "pass").await.unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedVersion { found: 9, .. }),
            "{err}"
        );
    }

    /// The lengths of the chunks of file `path` in a backup's volume `v`.
    async fn chunk_lengths(repo: &Repository, backup: &str, path: &str) -> Vec<u32> {
        let tree = repo.volume_tree(backup, "v").await.unwrap();
        let entry = tree.entries.iter().find(|e| e.path == path).unwrap();
        match &entry.kind {
            EntryKind::File { chunks, .. } => chunks.iter().map(|c| c.len).collect(),
            other => panic!("{path} is {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_new_repository_records_how_it_cuts_and_cuts_so_with_a_gear_of_its_own() {
        let root = tempfile::tempdir().unwrap();
        let location = Location {
            kind: LocationKind::Local {
                root: root.path().to_path_buf(),
            },
            prefix: "r".into(),
        };
        let repo = Repository::init(&location, "pass", KDF).await.unwrap();
        assert_eq!(repo.chunking(), Chunking::DEFAULT);
        let source = tempfile::tempdir().unwrap();
        std::fs::write(
            source.path().join("h"),
            pseudo_random(6 << 20, 0x9e37_79b9_7f4a_7c15),
        )
        .unwrap();
        let volumes = [VolumeSource {
            name: "v".into(),
            path: source.path().to_path_buf(),
        }];
        repo.backup("b1", "test", &volumes, &BackupOptions::default(), &|_| {})
            .await
            .unwrap();
        let lengths = chunk_lengths(&repo, "b1", "h").await;
        let sizes = Chunking::DEFAULT;
        assert!(lengths.len() >= 6, "{lengths:?}");
        assert!(
            lengths[..lengths.len() - 1]
                .iter()
                .all(|&len| (sizes.min..=sizes.max).contains(&len)),
            "{lengths:?}"
        );

        // Opened again, it cuts the same way: the same file is all known chunks.
        let again = Repository::open(&location, "pass").await.unwrap();
        let summary = again
            .backup("b2", "test", &volumes, &BackupOptions::default(), &|_| {})
            .await
            .unwrap();
        assert_eq!(summary.progress.chunks_uploaded, 0);
        assert_eq!(chunk_lengths(&again, "b2", "h").await, lengths);

        // Another repository keys its gear otherwise, so the same file ends its chunks
        // elsewhere; with the crate's table it cuts where FastCDC alone does.
        let other_location = Location {
            prefix: "other".into(),
            ..location.clone()
        };
        let other = Repository::init(&other_location, "pass", KDF)
            .await
            .unwrap();
        other
            .backup("b1", "test", &volumes, &BackupOptions::default(), &|_| {})
            .await
            .unwrap();
        assert_ne!(chunk_lengths(&other, "b1", "h").await, lengths);
        let content = std::fs::read(source.path().join("h")).unwrap();
        let unkeyed: Vec<u32> = fastcdc::v2020::FastCDC::new(
            &content,
            sizes.min as usize,
            sizes.avg as usize,
            sizes.max as usize,
        )
        .map(|chunk| chunk.length as u32)
        .collect();
        assert_ne!(unkeyed, lengths);
        let other_config = root.path().join("other").join(CONFIG_OBJECT);
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&other_config).unwrap()).unwrap();
        config["chunking"]["gear"] = "fastcdc".into();
        std::fs::write(&other_config, serde_json::to_vec(&config).unwrap()).unwrap();
        let unkeyed_repo = Repository::open(&other_location, "pass").await.unwrap();
        unkeyed_repo
            .backup("b2", "test", &volumes, &BackupOptions::default(), &|_| {})
            .await
            .unwrap();
        assert_eq!(chunk_lengths(&unkeyed_repo, "b2", "h").await, unkeyed);

        // Sizes FastCDC cannot cut to make the config corrupt, by name.
        let config_path = root.path().join("r").join(CONFIG_OBJECT);
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
        assert_eq!(config["chunking"]["avg"], 256 * 1024);
        assert_eq!(config["chunking"]["gear"], "keyed");
        config["chunking"]["max"] = (64u64 << 20).into();
        std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
        let err = Repository::open(&location, "pass").await.unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { object, what }
                if object == CONFIG_OBJECT && what.contains("max = 67108864")),
            "{err}"
        );
    }
}
