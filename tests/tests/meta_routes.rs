//! The server's own routes over real HTTP: the OpenAPI document and the Prometheus metrics, with
//! request counts and the workflow runs the engine recorded.

use std::sync::Arc;

use serde_json::Value;
use stowage::auth::{Authenticator, RoleMapping};
use stowage_engine::{
    RetryPolicy, Runtime, RuntimeOptions, StartOptions, StepError, Store, StoreOptions, Workflow,
};
use stowage_tests::api_server::ApiServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_and_metrics_describe_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::open_with(
            dir.path(),
            StoreOptions {
                projections: vec![Runtime::projection()],
                ..StoreOptions::default()
            },
        )
        .unwrap(),
    );
    let runtime = Runtime::new(
        store.clone(),
        RuntimeOptions {
            workflows: vec![
                Workflow::new("backup")
                    .step("copy", RetryPolicy::once(), |_| async { Ok(Value::Null) }),
                Workflow::new("restore").step("apply", RetryPolicy::once(), |_| async {
                    Err(StepError::permanent("target namespace is gone"))
                }),
            ],
            ..RuntimeOptions::default()
        },
    )
    .unwrap();
    let mut runs = Vec::new();
    for workflow in ["backup", "backup", "restore"] {
        runs.push(
            runtime
                .start(workflow, Value::Null, StartOptions::default(), "alice")
                .await
                .unwrap(),
        );
    }
    for run in &runs {
        runtime.wait_finished(run).await.unwrap();
    }
    let api = ApiServer::start(
        store,
        Authenticator::new(None, None, RoleMapping::default()),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();

    let document: Value = http
        .get(api.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    for (method, path) in stowage::openapi::ROUTES {
        assert!(
            document["paths"][path][method].is_object(),
            "{method} {path} missing from the served document"
        );
    }
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    // Two refused audit requests and one unknown route, then the metrics.
    for path in ["/v1/events", "/v1/events", "/v1/nope"] {
        let status = http.get(api.url(path)).send().await.unwrap().status();
        assert!(status == 401 || status == 404, "{path}: {status}");
    }
    let response = http.get(api.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(
        has(r#"stowage_api_requests_total{route="/v1/events",method="GET",status="401"} 2"#),
        "{text}"
    );
    assert!(
        has(r#"stowage_api_requests_total{route="unmatched",method="GET",status="404"} 1"#),
        "{text}"
    );
    assert!(
        has(r#"stowage_workflow_runs{workflow="backup",status="completed"} 2"#),
        "{text}"
    );
    assert!(
        has(r#"stowage_workflow_runs{workflow="restore",status="failed"} 1"#),
        "{text}"
    );
    assert!(!text.contains(r#"status="running""#), "{text}");
    assert!(
        text.contains(r#"stowage_api_request_duration_seconds_count{route="/v1/events"} 2"#),
        "{text}"
    );
}
