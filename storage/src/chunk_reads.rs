//! Reading many chunks with few requests: chunks stored one after the other in a pack are
//! planned into runs read with one range request each and opened together on one blocking
//! thread; a version-1 chunk object is read on its own. Restore reads a volume's chunks in
//! file order this way, and `verify` reads every chunk of a backup in pack order.

use std::sync::Arc;

use crate::chunk_id::ChunkId;
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::names;
use crate::object::{self, Kind};
use crate::packs::{ChunkIndex, ChunkPlace};
use crate::repository::Repository;
use crate::tree::ChunkRef;

impl Repository {
    /// Reads a chunk (from its pack, or its own object in a version-1 repository), opens it
    /// and checks its id; `file` names where it is used, for errors.
    pub(crate) async fn read_chunk(
        &self,
        index: &ChunkIndex,
        id: &ChunkId,
        file: &str,
    ) -> Result<Vec<u8>> {
        let (bytes, place) = match self.read_sealed_chunk(index, id).await {
            Err(Error::Missing { object }) => {
                return Err(Error::Missing {
                    object: format!("{object} (of file {file})"),
                });
            }
            other => other?,
        };
        let key = self.key().clone();
        let id = *id;
        let file = file.to_string();
        tokio::task::spawn_blocking(move || open_chunk(&key, &id, &bytes, &place, &file))
            .await
            .map_err(|err| Error::Random(format!("opening thread failed: {err}")))?
    }

    /// Reads the chunks of one planned read with one request, then opens and checks each (on
    /// a blocking thread): each job's number with the chunk's content, in order. The first
    /// damaged chunk fails the whole read.
    pub(crate) async fn fetch(
        &self,
        stored: &ChunkIndex,
        read: Read<'_>,
    ) -> Result<Vec<(usize, Vec<u8>)>> {
        let Some(pack) = read.pack else {
            // A version-1 chunk object: one read each.
            let mut out = Vec::with_capacity(read.parts.len());
            for part in &read.parts {
                let data = self.read_chunk(stored, &part.chunk.id, part.path).await?;
                out.push((part.file, checked_length(data, part.chunk, part.path)?));
            }
            return Ok(out);
        };
        let pack_name = names::pack(&pack);
        let bytes = self.get_range_raw(&pack_name, read.start..read.end).await?;
        let key = self.key().clone();
        let parts: Vec<(usize, String, ChunkRef, u64, u64)> = read
            .parts
            .iter()
            .map(|part| {
                (
                    part.file,
                    part.path.to_string(),
                    part.chunk.clone(),
                    part.offset - read.start,
                    part.length,
                )
            })
            .collect();
        tokio::task::spawn_blocking(move || {
            let place = |id: &ChunkId| format!("{} in {pack_name}", names::chunk(id));
            parts
                .into_iter()
                .map(|(file, path, chunk, offset, length)| {
                    let sealed = &bytes[offset as usize..(offset + length) as usize];
                    let data = open_chunk(&key, &chunk.id, sealed, &place(&chunk.id), &path)?;
                    Ok((file, checked_length(data, &chunk, &path)?))
                })
                .collect()
        })
        .await
        .map_err(|err| Error::Random(format!("opening thread failed: {err}")))?
    }
}

/// The most bytes one planned read asks for (unless a single chunk is larger).
pub(crate) const READ_MAX: u64 = 4 * 1024 * 1024;

/// One chunk of a file, where it lies.
pub(crate) struct Part<'a> {
    /// The caller's number for the job (restore: the file's index).
    file: usize,
    /// The file's path, for errors.
    path: &'a str,
    chunk: &'a ChunkRef,
    /// Offset and length of its sealed bytes in the pack (0 and 0 for a chunk object).
    offset: u64,
    length: u64,
}

/// Chunks read with one request: a run of chunks stored one after the other in one pack, or
/// (no pack) one version-1 chunk object.
pub(crate) struct Read<'a> {
    /// The pack, or none for a version-1 chunk object.
    pack: Option<Arc<str>>,
    start: u64,
    end: u64,
    parts: Vec<Part<'a>>,
}

impl Read<'_> {
    /// The job numbers of the chunks it reads, in order.
    pub(crate) fn numbers(&self) -> Vec<usize> {
        self.parts.iter().map(|part| part.file).collect()
    }
}

/// Groups chunks, in the order given, into reads: consecutive chunks lying one after the other
/// in the same pack are read together, up to [`READ_MAX`] bytes. Backups write a folder's
/// small files into a pack in walk order, so a restore reads them with few requests. Each job
/// is (the caller's number for it, the file it belongs to, the chunk). A chunk the repository
/// does not hold fails the plan, before anything is read.
pub(crate) fn plan_reads<'a>(
    stored: &ChunkIndex,
    jobs: impl Iterator<Item = (usize, &'a str, &'a ChunkRef)>,
) -> Result<Vec<Read<'a>>> {
    let mut reads: Vec<Read<'a>> = Vec::new();
    for (file, path, chunk) in jobs {
        match stored.place(&chunk.id) {
            None => {
                return Err(Error::Missing {
                    object: format!("{} (of file {path})", names::chunk(&chunk.id)),
                });
            }
            Some(ChunkPlace::Loose) => reads.push(Read {
                pack: None,
                start: 0,
                end: 0,
                parts: vec![Part {
                    file,
                    path,
                    chunk,
                    offset: 0,
                    length: 0,
                }],
            }),
            Some(ChunkPlace::Packed {
                pack,
                offset,
                length,
            }) => {
                let part = Part {
                    file,
                    path,
                    chunk,
                    offset: *offset,
                    length: *length,
                };
                match reads.last_mut() {
                    Some(last)
                        if last.pack.as_ref() == Some(pack)
                            && last.end == *offset
                            && last.end + length - last.start <= READ_MAX =>
                    {
                        last.end += length;
                        last.parts.push(part);
                    }
                    _ => reads.push(Read {
                        pack: Some(pack.clone()),
                        start: *offset,
                        end: offset + length,
                        parts: vec![part],
                    }),
                }
            }
        }
    }
    Ok(reads)
}

/// Opens a chunk's sealed bytes (read from `place`) and checks that its content hashes to its
/// id; `file` names where it is used, for errors.
fn open_chunk(
    key: &MasterKey,
    id: &ChunkId,
    sealed: &[u8],
    place: &str,
    file: &str,
) -> Result<Vec<u8>> {
    let data =
        object::open(key, Kind::Chunk, &names::chunk(id), sealed).map_err(|err| match err {
            Error::Corrupt { what, .. } => Error::Corrupt {
                object: format!("{place} (of file {file})"),
                what,
            },
            other => other,
        })?;
    let actual = ChunkId::from(key.chunk_id(&data));
    if actual != *id {
        return Err(Error::Corrupt {
            object: format!("{place} (of file {file})"),
            what: format!("its content hashes to {actual}"),
        });
    }
    Ok(data)
}

/// The chunk's content, when it is as long as the tree says.
fn checked_length(data: Vec<u8>, chunk: &ChunkRef, path: &str) -> Result<Vec<u8>> {
    if data.len() == chunk.len as usize {
        Ok(data)
    } else {
        Err(Error::Corrupt {
            object: names::chunk(&chunk.id),
            what: format!("{} bytes where file {path} needs {}", data.len(), chunk.len),
        })
    }
}
