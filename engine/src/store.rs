//! Opening the RocksDB database that holds the event log, and checking that it is usable.

use std::path::{Path, PathBuf};

use rocksdb::{ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions};

use crate::error::{Error, Result};
use crate::keys::{CF_META, COLUMN_FAMILIES, FORMAT_VERSION, META_FORMAT_VERSION};

/// The engine's database: one RocksDB instance with the column families of [`COLUMN_FAMILIES`].
pub struct Store {
    db: DB,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens the database in `path`, creating the folder, the column families and the format
    /// marker on first use. A database written by another format version is refused.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let families = COLUMN_FAMILIES
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
        let db =
            DB::open_cf_descriptors(&options, &path, families).map_err(|source| Error::Open {
                path: path.clone(),
                source,
            })?;
        let store = Self { db, path };
        store.ensure_format()?;
        tracing::info!(path = %store.path.display(), "database open");
        Ok(store)
    }

    /// The folder the database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the format marker back: proves the database answers reads. Used by health checks.
    pub fn format_version(&self) -> Result<u32> {
        let meta = self.meta()?;
        let raw = self
            .db
            .get_cf(meta, META_FORMAT_VERSION)
            .map_err(|source| Error::Database {
                operation: "read of the format marker",
                source,
            })?;
        match raw {
            Some(bytes) => self.decode_format(&bytes),
            None => Ok(0),
        }
    }

    fn ensure_format(&self) -> Result<()> {
        match self.format_version()? {
            0 => {
                let mut batch = WriteBatch::default();
                batch.put_cf(
                    self.meta()?,
                    META_FORMAT_VERSION,
                    FORMAT_VERSION.to_be_bytes(),
                );
                let mut sync = WriteOptions::default();
                sync.set_sync(true);
                self.db
                    .write_opt(batch, &sync)
                    .map_err(|source| Error::Database {
                        operation: "write of the format marker",
                        source,
                    })
            }
            FORMAT_VERSION => Ok(()),
            found => Err(Error::UnsupportedFormat {
                path: self.path.clone(),
                found,
                supported: FORMAT_VERSION,
            }),
        }
    }

    fn decode_format(&self, bytes: &[u8]) -> Result<u32> {
        let array: [u8; 4] = bytes.try_into().map_err(|_| Error::MalformedFormatMarker {
            path: self.path.clone(),
            len: bytes.len(),
        })?;
        Ok(u32::from_be_bytes(array))
    }

    fn meta(&self) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(CF_META)
            .ok_or(Error::MissingColumnFamily(CF_META))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn open_writes_the_format_marker_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.format_version().unwrap(), FORMAT_VERSION);
        drop(store);
        let again = Store::open(dir.path()).unwrap();
        assert_eq!(again.format_version().unwrap(), FORMAT_VERSION);
    }

    #[test]
    fn a_database_of_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .db
            .put_cf(
                store.meta().unwrap(),
                META_FORMAT_VERSION,
                99u32.to_be_bytes(),
            )
            .unwrap();
        drop(store);
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnsupportedFormat {
                    found: 99,
                    supported: FORMAT_VERSION,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_marker_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .db
            .put_cf(store.meta().unwrap(), META_FORMAT_VERSION, b"x")
            .unwrap();
        drop(store);
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("malformed format marker (1 bytes"),
            "{err}"
        );
    }
}
