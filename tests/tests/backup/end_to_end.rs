//! Whole backups and restores through the engine's workflows, on kubesim clusters whose data
//! movers run the real `stowage mover` binary: an application with a volume and a rule is backed
//! up to a local-folder location, its namespace is deleted and restored into the same cluster,
//! then restored into a second cluster under a namespace mapping; objects and files must come
//! back, and nothing temporary is left behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use stowage_tests::kubesim::{Kubesim, KubesimOptions, LocalImage};
use stowage_workflows::backup::BackupSpec;
use stowage_workflows::backup::volumes::OWNER_LABEL;
use stowage_workflows::backup::workflow::{BACKUP_WORKFLOW, BackupInput, backup_workflow};
use stowage_workflows::cluster::ClusterClient;
use stowage_workflows::entity::Kind;
use stowage_workflows::restore::Outcome;
use stowage_workflows::restore::workflow::{
    RESTORE_WORKFLOW, RestoreInput, RestoreSpec, restore_workflow,
};

use super::create;
use super::server::Server;
use crate::kubesim::{TestCluster, eventually};

/// The image prefix data-mover pods use, mapped to the built `stowage` binary.
pub(crate) const MOVER_IMAGE: &str = "stowage/stowage";

/// The `stowage` binary next to this test binary (`target/debug/stowage`).
pub(crate) fn stowage_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().unwrap().parent().unwrap().join("stowage");
    assert!(
        binary.exists(),
        "{} is missing: build the workspace (cargo build --workspace) before these tests",
        binary.display()
    );
    binary
}

pub(super) async fn start(name: &str) -> TestCluster {
    let folder = tempfile::tempdir().unwrap();
    let mut options = KubesimOptions::new(name, folder.path().join("cluster"));
    options.local_images = vec![LocalImage {
        prefix: MOVER_IMAGE.into(),
        binary: stowage_binary(),
    }];
    let sim = Kubesim::start(options).await.unwrap();
    TestCluster { sim, folder }
}

/// The server side with the backup and restore workflows, movers from the local image.
fn start_server() -> Server {
    Server::start(
        |services| services.mover.image = format!("{MOVER_IMAGE}:test"),
        |services| {
            vec![
                backup_workflow(services.clone()),
                restore_workflow(services.clone()),
            ]
        },
    )
}

pub(super) async fn kubeconfig(cluster: &TestCluster) -> Value {
    json!({"kubeconfig": std::fs::read_to_string(cluster.sim.kubeconfig_path()).unwrap()})
}

pub(super) async fn connect(cluster: &TestCluster) -> ClusterClient {
    super::connect(cluster).await
}

/// Every file under `root` with its bytes, by relative path.
pub(super) fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    for entry in walkdir(root) {
        let relative = entry
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        found.insert(relative, std::fs::read(&entry).unwrap());
    }
    found
}

