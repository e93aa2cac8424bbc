//! `/v1/backups`, `/v1/restores` and `/v1/workflows` over real HTTP with real OIDC users: bad
//! input named, foreign backups hidden, a backup cancelled and retried, a backup failed by its
//! pre-rule and retried once the rule is fixed (its runs listed by type and status), a repeated
//! start with an idempotency key answered with the first backup, a restore into another
//! namespace, and a replace restore whose bytes and step durations `/metrics` then tells.

use std::time::Duration;

use reqwest::Method as M;
use serde_json::{Value, json};

use super::end_to_end::{
    claim_folder, connect, database_running, deploy_app, files, no_temporaries, start,
};
use super::recovery::register;
use crate::entity_routes::Users;

/// Polls backup or restore `path` until it is no longer running.
pub(super) async fn settled(users: &Users, user: &str, path: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (status, record) = users.call(user, M::GET, path, None).await;
        assert_eq!(status, 200, "{record}");
        if record["status"] != "running" {
            return record;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} still running: {record}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_named_and_unknown_runs_are_not_found() {
    let users = Users::start().await;
    let (status, body) = users
        .call(
            "carol",
            M::POST,
            "/v1/backups",
            Some(json!({"name": "x", "spec": {}})),
        )
        .await;
    assert_eq!(status, 403, "a viewer cannot start backups: {body}");

    let (status, body) = users
        .call(
            "bob",
            M::POST,
            "/v1/backups",
            Some(json!({"name": "x", "spec": {"location": "l"}})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["field"], "spec", "{body}");
    let (status, body) = users
        .call(
            "bob",
            M::POST,
            "/v1/backups",
            Some(json!({"name": "x", "spec": {"cluster": "", "location": "l"}})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["field"], "spec.cluster", "{body}");
    let (status, body) = users
        .call(
            "bob",
            M::POST,
            "/v1/backups",
            Some(json!({"name": "x", "spec": {"cluster": "nope", "location": "l"}})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["field"], "spec.cluster", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("no cluster"),
        "{body}"
    );
    let (status, body) = users
        .call(
            "bob",
            M::POST,
            "/v1/backups",
            Some(json!({"name": "Bad Name", "spec": {"cluster": "c", "location": "l"}})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["field"], "name", "{body}");

    for (query, parameter) in [
        ("status=done", "status"),
        ("limit=0", "limit"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = users
            .call("bob", M::GET, &format!("/v1/backups?{query}"), None)
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["details"]["parameter"], parameter, "{body}");
    }
    for (query, parameter) in [
        ("status=done", "status"),
        ("type=nightly", "type"),
        ("limit=1001", "limit"),
        ("label=a=b", "label"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = users
            .call("bob", M::GET, &format!("/v1/workflows?{query}"), None)
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["code"], "bad_request", "{body}");
        assert_eq!(body["details"]["parameter"], parameter, "{body}");
    }
    let (_, body) = users
        .call("bob", M::GET, "/v1/workflows?type=sync", None)
        .await;
    assert_eq!(
        body["message"],
        "`type` is one of backup, backup_delete, catalog_sync, restore, schedule_tick, not `sync`",
        "{body}"
    );
    let (status, body) = users
        .call(
            "bob",
            M::GET,
            "/v1/workflows?type=backup&status=failed",
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"items": [], "next_after": null}));
    for (method, path) in [
        (M::GET, "/v1/backups/nope"),
        (M::POST, "/v1/backups/nope/cancel"),
        (M::POST, "/v1/backups/nope/retry"),
        (M::DELETE, "/v1/backups/nope"),
        (M::GET, "/v1/restores/nope"),
        (M::GET, "/v1/restores/nope/results"),
        (M::POST, "/v1/restores/nope/cancel"),
        (M::GET, "/v1/workflows/nope"),
        (M::GET, "/v1/workflows/nope/events"),
    ] {
        let (status, body) = users.call("bob", method.clone(), path, None).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(body["code"], "not_found");
    }
    let (status, body) = users
        .call(
            "bob",
            M::POST,
            "/v1/restores",
            Some(json!({"name": "r", "spec": {"backup": "nope", "cluster": "c"}})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["field"], "spec.backup", "{body}");
    let (status, body) = users
        .call("bob", M::GET, "/v1/backups?status=running&limit=5", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"items": [], "next_after": null}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_is_cancelled_retried_kept_from_others_and_restored_under_a_mapping() {
    let users = Users::start().await;
    let cluster = start("routes").await;
    let client = connect(&cluster).await;
    deploy_app(&client.client).await;
    let folder = claim_folder(&cluster, &client, "shop", "data").await;
    std::fs::write(folder.join("PG_VERSION"), b"17\n").unwrap();
    std::fs::write(folder.join("table.dat"), vec![3u8; 100_000]).unwrap();
    database_running(&client).await;
    let original = files(&folder);

    let kubeconfig = std::fs::read_to_string(cluster.sim.kubeconfig_path()).unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let (cluster_id, location_id) = register(&users, &kubeconfig, bucket.path()).await;
    let (cluster_record, location) = (json!({"id": cluster_id}), json!({"id": location_id}));
    let (status, rule) = users
        .call(
            "bob",
            M::POST,
            "/v1/rules",
            Some(json!({"name": "slow", "spec": {
                "pod_selector": {"matchLabels": {"app": "db"}},
                "actions": [{"command": ["sleep", "2"]}]
            }})),
        )
        .await;
    assert_eq!(status, 201, "{rule}");
    let daily = json!({"name": "daily", "labels": {"team": "shop"}, "spec": {
        "cluster": cluster_record["id"], "location": location["id"],
        "namespaces": ["shop"], "pre_rules": [rule["id"]]
    }});

    // Started, then cancelled while its pre-rule runs.
    let (status, backup) = users
        .call("bob", M::POST, "/v1/backups", Some(daily.clone()))
        .await;
    assert_eq!(status, 202, "{backup}");
    assert_eq!(backup["status"], "running");
    assert_eq!(backup["owner"], users_subject(&users, "bob").await);
    let id = backup["id"].as_str().unwrap().to_string();
    let (status, cancelled) = users
        .call("bob", M::POST, &format!("/v1/backups/{id}/cancel"), None)
        .await;
    assert_eq!(status, 202, "{cancelled}");
    let record = settled(&users, "bob", &format!("/v1/backups/{id}")).await;
    assert_eq!(record["status"], "cancelled", "{record}");
    assert_eq!(record["restorable"], false);
    no_temporaries(&client, "shop").await;
    let (status, body) = users
        .call(
            "bob",
            M::POST,
            "/v1/restores",
            Some(json!({"name": "early", "spec": {"backup": id, "cluster": cluster_record["id"]}})),
        )
        .await;
    assert_eq!(
        status, 409,
        "a backup without a manifest is not restorable: {body}"
    );

    // Hidden from a user it is not shared with; an admin sees it.
    let (status, _) = users
        .call("carol", M::GET, &format!("/v1/backups/{id}"), None)
        .await;
    assert_eq!(status, 404);
    let (_, carols) = users.call("carol", M::GET, "/v1/backups", None).await;
    assert_eq!(carols["items"], json!([]), "{carols}");
    let (_, alices) = users
        .call("alice", M::GET, "/v1/backups?label=team=shop", None)
        .await;
    assert_eq!(alices["items"][0]["id"], id.as_str(), "{alices}");
    // A listed record is the record a get answers, field for field.
    let (_, got) = users
        .call("alice", M::GET, &format!("/v1/backups/{id}"), None)
        .await;
    assert_eq!(alices["items"][0], got, "{alices}");
    assert_eq!(alices["next_after"], Value::Null, "{alices}");
    let (status, _) = users
        .call(
            "carol",
            M::GET,
            &format!("/v1/workflows/{}", record["run"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 404, "its run is hidden too");

    // Retried: the same backup, a second run, completed.
    let (status, retried) = users
        .call("bob", M::POST, &format!("/v1/backups/{id}/retry"), None)
        .await;
    assert_eq!(status, 202, "{retried}");
    assert_eq!(retried["attempts"], 2);
    assert_ne!(retried["run"], record["run"]);
    let record = settled(&users, "bob", &format!("/v1/backups/{id}")).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["restorable"], true);
    assert_eq!(record["progress"]["volumes_done"], 1, "{record}");
    for (method, action) in [(M::POST, "retry"), (M::POST, "cancel")] {
        let (status, body) = users
            .call("bob", method, &format!("/v1/backups/{id}/{action}"), None)
            .await;
        assert_eq!(status, 409, "{action} of a completed backup: {body}");
    }
    let (status, run) = users
        .call(
            "bob",
            M::GET,
            &format!("/v1/workflows/{}", record["run"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "completed");
    assert_eq!(run["attempts"]["upload"], 1, "{run}");

    // Its events followed as server-sent events: all of them, then the stream ends with the run.
    let run_id = record["run"].as_str().unwrap();
    let followed = reqwest::Client::new()
        .get(
            users
                .api
                .url(&format!("/v1/workflows/{run_id}/events?follow=true")),
        )
        .bearer_auth(users.token("bob"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        followed.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let text = tokio::time::timeout(Duration::from_secs(20), followed.text())
        .await
        .expect("a finished run's event stream ends")
        .unwrap();
    let (_, listed) = users
        .call(
            "bob",
            M::GET,
            &format!("/v1/workflows/{run_id}/events"),
            None,
        )
        .await;
    let sent = text
        .lines()
        .filter(|line| line.strip_prefix("event:").map(str::trim) == Some("audit"))
        .count();
    assert_eq!(sent, listed["events"].as_array().unwrap().len(), "{text}");
    assert!(
        text.trim_end()
            .lines()
            .rev()
            .find(|line| line.starts_with("data:"))
            .unwrap()
            .contains("workflow.finished"),
        "{text}"
    );
    let (status, body) = users
        .call(
            "bob",
            M::GET,
            &format!("/v1/workflows/{run_id}/events?follow=maybe"),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // The same idempotency key twice: one backup.
    let keyed = |key: &'static str| {
        let users = &users;
        let body = daily.clone();
        async move {
            let response = reqwest::Client::new()
                .post(users.api.url("/v1/backups"))
                .bearer_auth(users.token("bob"))
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let answer = response.json::<Value>().await.unwrap();
            assert_eq!(status, 202, "{answer}");
            answer["id"].clone()
        }
    };
    let first = keyed("nightly-2026-11-25").await;
    assert_eq!(keyed("nightly-2026-11-25").await, first);
    assert_ne!(first, json!(id));
    settled(
        &users,
        "bob",
        &format!("/v1/backups/{}", first.as_str().unwrap()),
    )
    .await;

    // Restored into another namespace.
    let (status, restore) = users
        .call(
            "bob",
            M::POST,
            "/v1/restores",
            Some(json!({"name": "copy", "spec": {
                "backup": id, "cluster": cluster_record["id"],
                "namespace_mapping": {"shop": "shop-copy"}
            }})),
        )
        .await;
    assert_eq!(status, 202, "{restore}");
    let restore_id = restore["id"].as_str().unwrap();
    let record = settled(&users, "bob", &format!("/v1/restores/{restore_id}")).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["progress"]["failed"], 0, "{record}");
    assert_eq!(
        record["location"], location["id"],
        "the backup's location by default"
    );
    let (_, results) = users
        .call(
            "bob",
            M::GET,
            &format!("/v1/restores/{restore_id}/results"),
            None,
        )
        .await;
    assert!(
        results["items"].as_array().unwrap().iter().any(|r| {
            r["kind"] == "Deployment.apps"
                && r["namespace"] == "shop-copy"
                && r["outcome"] == "created"
        }),
        "{results}"
    );
    let copied = claim_folder(&cluster, &client, "shop-copy", "data").await;
    assert_eq!(files(&copied), original);
    let (_, listed) = users
        .call("bob", M::GET, &format!("/v1/restores?backup={id}"), None)
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    let location = listed["items"][0]["location"].as_str().unwrap().to_string();
    let (_, by_location) = users
        .call(
            "bob",
            M::GET,
            &format!("/v1/restores?location={location}"),
            None,
        )
        .await;
    assert_eq!(by_location["items"], listed["items"], "{by_location}");
    let (_, elsewhere) = users
        .call("bob", M::GET, "/v1/restores?location=elsewhere", None)
        .await;
    assert_eq!(elsewhere["items"], json!([]), "{elsewhere}");
    // Restores carry no labels: a label filter is refused, not ignored.
    let (status, refused) = users
        .call("bob", M::GET, "/v1/restores?label=app=shop", None)
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["details"]["parameter"], "label", "{refused}");
    no_temporaries(&client, "shop-copy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_failed_by_its_pre_rule_completes_when_retried_after_the_rule_is_fixed() {
    let users = Users::start().await;
    let cluster = start("failing").await;
    let client = connect(&cluster).await;
    deploy_app(&client.client).await;
    let folder = claim_folder(&cluster, &client, "shop", "data").await;
    std::fs::write(folder.join("PG_VERSION"), b"17\n").unwrap();
    database_running(&client).await;
    let kubeconfig = std::fs::read_to_string(cluster.sim.kubeconfig_path()).unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let (cluster_id, location_id) = register(&users, &kubeconfig, bucket.path()).await;
    let rule_spec = |command: &str| {
        json!({
            "pod_selector": {"matchLabels": {"app": "db"}},
            "actions": [{"command": ["sh", "-c", command], "on_error": "fail"}]
        })
    };
    let (status, rule) = users
        .call(
            "bob",
            M::POST,
            "/v1/rules",
            Some(json!({"name": "flush", "spec": rule_spec("echo disk is read-only; exit 3")})),
        )
        .await;
    assert_eq!(status, 201, "{rule}");
    let rule_id = rule["id"].as_str().unwrap();

    // The pre-rule's command exits 3: the backup fails, saying where and why.
    let (status, backup) = users
        .call(
            "bob",
            M::POST,
            "/v1/backups",
            Some(json!({"name": "guarded", "spec": {
                "cluster": cluster_id, "location": location_id,
                "namespaces": ["shop"], "pre_rules": [rule_id]
            }})),
        )
        .await;
    assert_eq!(status, 202, "{backup}");
    let id = backup["id"].as_str().unwrap().to_string();
    let failed = settled(&users, "bob", &format!("/v1/backups/{id}")).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["restorable"], false, "{failed}");
    let error = failed["error"].as_str().unwrap();
    for part in [rule_id, "exit code 3", "disk is read-only"] {
        assert!(error.contains(part), "`{part}` missing in {error}");
    }
    no_temporaries(&client, "shop").await;
    let first_run = failed["run"].as_str().unwrap().to_string();
    let (_, run) = users
        .call("bob", M::GET, &format!("/v1/workflows/{first_run}"), None)
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["attempts"].get("collect").is_none(), "{run}");

    // The runs list shows the failed run with its error; carol sees none of bob's runs.
    let (status, listed) = users
        .call(
            "bob",
            M::GET,
            "/v1/workflows?type=backup&status=failed",
            None,
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["next_after"], Value::Null, "{listed}");
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    let item = &items[0];
    assert_eq!(
        (&item["id"], &item["type"], &item["status"], &item["step"]),
        (
            &json!(first_run),
            &json!("backup"),
            &json!("failed"),
            &Value::Null
        ),
        "{item}"
    );
    let run_error = item["error"].as_str().unwrap();
    assert!(
        run_error.starts_with("step `pre_rules`: ") && run_error.contains("exit code 3"),
        "{run_error}"
    );
    assert!(item["finished_at"].as_str().unwrap() >= item["started_at"].as_str().unwrap());
    let (_, carols) = users.call("carol", M::GET, "/v1/workflows", None).await;
    assert_eq!(carols["items"], json!([]), "{carols}");

    // The rule fixed, the retry completes the same backup.
    let (status, fixed) = users
        .call(
            "bob",
            M::PUT,
            &format!("/v1/rules/{rule_id}"),
            Some(json!({"version": rule["version"], "labels": {}, "spec": rule_spec("sync")})),
        )
        .await;
    assert_eq!(status, 200, "{fixed}");
    let (status, retried) = users
        .call("bob", M::POST, &format!("/v1/backups/{id}/retry"), None)
        .await;
    assert_eq!(status, 202, "{retried}");
    assert_eq!(retried["attempts"], 2, "{retried}");
    let record = settled(&users, "bob", &format!("/v1/backups/{id}")).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["restorable"], true, "{record}");
    assert_eq!(record["error"], Value::Null, "{record}");
    assert_eq!(record["progress"]["volumes_done"], 1, "{record}");
    no_temporaries(&client, "shop").await;
    let second_run = record["run"].as_str().unwrap();
    assert_ne!(second_run, first_run);

    // Both runs listed, oldest first; the status filter tells them apart.
    let (_, listed) = users
        .call("bob", M::GET, "/v1/workflows?type=backup", None)
        .await;
    let runs: Vec<(&str, &str)> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| (run["id"].as_str().unwrap(), run["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        runs,
        [(first_run.as_str(), "failed"), (second_run, "completed")],
        "{listed}"
    );
    let (_, completed) = users
        .call(
            "bob",
            M::GET,
            "/v1/workflows?status=completed&limit=1",
            None,
        )
        .await;
    assert_eq!(completed["items"][0]["id"], second_run, "{completed}");
    assert_eq!(completed["items"][0]["error"], Value::Null, "{completed}");
}

pub(super) async fn users_subject(users: &Users, user: &str) -> Value {
    let (_, who) = users.call(user, M::GET, "/v1/whoami", None).await;
    who["subject"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_restore_maps_the_storage_class_and_brings_back_the_claims_data() {
    let users = Users::start().await;
    let cluster = start("replace").await;
    let client = connect(&cluster).await;
    deploy_app(&client.client).await;
    let folder = claim_folder(&cluster, &client, "shop", "data").await;
    std::fs::write(folder.join("PG_VERSION"), b"17\n").unwrap();
    std::fs::write(folder.join("table.dat"), vec![5u8; 150_000]).unwrap();
    database_running(&client).await;
    let original = files(&folder);
    let claims = "/api/v1/namespaces/shop/persistentvolumeclaims";
    let claim = client.get(claims, "data").await.unwrap().unwrap();
    let class = claim["spec"]["storageClassName"]
        .as_str()
        .unwrap()
        .to_string();
    super::create(
        &client.client,
        "storage.k8s.io/v1",
        "StorageClass",
        "storageclasses",
        json!({"metadata": {"name": "fast"},
               "provisioner": stowage_tests::kubesim::CSI_DRIVER}),
    )
    .await;

    let kubeconfig = std::fs::read_to_string(cluster.sim.kubeconfig_path()).unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let (cluster_id, location_id) = register(&users, &kubeconfig, bucket.path()).await;
    let (cluster_record, location) = (json!({"id": cluster_id}), json!({"id": location_id}));
    let (status, backup) = users
        .call(
            "bob",
            M::POST,
            "/v1/backups",
            Some(json!({"name": "before", "spec": {
                "cluster": cluster_record["id"], "location": location["id"],
                "namespaces": ["shop"], "cluster_resources": "needed"
            }})),
        )
        .await;
    assert_eq!(status, 202, "{backup}");
    let id = backup["id"].as_str().unwrap().to_string();
    let record = settled(&users, "bob", &format!("/v1/backups/{id}")).await;
    assert_eq!(record["status"], "completed", "{record}");
    let uploaded = record["progress"]["bytes_uploaded"].as_u64().unwrap();
    assert!(uploaded > 0, "{record}");

    // The application changes after the backup.
    std::fs::write(folder.join("PG_VERSION"), b"18\n").unwrap();
    std::fs::write(folder.join("new.dat"), b"written after the backup").unwrap();

    let (status, restore) = users
        .call(
            "bob",
            M::POST,
            "/v1/restores",
            Some(json!({"name": "rollback", "spec": {
                "backup": id, "cluster": cluster_record["id"], "existing": "replace",
                "storage_class_mapping": {class.as_str(): "fast"}
            }})),
        )
        .await;
    assert_eq!(status, 202, "{restore}");
    let restore_id = restore["id"].as_str().unwrap();
    let record = settled(&users, "bob", &format!("/v1/restores/{restore_id}")).await;
    let (_, results) = users
        .call(
            "bob",
            M::GET,
            &format!("/v1/restores/{restore_id}/results"),
            None,
        )
        .await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["progress"]["failed"], 0, "{results}");
    assert_eq!(record["progress"]["volumes_done"], 1, "{record}");
    for (kind, name) in [("PersistentVolumeClaim", "data"), ("Deployment.apps", "db")] {
        assert!(
            results["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| { r["kind"] == kind && r["name"] == name && r["outcome"] == "replaced" }),
            "{kind} {name} not replaced: {results}"
        );
    }
    let claim = client.get(claims, "data").await.unwrap().unwrap();
    assert_eq!(claim["spec"]["storageClassName"], "fast", "{claim}");
    let restored = claim_folder(&cluster, &client, "shop", "data").await;
    assert_ne!(restored, folder, "the replaced claim has a new volume");
    assert_eq!(
        files(&restored),
        original,
        "the claim holds the backed-up data, not what was written after"
    );
    no_temporaries(&client, "shop").await;

    // /metrics tells the same bytes as the catalog, and how long the steps took.
    let restored_bytes = record["progress"]["bytes"].as_u64().unwrap();
    assert!(restored_bytes > 0, "{record}");
    super::assert_every_answered_route_is_documented(&users.api.url("")).await;
    let metrics = reqwest::get(users.api.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        series(&metrics, "stowage_backup_uploaded_bytes_total"),
        uploaded as f64,
        "{metrics}"
    );
    assert_eq!(
        series(&metrics, "stowage_restore_restored_bytes_total"),
        restored_bytes as f64,
        "{metrics}"
    );
    // Moving volume data takes a data-mover pod's start at least; collecting may take under 1 ms.
    for (workflow, step, takes_time) in [
        ("backup", "upload", true),
        ("backup", "collect", false),
        ("restore", "volumes", true),
    ] {
        let labels = format!(r#"{{workflow="{workflow}",step="{step}",outcome="completed"}}"#);
        let name = "stowage_workflow_step_duration_seconds";
        assert_eq!(
            series(&metrics, &format!("{name}_count{labels}")),
            1.0,
            "{workflow} {step}: {metrics}"
        );
        let seconds = series(&metrics, &format!("{name}_sum{labels}"));
        assert!(
            if takes_time {
                seconds > 0.0
            } else {
                seconds >= 0.0
            },
            "{workflow} {step}: {metrics}"
        );
    }
}

/// The value of one series (name and labels, as printed) in Prometheus text.
fn series(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}
