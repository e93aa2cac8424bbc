//! `verify`: re-reads a backup (manifest, every volume tree, every chunk) and checks every
//! seal and hash, naming each damaged or missing object and the file it belongs to. Chunks are
//! read in pack order, runs of them per request; a run with damage in it is read again chunk
//! by chunk, so that each damaged chunk is named.

use std::collections::HashSet;

use futures::StreamExt;
use tracing::instrument;

use crate::chunk_reads::plan_reads;
use crate::error::Result;
use crate::names;
use crate::packs::ChunkPlace;
use crate::repository::Repository;
use crate::tree::EntryKind;

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Distinct chunks read and checked.
    pub chunks_checked: u64,
    /// Bytes of chunk content checked.
    pub bytes_checked: u64,
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
                        if seen.insert(chunk.id.clone()) {
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
}
