//! One simulated cluster: the store, the served resources and the rules of the Kubernetes API
//! for each verb (server-set metadata, resourceVersion conflicts, the status subresource,
//! finalizers, propagation policies, CRD registration), plus the simulated controllers that
//! are switched on. The HTTP layer calls these; they never speak HTTP.

use std::sync::Arc;

use serde_json::{Value, json};

use super::controllers::{self, CronJobRunError, admission};
use super::errors::ApiError;
use super::namespaces;
use super::patch::{self, PatchKind};
use super::pod_status;
use super::processes::PodRuntime;
use super::registry::{Registry, crd_resources};
use super::resources::ResourceInfo;
use super::services::ServiceAllocators;
use super::store::{Decision, Store};
use super::validation::{check_name, check_type, settle_namespace};
use super::volumes::VolumeFolders;

/// Namespaces every cluster starts with.
pub const DEFAULT_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// The simulated controllers; each can be switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Controllers {
    /// Deleting a namespace removes its contents, then the namespace.
    pub namespace_lifecycle: bool,
    /// Deleting an owner deletes (or orphans) its dependents through ownerReferences.
    pub garbage_collector: bool,
    /// Services get a clusterIP and node ports.
    pub service_ips: bool,
    /// Pods are scheduled on the one node and become Running and Ready at once.
    pub pods_running: bool,
    /// Every namespace gets its `default` ServiceAccount and `kube-root-ca.crt` ConfigMap; pods
    /// get `spec.serviceAccountName` defaulted.
    pub service_accounts: bool,
    /// Deployments, ReplicaSets, ReplicationControllers, StatefulSets and DaemonSets run their
    /// pods.
    pub workloads: bool,
    /// Jobs run their pods and complete or fail from the pods' phases.
    pub jobs: bool,
    /// The default StorageClass and CSIDriver; PVCs get PersistentVolumes backed by folders, and
    /// both carry their protection finalizers.
    pub volumes: bool,
    /// The snapshot.storage.k8s.io CRDs, a VolumeSnapshotClass, and snapshots as folder copies.
    pub csi_snapshots: bool,
}

impl Default for Controllers {
    fn default() -> Self {
        Self {
            namespace_lifecycle: true,
            garbage_collector: true,
            service_ips: true,
            pods_running: true,
            service_accounts: true,
            workloads: true,
            jobs: true,
            volumes: true,
            csi_snapshots: true,
        }
    }
}

impl Controllers {
    /// Every controller off: the cluster is an API server and nothing more.
    pub fn none() -> Self {
        Self {
            namespace_lifecycle: false,
            garbage_collector: false,
            service_ips: false,
            pods_running: false,
            service_accounts: false,
            workloads: false,
            jobs: false,
            volumes: false,
            csi_snapshots: false,
        }
    }
}

/// How dependents of a deleted object are treated (`propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// Dependents keep existing without the owner reference.
    Orphan,
    /// The owner goes at once, dependents after it.
    #[default]
    Background,
    /// Dependents go first, then the owner.
    Foreground,
}

impl Propagation {
    /// Parses `Orphan`, `Background`, `Foreground`.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        match text {
            "Orphan" => Ok(Self::Orphan),
            "Background" => Ok(Self::Background),
            "Foreground" => Ok(Self::Foreground),
            other => Err(ApiError::bad_request(format!(
                "invalid propagationPolicy {other:?}: must be Orphan, Background or Foreground"
            ))),
        }
    }
}

/// What a delete request asks for.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// The propagation policy.
    pub propagation: Propagation,
    /// Delete only if the object still has this uid.
    pub precondition_uid: Option<String>,
    /// Delete only if the object still has this resourceVersion.
    pub precondition_resource_version: Option<String>,
}

/// The storage key of a resource: all versions of a resource share one.
pub fn storage_key(resource: &ResourceInfo) -> String {
    format!("{}/{}", resource.group, resource.plural)
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The string field `field` of `value`, or "".
fn str_at<'a>(value: &'a Value, field: &str) -> &'a str {
    value.get(field).and_then(Value::as_str).unwrap_or_default()
}

