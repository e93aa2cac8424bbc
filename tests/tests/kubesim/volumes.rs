//! kubesim's storage and CSI snapshot controllers through kubectl: dynamic provisioning into
//! folders, static binding, reclaim policies, snapshots as point-in-time copies, restores and
//! clones from them, and the errors the real controllers report.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use stowage_tests::kubesim::{CSI_DRIVER, Kubesim, KubesimOptions};

use super::controllers::{apply, json_of, try_json};
use super::kubectl::ok;
use super::{TestCluster, eventually, start_cluster, volume_folder};

fn claim(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: 2Gi}}}}\n{extra}"
    )
}

/// Waits until the claim is Bound; answers it.
async fn bound(cluster: &TestCluster, name: &str) -> Value {
    let waited = ok(
        cluster,
        &[
            "wait",
            "--for=jsonpath={.status.phase}=Bound",
            &format!("pvc/{name}"),
            "--timeout=20s",
        ],
    )
    .await;
    assert!(waited.contains("condition met"), "{waited}");
    json_of(cluster, &["pvc", name]).await
}

fn folder_of(cluster: &TestCluster, claim: &Value) -> PathBuf {
    volume_folder(cluster, claim["spec"]["volumeName"].as_str().unwrap())
}

async fn gone(cluster: &TestCluster, args: &[&str]) {
    eventually(&format!("{args:?} to go"), move || async move {
        try_json(cluster, args).await.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_get_provisioned_volumes_bound_both_ways_and_reclaimed() {
    let cluster = start_cluster("vol-provision").await;
    let c = &cluster;
    let classes = ok(c, &["get", "storageclass", "standard", "-o", "json"]).await;
    let standard: Value = serde_json::from_str(&classes).unwrap();
    assert_eq!(
        standard["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
        "true"
    );
    assert_eq!(standard["provisioner"], CSI_DRIVER);
    assert_eq!(standard["volumeBindingMode"], "Immediate");
    assert_eq!(standard["allowVolumeExpansion"], true);
    let driver = json_of(c, &["csidriver", CSI_DRIVER]).await;
    assert_eq!(driver["spec"]["attachRequired"], false);

    apply(c, &claim("data", "")).await;
    let data = bound(c, "data").await;
    assert_eq!(data["spec"]["storageClassName"], "standard");
    let uid = data["metadata"]["uid"].as_str().unwrap();
    let pv_name = format!("pvc-{uid}");
    assert_eq!(data["spec"]["volumeName"], pv_name);
    let annotations = &data["metadata"]["annotations"];
    assert_eq!(annotations["pv.kubernetes.io/bind-completed"], "yes");
    assert_eq!(annotations["pv.kubernetes.io/bound-by-controller"], "yes");
    assert_eq!(
        annotations["volume.kubernetes.io/storage-provisioner"],
        CSI_DRIVER
    );
    assert_eq!(data["status"]["capacity"]["storage"], "2Gi");
    assert_eq!(data["status"]["accessModes"], json!(["ReadWriteOnce"]));

    let pv = json_of(c, &["pv", &pv_name]).await;
    let claim_ref = &pv["spec"]["claimRef"];
    assert_eq!(
        (
            &claim_ref["kind"],
            &claim_ref["namespace"],
            &claim_ref["name"],
            &claim_ref["uid"]
        ),
        (
            &json!("PersistentVolumeClaim"),
            &json!("default"),
            &json!("data"),
            &json!(uid)
        )
    );
    assert!(
        claim_ref["resourceVersion"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    assert_eq!(pv["spec"]["csi"]["driver"], CSI_DRIVER);
    assert!(pv["spec"]["csi"]["volumeHandle"].is_string());
    assert_eq!(pv["spec"]["capacity"]["storage"], "2Gi");
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(pv["spec"]["storageClassName"], "standard");
    assert_eq!(pv["status"]["phase"], "Bound");
    assert_eq!(
        pv["metadata"]["finalizers"],
        json!(["kubernetes.io/pv-protection"])
    );
    assert_eq!(
        data["metadata"]["finalizers"],
        json!(["kubernetes.io/pvc-protection"])
    );
    let folder = folder_of(c, &data);
    assert!(folder.is_dir(), "{} exists", folder.display());

    // A class of another provisioner: the claim waits, as it would for a driver not installed.
    apply(
        c,
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: elsewhere}\n\
         provisioner: example.com/not-here\n---\n\
         apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: keep}\n\
         provisioner: csi.kubesim.stowage.io\nreclaimPolicy: Retain\n",
    )
    .await;
    apply(c, &claim("waiting", "  storageClassName: elsewhere\n")).await;
    apply(c, &claim("kept", "  storageClassName: keep\n")).await;
    let kept = bound(c, "kept").await;
    let waiting = eventually("the foreign claim to be Pending", move || async move {
        try_json(c, &["pvc", "waiting"])
            .await
            .filter(|w| w["status"]["phase"] == "Pending")
    })
    .await;
    assert!(waiting["spec"].get("volumeName").is_none());

    // Delete reclaims the volume and its folder; Retain releases it and keeps the folder.
    ok(c, &["delete", "pvc", "data"]).await;
    gone(c, &["pv", &pv_name]).await;
    let folder = &folder;
    eventually("the folder to go", move || async move {
        (!folder.exists()).then_some(())
    })
    .await;
    let kept_pv = kept["spec"]["volumeName"].as_str().unwrap().to_string();
    ok(c, &["delete", "pvc", "kept"]).await;
    let kept_pv = &kept_pv;
    let released = eventually("the retained volume to be Released", move || async move {
        try_json(c, &["pv", kept_pv])
            .await
            .filter(|pv| pv["status"]["phase"] == "Released")
    })
    .await;
    assert_eq!(released["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert!(folder_of(c, &kept).is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_bound_volumes_and_claims_bind_statically() {
    let cluster = start_cluster("vol-static").await;
    let c = &cluster;
    // A restored pair: the volume names its claim, the claim names its volume.
    apply(
        c,
        &format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: restored-pv}}\n\
             spec:\n  capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteOnce]\n  \
             persistentVolumeReclaimPolicy: Retain\n  storageClassName: standard\n  \
             csi: {{driver: {CSI_DRIVER}, volumeHandle: restored-pv}}\n  \
             claimRef: {{namespace: default, name: restored}}\n---\n{}",
            claim(
                "restored",
                "  storageClassName: standard\n  volumeName: restored-pv\n"
            )
        ),
    )
    .await;
    let restored = bound(c, "restored").await;
    assert_eq!(restored["spec"]["volumeName"], "restored-pv");
    let annotations = &restored["metadata"]["annotations"];
    assert_eq!(annotations["pv.kubernetes.io/bind-completed"], "yes");
    assert!(
        annotations
            .get("pv.kubernetes.io/bound-by-controller")
            .is_none()
    );
    let pv = json_of(c, &["pv", "restored-pv"]).await;
    assert_eq!(pv["spec"]["claimRef"]["uid"], restored["metadata"]["uid"]);
    assert_eq!(pv["status"]["phase"], "Bound");
    assert!(folder_of(c, &restored).is_dir());

    // A claim naming a volume that names no claim (as model-serving-tensorflow does).
    apply(
        c,
        &format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: models}}\n\
             spec: {{capacity: {{storage: 1Gi}}, accessModes: [ReadOnlyMany], hostPath: {{path: /mnt/models}}}}\n---\n{}",
            claim("models", "  volumeName: models\n").replace("ReadWriteOnce", "ReadOnlyMany")
        ),
    )
    .await;
    let models = bound(c, "models").await;
    assert!(models["spec"].get("storageClassName").is_none());
    let pv = json_of(c, &["pv", "models"]).await;
    assert_eq!(pv["spec"]["claimRef"]["name"], "models");
    assert_eq!(pv["status"]["phase"], "Bound");
}

