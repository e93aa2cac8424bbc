//! The Kubernetes REST surface over a [`Cluster`]: parses a request's path (`/api/v1/...`,
//! `/apis/G/V/...`, namespaced or not, subresources), query (selectors, pagination, watch) and
//! body (JSON or YAML, patch types), calls the verb and shapes the answer: objects, lists,
//! discovery documents, `Status` errors, or a stream of watch events.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Value, json};

use super::cluster::{Cluster, DeleteOptions, Propagation, storage_key};
use super::discovery;
use super::errors::ApiError;
use super::openapi;
use super::patch::PatchKind;
use super::resources::ResourceInfo;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{Change, ChangeType, ObjectKey, key_of};
use super::tables;

/// A stream of watch event lines.
pub type WatchStream = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// What the HTTP layer sends back.
pub enum Reply {
    /// A JSON document with a status code and content type.
    Json(u16, &'static str, Bytes),
    /// Plain text (health checks).
    Text(u16, &'static str),
    /// A watch: JSON lines until the client leaves or the timeout passes.
    Watch(WatchStream),
    /// Any other streamed body with its content type (a followed container log).
    Stream(&'static str, WatchStream),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Json(code, _, body) => write!(f, "Json({code}, {} bytes)", body.len()),
            Reply::Text(code, text) => write!(f, "Text({code}, {text})"),
            Reply::Watch(_) => f.write_str("Watch"),
            Reply::Stream(content_type, _) => write!(f, "Stream({content_type})"),
        }
    }
}

const JSON: &str = "application/json";

fn json_reply(code: u16, value: &Value) -> Reply {
    Reply::Json(code, JSON, Bytes::from(value.to_string()))
}

impl From<ApiError> for Reply {
    fn from(error: ApiError) -> Self {
        json_reply(error.code, &error.to_status())
    }
}

/// A request as the HTTP layer hands it over.
#[derive(Debug)]
pub struct ApiRequest {
    /// `GET`, `POST`, ...
    pub method: http::Method,
    /// The path, without the query.
    pub path: String,
    /// The query string (undecoded), if any.
    pub query: Option<String>,
    /// The `Accept` header.
    pub accept: String,
    /// The `Content-Type` header.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
}

/// Query parameters in order, repeated ones included (`command` of exec), decoded as
/// `application/x-www-form-urlencoded`.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(&text.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => (decode(key), decode(value)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// Query parameters by name (the last of repeated ones wins).
fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    query_pairs(query).into_iter().collect()
}

/// Answers one request.
pub async fn handle(cluster: &Arc<Cluster>, server_address: &str, request: ApiRequest) -> Reply {
    match route(cluster, server_address, request) {
        Ok(reply) => reply,
        Err(error) => error.into(),
    }
}

fn route(
    cluster: &Arc<Cluster>,
    server_address: &str,
    request: ApiRequest,
) -> Result<Reply, ApiError> {
    let path = request.path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let registry = cluster.registry();
    let get = request.method == http::Method::GET;
    match segments.as_slice() {
        ["version"] if get => Ok(json_reply(200, &version())),
        ["healthz" | "livez" | "readyz", ..] if get => Ok(Reply::Text(200, "ok")),
        ["api"] if get => Ok(if discovery::wants_aggregated(&request.accept) {
            aggregated_reply(&discovery::aggregated(registry, true))
        } else {
            json_reply(200, &discovery::core_versions(server_address))
        }),
        ["apis"] if get => Ok(if discovery::wants_aggregated(&request.accept) {
            aggregated_reply(&discovery::aggregated(registry, false))
        } else {
            json_reply(200, &discovery::group_list(registry))
        }),
        ["api", "v1"] if get => discovery::resource_list(registry, "", "v1")
            .map(|doc| json_reply(200, &doc))
            .ok_or_else(|| ApiError::no_such_resource(path)),
        ["apis", group] if get => discovery::group(registry, group)
            .map(|doc| json_reply(200, &doc))
            .ok_or_else(|| ApiError::no_such_resource(path)),
        ["apis", group, version] if get => discovery::resource_list(registry, group, version)
            .map(|doc| json_reply(200, &doc))
            .ok_or_else(|| ApiError::no_such_resource(path)),
        ["openapi", "v3"] if get => Ok(json_reply(200, &openapi::index(registry))),
        ["openapi", "v3", "api", "v1"] if get => openapi::group_version(registry, "", "v1")
            .map(|doc| json_reply(200, &doc))
            .ok_or_else(|| ApiError::no_such_resource(path)),
        ["openapi", "v3", "apis", group, version] if get => {
            openapi::group_version(registry, group, version)
                .map(|doc| json_reply(200, &doc))
                .ok_or_else(|| ApiError::no_such_resource(path))
        }
        ["api", "v1", rest @ ..] => resource_request(cluster, "", "v1", rest, &request),
        ["apis", group, version, rest @ ..] => {
            resource_request(cluster, group, version, rest, &request)
        }
        _ => Err(ApiError::no_such_resource(path)),
    }
}

