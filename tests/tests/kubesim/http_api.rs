//! kubesim's REST answers over HTTPS: authentication, `Status` errors with real reasons and
//! codes, conflicts, patches, the status subresource, finalizers, restarts with state.

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use stowage_tests::kubesim::{Kubesim, KubesimOptions};

use super::kubectl::kubectl_with_input;
use super::start_cluster;

fn client(sim: &Kubesim) -> Client {
    Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap()
}

async fn call(
    sim: &Kubesim,
    method: Method,
    path: &str,
    content_type: &str,
    body: Option<String>,
) -> (StatusCode, Value) {
    let mut request = client(sim)
        .request(method, format!("{}{path}", sim.url()))
        .bearer_auth(sim.token())
        .header("Content-Type", content_type);
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

async fn post(sim: &Kubesim, path: &str, body: Value) -> (StatusCode, Value) {
    call(
        sim,
        Method::POST,
        path,
        "application/json",
        Some(body.to_string()),
    )
    .await
}

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn requests_without_the_token_are_unauthorized() {
    let cluster = start_cluster("auth").await;
    let response = client(&cluster.sim)
        .get(format!("{}/api/v1/namespaces", cluster.sim.url()))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["reason"], "Unauthorized");
    let health = client(&cluster.sim)
        .get(format!("{}/healthz", cluster.sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn errors_are_status_objects_with_real_reasons() {
    let cluster = start_cluster("errors").await;
    let sim = &cluster.sim;

    let (code, status) = call(
        sim,
        Method::POST,
        CONFIGMAPS,
        "application/json",
        Some("{not json".into()),
    )
    .await;
    assert_eq!(
        (code.as_u16(), status["reason"].as_str()),
        (400, Some("BadRequest"))
    );
    assert_eq!(status["kind"], "Status");

    let (code, status) = call(
        sim,
        Method::POST,
        CONFIGMAPS,
        "application/yaml",
        Some("a: [b".into()),
    )
    .await;
    assert_eq!(
        (code.as_u16(), status["reason"].as_str()),
        (400, Some("BadRequest"))
    );

    let (code, status) = post(sim, CONFIGMAPS, json!({"metadata": {"name": "Bad_Name"}})).await;
    assert_eq!(
        (code.as_u16(), status["reason"].as_str()),
        (422, Some("Invalid"))
    );
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");

    let (code, status) = post(sim, CONFIGMAPS, json!({"metadata": {}})).await;
    assert_eq!(code.as_u16(), 422);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("name or generateName is required")
    );

    let (code, status) = call(sim, Method::GET, "/apis/example.com/v1/gadgets", "", None).await;
    assert_eq!(
        (code.as_u16(), status["reason"].as_str()),
        (404, Some("NotFound"))
    );

    let (code, status) = call(sim, Method::GET, &format!("{CONFIGMAPS}/missing"), "", None).await;
    assert_eq!(code.as_u16(), 404);
    assert_eq!(status["message"], "configmaps \"missing\" not found");

    let (code, status) = post(
        sim,
        "/api/v1/namespaces/nowhere/configmaps",
        json!({"metadata": {"name": "x"}}),
    )
    .await;
    assert_eq!(code.as_u16(), 404);
    assert_eq!(status["message"], "namespaces \"nowhere\" not found");

    let (code, _) = post(sim, CONFIGMAPS, json!({"metadata": {"name": "one"}})).await;
    assert_eq!(code.as_u16(), 201);
    let (code, status) = post(sim, CONFIGMAPS, json!({"metadata": {"name": "one"}})).await;
    assert_eq!(
        (code.as_u16(), status["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );

    let (code, status) = post(
        sim,
        CONFIGMAPS,
        json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "two"}}),
    )
    .await;
    assert_eq!(
        (code.as_u16(), status["reason"].as_str()),
        (400, Some("BadRequest"))
    );

    let (code, status) = call(
        sim,
        Method::POST,
        "/api/v1/componentstatuses",
        "application/json",
        Some("{}".into()),
    )
    .await;
    assert_eq!(
        (code.as_u16(), status["reason"].as_str()),
        (405, Some("MethodNotAllowed"))
    );

    let (code, status) = call(
        sim,
        Method::GET,
        &format!("{CONFIGMAPS}?labelSelector=a+in+(b"),
        "",
        None,
    )
    .await;
    assert_eq!(code.as_u16(), 400, "{status}");

    // Nothing was half-written by the failures.
    // kube-root-ca.crt is the root-CA publisher's, in every namespace.
    let (_, list) = call(sim, Method::GET, CONFIGMAPS, "", None).await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kube-root-ca.crt", "one"]);
}

#[tokio::test]
async fn updates_conflict_on_stale_versions_and_patches_merge() {
    let cluster = start_cluster("updates").await;
    let sim = &cluster.sim;
    let (_, created) = post(
        sim,
        CONFIGMAPS,
        json!({"metadata": {"generateName": "cfg-", "labels": {"a": "1"}}, "data": {"k": "v"}}),
    )
    .await;
    let name = created["metadata"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("cfg-") && name.len() == 9, "{name}");
    assert!(created["metadata"]["uid"].as_str().unwrap().len() == 36);
    assert!(created["metadata"]["creationTimestamp"].is_string());
    let path = format!("{CONFIGMAPS}/{name}");

    let mut stale = created.clone();
    stale["data"]["k"] = json!("first");
    let (code, first) = call(
        sim,
        Method::PUT,
        &path,
        "application/json",
        Some(stale.to_string()),
    )
    .await;
    assert_eq!(code.as_u16(), 200);
    assert_ne!(
        first["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    stale["data"]["k"] = json!("second");
    let (code, status) = call(
        sim,
        Method::PUT,
        &path,
        "application/json",
        Some(stale.to_string()),
    )
    .await;
    assert_eq!(
        (code.as_u16(), status["reason"].as_str()),
        (409, Some("Conflict"))
    );
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified")
    );

    let (code, merged) = call(
        sim,
        Method::PATCH,
        &path,
        "application/merge-patch+json",
        Some(json!({"data": {"k": null, "n": "2"}}).to_string()),
    )
    .await;
    assert_eq!(code.as_u16(), 200);
    assert_eq!(merged["data"], json!({"n": "2"}));
    let (_, patched) = call(
        sim,
        Method::PATCH,
        &path,
        "application/json-patch+json",
        Some(json!([{"op": "add", "path": "/metadata/labels/b", "value": "2"}]).to_string()),
    )
    .await;
    assert_eq!(patched["metadata"]["labels"], json!({"a": "1", "b": "2"}));
    assert_eq!(patched["metadata"]["uid"], created["metadata"]["uid"]);

    // A deployment: strategic merge by container name, generation, status only through /status.
    let deployments = "/apis/apps/v1/namespaces/default/deployments";
    let (_, deployment) = post(sim, deployments, json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]}}},
        "status": {"replicas": 7}
    })).await;
    assert_eq!(deployment["metadata"]["generation"], 1);
    assert!(
        deployment.get("status").is_none(),
        "status is not taken from a create"
    );
    let web = format!("{deployments}/web");
    let (_, patched) = call(sim, Method::PATCH, &web, "application/strategic-merge-patch+json", Some(json!({
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}},
        "status": {"replicas": 9}
    }).to_string())).await;
    let containers = &patched["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers,
        &json!([{"name": "web", "image": "nginx:2"}, {"name": "log", "image": "busybox"}])
    );
    assert_eq!(patched["metadata"]["generation"], 2);
    assert_ne!(
        patched.pointer("/status/replicas"),
        Some(&json!(9)),
        "the main resource ignores status"
    );
    let (code, with_status) = call(
        sim,
        Method::PATCH,
        &format!("{web}/status"),
        "application/merge-patch+json",
        Some(json!({"status": {"replicas": 1}, "spec": {"replicas": 5}}).to_string()),
    )
    .await;
    assert_eq!(code.as_u16(), 200);
    assert_eq!(with_status["status"]["replicas"], 1);
    assert_eq!(
        with_status["spec"]["replicas"], 1,
        "the status subresource ignores spec"
    );
    assert_eq!(with_status["metadata"]["generation"], 2);
    let (_, scale) = call(sim, Method::GET, &format!("{web}/scale"), "", None).await;
    assert_eq!(
        (scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()),
        (Some("Scale"), Some(1))
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_and_owners_take_dependents_along() {
    let cluster = start_cluster("deletion").await;
    let sim = &cluster.sim;
    let (_, owner) = post(sim, CONFIGMAPS, json!({"metadata": {"name": "owner"}})).await;
    let owner_ref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}]);
    post(
        sim,
        CONFIGMAPS,
        json!({"metadata": {"name": "child", "ownerReferences": owner_ref}}),
    )
    .await;
    post(sim, CONFIGMAPS, json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"], "ownerReferences": owner_ref}})).await;

    let (code, deleted) = call(
        sim,
        Method::DELETE,
        &format!("{CONFIGMAPS}/owner"),
        "application/json",
        Some(json!({"propagationPolicy": "Background"}).to_string()),
    )
    .await;
    assert_eq!(code.as_u16(), 200);
    assert_eq!(deleted["metadata"]["name"], "owner");
    let (code, _) = call(sim, Method::GET, &format!("{CONFIGMAPS}/child"), "", None).await;
    assert_eq!(code.as_u16(), 404, "the dependent was collected");
    let (code, held) = call(sim, Method::GET, &format!("{CONFIGMAPS}/held"), "", None).await;
    assert_eq!(code.as_u16(), 200, "a finalizer keeps the object");
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    let (code, _) = call(
        sim,
        Method::PATCH,
        &format!("{CONFIGMAPS}/held"),
        "application/merge-patch+json",
        Some(json!({"metadata": {"finalizers": null}}).to_string()),
    )
    .await;
    assert_eq!(code.as_u16(), 200);
    let (code, _) = call(sim, Method::GET, &format!("{CONFIGMAPS}/held"), "", None).await;
    assert_eq!(
        code.as_u16(),
        404,
        "removing the last finalizer completes the deletion"
    );

    // Orphan keeps the dependent and drops its owner reference.
    let (_, owner) = post(sim, CONFIGMAPS, json!({"metadata": {"name": "owner2"}})).await;
    post(sim, CONFIGMAPS, json!({"metadata": {"name": "orphan", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": owner["metadata"]["uid"]}]}})).await;
    call(
        sim,
        Method::DELETE,
        &format!("{CONFIGMAPS}/owner2?propagationPolicy=Orphan"),
        "",
        None,
    )
    .await;
    let (code, orphan) = call(sim, Method::GET, &format!("{CONFIGMAPS}/orphan"), "", None).await;
    assert_eq!(code.as_u16(), 200);
    assert_eq!(orphan["metadata"]["ownerReferences"], json!([]));
}

#[tokio::test]
async fn a_persistent_cluster_keeps_its_objects_and_credentials_across_restarts() {
    let folder = tempfile::tempdir().unwrap();
    let mut options = KubesimOptions::new("durable", folder.path());
    options.persistent = true;
    let first = Kubesim::start(options.clone()).await.unwrap();
    let token = first.token().to_string();
    let (code, _) = post(
        &first,
        CONFIGMAPS,
        json!({"metadata": {"name": "kept"}, "data": {"a": "b"}}),
    )
    .await;
    assert_eq!(code.as_u16(), 201);
    first.stop().await;

    let second = Kubesim::start(options).await.unwrap();
    assert_eq!(second.token(), token);
    let (code, kept) = call(
        &second,
        Method::GET,
        &format!("{CONFIGMAPS}/kept"),
        "",
        None,
    )
    .await;
    assert_eq!(code.as_u16(), 200);
    assert_eq!(kept["data"]["a"], "b");
    let kubeconfig = std::fs::read_to_string(second.kubeconfig_path()).unwrap();
    assert!(
        kubeconfig.contains(&second.url()),
        "the kubeconfig names the new address"
    );
}

#[tokio::test]
async fn exec_requests_are_checked_before_any_upgrade() {
    let cluster = start_cluster("exec-checks").await;
    let sim = &cluster.sim;
    let exec =
        |pod: &str, query: &str| format!("/api/v1/namespaces/default/pods/{pod}/exec?{query}");
    let (code, status) = call(
        sim,
        Method::GET,
        &exec("ghost", "command=true&stdout=true"),
        "",
        None,
    )
    .await;
    assert_eq!(
        (code.as_u16(), status["reason"].as_str()),
        (404, Some("NotFound"))
    );
    assert_eq!(status["message"], "pods \"ghost\" not found");

    let pod = json!({"metadata": {"name": "web"}, "spec": {"containers": [
        {"name": "a", "image": "nginx"}, {"name": "b", "image": "nginx"}
    ]}});
    assert_eq!(
        post(sim, "/api/v1/namespaces/default/pods", pod).await.0,
        StatusCode::CREATED
    );
    for (query, message) in [
        (
            "stdout=true&container=a",
            "you must specify at least one command for the container",
        ),
        (
            "command=true&container=a",
            "you must specify at least 1 of stdin, stdout, stderr",
        ),
        (
            "command=true&stdout=true",
            "a container name must be specified for pod web, choose one of: [a b]",
        ),
        (
            "command=true&stdout=true&container=c",
            "container c is not valid for pod web",
        ),
        (
            "command=true&stdout=true&container=a",
            "Upgrade request required",
        ),
    ] {
        let (code, status) = call(sim, Method::GET, &exec("web", query), "", None).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}: {status}");
        assert_eq!(status["message"], message, "{query}");
    }
    // kubectl's SPDY fallback is refused with a reason.
    let response = client(sim)
        .post(format!(
            "{}{}",
            sim.url(),
            exec("web", "command=true&stdout=true&container=a")
        ))
        .bearer_auth(sim.token())
        .header("Connection", "Upgrade")
        .header("Upgrade", "SPDY/3.1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let status: Value = response.json().await.unwrap();
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("upgrade to SPDY/3.1 is not supported"),
        "{status}"
    );
}

async fn get(sim: &Kubesim, path: &str) -> (StatusCode, Value) {
    call(sim, Method::GET, path, "", None).await
}

fn owner_reference(owner: &Value, block: bool) -> Value {
    let mut reference = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]});
    if block {
        reference["blockOwnerDeletion"] = json!(true);
    }
    json!([reference])
}

