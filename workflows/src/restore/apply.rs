//! Creating prepared objects in the target cluster: in dependency order, several at once within
//! one rank, CRDs waited until established (and discovery refreshed) before their custom
//! resources, and an existing object treated by the restore's policy (keep it, replace it, or
//! update it). Every object ends with one [`ObjectResult`].

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::discovery::{ApiResource, Discovery, Scope};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::order;
use super::transform::{RESTORE_LABEL, kind_key};
use crate::cluster::ClusterClient;

/// Objects created at once within one rank.
pub const CREATES_IN_FLIGHT: usize = 16;
/// How long a CRD may take to be established, or a replaced object to go.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What to do with an object that already exists in the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExistingPolicy {
    /// Leave it as it is (the restored copy is skipped).
    #[default]
    Keep,
    /// Delete it and create the backed-up copy (a PVC's data included).
    Replace,
    /// Merge the backed-up copy into it.
    Update,
}

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Created.
    Created,
    /// Not restored (see the reason).
    Skipped,
    /// Deleted and created again.
    Replaced,
    /// Merged into the existing object.
    Updated,
    /// The cluster refused it (see the reason).
    Failed,
}

/// One object's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectResult {
    /// `kind` or `kind.group`.
    pub kind: String,
    /// Namespace in the target, for namespaced objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// What happened.
    pub outcome: Outcome,
    /// Why it was skipped or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Served resource types of the target, by `kind.group`.
struct Served(HashMap<String, (ApiResource, bool)>);

impl Served {
    async fn discover(cluster: &ClusterClient) -> Result<Self, kube::Error> {
        let discovery = match Discovery::new(cluster.client.clone())
            .run_aggregated()
            .await
        {
            Ok(discovery) => discovery,
            Err(_) => Discovery::new(cluster.client.clone()).run().await?,
        };
        let mut served = HashMap::new();
        for group in discovery.groups() {
            for (api, caps) in group.resources_by_stability() {
                let key = if api.group.is_empty() {
                    api.kind.clone()
                } else {
                    format!("{}.{}", api.kind, api.group)
                };
                served.insert(key, (api, caps.scope == Scope::Namespaced));
            }
        }
        Ok(Self(served))
    }

    /// The collection path of an object (at the object's own version).
    fn path(&self, object: &Value, kind: &str, namespace: Option<&str>) -> Option<String> {
        let (api, namespaced) = self.0.get(kind)?;
        let api_version = object.get("apiVersion").and_then(Value::as_str)?;
        let base = if api.group.is_empty() {
            format!("/api/{api_version}")
        } else {
            format!("/apis/{api_version}")
        };
        Some(match (namespaced, namespace) {
            (true, Some(ns)) => format!("{base}/namespaces/{ns}/{}", api.plural),
            _ => format!("{base}/{}", api.plural),
        })
    }
}

