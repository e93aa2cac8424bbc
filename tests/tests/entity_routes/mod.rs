//! `/v1/clusters`, `/v1/locations` and `/v1/credentials` over real HTTP with real OIDC users:
//! clusters probed live in kubesim, locations validated against the real object stores,
//! credentials named by locations, secrets that never come back out of the server, and updates
//! and deletes guarded by ETag and If-Match.

mod clusters;
mod locations;
mod preconditions;
mod resources;

use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::Value;
use stowage_tests::api_server::{ApiServer, oidc_authenticator};
use stowage_tests::services;

/// A server with users alice (admin), bob (operator) and carol (viewer); every answer body is
/// kept so that a test can check what ever left the server.
pub struct Users {
    pub api: ApiServer,
    tokens: std::collections::HashMap<&'static str, String>,
    answers: Mutex<Vec<String>>,
    _dir: tempfile::TempDir,
}

impl Users {
    pub async fn start() -> Users {
        Self::start_with_operators(&["platform"]).await
    }

    /// As [`Users::start`], with members of `operator_groups` as operators.
    pub async fn start_with_operators(operator_groups: &[&str]) -> Users {
        let oidc = services::oidc();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(stowage::open_store(dir.path()).unwrap());
        let auth = oidc_authenticator(&oidc, &["backup-admins"], operator_groups).await;
        let mut tokens = std::collections::HashMap::new();
        for user in ["alice", "bob", "carol"] {
            tokens.insert(user, oidc.token(oidc.user(user), None).await.unwrap());
        }
        // Data movers run the built `stowage` binary in kubesim clusters that map this image.
        let settings = stowage::WorkflowSettings {
            mover: stowage_workflows::backup::volumes::MoverSettings {
                image: format!("{}:test", crate::backup::end_to_end::MOVER_IMAGE),
                ..Default::default()
            },
            ..Default::default()
        };
        let runtime = stowage::server_runtime(store, settings).unwrap();
        runtime.recover().await.unwrap();
        Users {
            api: ApiServer::start_with(runtime, auth).await.unwrap(),
            tokens,
            answers: Mutex::new(Vec::new()),
            _dir: dir,
        }
    }

    /// `user`'s bearer token.
    pub fn token(&self, user: &str) -> &str {
        &self.tokens[user]
    }

    pub async fn call(
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
        self.answers.lock().unwrap().push(text.clone());
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Fails the test if any answer so far, or the whole audit stream as an admin sees it,
    /// contains `secret`.
    pub async fn assert_never_shown(&self, secret: &str) {
        let (status, events) = self
            .call("alice", Method::GET, "/v1/events?limit=1000", None)
            .await;
        assert_eq!(status, 200, "{events}");
        assert!(
            events["events"]
                .as_array()
                .is_some_and(|events| !events.is_empty()),
            "the audit stream is empty: {events}"
        );
        let answers = self.answers.lock().unwrap();
        for answer in answers.iter() {
            assert!(
                !answer.contains(secret),
                "a secret left the server in: {answer}"
            );
        }
    }
}