fn aggregated_reply(document: &Value) -> Reply {
    Reply::Json(
        200,
        discovery::AGGREGATED_V2,
        Bytes::from(document.to_string()),
    )
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-kubesim",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// Where a resource request points.
struct Target {
    resource: Arc<ResourceInfo>,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn resolve(
    cluster: &Cluster,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Target, ApiError> {
    let registry = cluster.registry();
    let not_found = || ApiError::no_such_resource(&format!("/{}", rest.join("/")));
    if let ["namespaces", namespace, plural, tail @ ..] = rest
        && let Some(resource) = registry
            .find(group, version, plural)
            .filter(|r| r.namespaced)
    {
        if tail.len() > 2 {
            return Err(not_found());
        }
        return Ok(Target {
            resource,
            namespace: Some((*namespace).to_string()),
            name: tail.first().map(|s| (*s).to_string()),
            subresource: tail.get(1).map(|s| (*s).to_string()),
        });
    }
    let [plural, tail @ ..] = rest else {
        return Err(not_found());
    };
    let resource = registry
        .find(group, version, plural)
        .ok_or_else(not_found)?;
    if tail.len() > 2 || (resource.namespaced && !tail.is_empty()) {
        return Err(not_found());
    }
    Ok(Target {
        resource,
        namespace: None,
        name: tail.first().map(|s| (*s).to_string()),
        subresource: tail.get(1).map(|s| (*s).to_string()),
    })
}

fn require_verb(
    resource: &ResourceInfo,
    subresource: Option<&str>,
    verb: &str,
) -> Result<(), ApiError> {
    let allowed = match subresource {
        None => resource.allows(verb),
        Some(sub) => resource
            .subresource(sub)
            .ok_or_else(|| ApiError::no_such_resource(&format!("{}/{sub}", resource.plural)))?
            .verbs
            .iter()
            .any(|v| v == verb),
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed(
            verb,
            &resource.group,
            &resource.plural,
        ))
    }
}

/// Reads a JSON or YAML body into a value (400 if malformed, 415 for other media types).
fn parse_body(request: &ApiRequest, yaml_allowed: bool) -> Result<Value, ApiError> {
    let media = request
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    if request.body.is_empty() {
        return Err(ApiError::bad_request("the request has no body"));
    }
    let is_yaml = matches!(media, "application/yaml" | "application/apply-patch+yaml");
    let is_json = media.is_empty() || media == JSON || media.ends_with("+json");
    if is_yaml && yaml_allowed {
        serde_yaml::from_slice(&request.body)
            .map_err(|error| ApiError::bad_request(format!("error decoding YAML: {error}")))
    } else if is_json {
        serde_json::from_slice(&request.body)
            .map_err(|error| ApiError::bad_request(format!("error decoding JSON: {error}")))
    } else {
        Err(ApiError::unsupported_media_type(&request.content_type))
    }
}

fn resource_request(
    cluster: &Arc<Cluster>,
    group: &str,
    version: &str,
    rest: &[&str],
    request: &ApiRequest,
) -> Result<Reply, ApiError> {
    let target = resolve(cluster, group, version, rest)?;
    let query = parse_query(request.query.as_deref());
    let resource = &target.resource;
    let namespace = target.namespace.as_deref().unwrap_or_default();
    let sub = target.subresource.as_deref();
    let api_version = resource.api_version();
    let object_reply = |code: u16, object: &Value| json_reply(code, &present(object, &api_version));
    use http::Method;
    match (&request.method, target.name.as_deref()) {
        (&Method::GET, None) => {
            let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
            require_verb(resource, None, if watching { "watch" } else { "list" })?;
            if watching {
                watch(
                    cluster,
                    resource,
                    target.namespace.clone(),
                    &query,
                    &request.accept,
                )
            } else {
                list(
                    cluster,
                    resource,
                    target.namespace.as_deref(),
                    &query,
                    &request.accept,
                )
            }
        }
        (&Method::GET, Some(name)) => {
            require_verb(resource, sub, "get")?;
            let object = cluster.get(resource, namespace, name)?;
            match sub {
                Some("scale") => Ok(json_reply(200, &scale_of(&object))),
                None if tables::wanted(&request.accept) => Ok(json_reply(
                    200,
                    &tables::table(
                        cluster.store(),
                        resource,
                        &[object.as_ref()],
                        json!({"resourceVersion": object["metadata"]["resourceVersion"]}),
                        query.get("includeObject").map_or("", String::as_str),
                    ),
                )),
                Some("status") | None => Ok(object_reply(200, &object)),
                Some("log") if is_pods(resource) => super::logs::serve(cluster, &object, &query),
                Some(other) => Err(ApiError::method_not_allowed(
                    &format!("get {other}"),
                    &resource.group,
                    &resource.plural,
                )),
            }
        }
        (&Method::POST, None) => {
            require_verb(resource, None, "create")?;
            let body = parse_body(request, true)?;
            let created = cluster.create(resource, target.namespace.as_deref(), body)?;
            Ok(object_reply(201, &created))
        }
        (&Method::POST, Some(_)) => {
            require_verb(resource, sub, "create")?;
            Err(ApiError::method_not_allowed(
                &format!("create {}", sub.unwrap_or_default()),
                &resource.group,
                &resource.plural,
            ))
        }
        (&Method::PUT, Some(name)) => {
            require_verb(resource, sub, "update")?;
            let body = parse_body(request, true)?;
            if sub == Some("scale") {
                return set_replicas(cluster, resource, namespace, name, &body);
            }
            let updated = cluster.update(resource, namespace, name, sub, body)?;
            Ok(object_reply(200, &updated))
        }
        (&Method::PATCH, Some(name)) => {
            require_verb(resource, sub, "patch")?;
            let kind = PatchKind::from_content_type(&request.content_type)?;
            let body = parse_body(request, kind == PatchKind::Apply)?;
            if sub == Some("scale") {
                let mut scale = scale_of(cluster.get(resource, namespace, name)?.as_ref());
                match kind {
                    PatchKind::Json => super::patch::json_patch(&mut scale, &body)?,
                    _ => super::patch::merge_patch(&mut scale, &body),
                }
                return set_replicas(cluster, resource, namespace, name, &scale);
            }
            let (code, patched) = cluster.patch(resource, namespace, name, sub, kind, body)?;
            Ok(object_reply(code, &patched))
        }
        (&Method::DELETE, Some(name)) => {
            require_verb(resource, sub, "delete")?;
            if sub.is_some() {
                return Err(ApiError::method_not_allowed(
                    "delete",
                    &resource.group,
                    &resource.plural,
                ));
            }
            let options = delete_options(request, &query)?;
            let deleted = cluster.delete(resource, namespace, name, &options)?;
            Ok(object_reply(200, &deleted))
        }
        (&Method::DELETE, None) => {
            require_verb(resource, None, "deletecollection")?;
            let options = delete_options(request, &query)?;
            let labels =
                LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?;
            let fields =
                FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))?;
            let page = cluster.store().list(
                &storage_key(resource),
                target.namespace.as_deref(),
                None,
                0,
                |o| labels.matches(o) && fields.matches(o),
            );
            let mut deleted = Vec::new();
            for object in &page.items {
                let (ns, name) = key_of(object);
                match cluster.delete(resource, &ns, &name, &options) {
                    Ok(object) => deleted.push(present(&object, &api_version)),
                    Err(error) if error.code == 404 => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(json_reply(
                200,
                &json!({
                    "kind": format!("{}List", resource.kind),
                    "apiVersion": api_version,
                    "metadata": {"resourceVersion": cluster.store().resource_version().to_string()},
                    "items": deleted,
                }),
            ))
        }
        (method, _) => Err(ApiError::method_not_allowed(
            method.as_str(),
            &resource.group,
            &resource.plural,
        )),
    }
}

fn is_pods(resource: &ResourceInfo) -> bool {
    resource.group.is_empty() && resource.plural == "pods"
}

/// The object as the requested version shows it (kubesim stores one copy for all versions).
fn present(object: &Value, api_version: &str) -> Value {
    let mut shown = object.clone();
    if shown.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        shown["apiVersion"] = json!(api_version);
    }
    shown
}

/// Writes the replicas of a `Scale` body into its object and answers the new `Scale`.
fn set_replicas(
    cluster: &Cluster,
    resource: &ResourceInfo,
    namespace: &str,
    name: &str,
    scale: &Value,
) -> Result<Reply, ApiError> {
    let replicas = scale.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
    let patch = json!({"spec": {"replicas": replicas}});
    let (_, updated) = cluster.patch(resource, namespace, name, None, PatchKind::Merge, patch)?;
    Ok(json_reply(200, &scale_of(&updated)))
}

fn scale_of(object: &Value) -> Value {
    let selector = object
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let metadata = &object["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata["uid"],
            "resourceVersion": metadata["resourceVersion"],
            "creationTimestamp": metadata["creationTimestamp"],
        },
        "spec": {"replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {
            "replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

fn delete_options(
    request: &ApiRequest,
    query: &HashMap<String, String>,
) -> Result<DeleteOptions, ApiError> {
    let body = if request.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&request.body).map_err(|error| {
            ApiError::bad_request(format!("error decoding DeleteOptions: {error}"))
        })?
    };
    let text = |field: &str| {
        body.get(field)
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| query.get(field).cloned())
    };
    let mut options = DeleteOptions::default();
    if let Some(policy) = text("propagationPolicy") {
        options.propagation = Propagation::parse(&policy)?;
    } else if body.get("orphanDependents").and_then(Value::as_bool) == Some(true)
        || query.get("orphanDependents").map(String::as_str) == Some("true")
    {
        options.propagation = Propagation::Orphan;
    }
    options.precondition_uid = body
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        .map(str::to_string);
    options.precondition_resource_version = body
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(options)
}

