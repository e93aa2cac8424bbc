//! Errors of the engine crate.

use std::path::PathBuf;

/// The result type of the engine crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine. None of these is retryable by the caller: each
/// names a state of the database that needs an operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// RocksDB refused to open the database folder.
    #[error("cannot open the database at {path}: {source}")]
    Open {
        /// The database folder.
        path: PathBuf,
        /// What RocksDB said.
        #[source]
        source: rocksdb::Error,
    },
    /// A read or write of RocksDB failed.
    #[error("database {operation} failed: {source}")]
    Database {
        /// What was being done, e.g. "read of the format marker".
        operation: &'static str,
        /// What RocksDB said.
        #[source]
        source: rocksdb::Error,
    },
    /// The database was written by a format this build does not understand.
    #[error(
        "the database at {path} has format version {found}, this build reads version {supported}"
    )]
    UnsupportedFormat {
        /// The database folder.
        path: PathBuf,
        /// The version found in the `meta` column family.
        found: u32,
        /// The version this build writes and reads.
        supported: u32,
    },
    /// A column family the database must have is missing.
    #[error("the database has no `{0}` column family")]
    MissingColumnFamily(&'static str),
    /// The format marker exists but is not four bytes.
    #[error("the database at {path} has a malformed format marker ({len} bytes, expected 4)")]
    MalformedFormatMarker {
        /// The database folder.
        path: PathBuf,
        /// The length found.
        len: usize,
    },
}
