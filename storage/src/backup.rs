//! Backing up folders into a repository: walk each tree on a blocking thread, cut files into
//! content-defined chunks (FastCDC), name each by its keyed BLAKE3 hash, seal the chunks the
//! repository does not have yet (zstd, then AES-256-GCM) and gather them into packs
//! (`packs.rs`), several chunks at once on the blocking pool (so that hashing and compressing
//! are not bound to the reading thread); then the volume trees. A backup can be staged: each
//! volume on its own (one data mover per volume), then `finalize` (in `finalize.rs`) writes the
//! manifest.
//!
//! The chunks already stored are known from the chunk index at the start (no request per
//! chunk). Re-running an interrupted backup with the same id resumes it: every chunk whose pack
//! was uploaded and indexed is known and not sent again, and with the caller's last checkpoint
//! the files it had completed are not even read again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::instrument;

use crate::chunk_id::ChunkId;
use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, VolumeRecord};
use crate::names;
use crate::object::{self, Kind};
use crate::packs::Packer;
use crate::repository::Repository;
use crate::tree::{ChunkRef, Entry, EntryKind, Tree};

/// Chunks waiting between the reading thread and the uploads; with the uploads in flight this
/// bounds memory to about `(QUEUE + concurrency)` largest chunks (see [`crate::Chunking`]).
const QUEUE: usize = 4;

/// How a backup runs.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Uploads in flight at once.
    pub concurrency: usize,
    /// The least time between two checkpoints given to the caller.
    pub checkpoint_every: Duration,
}

impl Default for BackupOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            checkpoint_every: Duration::from_secs(10),
        }
    }
}

/// Where a volume's backup has come: the entries complete so far (every chunk of them
/// stored). The caller stores it (it is JSON) and gives it back to resume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeCheckpoint {
    /// The backup's id.
    pub backup: String,
    /// The volume's name.
    pub volume: String,
    /// Entries complete so far, in walk order.
    pub entries: Vec<Entry>,
}

