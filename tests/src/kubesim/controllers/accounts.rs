//! The ServiceAccount and root-CA publisher controllers: every active namespace has a `default`
//! ServiceAccount and a `kube-root-ca.crt` ConfigMap holding the cluster's CA, recreated when
//! deleted.

use serde_json::json;

use super::objects::{Kind, Objects, is_deleting};
use super::report;

const SERVICE_ACCOUNTS: Kind = Kind {
    group: "",
    version: "v1",
    plural: "serviceaccounts",
};
const CONFIG_MAPS: Kind = Kind {
    group: "",
    version: "v1",
    plural: "configmaps",
};

/// The ConfigMap the root-CA publisher keeps in every namespace.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";

/// Creates the namespace's `default` ServiceAccount and root-CA ConfigMap when missing.
pub fn reconcile(objects: &Objects<'_>, namespace: &str, ca_pem: &str) {
    let Some(ns) = objects.cluster.store().get("/namespaces", "", namespace) else {
        return;
    };
    if is_deleting(&ns) {
        return;
    }
    if objects
        .get(&SERVICE_ACCOUNTS, namespace, "default")
        .is_none()
    {
        let account = json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": namespace},
        });
        report(
            "creating the default ServiceAccount",
            namespace,
            objects.create(&SERVICE_ACCOUNTS, Some(namespace), account),
        );
    }
    if objects
        .get(&CONFIG_MAPS, namespace, ROOT_CA_CONFIG_MAP)
        .is_none()
    {
        let config_map = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": ROOT_CA_CONFIG_MAP, "namespace": namespace,
                "annotations": {
                    "kubernetes.io/description": "Contains a CA bundle that can be used to verify \
                        the kube-apiserver when using internal endpoints such as the internal \
                        service IP or kubernetes.default.svc. No other usage is guaranteed across \
                        distributions of Kubernetes clusters."
                },
            },
            "data": {"ca.crt": ca_pem},
        });
        report(
            "publishing the root CA",
            namespace,
            objects.create(&CONFIG_MAPS, Some(namespace), config_map),
        );
    }
}
