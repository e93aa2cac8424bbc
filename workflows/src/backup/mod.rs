//! Backups: the spec of what to protect, the steps of the backup workflow that read the
//! cluster and write the repository, and the workflow that deletes a backup.

pub mod collect;
pub mod delete;
pub mod hooks;
pub mod spec;
pub mod volumes;
pub mod workflow;

pub use collect::{ClaimRef, CollectError, CollectSummary, CollectedObject, ObjectSink, collect};
pub use delete::{DELETE_WORKFLOW, DeleteInput, delete_workflow};
pub use spec::{BackupSpec, ClusterResources, Selection, VolumeMode};