/// The opaque `continue` token: the key of the last object of the page.
fn encode_continue(key: &ObjectKey) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!([key.0, key.1]).to_string())
}

fn decode_continue(token: &str) -> Result<ObjectKey, ApiError> {
    let invalid = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    let (namespace, name): (String, String) =
        serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    Ok((namespace, name))
}

fn list(
    cluster: &Cluster,
    resource: &ResourceInfo,
    namespace: Option<&str>,
    query: &HashMap<String, String>,
    accept: &str,
) -> Result<Reply, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))?;
    let limit = match query.get("limit").map(String::as_str) {
        None | Some("") => 0,
        Some(text) => text.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!(
                "limit must be a non-negative integer, not {text:?}"
            ))
        })?,
    };
    let after = match query.get("continue").map(String::as_str) {
        None | Some("") => None,
        Some(token) => Some(decode_continue(token)?),
    };
    let key = storage_key(resource);
    let page = match fields.pinned_name() {
        Some(name) => {
            let mut page = cluster.store().list(&key, namespace, None, 0, |_| false);
            let found = match namespace {
                Some(ns) => cluster.store().get(&key, ns, name).into_iter().collect(),
                None => {
                    cluster
                        .store()
                        .list(&key, None, None, 0, |o| {
                            labels.matches(o) && fields.matches(o)
                        })
                        .items
                }
            };
            page.items = found
                .into_iter()
                .filter(|o| labels.matches(o) && fields.matches(o))
                .collect();
            page
        }
        None => cluster
            .store()
            .list(&key, namespace, after.as_ref(), limit, |object| {
                (labels.is_empty() || labels.matches(object)) && fields.matches(object)
            }),
    };
    let api_version = resource.api_version();
    let mut metadata = serde_json::Map::new();
    metadata.insert(
        "resourceVersion".into(),
        json!(page.resource_version.to_string()),
    );
    if let Some(next) = &page.next {
        metadata.insert("continue".into(), json!(encode_continue(next)));
        metadata.insert("remainingItemCount".into(), json!(page.remaining));
    }
    if tables::wanted(accept) {
        let items: Vec<&Value> = page.items.iter().map(AsRef::as_ref).collect();
        let table = tables::table(
            cluster.store(),
            resource,
            &items,
            Value::Object(metadata),
            query.get("includeObject").map_or("", String::as_str),
        );
        return Ok(json_reply(200, &table));
    }
    let mut body = Vec::with_capacity(256 + page.items.len() * 512);
    body.extend_from_slice(b"{\"kind\":");
    serde_json::to_writer(&mut body, &format!("{}List", resource.kind)).map_err(internal)?;
    body.extend_from_slice(b",\"apiVersion\":");
    serde_json::to_writer(&mut body, &api_version).map_err(internal)?;
    body.extend_from_slice(b",\"metadata\":");
    serde_json::to_writer(&mut body, &metadata).map_err(internal)?;
    body.extend_from_slice(b",\"items\":[");
    for (index, item) in page.items.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        if item.get("apiVersion").and_then(Value::as_str) == Some(api_version.as_str()) {
            serde_json::to_writer(&mut body, item.as_ref()).map_err(internal)?;
        } else {
            serde_json::to_writer(&mut body, &present(item, &api_version)).map_err(internal)?;
        }
    }
    body.extend_from_slice(b"]}");
    Ok(Reply::Json(200, JSON, Bytes::from(body)))
}

