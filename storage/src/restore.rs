//! Restoring a volume of a backup into a folder, whole or one path of it: content, modes,
//! owners (when permitted), mtimes, symlinks, hard links and holes of sparse files.
//!
//! The tree is read and checked before anything is written, and the files are written into a
//! staging folder inside the target that is moved into place only when everything was read and
//! checked: a damaged backup leaves the target as it was.

use std::collections::HashSet;
use std::fs::{File, FileTimes};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tracing::instrument;

use crate::chunk_reads::plan_reads;
use crate::error::{Error, Result};
use crate::names;
use crate::object::{self, Kind};
use crate::packs::ChunkIndex;
use crate::repository::Repository;
use crate::tree::{Entry, EntryKind, Tree};

/// The granularity of holes: a file-system block.
const HOLE_BLOCK: usize = 4096;

/// What a restore wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Entries restored (directories, files, links).
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

impl Repository {
    /// Reads a volume's tree and checks it against the manifest's hash.
    pub async fn volume_tree(&self, backup: &str, volume: &str) -> Result<Tree> {
        let manifest = self.manifest(backup).await?;
        let record = manifest
            .volumes
            .iter()
            .find(|record| record.name == volume)
            .ok_or_else(|| {
                Error::NotFound(format!("backup `{backup}` has no volume `{volume}`"))
            })?;
        let name = names::volume_tree(backup, volume);
        let bytes = self.get_raw(&name).await?;
        let hash = blake3::hash(&bytes).to_hex().to_string();
        if hash != record.tree_hash {
            return Err(Error::Corrupt {
                object: name,
                what: format!(
                    "its hash {hash} is not the {} the manifest records",
                    record.tree_hash
                ),
            });
        }
        let body = object::open(self.key(), Kind::Tree, &name, &bytes)?;
        serde_json::from_slice(&body).map_err(|err| Error::Corrupt {
            object: name,
            what: format!("not a tree: {err}"),
        })
    }

