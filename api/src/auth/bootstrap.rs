//! The bootstrap admin token: generated on the server's first start, kept in a file only its
//! owner can read (0600), printed once, and accepted as an admin for first setup.

use std::path::{Path, PathBuf};

use crate::private_file::{self, PrivateFileError};

/// The subject of the bootstrap token's principal (never an OIDC subject: it has a colon prefix).
pub const BOOTSTRAP_SUBJECT: &str = "stowage:bootstrap-admin";

/// The bootstrap token, held as its BLAKE3 hash so that comparisons take constant time.
pub struct BootstrapToken {
    hash: blake3::Hash,
    path: PathBuf,
}

impl std::fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapToken")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Why the bootstrap token could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The file could not be read or written, or others may read it.
    #[error("bootstrap token file {0}")]
    File(#[from] PrivateFileError),
    /// The file does not hold a token.
    #[error("bootstrap token file {0} is empty or malformed; delete it to generate a new token")]
    Malformed(PathBuf),
    /// No randomness was available.
    #[error("cannot draw random bytes for the bootstrap token: {0}")]
    Random(String),
}

/// What [`BootstrapToken::load_or_create`] found.
pub enum Bootstrap {
    /// The token was generated now; the caller prints it once.
    Created(BootstrapToken, String),
    /// The token already existed.
    Existing(BootstrapToken),
}

const PREFIX: &str = "stowage-bootstrap-";

impl BootstrapToken {
    /// Reads the token in `path`, or generates one there (mode 0600) when the file is missing.
    pub fn load_or_create(path: &Path) -> Result<Bootstrap, BootstrapError> {
        if let Some(text) = private_file::read(path)? {
            let token = text.trim();
            if !token.starts_with(PREFIX) || token.len() < PREFIX.len() + 32 {
                return Err(BootstrapError::Malformed(path.to_path_buf()));
            }
            return Ok(Bootstrap::Existing(Self::from_token(token, path)));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|err| BootstrapError::Random(err.to_string()))?;
        let token = format!("{PREFIX}{}", blake3::Hash::from_bytes(secret).to_hex());
        private_file::create(path, &format!("{token}\n"))?;
        Ok(Bootstrap::Created(Self::from_token(&token, path), token))
    }

    fn from_token(token: &str, path: &Path) -> Self {
        Self {
            hash: blake3::hash(token.as_bytes()),
            path: path.to_path_buf(),
        }
    }

    /// Whether `token` is the bootstrap token (constant-time comparison of hashes).
    pub fn matches(&self, token: &str) -> bool {
        blake3::hash(token.as_bytes()) == self.hash
    }

    /// The file the token lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_token_is_created_once_private_and_then_reread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstrap-token");
        let Bootstrap::Created(token, printed) = BootstrapToken::load_or_create(&path).unwrap()
        else {
            panic!("first start must create the token");
        };
        assert!(token.matches(&printed));
        assert!(!token.matches(&format!("{printed}x")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let Bootstrap::Existing(again) = BootstrapToken::load_or_create(&path).unwrap() else {
            panic!("second start must reuse the token");
        };
        assert!(again.matches(&printed));
    }

    #[cfg(unix)]
    #[test]
    fn a_token_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstrap-token");
        BootstrapToken::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = BootstrapToken::load_or_create(&path).err().unwrap();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn a_malformed_token_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstrap-token");
        std::fs::write(&path, "short\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let err = BootstrapToken::load_or_create(&path).err().unwrap();
        assert!(matches!(err, BootstrapError::Malformed(_)), "{err}");
    }
}
