//! How a pod's container is seen by a local process: its volumes resolved to host folders
//! (persistentVolumeClaim → the bound PV's folder, emptyDir → a per-pod folder, configMap,
//! secret and projected → files written into a per-pod folder, hostPath → the path itself),
//! its environment (`env` with values, `valueFrom` config map, secret and field references,
//! `$(VAR)` expansion, and `envFrom`) and its working directory.
//!
//! A local process cannot see the container's mount paths, so the mapping is applied by
//! rewriting: every occurrence of a mount path at a path boundary in the argv and in the
//! environment values is replaced by the host folder behind it (`sh -c 'echo hi > /data/x'`
//! writes `<pv folder>/x`). See `docs/kubesim.md`, "Pods as local processes".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::Value;

use super::registry::text;
use super::store::Store;
use super::volumes::VolumeFolders;

/// Why a container's view could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The pod has no container of that name.
    #[error("container {container} is not valid for pod {pod}")]
    NoContainer {
        /// The pod.
        pod: String,
        /// The container asked for.
        container: String,
    },
    /// A volume mount names a volume the pod does not declare.
    #[error("volume mount {mount} of container {container} names no volume of the pod")]
    UnknownVolume {
        /// The container.
        container: String,
        /// The volume name in the mount.
        mount: String,
    },
    /// A persistentVolumeClaim volume cannot be resolved to a folder.
    #[error("volume {volume}: persistentVolumeClaim {claim}: {problem}")]
    Claim {
        /// The pod's volume name.
        volume: String,
        /// The claim name.
        claim: String,
        /// What is missing (claim absent, not bound, PV absent).
        problem: String,
    },
    /// A referenced ConfigMap or Secret (or one of its keys) is missing and not optional.
    #[error("{what} {name} in namespace {namespace}: {problem}")]
    Reference {
        /// `configmap` or `secret`.
        what: &'static str,
        /// Its name.
        name: String,
        /// The pod's namespace.
        namespace: String,
        /// What is missing.
        problem: String,
    },
    /// A volume type or env source kubesim does not map.
    #[error("{0} is not supported by kubesim's local processes")]
    Unsupported(String),
    /// Writing a volume's files or creating its folder failed.
    #[error("preparing {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One mount: the path inside the container and the host folder behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `volumeMounts[].mountPath`.
    pub mount_path: String,
    /// The host folder (or file, with `subPath`) it maps to; absolute.
    pub host_path: PathBuf,
}

/// What a local process running as a pod's container needs.
#[derive(Debug, Clone)]
pub struct ContainerView {
    /// The container's name.
    pub container: String,
    /// Mounts, longest mount path first (the order rewriting tries them in).
    pub mounts: Vec<Mount>,
    /// The container's environment, in declaration order, values already rewritten.
    pub env: Vec<(String, String)>,
    /// The host folder to run in: the rewritten `workingDir` when it exists on the host,
    /// otherwise the pod's own folder.
    pub working_dir: PathBuf,
}

impl ContainerView {
    /// `text` with every mount path at a path boundary replaced by its host folder.
    pub fn rewrite(&self, text: &str) -> String {
        rewrite_paths(&self.mounts, text)
    }

    /// The container's `command` + `args`, `$(VAR)`-expanded and rewritten.
    pub fn argv(&self, command: &[String]) -> Vec<String> {
        let env: BTreeMap<&str, &str> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        command
            .iter()
            .map(|arg| self.rewrite(&expand(arg, &env)))
            .collect()
    }
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> MountError + '_ {
    move |source| MountError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The container named `container` (or the first one when empty) of `pod`.
pub fn container<'a>(pod: &'a Value, container: &str) -> Result<&'a Value, MountError> {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let found = if container.is_empty() {
        containers.first()
    } else {
        containers
            .iter()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(container))
    };
    found.ok_or_else(|| MountError::NoContainer {
        pod: text(pod, "/metadata/name").to_string(),
        container: container.to_string(),
    })
}

