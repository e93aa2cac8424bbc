//! The collect step: which objects of a cluster a backup holds, read as the API returns them.
//!
//! It discovers every served resource (CRDs included) at its most stable version, resolves the
//! selected namespaces, lists each resource type with pagination and the label selector (several
//! types at once, each by a task of its own that also encodes its objects, pages handed over
//! through a bounded queue so memory stays flat), and pulls in what the selection needs to come
//! back whole: the PVs of selected PVCs, the storage classes they name, and the CRDs of
//! selected custom resources. Objects go to an [`ObjectSink`] one by one, with `apiVersion` and
//! `kind` set (list items carry neither).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use kube::api::ListParams;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope, verbs};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use super::spec::{ClusterResources, Selection};
use crate::cluster::ClusterClient;

/// Objects per list request.
pub const PAGE_SIZE: u32 = 500;
/// Resource types listed at once.
pub const LISTS_IN_FLIGHT: usize = 4;
/// Pages waiting for the sink.
const PAGES_QUEUED: usize = 8;

/// Resource types never backed up: they describe the cluster's machinery, not applications, and
/// a restore could not create them meaningfully.
const NEVER_BACKED_UP: [(&str, &str); 5] = [
    ("", "nodes"),
    ("", "events"),
    ("events.k8s.io", "events"),
    ("storage.k8s.io", "csinodes"),
    ("storage.k8s.io", "volumeattachments"),
];

/// One object as collected: the repository's record of it (group, version, kind, namespace,
/// name, and the body as JSON with `apiVersion` and `kind`).
pub type CollectedObject = crate::storage::ResourceRecord;

/// Where collected objects go (the backup's resource pack).
pub trait ObjectSink: Send {
    /// Takes one object.
    fn put(
        &mut self,
        object: CollectedObject,
    ) -> impl Future<Output = Result<(), CollectError>> + Send;
}

/// A PVC the backup holds, for the volume steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The bound PV, if any.
    pub volume_name: Option<String>,
    /// The storage class, if any.
    pub storage_class: Option<String>,
}

/// What the collect step found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectSummary {
    /// Objects collected.
    pub objects: u64,
    /// Objects per `kind.group` (`Deployment.apps`, `ConfigMap`).
    pub kinds: BTreeMap<String, u64>,
    /// The selected namespaces.
    pub namespaces: Vec<String>,
    /// The selected PVCs.
    pub claims: Vec<ClaimRef>,
}

/// Why collecting failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// A request to the API server failed.
    #[error("{what}: {source}")]
    Api {
        /// What was asked.
        what: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// Namespaces the backup names do not exist.
    #[error("namespaces not found in the cluster: {}", .0.join(", "))]
    MissingNamespaces(Vec<String>),
    /// The API server answered something that is not an object.
    #[error("{what}: {message}")]
    Malformed {
        /// What was read.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// The sink refused an object.
    #[error("storing collected objects: {0}")]
    Sink(String),
}

impl CollectError {
    /// Whether trying again may help (the API server was unreachable or overloaded).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { source, .. } => match source {
                kube::Error::Api(status) => status.code >= 500 || status.code == 429,
                _ => true,
            },
            Self::Sink(_) => true,
            Self::MissingNamespaces(_) | Self::Malformed { .. } => false,
        }
    }
}

/// A resource type to list.
#[derive(Debug, Clone)]
struct ResourceType {
    resource: ApiResource,
    namespaced: bool,
}

impl ResourceType {
    fn key(&self) -> String {
        kind_key(&self.resource.group, &self.resource.kind)
    }

    fn path(&self, namespace: Option<&str>) -> String {
        let base = if self.resource.group.is_empty() {
            format!("/api/{}", self.resource.version)
        } else {
            format!("/apis/{}/{}", self.resource.group, self.resource.version)
        };
        match namespace {
            Some(namespace) => format!("{base}/namespaces/{namespace}/{}", self.resource.plural),
            None => format!("{base}/{}", self.resource.plural),
        }
    }
}

