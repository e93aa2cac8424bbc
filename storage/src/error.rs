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
    /// The store refused the location's credentials: a wrong key or secret, or a key without
    /// permission on the bucket. Not retryable.
    #[error(
        "{location}: the store refused the credentials (wrong key, or no permission): {source}"
    )]
    Credentials {
        /// The location, as [`crate::Location::describe`] gives it.
        location: String,
        /// What the store said.
        #[source]
        source: object_store::Error,
    },
    /// The bucket or container named by the location does not exist. Not retryable.
    #[error("{location}: the bucket or container does not exist: {source}")]
    MissingBucket {
        /// The location, as [`crate::Location::describe`] gives it.
        location: String,
        /// What the store said.
        #[source]
        source: object_store::Error,
    },
    /// No connection could be made to the location's endpoint (refused, timed out, no such
    /// host). Retryable: the store may come back.
    #[error("{location}: the endpoint cannot be reached: {source}")]
    Unreachable {
        /// The location, as [`crate::Location::describe`] gives it.
        location: String,
        /// What the client said.
        #[source]
        source: object_store::Error,
    },
    /// Validating a location failed at one step for another reason.
    #[error("{location}: the probe could not {step}: {source}")]
    Probe {
        /// The location, as [`crate::Location::describe`] gives it.
        location: String,
        /// What the probe was doing: "write", "read", "list" or "delete" the probe object.
        step: &'static str,
        /// What the store said.
        #[source]
        source: object_store::Error,
    },
    /// The store answered a probe step, but wrongly (e.g. read back other bytes).
    #[error("{location}: the store misbehaved: {what}")]
    ProbeMismatch {
        /// The location, as [`crate::Location::describe`] gives it.
        location: String,
        /// What was wrong.
        what: String,
    },
    /// The key-derivation parameters are unusable.
    #[error("invalid key-derivation parameters: {0}")]
    InvalidKdf(String),
    /// The operating system's random source or the cipher failed.
    #[error("cryptography failed: {0}")]
    Random(String),
    /// The passphrase does not unlock the repository's key.
    #[error("{location}: wrong passphrase: it does not unlock this repository's key")]
    WrongPassphrase {
        /// The location, as [`crate::Location::describe`] gives it.
        location: String,
    },
    /// There is no repository at the location (no `stowage.repo`).
    #[error("{location}: no Stowage repository here (no `stowage.repo`); initialise one first")]
    NotARepository {
        /// The location, as [`crate::Location::describe`] gives it.
        location: String,
    },
    /// `init` found a repository already there.
    #[error("{location}: a Stowage repository already exists here")]
    AlreadyInitialized {
        /// The location, as [`crate::Location::describe`] gives it.
        location: String,
    },
    /// The repository was written by a newer (or unknown) format version.
    #[error(
        "repository format version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion {
        /// The version in the repository.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// An object of the repository is damaged: truncated, changed, or not what its name says.
    #[error("corrupt object `{object}`: {what}")]
    Corrupt {
        /// The object's name inside the repository.
        object: String,
        /// What is wrong with it.
        what: String,
    },
    /// An object the repository needs is missing.
    #[error("missing object `{object}`")]
    Missing {
        /// The object's name inside the repository.
        object: String,
    },
    /// The store failed a request (after object_store's retries).
    #[error("cannot {action} `{object}`: {source}")]
    Store {
        /// What was being done: "read", "write", "list", "delete".
        action: &'static str,
        /// The object or folder.
        object: String,
        /// What object_store said.
        #[source]
        source: object_store::Error,
    },
    /// A local file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "cannot read".
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A Kubernetes object given to a resource pack is unusable; the message names it.
    #[error("invalid resource: {0}")]
    InvalidResource(String),
    /// A checkpoint given to resume a backup does not fit it.
    #[error("invalid checkpoint: {0}")]
    InvalidCheckpoint(String),
    /// A backup asked to be finalized already has a manifest.
    #[error("backup `{0}` is already finalized (it has a manifest)")]
    AlreadyFinalized(String),
    /// A backup, volume or path asked for is not in the repository.
    #[error("not found: {0}")]
    NotFound(String),
    /// A file name that is not UTF-8 (not supported by this format version).
    #[error("the file name {0:?} is not UTF-8, which this repository format cannot store")]
    NonUtf8Path(std::path::PathBuf),
    /// Restoring or verifying found problems; each names the object and what is wrong.
    #[error("{} problem(s): {}", problems.len(), problems.join("; "))]
    Damaged {
        /// One line per problem.
        problems: Vec<String>,
    },
}

impl Error {
    /// Whether trying again later may succeed: the store was unreachable, or a request to it
    /// failed on the way. Settings, credentials, passphrases and damaged data are not retried.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::Store { .. } | Self::Io { .. }
        )
    }
}