/// Builds the view of `container` (a container object of `pod`): resolves and prepares its
/// volumes, computes its environment and working directory.
pub fn resolve(
    store: &Store,
    folders: &VolumeFolders,
    pod: &Value,
    container: &Value,
) -> Result<ContainerView, MountError> {
    let namespace = text(pod, "/metadata/namespace");
    let pod_folder = absolute(folders.pod(text(pod, "/metadata/uid")));
    let container_name = text(container, "/name").to_string();
    let volumes: Vec<&Value> = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let mut mounts = Vec::new();
    for mount in container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let volume_name = text(mount, "/name");
        let volume = volumes
            .iter()
            .find(|v| text(v, "/name") == volume_name)
            .ok_or_else(|| MountError::UnknownVolume {
                container: container_name.clone(),
                mount: volume_name.to_string(),
            })?;
        let mut host_path = volume_folder(store, folders, namespace, &pod_folder, volume)?;
        let sub_path = text(mount, "/subPath");
        if !sub_path.is_empty() {
            host_path = host_path.join(sub_path.trim_start_matches('/'));
        }
        let mount_path = text(mount, "/mountPath").trim_end_matches('/').to_string();
        if mount_path.is_empty() {
            // A mount on `/` would rewrite every absolute path; it is left unmapped.
            continue;
        }
        mounts.push(Mount {
            mount_path,
            host_path,
        });
    }
    mounts.sort_by_key(|m| std::cmp::Reverse(m.mount_path.len()));
    let env = environment(store, pod, container)?
        .into_iter()
        .map(|(name, value)| {
            let value = rewrite_paths(&mounts, &value);
            (name, value)
        })
        .collect();
    std::fs::create_dir_all(&pod_folder).map_err(io_error(&pod_folder))?;
    let working_dir = match text(container, "/workingDir") {
        "" => pod_folder,
        dir => {
            let mapped = PathBuf::from(rewrite_paths(&mounts, dir));
            if mapped.is_dir() { mapped } else { pod_folder }
        }
    };
    Ok(ContainerView {
        container: container_name,
        mounts,
        env,
        working_dir,
    })
}

/// The host folder behind one of the pod's volumes, prepared (created, files written).
fn volume_folder(
    store: &Store,
    folders: &VolumeFolders,
    namespace: &str,
    pod_folder: &Path,
    volume: &Value,
) -> Result<PathBuf, MountError> {
    let name = text(volume, "/name");
    let local = pod_folder.join("volumes").join(name);
    if let Some(claim) = volume.pointer("/persistentVolumeClaim/claimName") {
        let claim = claim.as_str().unwrap_or_default();
        let problem = |problem: &str| MountError::Claim {
            volume: name.to_string(),
            claim: claim.to_string(),
            problem: problem.to_string(),
        };
        let pvc = store
            .get("/persistentvolumeclaims", namespace, claim)
            .ok_or_else(|| problem("the claim does not exist"))?;
        let pv_name = text(&pvc, "/spec/volumeName");
        if pv_name.is_empty() {
            return Err(problem("the claim is not bound (spec.volumeName is empty)"));
        }
        if store.get("/persistentvolumes", "", pv_name).is_none() {
            return Err(problem(&format!(
                "its PersistentVolume {pv_name} does not exist"
            )));
        }
        let folder = absolute(folders.volume(pv_name));
        std::fs::create_dir_all(&folder).map_err(io_error(&folder))?;
        return Ok(folder);
    }
    if let Some(path) = volume.pointer("/hostPath/path").and_then(Value::as_str) {
        return Ok(PathBuf::from(path));
    }
    if volume.get("emptyDir").is_some() {
        std::fs::create_dir_all(&local).map_err(io_error(&local))?;
        return Ok(local);
    }
    let mut files = BTreeMap::new();
    if let Some(source) = volume.get("configMap") {
        files.extend(source_files(store, namespace, "configmap", source)?);
    } else if let Some(source) = volume.get("secret") {
        files.extend(source_files(store, namespace, "secret", source)?);
    } else if let Some(sources) = volume
        .pointer("/projected/sources")
        .and_then(Value::as_array)
    {
        for source in sources {
            if let Some(source) = source.get("configMap") {
                files.extend(source_files(store, namespace, "configmap", source)?);
            } else if let Some(source) = source.get("secret") {
                files.extend(source_files(store, namespace, "secret", source)?);
            } else {
                let kind = source
                    .as_object()
                    .and_then(|o| o.keys().next().cloned())
                    .unwrap_or_default();
                return Err(MountError::Unsupported(format!(
                    "projected source {kind} in volume {name}"
                )));
            }
        }
    } else {
        let kind = volume
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "name").cloned())
            .unwrap_or_default();
        return Err(MountError::Unsupported(format!(
            "volume {name} of type {kind}"
        )));
    }
    if local.exists() {
        std::fs::remove_dir_all(&local).map_err(io_error(&local))?;
    }
    std::fs::create_dir_all(&local).map_err(io_error(&local))?;
    for (relative, content) in files {
        let path = local.join(relative.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        std::fs::write(&path, content).map_err(io_error(&path))?;
    }
    Ok(local)
}