fn walkdir(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The folder of the PV bound to claim `namespace/claim`, once it is bound.
pub(super) async fn claim_folder(
    cluster: &TestCluster,
    client: &ClusterClient,
    namespace: &str,
    claim: &str,
) -> PathBuf {
    let path = format!("/api/v1/namespaces/{namespace}/persistentvolumeclaims");
    let volume = eventually(&format!("claim {namespace}/{claim} bound"), || async {
        let claim = client.get(&path, claim).await.ok()??;
        (claim.pointer("/status/phase")? == "Bound")
            .then(|| {
                claim
                    .pointer("/spec/volumeName")?
                    .as_str()
                    .map(str::to_string)
            })
            .flatten()
    })
    .await;
    cluster.sim.cluster().volume_folders().volume(&volume)
}

/// A database: a PVC, a Deployment mounting it, a Service and a Secret.
pub(super) async fn deploy_app(client: &kube::Client) {
    create(
        client,
        "v1",
        "Namespace",
        "namespaces",
        json!({"metadata": {"name": "shop"}}),
    )
    .await;
    create(client, "v1", "PersistentVolumeClaim", "persistentvolumeclaims", json!({
        "metadata": {"name": "data", "namespace": "shop", "labels": {"app": "db"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    })).await;
    create(
        client,
        "v1",
        "Secret",
        "secrets",
        json!({
            "metadata": {"name": "db-password", "namespace": "shop"},
            "data": {"password": "aHVudGVyMg=="}
        }),
    )
    .await;
    create(
        client,
        "v1",
        "Service",
        "services",
        json!({
            "metadata": {"name": "db", "namespace": "shop"},
            "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432}]}
        }),
    )
    .await;
    create(client, "apps/v1", "Deployment", "deployments", json!({
        "metadata": {"name": "db", "namespace": "shop", "labels": {"app": "db"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}},
                   "spec": {"containers": [{"name": "db", "image": "postgres:17",
                     "volumeMounts": [{"name": "data", "mountPath": "/var/lib/db"}]}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}}
    })).await;
}

/// A local-folder location in `root`, under `prefix`.
pub(super) fn local_location(root: &Path, prefix: &str) -> Value {
    json!({
        "location": {"kind": {"type": "local", "root": root}, "prefix": prefix},
        "passphrase": "correct horse battery"
    })
}

/// Waits until a pod labelled `app=db` in `shop` runs.
pub(super) async fn database_running(client: &ClusterClient) {
    eventually("the database pod running", || async {
        let pods = client
            .list("/api/v1/namespaces/shop/pods", "app=db")
            .await
            .ok()?;
        pods.iter()
            .any(|p| p.pointer("/status/phase") == Some(&json!("Running")))
            .then_some(())
    })
    .await;
}

pub(super) async fn no_temporaries(client: &ClusterClient, namespace: &str) {
    for path in [
        format!("/apis/batch/v1/namespaces/{namespace}/jobs"),
        format!("/api/v1/namespaces/{namespace}/secrets"),
        format!("/api/v1/namespaces/{namespace}/persistentvolumeclaims"),
        format!("/apis/snapshot.storage.k8s.io/v1/namespaces/{namespace}/volumesnapshots"),
    ] {
        let left = client.list(&path, OWNER_LABEL).await.unwrap();
        assert!(
            left.is_empty(),
            "temporary objects left in {path}: {left:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_with_its_volume_is_backed_up_deleted_and_restored_twice() {
    let source = start("e2e-source").await;
    let target = start("e2e-target").await;
    let source_client = connect(&source).await;
    let target_client = connect(&target).await;
    deploy_app(&source_client.client).await;

    // Data in the volume, including a file the pre-rule writes through pods/exec.
    let folder = claim_folder(&source, &source_client, "shop", "data").await;
    std::fs::create_dir_all(folder.join("base")).unwrap();
    std::fs::write(folder.join("base/table.dat"), vec![7u8; 300_000]).unwrap();
    std::fs::write(folder.join("PG_VERSION"), b"17\n").unwrap();
    database_running(&source_client).await;

    let server = start_server();
    let source_id = server
        .register(Kind::Cluster, "source", kubeconfig(&source).await)
        .await;
    let target_id = server
        .register(Kind::Cluster, "target", kubeconfig(&target).await)
        .await;
    let bucket = tempfile::tempdir().unwrap();
    let location = server
        .register(
            Kind::Location,
            "local",
            local_location(bucket.path(), "repo"),
        )
        .await;
    let rule = server
        .register(
            Kind::Rule,
            "checkpoint",
            json!({
                "pod_selector": {"matchLabels": {"app": "db"}},
                "actions": [{"command": ["sh", "-c", "echo checkpointed > /var/lib/db/CHECKPOINT"]}]
            }),
        )
        .await;

    // Back up.
    let spec = BackupSpec::parse(&json!({
        "cluster": source_id, "location": location, "namespaces": ["shop"], "pre_rules": [rule]
    }))
    .unwrap();
    let backup = "b-0001".to_string();
    let outputs = server
        .run(
            BACKUP_WORKFLOW,
            serde_json::to_value(BackupInput {
                backup: backup.clone(),
                name: "nightly".into(),
                spec,
                labels: BTreeMap::new(),
                schedule: None,
            })
            .unwrap(),
        )
        .await;
    assert_eq!(
        outputs["upload"]["volumes"],
        json!(["shop.data"]),
        "{outputs:?}"
    );
    assert_eq!(outputs["finalize"]["volumes"][0]["name"], "shop.data");
    assert!(
        outputs["collect"]["summary"]["objects"].as_u64().unwrap() >= 5,
        "{outputs:?}"
    );
    assert_eq!(outputs["pre_rules"][0]["ok"], true);
    no_temporaries(&source_client, "shop").await;
    let original = files(&folder);
    assert_eq!(
        original["CHECKPOINT"], b"checkpointed\n",
        "the pre-rule ran in the pod's volume"
    );

    // Delete the namespace, restore it into the same cluster.
    source_client
        .delete("/api/v1/namespaces", "shop")
        .await
        .unwrap();
    eventually("namespace shop gone", || async {
        source_client
            .get("/api/v1/namespaces", "shop")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let restore = |cluster: &str, mapping: Value| {
        serde_json::to_value(RestoreInput {
            restore: format!("r-{}", uuid::Uuid::new_v4().simple()),
            name: String::new(),
            spec: RestoreSpec::parse(&json!({
                "backup": backup, "location": location, "cluster": cluster,
                "namespace_mapping": mapping
            }))
            .unwrap(),
        })
        .unwrap()
    };
    let outputs = server
        .run(RESTORE_WORKFLOW, restore(&source_id, json!({})))
        .await;
    let results = stowage_workflows::restore::workflow::results(&outputs);
    let failed: Vec<_> = results
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    for (kind, name) in [
        ("Deployment.apps", "db"),
        ("Service", "db"),
        ("Secret", "db-password"),
        ("PersistentVolumeClaim", "data"),
    ] {
        assert!(
            results
                .iter()
                .any(|r| r.kind == kind && r.name == name && r.outcome == Outcome::Created),
            "{kind} {name} not created: {results:?}"
        );
    }
    let restored = claim_folder(&source, &source_client, "shop", "data").await;
    assert_ne!(restored, folder, "the claim got a new volume");
    assert_eq!(
        files(&restored),
        original,
        "the volume's files came back byte for byte"
    );
    no_temporaries(&source_client, "shop").await;

    // Into a second cluster, under another namespace.
    server
        .run(
            RESTORE_WORKFLOW,
            restore(&target_id, json!({"shop": "shop-copy"})),
        )
        .await;
    let copied = claim_folder(&target, &target_client, "shop-copy", "data").await;
    assert_eq!(files(&copied), original);
    let deployment = target_client
        .get("/apis/apps/v1/namespaces/shop-copy/deployments", "db")
        .await
        .unwrap()
        .expect("the deployment is restored");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "postgres:17"
    );
    no_temporaries(&target_client, "shop-copy").await;
}

/// `Kind namespace/name` of every object a collection of the whole cluster finds.
async fn identities(cluster: &ClusterClient) -> std::collections::BTreeSet<String> {
    let spec = BackupSpec::parse(&json!({"cluster": "c", "location": "l"})).unwrap();
    let mut kept = super::Kept::default();
    stowage_workflows::backup::collect(cluster, &spec.selection(), &mut kept, &mut |_| {})
        .await
        .unwrap();
    kept.0
        .iter()
        .filter(|o| {
            let object: Value = serde_json::from_slice(&o.body).unwrap();
            stowage_workflows::restore::prepare(object, &Default::default()).is_ok()
        })
        .map(|o| {
            format!(
                "{} {}/{}",
                o.kind,
                o.namespace.as_deref().unwrap_or(""),
                o.name
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shared_app_comes_back_whole_in_a_fresh_cluster() {
    let source = start("apps-source").await;
    if crate::kubesim::kubectl::apply_shared_apps(&source)
        .await
        .is_none()
    {
        return;
    }
    let target = start("apps-target").await;
    let source_client = connect(&source).await;
    let target_client = connect(&target).await;

    let server = start_server();
    let source_id = server
        .register(Kind::Cluster, "source", kubeconfig(&source).await)
        .await;
    let target_id = server
        .register(Kind::Cluster, "target", kubeconfig(&target).await)
        .await;
    let bucket = tempfile::tempdir().unwrap();
    let location = server
        .register(Kind::Location, "local", local_location(bucket.path(), ""))
        .await;
    // Objects only: some apps' volumes are host paths of nodes that do not exist here.
    let spec = BackupSpec::parse(&json!({
        "cluster": source_id, "location": location, "volumes": "skip"
    }))
    .unwrap();
    let outputs = server
        .run(
            BACKUP_WORKFLOW,
            serde_json::to_value(BackupInput {
                backup: "apps".into(),
                name: "apps".into(),
                spec,
                labels: BTreeMap::new(),
                schedule: None,
            })
            .unwrap(),
        )
        .await;
    let collected = outputs["collect"]["summary"]["objects"].as_u64().unwrap();
    assert!(collected > 100, "{collected} objects collected");

    let input = RestoreInput {
        restore: "r-apps".into(),
        name: String::new(),
        spec: RestoreSpec::parse(
            &json!({"backup": "apps", "location": location, "cluster": target_id}),
        )
        .unwrap(),
    };
    let outputs = server
        .run(RESTORE_WORKFLOW, serde_json::to_value(input).unwrap())
        .await;
    let results = stowage_workflows::restore::workflow::results(&outputs);
    let failed: Vec<_> = results
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");

    let expected = identities(&source_client).await;
    let restored = identities(&target_client).await;
    let missing: Vec<&String> = expected.difference(&restored).collect();
    assert!(missing.is_empty(), "not restored: {missing:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_run_around_the_snapshot_in_order() {
    let cluster = start("e2e-rules").await;
    let client = connect(&cluster).await;
    deploy_app(&client.client).await;
    let folder = claim_folder(&cluster, &client, "shop", "data").await;
    std::fs::write(folder.join("table.dat"), b"rows").unwrap();
    database_running(&client).await;

    let server = start_server();
    let cluster_id = server
        .register(Kind::Cluster, "c", kubeconfig(&cluster).await)
        .await;
    let bucket = tempfile::tempdir().unwrap();
    let location = server
        .register(Kind::Location, "local", local_location(bucket.path(), ""))
        .await;
    // The pre-rule flushes, then holds a lock (a file) for as long as its session lives; the
    // post-rule records that it ran.
    let pre = server
        .register(Kind::Rule, "quiesce", json!({
            "pod_selector": {"matchLabels": {"app": "db"}},
            "actions": [
                {"command": ["sh", "-c", "echo flushed > /var/lib/db/FLUSHED"]},
                {"command": ["sh", "-c", "touch /var/lib/db/LOCKED; cat; rm -f /var/lib/db/LOCKED"],
                 "background": true}
            ]
        }))
        .await;
    let post = server
        .register(
            Kind::Rule,
            "resume",
            json!({
                "pod_selector": {"matchLabels": {"app": "db"}},
                "actions": [{"command": ["sh", "-c", "echo resumed > /var/lib/db/RESUMED"]}]
            }),
        )
        .await;
    let spec = BackupSpec::parse(&json!({
        "cluster": cluster_id, "location": location, "namespaces": ["shop"],
        "pre_rules": [pre], "post_rules": [post]
    }))
    .unwrap();
    let outputs = server
        .run(
            BACKUP_WORKFLOW,
            serde_json::to_value(BackupInput {
                backup: "ruled".into(),
                name: "ruled".into(),
                spec,
                labels: BTreeMap::new(),
                schedule: None,
            })
            .unwrap(),
        )
        .await;
    assert_eq!(outputs["pre_rules"][1]["background"], true, "{outputs:?}");
    assert_eq!(
        outputs["post_rules"]["background_ended"],
        json!([outputs["pre_rules"][1]["pod"]])
    );
    assert!(
        outputs["snapshot"][0]["snapshot"].is_string(),
        "the volume was snapshotted: {outputs:?}"
    );

    // What the backup holds: the flush and the lock (the background action ran during the
    // snapshot), not the post-rule's mark (it ran after the snapshot).
    let restored = tempfile::tempdir().unwrap();
    let repository =
        stowage_workflows::location::LocationSpec::parse(&local_location(bucket.path(), ""))
            .unwrap()
            .repository()
            .await
            .unwrap();
    repository
        .restore("ruled", "shop.data", restored.path(), None, 4)
        .await
        .unwrap();
    let backed_up = files(restored.path());
    assert_eq!(backed_up["FLUSHED"], b"flushed\n");
    assert!(backed_up.contains_key("LOCKED"), "{:?}", backed_up.keys());
    assert!(!backed_up.contains_key("RESUMED"), "{:?}", backed_up.keys());
    assert_eq!(std::fs::read(folder.join("RESUMED")).unwrap(), b"resumed\n");
    // Ending the background action closed its stdin: it cleaned up after itself.
    eventually("the lock released", || async {
        (!folder.join("LOCKED").exists()).then_some(())
    })
    .await;
}
