//! Errors of the storage crate.

/// The result type of the storage crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A location's settings are incomplete or contradictory; `field` names the setting.
    #[error("invalid location setting `{field}`: {reason}")]
    InvalidLocation {
        /// The setting at fault, as named in [`crate::Location`].
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// object_store refused to build a client for the location.
    #[error("cannot open the {kind} location: {source}")]
    Open {
        /// The kind of location, e.g. "s3".
        kind: &'static str,
        /// What object_store said.
        #[source]
        source: object_store::Error,
    },
}