fn internal(error: serde_json::Error) -> ApiError {
    ApiError::internal(format!("encoding a list: {error}"))
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// The event a watch whose selector is `filter` sends for `change`, as the real watch cache
/// does: an object that starts matching is ADDED, one that stops matching is DELETED (as it
/// was, with the new resourceVersion), one that never matched is not sent.
fn selected_event(
    change: &Change,
    filter: &impl Fn(&Value) -> bool,
) -> Option<(&'static str, Arc<Value>)> {
    let now = filter(&change.object);
    let before = change.previous.as_deref().is_some_and(filter);
    match change.change {
        ChangeType::Added | ChangeType::Deleted => {
            now.then(|| (change.change.as_str(), Arc::clone(&change.object)))
        }
        ChangeType::Modified => match (before, now) {
            (true, true) => Some(("MODIFIED", Arc::clone(&change.object))),
            (false, true) => Some(("ADDED", Arc::clone(&change.object))),
            (true, false) => {
                let mut gone = change.previous.as_deref().cloned().unwrap_or(Value::Null);
                gone["metadata"]["resourceVersion"] = json!(change.resource_version.to_string());
                Some(("DELETED", Arc::new(gone)))
            }
            (false, false) => None,
        },
    }
}

/// How a watch shows each object: as the requested version, or as a one-row Table when the
/// client asked for Tables (`kubectl get -w`).
type Shape = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

fn watch_shape(
    cluster: &Arc<Cluster>,
    resource: &Arc<ResourceInfo>,
    query: &HashMap<String, String>,
    accept: &str,
) -> Shape {
    if tables::wanted(accept) {
        let cluster = Arc::clone(cluster);
        let resource = Arc::clone(resource);
        let include = query.get("includeObject").cloned().unwrap_or_default();
        Arc::new(move |object: &Value| {
            let metadata = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
            tables::table(cluster.store(), &resource, &[object], metadata, &include)
        })
    } else {
        let api_version = resource.api_version();
        Arc::new(move |object: &Value| present(object, &api_version))
    }
}

fn watch(
    cluster: &Arc<Cluster>,
    resource: &Arc<ResourceInfo>,
    namespace: Option<String>,
    query: &HashMap<String, String>,
    accept: &str,
) -> Result<Reply, ApiError> {
    let shape = watch_shape(cluster, resource, query, accept);
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))?;
    let since = match query.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("resourceVersion must be a number, not {text:?}"))
        })?),
    };
    let timeout = match query.get("timeoutSeconds").map(String::as_str) {
        None | Some("") => Duration::from_secs(1800),
        Some(text) => Duration::from_secs(text.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("timeoutSeconds must be a number, not {text:?}"))
        })?),
    };
    let key: Arc<str> = Arc::from(storage_key(resource));
    let filter = {
        let namespace = namespace.clone();
        move |object: &Value| {
            namespace.as_deref().is_none_or(|ns| key_of(object).0 == ns)
                && labels.matches(object)
                && fields.matches(object)
        }
    };
    let (initial, receiver, mut last_sent) = match since {
        None => {
            let (objects, version, receiver) = cluster.store().watch_now(&key);
            let lines: Vec<Bytes> = objects
                .iter()
                .filter(|o| filter(o))
                .map(|o| event_line("ADDED", &shape(o)))
                .collect();
            (lines, receiver, version)
        }
        Some(since) => match cluster.store().watch_from(since) {
            Ok((past, receiver)) => {
                let lines = past
                    .iter()
                    .filter(|c| c.resource == key)
                    .filter_map(|c| selected_event(c, &filter))
                    .map(|(kind, object)| event_line(kind, &shape(&object)))
                    .collect();
                let last = past.last().map_or(since, |c| c.resource_version);
                (lines, receiver, last)
            }
            Err(oldest) => {
                let gone = ApiError::gone(format!("too old resource version: {since} ({oldest})"));
                let line = event_line("ERROR", &gone.to_status());
                return Ok(Reply::Watch(Box::pin(futures::stream::iter([line]))));
            }
        },
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let live = futures::stream::unfold(Some(receiver), move |receiver| {
        let key = Arc::clone(&key);
        let shape = Arc::clone(&shape);
        let filter = filter.clone();
        async move {
            let mut receiver = receiver?;
            loop {
                let change: Change = match tokio::time::timeout_at(deadline, receiver.recv()).await
                {
                    Err(_) => return None,
                    Ok(Ok(change)) => change,
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                        let gone = ApiError::gone("the watch fell behind; list again");
                        return Some((event_line("ERROR", &gone.to_status()), None));
                    }
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return None,
                };
                if change.resource_version <= last_sent || change.resource != key {
                    continue;
                }
                last_sent = change.resource_version;
                let Some((kind, object)) = selected_event(&change, &filter) else {
                    continue;
                };
                let line = event_line(kind, &shape(&object));
                return Some((line, Some(receiver)));
            }
        }
    });
    Ok(Reply::Watch(Box::pin(
        futures::stream::iter(initial).chain(live),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_form_decoded() {
        let query = parse_query(Some("labelSelector=app+in+%28a%2Cb%29&limit=5&watch"));
        assert_eq!(query["labelSelector"], "app in (a,b)");
        assert_eq!(query["limit"], "5");
        assert_eq!(query["watch"], "");
    }

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let key = ("ns".to_string(), "name".to_string());
        assert_eq!(decode_continue(&encode_continue(&key)).unwrap(), key);
        assert_eq!(decode_continue("%%%").unwrap_err().code, 400);
    }
}
