//! The CLI's configuration file: which server to talk to, the token to present, when it expires
//! and how it was got (so it can be renewed), written by `stowage login` with mode 0600 because
//! it holds credentials.
//!
//! Where it lives: `$STOWAGE_CONFIG`, else `$XDG_CONFIG_HOME/stowage/config.toml`, else
//! `~/.config/stowage/config.toml`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The server a CLI talks to when nothing says otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8432";

/// What the file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The server's base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A PEM file of CA certificates to trust for the server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// When the token expires, in seconds since the epoch, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<i64>,
    /// How the token was got from an OIDC issuer, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcLogin>,
}

/// How `stowage login` got a token from an OIDC issuer: enough to renew it, or to say which
/// command gets a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcLogin {
    /// The issuer's URL.
    pub issuer: String,
    /// The audience (resource) the token was asked for.
    pub audience: String,
    /// The OAuth client.
    pub client_id: String,
    /// The grant that got it.
    pub grant: LoginGrant,
    /// The file holding the client secret (client credentials), read again to renew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// The refresh token the issuer gave with the access token, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// The OAuth 2.0 grant a token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginGrant {
    /// Client credentials: a service account's id and secret.
    ClientCredentials,
    /// The device authorization grant: a person signed in in a browser.
    Device,
}

/// Why the file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No place for the file: neither `STOWAGE_CONFIG`, `XDG_CONFIG_HOME` nor `HOME` is set.
    #[error("no place for the CLI configuration: set STOWAGE_CONFIG to a file path")]
    NoLocation,
    /// Reading or writing failed.
    #[error("CLI configuration {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("CLI configuration {path} is not valid: {reason}; fix it or run `stowage login` again")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl ClientConfig {
    /// The file's path from the environment.
    pub fn default_path() -> Result<PathBuf, ConfigError> {
        if let Some(path) = std::env::var_os("STOWAGE_CONFIG") {
            return Ok(PathBuf::from(path));
        }
        let base = match std::env::var_os("XDG_CONFIG_HOME") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => PathBuf::from(std::env::var_os("HOME").ok_or(ConfigError::NoLocation)?)
                .join(".config"),
        };
        Ok(base.join("stowage").join("config.toml"))
    }

    /// Reads the file; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(ConfigError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        toml::from_str(&text).map_err(|err| ConfigError::Invalid {
            path: path.to_path_buf(),
            reason: err.message().to_string(),
        })
    }

    /// Writes the file (mode 0600, its folder created if needed), replacing it atomically.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = toml::to_string(self).map_err(|err| ConfigError::Invalid {
            path: path.to_path_buf(),
            reason: err.to_string(),
        })?;
        let dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let temporary = dir.join(format!(
            ".{}.tmp",
            path.file_name()
                .map(|name| name.to_string_lossy())
                .unwrap_or_default()
        ));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&temporary, path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_file_round_trips_privately_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("config.toml");
        assert_eq!(ClientConfig::load(&path).unwrap(), ClientConfig::default());
        let config = ClientConfig {
            server: Some("http://127.0.0.1:1".into()),
            token: Some("secret".into()),
            ca_file: Some(dir.path().join("ca.pem")),
            token_expires_at: Some(1_900_000_000),
            oidc: Some(OidcLogin {
                issuer: "http://127.0.0.1:2".into(),
                audience: "urn:stowage:api".into(),
                client_id: "stowage-cli".into(),
                grant: LoginGrant::Device,
                client_secret_file: None,
                refresh_token: Some("refresh".into()),
            }),
        };
        config.save(&path).unwrap();
        assert_eq!(ClientConfig::load(&path).unwrap(), config);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn an_invalid_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "servr = 1\n").unwrap();
        let err = ClientConfig::load(&path).unwrap_err();
        assert!(err.to_string().contains("config.toml"), "{err}");
        assert!(err.to_string().contains("servr"), "{err}");
    }
}