/// The keys of a ConfigMap or Secret as bytes (Secret `data` and ConfigMap `binaryData` are
/// base64), or `None` when it does not exist.
fn referenced_data(
    store: &Store,
    namespace: &str,
    what: &'static str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, MountError> {
    let key = if what == "secret" {
        "/secrets"
    } else {
        "/configmaps"
    };
    let Some(object) = store.get(key, namespace, name) else {
        return Ok(None);
    };
    let mut data = BTreeMap::new();
    let decode = |key: &str, encoded: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|error| MountError::Reference {
                what,
                name: name.to_string(),
                namespace: namespace.to_string(),
                problem: format!("key {key} is not valid base64: {error}"),
            })
    };
    let (plain, encoded) = if what == "secret" {
        ("stringData", "data")
    } else {
        ("data", "binaryData")
    };
    for (key, value) in object
        .get(encoded)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        data.insert(
            key.clone(),
            decode(key, value.as_str().unwrap_or_default())?,
        );
    }
    for (key, value) in object
        .get(plain)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        data.insert(
            key.clone(),
            value.as_str().unwrap_or_default().as_bytes().to_vec(),
        );
    }
    Ok(Some(data))
}

/// The files a configMap or secret volume source (or projected source) produces.
fn source_files(
    store: &Store,
    namespace: &str,
    what: &'static str,
    source: &Value,
) -> Result<BTreeMap<String, Vec<u8>>, MountError> {
    let name = if what == "secret" && source.get("secretName").is_some() {
        text(source, "/secretName")
    } else {
        text(source, "/name")
    };
    let optional = source.get("optional").and_then(Value::as_bool) == Some(true);
    let missing = |problem: String| MountError::Reference {
        what,
        name: name.to_string(),
        namespace: namespace.to_string(),
        problem,
    };
    let Some(mut data) = referenced_data(store, namespace, what, name)? else {
        return if optional {
            Ok(BTreeMap::new())
        } else {
            Err(missing("does not exist".into()))
        };
    };
    let Some(items) = source.get("items").and_then(Value::as_array) else {
        return Ok(data);
    };
    let mut files = BTreeMap::new();
    for item in items {
        let key = text(item, "/key");
        let content = data
            .remove(key)
            .ok_or_else(|| missing(format!("has no key {key}")))?;
        files.insert(text(item, "/path").to_string(), content);
    }
    Ok(files)
}