fn kind_key(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

/// Whether a user's entry (`deployments`, `deployments.apps`, `Deployment`) names a resource.
fn names_resource(entry: &str, resource: &ApiResource) -> bool {
    entry == resource.plural
        || entry.eq_ignore_ascii_case(&resource.kind)
        || (!resource.group.is_empty()
            && entry == format!("{}.{}", resource.plural, resource.group))
        || (!resource.group.is_empty() && entry == kind_key(&resource.group, &resource.kind))
}

fn wanted(selection: &Selection, resource: &ApiResource, caps: &ApiCapabilities) -> bool {
    caps.supports_operation(verbs::LIST)
        && !NEVER_BACKED_UP
            .iter()
            .any(|(group, plural)| resource.group == *group && resource.plural == *plural)
        && (selection.include_resources.is_empty()
            || selection
                .include_resources
                .iter()
                .any(|entry| names_resource(entry, resource)))
        && !selection
            .exclude_resources
            .iter()
            .any(|entry| names_resource(entry, resource))
}

/// One page of a list.
#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    metadata: PageMeta,
    #[serde(default)]
    items: Vec<Value>,
}

#[derive(Deserialize, Default)]
struct PageMeta {
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

/// Lists one resource type (in one namespace or all), every page, with the label selector, and
/// sends each page through `convert`.
async fn list_pages<T>(
    cluster: &ClusterClient,
    resource: &ResourceType,
    namespace: Option<&str>,
    selector: Option<&str>,
    pages: &mpsc::Sender<Result<(ResourceType, T), CollectError>>,
    convert: impl Fn(Vec<Value>) -> Result<T, CollectError>,
) -> Result<(), CollectError> {
    let path = resource.path(namespace);
    let mut continue_token = None;
    loop {
        let mut params = ListParams::default().limit(PAGE_SIZE);
        if let Some(selector) = selector {
            params = params.labels(selector);
        }
        params.continue_token = continue_token.take();
        let request = kube::core::Request::new(&path)
            .list(&params)
            .map_err(|err| CollectError::Malformed {
                what: format!("list {path}"),
                message: err.to_string(),
            })?;
        let page: Page =
            cluster
                .client
                .request(request)
                .await
                .map_err(|source| CollectError::Api {
                    what: format!("list {path} on {}", cluster.server),
                    source,
                })?;
        let items = convert(page.items)?;
        if pages.send(Ok((resource.clone(), items))).await.is_err() {
            // The consumer stopped (it failed); its error is the one reported.
            return Ok(());
        }
        match page
            .metadata
            .continue_token
            .filter(|token| !token.is_empty())
        {
            Some(token) => continue_token = Some(token),
            None => return Ok(()),
        }
    }
}

/// Reads one object by name; `None` when it does not exist.
async fn get_object(
    cluster: &ClusterClient,
    resource: &ResourceType,
    name: &str,
) -> Result<Option<Value>, CollectError> {
    let path = resource.path(None);
    let request = kube::core::Request::new(&path)
        .get(name, &Default::default())
        .map_err(|err| CollectError::Malformed {
            what: format!("get {path}/{name}"),
            message: err.to_string(),
        })?;
    match cluster.client.request::<Value>(request).await {
        Ok(object) => Ok(Some(object)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(source) => Err(CollectError::Api {
            what: format!("get {path}/{name} on {}", cluster.server),
            source,
        }),
    }
}

/// The collection under way: what was put, and what the selected objects need.
struct Collector<'s, S> {
    sink: &'s mut S,
    summary: CollectSummary,
    seen: BTreeSet<(String, String, String)>,
    volumes: BTreeSet<String>,
    storage_classes: BTreeSet<String>,
    custom_resources: BTreeSet<(String, String)>,
}

fn meta_str<'v>(object: &'v Value, field: &str) -> Option<&'v str> {
    object.get("metadata")?.get(field)?.as_str()
}

