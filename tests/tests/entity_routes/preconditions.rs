//! Optimistic concurrency with `ETag` and `If-Match` on an entity's routes, over real HTTP: the
//! ETag is the version, a change under a matching `If-Match` goes through, a stale one is 412
//! (a stale `version` field stays 409), and a request naming two versions is refused.

use reqwest::Method as M;
use serde_json::{Value, json};

use super::Users;

/// Calls `path` as bob with an optional `If-Match`; the status, the ETag and the body.
async fn call(
    users: &Users,
    method: M,
    path: &str,
    if_match: Option<&str>,
    body: Option<Value>,
) -> (u16, Option<String>, Value) {
    let mut request = reqwest::Client::new()
        .request(method, users.api.url(path))
        .bearer_auth(users.token("bob"));
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|value| value.to_str().unwrap().to_string());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, etag, body)
}

fn spec(key: &str) -> Value {
    json!({"type": "s3", "access_key_id": key, "secret_access_key": "not-a-real-secret"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_guard_updates_shares_and_deletes() {
    let users = Users::start().await;
    let (status, etag, created) = call(
        &users,
        M::POST,
        "/v1/credentials",
        None,
        Some(json!({"name": "etag", "spec": spec("AKIA1")})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(etag.as_deref(), Some("\"1\""));
    let path = format!("/v1/credentials/{}", created["id"].as_str().unwrap());
    let (status, etag, _) = call(&users, M::GET, &path, None, None).await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"1\"")));

    // A matching If-Match stands in for the version field.
    let (status, etag, body) = call(
        &users,
        M::PUT,
        &path,
        Some("\"1\""),
        Some(json!({"spec": spec("AKIA2")})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (etag.as_deref(), &body["version"]),
        (Some("\"2\""), &json!(2))
    );

    // Stale: 412 under If-Match, 409 with the field; the current version is told either way.
    let (status, _, body) = call(
        &users,
        M::PUT,
        &path,
        Some("\"1\""),
        Some(json!({"spec": spec("AKIA3")})),
    )
    .await;
    assert_eq!(status, 412, "{body}");
    assert_eq!(body["code"], "precondition_failed", "{body}");
    assert_eq!(body["details"]["current_version"], 2, "{body}");
    let (status, _, body) = call(
        &users,
        M::PUT,
        &path,
        None,
        Some(json!({"version": 1, "spec": spec("AKIA3")})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["details"]["current_version"], 2, "{body}");

    // Contradictory, missing and malformed versions are named.
    let (status, _, body) = call(
        &users,
        M::PUT,
        &path,
        Some("\"2\""),
        Some(json!({"version": 1, "spec": spec("AKIA3")})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["details"]["header"], "if-match", "{body}");
    let (status, _, body) = call(
        &users,
        M::PUT,
        &path,
        None,
        Some(json!({"spec": spec("AKIA3")})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["field"], "version", "{body}");
    let (status, _, body) = call(
        &users,
        M::PUT,
        &path,
        Some("2"),
        Some(json!({"spec": spec("AKIA3")})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("If-Match"),
        "{body}"
    );

    // `*` matches whatever version is current; weak tags never match.
    let (status, etag, body) = call(
        &users,
        M::PUT,
        &path,
        Some("*"),
        Some(json!({"spec": spec("AKIA3")})),
    )
    .await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"3\"")), "{body}");
    let (status, _, body) = call(
        &users,
        M::PUT,
        &format!("{path}/shares"),
        Some("W/\"3\""),
        Some(json!({"shares": []})),
    )
    .await;
    assert_eq!(status, 412, "{body}");
    let (status, etag, body) = call(
        &users,
        M::PUT,
        &format!("{path}/shares"),
        Some("\"3\""),
        Some(json!({"shares": [{"to": {"group": "data-team"}, "level": "view"}]})),
    )
    .await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"4\"")), "{body}");

    // Deletes: a stale tag keeps the entity, the current one deletes it.
    let (status, _, body) = call(&users, M::DELETE, &path, Some("\"3\""), None).await;
    assert_eq!(status, 412, "{body}");
    let (status, _, body) = call(&users, M::GET, &path, None, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = call(&users, M::DELETE, &path, Some("\"4\", \"9\""), None).await;
    assert_eq!(status, 204);
    let (status, _, body) = call(&users, M::GET, &path, None, None).await;
    assert_eq!(status, 404, "{body}");
}
