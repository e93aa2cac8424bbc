//! Registered clusters: how Stowage reaches one (a kubeconfig, or the cluster the server runs
//! in), the validation of that spec, the kube-rs client built from it, and the live probe that
//! says whether the cluster answers and which Kubernetes it runs. Its grants (which namespaces
//! the users it is shared with may use) are checked by [`crate::grants`].

use serde::{Deserialize, Serialize};

use crate::grants::{self, Grant};
use crate::validate::{FieldError, Problems};

/// How to reach a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// A kubeconfig (YAML) with the server's address, CA and credentials. Absent with
    /// `in_cluster`.
    #[serde(default)]
    pub kubeconfig: Option<String>,
    /// The kubeconfig context to use; its current context when absent.
    #[serde(default)]
    pub context: Option<String>,
    /// The cluster Stowage itself runs in, through its service account.
    #[serde(default)]
    pub in_cluster: bool,
    /// Which namespaces the users and groups it is shared with may back up from and restore
    /// into (its owner and admins may use all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Grant>,
}

/// Why a cluster cannot be reached or used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The kubeconfig or in-cluster environment does not give a usable configuration.
    #[error("cluster configuration: {0}")]
    Config(String),
    /// The API server did not answer, or refused us.
    #[error("cluster API server {server}: {source}")]
    Api {
        /// The server's address.
        server: String,
        /// What went wrong.
        #[source]
        source: kube::Error,
    },
}

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The API server's address.
    pub server: String,
    /// Its Kubernetes version, e.g. `v1.32.0`.
    pub version: String,
}

/// A connected cluster: the client and the address it talks to.
#[derive(Clone)]
pub struct ClusterClient {
    /// The kube-rs client.
    pub client: kube::Client,
    /// The API server's address, for messages.
    pub server: String,
}

impl std::fmt::Debug for ClusterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClient")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl ClusterSpec {
    /// Reads and checks a spec, naming every invalid field (paths under `spec`).
    pub fn parse(spec: &serde_json::Value) -> Result<Self, Vec<FieldError>> {
        let cluster: Self = serde_json::from_value(spec.clone()).map_err(|err| {
            vec![FieldError {
                field: "spec".into(),
                message: err.to_string(),
            }]
        })?;
        let mut problems = Problems::default();
        match (&cluster.kubeconfig, cluster.in_cluster) {
            (None, false) => problems.add(
                "spec.kubeconfig",
                "give a kubeconfig, or set in_cluster for the cluster the server runs in",
            ),
            (Some(_), true) => problems.add(
                "spec.in_cluster",
                "a cluster is reached either by kubeconfig or in-cluster, not both",
            ),
            (Some(text), false) => match kube::config::Kubeconfig::from_yaml(text) {
                Err(err) => problems.add("spec.kubeconfig", format!("not a kubeconfig: {err}")),
                Ok(config) => {
                    let context = cluster
                        .context
                        .clone()
                        .or_else(|| config.current_context.clone());
                    match context {
                        None => problems.add(
                            "spec.context",
                            "the kubeconfig has no current context: name one",
                        ),
                        Some(name) if !config.contexts.iter().any(|c| c.name == name) => problems
                            .add(
                                "spec.context",
                                format!("the kubeconfig has no context `{name}`"),
                            ),
                        Some(_) => {}
                    }
                }
            },
            (None, true) => {}
        }
        grants::check(&mut problems, &cluster.grants);
        problems.finish().map(|()| cluster)
    }

    /// A client for the cluster (no request is made yet).
    pub async fn connect(&self) -> Result<ClusterClient, ClusterError> {
        let config = if self.in_cluster {
            kube::Config::incluster().map_err(|err| ClusterError::Config(err.to_string()))?
        } else {
            let text = self.kubeconfig.as_deref().ok_or_else(|| {
                ClusterError::Config("no kubeconfig and not in-cluster".to_string())
            })?;
            let kubeconfig = kube::config::Kubeconfig::from_yaml(text)
                .map_err(|err| ClusterError::Config(format!("not a kubeconfig: {err}")))?;
            let options = kube::config::KubeConfigOptions {
                context: self.context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|err| ClusterError::Config(err.to_string()))?
        };
        let server = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).map_err(|source| ClusterError::Api {
            server: server.clone(),
            source,
        })?;
        Ok(ClusterClient { client, server })
    }
}

impl ClusterClient {
    /// Asks the API server for its version, then lists one namespace: the cluster is reachable
    /// and accepts our credentials (`/version` alone answers anyone).
    pub async fn probe(&self) -> Result<ClusterStatus, ClusterError> {
        let info = self
            .client
            .apiserver_version()
            .await
            .map_err(|source| self.api_error(source))?;
        kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone())
            .list_metadata(&kube::api::ListParams::default().limit(1))
            .await
            .map_err(|source| self.api_error(source))?;
        Ok(ClusterStatus {
            server: self.server.clone(),
            version: info.git_version,
        })
    }

    /// Wraps a kube-rs error with the server's address.
    pub fn api_error(&self, source: kube::Error) -> ClusterError {
        ClusterError::Api {
            server: self.server.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    const KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- name: one
  cluster: {server: 'https://127.0.0.1:6443'}
users:
- name: admin
  user: {token: secret}
contexts:
- name: one
  context: {cluster: one, user: admin}
current-context: one
";

    fn fields(spec: serde_json::Value) -> Vec<String> {
        ClusterSpec::parse(&spec)
            .unwrap_err()
            .into_iter()
            .map(|problem| problem.field)
            .collect()
    }

    #[test]
    fn a_kubeconfig_or_in_cluster_is_needed_and_its_context_must_exist() {
        assert!(ClusterSpec::parse(&json!({"kubeconfig": KUBECONFIG})).is_ok());
        assert!(ClusterSpec::parse(&json!({"in_cluster": true})).is_ok());
        assert_eq!(fields(json!({})), ["spec.kubeconfig"]);
        assert_eq!(
            fields(json!({"kubeconfig": KUBECONFIG, "in_cluster": true})),
            ["spec.in_cluster"]
        );
        assert_eq!(
            fields(json!({"kubeconfig": KUBECONFIG, "context": "two"})),
            ["spec.context"]
        );
        assert_eq!(
            fields(json!({"kubeconfig": "clusters: [oops"})),
            ["spec.kubeconfig"]
        );
        assert_eq!(
            fields(json!({"kubeconfig": KUBECONFIG, "extra": 1})),
            ["spec"]
        );
    }

    #[test]
    fn grants_are_read_and_each_bad_pattern_is_named() {
        let spec = ClusterSpec::parse(&json!({"in_cluster": true, "grants": [
            {"to": {"group": "data-team"}, "namespaces": ["team-*"]}
        ]}))
        .unwrap();
        assert_eq!(spec.grants[0].namespaces, ["team-*"]);
        assert_eq!(
            fields(json!({"in_cluster": true, "grants": [
                {"to": {"user": "carol"}, "namespaces": ["team-a", "Team_B"]}
            ]})),
            ["spec.grants[0].namespaces[1]"]
        );
        let without = ClusterSpec::parse(&json!({"in_cluster": true})).unwrap();
        assert_eq!(
            serde_json::to_value(&without).unwrap(),
            json!({"kubeconfig": null, "context": null, "in_cluster": true}),
            "a spec without grants is stored as before"
        );
    }
}
