//! Errors of the engine crate.

use std::path::PathBuf;

use crate::codec::CodecError;
use crate::event::ExpectedSeq;

/// The result type of the engine crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
///
/// Only [`Error::Conflict`] is worth retrying as it is (after re-reading the stream); the others
/// name a bad request or a state of the database that needs an operator.
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
    /// The format marker exists but is not four bytes.
    #[error("the database at {path} has a malformed format marker ({len} bytes, expected 4)")]
    MalformedFormatMarker {
        /// The database folder.
        path: PathBuf,
        /// The length found.
        len: usize,
    },
    /// A column family the database must have is missing.
    #[error("the database has no `{0}` column family")]
    MissingColumnFamily(&'static str),
    /// An event or index entry cannot be read back. Start-up stops on it: nothing is skipped.
    #[error("corrupt event {seq} of stream `{stream}`: {reason}")]
    Corrupt {
        /// The stream (or `<global>` for an entry of the global index).
        stream: String,
        /// The event's sequence in that stream (or the global position).
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// The stream's head is not what the append expected.
    #[error("conflict on stream `{stream}`: expected {expected:?}, the stream is at {actual}")]
    Conflict {
        /// The stream.
        stream: String,
        /// What the append expected.
        expected: ExpectedSeq,
        /// The stream's actual last sequence (0 when empty).
        actual: u64,
    },
    /// An append carried no events.
    #[error("an append to stream `{0}` must carry at least one event")]
    EmptyAppend(String),
    /// A stream id or projection name is not acceptable.
    #[error("invalid {what} `{name}`: {reason}")]
    InvalidName {
        /// "stream id" or "projection name".
        what: &'static str,
        /// The name (cut to 64 characters).
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two projections were registered under one name.
    #[error("two projections are named `{0}`")]
    DuplicateProjection(&'static str),
    /// A projection refused an event; the append that carried it was not written.
    #[error("projection `{projection}` rejected event {seq} of stream `{stream}`: {reason}")]
    Projection {
        /// The projection.
        projection: &'static str,
        /// The stream of the event.
        stream: String,
        /// The sequence the event would have had.
        seq: u64,
        /// What the projection said.
        reason: String,
    },
    /// A payload could not be encoded.
    #[error("cannot encode a `{kind}` event: {source}")]
    Encode {
        /// The event kind.
        kind: String,
        /// What the codec said.
        #[source]
        source: CodecError,
    },
    /// An event was decoded as the wrong payload type.
    #[error("event {seq} of stream `{stream}` is a `{found}`, not a `{expected}`")]
    WrongKind {
        /// The stream.
        stream: String,
        /// The event's sequence.
        seq: u64,
        /// The kind asked for.
        expected: &'static str,
        /// The kind recorded.
        found: String,
    },
    /// The writer thread is gone (the store is closing or a previous write failed fatally).
    #[error("the event store is closed")]
    Closed,
}
