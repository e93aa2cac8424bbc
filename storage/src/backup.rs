//! Backing up folders into a repository: walk each tree on a blocking thread, cut files into
//! content-defined chunks (FastCDC), name each by its keyed BLAKE3 hash, and upload the chunks
//! the repository does not have yet (zstd, then AES-256-GCM) with bounded concurrency; then the
//! volume trees, and the manifest last.
//!
//! The chunks already stored are known from one listing of `chunks/` at the start (no request
//! per chunk). Re-running an interrupted backup with the same id resumes it: every chunk it had
//! uploaded is in that listing and is not sent again.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{info, instrument};

use crate::error::{Error, Result};
use crate::manifest::{Manifest, VolumeRecord};
use crate::names;
use crate::object::{self, Kind};
use crate::repository::{FORMAT_VERSION, Repository};
use crate::tree::{ChunkRef, Entry, EntryKind, Tree};

/// FastCDC sizes: chunks of 512 KiB to 8 MiB, 1 MiB on average.
const MIN_CHUNK: usize = 512 * 1024;
const AVG_CHUNK: usize = 1024 * 1024;
const MAX_CHUNK: usize = 8 * 1024 * 1024;
/// Chunks waiting between the reading thread and the uploads; with the uploads in flight this
/// bounds memory to about `(QUEUE + concurrency) × MAX_CHUNK`.
const QUEUE: usize = 4;

/// How a backup runs.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Uploads in flight at once.
    pub concurrency: usize,
}

impl Default for BackupOptions {
    fn default() -> Self {
        Self { concurrency: 8 }
    }
}

/// How far a backup has come, given to the progress callback after every file and chunk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Files read completely.
    pub files: u64,
    /// Bytes of file content read.
    pub bytes_read: u64,
    /// Chunks uploaded.
    pub chunks_uploaded: u64,
    /// Bytes sent to the store (sealed and compressed).
    pub bytes_uploaded: u64,
    /// Chunks the repository already had (or that appeared twice in this backup).
    pub chunks_reused: u64,
}

/// A volume to back up: its name in the backup and the folder to read.
#[derive(Debug, Clone)]
pub struct VolumeSource {
    /// The volume's name (e.g. the PVC's).
    pub name: String,
    /// The folder.
    pub path: PathBuf,
}

/// What a finished backup did.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    /// The manifest written.
    pub manifest: Manifest,
    /// The final progress figures.
    pub progress: Progress,
}

/// What the reading thread sends to the uploads.
enum Item {
    /// A chunk's id and content.
    Chunk { id: String, data: Vec<u8> },
    /// An entry, complete with its chunk list.
    Entry(Entry),
}

/// What one item of the pipeline came to.
enum Outcome {
    Uploaded(u64),
    Reused,
    Entry(Entry),
}

impl Repository {
    /// Backs up the volumes under backup id `backup` and writes its manifest last.
    /// `progress` is called as work advances (from an async task; keep it quick).
    #[instrument(skip(self, volumes, options, progress), fields(location = %self.description()))]
    pub async fn backup(
        &self,
        backup: &str,
        source: &str,
        volumes: &[VolumeSource],
        options: &BackupOptions,
        progress: &(dyn Fn(&Progress) + Send + Sync),
    ) -> Result<BackupSummary> {
        names::check_name("backup id", backup)?;
        for volume in volumes {
            names::check_name("volume name", &volume.name)?;
            if !volume.path.is_dir() {
                return Err(Error::NotFound(format!(
                    "volume `{}`: {} is not a folder",
                    volume.name,
                    volume.path.display()
                )));
            }
        }
        let lock = self.lock_for_backup(backup).await?;
        let result = self
            .backup_locked(backup, source, volumes, options, progress)
            .await;
        // A lock left behind only delays collections until it is stale.
        if let Err(err) = self.release(lock).await {
            tracing::warn!(%err, "cannot remove the backup's lock");
        }
        result
    }

    async fn backup_locked(
        &self,
        backup: &str,
        source: &str,
        volumes: &[VolumeSource],
        options: &BackupOptions,
        progress: &(dyn Fn(&Progress) + Send + Sync),
    ) -> Result<BackupSummary> {
        let mut known = self.stored_chunks().await?;
        info!(chunks = known.len(), "listed stored chunks");
        let mut totals = Progress::default();
        let mut records = Vec::new();
        for volume in volumes {
            let record = self
                .backup_volume(backup, volume, options, &mut known, &mut totals, progress)
                .await?;
            records.push(record);
        }
        let manifest = Manifest {
            version: FORMAT_VERSION,
            backup: backup.into(),
            finished_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            source: source.into(),
            volumes: records,
        };
        self.write_manifest(&manifest).await?;
        Ok(BackupSummary {
            manifest,
            progress: totals,
        })
    }

    /// The ids of every chunk in the repository, from one listing of `chunks/`.
    pub(crate) async fn stored_chunks(&self) -> Result<HashSet<String>> {
        Ok(self
            .list(names::CHUNKS)
            .await?
            .into_iter()
            .map(|meta| meta.location.filename().unwrap_or_default().to_string())
            .collect())
    }

    async fn backup_volume(
        &self,
        backup: &str,
        volume: &VolumeSource,
        options: &BackupOptions,
        known: &mut HashSet<String>,
        totals: &mut Progress,
        progress: &(dyn Fn(&Progress) + Send + Sync),
    ) -> Result<VolumeRecord> {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let key = self.key().clone();
        let root = volume.path.clone();
        let reader = tokio::task::spawn_blocking(move || walk(&root, &key, &sender));

        let mut receiver = receiver;
        let items = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
        let mut outcomes = items
            .map(|item| {
                let job: futures::future::BoxFuture<'_, Result<Outcome>> = match item {
                    Item::Entry(entry) => Box::pin(async move { Ok(Outcome::Entry(entry)) }),
                    Item::Chunk { id, data } => {
                        if known.insert(id.clone()) {
                            Box::pin(self.upload_chunk(id, data))
                        } else {
                            Box::pin(async { Ok(Outcome::Reused) })
                        }
                    }
                };
                job
            })
            .buffered(options.concurrency.max(1));