fn has_finalizers(object: &Value) -> bool {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

fn is_deleting(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

fn is(resource: &ResourceInfo, group: &str, plural: &str) -> bool {
    resource.group == group && resource.plural == plural
}

/// Random lowercase suffix for `generateName`, from the alphabet the real server uses.
fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|byte| ALPHABET[usize::from(*byte) % ALPHABET.len()] as char)
        .collect()
}

/// Everything but metadata and status: what a change to bumps `generation`.
fn desired_state(object: &Value) -> Value {
    let mut rest = object.clone();
    if let Some(map) = rest.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    rest
}

/// The finalizer that holds an owner deleted in the foreground until its dependents are gone.
const FOREGROUND_DELETION: &str = "foregroundDeletion";

/// Outcome of a delete request inside the store.
enum Deletion {
    /// The object is gone.
    Gone,
    /// The object is marked for deletion and waits for finalizers or its contents.
    Pending,
}

/// A simulated cluster.
#[derive(Debug)]
pub struct Cluster {
    store: Store,
    registry: Registry,
    controllers: Controllers,
    service_allocators: ServiceAllocators,
    volume_folders: VolumeFolders,
    pod_runtime: PodRuntime,
}

impl Cluster {
    /// A cluster over `store`: registers the CRDs the store holds and creates the default
    /// namespaces if they are missing.
    pub fn new(
        store: Store,
        controllers: Controllers,
        volume_folders: VolumeFolders,
    ) -> Result<Arc<Self>, ApiError> {
        let cluster = Arc::new(Self {
            store,
            registry: Registry::new(),
            controllers,
            service_allocators: ServiceAllocators::default(),
            volume_folders,
            pod_runtime: PodRuntime::default(),
        });
        let crds = cluster.store.list(
            "apiextensions.k8s.io/customresourcedefinitions",
            None,
            None,
            0,
            |_| true,
        );
        for crd in crds.items {
            let resources = crd_resources(&crd)?;
            cluster
                .registry
                .set_custom(meta_str(&crd, "name"), Some(resources));
        }
        let namespaces = cluster.resource("", "v1", "namespaces")?;
        for name in DEFAULT_NAMESPACES {
            if cluster.store.get("/namespaces", "", name).is_none() {
                cluster.create(&namespaces, None, json!({"metadata": {"name": name}}))?;
            }
        }
        Ok(cluster)
    }

    /// Runs CronJob `name` as its controller does when the schedule time `scheduled` comes:
    /// creates the Job `<name>-<minutes since the epoch>` from its `jobTemplate` and records it
    /// in the CronJob's status (kubesim keeps no clock of schedules; see `docs/kubesim.md`).
    pub fn run_cron_job(
        self: &Arc<Self>,
        namespace: &str,
        name: &str,
        scheduled: chrono::DateTime<chrono::Utc>,
    ) -> Result<Arc<Value>, CronJobRunError> {
        controllers::run_cron_job(self, namespace, name, scheduled)
    }

    /// The store (for watches and the benchmark).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The host folders of this cluster's volumes and snapshots.
    pub fn volume_folders(&self) -> &VolumeFolders {
        &self.volume_folders
    }

    /// The local processes of pods: local images, container logs, kill switches.
    pub fn pod_runtime(&self) -> &PodRuntime {
        &self.pod_runtime
    }

