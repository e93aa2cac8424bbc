//! The objects the benchmark creates: per namespace, a repeating mix of twenty slots shaped like
//! a small application (ConfigMaps, Secrets, Services, ServiceAccounts, Roles and RoleBindings,
//! Deployments and StatefulSets of one replica, no volumes), every object labelled
//! [`LABEL`]`=`[`LABEL_VALUE`] so the restored ones can be counted.

use base64::Engine;
use serde_json::{Value, json};

/// The label every created object carries (not their pods, which their controllers make).
pub const LABEL: &str = "stowage-bench";
/// Its value.
pub const LABEL_VALUE: &str = "objects";

/// A resource type the benchmark creates or lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Type {
    /// `v1`, `apps/v1`.
    pub api_version: &'static str,
    /// `ConfigMap`.
    pub kind: &'static str,
    /// `configmaps`.
    pub plural: &'static str,
}

impl Type {
    const fn new(api_version: &'static str, kind: &'static str, plural: &'static str) -> Self {
        Self {
            api_version,
            kind,
            plural,
        }
    }

    fn prefix(&self) -> String {
        if self.api_version.contains('/') {
            format!("/apis/{}", self.api_version)
        } else {
            format!("/api/{}", self.api_version)
        }
    }

    /// The collection path: in `namespace`, or cluster-wide.
    pub fn path(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(namespace) => format!("{}/namespaces/{namespace}/{}", self.prefix(), self.plural),
            None => format!("{}/{}", self.prefix(), self.plural),
        }
    }
}

/// Namespaces.
pub const NAMESPACE: Type = Type::new("v1", "Namespace", "namespaces");
const CONFIG_MAP: Type = Type::new("v1", "ConfigMap", "configmaps");
const SECRET: Type = Type::new("v1", "Secret", "secrets");
const SERVICE: Type = Type::new("v1", "Service", "services");
const SERVICE_ACCOUNT: Type = Type::new("v1", "ServiceAccount", "serviceaccounts");
const ROLE: Type = Type::new("rbac.authorization.k8s.io/v1", "Role", "roles");
const ROLE_BINDING: Type = Type::new(
    "rbac.authorization.k8s.io/v1",
    "RoleBinding",
    "rolebindings",
);
const DEPLOYMENT: Type = Type::new("apps/v1", "Deployment", "deployments");
const STATEFUL_SET: Type = Type::new("apps/v1", "StatefulSet", "statefulsets");
const REPLICA_SET: Type = Type::new("apps/v1", "ReplicaSet", "replicasets");
/// Pods.
pub const POD: Type = Type::new("v1", "Pod", "pods");

/// The types created in each namespace, one per slot of twenty.
const SLOTS: [Type; 20] = [
    CONFIG_MAP,
    SECRET,
    CONFIG_MAP,
    SERVICE,
    DEPLOYMENT,
    CONFIG_MAP,
    SECRET,
    SERVICE_ACCOUNT,
    CONFIG_MAP,
    ROLE,
    ROLE_BINDING,
    CONFIG_MAP,
    SECRET,
    SERVICE,
    DEPLOYMENT,
    CONFIG_MAP,
    SERVICE_ACCOUNT,
    SECRET,
    CONFIG_MAP,
    STATEFUL_SET,
];

/// The types the benchmark creates (namespaces aside).
pub fn created_types() -> Vec<Type> {
    let mut types: Vec<Type> = Vec::new();
    for slot in SLOTS {
        if !types.contains(&slot) {
            types.push(slot);
        }
    }
    types
}

/// What a backup of these namespaces holds, by type: the created types, the namespaces, and
/// what the workloads' controllers made from them (ReplicaSets and Pods).
pub fn held_types() -> Vec<Type> {
    let mut types = vec![NAMESPACE];
    types.extend(created_types());
    types.extend([REPLICA_SET, POD]);
    types
}

