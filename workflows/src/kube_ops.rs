//! The handful of Kubernetes calls the workflows make on objects of any type, over raw JSON:
//! create (an object that exists already is the one returned, so a step run twice does no harm),
//! get, list by label, delete, delete by label, and the pod log. Paths are API paths
//! (`/apis/batch/v1/namespaces/shop/jobs`).

use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use serde_json::Value;

use crate::cluster::ClusterClient;

/// A failed call, with what was asked.
#[derive(Debug, thiserror::Error)]
#[error("{what} on {server}: {source}")]
pub struct KubeError {
    /// What was asked (`create /api/v1/namespaces/shop/secrets/x`).
    pub what: String,
    /// The API server.
    pub server: String,
    /// The error.
    #[source]
    pub source: kube::Error,
}

impl KubeError {
    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        match &self.source {
            kube::Error::Api(status) => status.code >= 500 || status.code == 429,
            kube::Error::BuildRequest(_) | kube::Error::SerdeError(_) => false,
            _ => true,
        }
    }
}

fn code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// The path of a core (`group` empty) or grouped resource, in a namespace or not.
pub fn path(group: &str, version: &str, namespace: Option<&str>, plural: &str) -> String {
    let base = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    match namespace {
        Some(namespace) => format!("{base}/namespaces/{namespace}/{plural}"),
        None => format!("{base}/{plural}"),
    }
}

impl ClusterClient {
    fn fail(&self, what: String, source: kube::Error) -> KubeError {
        KubeError {
            what,
            server: self.server.clone(),
            source,
        }
    }

    /// Creates `object` in collection `path`; if one of its name exists, returns that one.
    pub async fn create_or_get(&self, path: &str, object: &Value) -> Result<Value, KubeError> {
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let what = format!("create {path}/{name}");
        let body = serde_json::to_vec(object)
            .map_err(|err| self.fail(what.clone(), kube::Error::SerdeError(err)))?;
        let request = kube::core::Request::new(path)
            .create(&PostParams::default(), body)
            .map_err(|err| self.fail(what.clone(), kube::Error::BuildRequest(err)))?;
        match self.client.request::<Value>(request).await {
            Ok(created) => Ok(created),
            Err(error) if code(&error) == Some(409) => match self.get(path, &name).await? {
                Some(existing) => Ok(existing),
                None => Err(self.fail(what, error)),
            },
            Err(error) => Err(self.fail(what, error)),
        }
    }

    /// Reads one object; `None` when it does not exist.
    pub async fn get(&self, path: &str, name: &str) -> Result<Option<Value>, KubeError> {
        let what = format!("get {path}/{name}");
        let request = kube::core::Request::new(path)
            .get(name, &Default::default())
            .map_err(|err| self.fail(what.clone(), kube::Error::BuildRequest(err)))?;
        match self.client.request::<Value>(request).await {
            Ok(object) => Ok(Some(object)),
            Err(error) if code(&error) == Some(404) => Ok(None),
            Err(error) => Err(self.fail(what, error)),
        }
    }

    /// Lists the objects of a collection carrying labels matching `selector`.
    pub async fn list(&self, path: &str, selector: &str) -> Result<Vec<Value>, KubeError> {
        let what = format!("list {path}?labelSelector={selector}");
        let request = kube::core::Request::new(path)
            .list(&ListParams::default().labels(selector))
            .map_err(|err| self.fail(what.clone(), kube::Error::BuildRequest(err)))?;
        let list: Value = self
            .client
            .request(request)
            .await
            .map_err(|error| self.fail(what, error))?;
        Ok(match list.get("items") {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        })
    }

    /// Deletes one object (its dependents in the background); a missing one is not an error.
    pub async fn delete(&self, path: &str, name: &str) -> Result<(), KubeError> {
        let what = format!("delete {path}/{name}");
        let request = kube::core::Request::new(path)
            .delete(name, &DeleteParams::background())
            .map_err(|err| self.fail(what.clone(), kube::Error::BuildRequest(err)))?;
        match self.client.request::<Value>(request).await {
            Ok(_) => Ok(()),
            Err(error) if code(&error) == Some(404) => Ok(()),
            Err(error) => Err(self.fail(what, error)),
        }
    }

    /// Deletes every object of a collection carrying labels matching `selector`.
    pub async fn delete_labelled(&self, path: &str, selector: &str) -> Result<usize, KubeError> {
        let objects = self.list(path, selector).await?;
        for object in &objects {
            if let Some(name) = object.pointer("/metadata/name").and_then(Value::as_str) {
                self.delete(path, name).await?;
            }
        }
        Ok(objects.len())
    }

    /// The last lines of a pod's log (its first container's, or `container`'s).
    pub async fn log_tail(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        lines: i64,
    ) -> Result<String, KubeError> {
        let path = path("", "v1", Some(namespace), "pods");
        let what = format!("log of {path}/{pod}");
        let params = LogParams {
            container: container.map(str::to_string),
            tail_lines: Some(lines),
            ..LogParams::default()
        };
        let request = kube::core::Request::new(&path)
            .logs(pod, &params)
            .map_err(|err| self.fail(what.clone(), kube::Error::BuildRequest(err)))?;
        self.client
            .request_text(request)
            .await
            .map_err(|error| self.fail(what, error))
    }
}
