//! Clusters registered by kubeconfig and probed live in kubesim: reachable with its version, a
//! stopped one and a bad token reported as answers, field-named 422s, versions, sharing and
//! deletion, and the kubeconfig never shown.

use reqwest::Method as M;
use serde_json::json;

use super::Users;
use crate::kubesim::start_cluster;

fn kubeconfig(cluster: &crate::kubesim::TestCluster) -> String {
    std::fs::read_to_string(cluster.sim.kubeconfig_path()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_are_registered_probed_and_guarded() {
    let users = Users::start().await;
    let prod = start_cluster("prod").await;
    let gone = start_cluster("gone").await;
    let token = prod.sim.token().to_string();

    let (status, body) = users
        .call(
            "bob",
            M::POST,
            "/v1/clusters",
            Some(json!({"name": "prod", "spec": {"kubeconfig": kubeconfig(&prod)}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["spec"]["kubeconfig"], "<redacted>");
    let id = body["id"].as_str().unwrap().to_string();

    let (status, probe) = users
        .call("bob", M::GET, &format!("/v1/clusters/{id}/status"), None)
        .await;
    assert_eq!(status, 200, "{probe}");
    assert_eq!(probe["reachable"], true, "{probe}");
    assert!(
        probe["version"].as_str().unwrap().starts_with("v1."),
        "{probe}"
    );
    assert_eq!(
        probe["server"].as_str().unwrap(),
        format!("{}/", prod.sim.url())
    );

    // Field-named refusals.
    for (spec, field) in [
        (json!({}), "spec.kubeconfig"),
        (
            json!({"kubeconfig": kubeconfig(&prod), "context": "nope"}),
            "spec.context",
        ),
        (json!({"kubeconfig": "clusters: [oops"}), "spec.kubeconfig"),
        (
            json!({"kubeconfig": kubeconfig(&prod), "in_cluster": true}),
            "spec.in_cluster",
        ),
    ] {
        let (status, body) = users
            .call(
                "bob",
                M::POST,
                "/v1/clusters",
                Some(json!({"name": "bad", "spec": spec})),
            )
            .await;
        assert_eq!(
            (status, body["details"]["field"].as_str()),
            (422, Some(field)),
            "{body}"
        );
    }

    // A bad token: registered (the spec is well formed), the probe says why it fails.
    let forged = kubeconfig(&prod).replace(&token, "kubesim-forged");
    assert_ne!(forged, kubeconfig(&prod));
    let (status, body) = users
        .call(
            "bob",
            M::POST,
            "/v1/clusters",
            Some(json!({"name": "forged", "spec": {"kubeconfig": forged}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let forged_id = body["id"].as_str().unwrap().to_string();
    let (status, probe) = users
        .call(
            "bob",
            M::GET,
            &format!("/v1/clusters/{forged_id}/status"),
            None,
        )
        .await;
    assert_eq!(
        (status, &probe["reachable"]),
        (200, &json!(false)),
        "{probe}"
    );
    assert!(probe["error"].as_str().unwrap().contains("401"), "{probe}");

    // A cluster that went away.
    let (status, body) = users
        .call(
            "bob",
            M::POST,
            "/v1/clusters",
            Some(json!({"name": "gone", "spec": {"kubeconfig": kubeconfig(&gone)}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let gone_id = body["id"].as_str().unwrap().to_string();
    gone.sim.stop().await;
    let (status, probe) = users
        .call(
            "bob",
            M::GET,
            &format!("/v1/clusters/{gone_id}/status"),
            None,
        )
        .await;
    assert_eq!(
        (status, &probe["reachable"]),
        (200, &json!(false)),
        "{probe}"
    );
    assert!(!probe["error"].as_str().unwrap().is_empty(), "{probe}");

    // Update: the redacted kubeconfig sent back keeps the stored one; a stale version is refused.
    let (status, body) = users
        .call("bob", M::PUT, &format!("/v1/clusters/{id}"), Some(json!({"version": 1, "labels": {"env": "prod"}, "spec": {"kubeconfig": "<redacted>", "context": "prod"}})))
        .await;
    assert_eq!((status, &body["version"]), (200, &json!(2)), "{body}");
    assert_eq!(body["spec"]["context"], "prod");
    let (_, probe) = users
        .call("bob", M::GET, &format!("/v1/clusters/{id}/status"), None)
        .await;
    assert_eq!(probe["reachable"], true, "{probe}");
    let (status, body) = users
        .call(
            "bob",
            M::PUT,
            &format!("/v1/clusters/{id}"),
            Some(json!({"version": 1, "spec": {"kubeconfig": "<redacted>"}})),
        )
        .await;
    assert_eq!(
        (status, &body["details"]["current_version"]),
        (409, &json!(2)),
        "{body}"
    );

    // carol sees nothing of bob's until it is shared with her.
    let (status, _) = users
        .call("carol", M::GET, &format!("/v1/clusters/{id}/status"), None)
        .await;
    assert_eq!(status, 404);
    let (status, body) = users
        .call(
            "bob",
            M::PUT,
            &format!("/v1/clusters/{id}/shares"),
            Some(json!({"version": 2, "shares": [{"to": {"user": "carol"}, "level": "view"}]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, probe) = users
        .call("carol", M::GET, &format!("/v1/clusters/{id}/status"), None)
        .await;
    assert_eq!(
        (status, &probe["reachable"]),
        (200, &json!(true)),
        "{probe}"
    );
    let (status, list) = users.call("carol", M::GET, "/v1/clusters", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["items"][0]["spec"]["kubeconfig"], "<redacted>");

    let (status, _) = users
        .call("bob", M::DELETE, &format!("/v1/clusters/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = users
        .call("bob", M::GET, &format!("/v1/clusters/{id}/status"), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );

    users.assert_never_shown(&token).await;
    prod.sim.stop().await;
}
