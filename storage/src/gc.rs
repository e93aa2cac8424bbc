//! Garbage collection: mark every chunk the manifests refer to, sweep the others that are
//! older than a grace window (whole packs, or by rewriting a pack that is largely unreferenced,
//! and the chunk objects of version 1); and the locks that keep a collection and a running
//! backup apart.
//!
//! A backup writes `locks/backup-…` before it lists the stored chunks and removes it after its
//! manifest; a collection writes `locks/gc-…` before it looks for backup locks. Each writes its
//! own lock and then looks for the other's, so at least one of them sees the other: a collection
//! that sees a running backup deletes nothing (it is postponed), and a backup that sees a
//! collection waits for it to end before it lists chunks. A backup therefore never relies on a
//! chunk that a collection is about to delete. Locks older than the stale limit (a process that
//! died) are ignored. The grace window keeps the chunks of an interrupted backup for its resume.
//!
//! A staged backup (volumes and resources written, no manifest yet) with an object younger than
//! the grace window counts as live: the chunks of its trees are marked. One whose objects are
//! all older than the window was abandoned, and its objects are deleted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tracing::{info, instrument};

use crate::chunk_id::ChunkId;
use crate::chunk_reads::READ_MAX;
use crate::error::{Error, Result};
use crate::names;
use crate::object::{self, Kind};
use crate::packs::{ChunkIndex, IndexedPack, OpenPack, PACK_TARGET, PackedChunk};
use crate::repository::Repository;
use crate::tree::{EntryKind, Tree};

/// The folder of locks.
const LOCKS: &str = "locks";
/// A lock older than this belongs to a process that died.
pub const STALE_LOCK: Duration = Duration::from_secs(6 * 3600);
/// How often a backup looks again whether a collection has ended.
const LOCK_POLL: Duration = Duration::from_millis(500);
/// How long a backup waits for a collection before it gives up.
const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);

/// A pack of which at least this share of bytes is unreferenced is rewritten without them.
pub const REPACK_UNUSED_SHARE: f64 = 0.2;

/// Backups (or staged trees) whose trees a collection reads at once while marking.
const MARK_CONCURRENCY: usize = 16;

/// Where a collection finds trees to mark.
enum TreeSource {
    /// A finished backup: every tree its manifest lists.
    Finished(String),
    /// A staged tree object, by name.
    Staged(String),
}

/// What a collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Backups whose manifests were read.
    pub backups: u64,
    /// Chunks referenced by them.
    pub referenced: u64,
    /// Unreferenced chunks deleted.
    pub deleted: u64,
    /// Bytes of the chunks deleted, as stored (compressed and sealed).
    pub deleted_bytes: u64,
    /// Unreferenced chunks kept because they are younger than the grace window.
    pub kept_in_grace: u64,
    /// Unreferenced chunks kept because they share a pack with referenced ones and are less
    /// than [`REPACK_UNUSED_SHARE`] of it.
    pub kept_in_used_packs: u64,
    /// Packs deleted whole.
    pub packs_deleted: u64,
    /// Packs whose referenced chunks were copied into new packs before they were deleted.
    pub packs_repacked: u64,
    /// Staged backups (no manifest yet) younger than the grace window, whose chunks were kept.
    pub staged: u64,
    /// Objects of staged backups older than the grace window (abandoned) deleted.
    pub abandoned_objects: u64,
    /// When not empty, the collection deleted nothing because these backups were running.
    pub postponed_by: Vec<String>,
}

/// A backup's lock in the repository, as [`Repository::backup_locks`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLock {
    /// The lock's name under `locks/`.
    pub name: String,
    /// The backup that took it.
    pub backup: String,
    /// How long ago it was written.
    pub age: Duration,
    /// Whether it is older than [`STALE_LOCK`]: its process died and collections ignore it.
    pub stale: bool,
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A lock held while it lives; [`Lock::release`] removes it.
pub(crate) struct Lock {
    name: String,
}

