//! The kubeconfig kubesim writes for its clients: one cluster (the HTTPS address and the CA),
//! one user (the bearer token), one context, current.

use std::path::Path;

use base64::Engine;
use serde_json::json;

use super::errors::StartError;

/// Writes a kubeconfig for a cluster named `name` at `server` to `path`.
pub fn write(
    path: &Path,
    name: &str,
    server: &str,
    ca_pem: &str,
    token: &str,
) -> Result<(), StartError> {
    let ca_data = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "users": [{"name": format!("{name}-admin"), "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": format!("{name}-admin"), "namespace": "default"}}],
        "current-context": name,
        "preferences": {},
    });
    let text = serde_yaml::to_string(&config).map_err(|error| StartError::State {
        path: path.to_path_buf(),
        source: std::io::Error::other(error),
    })?;
    std::fs::write(path, text).map_err(|source| StartError::State {
        path: path.to_path_buf(),
        source,
    })
}
