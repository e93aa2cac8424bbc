//! Sharing backups over real HTTP with real OIDC users: bob's backup hidden from carol until he
//! shares it with her group, what each level lets her do (view: see it, its run and its events;
//! restore: restore from it; never delete or share it), stale versions refused, blank grantees
//! named, and the shares the same after the catalog is rebuilt from the log.

use reqwest::Method as M;
use serde_json::{Value, json};

use super::end_to_end::{claim_folder, connect, database_running, deploy_app, start};
use super::recovery::register;
use super::routes::settled;
use crate::entity_routes::Users;

/// `PUT {path}` with `body` and an optional `If-Match`, as `user`.
async fn put_shares(
    users: &Users,
    user: &str,
    path: &str,
    if_match: Option<&str>,
    body: Value,
) -> (u16, Option<String>, Value) {
    let mut request = reqwest::Client::new()
        .put(users.api.url(path))
        .bearer_auth(users.token(user))
        .json(&body);
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|tag| tag.to_str().unwrap().to_string());
    (status, etag, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_backup_is_seen_and_restored_by_its_grantees_only_as_far_as_shared() {
    // data-team members are operators here, so that only the shares decide what carol may do.
    let users = Users::start_with_operators(&["platform", "data-team"]).await;
    let cluster = start("sharing").await;
    let client = connect(&cluster).await;
    deploy_app(&client.client).await;
    let folder = claim_folder(&cluster, &client, "shop", "data").await;
    std::fs::write(folder.join("PG_VERSION"), b"17\n").unwrap();
    database_running(&client).await;
    let kubeconfig = std::fs::read_to_string(cluster.sim.kubeconfig_path()).unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let (cluster_id, location_id) = register(&users, &kubeconfig, bucket.path()).await;

    let (status, backup) = users
        .call(
            "bob",
            M::POST,
            "/v1/backups",
            Some(json!({"name": "nightly", "spec": {
                "cluster": cluster_id, "location": location_id, "namespaces": ["shop"]
            }})),
        )
        .await;
    assert_eq!(status, 202, "{backup}");
    assert_eq!(backup["shares"], json!([]));
    assert_eq!(backup["shares_version"], 0);
    let id = backup["id"].as_str().unwrap().to_string();
    let path = format!("/v1/backups/{id}");
    let shares_path = format!("{path}/shares");
    let record = settled(&users, "bob", &path).await;
    assert_eq!(record["status"], "completed", "{record}");
    let run = record["run"].as_str().unwrap().to_string();

    // Not shared: carol sees nothing of it and cannot share it.
    let (status, _) = users.call("carol", M::GET, &path, None).await;
    assert_eq!(status, 404);
    let (_, listed) = users.call("carol", M::GET, "/v1/backups", None).await;
    assert_eq!(listed["items"], json!([]), "{listed}");
    let view = json!([{"to": {"group": "data-team"}, "level": "view"}]);
    let (status, _, body) = put_shares(
        &users,
        "carol",
        &shares_path,
        None,
        json!({"version": 0, "shares": view}),
    )
    .await;
    assert_eq!(status, 404, "{body}");

    // Shared with her group at view.
    let (status, etag, shared) = put_shares(
        &users,
        "bob",
        &shares_path,
        None,
        json!({"version": 0, "shares": view}),
    )
    .await;
    assert_eq!(status, 200, "{shared}");
    assert_eq!(shared["shares"], view);
    assert_eq!(shared["shares_version"], 1);
    assert_eq!(etag.as_deref(), Some("\"1\""));
    assert_eq!(
        shared["status"], "completed",
        "sharing changes nothing else"
    );
    let (status, seen) = users.call("carol", M::GET, &path, None).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["shares"], view);
    let (_, listed) = users.call("carol", M::GET, "/v1/backups", None).await;
    assert_eq!(listed["items"][0]["id"], id.as_str(), "{listed}");
    let (status, body) = users
        .call("carol", M::GET, &format!("/v1/workflows/{run}"), None)
        .await;
    assert_eq!(status, 200, "its run: {body}");
    let (status, logs) = users
        .call(
            "carol",
            M::GET,
            &format!("/v1/workflows/{run}/events"),
            None,
        )
        .await;
    assert_eq!(status, 200, "its events: {logs}");
    assert!(!logs["events"].as_array().unwrap().is_empty(), "{logs}");
    let (status, audit) = users
        .call("carol", M::GET, "/v1/events?limit=1000", None)
        .await;
    assert_eq!(status, 200, "{audit}");
    let streams: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["stream"].as_str().unwrap())
        .collect();
    assert!(
        streams.contains(&format!("wf/{run}").as_str()),
        "the run's events are in her audit stream: {streams:?}"
    );
    let shared_event = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["stream"] == format!("backup/{id}"))
        .unwrap_or_else(|| panic!("the share event is in her audit stream: {streams:?}"));
    assert_eq!(shared_event["kind"], "backup.shared");
    assert_eq!(shared_event["payload"]["shares"], view);

    // View is not enough to delete, restore or share.
    let (status, body) = users.call("carol", M::DELETE, &path, None).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = users
        .call(
            "bob",
            M::PUT,
            &format!("/v1/clusters/{cluster_id}/shares"),
            Some(json!({"version": 1, "shares": [{"to": {"group": "data-team"}, "level": "restore"}]})),
        )
        .await;
    assert_eq!(
        status, 200,
        "the cluster shared for restores into it: {body}"
    );
    // ... and the namespace she restores into granted to her group on it.
    let (_, record) = users
        .call("bob", M::GET, &format!("/v1/clusters/{cluster_id}"), None)
        .await;
    let mut spec = record["spec"].clone();
    spec["grants"] = json!([{"to": {"group": "data-team"}, "namespaces": ["shop-carol"]}]);
    let (status, body) = users
        .call(
            "bob",
            M::PUT,
            &format!("/v1/clusters/{cluster_id}"),
            Some(json!({"version": record["version"], "labels": {}, "spec": spec})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let restore_body = json!({"name": "carols", "spec": {
        "backup": id, "cluster": cluster_id, "namespace_mapping": {"shop": "shop-carol"}
    }});
    let (status, body) = users
        .call("carol", M::POST, "/v1/restores", Some(restore_body.clone()))
        .await;
    assert_eq!(status, 403, "a view share does not restore: {body}");
    let (status, _, body) = put_shares(
        &users,
        "carol",
        &shares_path,
        None,
        json!({"version": 1, "shares": []}),
    )
    .await;
    assert_eq!(status, 403, "a view share does not share: {body}");

    // Stale versions, and a blank grantee.
    let restore_level = json!([{"to": {"group": "data-team"}, "level": "restore"}]);
    let (status, _, body) = put_shares(
        &users,
        "bob",
        &shares_path,
        None,
        json!({"version": 0, "shares": restore_level}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["details"]["current_version"], 1);
    let (status, _, body) = put_shares(
        &users,
        "bob",
        &shares_path,
        Some("\"0\""),
        json!({"shares": restore_level}),
    )
    .await;
    assert_eq!(status, 412, "{body}");
    let (status, _, body) = put_shares(
        &users,
        "bob",
        &shares_path,
        None,
        json!({"shares": restore_level}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["field"], "version");
    let (status, _, body) = put_shares(
        &users,
        "bob",
        &shares_path,
        None,
        json!({"version": 1, "shares": [{"to": {"user": " "}, "level": "view"}]}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["field"], "shares[0].to.user");

    // At restore level, carol restores from it; she still cannot delete it.
    let (status, etag, shared) = put_shares(
        &users,
        "bob",
        &shares_path,
        Some("\"1\""),
        json!({"shares": restore_level}),
    )
    .await;
    assert_eq!(status, 200, "{shared}");
    assert_eq!(etag.as_deref(), Some("\"2\""));
    let (status, restore) = users
        .call("carol", M::POST, "/v1/restores", Some(restore_body))
        .await;
    assert_eq!(status, 202, "{restore}");
    let restore_path = format!("/v1/restores/{}", restore["id"].as_str().unwrap());
    let restored = settled(&users, "carol", &restore_path).await;
    assert_eq!(restored["status"], "completed", "{restored}");
    let (status, body) = users.call("carol", M::DELETE, &path, None).await;
    assert_eq!(status, 403, "{body}");

    // Carol shares her restore with bob's user.
    let (_, bobs) = users.call("bob", M::GET, "/v1/whoami", None).await;
    let bob = bobs["subject"].as_str().unwrap().to_string();
    let (status, _) = users.call("bob", M::GET, &restore_path, None).await;
    assert_eq!(status, 404, "her restore is hers");
    let (status, _, body) = put_shares(
        &users,
        "carol",
        &format!("{restore_path}/shares"),
        None,
        json!({"version": 0, "shares": [{"to": {"user": bob}, "level": "view"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = users.call("bob", M::GET, &restore_path, None).await;
    assert_eq!(status, 200, "{body}");

    // The catalog rebuilt from the log holds the same records, shares included.
    let before = users.api.store.projection_dump().unwrap();
    users.api.store.rebuild_projections().await.unwrap();
    assert_eq!(users.api.store.projection_dump().unwrap(), before);
    let (status, seen) = users.call("carol", M::GET, &path, None).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["shares"], restore_level);
    assert_eq!(seen["shares_version"], 2);
}
