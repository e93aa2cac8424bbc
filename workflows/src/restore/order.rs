//! The order a restore creates objects in: what others depend on first (CRDs, namespaces,
//! storage, then configuration and identities, then RBAC and services), workloads last, so that
//! every object finds what it refers to. A restore may override it per kind.

/// Kinds (`kind` or `kind.group`) in creation order; anything not listed comes after the last
/// listed non-workload kind and before the workloads.
const ORDER: [&str; 19] = [
    "CustomResourceDefinition.apiextensions.k8s.io",
    "Namespace",
    "StorageClass.storage.k8s.io",
    "VolumeSnapshotClass.snapshot.storage.k8s.io",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Secret",
    "ConfigMap",
    "ServiceAccount",
    "LimitRange",
    "ResourceQuota",
    "PriorityClass.scheduling.k8s.io",
    "ClusterRole.rbac.authorization.k8s.io",
    "ClusterRoleBinding.rbac.authorization.k8s.io",
    "Role.rbac.authorization.k8s.io",
    "RoleBinding.rbac.authorization.k8s.io",
    "NetworkPolicy.networking.k8s.io",
    "Service",
    "PodDisruptionBudget.policy",
];

/// Workloads, created last (in this order), once their volumes hold their data.
const WORKLOADS: [&str; 8] = [
    "Pod",
    "ReplicaSet.apps",
    "ReplicationController",
    "Deployment.apps",
    "StatefulSet.apps",
    "DaemonSet.apps",
    "Job.batch",
    "CronJob.batch",
];

/// The rank of a kind: objects are created in increasing rank. `overrides` (kinds in order) come
/// first when given.
pub fn rank(kind: &str, overrides: &[String]) -> usize {
    if let Some(position) = overrides.iter().position(|k| k == kind) {
        return position;
    }
    let base = overrides.len();
    if let Some(position) = ORDER.iter().position(|k| *k == kind) {
        return base + position;
    }
    if let Some(position) = WORKLOADS.iter().position(|k| *k == kind) {
        return base + ORDER.len() + 1 + position;
    }
    base + ORDER.len()
}

/// Whether a kind is a workload (restored after volume data).
pub fn is_workload(kind: &str) -> bool {
    WORKLOADS.contains(&kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_and_namespaces_come_first_and_workloads_last() {
        let mut kinds = vec![
            "Deployment.apps",
            "Database.example.com",
            "ConfigMap",
            "Namespace",
            "PersistentVolumeClaim",
            "CustomResourceDefinition.apiextensions.k8s.io",
            "Service",
            "Pod",
        ];
        kinds.sort_by_key(|k| rank(k, &[]));
        assert_eq!(
            kinds,
            [
                "CustomResourceDefinition.apiextensions.k8s.io",
                "Namespace",
                "PersistentVolumeClaim",
                "ConfigMap",
                "Service",
                "Database.example.com",
                "Pod",
                "Deployment.apps",
            ]
        );
        let overrides = vec!["ConfigMap".to_string()];
        assert_eq!(rank("ConfigMap", &overrides), 0);
        assert!(rank("Namespace", &overrides) > 0);
        assert!(is_workload("StatefulSet.apps") && !is_workload("Service"));
    }
}