        let mut entries = Vec::new();
        let (mut files, mut bytes, mut chunks) = (0u64, 0u64, 0u64);
        while let Some(outcome) = outcomes.next().await {
            match outcome? {
                Outcome::Uploaded(sent) => {
                    totals.chunks_uploaded += 1;
                    totals.bytes_uploaded += sent;
                }
                Outcome::Reused => totals.chunks_reused += 1,
                Outcome::Entry(entry) => {
                    if let EntryKind::File { size, chunks: refs } = &entry.kind {
                        files += 1;
                        bytes += size;
                        chunks += refs.len() as u64;
                        totals.files += 1;
                        totals.bytes_read += size;
                    }
                    entries.push(entry);
                }
            }
            progress(totals);
        }
        drop(outcomes);
        reader.await.map_err(|err| Error::Io {
            action: "the reading thread failed in",
            path: volume.path.clone(),
            source: std::io::Error::other(err.to_string()),
        })??;

        let name = names::volume_tree(backup, &volume.name);
        let body = serde_json::to_vec(&Tree { entries }).map_err(|err| Error::Corrupt {
            object: name.clone(),
            what: format!("cannot encode: {err}"),
        })?;
        let sealed = object::seal(self.key(), Kind::Tree, &name, &body)?;
        let tree_hash = blake3::hash(&sealed).to_hex().to_string();
        self.put_raw(&name, Bytes::from(sealed)).await?;
        Ok(VolumeRecord {
            name: volume.name.clone(),
            tree_hash,
            files,
            bytes,
            chunks,
        })
    }

    /// Seals a chunk on a blocking thread and uploads it.
    async fn upload_chunk(&self, id: String, data: Vec<u8>) -> Result<Outcome> {
        let key = self.key().clone();
        let name = names::chunk(&id);
        let sealed = {
            let name = name.clone();
            tokio::task::spawn_blocking(move || object::seal(&key, Kind::Chunk, &name, &data))
                .await
                .map_err(|err| Error::Random(format!("sealing thread failed: {err}")))??
        };
        let sent = sealed.len() as u64;
        self.put_raw(&name, Bytes::from(sealed)).await?;
        Ok(Outcome::Uploaded(sent))
    }
}

/// Walks `root` (sorted, not following symlinks) and sends chunks and entries. Runs on a
/// blocking thread; stops early when the receiver is gone.
fn walk(root: &Path, key: &crate::crypto::MasterKey, sender: &mpsc::Sender<Item>) -> Result<()> {
    let mut first_names: HashMap<(u64, u64), String> = HashMap::new();
    let walker = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name();
    for found in walker {
        let found = found.map_err(|err| {
            let path = err.path().unwrap_or(root).to_path_buf();
            Error::Io {
                action: "cannot read",
                path,
                source: err.into(),
            }
        })?;
        let path = found.path();
        let io = |action: &'static str| {
            let path = path.to_path_buf();
            move |source| Error::Io {
                action,
                path,
                source,
            }
        };
        let meta = found.metadata().map_err(|err| Error::Io {
            action: "cannot stat",
            path: path.to_path_buf(),
            source: err.into(),
        })?;
        let relative = path
            .strip_prefix(root)
            .map_err(|_| Error::NonUtf8Path(path.to_path_buf()))?;
        let relative = relative
            .to_str()
            .ok_or_else(|| Error::NonUtf8Path(path.to_path_buf()))?
            .to_string();
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            EntryKind::Dir
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(path).map_err(io("cannot read the link"))?;
            let target = target
                .to_str()
                .ok_or_else(|| Error::NonUtf8Path(target.clone()))?
                .to_string();
            EntryKind::Symlink { target }
        } else if file_type.is_file() {
            let inode = (meta.dev(), meta.ino());
            if meta.nlink() > 1
                && let Some(first) = first_names.get(&inode)
            {
                EntryKind::HardLink {
                    target: first.clone(),
                }
            } else {
                if meta.nlink() > 1 {
                    first_names.insert(inode, relative.clone());
                }
                let file = File::open(path).map_err(io("cannot open"))?;
                let mut refs = Vec::new();
                let mut size = 0u64;
                for chunk in fastcdc::v2020::StreamCDC::new(file, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK) {
                    let chunk = chunk.map_err(|err| Error::Io {
                        action: "cannot read",
                        path: path.to_path_buf(),
                        source: std::io::Error::other(err.to_string()),
                    })?;
                    let id = key.chunk_id(&chunk.data).to_hex().to_string();
                    size += chunk.length as u64;
                    refs.push(ChunkRef {
                        id: id.clone(),
                        len: chunk.length as u32,
                    });
                    if sender
                        .blocking_send(Item::Chunk {
                            id,
                            data: chunk.data,
                        })
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                EntryKind::File { size, chunks: refs }
            }
        } else {
            // Sockets, fifos and devices are not backed up.
            tracing::warn!(path = %path.display(), "skipping a special file");
            continue;
        };
        let entry = Entry {
            path: relative,
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            mtime_secs: meta.mtime(),
            mtime_nanos: meta.mtime_nsec() as u32,
            kind,
        };
        if sender.blocking_send(Item::Entry(entry)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}
