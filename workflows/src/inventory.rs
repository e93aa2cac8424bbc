//! The application view of a cluster: the live resources a user picks from when deciding what
//! to back up, grouped by namespace and kind (every served group, custom resources included),
//! with each object's name and labels and a count per kind.

use std::collections::{BTreeMap, BTreeSet};

use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope, verbs};
use serde::Serialize;

use crate::cluster::ClusterClient;
use crate::labels::LabelSelector;

/// Objects asked for per list call.
const PAGE: u32 = 500;

/// Resource types that describe what happens rather than what an application is made of.
const NOT_APPLICATION: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// What to show.
#[derive(Debug, Clone, Default)]
pub struct InventoryQuery {
    /// Only this namespace; every namespace when absent.
    pub namespace: Option<String>,
    /// Only objects whose labels match.
    pub selector: LabelSelector,
    /// The selector as given, sent to the API server so that it filters.
    pub selector_text: String,
    /// Only these kinds (e.g. `Deployment`, or plurals such as `deployments`; case-insensitive);
    /// all when empty.
    pub kinds: BTreeSet<String>,
}

/// One object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InventoryItem {
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// The objects of one kind in one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KindInventory {
    /// The API group (empty for the core group).
    pub group: String,
    /// The version listed (the most stable one served).
    pub version: String,
    /// The kind, e.g. `Deployment`.
    pub kind: String,
    /// How many objects.
    pub count: usize,
    /// The objects, by name.
    pub items: Vec<InventoryItem>,
}

/// The objects of one namespace, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceInventory {
    /// The namespace.
    pub namespace: String,
    /// Its kinds that have objects, by group and kind.
    pub kinds: Vec<KindInventory>,
}

/// What a cluster holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inventory {
    /// Namespaces with matching objects, by name.
    pub namespaces: Vec<NamespaceInventory>,
}

/// Why the inventory could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// A kind asked for is not served by the cluster.
    #[error("the cluster serves no namespaced kind `{0}`")]
    UnknownKind(String),
    /// The API server failed or refused.
    #[error("{what} on {server}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The API server.
        server: String,
        /// What kube-rs said.
        #[source]
        source: kube::Error,
    },
}

async fn discover(
    cluster: &ClusterClient,
) -> Result<Vec<(ApiResource, ApiCapabilities)>, InventoryError> {
    let discovery = match Discovery::new(cluster.client.clone())
        .run_aggregated()
        .await
    {
        Ok(discovery) => discovery,
        Err(_) => Discovery::new(cluster.client.clone())
            .run()
            .await
            .map_err(|source| InventoryError::Api {
                what: "discovery".to_string(),
                server: cluster.server.clone(),
                source,
            })?,
    };
    Ok(discovery
        .groups()
        .flat_map(|group| group.resources_by_stability())
        .collect())
}

fn wanted(query: &InventoryQuery, resource: &ApiResource) -> bool {
    query.kinds.is_empty()
        || query.kinds.iter().any(|kind| {
            kind.eq_ignore_ascii_case(&resource.kind) || kind.eq_ignore_ascii_case(&resource.plural)
        })
}

/// Lists the namespaced objects `query` picks, grouped by namespace and kind.
#[tracing::instrument(skip_all, fields(cluster = %cluster.server))]
pub async fn inventory(
    cluster: &ClusterClient,
    query: &InventoryQuery,
) -> Result<Inventory, InventoryError> {
    let types: Vec<ApiResource> = discover(cluster)
        .await?
        .into_iter()
        .filter(|(resource, caps)| {
            caps.scope == Scope::Namespaced
                && caps.supports_operation(verbs::LIST)
                && !NOT_APPLICATION.contains(&(resource.group.as_str(), resource.plural.as_str()))
        })
        .map(|(resource, _)| resource)
        .collect();
    for kind in &query.kinds {
        if !types.iter().any(|resource| {
            kind.eq_ignore_ascii_case(&resource.kind) || kind.eq_ignore_ascii_case(&resource.plural)
        }) {
            return Err(InventoryError::UnknownKind(kind.clone()));
        }
    }
    let mut by_namespace: BTreeMap<String, BTreeMap<(String, String), KindInventory>> =
        BTreeMap::new();
    for resource in types.iter().filter(|resource| wanted(query, resource)) {
        let api: Api<DynamicObject> = match &query.namespace {
            Some(namespace) => Api::namespaced_with(cluster.client.clone(), namespace, resource),
            None => Api::all_with(cluster.client.clone(), resource),
        };
        let mut params = ListParams::default().limit(PAGE);
        if !query.selector_text.trim().is_empty() {
            params = params.labels(&query.selector_text);
        }
        loop {
            let page = api
                .list_metadata(&params)
                .await
                .map_err(|source| InventoryError::Api {
                    what: format!("listing {}", resource.plural),
                    server: cluster.server.clone(),
                    source,
                })?;
            for object in &page.items {
                let labels = object.metadata.labels.clone().unwrap_or_default();
                // The server filtered already; matching here too keeps the answer right on an
                // API server that ignores the selector for some type.
                if !query.selector.matches(&labels) {
                    continue;
                }
                let namespace = object.metadata.namespace.clone().unwrap_or_default();
                let kind = by_namespace
                    .entry(namespace)
                    .or_default()
                    .entry((resource.group.clone(), resource.kind.clone()))
                    .or_insert_with(|| KindInventory {
                        group: resource.group.clone(),
                        version: resource.version.clone(),
                        kind: resource.kind.clone(),
                        count: 0,
                        items: Vec::new(),
                    });
                kind.count += 1;
                kind.items.push(InventoryItem {
                    name: object.metadata.name.clone().unwrap_or_default(),
                    labels,
                });
            }
            match page.metadata.continue_.filter(|token| !token.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
    }
    Ok(Inventory {
        namespaces: by_namespace
            .into_iter()
            .map(|(namespace, kinds)| NamespaceInventory {
                namespace,
                kinds: kinds
                    .into_values()
                    .map(|mut kind| {
                        kind.items.sort_by(|a, b| a.name.cmp(&b.name));
                        kind
                    })
                    .collect(),
            })
            .collect(),
    })
}