/// The container's environment: `envFrom` first, then `env` (later entries win), with
/// `$(VAR)` references to earlier variables expanded.
fn environment(
    store: &Store,
    pod: &Value,
    container: &Value,
) -> Result<Vec<(String, String)>, MountError> {
    let namespace = text(pod, "/metadata/namespace");
    let mut env: Vec<(String, String)> = Vec::new();
    fn set(env: &mut Vec<(String, String)>, name: String, value: String) {
        env.retain(|(k, _)| *k != name);
        env.push((name, value));
    }
    for from in container
        .get("envFrom")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let prefix = text(from, "/prefix");
        let (what, source) = match (from.get("configMapRef"), from.get("secretRef")) {
            (Some(source), _) => ("configmap", source),
            (None, Some(source)) => ("secret", source),
            (None, None) => return Err(MountError::Unsupported("an empty envFrom entry".into())),
        };
        let name = text(source, "/name");
        match referenced_data(store, namespace, what, name)? {
            Some(data) => {
                for (key, value) in data {
                    set(
                        &mut env,
                        format!("{prefix}{key}"),
                        String::from_utf8_lossy(&value).into_owned(),
                    );
                }
            }
            None if source.get("optional").and_then(Value::as_bool) == Some(true) => {}
            None => {
                return Err(MountError::Reference {
                    what,
                    name: name.to_string(),
                    namespace: namespace.to_string(),
                    problem: "does not exist (envFrom)".into(),
                });
            }
        }
    }
    for variable in container
        .get("env")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let name = text(variable, "/name").to_string();
        let value = match variable.get("valueFrom") {
            None => {
                let known: BTreeMap<&str, &str> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                Some(expand(text(variable, "/value"), &known))
            }
            Some(from) => value_from(store, pod, &name, from)?,
        };
        if let Some(value) = value {
            set(&mut env, name, value);
        }
    }
    Ok(env)
}

/// One `valueFrom`; `None` for an optional reference that is missing.
fn value_from(
    store: &Store,
    pod: &Value,
    variable: &str,
    from: &Value,
) -> Result<Option<String>, MountError> {
    let namespace = text(pod, "/metadata/namespace");
    let reference = match (from.get("configMapKeyRef"), from.get("secretKeyRef")) {
        (Some(source), _) => Some(("configmap", source)),
        (None, Some(source)) => Some(("secret", source)),
        (None, None) => None,
    };
    if let Some((what, source)) = reference {
        let name = text(source, "/name");
        let key = text(source, "/key");
        let optional = source.get("optional").and_then(Value::as_bool) == Some(true);
        let value =
            referenced_data(store, namespace, what, name)?.and_then(|mut data| data.remove(key));
        return match value {
            Some(value) => Ok(Some(String::from_utf8_lossy(&value).into_owned())),
            None if optional => Ok(None),
            None => Err(MountError::Reference {
                what,
                name: name.to_string(),
                namespace: namespace.to_string(),
                problem: format!("key {key} (for env {variable}) is missing"),
            }),
        };
    }
    if let Some(path) = from.pointer("/fieldRef/fieldPath").and_then(Value::as_str) {
        return field_value(pod, path).map(Some).ok_or_else(|| {
            MountError::Unsupported(format!("fieldRef {path} (for env {variable})"))
        });
    }
    Err(MountError::Unsupported(format!(
        "valueFrom of env {variable} other than configMapKeyRef, secretKeyRef and fieldRef"
    )))
}

/// The downward-API fields a `fieldRef` may name.
fn field_value(pod: &Value, path: &str) -> Option<String> {
    let keyed = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix("['"))
            .and_then(|rest| rest.strip_suffix("']"))
    };
    if let Some(label) = keyed("metadata.labels") {
        return Some(text(pod, &format!("/metadata/labels/{label}")).to_string());
    }
    if let Some(annotation) = keyed("metadata.annotations") {
        let pointer = format!(
            "/metadata/annotations/{}",
            annotation.replace('~', "~0").replace('/', "~1")
        );
        return Some(text(pod, &pointer).to_string());
    }
    let pointer = match path {
        "metadata.name" => "/metadata/name",
        "metadata.namespace" => "/metadata/namespace",
        "metadata.uid" => "/metadata/uid",
        "spec.nodeName" => "/spec/nodeName",
        "spec.serviceAccountName" => "/spec/serviceAccountName",
        "status.hostIP" => "/status/hostIP",
        "status.podIP" => "/status/podIP",
        _ => return None,
    };
    Some(text(pod, pointer).to_string())
}

