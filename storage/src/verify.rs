//! `verify`: re-reads a backup (manifest, every volume tree, every chunk) and checks every
//! seal and hash, naming each damaged or missing object and the file it belongs to. Chunks are
//! read in pack order, runs of them per request; a run with damage in it is read again chunk
//! by chunk, so that each damaged chunk is named. The header of every pack the backup's chunks
//! lie in is read too and checked against the index, since garbage collection rebuilds the index
//! from headers when an index object is lost.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use tracing::instrument;

use crate::chunk_id::ChunkId;
use crate::chunk_reads::plan_reads;
use crate::error::Result;
use crate::names;
use crate::packs::{ChunkIndex, ChunkPlace};
use crate::repository::Repository;
use crate::tree::{ChunkRef, EntryKind};

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Distinct chunks read and checked.
    pub chunks_checked: u64,
    /// Bytes of chunk content checked.
    pub bytes_checked: u64,
    /// Pack headers read and checked against the index.
    pub packs_checked: u64,
    /// One line per problem, naming the object (and the file); empty when the backup is whole.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether nothing was wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Repository {
    /// Checks backup `backup`. A manifest that cannot be read is an error; damage below it
    /// (trees, chunks) is listed in the report.
    #[instrument(skip(self), fields(location = %self.description()))]
    pub async fn verify(&self, backup: &str, concurrency: usize) -> Result<VerifyReport> {
        let manifest = self.manifest(backup).await?;
        let index = self.chunk_index().await?;
        let index = &index;
        let mut report = VerifyReport::default();
        let mut seen = HashSet::new();
        let mut jobs = Vec::new();
        for volume in &manifest.volumes {
            let tree = match self.volume_tree(backup, &volume.name).await {
                Ok(tree) => tree,
                Err(err) => {
                    report.problems.push(err.to_string());
                    continue;
                }
            };
            for entry in tree.entries {
                if let EntryKind::File { chunks, .. } = entry.kind {
                    for chunk in chunks {
                        if seen.insert(chunk.id) {
                            jobs.push((chunk, format!("{}/{}", volume.name, entry.path)));
                        }
                    }
                }
            }
        }
        // Read in pack order, runs of chunks at a time; a chunk in no pack is missing.
        let (mut jobs, missing): (Vec<_>, Vec<_>) = jobs
            .into_iter()
            .partition(|(chunk, _)| index.place(&chunk.id).is_some());
        for (chunk, file) in missing {
            report.problems.push(format!(
                "missing object `{} (of file {file})`",
                names::chunk(&chunk.id)
            ));
        }
        jobs.sort_by_cached_key(|(chunk, _)| match index.place(&chunk.id) {
            Some(ChunkPlace::Packed { pack, offset, .. }) => (Some(pack.clone()), *offset),
            _ => (None, 0),
        });
        self.check_pack_headers(index, &jobs, concurrency, &mut report)
            .await;
        let reads = plan_reads(
            index,
            jobs.iter()
                .enumerate()
                .map(|(number, (chunk, file))| (number, file.as_str(), chunk)),
        )?;
        let mut checks = futures::stream::iter(reads)
            .map(|read| async move {
                let numbers = read.numbers();
                (numbers, self.fetch(index, read).await)
            })
            .buffer_unordered(concurrency.max(1));
        while let Some((numbers, result)) = checks.next().await {
            match result {
                Ok(chunks) => {
                    for (_, data) in chunks {
                        report.chunks_checked += 1;
                        report.bytes_checked += data.len() as u64;
                    }
                }
                // Something in the run is damaged: each chunk of it on its own, to name each.
                Err(_) => {
                    for number in numbers {
                        let (chunk, file) = &jobs[number];
                        match self.read_chunk(index, &chunk.id, file).await {
                            Ok(data) => {
                                report.chunks_checked += 1;
                                report.bytes_checked += data.len() as u64;
                            }
                            Err(err) => report.problems.push(err.to_string()),
                        }
                    }
                }
            }
        }
        report.problems.sort();
        Ok(report)
    }

    /// Reads the header of every pack that `jobs`' chunks lie in and checks that it records
    /// each of them where the index says; each disagreement, or a header that cannot be read,
    /// is a problem naming the pack.
    async fn check_pack_headers(
        &self,
        index: &ChunkIndex,
        jobs: &[(ChunkRef, String)],
        concurrency: usize,
        report: &mut VerifyReport,
    ) {
        let mut expected: BTreeMap<Arc<str>, Vec<(ChunkId, u64, u64)>> = BTreeMap::new();
        for (chunk, _) in jobs {
            if let Some(ChunkPlace::Packed {
                pack,
                offset,
                length,
            }) = index.place(&chunk.id)
            {
                expected
                    .entry(pack.clone())
                    .or_default()
                    .push((chunk.id, *offset, *length));
            }
        }
        let mut headers = futures::stream::iter(expected)
            .map(|(pack, chunks)| async move {
                let size = index.listed_packs.get(&*pack).map_or(0, |meta| meta.size);
                (self.pack_header(&pack, size).await, pack, chunks)
            })
            .buffer_unordered(concurrency.max(1));
        while let Some((header, pack, chunks)) = headers.next().await {
            report.packs_checked += 1;
            let recorded: HashMap<_, _> = match header {
                Ok(header) => header
                    .into_iter()
                    .map(|chunk| (chunk.id, (chunk.offset, chunk.length)))
                    .collect(),
                Err(err) => {
                    report
                        .problems
                        .push(format!("the header of a pack cannot be read: {err}"));
                    continue;
                }
            };
            for (id, offset, length) in chunks {
                let found = recorded.get(&id);
                if found != Some(&(offset, length)) {
                    report.problems.push(format!(
                        "the header of `{}` does not record chunk `{id}` at bytes {offset}..{} \
                         as the index does ({})",
                        names::pack(&pack),
                        offset + length,
                        match found {
                            Some((at, len)) => format!("it records {at}..{}", at + len),
                            None => "it does not name it".into(),
                        }
                    ));
                }
            }
        }
    }
}
