//! `/v1/backup-schedules` over real HTTP with real OIDC users: a schedule shows its next runs and
//! the scheduler's record of it, names every bad field and every entity it may not use, is
//! suspended and resumed, hidden from users it is not shared with, keeps what it names from
//! being removed, and is deleted.

use std::time::Duration;

use reqwest::Method as M;
use serde_json::{Value, json};

use super::end_to_end::start;
use super::recovery::register;
use crate::entity_routes::Users;

async fn created(users: &Users, user: &str, path: &str, body: Value) -> Value {
    let (status, record) = users.call(user, M::POST, path, Some(body)).await;
    assert_eq!(status, 201, "{record}");
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_schedules_show_next_runs_name_bad_fields_and_suspend_and_resume() {
    let users = Users::start().await;
    let cluster = start("sched-routes").await;
    let kubeconfig = std::fs::read_to_string(cluster.sim.kubeconfig_path()).unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let (cluster_id, location_id) = register(&users, &kubeconfig, bucket.path()).await;
    let nightly = json!({"schedule": {"daily": {"times": ["02:00"]}}, "retain": 7});
    let policy = created(
        &users,
        "bob",
        "/v1/schedule-policies",
        json!({"name": "nightly", "spec": nightly}),
    )
    .await;
    let policy_id = policy["id"].as_str().unwrap();
    let backup = json!({"cluster": cluster_id, "location": location_id, "namespaces": ["shop"]});

    let schedule = created(
        &users,
        "bob",
        "/v1/backup-schedules",
        json!({"name": "shop-nightly", "spec": {
            "policy": policy_id, "backup": backup, "reclaim": "delete"
        }}),
    )
    .await;
    let id = schedule["id"].as_str().unwrap().to_string();
    let path = format!("/v1/backup-schedules/{id}");
    assert_eq!(schedule["next_runs"], policy["next_runs"], "{schedule}");
    assert_eq!(schedule["spec"]["suspended"], false);
    assert_eq!(schedule["spec"]["reclaim"], "delete");

    // The scheduler gives the new schedule its first tick.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let record = loop {
        let (status, record) = users.call("bob", M::GET, &path, None).await;
        assert_eq!(status, 200, "{record}");
        if record["status"]["ticks"] == 1 {
            break record;
        }
        assert!(tokio::time::Instant::now() < deadline, "{record}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(record["status"]["tick"].as_str().is_some(), "{record}");
    assert_eq!(record["status"]["backups_started"], 0, "{record}");

    // Bad input, each named; entities bob may not use are refused without saying whose they are.
    let admins_policy = created(
        &users,
        "alice",
        "/v1/schedule-policies",
        json!({"name": "hourly", "spec": {"schedule": {"interval": {"minutes": 60}}, "retain": 3}}),
    )
    .await;
    for (spec, field) in [
        (
            json!({"policy": "no-such-policy", "backup": backup}),
            "spec.policy",
        ),
        (
            json!({"policy": admins_policy["id"], "backup": backup}),
            "spec.policy",
        ),
        (
            json!({"policy": policy_id, "backup": {"cluster": cluster_id, "location": location_id, "pre_rules": ["no-such-rule"]}}),
            "spec.backup.pre_rules[0]",
        ),
        (
            json!({"policy": policy_id, "backup": {"cluster": "", "location": location_id}}),
            "spec.backup.cluster",
        ),
        (
            json!({"policy": policy_id, "backup": {"cluster": cluster_id, "location": location_id, "namespaces": ["Shop!"]}}),
            "spec.backup.namespaces[0]",
        ),
        (
            json!({"policy": policy_id, "backup": backup, "reclaim": "keep"}),
            "spec",
        ),
        (json!({"backup": backup}), "spec"),
    ] {
        let (status, body) = users
            .call(
                "bob",
                M::POST,
                "/v1/backup-schedules",
                Some(json!({"name": "bad", "spec": spec})),
            )
            .await;
        assert_eq!(status, 422, "{spec}: {body}");
        assert_eq!(body["details"]["field"], field, "{spec}: {body}");
    }
    let (status, body) = users
        .call(
            "bob",
            M::POST,
            "/v1/backup-schedules",
            Some(json!({"name": "bad", "spec": {"policy": admins_policy["id"], "backup": backup}})),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("GET /v1/schedule-policies"),
        "{body}"
    );
    let (status, body) = users
        .call(
            "carol",
            M::POST,
            "/v1/backup-schedules",
            Some(json!({"name": "mine", "spec": {"policy": policy_id, "backup": backup}})),
        )
        .await;
    assert_eq!(status, 403, "a viewer cannot schedule backups: {body}");

    // Not shared with carol: not listed, not found, not suspendable.
    let (_, listed) = users
        .call("carol", M::GET, "/v1/backup-schedules", None)
        .await;
    assert_eq!(listed["items"], json!([]), "{listed}");
    let (status, _) = users.call("carol", M::GET, &path, None).await;
    assert_eq!(status, 404);
    let (status, _) = users
        .call("carol", M::POST, &format!("{path}/suspend"), None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = users
        .call("bob", M::POST, &format!("{path}/pause"), None)
        .await;
    assert_eq!(status, 404, "only suspend and resume are actions");

    // Suspended: no next runs, a new version; suspending again changes nothing; resumed: back.
    let (status, suspended) = users
        .call("bob", M::POST, &format!("{path}/suspend"), None)
        .await;
    assert_eq!(status, 200, "{suspended}");
    assert_eq!(suspended["spec"]["suspended"], true);
    assert_eq!(suspended["next_runs"], json!([]));
    assert_eq!(
        suspended["version"],
        schedule["version"].as_u64().unwrap() + 1
    );
    let (_, again) = users
        .call("bob", M::POST, &format!("{path}/suspend"), None)
        .await;
    assert_eq!(again["version"], suspended["version"]);
    let (status, resumed) = users
        .call("bob", M::POST, &format!("{path}/resume"), None)
        .await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["spec"]["suspended"], false);
    assert_eq!(resumed["next_runs"], policy["next_runs"]);

    // Listed for bob and the admin; deleted, it is gone.
    let (_, listed) = users
        .call("bob", M::GET, "/v1/backup-schedules", None)
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    let (_, listed) = users
        .call("alice", M::GET, "/v1/backup-schedules", None)
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    // What it names cannot be removed from under it.
    for named in [
        format!("/v1/schedule-policies/{policy_id}"),
        format!("/v1/clusters/{cluster_id}"),
        format!("/v1/locations/{location_id}"),
    ] {
        let (status, body) = users.call("bob", M::DELETE, &named, None).await;
        assert_eq!(status, 409, "{named}: {body}");
        assert_eq!(
            body["details"]["used_by"],
            json!(["shop-nightly"]),
            "{body}"
        );
    }
    let (status, body) = users.call("bob", M::DELETE, &path, None).await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = users.call("bob", M::GET, &path, None).await;
    assert_eq!(status, 404);
    let (status, body) = users
        .call(
            "bob",
            M::DELETE,
            &format!("/v1/schedule-policies/{policy_id}"),
            None,
        )
        .await;
    assert_eq!(status, 204, "no schedule uses it now: {body}");
}