/// What a volume's backup did.
#[derive(Debug, Clone)]
pub struct VolumeSummary {
    /// The volume as a manifest will record it.
    pub record: VolumeRecord,
    /// The final progress figures.
    pub progress: Progress,
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
    /// Files taken from the checkpoint without being read.
    pub files_unchanged: u64,
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

/// Checks a volume's name and that its folder is one.
fn check_source(volume: &VolumeSource) -> Result<()> {
    names::check_name("volume name", &volume.name)?;
    if !volume.path.is_dir() {
        return Err(Error::NotFound(format!(
            "volume `{}`: {} is not a folder",
            volume.name,
            volume.path.display()
        )));
    }
    Ok(())
}

/// What the reading thread sends to the pipeline.
enum Item {
    /// A chunk's content, cut from the file whose entry follows; the pipeline names it.
    Chunk { data: Vec<u8> },
    /// An entry. A file's read now has an empty chunk list: its chunks are the ones sent
    /// since the entry before. `reused` when taken from the checkpoint, complete.
    Entry { entry: Entry, reused: bool },
}

/// What one item of the pipeline came to.
enum Outcome {
    /// A chunk named; `uploaded` is what was sent when it was new, `None` when it was known.
    Chunk {
        chunk: ChunkRef,
        uploaded: Option<u64>,
    },
    Entry {
        entry: Entry,
        reused: bool,
    },
}

impl Repository {
    /// Backs up the volumes under backup id `backup` and writes its manifest last: the
    /// composition of [`Repository::backup_volume`] for each volume and
    /// [`Repository::finalize_backup`], under one lock and one listing of the chunks.
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
            check_source(volume)?;
        }
        self.refuse_finalized(backup).await?;
        self.while_locked(backup, async {
            self.raise_format_version().await?;
            let mut known = self.chunk_index().await?.ids();
            let mut totals = Progress::default();
            for volume in volumes {
                self.backup_volume_locked(
                    backup,
                    volume,
                    options,
                    None,
                    &mut known,
                    &mut totals,
                    progress,
                    &|_| {},
                )
                .await?;
            }
            let manifest = self
                .finalize_locked(backup, source, BTreeMap::new(), &known)
                .await?;
            Ok(BackupSummary {
                manifest,
                progress: totals,
            })
        })
        .await
    }

    /// Backs up one volume of a staged backup: its chunks and its tree, no manifest (a data
    /// mover does this for each volume; [`Repository::finalize_backup`] writes the manifest
    /// when every part is there). With `resume`, the last checkpoint of an interrupted run of
    /// the same backup and volume, files unchanged since (same size, mtime, mode and owner)
    /// whose chunks are all stored are taken from it without being read again. `checkpoint`
    /// is given a new checkpoint as files complete (at most once per
    /// [`BackupOptions::checkpoint_every`]); the caller stores it where a restart finds it.
    #[instrument(skip_all, fields(location = %self.description(), backup, volume = %volume.name))]
    pub async fn backup_volume(
        &self,
        backup: &str,
        volume: &VolumeSource,
        options: &BackupOptions,
        resume: Option<&VolumeCheckpoint>,
        progress: &(dyn Fn(&Progress) + Send + Sync),
        checkpoint: &(dyn Fn(&VolumeCheckpoint) + Send + Sync),
    ) -> Result<VolumeSummary> {
        names::check_name("backup id", backup)?;
        check_source(volume)?;
        if let Some(resume) = resume
            && (resume.backup != backup || resume.volume != volume.name)
        {
            return Err(Error::InvalidCheckpoint(format!(
                "it is for backup `{}` volume `{}`, not backup `{backup}` volume `{}`",
                resume.backup, resume.volume, volume.name
            )));
        }
        self.refuse_finalized(backup).await?;
        self.while_locked(backup, async {
            self.raise_format_version().await?;
            let mut known = self.chunk_index().await?.ids();
            let mut totals = Progress::default();
            let record = self
                .backup_volume_locked(
                    backup,
                    volume,
                    options,
                    resume,
                    &mut known,
                    &mut totals,
                    progress,
                    checkpoint,
                )
                .await?;
            Ok(VolumeSummary {
                record,
                progress: totals,
            })
        })
        .await
    }

    /// A checkpoint for backing up volume `volume` of backup `backup` made from the same
    /// volume of finalized backup `parent`: given to [`Repository::backup_volume`] as `resume`,
    /// it makes an incremental backup, where files unchanged since `parent` are not read.
    pub async fn checkpoint_from_parent(
        &self,
        parent: &str,
        backup: &str,
        volume: &str,
    ) -> Result<VolumeCheckpoint> {
        names::check_name("backup id", backup)?;
        let tree = self.volume_tree(parent, volume).await?;
        Ok(VolumeCheckpoint {
            backup: backup.into(),
            volume: volume.into(),
            entries: tree.entries,
        })
    }

    /// Fails with [`Error::AlreadyFinalized`] when the backup has a manifest.
    pub(crate) async fn refuse_finalized(&self, backup: &str) -> Result<()> {
        match self.manifest(backup).await {
            Ok(_) => Err(Error::AlreadyFinalized(backup.into())),
            Err(Error::NotFound(_)) => Ok(()),
            Err(err) => Err(err),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn backup_volume_locked(
        &self,
        backup: &str,
        volume: &VolumeSource,
        options: &BackupOptions,
        resume: Option<&VolumeCheckpoint>,
        known: &mut HashSet<ChunkId>,
        totals: &mut Progress,
        progress: &(dyn Fn(&Progress) + Send + Sync),
        checkpoint: &(dyn Fn(&VolumeCheckpoint) + Send + Sync),
    ) -> Result<VolumeRecord> {
        // Files of the checkpoint whose chunks are all stored can be taken as they are.
        let reusable: HashMap<String, Entry> = resume
            .map(|resume| {
                resume
                    .entries
                    .iter()
                    .filter(|entry| match &entry.kind {
                        EntryKind::File { chunks, .. } => {
                            chunks.iter().all(|chunk| known.contains(&chunk.id))
                        }
                        _ => false,
                    })
                    .map(|entry| (entry.path.clone(), entry.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let (sender, receiver) = mpsc::channel(QUEUE);
        let root = volume.path.clone();
        let chunker = self.chunker();
        let reader = tokio::task::spawn_blocking(move || walk(&root, chunker, &reusable, &sender));

        // The reading thread only reads and cuts; naming (keyed BLAKE3), sealing and packing
        // run for several chunks at once on the blocking pool, so hashing and compressing use
        // every core. The pipeline yields in the order items were sent, so a file's chunks come
        // before its entry.
        let shared_known = Arc::new(Mutex::new(std::mem::take(known)));
        let packer = Packer::default();
        let mut receiver = receiver;
        let items = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
        let mut outcomes = items
            .map(|item| {
                let job: futures::future::BoxFuture<'_, Result<Outcome>> = match item {
                    Item::Entry { entry, reused } => {
                        Box::pin(async move { Ok(Outcome::Entry { entry, reused }) })
                    }
                    Item::Chunk { data } => {
                        Box::pin(self.store_chunk(data, shared_known.clone(), &packer))
                    }
                };
                job
            })
            .buffered(options.concurrency.max(1));

        let mut done = VolumeCheckpoint {
            backup: backup.into(),
            volume: volume.name.clone(),
            entries: Vec::new(),
        };
        let mut last_checkpoint = Instant::now();
        let (mut files, mut bytes, mut chunks) = (0u64, 0u64, 0u64);
        let mut file_chunks: Vec<ChunkRef> = Vec::new();
        let walked: Result<()> = async {
            while let Some(outcome) = outcomes.next().await {
                match outcome? {
                    Outcome::Chunk { chunk, uploaded } => {
                        match uploaded {
                            Some(sent) => {
                                totals.chunks_uploaded += 1;
                                totals.bytes_uploaded += sent;
                            }
                            None => totals.chunks_reused += 1,
                        }
                        file_chunks.push(chunk);
                    }
                    Outcome::Entry { mut entry, reused } => {
                        if !reused && let EntryKind::File { chunks, .. } = &mut entry.kind {
                            *chunks = std::mem::take(&mut file_chunks);
                        }
                        if let EntryKind::File { size, chunks: refs } = &entry.kind {
                            files += 1;
                            bytes += size;
                            chunks += refs.len() as u64;
                            totals.files += 1;
                            if reused {
                                totals.files_unchanged += 1;
                                totals.chunks_reused += refs.len() as u64;
                            } else {
                                totals.bytes_read += size;
                            }
                        }
                        done.entries.push(entry);
                        // Every chunk sent before this entry is packed (the pipeline yields in
                        // order) or, when the same content came twice at once, being packed by
                        // its twin; the flush stores and indexes the packs. A resume takes a
                        // file from the checkpoint only when the index has all its chunks, so
                        // the entries so far make a checkpoint.
                        if last_checkpoint.elapsed() >= options.checkpoint_every {
                            self.flush_packs(&packer).await?;
                            checkpoint(&done);
                            last_checkpoint = Instant::now();
                        }
                    }
                }
                progress(totals);
            }
            Ok(())
        }
        .await;
        drop(outcomes);
        // No lock of it is held across a panic point, so it cannot be poisoned; were it, its
        // set is still whole (inserts are single calls). The pipeline is gone, so this is the
        // last holder.
        *known = std::mem::take(&mut *shared_known.lock().unwrap_or_else(PoisonError::into_inner));
        walked?;
        self.finish_packs(&packer).await?;
        reader.await.map_err(|err| Error::Io {
            action: "the reading thread failed in",
            path: volume.path.clone(),
            source: std::io::Error::other(err.to_string()),
        })??;

        let name = names::volume_tree(backup, &volume.name);
        let body = serde_json::to_vec(&Tree {
            entries: done.entries,
        })
        .map_err(|err| Error::Corrupt {
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

    /// Names a chunk (keyed BLAKE3) and, when the repository does not have it yet (`known`,
    /// which it joins), seals it, on a blocking thread; then adds it to the run's packs.
    async fn store_chunk(
        &self,
        data: Vec<u8>,
        known: Arc<Mutex<HashSet<ChunkId>>>,
        packer: &Packer,
    ) -> Result<Outcome> {
        let key = self.key().clone();
        let (chunk, sealed) = tokio::task::spawn_blocking(move || {
            let id = ChunkId::from(key.chunk_id(&data));
            let chunk = ChunkRef {
                id,
                len: data.len() as u32,
            };
            let new = known
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id);
            let sealed = if new {
                Some(object::seal(
                    &key,
                    Kind::Chunk,
                    &names::chunk(&chunk.id),
                    &data,
                )?)
            } else {
                None
            };
            Ok::<_, Error>((chunk, sealed.map(|sealed| (id, sealed))))
        })
        .await
        .map_err(|err| Error::Random(format!("sealing thread failed: {err}")))??;
        let uploaded = match sealed {
            Some((id, sealed)) => {
                let sent = sealed.len() as u64;
                self.pack_chunk(packer, id, Bytes::from(sealed)).await?;
                Some(sent)
            }
            None => None,
        };
        Ok(Outcome::Chunk { chunk, uploaded })
    }
}

/// Walks `root` (sorted, not following symlinks) and sends chunks and entries. Runs on a
/// blocking thread; stops early when the receiver is gone.
fn walk(
    root: &Path,
    mut chunker: Chunker,
    reusable: &HashMap<String, Entry>,
    sender: &mpsc::Sender<Item>,
) -> Result<()> {
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
        let entry = |kind| Entry {
            path: relative.clone(),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            mtime_secs: meta.mtime(),
            mtime_nanos: meta.mtime_nsec() as u32,
            kind,
        };
        if file_type.is_file()
            && let Some(previous) = reusable.get(&relative)
            && matches!(previous.kind, EntryKind::File { size, .. } if size == meta.len())
            && previous == &entry(previous.kind.clone())
        {
            if meta.nlink() > 1 {
                first_names.insert((meta.dev(), meta.ino()), relative.clone());
            }
            let item = Item::Entry {
                entry: previous.clone(),
                reused: true,
            };
            if sender.blocking_send(item).is_err() {
                return Ok(());
            }
            continue;
        }
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
                let mut receiver_gone = false;
                let size = chunker
                    .chunk(file, |data| {
                        receiver_gone = sender.blocking_send(Item::Chunk { data }).is_err();
                        !receiver_gone
                    })
                    .map_err(io("cannot read"))?;
                if receiver_gone {
                    return Ok(());
                }
                // Its chunks are named in the pipeline, which fills the list in.
                EntryKind::File {
                    size,
                    chunks: Vec::new(),
                }
            }
        } else {
            // Sockets, fifos and devices are not backed up.
            tracing::warn!(path = %path.display(), "skipping a special file");
            continue;
        };
        let item = Item::Entry {
            entry: entry(kind),
            reused: false,
        };
        if sender.blocking_send(item).is_err() {
            return Ok(());
        }
    }
    Ok(())
}
