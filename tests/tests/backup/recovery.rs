//! Deleting a backup through the API, and disaster recovery of the control plane: a new server
//! with an empty database, given the same location, finds the backups there by a sync and
//! restores one byte for byte.

use std::time::Duration;

use reqwest::Method as M;
use serde_json::{Value, json};

use super::end_to_end::{
    claim_folder, connect, database_running, deploy_app, files, no_temporaries, start,
};
use crate::entity_routes::Users;
use crate::kubesim::eventually;

/// Polls `path` as `user` until `done` holds for the answer; fails after two minutes.
async fn until(users: &Users, path: &str, done: impl Fn(u16, &Value) -> bool) -> (u16, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = users.call("bob", M::GET, path, None).await;
        if done(status, &body) {
            return (status, body);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path}: still {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Registers the cluster and the location on a server as bob; returns their ids.
pub(super) async fn register(
    users: &Users,
    kubeconfig: &str,
    bucket: &std::path::Path,
) -> (String, String) {
    let (status, cluster) = users
        .call(
            "bob",
            M::POST,
            "/v1/clusters",
            Some(json!({"name": "prod", "spec": {"kubeconfig": kubeconfig}})),
        )
        .await;
    assert_eq!(status, 201, "{cluster}");
    let (status, location) = users
        .call(
            "bob",
            M::POST,
            "/v1/locations",
            Some(json!({"name": "vault", "spec": {
                "location": {"kind": {"type": "local", "root": bucket}, "prefix": "repo"},
                "passphrase": "correct horse battery"
            }})),
        )
        .await;
    assert_eq!(status, 201, "{location}");
    (
        cluster["id"].as_str().unwrap().to_string(),
        location["id"].as_str().unwrap().to_string(),
    )
}

async fn backed_up(users: &Users, name: &str, cluster: &str, location: &str) -> String {
    let (status, backup) = users
        .call(
            "bob",
            M::POST,
            "/v1/backups",
            Some(json!({"name": name, "spec": {
                "cluster": cluster, "location": location, "namespaces": ["shop"]
            }})),
        )
        .await;
    assert_eq!(status, 202, "{backup}");
    let id = backup["id"].as_str().unwrap().to_string();
    let (_, record) = until(users, &format!("/v1/backups/{id}"), |_, body| {
        body["status"] != "running"
    })
    .await;
    assert_eq!(record["status"], "completed", "{record}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_backup_is_gone_and_a_new_server_restores_what_its_location_holds() {
    let cluster = start("recovery").await;
    let client = connect(&cluster).await;
    deploy_app(&client.client).await;
    let folder = claim_folder(&cluster, &client, "shop", "data").await;
    std::fs::write(folder.join("PG_VERSION"), b"17\n").unwrap();
    std::fs::write(folder.join("table.dat"), vec![9u8; 200_000]).unwrap();
    database_running(&client).await;
    let original = files(&folder);
    let kubeconfig = std::fs::read_to_string(cluster.sim.kubeconfig_path()).unwrap();
    let bucket = tempfile::tempdir().unwrap();

    // The first server: two backups, one deleted.
    let first = Users::start().await;
    let (cluster_id, location_id) = register(&first, &kubeconfig, bucket.path()).await;
    let kept = backed_up(&first, "kept", &cluster_id, &location_id).await;
    let dropped = backed_up(&first, "dropped", &cluster_id, &location_id).await;
    let (status, deleting) = first
        .call("bob", M::DELETE, &format!("/v1/backups/{dropped}"), None)
        .await;
    assert_eq!(status, 202, "{deleting}");
    assert_eq!(deleting["status"], "deleting");
    until(&first, &format!("/v1/backups/{dropped}"), |status, _| {
        status == 404
    })
    .await;
    let (_, listed) = first.call("bob", M::GET, "/v1/backups", None).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["items"][0]["id"], kept.as_str());
    drop(first);

    // A new server, an empty database, the same location.
    let second = Users::start().await;
    let (cluster_id, location_id) = register(&second, &kubeconfig, bucket.path()).await;
    let (_, empty) = second.call("bob", M::GET, "/v1/backups", None).await;
    assert_eq!(empty["items"], json!([]));
    let (status, sync) = second
        .call(
            "bob",
            M::POST,
            &format!("/v1/locations/{location_id}/sync"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{sync}");
    let run = sync["run"].as_str().unwrap();
    let (_, state) = until(&second, &format!("/v1/workflows/{run}"), |_, body| {
        body["status"] != "running"
    })
    .await;
    assert_eq!(state["status"], "completed", "{state}");
    let (_, listed) = second.call("bob", M::GET, "/v1/backups", None).await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        1,
        "only the backup still in the location: {listed}"
    );
    assert_eq!(items[0]["id"], kept.as_str());
    assert_eq!(items[0]["name"], "kept");
    assert_eq!(items[0]["origin"], "synced");
    assert_eq!(items[0]["restorable"], true);
    assert_eq!(items[0]["location"], location_id.as_str());
    assert_eq!(items[0]["progress"]["volumes_total"], 1, "{listed}");

    client.delete("/api/v1/namespaces", "shop").await.unwrap();
    eventually("namespace shop gone", || async {
        client
            .get("/api/v1/namespaces", "shop")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let (status, restore) = second
        .call(
            "bob",
            M::POST,
            "/v1/restores",
            Some(
                json!({"name": "after-disaster", "spec": {"backup": kept, "cluster": cluster_id}}),
            ),
        )
        .await;
    assert_eq!(status, 202, "{restore}");
    let restore_id = restore["id"].as_str().unwrap();
    let (_, record) = until(&second, &format!("/v1/restores/{restore_id}"), |_, body| {
        body["status"] != "running"
    })
    .await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["progress"]["failed"], 0, "{record}");
    let restored = claim_folder(&cluster, &client, "shop", "data").await;
    assert_eq!(
        files(&restored),
        original,
        "the data came back byte for byte"
    );
    no_temporaries(&client, "shop").await;
}
