//! Backups: the spec of what to protect, and the steps of the backup workflow that read the
//! cluster and write the repository.

pub mod collect;
pub mod hooks;
pub mod spec;
pub mod volumes;
pub mod workflow;

pub use collect::{ClaimRef, CollectError, CollectSummary, CollectedObject, ObjectSink, collect};
pub use spec::{BackupSpec, ClusterResources, Selection, VolumeMode};
