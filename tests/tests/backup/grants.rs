//! Cluster grants over real HTTP with real OIDC users and a kubesim cluster: bob owns the
//! cluster and backs up any namespace; carol (an operator through `data-team`, with the cluster
//! shared to that group) backs up from and restores into only the namespaces granted to her
//! group (`team-*`) or to her (`reports`). Everything else is refused with a 403 naming the
//! namespaces, and nothing of hers is recorded; schedules are held to the same grants; the
//! application view shows her only her namespaces; invalid patterns are named; only the owner
//! changes grants.

use reqwest::Method as M;
use serde_json::{Value, json};

use super::create;
use super::end_to_end::{connect, start};
use super::recovery::register;
use super::routes::{settled, users_subject};
use crate::entity_routes::Users;

/// The last position of the audit stream.
async fn last_event(users: &Users) -> u64 {
    users
        .audit_events("alice")
        .await
        .last()
        .map_or(0, |event| event["global_seq"].as_u64().unwrap())
}

/// The events after `after` that `subject` caused.
async fn events_by(users: &Users, after: u64, subject: &Value) -> Vec<Value> {
    let (status, page) = users
        .call(
            "alice",
            M::GET,
            &format!("/v1/events?after={after}&limit=1000"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| &event["actor"] == subject)
        .cloned()
        .collect()
}

/// Replaces the cluster's grants as `user`; returns the status and the answer.
async fn set_grants(users: &Users, user: &str, cluster: &str, grants: Value) -> (u16, Value) {
    let (status, record) = users
        .call(user, M::GET, &format!("/v1/clusters/{cluster}"), None)
        .await;
    assert_eq!(status, 200, "{record}");
    let mut spec = record["spec"].clone();
    assert_eq!(spec["kubeconfig"], "<redacted>", "{record}");
    spec["grants"] = grants;
    users
        .call(
            user,
            M::PUT,
            &format!("/v1/clusters/{cluster}"),
            Some(json!({"version": record["version"], "labels": record["labels"], "spec": spec})),
        )
        .await
}

/// A 403 naming exactly `namespaces` of `cluster`.
fn refused_naming(status: u16, body: &Value, namespaces: &[&str], cluster: &str) {
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "forbidden", "{body}");
    assert_eq!(body["details"]["namespaces"], json!(namespaces), "{body}");
    assert_eq!(body["details"]["cluster"], cluster, "{body}");
    let message = body["message"].as_str().unwrap();
    for namespace in namespaces {
        assert!(message.contains(&format!("`{namespace}`")), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharee_backs_up_and_restores_only_granted_namespaces() {
    let users = Users::start_with_operators(&["platform", "data-team"]).await;
    let cluster = start("grants").await;
    let client = connect(&cluster).await;
    for namespace in ["team-a", "reports"] {
        create(
            &client.client,
            "v1",
            "Namespace",
            "namespaces",
            json!({"metadata": {"name": namespace}}),
        )
        .await;
        create(
            &client.client,
            "v1",
            "ConfigMap",
            "configmaps",
            json!({"metadata": {"name": "settings", "namespace": namespace}, "data": {"a": "1"}}),
        )
        .await;
    }
    let kubeconfig = std::fs::read_to_string(cluster.sim.kubeconfig_path()).unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let (cluster_id, location_id) = register(&users, &kubeconfig, bucket.path()).await;
    let carol = users_subject(&users, "carol").await;
    for (collection, id) in [("clusters", &cluster_id), ("locations", &location_id)] {
        let (status, shared) = users
            .call(
                "bob",
                M::PUT,
                &format!("/v1/{collection}/{id}/shares"),
                Some(json!({"version": 1, "shares": [{"to": {"group": "data-team"}, "level": "full"}]})),
            )
            .await;
        assert_eq!(status, 200, "{shared}");
    }
    let backup = |name: &str, namespaces: Value| {
        json!({"name": name, "spec": {
            "cluster": cluster_id, "location": location_id,
            "namespaces": namespaces, "volumes": "skip"
        }})
    };

    // Shared, but nothing granted yet: refused, saying whom to ask.
    let (status, body) = users
        .call(
            "carol",
            M::POST,
            "/v1/backups",
            Some(backup("early", json!(["team-a"]))),
        )
        .await;
    refused_naming(status, &body, &["team-a"], &cluster_id);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("ask the cluster's owner"),
        "{body}"
    );

    // Invalid patterns are named; the owner grants a pattern to the group and a name to carol.
    let (status, body) = set_grants(
        &users,
        "bob",
        &cluster_id,
        json!([{"to": {"group": "data-team"}, "namespaces": ["team-a", "Team_*"]}]),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["details"]["field"], "spec.grants[0].namespaces[1]",
        "{body}"
    );
    let grants = json!([
        {"to": {"group": "data-team"}, "namespaces": ["team-*"]},
        {"to": {"user": carol}, "namespaces": ["reports"]},
    ]);
    let (status, record) = set_grants(&users, "bob", &cluster_id, grants.clone()).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["spec"]["grants"], grants, "{record}");
    // The application view shows her only the granted namespaces; the owner sees them all.
    let shown = |view: &Value| -> Vec<String> {
        view["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|namespace| namespace["namespace"].as_str().unwrap().to_string())
            .collect()
    };
    let path = format!("/v1/clusters/{cluster_id}/resources");
    let (status, view) = users.call("carol", M::GET, &path, None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(shown(&view), ["reports", "team-a"], "{view}");
    let (_, view) = users.call("bob", M::GET, &path, None).await;
    assert!(shown(&view).contains(&"kube-system".to_string()), "{view}");

    // A sharee with full rights still may not change the grants that bind it.
    let (status, body) = set_grants(
        &users,
        "carol",
        &cluster_id,
        json!([{"to": {"group": "data-team"}, "namespaces": ["*"]}]),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["details"]["field"], "spec.grants", "{body}");

    // The owner backs up anything.
    let (status, owned) = users
        .call(
            "bob",
            M::POST,
            "/v1/backups",
            Some(backup("system", json!(["kube-system"]))),
        )
        .await;
    assert_eq!(status, 202, "{owned}");
    let owned = settled(
        &users,
        "bob",
        &format!("/v1/backups/{}", owned["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(owned["status"], "completed", "{owned}");

    // Outside the grants: refused before anything is recorded.
    let before = last_event(&users).await;
    let (status, body) = users
        .call(
            "carol",
            M::POST,
            "/v1/backups",
            Some(backup("wide", json!(["team-a", "kube-system", "default"]))),
        )
        .await;
    refused_naming(status, &body, &["default", "kube-system"], &cluster_id);
    let (status, body) = users
        .call(
            "carol",
            M::POST,
            "/v1/backups",
            Some(json!({"name": "all", "spec": {
                "cluster": cluster_id, "location": location_id,
                "namespace_selector": {"matchLabels": {"team": "a"}}
            }})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["details"]["field"], "spec.namespaces", "{body}");
    let mut cluster_wide = backup("cluster-wide", json!(["team-a"]));
    cluster_wide["spec"]["cluster_resources"] = json!("include");
    let (status, body) = users
        .call("carol", M::POST, "/v1/backups", Some(cluster_wide))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["details"]["field"], "spec.cluster_resources", "{body}");
    assert_eq!(events_by(&users, before, &carol).await, Vec::<Value>::new());
    let (_, listed) = users.call("carol", M::GET, "/v1/backups", None).await;
    assert_eq!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|item| item["owner"] == carol)
            .count(),
        0,
        "{listed}"
    );

    // Inside them, by the group's pattern and by her own grant: it runs.
    let (status, mine) = users
        .call(
            "carol",
            M::POST,
            "/v1/backups",
            Some(backup("mine", json!(["team-a", "reports"]))),
        )
        .await;
    assert_eq!(status, 202, "{mine}");
    assert!(!mine["run"].as_str().unwrap().is_empty(), "{mine}");
    let mine = settled(
        &users,
        "carol",
        &format!("/v1/backups/{}", mine["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(mine["status"], "completed", "{mine}");

    // Restores: every namespace written into must be granted, after the mapping.
    let restore = |name: &str, extra: Value| {
        let mut spec = json!({"backup": mine["id"], "cluster": cluster_id});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"name": name, "spec": spec})
    };
    let before = last_event(&users).await;
    for (extra, refused) in [
        (
            json!({"namespace_mapping": {"team-a": "kube-public"}}),
            vec!["kube-public"],
        ),
        (
            json!({"namespaces": ["reports"], "namespace_mapping": {"reports": "default"}}),
            vec!["default"],
        ),
    ] {
        let (status, body) = users
            .call(
                "carol",
                M::POST,
                "/v1/restores",
                Some(restore("out", extra)),
            )
            .await;
        refused_naming(status, &body, &refused, &cluster_id);
    }
    assert_eq!(events_by(&users, before, &carol).await, Vec::<Value>::new());
    let (status, restored) = users
        .call(
            "carol",
            M::POST,
            "/v1/restores",
            Some(restore(
                "copy",
                json!({"namespace_mapping": {"team-a": "team-b", "reports": "team-reports"}}),
            )),
        )
        .await;
    assert_eq!(status, 202, "{restored}");
    let restored = settled(
        &users,
        "carol",
        &format!("/v1/restores/{}", restored["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(restored["status"], "completed", "{restored}");
    assert!(
        client
            .get("/api/v1/namespaces/team-b/configmaps", "settings")
            .await
            .unwrap()
            .is_some(),
        "the config map came back in team-b"
    );

    // Schedules are held to the same grants when created.
    let (status, policy) = users
        .call(
            "carol",
            M::POST,
            "/v1/schedule-policies",
            Some(json!({"name": "hourly", "spec": {"schedule": {"interval": {"minutes": 60}}, "retain": 3}})),
        )
        .await;
    assert_eq!(status, 201, "{policy}");
    let schedule = |namespaces: Value| {
        json!({"name": "hourly", "spec": {"policy": policy["id"], "backup": {
            "cluster": cluster_id, "location": location_id, "namespaces": namespaces
        }}})
    };
    let (status, body) = users
        .call(
            "carol",
            M::POST,
            "/v1/backup-schedules",
            Some(schedule(json!(["kube-system"]))),
        )
        .await;
    refused_naming(status, &body, &["kube-system"], &cluster_id);
    let (status, body) = users
        .call(
            "carol",
            M::POST,
            "/v1/backup-schedules",
            Some(schedule(json!(["team-a"]))),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // Revoked: the group's grant gone, team-a is refused again; her own grant stays.
    let (status, record) = set_grants(
        &users,
        "bob",
        &cluster_id,
        json!([{"to": {"user": carol}, "namespaces": ["reports"]}]),
    )
    .await;
    assert_eq!(status, 200, "{record}");
    let (status, body) = users
        .call(
            "carol",
            M::POST,
            "/v1/backups",
            Some(backup("again", json!(["team-a"]))),
        )
        .await;
    refused_naming(status, &body, &["team-a"], &cluster_id);
    assert!(
        body["message"].as_str().unwrap().contains("do not cover"),
        "{body}"
    );
}