/// Kubernetes `$(VAR)` expansion: known variables are replaced, `$$` is a literal `$`,
/// unknown references stay as written.
fn expand(input: &str, env: &BTreeMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(index) = rest.find('$') {
        out.push_str(&rest[..index]);
        let after = &rest[index + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some(value) = env.get(&inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Characters that may continue a path component: a mount path followed by one of these is
/// a different path (`/data` in `/database`).
fn continues_path(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '@')
}

/// Replaces each mount path that starts at a path boundary (start of text or after a
/// character that cannot be part of a path) and ends at one, longest mount path first.
fn rewrite_paths(mounts: &[Mount], text: &str) -> String {
    if mounts.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut previous: Option<char> = None;
    let mut index = 0;
    while index < text.len() {
        let rest = &text[index..];
        let at_boundary = previous.is_none_or(|c| !(continues_path(c) || c == '/'));
        let hit = at_boundary
            .then(|| {
                mounts.iter().find(|mount| {
                    rest.starts_with(mount.mount_path.as_str())
                        && rest[mount.mount_path.len()..]
                            .chars()
                            .next()
                            .is_none_or(|c| !continues_path(c))
                })
            })
            .flatten();
        if let Some(mount) = hit {
            out.push_str(&mount.host_path.to_string_lossy());
            index += mount.mount_path.len();
            previous = mount.mount_path.chars().last();
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        out.push(c);
        previous = Some(c);
        index += c.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts() -> Vec<Mount> {
        let mut mounts = vec![
            Mount {
                mount_path: "/data".into(),
                host_path: "/host/pv-1".into(),
            },
            Mount {
                mount_path: "/data/cache".into(),
                host_path: "/host/empty".into(),
            },
        ];
        mounts.sort_by_key(|m| std::cmp::Reverse(m.mount_path.len()));
        mounts
    }

    #[test]
    fn mount_paths_are_rewritten_only_at_path_boundaries() {
        let mounts = mounts();
        assert_eq!(
            rewrite_paths(&mounts, "echo hi > /data/x; ls /data"),
            "echo hi > /host/pv-1/x; ls /host/pv-1"
        );
        assert_eq!(rewrite_paths(&mounts, "/data/cache/a"), "/host/empty/a");
        assert_eq!(rewrite_paths(&mounts, "--dir=/data"), "--dir=/host/pv-1");
        assert_eq!(rewrite_paths(&mounts, "'/data/y'"), "'/host/pv-1/y'");
        assert_eq!(
            rewrite_paths(&mounts, "/database /x/data"),
            "/database /x/data"
        );
    }

    #[test]
    fn variables_expand_as_kubernetes_does() {
        let env = BTreeMap::from([("A", "1"), ("B", "two")]);
        assert_eq!(expand("$(A)-$(B)", &env), "1-two");
        assert_eq!(expand("$$(A) $(C) $", &env), "$(A) $(C) $");
    }

    #[test]
    fn field_references_read_the_pod() {
        let pod = serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
            "status": {"podIP": "127.0.0.1"},
        });
        assert_eq!(field_value(&pod, "metadata.name").as_deref(), Some("p"));
        assert_eq!(
            field_value(&pod, "metadata.labels['app']").as_deref(),
            Some("web")
        );
        assert_eq!(
            field_value(&pod, "status.podIP").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(field_value(&pod, "spec.containers"), None);
    }
}