    /// The served resources.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A served resource, or 404.
    pub fn resource(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Result<Arc<ResourceInfo>, ApiError> {
        self.registry
            .find(group, version, plural)
            .ok_or_else(|| ApiError::no_such_resource(&format!("{plural} in {group}/{version}")))
    }

    fn resource_for_key(&self, key: &str) -> Option<Arc<ResourceInfo>> {
        let (group, plural) = key.split_once('/')?;
        self.registry
            .all()
            .into_iter()
            .find(|r| r.group == group && r.plural == plural)
    }

    fn check_namespace(
        &self,
        resource: &ResourceInfo,
        namespace: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        match self.store.get("/namespaces", "", namespace) {
            None => Err(ApiError::not_found("", "namespaces", namespace)),
            Some(ns) if is_deleting(&ns) => Err(ApiError::namespace_terminating(
                &resource.group,
                &resource.plural,
                name,
                namespace,
            )),
            Some(_) => Ok(()),
        }
    }

    /// Creates an object (201 semantics): server-set metadata, defaults, 409 if it exists.
    pub fn create(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        mut object: Value,
    ) -> Result<Arc<Value>, ApiError> {
        check_type(resource, &mut object)?;
        settle_namespace(resource, namespace, &mut object)?;
        let mut name = meta_str(&object, "name").to_string();
        if name.is_empty() {
            let prefix = meta_str(&object, "generateName");
            if !prefix.is_empty() {
                name = format!("{prefix}{}", name_suffix());
            }
        }
        check_name(resource, &name)?;
        let namespace = if resource.namespaced {
            namespace.unwrap_or_default()
        } else {
            ""
        };
        if resource.namespaced {
            self.check_namespace(resource, namespace, &name)?;
        }
        {
            let metadata = object
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
            metadata.insert("name".into(), json!(name));
            metadata.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            metadata.insert("creationTimestamp".into(), json!(now()));
            for server_set in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
                "selfLink",
            ] {
                metadata.remove(server_set);
            }
        }
        if object.get("spec").is_some() || !self.registry.is_built_in(resource) {
            object["metadata"]["generation"] = json!(1);
        } else if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("generation");
        }
        if resource.subresource("status").is_some()
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        let crd = if is(
            resource,
            "apiextensions.k8s.io",
            "customresourcedefinitions",
        ) {
            Some(crd_resources(&object)?)
        } else {
            None
        };
        // Held until the Service is stored, so that no other create takes its addresses.
        let _allocation = if self.controllers.service_ips && is(resource, "", "services") {
            let mut allocators = self.service_allocators.lock();
            allocators.allocate(&self.store, &name, &mut object)?;
            Some(allocators)
        } else {
            None
        };
        self.apply_defaults(resource, &mut object);
        let key = storage_key(resource);
        let (_, stored) = self.store.modify(&key, namespace, &name, |current, _| {
            if current.is_some() {
                return Err(ApiError::already_exists(
                    &resource.group,
                    &resource.plural,
                    &name,
                ));
            }
            Ok(Decision::Put(object, ()))
        })?;
        if let Some(resources) = crd {
            self.registry.set_custom(&name, Some(resources));
        }
        stored.ok_or_else(|| ApiError::internal("a created object was not stored"))
    }

    /// Server-side defaults and the simulated controllers that act at creation.
    fn apply_defaults(&self, resource: &ResourceInfo, object: &mut Value) {
        if self.controllers.service_accounts && is(resource, "", "pods") {
            admission::default_service_account(object);
        }
        match (resource.group.as_str(), resource.plural.as_str()) {
            ("", "namespaces") => {
                object["spec"] = json!({"finalizers": ["kubernetes"]});
                object["status"] = json!({"phase": "Active"});
            }
            ("batch", "jobs") => admission::default_job(object),
            ("batch", "cronjobs") => admission::default_cron_job(object),
            ("apps", plural) => admission::default_workload(plural, object),
            ("", "replicationcontrollers") => admission::default_replication_controller(object),
            ("", "persistentvolumeclaims") => {
                admission::mirror_data_source(object);
                if self.controllers.volumes {
                    admission::default_storage_class(&self.store, object);
                    admission::protect(object, admission::CLAIM_PROTECTION);
                }
            }
            ("", "persistentvolumes") if self.controllers.volumes => {
                admission::protect(object, admission::VOLUME_PROTECTION)
            }
            ("", "pods") if self.controllers.pods_running => {
                object["spec"]["nodeName"] = json!(pod_status::NODE);
                object["status"] = if self.pod_runtime.runs_locally(object) {
                    pod_status::pending(object, &now())
                } else {
                    pod_status::running(object, &now())
                };
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                let established = now();
                object["status"] = json!({
                    "acceptedNames": object.pointer("/spec/names").cloned().unwrap_or(Value::Null),
                    "storedVersions": object
                        .pointer("/spec/versions")
                        .and_then(Value::as_array)
                        .map(|versions| versions
                            .iter()
                            .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                            .filter_map(|v| v.get("name").cloned())
                            .collect::<Vec<_>>())
                        .unwrap_or_default(),
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                         "message": "no conflicts found", "lastTransitionTime": established},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                         "message": "the initial names have been accepted", "lastTransitionTime": established},
                    ],
                });
            }
            _ => {}
        }
    }

    /// One object, or 404.
    pub fn get(
        &self,
        resource: &ResourceInfo,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        self.store
            .get(&storage_key(resource), namespace, name)
            .ok_or_else(|| ApiError::not_found(&resource.group, &resource.plural, name))
    }

    /// Replaces an object (PUT) or its status (`subresource` = `status`).
    pub fn update(
        &self,
        resource: &ResourceInfo,
        namespace: &str,
        name: &str,
        subresource: Option<&str>,
        object: Value,
    ) -> Result<Arc<Value>, ApiError> {
        self.write_existing(resource, namespace, name, subresource, |_| Ok(object))
    }

    /// Patches an object or its status; server-side apply creates it when missing.
    pub fn patch(
        &self,
        resource: &ResourceInfo,
        namespace: &str,
        name: &str,
        subresource: Option<&str>,
        kind: PatchKind,
        body: Value,
    ) -> Result<(u16, Arc<Value>), ApiError> {
        if kind == PatchKind::Apply
            && subresource.is_none()
            && self
                .store
                .get(&storage_key(resource), namespace, name)
                .is_none()
        {
            let mut object = body;
            if meta_str(&object, "name").is_empty() {
                return Err(ApiError::bad_request(
                    "an applied object must have metadata.name",
                ));
            }
            if meta_str(&object, "name") != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta_str(&object, "name")
                )));
            }
            let namespace = resource.namespaced.then_some(namespace);
            if let Some(map) = object.as_object_mut() {
                map.remove("status");
            }
            return Ok((201, self.create(resource, namespace, object)?));
        }
        let updated = self.write_existing(resource, namespace, name, subresource, |current| {
            let mut next = Value::clone(current);
            match kind {
                PatchKind::Json => patch::json_patch(&mut next, &body)?,
                PatchKind::Merge => patch::merge_patch(&mut next, &body),
                PatchKind::Strategic | PatchKind::Apply => {
                    if kind == PatchKind::Strategic && !self.registry.is_built_in(resource) {
                        return Err(ApiError::unsupported_media_type(
                            "application/strategic-merge-patch+json (not supported for custom resources)",
                        ));
                    }
                    patch::strategic_merge(&mut next, &body)?;
                }
            }
            // A patch that does not name a resourceVersion is never a conflict.
            if body.pointer("/metadata/resourceVersion").is_none() {
                next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            }
            Ok(next)
        })?;
        Ok((200, updated))
    }

    /// The common path of update and patch: checks, preserved server fields, status rules,
    /// generation, finalizer completion, all inside one store transaction.
    fn write_existing(
        &self,
        resource: &ResourceInfo,
        namespace: &str,
        name: &str,
        subresource: Option<&str>,
        compute: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Arc<Value>, ApiError> {
        let namespace = if resource.namespaced { namespace } else { "" };
        let key = storage_key(resource);
        let (gone, stored) = self.store.modify(&key, namespace, name, |current, _| {
            let current = current.ok_or_else(|| ApiError::not_found(&resource.group, &resource.plural, name))?;
            let mut next = compute(current)?;
            check_type(resource, &mut next)?;
            let body_name = meta_str(&next, "name");
            if !body_name.is_empty() && body_name != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
            settle_namespace(resource, resource.namespaced.then_some(namespace), &mut next)?;
            let sent_version = meta_str(&next, "resourceVersion");
            if !sent_version.is_empty() && sent_version != meta_str(current, "resourceVersion") {
                return Err(ApiError::conflict(&resource.group, &resource.plural, name));
            }
            let mut next = match subresource {
                Some("status") => {
                    let mut merged = Value::clone(current);
                    merged["status"] = next.get("status").cloned().unwrap_or(Value::Null);
                    merged
                }
                Some(other) => {
                    return Err(ApiError::method_not_allowed(
                        &format!("update {other}"),
                        &resource.group,
                        &resource.plural,
                    ));
                }
                None => {
                    if resource.subresource("status").is_some() {
                        match current.get("status") {
                            Some(status) => next["status"] = status.clone(),
                            None => {
                                if let Some(map) = next.as_object_mut() {
                                    map.remove("status");
                                }
                            }
                        }
                    }
                    next
                }
            };
            let metadata = next
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
            metadata.insert("name".into(), json!(name));
            for preserved in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
                match current.pointer(&format!("/metadata/{preserved}")) {
                    Some(value) => {
                        metadata.insert(preserved.into(), value.clone());
                    }
                    None => {
                        metadata.remove(preserved);
                    }
                }
            }
            metadata.remove("resourceVersion");
            if let Some(generation) = current.pointer("/metadata/generation").and_then(Value::as_i64)
                && desired_state(&next) != desired_state(current)
            {
                next["metadata"]["generation"] = json!(generation + 1);
            }
            let mut unchanged = Value::clone(current);
            if let Some(metadata) = unchanged.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.remove("resourceVersion");
            }
            if next == unchanged {
                return Ok(Decision::Keep(false));
            }
            if is_deleting(&next) && !has_finalizers(&next) && !is(resource, "", "namespaces") {
                return Ok(Decision::Delete(true));
            }
            Ok(Decision::Put(next, false))
        })?;
        let stored =
            stored.ok_or_else(|| ApiError::internal("an updated object was not stored"))?;
        if gone {
            self.after_removal(resource, &stored, Propagation::Background);
        }
        if !gone
            && is(
                resource,
                "apiextensions.k8s.io",
                "customresourcedefinitions",
            )
            && let Ok(resources) = crd_resources(&stored)
        {
            self.registry.set_custom(name, Some(resources));
        }
        Ok(stored)
    }

    /// Deletes an object: at once, or marked with a deletionTimestamp while finalizers (or a
    /// namespace's contents, or foreground dependents) remain. Answers the object.
    pub fn delete(
        self: &Arc<Self>,
        resource: &ResourceInfo,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let (outcome, object) = self.delete_object(resource, namespace, name, options)?;
        if matches!(outcome, Deletion::Pending)
            && is(resource, "", "namespaces")
            && self.controllers.namespace_lifecycle
        {
            self.spawn_namespace_cleanup(name.to_string());
        }
        Ok(object)
    }

    /// What [`Cluster::delete`] does, except starting the cleanup of a deleted namespace
    /// (callers that hold an `Arc` of the cluster do that).
    fn delete_object(
        &self,
        resource: &ResourceInfo,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<(Deletion, Arc<Value>), ApiError> {
        let namespace = if resource.namespaced { namespace } else { "" };
        let key = storage_key(resource);
        let is_namespace = is(resource, "", "namespaces");
        let foreground =
            options.propagation == Propagation::Foreground && self.controllers.garbage_collector;
        let (outcome, object) = self.store.modify(&key, namespace, name, |current, _| {
            let current = current
                .ok_or_else(|| ApiError::not_found(&resource.group, &resource.plural, name))?;
            if let Some(uid) = &options.precondition_uid
                && uid != meta_str(current, "uid")
            {
                return Err(ApiError {
                    message: format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(current, "uid")
                    ),
                    ..ApiError::conflict(&resource.group, &resource.plural, name)
                });
            }
            if let Some(version) = &options.precondition_resource_version
                && version != meta_str(current, "resourceVersion")
            {
                return Err(ApiError {
                    message: format!(
                        "Precondition failed: ResourceVersion in precondition: {version}, \
                         ResourceVersion in object meta: {}",
                        meta_str(current, "resourceVersion")
                    ),
                    ..ApiError::conflict(&resource.group, &resource.plural, name)
                });
            }
            if !(is_namespace || has_finalizers(current) || foreground) {
                return Ok(Decision::Delete(Deletion::Gone));
            }
            if is_deleting(current) {
                return Ok(Decision::Keep(Deletion::Pending));
            }
            let mut next = Value::clone(current);
            next["metadata"]["deletionTimestamp"] = json!(now());
            next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if is_namespace {
                next["status"]["phase"] = json!("Terminating");
            }
            if foreground {
                let finalizers = next["metadata"]
                    .as_object_mut()
                    .map(|m| m.entry("finalizers").or_insert_with(|| json!([])));
                if let Some(Value::Array(finalizers)) = finalizers {
                    finalizers.push(json!(FOREGROUND_DELETION));
                }
            }
            Ok(Decision::Put(next, Deletion::Pending))
        })?;
        let object =
            object.ok_or_else(|| ApiError::internal("a deleted object was not returned"))?;
        match outcome {
            Deletion::Gone => self.after_removal(resource, &object, options.propagation),
            Deletion::Pending if foreground => {
                self.collect_dependents(&object, Propagation::Foreground);
                self.release_foreground(resource, namespace, name);
            }
            Deletion::Pending => {}
        }
        Ok((outcome, object))
    }

    fn remove_finalizer(
        &self,
        resource: &ResourceInfo,
        namespace: &str,
        name: &str,
        finalizer: &str,
    ) {
        let result = self.write_existing(resource, namespace, name, None, |current| {
            let mut next = Value::clone(current);
            if let Some(Value::Array(finalizers)) = next.pointer_mut("/metadata/finalizers") {
                finalizers.retain(|f| f.as_str() != Some(finalizer));
            }
            Ok(next)
        });
        match result {
            Err(error) if error.code != 404 => {
                tracing::warn!(%error, name, "could not remove finalizer {finalizer}");
            }
            _ => {}
        }
    }

    /// The objects whose ownerReferences name `uid` (only those that block the owner's
    /// foreground deletion with `blocking`), with their resource keys.
    fn dependents_of(&self, uid: &str, blocking: bool) -> Vec<(Arc<str>, Arc<Value>)> {
        if uid.is_empty() {
            return Vec::new();
        }
        self.store.scan(|_, object| {
            object
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| {
                    refs.iter().any(|r| {
                        r.get("uid").and_then(Value::as_str) == Some(uid)
                            && (!blocking
                                || r.get("blockOwnerDeletion").and_then(Value::as_bool)
                                    == Some(true))
                    })
                })
        })
    }

    /// Deletes or orphans the objects whose ownerReferences name `owner`'s uid. In the
    /// foreground, as the garbage collector does, a dependent that has dependents of its own
    /// is deleted in the foreground too, any other in the background.
    fn collect_dependents(&self, owner: &Value, propagation: Propagation) {
        let uid = meta_str(owner, "uid").to_string();
        for (key, dependent) in self.dependents_of(&uid, false) {
            let Some(resource) = self.resource_for_key(&key) else {
                continue;
            };
            let namespace = meta_str(&dependent, "namespace");
            let name = meta_str(&dependent, "name");
            let result = match propagation {
                Propagation::Orphan => self
                    .write_existing(&resource, namespace, name, None, |current| {
                        let mut next = Value::clone(current);
                        if let Some(Value::Array(refs)) =
                            next.pointer_mut("/metadata/ownerReferences")
                        {
                            refs.retain(|r| {
                                r.get("uid").and_then(Value::as_str) != Some(uid.as_str())
                            });
                        }
                        Ok(next)
                    })
                    .map(|_| ()),
                Propagation::Background | Propagation::Foreground => {
                    let cascade = if propagation == Propagation::Foreground
                        && !self
                            .dependents_of(meta_str(&dependent, "uid"), false)
                            .is_empty()
                    {
                        Propagation::Foreground
                    } else {
                        Propagation::Background
                    };
                    let options = DeleteOptions {
                        propagation: cascade,
                        ..DeleteOptions::default()
                    };
                    self.delete_object(&resource, namespace, name, &options)
                        .map(|_| ())
                }
            };
            if let Err(error) = result
                && error.code != 404
            {
                tracing::warn!(%error, name, "garbage collection of a dependent failed");
            }
        }
    }

    /// An owner deleted in the foreground goes once no dependent blocks it (ownerReference
    /// with `blockOwnerDeletion: true`): its `foregroundDeletion` finalizer is removed.
    fn release_foreground(&self, resource: &ResourceInfo, namespace: &str, name: &str) {
        let Some(owner) = self.store.get(&storage_key(resource), namespace, name) else {
            return;
        };
        let waiting = is_deleting(&owner)
            && owner
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| f.iter().any(|f| f == FOREGROUND_DELETION));
        if waiting && self.dependents_of(meta_str(&owner, "uid"), true).is_empty() {
            self.remove_finalizer(resource, namespace, name, FOREGROUND_DELETION);
        }
    }

    /// A removed object's owners that wait for their dependents in the foreground may go now.
    fn release_owners(&self, object: &Value) {
        let Some(refs) = object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
        else {
            return;
        };
        for reference in refs {
            let text = |field: &str| str_at(reference, field);
            let (group, version) = match text("apiVersion").split_once('/') {
                Some((group, version)) => (group, version),
                None => ("", text("apiVersion")),
            };
            let Some(resource) = self
                .registry
                .all()
                .into_iter()
                .find(|r| r.group == group && r.version == version && r.kind == text("kind"))
            else {
                continue;
            };
            let namespace = if resource.namespaced {
                meta_str(object, "namespace")
            } else {
                ""
            };
            let owner = self
                .store
                .get(&storage_key(&resource), namespace, text("name"));
            if owner.is_some_and(|owner| meta_str(&owner, "uid") == text("uid")) {
                self.release_foreground(&resource, namespace, text("name"));
            }
        }
    }

    /// What follows an object's removal: a CRD's objects go with it, dependents are collected,
    /// owners waiting for it in the foreground are released.
    fn after_removal(&self, resource: &ResourceInfo, object: &Value, propagation: Propagation) {
        if is(
            resource,
            "apiextensions.k8s.io",
            "customresourcedefinitions",
        ) {
            self.remove_custom_resources(object);
        }
        if self.controllers.garbage_collector {
            self.collect_dependents(object, propagation);
            self.release_owners(object);
        }
    }

    /// A CRD went away: its objects go with it and its resources are no longer served.
    fn remove_custom_resources(&self, crd: &Value) {
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let plural = crd
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let key = format!("{group}/{plural}");
        for object in self.store.list(&key, None, None, 0, |_| true).items {
            let namespace = meta_str(&object, "namespace");
            let name = meta_str(&object, "name");
            let _ = self
                .store
                .modify(&key, namespace, name, |_, _| Ok(Decision::Delete(())));
        }
        self.registry.set_custom(meta_str(crd, "name"), None);
    }

    /// Empties a terminating namespace, then removes it; retries while finalizers hold objects.
    fn spawn_namespace_cleanup(self: &Arc<Self>, namespace: String) {
        let cluster = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if cluster.clean_namespace(&namespace) {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        });
    }

    /// One pass of namespace cleanup; true when the namespace is gone (or was recreated).
    fn clean_namespace(&self, namespace: &str) -> bool {
        match self.store.get("/namespaces", "", namespace) {
            Some(ns) if is_deleting(&ns) => {}
            _ => return true,
        }
        let mut remaining = 0;
        let mut seen = std::collections::HashSet::new();
        for resource in self.registry.all() {
            if !resource.namespaced || !seen.insert(storage_key(&resource)) {
                continue;
            }
            let objects =
                self.store
                    .list(&storage_key(&resource), Some(namespace), None, 0, |_| true);
            for object in objects.items {
                remaining += 1;
                let _ = self.delete_object(
                    &resource,
                    namespace,
                    meta_str(&object, "name"),
                    &DeleteOptions::default(),
                );
            }
        }
        if remaining > 0 {
            let left = self.store.scan(|key, object| {
                !key.starts_with("/namespaces") && meta_str(object, "namespace") == namespace
            });
            if !left.is_empty() {
                self.report_namespace_content(namespace, &left);
                return false;
            }
        }
        let removed = self
            .store
            .modify("/namespaces", "", namespace, |current, _| {
                Ok(match current {
                    Some(ns) if is_deleting(ns) => Decision::Delete(()),
                    _ => Decision::Keep(()),
                })
            });
        removed.is_ok()
    }

    /// Writes what still holds a terminating namespace into its conditions (no change, and no
    /// watch event, while that stays the same).
    fn report_namespace_content(&self, namespace: &str, left: &[(Arc<str>, Arc<Value>)]) {
        let result = self
            .store
            .modify("/namespaces", "", namespace, |current, _| {
                let Some(current) = current.filter(|ns| is_deleting(ns)) else {
                    return Ok(Decision::Keep(()));
                };
                let previous = current
                    .pointer("/status/conditions")
                    .cloned()
                    .unwrap_or(Value::Null);
                let conditions = namespaces::deletion_conditions(&previous, left, &now());
                if conditions == previous {
                    return Ok(Decision::Keep(()));
                }
                let mut next = Value::clone(current);
                next["status"]["conditions"] = conditions;
                Ok(Decision::Put(next, ()))
            });
        if let Err(error) = result {
            tracing::warn!(%error, namespace, "could not report a namespace's remaining content");
        }
    }
}
