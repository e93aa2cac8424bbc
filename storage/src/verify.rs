//! `verify`: re-reads a backup (manifest, every volume tree, every chunk) and checks every
//! seal and hash, naming each damaged or missing object and the file it belongs to.

use std::collections::HashSet;

use futures::StreamExt;
use tracing::instrument;

use crate::error::Result;
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
                            jobs.push((chunk.id, format!("{}/{}", volume.name, entry.path)));
                        }
                    }
                }
            }
        }
        let mut checks = futures::stream::iter(jobs)
            .map(|(id, file)| async move { self.read_chunk(index, &id, &file).await })
            .buffer_unordered(concurrency.max(1));
        while let Some(result) = checks.next().await {
            match result {
                Ok(data) => {
                    report.chunks_checked += 1;
                    report.bytes_checked += data.len() as u64;
                }
                Err(err) => report.problems.push(err.to_string()),
            }
        }
        report.problems.sort();
        Ok(report)
    }
}
