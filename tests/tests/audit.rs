//! The audit stream `GET /v1/events` over real HTTP with real OIDC tokens: refused without a
//! token, paged and followed live, each caller seeing only what it may, bad parameters named.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use stowage_engine::{ExpectedSeq, NewEvent, Store};
use stowage_tests::api_server::{ApiServer, oidc_authenticator};
use stowage_tests::services;

/// The API on a fresh store, trusting the test issuer, with `backup-admins` as admins.
async fn start(oidc: &services::OidcService) -> (ApiServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(stowage::open_store(dir.path()).unwrap());
    let auth = oidc_authenticator(oidc, &["backup-admins"], &[]).await;
    (ApiServer::start(store, auth).await.unwrap(), dir)
}

async fn record(store: &Store, stream: &str, actor: &str) {
    let event = NewEvent {
        kind: "test.noted".into(),
        payload_version: 1,
        payload: vec![1, 2, 3],
    };
    store
        .append(stream, ExpectedSeq::Any, vec![event], actor)
        .await
        .unwrap();
}

async fn get(api: &ApiServer, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", api.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn actors(page: &serde_json::Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["actor"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_stream_pages_and_shows_each_caller_what_it_may_see() {
    let oidc = services::oidc();
    let (api, _dir) = start(&oidc).await;
    for (stream, actor) in [
        ("cluster/a", "alice"),
        ("cluster/b", "bob"),
        ("cluster/a", "bob"),
        ("location/x", "dave"),
        ("cluster/b", "alice"),
    ] {
        record(&api.store, stream, actor).await;
    }
    let alice = oidc.token(oidc.user("alice"), None).await.unwrap();
    let bob = oidc.token(oidc.user("bob"), None).await.unwrap();
    let dave = oidc.token(oidc.user("dave"), None).await.unwrap();

    let (status, body) = get(&api, "/v1/events", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "unauthenticated");
    assert!(
        body["message"].as_str().unwrap().contains("Bearer"),
        "{body}"
    );
    let (status, body) = get(&api, "/v1/events", Some("garbage")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated"))
    );

    // alice is an admin (group backup-admins): every event, with its actor.
    let (status, page) = get(&api, "/v1/events", Some(&alice)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(actors(&page), ["alice", "bob", "bob", "dave", "alice"]);
    assert_eq!(page["next_after"], 5);
    let first = &page["events"][0];
    assert_eq!(first["global_seq"], 1);
    assert_eq!(first["stream"], "cluster/a");
    assert_eq!(first["kind"], "test.noted");
    assert!(first["at"].as_str().unwrap().ends_with('Z'), "{first}");

    // Others see what they caused, no more.
    let (_, page) = get(&api, "/v1/events", Some(&bob)).await;
    assert_eq!(actors(&page), ["bob", "bob"]);
    let (_, page) = get(&api, "/v1/events", Some(&dave)).await;
    assert_eq!(actors(&page), ["dave"]);
    assert_eq!(page["events"][0]["global_seq"], 4);

    // Pages: `limit` events at a time, continued from `next_after`.
    let (_, page) = get(&api, "/v1/events?limit=2", Some(&alice)).await;
    assert_eq!(actors(&page), ["alice", "bob"]);
    assert_eq!(page["next_after"], 2);
    let (_, page) = get(&api, "/v1/events?after=2&limit=2", Some(&alice)).await;
    assert_eq!(actors(&page), ["bob", "dave"]);
    let (_, page) = get(&api, "/v1/events?after=5", Some(&alice)).await;
    assert_eq!(actors(&page), Vec::<String>::new());
    assert_eq!(page["next_after"], 5);
    // A page of bob's events skips what he may not see.
    let (_, page) = get(&api, "/v1/events?after=2&limit=1", Some(&bob)).await;
    assert_eq!(page["events"][0]["global_seq"], 3);

    for (query, parameter) in [
        ("after=x", "after"),
        ("after=-1", "after"),
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("follow=maybe", "follow"),
        ("since=3", "since"),
    ] {
        let (status, body) = get(&api, &format!("/v1/events?{query}"), Some(&alice)).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["code"], "bad_request", "{query}");
        assert_eq!(body["details"]["parameter"], parameter, "{query}: {body}");
    }
    let response = reqwest::Client::new()
        .post(format!("{}/v1/events", api.base))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
}

/// Reads server-sent events until `count` events with data arrived; returns (id, data) pairs.
/// An event is a block of `field:value` lines ended by a blank line, fields in any order.
async fn read_events(
    body: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
    count: usize,
) -> Vec<(u64, serde_json::Value)> {
    let mut events = Vec::new();
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut id = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("id:") {
                    id = Some(value.trim().parse::<u64>().unwrap());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data = Some(serde_json::from_str(value.trim()).unwrap());
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                events.push((id, data));
            }
        }
        if events.len() >= count {
            return events;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("no event within 10 s")
            .unwrap()
            .unwrap();
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_the_audit_stream_catches_up_then_sends_live_events() {
    let oidc = services::oidc();
    let (api, _dir) = start(&oidc).await;
    record(&api.store, "cluster/a", "bob").await;
    record(&api.store, "cluster/a", "alice").await;
    let bob = oidc.token(oidc.user("bob"), None).await.unwrap();

    let response = reqwest::Client::new()
        .get(format!("{}/v1/events?follow=true", api.base))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let caught_up = read_events(&mut body, &mut buffer, 1).await;
    assert_eq!(caught_up[0].0, 1);
    assert_eq!(caught_up[0].1["actor"], "bob");

    // Live: alice's event is not bob's to see; his own arrives.
    record(&api.store, "cluster/b", "alice").await;
    record(&api.store, "cluster/b", "bob").await;
    let live = read_events(&mut body, &mut buffer, 1).await;
    assert_eq!(live[0].0, 4);
    assert_eq!(live[0].1["stream"], "cluster/b");
    drop(body);

    // A reconnecting client resumes after the last id it saw.
    record(&api.store, "cluster/c", "bob").await;
    let response = reqwest::Client::new()
        .get(format!("{}/v1/events", api.base))
        .bearer_auth(&bob)
        .header("Last-Event-ID", "4")
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let resumed = read_events(&mut body, &mut String::new(), 1).await;
    assert_eq!(resumed[0].0, 5);
}