impl Repository {
    /// Takes a backup's lock, after waiting for any running collection to end.
    pub(crate) async fn lock_for_backup(&self, backup: &str) -> Result<Lock> {
        let lock = self
            .write_lock(&format!("backup-{backup}-{}", uuid::Uuid::new_v4()))
            .await?;
        let started = tokio::time::Instant::now();
        loop {
            let collections = self.live_locks("gc-").await?;
            if collections.is_empty() {
                return Ok(lock);
            }
            if started.elapsed() > LOCK_WAIT {
                let _ = self.release(lock).await;
                return Err(Error::NotFound(format!(
                    "a garbage collection ({}) has held {} for over {} minutes",
                    collections.join(", "),
                    self.description(),
                    LOCK_WAIT.as_secs() / 60
                )));
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }

    /// Runs `work` (not started yet: futures are lazy) holding backup `backup`'s lock. A lock
    /// that cannot be removed only delays collections until it is stale.
    pub(crate) async fn while_locked<T>(
        &self,
        backup: &str,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let lock = self.lock_for_backup(backup).await?;
        let result = work.await;
        if let Err(err) = self.release(lock).await {
            tracing::warn!(%err, "cannot remove the backup's lock");
        }
        result
    }

    async fn write_lock(&self, id: &str) -> Result<Lock> {
        let name = format!("{LOCKS}/{id}");
        self.put_raw(&name, bytes::Bytes::from_static(b"stowage lock"))
            .await?;
        Ok(Lock { name })
    }

    /// Removes a lock.
    pub(crate) async fn release(&self, lock: Lock) -> Result<()> {
        self.store()
            .delete(&Path::from(lock.name.as_str()))
            .await
            .map_err(|source| Error::Store {
                action: "delete",
                object: lock.name,
                source,
            })
    }

    /// The names (after `locks/`) of locks starting with `kind` that are not stale.
    async fn live_locks(&self, kind: &str) -> Result<Vec<String>> {
        let now = now_unix();
        let locks = self.list(LOCKS).await?;
        Ok(locks
            .into_iter()
            .filter(|meta| now - meta.last_modified.timestamp() < STALE_LOCK.as_secs() as i64)
            .filter_map(|meta| meta.location.filename().map(str::to_string))
            .filter(|name| name.starts_with(kind))
            .collect())
    }

    /// The trees a collection marks from: a finished backup's (through its manifest), or one
    /// staged tree object.
    async fn trees_of(&self, source: TreeSource) -> Result<Vec<Tree>> {
        match source {
            TreeSource::Finished(backup) => {
                let manifest = match self.manifest(&backup).await {
                    Ok(manifest) => manifest,
                    // Deleted since it was listed (a deletion running beside this collection):
                    // it protects nothing any more.
                    Err(Error::NotFound(_)) => return Ok(Vec::new()),
                    Err(other) => return Err(other),
                };
                let mut trees = Vec::with_capacity(manifest.volumes.len());
                for volume in &manifest.volumes {
                    match self.volume_tree(&backup, &volume.name).await {
                        Ok(tree) => trees.push(tree),
                        // A tree gone with its manifest is a deletion, not damage.
                        Err(err) => match self.manifest(&backup).await {
                            Err(Error::NotFound(_)) => return Ok(Vec::new()),
                            _ => return Err(err),
                        },
                    }
                }
                Ok(trees)
            }
            TreeSource::Staged(name) => {
                let bytes = self.get_raw(&name).await?;
                let body = object::open(self.key(), Kind::Tree, &name, &bytes)?;
                let tree = serde_json::from_slice(&body).map_err(|err| Error::Corrupt {
                    object: name.clone(),
                    what: format!("not a tree: {err}"),
                })?;
                Ok(vec![tree])
            }
        }
    }

    /// Every backup lock in the repository, stale ones included, oldest first. A lock that a
    /// crashed backup left postpones every collection until it is [`STALE_LOCK`] old: this is
    /// how callers can tell how long that is.
    pub async fn backup_locks(&self) -> Result<Vec<HeldLock>> {
        let now = now_unix();
        let mut locks: Vec<HeldLock> = self
            .list(LOCKS)
            .await?
            .into_iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?.to_string();
                let backup = backup_of_lock(&name)?.to_string();
                let age = Duration::from_secs(
                    u64::try_from(now - meta.last_modified.timestamp()).unwrap_or(0),
                );
                Some(HeldLock {
                    stale: age >= STALE_LOCK,
                    name,
                    backup,
                    age,
                })
            })
            .collect();
        locks.sort_by_key(|lock| std::cmp::Reverse(lock.age));
        Ok(locks)
    }