fn name_of(object: &Value) -> (Option<String>, String) {
    let meta = |field: &str| {
        object
            .get("metadata")
            .and_then(|m| m.get(field))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    (meta("namespace"), meta("name").unwrap_or_default())
}

fn result(object: &Value, outcome: Outcome, reason: Option<String>) -> ObjectResult {
    let (namespace, name) = name_of(object);
    ObjectResult {
        kind: kind_key(object),
        namespace,
        name,
        outcome,
        reason,
    }
}

fn status_reason(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

/// The policy for an existing object of `kind`: a namespace or a CRD is never replaced, because
/// deleting it would delete everything in it (or every object of its type); it is updated. A
/// PersistentVolume is never replaced either: it holds its claim's data and cannot go while the
/// claim is bound (a replaced claim gets a new volume); it is kept.
fn policy_for(kind: &str, policy: ExistingPolicy) -> ExistingPolicy {
    match (kind, policy) {
        ("PersistentVolume", ExistingPolicy::Replace) => ExistingPolicy::Keep,
        (
            "Namespace" | "CustomResourceDefinition.apiextensions.k8s.io",
            ExistingPolicy::Replace,
        ) => ExistingPolicy::Update,
        _ => policy,
    }
}

fn is_code(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

/// Creates objects in a cluster.
pub struct Applier<'c> {
    cluster: &'c ClusterClient,
    served: Served,
    policy: ExistingPolicy,
}

impl<'c> Applier<'c> {
    /// Discovers what the target serves.
    pub async fn new(
        cluster: &'c ClusterClient,
        policy: ExistingPolicy,
    ) -> Result<Self, kube::Error> {
        Ok(Self {
            served: Served::discover(cluster).await?,
            cluster,
            policy,
        })
    }

    /// Creates `objects` (already prepared) in dependency order; `overrides` puts kinds first.
    pub async fn apply_all(
        &mut self,
        mut objects: Vec<Value>,
        overrides: &[String],
    ) -> Vec<ObjectResult> {
        objects.sort_by_cached_key(|object| order::rank(&kind_key(object), overrides));
        let mut results = Vec::with_capacity(objects.len());
        let mut rest = objects.into_iter().peekable();
        while let Some(first) = rest.next() {
            let rank = order::rank(&kind_key(&first), overrides);
            let mut batch = vec![first];
            while let Some(next) = rest.next_if(|o| order::rank(&kind_key(o), overrides) == rank) {
                batch.push(next);
            }
            let crds = kind_key(&batch[0]) == "CustomResourceDefinition.apiextensions.k8s.io";
            let this = &*self;
            let done: Vec<ObjectResult> = futures::stream::iter(batch)
                .map(|object| this.apply_one(object))
                .buffer_unordered(CREATES_IN_FLIGHT)
                .collect()
                .await;
            if crds {
                self.settle_crds(&done).await;
            }
            results.extend(done);
        }
        results
    }

    /// Waits until restored CRDs are established, then learns their resources.
    async fn settle_crds(&mut self, done: &[ObjectResult]) {
        let path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
        for crd in done.iter().filter(|r| r.outcome != Outcome::Failed) {
            let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
            while tokio::time::Instant::now() < deadline {
                let Ok(request) =
                    kube::core::Request::new(path).get(&crd.name, &Default::default())
                else {
                    break;
                };
                let established = self
                    .cluster
                    .client
                    .request::<Value>(request)
                    .await
                    .ok()
                    .and_then(|object| object.pointer("/status/conditions").cloned())
                    .and_then(|conditions| conditions.as_array().cloned())
                    .is_some_and(|conditions| {
                        conditions.iter().any(|c| {
                            c.get("type").and_then(Value::as_str) == Some("Established")
                                && c.get("status").and_then(Value::as_str) == Some("True")
                        })
                    });
                if established {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        match Served::discover(self.cluster).await {
            Ok(served) => self.served = served,
            Err(error) => tracing::warn!(%error, "rediscovery after CRDs failed"),
        }
    }

    async fn apply_one(&self, object: Value) -> ObjectResult {
        let kind = kind_key(&object);
        let (namespace, name) = name_of(&object);
        let Some(path) = self.served.path(&object, &kind, namespace.as_deref()) else {
            return result(
                &object,
                Outcome::Failed,
                Some(format!("the target cluster does not serve {kind}")),
            );
        };
        let client = &self.cluster.client;
        let body = match serde_json::to_vec(&object) {
            Ok(body) => body,
            Err(error) => return result(&object, Outcome::Failed, Some(error.to_string())),
        };
        let create = |body: Vec<u8>| async {
            let request = kube::core::Request::new(&path)
                .create(&PostParams::default(), body)
                .map_err(kube::Error::BuildRequest)?;
            client.request::<Value>(request).await
        };
        match create(body.clone()).await {
            Ok(_) => result(&object, Outcome::Created, None),
            Err(error)
                if is_code(&error, 409)
                    && self.made_by_this_restore(&path, &name, &object).await =>
            {
                // An earlier attempt of this restore created it before the process stopped.
                result(&object, Outcome::Created, None)
            }
            Err(error) if is_code(&error, 409) => match policy_for(&kind, self.policy) {
                ExistingPolicy::Keep => result(
                    &object,
                    Outcome::Skipped,
                    Some("exists in the target; kept".into()),
                ),
                ExistingPolicy::Update => {
                    let patched = async {
                        let request = kube::core::Request::new(&path)
                            .patch(&name, &PatchParams::default(), &Patch::Merge(&object))
                            .map_err(kube::Error::BuildRequest)?;
                        client.request::<Value>(request).await
                    };
                    match patched.await {
                        Ok(_) => result(&object, Outcome::Updated, None),
                        Err(error) => result(&object, Outcome::Failed, Some(status_reason(&error))),
                    }
                }
                ExistingPolicy::Replace => match self.replace(&path, &name, &kind, body).await {
                    Ok(()) => result(&object, Outcome::Replaced, None),
                    Err(reason) => result(&object, Outcome::Failed, Some(reason)),
                },
            },
            Err(error) => result(&object, Outcome::Failed, Some(status_reason(&error))),
        }
    }

    /// Whether the existing object of this name carries this restore's label.
    async fn made_by_this_restore(&self, path: &str, name: &str, object: &Value) -> bool {
        let label = |o: &Value| {
            o.pointer("/metadata/labels")
                .and_then(|labels| labels.get(RESTORE_LABEL))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let Some(ours) = label(object) else {
            return false;
        };
        let Ok(request) = kube::core::Request::new(path).get(name, &Default::default()) else {
            return false;
        };
        match self.cluster.client.request::<Value>(request).await {
            Ok(existing) => label(&existing).as_deref() == Some(ours.as_str()),
            Err(_) => false,
        }
    }

    /// Deletes those of `objects` (prepared) that exist in the target and were not made by this
    /// restore, waiting until each is gone. A replace restore does this to the workloads before
    /// it replaces the claims they mount: a claim in use is not deleted until its pods are gone.
    /// Returns one result per object removed (`Replaced`: it is created again later) or failed.
    pub async fn remove_existing(&self, objects: Vec<Value>) -> Vec<ObjectResult> {
        let this = self;
        futures::stream::iter(objects)
            .map(|owned| async move {
                let object = &owned;
                let kind = kind_key(object);
                let (namespace, name) = name_of(object);
                let path = this.served.path(object, &kind, namespace.as_deref())?;
                let request = kube::core::Request::new(&path)
                    .get(&name, &Default::default())
                    .ok()?;
                match this.cluster.client.request::<Value>(request).await {
                    Err(error) if is_code(&error, 404) => return None,
                    _ if this.made_by_this_restore(&path, &name, object).await => return None,
                    _ => {}
                }
                Some(match this.delete_and_wait(&path, &name, &kind).await {
                    Ok(()) => result(object, Outcome::Replaced, None),
                    Err(reason) => result(object, Outcome::Failed, Some(reason)),
                })
            })
            .buffer_unordered(CREATES_IN_FLIGHT)
            .filter_map(std::future::ready)
            .collect()
            .await
    }

    /// Deletes the existing object, waits until it is gone, and creates the restored one.
    async fn replace(
        &self,
        path: &str,
        name: &str,
        kind: &str,
        body: Vec<u8>,
    ) -> Result<(), String> {
        self.delete_and_wait(path, name, kind).await?;
        let request = kube::core::Request::new(path)
            .create(&PostParams::default(), body)
            .map_err(|e| e.to_string())?;
        self.cluster
            .client
            .request::<Value>(request)
            .await
            .map(|_| ())
            .map_err(|error| status_reason(&error))
    }

    /// Deletes object `name` at `path` and waits until it is gone; one already gone is fine. A
    /// workload goes in the foreground (its pods before it, so the claims they mount are free
    /// once it is gone); anything else in the background, as it owns nothing.
    async fn delete_and_wait(&self, path: &str, name: &str, kind: &str) -> Result<(), String> {
        let client = &self.cluster.client;
        let params = if order::is_workload(kind) {
            DeleteParams::foreground()
        } else {
            DeleteParams::background()
        };
        let request = kube::core::Request::new(path)
            .delete(name, &params)
            .map_err(|e| e.to_string())?;
        match client.request::<Value>(request).await {
            Ok(_) => {}
            Err(error) if is_code(&error, 404) => {}
            Err(error) => {
                return Err(format!(
                    "deleting the existing object: {}",
                    status_reason(&error)
                ));
            }
        }
        let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
        loop {
            let request = kube::core::Request::new(path)
                .get(name, &Default::default())
                .map_err(|e| e.to_string())?;
            match client.request::<Value>(request).await {
                Err(error) if is_code(&error, 404) => break,
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err("the existing object did not go away in time".into());
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        Ok(())
    }
}