/// Pods the workloads of one namespace of `objects` objects run (one replica each).
pub fn pods_per_namespace(objects: usize) -> usize {
    (0..objects)
        .filter(|index| matches!(SLOTS[index % SLOTS.len()], DEPLOYMENT | STATEFUL_SET))
        .count()
}

/// One object to create.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The collection path it is posted to.
    pub path: String,
    /// The object.
    pub body: Value,
}

/// The name of the `index`-th benchmark namespace.
pub fn namespace_name(index: usize) -> String {
    format!("bench-{index:03}")
}

/// The Namespace object named `name`.
pub fn namespace(name: &str) -> Planned {
    Planned {
        path: NAMESPACE.path(None),
        body: json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {LABEL: LABEL_VALUE, "team": name}},
        }),
    }
}

/// The `count` objects of namespace `namespace`.
pub fn objects(namespace: &str, count: usize) -> Vec<Planned> {
    (0..count)
        .map(|index| {
            let kind = SLOTS[index % SLOTS.len()];
            Planned {
                path: kind.path(Some(namespace)),
                body: object(kind, namespace, index),
            }
        })
        .collect()
}

/// Text of about `len` bytes that varies with `seed` (configuration files, keys).
fn filler(seed: usize, len: usize) -> String {
    let mut text = String::with_capacity(len + 40);
    let mut line = 0;
    while text.len() < len {
        text.push_str(&format!(
            "setting.{seed}.{line} = value-{:08x}\n",
            seed.wrapping_mul(2_654_435_761).wrapping_add(line * 40_503)
        ));
        line += 1;
    }
    text
}

fn metadata(kind: Type, namespace: &str, name: &str) -> Value {
    json!({
        "name": name,
        "namespace": namespace,
        "labels": {
            LABEL: LABEL_VALUE,
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/part-of": namespace,
            "app.kubernetes.io/component": kind.plural,
        },
        "annotations": {"example.com/owner": format!("team-{namespace}")},
    })
}

fn pod_template(app: &str, index: usize) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {
            "containers": [{
                "name": "app",
                "image": format!("registry.example.com/shop/app:{}.{}", index % 7, index % 3),
                "ports": [{"name": "http", "containerPort": 8080}],
                "env": [
                    {"name": "LOG_LEVEL", "value": "info"},
                    {"name": "CONFIG_PATH", "value": "/etc/app/app.properties"},
                ],
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"memory": "256Mi"},
                },
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
            }],
        },
    })
}

fn object(kind: Type, namespace: &str, index: usize) -> Value {
    let name = format!("{}-{index:03}", kind.kind.to_ascii_lowercase());
    let mut object = json!({
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": metadata(kind, namespace, &name),
    });
    let base64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let body = match kind.kind {
        "ConfigMap" => json!({"data": {
            "app.properties": filler(index, 600),
            "LOG_LEVEL": "info",
            "REPLICA": index.to_string(),
        }}),
        "Secret" => json!({"type": "Opaque", "data": {
            "username": base64(&format!("user-{index}")),
            "password": base64(&format!("{:032x}", index.wrapping_mul(0x9E37_79B9_7F4A_7C15))),
            "key.pem": base64(&filler(index + 1, 300)),
        }}),
        "Service" => json!({"spec": {
            "selector": {"app": format!("deployment-{:03}", index + 1)},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        }}),
        "ServiceAccount" => json!({}),
        "Role" => json!({"rules": [
            {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]},
        ]}),
        "RoleBinding" => json!({
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": format!("role-{:03}", index - 1)},
            "subjects": [{"kind": "ServiceAccount", "name": format!("serviceaccount-{:03}", index - 3),
                          "namespace": namespace}],
        }),
        "Deployment" => json!({"spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(&name, index),
        }}),
        "StatefulSet" => json!({"spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(&name, index),
        }}),
        _ => json!({}),
    };
    if let (Some(object), Some(body)) = (object.as_object_mut(), body.as_object()) {
        object.extend(body.clone());
    }
    object
}