/// What a collected object needs to be restored whole.
#[derive(Debug)]
enum Needs {
    /// A PVC: its volume and storage class.
    Claim(ClaimRef),
    /// A PV: its storage class, if any.
    StorageClass(Option<String>),
    /// Any other object: the CRD of its type, if it is a custom resource.
    Definition,
}

/// An object as listed, made ready for the sink: `apiVersion` and `kind` set, encoded, and
/// what it needs noted. Made by the list tasks, so that encoding runs beside the other lists.
#[derive(Debug)]
struct Prepared {
    namespace: Option<String>,
    name: String,
    body: Vec<u8>,
    needs: Needs,
}

impl Prepared {
    fn new(api: &ApiResource, mut object: Value) -> Result<Self, CollectError> {
        let Some(name) = meta_str(&object, "name").map(str::to_string) else {
            return Err(CollectError::Malformed {
                what: format!("an object of {}", api.plural),
                message: "it has no metadata.name".to_string(),
            });
        };
        let namespace = meta_str(&object, "namespace").map(str::to_string);
        if let Some(map) = object.as_object_mut() {
            map.insert("apiVersion".into(), Value::String(api.api_version.clone()));
            map.insert("kind".into(), Value::String(api.kind.clone()));
        }
        let needs = needs(api, &object, namespace.as_deref(), &name);
        let body = serde_json::to_vec(&object).map_err(|err| CollectError::Malformed {
            what: format!("{} {name}", api.kind),
            message: err.to_string(),
        })?;
        Ok(Self {
            namespace,
            name,
            body,
            needs,
        })
    }
}

/// What `object` needs to be restored whole.
fn needs(api: &ApiResource, object: &Value, namespace: Option<&str>, name: &str) -> Needs {
    match (api.group.as_str(), api.plural.as_str()) {
        ("", "persistentvolumeclaims") => {
            let spec = object.get("spec");
            let field = |key: &str| {
                spec.and_then(|spec| spec.get(key))
                    .and_then(Value::as_str)
                    .filter(|text| !text.is_empty())
                    .map(str::to_string)
            };
            Needs::Claim(ClaimRef {
                namespace: namespace.unwrap_or_default().to_string(),
                name: name.to_string(),
                volume_name: field("volumeName"),
                storage_class: field("storageClassName"),
            })
        }
        ("", "persistentvolumes") => Needs::StorageClass(
            object
                .pointer("/spec/storageClassName")
                .and_then(Value::as_str)
                .filter(|class| !class.is_empty())
                .map(str::to_string),
        ),
        _ => Needs::Definition,
    }
}

impl<S: ObjectSink> Collector<'_, S> {
    /// Prepares and puts one object read outside the lists.
    async fn put_value(
        &mut self,
        resource: &ResourceType,
        object: Value,
    ) -> Result<(), CollectError> {
        let prepared = Prepared::new(&resource.resource, object)?;
        self.put(resource, prepared).await
    }

    async fn put(
        &mut self,
        resource: &ResourceType,
        prepared: Prepared,
    ) -> Result<(), CollectError> {
        let api = &resource.resource;
        let identity = (
            api.group.clone(),
            api.kind.clone(),
            format!("{:?}/{}", prepared.namespace, prepared.name),
        );
        if !self.seen.insert(identity) {
            return Ok(());
        }
        self.note_needs(api, prepared.needs);
        self.summary.objects += 1;
        *self.summary.kinds.entry(resource.key()).or_default() += 1;
        self.sink
            .put(CollectedObject {
                group: api.group.clone(),
                version: api.version.clone(),
                kind: api.kind.clone(),
                namespace: prepared.namespace,
                name: prepared.name,
                body: prepared.body,
            })
            .await
    }

    /// Records what a collected object needs to be restored whole.
    fn note_needs(&mut self, api: &ApiResource, needs: Needs) {
        match needs {
            Needs::Claim(claim) => {
                self.volumes.extend(claim.volume_name.clone());
                self.storage_classes.extend(claim.storage_class.clone());
                self.summary.claims.push(claim);
            }
            Needs::StorageClass(class) => self.storage_classes.extend(class),
            Needs::Definition => {
                self.custom_resources
                    .insert((api.group.clone(), api.plural.clone()));
            }
        }
    }
}

