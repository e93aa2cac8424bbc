//! `stowage-engine`: the event log on RocksDB and the durable workflow runtime.
//!
//! It owns the on-disk database (column families, key layout, the format marker), and will own
//! streams, the global sequence, projections and the workflow runtime built on them.
//!
//! It knows nothing of Kubernetes, backups, storage locations or HTTP: callers hand it opaque
//! payloads and steps, and it makes them durable.

mod error;
mod keys;
mod store;

pub use error::{Error, Result};
pub use keys::{COLUMN_FAMILIES, FORMAT_VERSION};
pub use store::Store;