#[tokio::test]
async fn foreground_deletion_waits_for_the_dependents_that_block_it() {
    let cluster = start_cluster("foreground").await;
    let sim = &cluster.sim;
    let (_, owner) = post(sim, CONFIGMAPS, json!({"metadata": {"name": "owner"}})).await;
    let (_, middle) = post(
        sim,
        CONFIGMAPS,
        json!({"metadata": {"name": "middle", "ownerReferences": owner_reference(&owner, true)}}),
    )
    .await;
    post(
        sim,
        CONFIGMAPS,
        json!({"metadata": {"name": "leaf", "finalizers": ["example.com/hold"],
        "ownerReferences": owner_reference(&middle, true)}}),
    )
    .await;
    post(
        sim,
        CONFIGMAPS,
        json!({"metadata": {"name": "loose", "finalizers": ["example.com/hold"],
        "ownerReferences": owner_reference(&owner, false)}}),
    )
    .await;

    let (code, deleted) = call(
        sim,
        Method::DELETE,
        &format!("{CONFIGMAPS}/owner"),
        "application/json",
        Some(json!({"propagationPolicy": "Foreground"}).to_string()),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        deleted["metadata"]["deletionTimestamp"].is_string(),
        "{deleted}"
    );
    assert_eq!(
        deleted["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );

    let path = |name: &str| format!("{CONFIGMAPS}/{name}");
    // The owner and the dependent that has a dependent of its own wait; the leaves are deleted.
    for (name, finalizers) in [
        ("owner", json!(["foregroundDeletion"])),
        ("middle", json!(["foregroundDeletion"])),
        ("leaf", json!(["example.com/hold"])),
        ("loose", json!(["example.com/hold"])),
    ] {
        let (code, object) = get(sim, &path(name)).await;
        assert_eq!(code, StatusCode::OK, "{name} is still there");
        assert!(
            object["metadata"]["deletionTimestamp"].is_string(),
            "{name}: {object}"
        );
        assert_eq!(object["metadata"]["finalizers"], finalizers, "{name}");
    }

    let (code, _) = call(
        sim,
        Method::PATCH,
        &path("leaf"),
        "application/merge-patch+json",
        Some(json!({"metadata": {"finalizers": null}}).to_string()),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    for name in ["leaf", "middle", "owner"] {
        let (code, object) = get(sim, &path(name)).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{name} is gone: {object}");
    }
    // A dependent without blockOwnerDeletion did not hold its owner back.
    let (code, loose) = get(sim, &path("loose")).await;
    assert_eq!(code, StatusCode::OK);
    assert!(loose["metadata"]["deletionTimestamp"].is_string());
}

fn names_of(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            format!(
                "{}/{}",
                item["metadata"]["namespace"].as_str().unwrap(),
                item["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn cluster_wide_lists_select_by_namespace() {
    let cluster = super::start_cluster_with("namespace-fields", |options| {
        options.controllers = stowage_tests::kubesim::Controllers::none();
    })
    .await;
    let sim = &cluster.sim;
    for namespace in ["team-a", "team-b"] {
        let (code, _) = post(
            sim,
            "/api/v1/namespaces",
            json!({"metadata": {"name": namespace}}),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED);
    }
    for (namespace, name) in [
        ("team-a", "x"),
        ("team-a", "y"),
        ("team-b", "z"),
        ("default", "w"),
    ] {
        let (code, _) = post(
            sim,
            &format!("/api/v1/namespaces/{namespace}/configmaps"),
            json!({"metadata": {"name": name}}),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED);
    }
    for (selector, expected) in [
        ("metadata.namespace%3Dteam-a", vec!["team-a/x", "team-a/y"]),
        ("metadata.namespace%3D%3Dteam-b", vec!["team-b/z"]),
        (
            "metadata.namespace!%3Dteam-a",
            vec!["default/w", "team-b/z"],
        ),
        (
            "metadata.namespace%3Dteam-a,metadata.name%3Dy",
            vec!["team-a/y"],
        ),
        ("metadata.namespace%3Dnowhere", vec![]),
    ] {
        let (code, list) = get(sim, &format!("/api/v1/configmaps?fieldSelector={selector}")).await;
        assert_eq!(code, StatusCode::OK, "{selector}: {list}");
        assert_eq!(list["kind"], "ConfigMapList");
        assert_eq!(names_of(&list), expected, "{selector}");
    }
    // Paged, the selection holds across pages.
    let (_, first) = get(
        sim,
        "/api/v1/configmaps?fieldSelector=metadata.namespace%3Dteam-a&limit=1",
    )
    .await;
    assert_eq!(names_of(&first), ["team-a/x"]);
    assert_eq!(first["metadata"]["remainingItemCount"], 1);
    let token = first["metadata"]["continue"].as_str().unwrap();
    let (_, second) = get(
        sim,
        &format!(
            "/api/v1/configmaps?fieldSelector=metadata.namespace%3Dteam-a&limit=1&continue={token}"
        ),
    )
    .await;
    assert_eq!(names_of(&second), ["team-a/y"]);
}

/// A Service manifest of `kind` (NodePort, LoadBalancer, ClusterIP) with these ports.
fn service(name: &str, kind: &str, ports: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"type": kind, "selector": {"app": name}, "ports": ports}})
}

const SERVICES: &str = "/api/v1/namespaces/default/services";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_unique_addresses_and_taken_ones_are_refused() {
    let cluster = start_cluster("service-ips").await;
    let sim = &cluster.sim;
    let (code, fixed) = post(
        sim,
        SERVICES,
        service(
            "fixed",
            "NodePort",
            json!([{"port": 80, "nodePort": 30000}]),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{fixed}");
    assert_eq!(fixed["spec"]["ports"][0]["nodePort"], 30000);
    for index in 0..10 {
        let two_ports = json!([{"name": "http", "port": 80}, {"name": "https", "port": 443}]);
        let (code, body) = post(
            sim,
            SERVICES,
            service(&format!("np-{index}"), "NodePort", two_ports),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
        let one_port = json!([{"port": 8080}]);
        let (code, body) = post(
            sim,
            SERVICES,
            service(&format!("lb-{index}"), "LoadBalancer", one_port),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
    }
    // TCP and UDP on one port number share a node port, as on a real cluster.
    let dns = json!([{"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]);
    let (_, dns) = post(sim, SERVICES, service("dns", "NodePort", dns)).await;
    assert_eq!(
        dns["spec"]["ports"][0]["nodePort"],
        dns["spec"]["ports"][1]["nodePort"]
    );
    let (code, internal) = post(
        sim,
        SERVICES,
        service("internal", "ClusterIP", json!([{"port": 80}])),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    assert!(
        internal["spec"]["ports"][0].get("nodePort").is_none(),
        "{internal}"
    );

    let (_, list) = get(sim, SERVICES).await;
    let services = list["items"].as_array().unwrap();
    assert_eq!(services.len(), 23);
    let mut node_ports = Vec::new();
    let mut cluster_ips = std::collections::BTreeSet::new();
    for service in services {
        let ip = service["spec"]["clusterIP"].as_str().unwrap();
        assert!(ip.starts_with("10.96."), "{service}");
        assert_eq!(service["spec"]["clusterIPs"], json!([ip]));
        assert!(cluster_ips.insert(ip.to_string()), "{ip} given twice");
        let mut ports: Vec<i64> = service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|port| port["nodePort"].as_i64())
            .collect();
        ports.dedup();
        node_ports.extend(ports);
    }
    assert_eq!(node_ports.len(), 1 + 10 * 3 + 1, "{node_ports:?}");
    assert!(
        node_ports.iter().all(|port| (30000..=32767).contains(port)),
        "{node_ports:?}"
    );
    let unique: std::collections::BTreeSet<_> = node_ports.iter().collect();
    assert_eq!(
        unique.len(),
        node_ports.len(),
        "node ports are unique: {node_ports:?}"
    );

    // A requested node port in use is refused, as kubectl shows it.
    let taken = json!([{"port": 9090, "nodePort": 30000}]);
    let (code, status) = post(sim, SERVICES, service("taken", "NodePort", taken.clone())).await;
    assert_eq!(
        (code.as_u16(), status["reason"].as_str()),
        (422, Some("Invalid"))
    );
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldValueInvalid", "field": "spec.ports[0].nodePort",
            "message": "Invalid value: 30000: provided port is already allocated"}])
    );
    let refused = kubectl_with_input(
        &cluster,
        &["create", "-f", "-"],
        Some(&service("taken", "NodePort", taken).to_string()),
    )
    .await;
    assert!(!refused.success);
    assert_eq!(
        refused.stderr.trim(),
        "The Service \"taken\" is invalid: spec.ports[0].nodePort: Invalid value: 30000: \
         provided port is already allocated"
    );
    let (code, status) = post(
        sim,
        SERVICES,
        service("low", "NodePort", json!([{"port": 80, "nodePort": 8080}])),
    )
    .await;
    assert_eq!(code.as_u16(), 422);
    assert_eq!(
        status["details"]["causes"][0]["message"],
        "Invalid value: 8080: provided port is not in the valid range. The range of valid ports \
         is 30000-32767"
    );
    // So is a requested clusterIP in use.
    let ip = fixed["spec"]["clusterIP"].as_str().unwrap();
    let mut copy = service("copy", "ClusterIP", json!([{"port": 80}]));
    copy["spec"]["clusterIP"] = json!(ip);
    let (code, status) = post(sim, SERVICES, copy).await;
    assert_eq!(code.as_u16(), 422, "{status}");
    assert_eq!(status["details"]["causes"][0]["field"], "spec.clusterIPs");
    assert_eq!(
        status["message"],
        format!(
            "Service \"copy\" is invalid: spec.clusterIPs: Invalid value: []string{{\"{ip}\"}}: \
             failed to allocate IP {ip}: provided IP is already allocated"
        )
    );
    for name in ["taken", "low", "copy"] {
        let (code, _) = get(sim, &format!("{SERVICES}/{name}")).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "nothing of {name} was stored");
    }

    // Once its Service is gone, a node port can be asked for again.
    let (code, _) = call(sim, Method::DELETE, &format!("{SERVICES}/fixed"), "", None).await;
    assert_eq!(code, StatusCode::OK);
    let (code, again) = post(
        sim,
        SERVICES,
        service(
            "again",
            "NodePort",
            json!([{"port": 80, "nodePort": 30000}]),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{again}");
}
