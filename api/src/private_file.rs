//! Files only their owner may read (mode 0600), for the server's own secrets: the bootstrap
//! token and the master key. Reading one that others may read is refused; creating one never
//! replaces a file that exists.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a private file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but others may read it.
    #[error("{path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PrivateFileError + '_ {
    move |source| PrivateFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The text of the private file `path`, or `None` when there is no such file.
pub fn read(path: &Path) -> Result<Option<String>, PrivateFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            check_private(path)?;
            Ok(Some(text))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io(path)(err)),
    }
}

/// Creates the private file `path` (mode 0600) holding `text`, durably; fails if it exists.
pub fn create(path: &Path, text: &str) -> Result<(), PrivateFileError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(text.as_bytes()).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), PrivateFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(io(path))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(PrivateFileError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), PrivateFileError> {
    Ok(())
}
