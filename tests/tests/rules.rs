//! `/v1/rules` over real HTTP with real OIDC users in different roles and groups: create,
//! validation naming fields, unique names, optimistic concurrency, sharing, what each caller may
//! see and do, deletion, and the commands in the audit stream.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};
use stowage_tests::api_server::{ApiServer, oidc_authenticator};
use stowage_tests::services;

struct Users {
    api: ApiServer,
    tokens: std::collections::HashMap<&'static str, String>,
    _dir: tempfile::TempDir,
}

impl Users {
    async fn call(
        &self,
        user: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .request(method, self.api.url(path))
            .bearer_auth(&self.tokens[user]);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// alice: admin (backup-admins); bob: operator (platform); carol: viewer in data-team; dave: viewer.
async fn start() -> Users {
    let oidc = services::oidc();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(stowage::open_store(dir.path()).unwrap());
    let auth = oidc_authenticator(&oidc, &["backup-admins"], &["platform"]).await;
    let mut tokens = std::collections::HashMap::new();
    for user in ["alice", "bob", "carol", "dave"] {
        tokens.insert(user, oidc.token(oidc.user(user), None).await.unwrap());
    }
    Users {
        api: ApiServer::start(store, auth).await.unwrap(),
        tokens,
        _dir: dir,
    }
}

fn quiesce(name: &str) -> Value {
    json!({
        "name": name,
        "labels": {"app": "mysql"},
        "spec": {
            "pod_selector": {"matchLabels": {"app": "mysql"}},
            "actions": [{"command": ["mysql", "-e", "FLUSH TABLES WITH READ LOCK"], "background": true}]
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_created_validated_shared_and_guarded() {
    let users = start().await;
    use Method as M;

    let (status, body) = users
        .call("carol", M::POST, "/v1/rules", Some(quiesce("q")))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );

    let (status, rule) = users
        .call("bob", M::POST, "/v1/rules", Some(quiesce("quiesce")))
        .await;
    assert_eq!(status, 201, "{rule}");
    assert_eq!(
        (rule["owner"].as_str(), rule["version"].as_u64()),
        (Some("bob"), Some(1))
    );
    assert_eq!(
        rule["spec"]["actions"][0]["timeout_seconds"], 60,
        "defaults are filled in"
    );
    assert_eq!(rule["spec"]["run_in"], "all");
    let id = rule["id"].as_str().unwrap().to_string();
    let path = format!("/v1/rules/{id}");

    let (status, body) = users
        .call("bob", M::POST, "/v1/rules", Some(quiesce("quiesce")))
        .await;
    assert_eq!(
        (status, body["details"]["field"].as_str()),
        (409, Some("name")),
        "{body}"
    );

    // Invalid input names the field; malformed JSON is a 400.
    let mut bad = quiesce("bad");
    bad["spec"]["actions"][0]["timeout_seconds"] = json!(0);
    let (status, body) = users.call("bob", M::POST, "/v1/rules", Some(bad)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["field"], "spec.actions[0].timeout_seconds");
    let (status, body) = users
        .call("bob", M::POST, "/v1/rules", Some(quiesce("Not_A_Name")))
        .await;
    assert_eq!(
        (status, body["details"]["field"].as_str()),
        (422, Some("name")),
        "{body}"
    );
    let (status, body) = users
        .call(
            "bob",
            M::POST,
            "/v1/rules",
            Some(json!({"name": "x", "spec": {}, "colour": 1})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("invalid")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("colour"),
        "{body}"
    );
    let response = reqwest::Client::new()
        .post(users.api.url("/v1/rules"))
        .bearer_auth(&users.tokens["bob"])
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // carol cannot see bob's rule: absent from lists, and not found by id.
    let (_, page) = users.call("carol", M::GET, "/v1/rules", None).await;
    assert_eq!(page["items"], json!([]));
    let (status, _) = users.call("carol", M::GET, &path, None).await;
    assert_eq!(status, 404);
    let (status, _) = users.call("carol", M::DELETE, &path, None).await;
    assert_eq!(status, 404, "a foreign object's existence does not leak");

    // Shared with carol's group to view: she sees it, but may not change it.
    let (status, shared) = users
        .call(
            "bob",
            M::PUT,
            &format!("{path}/shares"),
            Some(
                json!({"version": 1, "shares": [{"to": {"group": "data-team"}, "level": "view"}]}),
            ),
        )
        .await;
    assert_eq!(
        (status, shared["version"].as_u64()),
        (200, Some(2)),
        "{shared}"
    );
    let (status, seen) = users.call("carol", M::GET, &path, None).await;
    assert_eq!((status, seen["name"].as_str()), (200, Some("quiesce")));
    let (_, page) = users.call("carol", M::GET, "/v1/rules", None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let update = json!({"version": 2, "labels": {}, "spec": quiesce("x")["spec"]});
    let (status, body) = users
        .call("carol", M::PUT, &path, Some(update.clone()))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    // The audit stream shows carol the history of what was shared with her, not by her own hand.
    let (_, events) = users.call("carol", M::GET, "/v1/events", None).await;
    let streams: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["kind"].as_str().unwrap())
        .collect();
    assert_eq!(streams, ["entity.created", "entity.shared"]);
    // dave is in no group: still nothing.
    let (_, events) = users.call("dave", M::GET, "/v1/events", None).await;
    assert_eq!(events["events"], json!([]));
    let (status, _) = users.call("dave", M::GET, &path, None).await;
    assert_eq!(status, 404);

    // Optimistic concurrency: an update naming an old version is refused with the current one.
    let stale = json!({"version": 1, "labels": {}, "spec": quiesce("x")["spec"]});
    let (status, body) = users.call("bob", M::PUT, &path, Some(stale)).await;
    assert_eq!(
        (status, body["details"]["current_version"].as_u64()),
        (409, Some(2)),
        "{body}"
    );
    let (status, body) = users.call("bob", M::PUT, &path, Some(update)).await;
    assert_eq!((status, body["version"].as_u64()), (200, Some(3)), "{body}");
    assert_eq!(body["labels"], json!({}));

    // alice, an admin, sees every rule; labels filter; pages continue.
    users
        .call("alice", M::POST, "/v1/rules", Some(quiesce("a1")))
        .await;
    users
        .call("alice", M::POST, "/v1/rules", Some(quiesce("a2")))
        .await;
    let (_, page) = users.call("alice", M::GET, "/v1/rules", None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    let (_, page) = users
        .call("alice", M::GET, "/v1/rules?label=app=mysql", None)
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let (_, page) = users.call("alice", M::GET, "/v1/rules?limit=2", None).await;
    let after = page["next_after"].as_str().unwrap().to_string();
    let (_, rest) = users
        .call(
            "alice",
            M::GET,
            &format!("/v1/rules?limit=2&after={after}"),
            None,
        )
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest["next_after"].is_null());
    let (status, body) = users.call("alice", M::GET, "/v1/rules?limit=0", None).await;
    assert_eq!(
        (status, body["details"]["parameter"].as_str()),
        (400, Some("limit"))
    );

    let (status, _) = users
        .call("bob", M::DELETE, &format!("{path}?version=1"), None)
        .await;
    assert_eq!(status, 409);
    let (status, _) = users.call("bob", M::DELETE, &path, None).await;
    assert_eq!(status, 204);
    let (status, _) = users.call("bob", M::GET, &path, None).await;
    assert_eq!(status, 404);

    // The audit stream shows each command with its actor and spec.
    let (_, events) = users.call("alice", M::GET, "/v1/events", None).await;
    let kinds: Vec<(&str, &str)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["kind"].as_str().unwrap(),
                event["actor"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("entity.created", "bob"),
            ("entity.shared", "bob"),
            ("entity.updated", "bob"),
            ("entity.created", "alice"),
            ("entity.created", "alice"),
            ("entity.deleted", "bob"),
        ]
    );
    assert_eq!(
        events["events"][0]["payload"]["spec"]["actions"][0]["background"],
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_policies_show_their_next_runs_and_name_invalid_fields() {
    let users = start().await;
    let (status, policy) = users
        .call(
            "bob",
            Method::POST,
            "/v1/schedule-policies",
            Some(json!({
                "name": "nightly",
                "spec": {"schedule": {"daily": {"times": ["02:00"]}}, "timezone": "Europe/Berlin",
                         "retain": 7, "tiers": {"weekly": 4}}
            })),
        )
        .await;
    assert_eq!(status, 201, "{policy}");
    let runs: Vec<chrono::DateTime<chrono::Utc>> = policy["next_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run.as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(runs.len(), 3);
    assert!(runs[0] > chrono::Utc::now());
    for pair in runs.windows(2) {
        let gap = pair[1] - pair[0];
        // A day apart, or 23/25 hours across a daylight-saving change.
        assert!((23..=25).contains(&gap.num_hours()), "{policy}");
    }
    let id = policy["id"].as_str().unwrap();
    let (_, listed) = users
        .call("bob", Method::GET, "/v1/schedule-policies", None)
        .await;
    assert_eq!(listed["items"][0]["next_runs"], policy["next_runs"]);
    let (_, fetched) = users
        .call(
            "bob",
            Method::GET,
            &format!("/v1/schedule-policies/{id}"),
            None,
        )
        .await;
    assert_eq!(fetched["spec"]["retain"], 7);

    for (spec, field) in [
        (
            json!({"schedule": {"cron": {"expression": "0 25 * * *"}}, "retain": 3}),
            "spec.schedule.cron.expression",
        ),
        (
            json!({"schedule": {"daily": {"times": ["25:00"]}}, "retain": 3}),
            "spec.schedule.daily.times[0]",
        ),
        (
            json!({"schedule": {"daily": {"times": ["01:00"]}}, "retain": 0}),
            "spec.retain",
        ),
        (
            json!({"schedule": {"daily": {"times": ["01:00"]}}, "retain": 1, "timezone": "Europe/Atlantis"}),
            "spec.timezone",
        ),
    ] {
        let (status, body) = users
            .call(
                "bob",
                Method::POST,
                "/v1/schedule-policies",
                Some(json!({"name": "bad", "spec": spec})),
            )
            .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["details"]["field"], field, "{body}");
    }
}
