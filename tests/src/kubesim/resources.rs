//! The table of resources kubesim serves: the built-in Kubernetes resources (names, kinds, verbs,
//! short names, scope, subresources as a real kube-apiserver 1.32 reports them) and the
//! [`ResourceInfo`] type that custom resources from CRDs share.

/// One subresource of a resource (`status`, `scale`, `exec`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubresourceInfo {
    /// The subresource name, e.g. `status`.
    pub name: String,
    /// Group of the kind it answers with; empty with an empty `version` means "the parent's".
    pub group: String,
    /// Version of the kind it answers with; empty means the parent's version.
    pub version: String,
    /// Kind it answers with, e.g. `Scale`.
    pub kind: String,
    /// Verbs it allows.
    pub verbs: Vec<String>,
}

/// One resource in one group version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; empty for the core group.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Plural resource name, the URL segment, e.g. `deployments`.
    pub plural: String,
    /// Singular name, e.g. `deployment`.
    pub singular: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Verbs the resource allows.
    pub verbs: Vec<String>,
    /// Short names (`deploy`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Subresources.
    pub subresources: Vec<SubresourceInfo>,
}

impl ResourceInfo {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural` for the core group, `plural.group` otherwise: how errors name the resource.
    pub fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether the resource allows `verb`.
    pub fn allows(&self, verb: &str) -> bool {
        self.verbs.iter().any(|allowed| allowed == verb)
    }

    /// The subresource named `name`, if the resource has it.
    pub fn subresource(&self, name: &str) -> Option<&SubresourceInfo> {
        self.subresources.iter().find(|sub| sub.name == name)
    }
}

/// Verbs by letter, in the order discovery lists them.
const VERB_LETTERS: [(char, &str); 8] = [
    ('c', "create"),
    ('d', "delete"),
    ('D', "deletecollection"),
    ('g', "get"),
    ('l', "list"),
    ('p', "patch"),
    ('u', "update"),
    ('w', "watch"),
];

/// Every verb of a stored resource.
pub const ALL_VERBS: &str = "cdDglpuw";

/// Verbs from their letters (`"gpu"` is get, patch, update).
pub fn verbs(letters: &str) -> Vec<String> {
    VERB_LETTERS
        .iter()
        .filter(|(letter, _)| letters.contains(*letter))
        .map(|(_, verb)| (*verb).to_string())
        .collect()
}

/// A row of the built-in table: group, version, plural, singular, kind, namespaced, verb
/// letters, short names, categories, subresources as `name:Kind[@group/version]:verbs`.
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];
const STATUS: &[&str] = &["status::gpu"];
const SCALE_STATUS: &[&str] = &["scale:Scale@autoscaling/v1:gpu", "status::gpu"];

/// The built-in resources kubesim serves. A test compares these rows with the discovery
/// documents of a real kube-apiserver (`../shared/testdata/discovery/`).
#[rustfmt::skip]
const BUILT_IN: &[Row] = &[
    // core/v1
    ("", "v1", "bindings", "binding", "Binding", true, "c", NONE, NONE, NONE),
    ("", "v1", "componentstatuses", "componentstatus", "ComponentStatus", false, "gl", &["cs"], NONE, NONE),
    ("", "v1", "configmaps", "configmap", "ConfigMap", true, ALL_VERBS, &["cm"], NONE, NONE),
    ("", "v1", "endpoints", "endpoints", "Endpoints", true, ALL_VERBS, &["ep"], NONE, NONE),
    ("", "v1", "events", "event", "Event", true, ALL_VERBS, &["ev"], NONE, NONE),
    ("", "v1", "limitranges", "limitrange", "LimitRange", true, ALL_VERBS, &["limits"], NONE, NONE),
    ("", "v1", "namespaces", "namespace", "Namespace", false, "cdglpuw", &["ns"], NONE, &["finalize:Namespace:u", "status::gpu"]),
    ("", "v1", "nodes", "node", "Node", false, ALL_VERBS, &["no"], NONE, &["proxy:NodeProxyOptions:cdgpu", "status::gpu"]),
    ("", "v1", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", true, ALL_VERBS, &["pvc"], NONE, STATUS),
    ("", "v1", "persistentvolumes", "persistentvolume", "PersistentVolume", false, ALL_VERBS, &["pv"], NONE, STATUS),
    ("", "v1", "pods", "pod", "Pod", true, ALL_VERBS, &["po"], ALL, &["attach:PodAttachOptions:cg", "binding:Binding:c", "ephemeralcontainers::gpu", "eviction:Eviction@policy/v1:c", "exec:PodExecOptions:cg", "log::g", "portforward:PodPortForwardOptions:cg", "proxy:PodProxyOptions:cdgpu", "status::gpu"]),
    ("", "v1", "podtemplates", "podtemplate", "PodTemplate", true, ALL_VERBS, NONE, NONE, NONE),
    ("", "v1", "replicationcontrollers", "replicationcontroller", "ReplicationController", true, ALL_VERBS, &["rc"], ALL, SCALE_STATUS),
    ("", "v1", "resourcequotas", "resourcequota", "ResourceQuota", true, ALL_VERBS, &["quota"], NONE, STATUS),
    ("", "v1", "secrets", "secret", "Secret", true, ALL_VERBS, NONE, NONE, NONE),
    ("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", true, ALL_VERBS, &["sa"], NONE, &["token:TokenRequest@authentication.k8s.io/v1:c"]),
    ("", "v1", "services", "service", "Service", true, ALL_VERBS, &["svc"], ALL, &["proxy:ServiceProxyOptions:cdgpu", "status::gpu"]),
    // apps/v1
    ("apps", "v1", "controllerrevisions", "controllerrevision", "ControllerRevision", true, ALL_VERBS, NONE, NONE, NONE),
    ("apps", "v1", "daemonsets", "daemonset", "DaemonSet", true, ALL_VERBS, &["ds"], ALL, STATUS),
    ("apps", "v1", "deployments", "deployment", "Deployment", true, ALL_VERBS, &["deploy"], ALL, SCALE_STATUS),
    ("apps", "v1", "replicasets", "replicaset", "ReplicaSet", true, ALL_VERBS, &["rs"], ALL, SCALE_STATUS),
    ("apps", "v1", "statefulsets", "statefulset", "StatefulSet", true, ALL_VERBS, &["sts"], ALL, SCALE_STATUS),
    // autoscaling
    ("autoscaling", "v2", "horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", true, ALL_VERBS, &["hpa"], ALL, STATUS),
    ("autoscaling", "v1", "horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", true, ALL_VERBS, &["hpa"], ALL, STATUS),
    // batch/v1
    ("batch", "v1", "cronjobs", "cronjob", "CronJob", true, ALL_VERBS, &["cj"], ALL, STATUS),
    ("batch", "v1", "jobs", "job", "Job", true, ALL_VERBS, NONE, ALL, STATUS),
    // networking.k8s.io/v1
    ("networking.k8s.io", "v1", "ingressclasses", "ingressclass", "IngressClass", false, ALL_VERBS, NONE, NONE, NONE),
    ("networking.k8s.io", "v1", "ingresses", "ingress", "Ingress", true, ALL_VERBS, &["ing"], NONE, STATUS),
    ("networking.k8s.io", "v1", "ipaddresses", "ipaddress", "IPAddress", false, ALL_VERBS, &["ip"], NONE, NONE),
    ("networking.k8s.io", "v1", "networkpolicies", "networkpolicy", "NetworkPolicy", true, ALL_VERBS, &["netpol"], NONE, NONE),
    ("networking.k8s.io", "v1", "servicecidrs", "servicecidr", "ServiceCIDR", false, ALL_VERBS, NONE, NONE, STATUS),
    // policy/v1
    ("policy", "v1", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget", true, ALL_VERBS, &["pdb"], NONE, STATUS),
    // rbac.authorization.k8s.io/v1
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", false, ALL_VERBS, NONE, NONE, NONE),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole", false, ALL_VERBS, NONE, NONE, NONE),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding", true, ALL_VERBS, NONE, NONE, NONE),
    ("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", true, ALL_VERBS, NONE, NONE, NONE),
    // storage.k8s.io/v1
    ("storage.k8s.io", "v1", "csidrivers", "csidriver", "CSIDriver", false, ALL_VERBS, NONE, NONE, NONE),
    ("storage.k8s.io", "v1", "csinodes", "csinode", "CSINode", false, ALL_VERBS, NONE, NONE, NONE),
    ("storage.k8s.io", "v1", "csistoragecapacities", "csistoragecapacity", "CSIStorageCapacity", true, ALL_VERBS, NONE, NONE, NONE),
    ("storage.k8s.io", "v1", "storageclasses", "storageclass", "StorageClass", false, ALL_VERBS, &["sc"], NONE, NONE),
    ("storage.k8s.io", "v1", "volumeattachments", "volumeattachment", "VolumeAttachment", false, ALL_VERBS, NONE, NONE, STATUS),
    // apiextensions.k8s.io/v1
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions", "customresourcedefinition", "CustomResourceDefinition", false, ALL_VERBS, &["crd", "crds"], &["api-extensions"], STATUS),
    // scheduling.k8s.io/v1
    ("scheduling.k8s.io", "v1", "priorityclasses", "priorityclass", "PriorityClass", false, ALL_VERBS, &["pc"], NONE, NONE),
    // coordination.k8s.io/v1
    ("coordination.k8s.io", "v1", "leases", "lease", "Lease", true, ALL_VERBS, NONE, NONE, NONE),
    // discovery.k8s.io/v1
    ("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", true, ALL_VERBS, NONE, NONE, NONE),
];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_string()).collect()
}

/// Parses `name:Kind[@group/version]:verbs`; an empty kind means the parent's kind.
fn subresource(spec: &str, parent_kind: &str) -> SubresourceInfo {
    let mut parts = spec.splitn(3, ':');
    let name = parts.next().unwrap_or_default();
    let kind_part = parts.next().unwrap_or_default();
    let verb_letters = parts.next().unwrap_or_default();
    let (kind, group, version) = match kind_part.split_once('@') {
        Some((kind, group_version)) => {
            let (group, version) = group_version.split_once('/').unwrap_or(("", group_version));
            (kind, group, version)
        }
        None if kind_part.is_empty() => (parent_kind, "", ""),
        None => (kind_part, "", ""),
    };
    SubresourceInfo {
        name: name.to_string(),
        group: group.to_string(),
        version: version.to_string(),
        kind: kind.to_string(),
        verbs: verbs(verb_letters),
    }
}

/// The built-in resources, in table order (preferred version of a group first).
pub fn built_in() -> Vec<ResourceInfo> {
    BUILT_IN
        .iter()
        .map(
            |&(
                group,
                version,
                plural,
                singular,
                kind,
                namespaced,
                verb_letters,
                short,
                cats,
                subs,
            )| {
                ResourceInfo {
                    group: group.to_string(),
                    version: version.to_string(),
                    plural: plural.to_string(),
                    singular: singular.to_string(),
                    kind: kind.to_string(),
                    namespaced,
                    verbs: verbs(verb_letters),
                    short_names: strings(short),
                    categories: strings(cats),
                    subresources: subs.iter().map(|spec| subresource(spec, kind)).collect(),
                }
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subresource_specs_name_their_kind_and_group() {
        let pods = built_in().into_iter().find(|r| r.plural == "pods").unwrap();
        let eviction = pods.subresource("eviction").unwrap();
        assert_eq!(
            (
                eviction.kind.as_str(),
                eviction.group.as_str(),
                eviction.version.as_str()
            ),
            ("Eviction", "policy", "v1")
        );
        assert_eq!(eviction.verbs, vec!["create"]);
        let status = pods.subresource("status").unwrap();
        assert_eq!((status.kind.as_str(), status.group.as_str()), ("Pod", ""));
        assert_eq!(status.verbs, vec!["get", "patch", "update"]);
    }

    #[test]
    fn verbs_keep_discovery_order() {
        assert_eq!(verbs("wgc"), vec!["create", "get", "watch"]);
    }
}