    /// Restores volume `volume` of `backup` into `target` (created if missing). With `only`,
    /// restores that path (a file, or a folder and everything in it) and the folders above it.
    #[instrument(skip(self), fields(location = %self.description()))]
    pub async fn restore(
        &self,
        backup: &str,
        volume: &str,
        target: &Path,
        only: Option<&str>,
        concurrency: usize,
    ) -> Result<RestoreSummary> {
        let tree = self.volume_tree(backup, volume).await?;
        let entries: Vec<Entry> = match only {
            None => tree.entries,
            Some(only) => {
                let only = only.trim_matches('/');
                let mut picked: Vec<Entry> = tree
                    .entries
                    .iter()
                    .filter(|entry| {
                        entry.path == only
                            || entry.path.starts_with(&format!("{only}/"))
                            || only.starts_with(&format!("{}/", entry.path))
                    })
                    .cloned()
                    .collect();
                if !picked.iter().any(|entry| entry.path == only) {
                    return Err(Error::NotFound(format!(
                        "backup `{backup}` volume `{volume}` has no path `{only}`"
                    )));
                }
                // A hard link whose first name is not restored becomes a file of its own with
                // that name's content.
                let paths: HashSet<String> =
                    picked.iter().map(|entry| entry.path.clone()).collect();
                for entry in &mut picked {
                    if let EntryKind::HardLink { target } = &entry.kind
                        && !paths.contains(target)
                        && let Some(first) = tree.entries.iter().find(|e| e.path == *target)
                    {
                        entry.kind = first.kind.clone();
                    }
                }
                picked
            }
        };
        let index = self.chunk_index().await?;
        std::fs::create_dir_all(target).map_err(io("cannot create", target))?;
        let staging = target.join(format!(".stowage-restore-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&staging).map_err(io("cannot create", &staging))?;
        let result = self
            .restore_into(&index, &entries, &staging, concurrency)
            .await;
        let result = match result {
            Ok(summary) => move_into_place(&staging, target).map(|()| summary),
            Err(err) => Err(err),
        };
        // The staging folder is empty after a successful move; after a failure it holds the
        // partial restore, which must not stay.
        let _ = std::fs::remove_dir_all(&staging);
        result
    }

    async fn restore_into(
        &self,
        stored: &ChunkIndex,
        entries: &[Entry],
        root: &Path,
        concurrency: usize,
    ) -> Result<RestoreSummary> {
        let mut summary = RestoreSummary::default();
        // Directories first, so files have somewhere to go.
        for entry in entries {
            if matches!(entry.kind, EntryKind::Dir) {
                let path = root.join(&entry.path);
                std::fs::create_dir_all(&path).map_err(io("cannot create", &path))?;
            }
        }
        // File content: every chunk of every file in order, fetched `concurrency` at a time.
        let files: Vec<(&Entry, u64)> = entries
            .iter()
            .filter_map(|entry| match &entry.kind {
                EntryKind::File { size, .. } => Some((entry, *size)),
                _ => None,
            })
            .collect();
        let jobs = files.iter().enumerate().flat_map(|(index, (entry, _))| {
            let chunks = match &entry.kind {
                EntryKind::File { chunks, .. } => chunks.as_slice(),
                _ => &[],
            };
            chunks
                .iter()
                .map(move |chunk| (index, entry.path.as_str(), chunk))
        });
        let reads = plan_reads(stored, jobs)?;
        // Files are written by a thread of their own, fed in file order, so that the runtime's
        // threads fetch and open chunks while it writes.
        let (sender, receiver) = mpsc::channel::<(usize, Vec<u8>)>(WRITE_QUEUE);
        let to_write: Vec<(Entry, u64)> = files
            .iter()
            .map(|(entry, size)| ((*entry).clone(), *size))
            .collect();
        let writer_root = root.to_path_buf();
        let writer =
            tokio::task::spawn_blocking(move || write_files(&writer_root, &to_write, receiver));
        let mut fetched = futures::stream::iter(reads)
            .map(|read| self.fetch(stored, read))
            .buffered(concurrency.max(1))
            .map_ok(|chunks| futures::stream::iter(chunks.into_iter().map(Ok)))
            .try_flatten();
        let mut fetch_failed = None;
        while let Some(next) = fetched.next().await {
            match next {
                // A writer gone has failed; its error is the one to report.
                Ok(chunk) => {
                    if sender.send(chunk).await.is_err() {
                        break;
                    }
                }
                Err(err) => {
                    fetch_failed = Some(err);
                    break;
                }
            }
        }
        drop(fetched);
        drop(sender);
        let written = writer.await.map_err(|err| Error::Io {
            action: "the writing thread failed in",
            path: root.to_path_buf(),
            source: std::io::Error::other(err.to_string()),
        })?;
        if let Some(err) = fetch_failed {
            return Err(err);
        }
        summary.bytes = written?;
        // Links.
        for entry in entries {
            let path = root.join(&entry.path);
            match &entry.kind {
                EntryKind::Symlink { target } => {
                    std::os::unix::fs::symlink(target, &path)
                        .map_err(io("cannot create the symlink", &path))?;
                }
                EntryKind::HardLink { target } => {
                    std::fs::hard_link(root.join(target), &path)
                        .map_err(io("cannot create the hard link", &path))?;
                }
                _ => {}
            }
        }
        // Owners, modes and mtimes of what is not a file (files have theirs); deepest first,
        // since making something in a directory changes its mtime.
        for entry in entries.iter().rev() {
            let path = root.join(&entry.path);
            summary.entries += 1;
            match entry.kind {
                EntryKind::File { .. } | EntryKind::HardLink { .. } => continue,
                EntryKind::Symlink { .. } => {
                    // Owners need privileges a restore may not have (see `finish_file`).
                    let _ = std::os::unix::fs::lchown(&path, Some(entry.uid), Some(entry.gid));
                    let mtime =
                        filetime::FileTime::from_unix_time(entry.mtime_secs, entry.mtime_nanos);
                    filetime::set_symlink_file_times(&path, mtime, mtime)
                        .map_err(io("cannot set the mtime of", &path))?;
                }
                EntryKind::Dir => {
                    let _ = std::os::unix::fs::lchown(&path, Some(entry.uid), Some(entry.gid));
                    std::fs::set_permissions(
                        &path,
                        std::fs::Permissions::from_mode(entry.mode & 0o7777),
                    )
                    .map_err(io("cannot set the mode of", &path))?;
                    let dir = File::open(&path).map_err(io("cannot open", &path))?;
                    dir.set_times(FileTimes::new().set_modified(mtime_of(entry)))
                        .map_err(io("cannot set the mtime of", &path))?;
                }
            }
        }
        Ok(summary)
    }
}

/// Writes `data` at the file's position, seeking over every all-zero block instead of writing
/// it, so holes of a sparse file stay holes. Consecutive blocks of the same sort are one write
/// or one seek.
fn write_sparse(file: &mut File, data: &[u8]) -> std::io::Result<()> {
    let mut rest = data;
    while !rest.is_empty() {
        let zero = is_zero_block(rest);
        let run = rest
            .chunks(HOLE_BLOCK)
            .take_while(|block| is_zero_block(block) == zero)
            .map(<[u8]>::len)
            .sum::<usize>();
        let (run_bytes, after) = rest.split_at(run);
        if zero {
            file.seek(SeekFrom::Current(run as i64))?;
        } else {
            file.write_all(run_bytes)?;
        }
        rest = after;
    }
    Ok(())
}

/// Whether the first block of `data` (up to [`HOLE_BLOCK`] bytes) is all zeros.
fn is_zero_block(data: &[u8]) -> bool {
    data[..data.len().min(HOLE_BLOCK)].iter().all(|b| *b == 0)
}

/// Chunks fetched and waiting for the writing thread.
const WRITE_QUEUE: usize = 16;

/// Writes the files' content as it comes from `chunks` (in file order, each file's chunks in
/// order), then gives each its length, owner, mode and mtime through its handle. A file without
/// content is made first. Returns the bytes of content written; stops at the first error (the
/// sender then sees the channel closed).
fn write_files(
    root: &Path,
    files: &[(Entry, u64)],
    mut chunks: mpsc::Receiver<(usize, Vec<u8>)>,
) -> Result<u64> {
    for (entry, size) in files {
        if *size == 0 {
            let path = root.join(&entry.path);
            let created = File::create(&path).map_err(io("cannot create", &path))?;
            finish_file(root, (entry, 0), created)?;
        }
    }
    let mut written = 0u64;
    // Chunks come in file order: one file is open at a time.
    let mut current: Option<(usize, File)> = None;
    while let Some((index, data)) = chunks.blocking_recv() {
        let (entry, _) = &files[index];
        let path = root.join(&entry.path);
        if current.as_ref().map(|(open, _)| *open) != Some(index) {
            if let Some((done, file)) = current.take() {
                let (entry, size) = &files[done];
                finish_file(root, (entry, *size), file)?;
            }
            let file = File::create(&path).map_err(io("cannot create", &path))?;
            current = Some((index, file));
        }
        if let Some((_, file)) = current.as_mut() {
            write_sparse(file, &data).map_err(io("cannot write", &path))?;
        }
        written += data.len() as u64;
    }
    if let Some((done, file)) = current.take() {
        let (entry, size) = &files[done];
        finish_file(root, (entry, *size), file)?;
    }
    Ok(written)
}

/// Gives a written file its final length (so trailing holes of a sparse file exist without
/// being written), then its owner, mode and mtime, through its handle.
fn finish_file(root: &Path, (entry, size): (&Entry, u64), file: File) -> Result<()> {
    let path = root.join(&entry.path);
    file.set_len(size).map_err(io("cannot size", &path))?;
    // Changing owners needs privileges a restore may not have; then files keep the restoring
    // user, as with `cp -r`. The owner goes before the mode, which a change of owner can clear.
    let _ = std::os::unix::fs::fchown(&file, Some(entry.uid), Some(entry.gid));
    file.set_permissions(std::fs::Permissions::from_mode(entry.mode & 0o7777))
        .map_err(io("cannot set the mode of", &path))?;
    file.set_times(FileTimes::new().set_modified(mtime_of(entry)))
        .map_err(io("cannot set the mtime of", &path))
}

/// An entry's mtime (times before 1970 are taken as 1970).
fn mtime_of(entry: &Entry) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::new(entry.mtime_secs.max(0) as u64, entry.mtime_nanos)
}

/// Moves everything in `staging` into `target`, replacing what is there under the same names.
fn move_into_place(staging: &Path, target: &Path) -> Result<()> {
    let listing = std::fs::read_dir(staging).map_err(io("cannot read", staging))?;
    for item in listing {
        let item = item.map_err(io("cannot read", staging))?;
        let destination: PathBuf = target.join(item.file_name());
        if destination.is_dir() && !destination.is_symlink() {
            merge_dir(&item.path(), &destination)?;
        } else {
            std::fs::rename(item.path(), &destination).map_err(io("cannot move", &destination))?;
        }
    }
    Ok(())
}

/// Moves a staged directory's content into an existing one, then applies the staged
/// directory's mode and mtime.
fn merge_dir(staged: &Path, destination: &Path) -> Result<()> {
    let meta = std::fs::metadata(staged).map_err(io("cannot stat", staged))?;
    move_into_place(staged, destination)?;
    std::fs::set_permissions(destination, meta.permissions())
        .map_err(io("cannot set the mode of", destination))?;
    if let Ok(mtime) = meta.modified() {
        let dir = File::open(destination).map_err(io("cannot open", destination))?;
        dir.set_times(FileTimes::new().set_modified(mtime))
            .map_err(io("cannot set the mtime of", destination))?;
    }
    Ok(())
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}