    /// The ids of every backup with a manifest.
    pub async fn backups(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .backup_folders()
            .await?
            .into_iter()
            .filter(|(_, objects)| objects.iter().any(|meta| is_manifest(&meta.location)))
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Every object under `backups/`, by backup id, from one listing.
    async fn backup_folders(&self) -> Result<BTreeMap<String, Vec<object_store::ObjectMeta>>> {
        let mut folders: BTreeMap<String, Vec<object_store::ObjectMeta>> = BTreeMap::new();
        for meta in self.list(names::BACKUPS).await? {
            if let Some(id) = meta.location.parts().nth(1) {
                folders
                    .entry(id.as_ref().to_string())
                    .or_default()
                    .push(meta);
            }
        }
        Ok(folders)
    }

    /// Collects garbage: deletes every chunk no manifest refers to and older than `grace`.
    /// While a backup is running it deletes nothing and says so in the report.
    #[instrument(skip(self), fields(location = %self.description()))]
    pub async fn collect_garbage(&self, grace: Duration) -> Result<GcReport> {
        let lock = self
            .write_lock(&format!("gc-{}", uuid::Uuid::new_v4()))
            .await?;
        let result = self.collect_locked(grace).await;
        self.release(lock).await?;
        result
    }

    async fn collect_locked(&self, grace: Duration) -> Result<GcReport> {
        let mut report = GcReport::default();
        let running = self.live_locks("backup-").await?;
        if !running.is_empty() {
            info!(?running, "backups are running: collection postponed");
            report.postponed_by = running;
            return Ok(report);
        }
        let started = now_unix();
        let young = |meta: &object_store::ObjectMeta| {
            started - meta.last_modified.timestamp() < grace.as_secs() as i64
        };
        let mut sources = Vec::new();
        let mut abandoned = Vec::new();
        for (backup, objects) in self.backup_folders().await? {
            if objects.iter().any(|meta| is_manifest(&meta.location)) {
                report.backups += 1;
                sources.push(TreeSource::Finished(backup));
            } else if objects.iter().any(young) {
                // A staged backup not finalized yet: its trees' chunks stay.
                report.staged += 1;
                sources.extend(
                    objects
                        .iter()
                        .filter(|meta| {
                            meta.location
                                .parts()
                                .nth(2)
                                .is_some_and(|p| p.as_ref() == "volumes")
                        })
                        .map(|meta| TreeSource::Staged(meta.location.to_string())),
                );
            } else {
                // A staged backup untouched for longer than the grace window: abandoned.
                abandoned.extend(objects.into_iter().map(|meta| meta.location));
            }
        }
        let mut referenced = HashSet::new();
        let mut reads = futures::stream::iter(sources)
            .map(|source| self.trees_of(source))
            .buffer_unordered(MARK_CONCURRENCY);
        while let Some(trees) = reads.next().await {
            for tree in trees? {
                mark(&mut referenced, tree);
            }
        }
        report.referenced = referenced.len() as u64;
        let index = self.chunk_index().await?;
        let mut doomed = self
            .sweep_packs(&index, &referenced, &young, &mut report)
            .await?;
        // Chunks of a version-1 repository, one object each.
        for meta in self.list(names::CHUNKS).await? {
            let id = meta.location.filename().unwrap_or_default();
            if id
                .parse::<ChunkId>()
                .is_ok_and(|id| referenced.contains(&id))
            {
                continue;
            }
            if young(&meta) {
                report.kept_in_grace += 1;
            } else {
                report.deleted += 1;
                report.deleted_bytes += meta.size;
                doomed.push(meta.location.to_string());
            }
        }
        report.abandoned_objects = abandoned.len() as u64;
        let abandoned = abandoned.into_iter().map(|path| path.to_string());
        let mut deletions = futures::stream::iter(doomed.into_iter().chain(abandoned))
            .map(|name| self.delete_object(name))
            .buffer_unordered(8);
        while let Some(result) = deletions.next().await {
            result?;
        }
        Ok(report)
    }

    /// Decides the fate of every pack and writes the index that follows: a pack none of whose
    /// chunks is referenced (or only holds second copies) goes once it is older than the grace
    /// window; an old one with at least [`REPACK_UNUSED_SHARE`] of its bytes unreferenced has its
    /// referenced chunks copied (sealed as they are) into new packs and goes; a pack no index names
    /// (a run that died before its index, or a lost index object) is read by its header once out of
    /// the grace window, and indexed again when it holds referenced chunks. Every surviving pack is
    /// then recorded in one new index object, which replaces the ones read. Returns the objects to
    /// delete (the index's old objects are already gone).
    async fn sweep_packs(
        &self,
        index: &ChunkIndex,
        referenced: &HashSet<ChunkId>,
        young: &(dyn Fn(&object_store::ObjectMeta) -> bool + Sync),
        report: &mut GcReport,
    ) -> Result<Vec<String>> {
        let mut indexed: HashMap<&str, &IndexedPack> = HashMap::new();
        for (_, body) in &index.objects {
            for pack in &body.packs {
                indexed.entry(pack.id.as_str()).or_insert(pack);
            }
        }
        let mut survivors = Vec::new();
        let mut doomed = Vec::new();
        let mut repack = OpenPack::default();
        let mut rewrite = index.objects.len() > 1;
        // A chunk stored in several packs (two runs that sent it at the same time) counts as
        // used in the first of them by pack id; its other copies are unreferenced bytes.
        let mut listed: Vec<_> = index.listed_packs.iter().collect();
        listed.sort_by(|a, b| a.0.cmp(b.0));
        let mut claimed: HashSet<ChunkId> = HashSet::new();
        for (id, meta) in listed {
            let recorded = indexed
                .get(id.as_str())
                .filter(|pack| pack.size == meta.size)
                .map(|pack| (*pack).clone());
            let pack = match recorded {
                Some(pack) => pack,
                None if young(meta) => {
                    // A run may still be writing its index; its chunks are not known yet.
                    continue;
                }
                None => match self.pack_header(id, meta.size).await {
                    Ok(chunks) => {
                        rewrite = true;
                        IndexedPack {
                            id: id.clone(),
                            size: meta.size,
                            chunks,
                        }
                    }
                    Err(err) => {
                        // Data that cannot be read is not deleted: `verify` names it.
                        tracing::warn!(pack = %id, %err, "an unindexed pack's header cannot be read; kept");
                        continue;
                    }
                },
            };
            let used: Vec<&PackedChunk> = pack
                .chunks
                .iter()
                .filter(|chunk| referenced.contains(&chunk.id) && claimed.insert(chunk.id))
                .collect();
            let unused = (pack.chunks.len() - used.len()) as u64;
            let used_bytes: u64 = used.iter().map(|chunk| chunk.length).sum();
            let stored: u64 = pack.chunks.iter().map(|chunk| chunk.length).sum();
            if unused == 0 {
                survivors.push(pack);
            } else if young(meta) {
                report.kept_in_grace += unused;
                survivors.push(pack);
            } else if used.is_empty() {
                report.deleted += unused;
                report.deleted_bytes += stored;
                report.packs_deleted += 1;
                doomed.push(names::pack(id));
                rewrite = true;
            } else if (stored - used_bytes) as f64 >= REPACK_UNUSED_SHARE * stored as f64 {
                let name = names::pack(id);
                for run in contiguous_runs(&used) {
                    let start = used[run.start].offset;
                    let end = used[run.end - 1].offset + used[run.end - 1].length;
                    let bytes = self.get_range_raw(&name, start..end).await?;
                    for chunk in &used[run] {
                        let at = (chunk.offset - start) as usize;
                        // Sealed as they are: their name, not their place, is what they are
                        // bound to.
                        repack.push(chunk.id, bytes.slice(at..at + chunk.length as usize));
                        if repack.len() >= PACK_TARGET as u64 {
                            survivors.push(self.upload_pack(std::mem::take(&mut repack)).await?);
                        }
                    }
                }
                report.deleted += unused;
                report.deleted_bytes += stored - used_bytes;
                report.packs_repacked += 1;
                doomed.push(name);
                rewrite = true;
            } else {
                report.kept_in_used_packs += unused;
                survivors.push(pack);
            }
        }
        if !repack.is_empty() {
            survivors.push(self.upload_pack(repack).await?);
        }
        if rewrite {
            // The new index first: were the collection to stop after it, the old objects name
            // packs that are either still there or gone (and then not counted), never a pack
            // the new index lacks.
            self.write_index(&survivors).await?;
            for (name, _) in &index.objects {
                self.delete_object(name.clone()).await?;
            }
        }
        Ok(doomed)
    }
}

/// The backup id in a backup lock's name, `backup-<id>-<uuid>`.
fn backup_of_lock(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("backup-")?;
    // The uuid is 36 characters, after a dash.
    let split = rest.len().checked_sub(37)?;
    let (backup, uuid) = rest.split_at_checked(split)?;
    uuid.starts_with('-').then_some(backup)
}

/// Adds the chunks a tree refers to.
fn mark(referenced: &mut HashSet<ChunkId>, tree: Tree) {
    for entry in tree.entries {
        if let EntryKind::File { chunks, .. } = entry.kind {
            referenced.extend(chunks.iter().map(|chunk| chunk.id));
        }
    }
}

/// Splits chunks of one pack, in pack order, into runs read with one request each: chunks
/// lying one after the other, up to [`READ_MAX`] bytes a run (unless one chunk is larger).
fn contiguous_runs(chunks: &[&PackedChunk]) -> Vec<std::ops::Range<usize>> {
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    for (at, chunk) in chunks.iter().enumerate() {
        if let Some(run) = runs.last_mut() {
            let first = chunks[run.start];
            let last = chunks[run.end - 1];
            if last.offset + last.length == chunk.offset
                && chunk.offset + chunk.length - first.offset <= READ_MAX
            {
                run.end = at + 1;
                continue;
            }
        }
        runs.push(at..at + 1);
    }
    runs
}

/// Whether the object is a backup's manifest (`backups/<id>/manifest`).
fn is_manifest(location: &Path) -> bool {
    let parts: Vec<_> = location.parts().collect();
    parts.len() == 3 && parts[2].as_ref() == "manifest"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_lock_names_its_backup_even_with_dashes() {
        let uuid = "0b6f3c1e-2a4d-4c59-9f1e-3d2b1a0c9e8f";
        assert_eq!(
            backup_of_lock(&format!("backup-nightly-2026-11-25-{uuid}")),
            Some("nightly-2026-11-25")
        );
        assert_eq!(backup_of_lock(&format!("gc-{uuid}")), None);
        assert_eq!(backup_of_lock("backup-short"), None);
    }

    #[test]
    fn repacking_reads_neighbouring_chunks_together_up_to_the_read_size() {
        let chunk = |offset: u64, length: u64| PackedChunk {
            id: ChunkId::from(blake3::hash(&offset.to_le_bytes())),
            offset,
            length,
        };
        let mib = 1024 * 1024;
        // 0..1, 1..2 touch; a gap before 5; then 5..8 and a chunk that would pass 4 MiB.
        let chunks = [
            chunk(0, mib),
            chunk(mib, mib),
            chunk(5 * mib, 3 * mib),
            chunk(8 * mib, mib),
            chunk(9 * mib, mib),
            chunk(10 * mib, 9 * mib),
        ];
        let used: Vec<&PackedChunk> = chunks.iter().collect();
        assert_eq!(contiguous_runs(&used), vec![0..2, 2..4, 4..5, 5..6]);
        assert!(contiguous_runs(&[]).is_empty());
    }
}