fn write_tree(folder: &std::path::Path, content: &str) {
    fs::create_dir_all(folder.join("db")).unwrap();
    fs::write(folder.join("db/table"), content).unwrap();
    fs::set_permissions(folder.join("db/table"), fs::Permissions::from_mode(0o600)).unwrap();
    let _ = fs::remove_file(folder.join("current"));
    std::os::unix::fs::symlink("db/table", folder.join("current")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_keeps_the_old_content_for_restores_and_clones() {
    let cluster = start_cluster("vol-snapshot").await;
    let c = &cluster;
    let classes = ok(c, &["get", "volumesnapshotclass", "-o", "name"]).await;
    assert_eq!(
        classes.trim(),
        "volumesnapshotclass.snapshot.storage.k8s.io/csi-kubesim"
    );
    let class = json_of(c, &["vsclass", "csi-kubesim"]).await;
    assert_eq!(class["driver"], CSI_DRIVER);
    assert_eq!(class["deletionPolicy"], "Delete");
    assert_eq!(
        class["metadata"]["annotations"]["snapshot.storage.kubernetes.io/is-default-class"],
        "true"
    );

    apply(c, &claim("data", "")).await;
    let data = bound(c, "data").await;
    let folder = folder_of(c, &data);
    write_tree(&folder, "version 1");
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    fs::File::open(folder.join("db/table"))
        .unwrap()
        .set_modified(old)
        .unwrap();

    apply(
        c,
        "apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshot\n\
         metadata: {name: before, namespace: default}\nspec: {source: {persistentVolumeClaimName: data}}\n---\n\
         apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshot\n\
         metadata: {name: orphan, namespace: default}\nspec: {source: {persistentVolumeClaimName: missing}}\n",
    )
    .await;
    let waited = ok(
        c,
        &[
            "wait",
            "--for=jsonpath={.status.readyToUse}=true",
            "volumesnapshot/before",
            "--timeout=20s",
        ],
    )
    .await;
    assert!(waited.contains("condition met"), "{waited}");
    let snapshot = json_of(c, &["vs", "before"]).await;
    let content_name = format!(
        "snapcontent-{}",
        snapshot["metadata"]["uid"].as_str().unwrap()
    );
    assert_eq!(
        snapshot["status"]["boundVolumeSnapshotContentName"],
        content_name
    );
    assert_eq!(snapshot["status"]["restoreSize"], "2Gi");
    assert!(snapshot["status"]["creationTime"].is_string());
    assert_eq!(snapshot["spec"]["volumeSnapshotClassName"], "csi-kubesim");
    let content = json_of(c, &["vsc", &content_name]).await;
    assert_eq!(
        content["spec"]["volumeSnapshotRef"]["uid"],
        snapshot["metadata"]["uid"]
    );
    assert_eq!(content["spec"]["volumeSnapshotRef"]["name"], "before");
    assert_eq!(content["spec"]["deletionPolicy"], "Delete");
    assert_eq!(content["spec"]["driver"], CSI_DRIVER);
    assert_eq!(
        content["spec"]["source"]["volumeHandle"],
        data["spec"]["volumeName"]
    );
    assert_eq!(content["status"]["readyToUse"], true);
    assert_eq!(content["status"]["restoreSize"], 2u64 << 30);
    assert!(content["status"]["snapshotHandle"].is_string());
    assert!(content["status"]["creationTime"].is_i64());
    let copy = c.sim.cluster().volume_folders().snapshot(&content_name);
    assert_eq!(
        fs::read_to_string(copy.join("db/table")).unwrap(),
        "version 1"
    );

    let orphan = eventually(
        "the error of a snapshot of a missing claim",
        move || async move {
            try_json(c, &["vs", "orphan"])
                .await
                .filter(|s| s["status"]["error"]["message"].is_string())
        },
    )
    .await;
    assert_eq!(orphan["status"]["readyToUse"], false);
    assert!(
        orphan["status"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("persistentvolumeclaims \"missing\" not found"),
        "{}",
        orphan["status"]
    );
    assert!(
        orphan["status"]
            .get("boundVolumeSnapshotContentName")
            .is_none()
    );
    // Once the claim exists and binds, the snapshot is taken after all.
    apply(c, &claim("missing", "")).await;
    let waited = ok(
        c,
        &[
            "wait",
            "--for=jsonpath={.status.readyToUse}=true",
            "volumesnapshot/orphan",
            "--timeout=20s",
        ],
    )
    .await;
    assert!(waited.contains("condition met"), "{waited}");
    let orphan = json_of(c, &["vs", "orphan"]).await;
    assert!(
        orphan["status"].get("error").is_none(),
        "{}",
        orphan["status"]
    );

    // The volume moves on; a restore from the snapshot has the old content.
    write_tree(&folder, "version 2");
    apply(
        c,
        &claim(
            "restored",
            "  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: before}\n",
        ),
    )
    .await;
    let restored = bound(c, "restored").await;
    let restored_folder = folder_of(c, &restored);
    assert_ne!(restored_folder, folder);
    assert_eq!(
        fs::read_to_string(restored_folder.join("db/table")).unwrap(),
        "version 1"
    );
    let table = fs::metadata(restored_folder.join("db/table")).unwrap();
    assert_eq!(table.permissions().mode() & 0o777, 0o600);
    assert_eq!(table.modified().unwrap(), old);
    assert_eq!(
        fs::read_link(restored_folder.join("current")).unwrap(),
        PathBuf::from("db/table")
    );

    // A clone of a claim starts from the claim's current content.
    apply(
        c,
        &claim(
            "cloned",
            "  dataSource: {kind: PersistentVolumeClaim, name: data}\n",
        ),
    )
    .await;
    let cloned = bound(c, "cloned").await;
    assert_eq!(
        fs::read_to_string(folder_of(c, &cloned).join("db/table")).unwrap(),
        "version 2"
    );

    // Deleting the snapshot deletes its content (deletionPolicy Delete) and the copy.
    ok(c, &["delete", "volumesnapshot", "before"]).await;
    gone(c, &["vsc", &content_name]).await;
    let copy = &copy;
    eventually("the copy to go", move || async move {
        (!copy.exists()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_cluster_keeps_its_volumes_and_provisions_after_a_restart() {
    let folder = tempfile::tempdir().unwrap();
    let mut options = KubesimOptions::new("vol-durable", folder.path().join("cluster"));
    options.persistent = true;
    let first = TestCluster {
        sim: Kubesim::start(options.clone()).await.unwrap(),
        folder,
    };
    apply(&first, &claim("data", "")).await;
    let data = bound(&first, "data").await;
    fs::write(folder_of(&first, &data).join("kept"), "across restarts").unwrap();
    let TestCluster { sim, folder } = first;
    sim.stop().await;

    let second = TestCluster {
        sim: Kubesim::start(options).await.unwrap(),
        folder,
    };
    let data = bound(&second, "data").await;
    assert_eq!(
        fs::read_to_string(folder_of(&second, &data).join("kept")).unwrap(),
        "across restarts"
    );
    let standard = ok(&second, &["get", "storageclass", "-o", "name"]).await;
    assert_eq!(standard.trim(), "storageclass.storage.k8s.io/standard");
    apply(&second, &claim("later", "")).await;
    bound(&second, "later").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_in_use_stays_terminating_until_its_pod_goes() {
    let cluster = start_cluster("vol-protection").await;
    let c = &cluster;
    apply(
        c,
        &format!(
            "{}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: user, namespace: default}}\n\
             spec:\n  containers: [{{name: c, image: busybox, volumeMounts: [{{name: d, mountPath: /d}}]}}]\n  \
             volumes: [{{name: d, persistentVolumeClaim: {{claimName: used}}}}]\n",
            claim("used", "")
        ),
    )
    .await;
    let used = bound(c, "used").await;
    let volume = used["spec"]["volumeName"].as_str().unwrap().to_string();
    ok(c, &["delete", "pvc", "used", "--wait=false"]).await;
    let terminating = json_of(c, &["pvc", "used"]).await;
    assert!(terminating["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        terminating["metadata"]["finalizers"],
        json!(["kubernetes.io/pvc-protection"])
    );
    assert!(folder_of(c, &used).is_dir());
    ok(c, &["delete", "pod", "user"]).await;
    gone(c, &["pvc", "used"]).await;
    gone(c, &["pv", &volume]).await;
    let folder = volume_folder(c, &volume);
    let folder = &folder;
    eventually("the folder to go", move || async move {
        (!folder.exists()).then_some(())
    })
    .await;
}
