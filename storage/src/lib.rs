//! `stowage-storage`: where backups live and in what format.
//!
//! It owns backup locations (S3 and S3-compatible stores, Azure Blob, Google Cloud Storage, a
//! local folder, all through object_store), and will own the repository format on top of them:
//! resource packs, the content-defined chunk store, encryption, verification and garbage
//! collection, and the data mover's read and write paths.
//!
//! It knows nothing of the engine, of workflows or of Kubernetes: it moves bytes and trees.

mod error;
mod location;
mod secret;

pub use error::{Error, Result};
pub use location::{AzureAuth, Location, LocationKind};
pub use secret::Secret;