/// Discovers the served resource types at their most stable versions.
async fn discover(
    cluster: &ClusterClient,
) -> Result<Vec<(ApiResource, ApiCapabilities)>, CollectError> {
    let discovery = match Discovery::new(cluster.client.clone())
        .run_aggregated()
        .await
    {
        Ok(discovery) => discovery,
        Err(_) => Discovery::new(cluster.client.clone())
            .run()
            .await
            .map_err(|source| CollectError::Api {
                what: format!("discovery on {}", cluster.server),
                source,
            })?,
    };
    Ok(discovery
        .groups()
        .flat_map(|group| group.resources_by_stability())
        .collect())
}

/// The core `namespaces` resource.
fn namespaces_type() -> ResourceType {
    ResourceType {
        resource: ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "Namespace".into(),
            plural: "namespaces".into(),
        },
        namespaced: false,
    }
}

/// The Namespace objects `selection` picks, and whether it picks every namespace. A namespace
/// named in the selection that does not exist is an error naming it.
async fn resolve_namespaces(
    cluster: &ClusterClient,
    selection: &Selection,
) -> Result<(Vec<Value>, bool), CollectError> {
    // The selected namespaces.
    let (page_tx, mut page_rx) = mpsc::channel(PAGES_QUEUED);
    list_pages(cluster, &namespaces_type(), None, None, &page_tx, Ok).await?;
    drop(page_tx);
    let mut all_namespaces = Vec::new();
    while let Some(page) = page_rx.recv().await {
        all_namespaces.extend(page?.1);
    }
    let names: BTreeSet<&str> = all_namespaces
        .iter()
        .filter_map(|ns| meta_str(ns, "name"))
        .collect();
    let missing: Vec<String> = selection
        .namespaces
        .iter()
        .filter(|name| !names.contains(name.as_str()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(CollectError::MissingNamespaces(missing));
    }
    let namespace_filter = match &selection.namespace_selector {
        Some(query) => Some(crate::labels::LabelSelector::parse(query).map_err(|err| {
            CollectError::Malformed {
                what: "namespace_selector".to_string(),
                message: err.to_string(),
            }
        })?),
        None => None,
    };
    let selected_namespaces: Vec<Value> = all_namespaces
        .into_iter()
        .filter(|ns| {
            let name = meta_str(ns, "name").unwrap_or_default();
            let by_name =
                selection.namespaces.is_empty() || selection.namespaces.iter().any(|n| n == name);
            let by_label = namespace_filter.as_ref().is_none_or(|filter| {
                let labels = ns.pointer("/metadata/labels");
                filter.matches_with(|key| labels.and_then(|l| l.get(key)).and_then(Value::as_str))
            });
            by_name && by_label
        })
        .collect();
    let every_namespace = selection.namespaces.is_empty() && namespace_filter.is_none();
    Ok((selected_namespaces, every_namespace))
}

/// The names of the namespaces `selection` picks (for rules, which run before the collection).
pub async fn selected_namespaces(
    cluster: &ClusterClient,
    selection: &Selection,
) -> Result<Vec<String>, CollectError> {
    let (namespaces, _) = resolve_namespaces(cluster, selection).await?;
    Ok(namespaces
        .iter()
        .filter_map(|ns| meta_str(ns, "name").map(str::to_string))
        .collect())
}

/// Collects the objects `selection` picks from the cluster into `sink`; `progress` gets the count
/// of objects collected so far after every page.
#[tracing::instrument(skip_all, fields(cluster = %cluster.server))]
pub async fn collect<S: ObjectSink>(
    cluster: &ClusterClient,
    selection: &Selection,
    sink: &mut S,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<CollectSummary, CollectError> {
    let discovered = discover(cluster).await?;
    let namespaces_type = namespaces_type();
    let (selected_namespaces, every_namespace) = resolve_namespaces(cluster, selection).await?;
    let namespace_names: BTreeSet<String> = selected_namespaces
        .iter()
        .filter_map(|ns| meta_str(ns, "name").map(str::to_string))
        .collect();

    let mut collector = Collector {
        sink,
        summary: CollectSummary {
            namespaces: namespace_names.iter().cloned().collect(),
            ..CollectSummary::default()
        },
        seen: BTreeSet::new(),
        volumes: BTreeSet::new(),
        storage_classes: BTreeSet::new(),
        custom_resources: BTreeSet::new(),
    };
    if wanted_type(selection, &discovered, &namespaces_type) {
        let selector = selection
            .selector
            .as_deref()
            .map(crate::labels::LabelSelector::parse)
            .transpose()
            .map_err(|err| CollectError::Malformed {
                what: "selector".to_string(),
                message: err.to_string(),
            })?;
        for namespace in selected_namespaces {
            let labels = namespace.pointer("/metadata/labels").cloned();
            let matches = selector.as_ref().is_none_or(|selector| {
                selector.matches_with(|key| {
                    labels
                        .as_ref()
                        .and_then(|l| l.get(key))
                        .and_then(Value::as_str)
                })
            });
            // A label-selected backup still needs the namespaces its objects live in.
            if matches || selection.selector.is_some() {
                collector.put_value(&namespaces_type, namespace).await?;
            }
        }
    }

    // Namespaced objects, then cluster-scoped ones when the whole cluster is wanted.
    let include_cluster = match selection.cluster_resources {
        ClusterResources::Include => true,
        ClusterResources::Needed => false,
        ClusterResources::Auto => every_namespace && selection.selector.is_none(),
    };
    let mut lists: Vec<(ResourceType, Option<String>)> = Vec::new();
    for (api, caps) in &discovered {
        if !wanted(selection, api, caps) || (api.group.is_empty() && api.plural == "namespaces") {
            continue;
        }
        let resource = ResourceType {
            resource: api.clone(),
            namespaced: caps.scope == Scope::Namespaced,
        };
        if resource.namespaced {
            if every_namespace {
                lists.push((resource, None));
            } else {
                for namespace in &namespace_names {
                    lists.push((resource.clone(), Some(namespace.clone())));
                }
            }
        } else if include_cluster {
            lists.push((resource, None));
        }
    }
    // Each list runs as a task of its own, which also decodes, filters and encodes its pages:
    // that work spreads over the runtime's threads while this task feeds the sink in order of
    // arrival.
    let (page_tx, mut page_rx) = mpsc::channel(PAGES_QUEUED);
    let selector = selection.selector.clone();
    let kept_namespaces = Arc::new(namespace_names);
    let producer = {
        let cluster = cluster.clone();
        let kept_namespaces = Arc::clone(&kept_namespaces);
        futures::stream::iter(lists)
            .map(move |(resource, namespace)| {
                let page_tx = page_tx.clone();
                let selector = selector.clone();
                let cluster = cluster.clone();
                let kept_namespaces = Arc::clone(&kept_namespaces);
                tokio::spawn(async move {
                    let convert = |items: Vec<Value>| {
                        items
                            .into_iter()
                            .filter(|item| {
                                !resource.namespaced
                                    || every_namespace
                                    || meta_str(item, "namespace")
                                        .is_some_and(|ns| kept_namespaces.contains(ns))
                            })
                            .map(|item| Prepared::new(&resource.resource, item))
                            .collect::<Result<Vec<_>, _>>()
                    };
                    if let Err(error) = list_pages(
                        &cluster,
                        &resource,
                        namespace.as_deref(),
                        selector.as_deref(),
                        &page_tx,
                        convert,
                    )
                    .await
                    {
                        let _ = page_tx.send(Err(error)).await;
                    }
                })
            })
            .buffer_unordered(LISTS_IN_FLIGHT)
            .fold(None, |failure: Option<String>, finished| async move {
                failure.or_else(|| finished.err().map(|error| error.to_string()))
            })
    };
    let producer = tokio::spawn(producer);
    let consumed = async {
        while let Some(page) = page_rx.recv().await {
            let (resource, items) = page?;
            for item in items {
                collector.put(&resource, item).await?;
            }
            progress(collector.summary.objects);
        }
        Ok::<(), CollectError>(())
    }
    .await;
    // On an error the channel closes and the list tasks stop at their next page.
    drop(page_rx);
    consumed?;
    // A list task that panicked sent none of its remaining pages: the collection is incomplete.
    let failure = match producer.await {
        Ok(failure) => failure,
        Err(error) => Some(error.to_string()),
    };
    if let Some(message) = failure {
        return Err(CollectError::Malformed {
            what: "listing the cluster's objects".to_string(),
            message,
        });
    }

    // What the selected objects need: PVs, their storage classes, CRDs.
    if !include_cluster {
        pull_in_needs(cluster, selection, &discovered, &mut collector).await?;
        progress(collector.summary.objects);
    }
    Ok(collector.summary)
}

fn wanted_type(
    selection: &Selection,
    discovered: &[(ApiResource, ApiCapabilities)],
    resource: &ResourceType,
) -> bool {
    discovered
        .iter()
        .find(|(api, _)| {
            api.group == resource.resource.group && api.plural == resource.resource.plural
        })
        .is_some_and(|(api, caps)| wanted(selection, api, caps))
}

async fn pull_in_needs<S: ObjectSink>(
    cluster: &ClusterClient,
    selection: &Selection,
    discovered: &[(ApiResource, ApiCapabilities)],
    collector: &mut Collector<'_, S>,
) -> Result<(), CollectError> {
    let by_plural: HashMap<(&str, &str), ResourceType> = discovered
        .iter()
        .map(|(api, caps)| {
            (
                (api.group.as_str(), api.plural.as_str()),
                ResourceType {
                    resource: api.clone(),
                    namespaced: caps.scope == Scope::Namespaced,
                },
            )
        })
        .collect();
    let wanted_here = |group: &str, plural: &str| {
        discovered
            .iter()
            .find(|(api, _)| api.group == group && api.plural == plural)
            .filter(|(api, caps)| wanted(selection, api, caps))
            .map(|(api, _)| by_plural[&(api.group.as_str(), api.plural.as_str())].clone())
    };
    if let Some(pvs) = wanted_here("", "persistentvolumes") {
        for name in std::mem::take(&mut collector.volumes) {
            if let Some(pv) = get_object(cluster, &pvs, &name).await? {
                collector.put_value(&pvs, pv).await?;
            }
        }
    }
    if let Some(classes) = wanted_here("storage.k8s.io", "storageclasses") {
        for name in std::mem::take(&mut collector.storage_classes) {
            if let Some(class) = get_object(cluster, &classes, &name).await? {
                collector.put_value(&classes, class).await?;
            }
        }
    }
    if let Some(crds) = wanted_here("apiextensions.k8s.io", "customresourcedefinitions") {
        let custom = std::mem::take(&mut collector.custom_resources);
        for (group, plural) in custom {
            // Built-in types have no CRD; a 404 here is the normal answer for them.
            if group.is_empty() || !by_plural.contains_key(&(group.as_str(), plural.as_str())) {
                continue;
            }
            if group.ends_with(".k8s.io") && !group.starts_with("snapshot.storage") {
                continue;
            }
            if let Some(crd) = get_object(cluster, &crds, &format!("{plural}.{group}")).await? {
                collector.put_value(&crds, crd).await?;
            }
        }
    }
    Ok(())
}
