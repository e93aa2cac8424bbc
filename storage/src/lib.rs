//! `stowage-storage`: where backups live and in what format.
//!
//! It owns backup locations (S3 and S3-compatible stores, Azure Blob, Google Cloud Storage, a
//! local folder, all through object_store) and their validation, and the repository on top of
//! them (see `docs/repository-format.md`): the config and keys, sealed objects (zstd, then
//! AES-256-GCM), the content-defined chunk store, volume backup and restore, resource packs of Kubernetes objects, verification, deletion and garbage collection.
//!
//! It knows nothing of the engine, of workflows or of Kubernetes: it moves bytes and trees.

mod backup;
mod chunk_id;
mod chunk_reads;
mod chunker;
mod crypto;
mod delete;
mod error;
mod finalize;
mod gc;
mod location;
mod manifest;
mod names;
mod object;
mod packs;
mod probe;
mod repository;
mod resources;
mod restore;
mod secret;
mod tree;
mod verify;

pub use backup::{
    BackupOptions, BackupSummary, Progress, VolumeCheckpoint, VolumeSource, VolumeSummary,
};
pub use chunk_id::{ChunkId, NotAChunkId};
pub use chunker::{Chunking, Gear};
pub use crypto::KdfParams;
pub use delete::RemovedBackup;
pub use error::{Error, Result};
pub use gc::{GcReport, HeldLock, REPACK_UNUSED_SHARE, STALE_LOCK};
pub use location::{AzureAuth, Location, LocationKind};
pub use manifest::{Manifest, VolumeRecord};
pub use names::check_backup_id;
pub use repository::{FORMAT_VERSION, Repository};
pub use resources::{
    FrameRecord, GroupKind, ResourceEntry, ResourceFilter, ResourceIndex, ResourceRecord,
    ResourceWriter, ResourcesSummary,
};
pub use restore::RestoreSummary;
pub use secret::Secret;
pub use tree::{ChunkRef, Entry, EntryKind, Tree};
pub use verify::VerifyReport;
