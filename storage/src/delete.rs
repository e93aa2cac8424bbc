//! Deleting a backup's objects: its manifest first, so it is never listed half-deleted, then
//! everything under its folder (trees, resource pack, anything a failed run left). Its chunks go
//! at the next garbage collection, once no other backup refers to them.
//!
//! Deleting is idempotent: objects already gone are fine, so a deletion that was interrupted
//! finishes when run again, and deleting a backup that is gone does nothing.

use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tracing::{info, instrument};

use crate::error::{Error, Result};
use crate::names;
use crate::repository::Repository;

/// Objects deleted at once.
const DELETE_CONCURRENCY: usize = 16;

/// What [`Repository::remove_backup`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemovedBackup {
    /// Whether the backup had a manifest (a finished backup) when the deletion started.
    pub had_manifest: bool,
    /// Objects deleted, the manifest included (0 when the backup was already gone).
    pub objects: u64,
}

impl Repository {
    /// Deletes a finished backup; one without a manifest is [`Error::NotFound`]. See
    /// [`Repository::remove_backup`] for one that may be incomplete.
    pub async fn delete_backup(&self, backup: &str) -> Result<()> {
        self.manifest(backup).await?;
        self.remove_backup(backup).await.map(|_| ())
    }

    /// Deletes every object of backup `backup`, finished or not: the manifest first, then the
    /// rest of its folder. A backup already gone (or never written) deletes nothing.
    #[instrument(skip(self), fields(location = %self.description()))]
    pub async fn remove_backup(&self, backup: &str) -> Result<RemovedBackup> {
        names::check_name("backup id", backup)?;
        let manifest = names::manifest(backup);
        let objects = self.list(&names::backup_folder(backup)).await?;
        let had_manifest = objects
            .iter()
            .any(|meta| meta.location.as_ref() == manifest);
        if had_manifest {
            self.delete_object(manifest.clone()).await?;
        }
        let mut deletions = futures::stream::iter(
            objects
                .into_iter()
                .map(|meta| meta.location.to_string())
                .filter(|name| *name != manifest),
        )
        .map(|name| self.delete_object(name))
        .buffer_unordered(DELETE_CONCURRENCY);
        let mut removed = RemovedBackup {
            had_manifest,
            objects: u64::from(had_manifest),
        };
        while let Some(result) = deletions.next().await {
            result?;
            removed.objects += 1;
        }
        info!(objects = removed.objects, had_manifest, "backup deleted");
        Ok(removed)
    }

    /// Deletes one object; one already gone is fine.
    pub(crate) async fn delete_object(&self, name: String) -> Result<()> {
        match self.store().delete(&Path::from(name.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(Error::Store {
                action: "delete",
                object: name,
                source,
            }),
        }
    }
}
