//! A volume's file tree as stored: one entry per directory, file, symlink or hard link, with
//! its mode, owner, mtime and, for files, the list of chunks that make its content.

use serde::{Deserialize, Serialize};

use crate::chunk_id::ChunkId;

/// The stored tree of one volume (the object `backups/<id>/volumes/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Entries in walk order: a directory comes before what it contains.
    pub entries: Vec<Entry>,
}

/// One thing in the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The path relative to the volume's root, `/`-separated.
    pub path: String,
    /// Permission bits and file type bits as `st_mode`.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time: seconds since the epoch.
    pub mtime_secs: i64,
    /// Modification time: nanoseconds within the second.
    pub mtime_nanos: u32,
    /// What kind of entry, with what that kind needs.
    pub kind: EntryKind,
}

/// The kinds of entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file: its size and its chunks in order. All-zero chunks are written as holes
    /// on restore, so sparse files stay sparse.
    File {
        /// Bytes.
        size: u64,
        /// The chunks, in order.
        chunks: Vec<ChunkRef>,
    },
    /// A symbolic link and its target as written.
    Symlink {
        /// The link's target.
        target: String,
    },
    /// A second name of a file seen earlier in the tree.
    HardLink {
        /// The path of the first name, relative to the root.
        target: String,
    },
}

/// A chunk of a file: its id and its length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// The chunk id (written as 64 hex digits).
    pub id: ChunkId,
    /// Bytes of content.
    pub len: u32,
}
