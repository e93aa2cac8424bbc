//! Backups and restores as a user drives them: a real `stowage server` process, the `stowage`
//! CLI (`cluster add`, `location add`, `backup create --wait`, `restore create --wait`, `list`,
//! `describe`, `logs`, `workflow list`), and a kubesim cluster whose data movers run the same
//! binary. Then the same backup and restore with the server killed (SIGKILL) as each step starts
//! and started again: every run completes, nothing temporary is left, the data comes back
//! identical.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use stowage_workflows::cluster::ClusterClient;

use super::end_to_end::{
    MOVER_IMAGE, claim_folder, connect, database_running, deploy_app, files, no_temporaries, start,
    stowage_binary,
};
use crate::kubesim::{TestCluster, eventually};

/// A `stowage server` process on a data folder; SIGKILLed when dropped.
pub(super) struct ServerProcess {
    child: Child,
    pub(super) url: String,
    data_dir: PathBuf,
}

impl ServerProcess {
    /// Starts the server on `data_dir` (an ephemeral port) and reads its address from stderr;
    /// the bootstrap token, when this start made it, goes to `token`.
    pub(super) fn start(data_dir: &Path, token: &mut Option<String>) -> Self {
        let mut child = Command::new(stowage_binary())
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(["--mover-image", &format!("{MOVER_IMAGE}:test")])
            .env("STOWAGE_LOG", "warn")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut url = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("stowage server listening on ") {
                url = Some(rest.trim().to_string());
                if token.is_some() {
                    break;
                }
            } else if line.trim().starts_with("stowage-bootstrap-") {
                *token = Some(line.trim().to_string());
                break;
            }
        }
        // The server keeps logging; its writes must never meet a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child,
            url: url.expect("the server printed its address"),
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// Kills the server at once, as a crash would.
    pub(super) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the CLI against a server; its own home, so no configuration file is shared.
pub(super) struct Cli {
    url: String,
    token: String,
    home: tempfile::TempDir,
}

impl Cli {
    pub(super) fn new(server: &ServerProcess, token: &str) -> Self {
        Self {
            url: server.url.clone(),
            token: token.to_string(),
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs `stowage args...` against the server, with a home of its own.
    async fn output(&self, args: &[&str]) -> std::process::Output {
        self.output_with(args, &[]).await
    }

    /// [`Cli::output`] with more environment variables.
    async fn output_with(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        tokio::process::Command::new(stowage_binary())
            .args(args)
            .env("STOWAGE_SERVER", &self.url)
            .env("STOWAGE_TOKEN", &self.token)
            .env("HOME", self.home.path())
            .envs(env.iter().copied())
            .output()
            .await
            .unwrap()
    }

    /// Runs `stowage args...`; returns stdout, failing the test with stderr if it fails.
    pub(super) async fn run(&self, args: &[&str]) -> String {
        let output = self.output(args).await;
        assert!(
            output.status.success(),
            "stowage {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs `stowage args...` expecting it to fail; returns stderr.
    async fn run_failing(&self, args: &[&str]) -> String {
        let output = self.output(args).await;
        assert!(!output.status.success(), "stowage {args:?} succeeded");
        String::from_utf8(output.stderr).unwrap()
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.run(&args).await).unwrap()
    }

    /// Calls the REST API directly.
    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }
}

/// A cluster with the database app, data in its volume, registered with a server through the
/// CLI with a local-folder location and a pre-rule; returns the original files.
struct Scene {
    cluster: TestCluster,
    client: ClusterClient,
    original: std::collections::BTreeMap<String, Vec<u8>>,
    folder: PathBuf,
    rule: String,
    _bucket: tempfile::TempDir,
}

async fn scene(name: &str, cli: &Cli) -> Scene {
    let cluster = start(name).await;
    let client = connect(&cluster).await;
    deploy_app(&client.client).await;
    let folder = claim_folder(&cluster, &client, "shop", "data").await;
    std::fs::create_dir_all(folder.join("base")).unwrap();
    std::fs::write(folder.join("base/table.dat"), vec![7u8; 300_000]).unwrap();
    std::fs::write(folder.join("PG_VERSION"), b"17\n").unwrap();
    database_running(&client).await;

    let kubeconfig = cluster.sim.kubeconfig_path().to_string_lossy().to_string();
    cli.run(&["cluster", "add", "source", "--kubeconfig", &kubeconfig])
        .await;
    let bucket = tempfile::tempdir().unwrap();
    let passphrase = bucket.path().join("passphrase");
    std::fs::write(&passphrase, "correct horse battery").unwrap();
    let repository = bucket.path().join("repo");
    std::fs::create_dir_all(&repository).unwrap();
    cli.run(&[
        "location",
        "add",
        "local",
        "--local",
        &repository.to_string_lossy(),
        "--passphrase-file",
        &passphrase.to_string_lossy(),
    ])
    .await;
    let rule_file = bucket.path().join("rule.yaml");
    std::fs::write(
        &rule_file,
        "pod_selector:\n  matchLabels: {app: db}\nactions:\n  - command: [sh, -c, 'echo checkpointed > /var/lib/db/CHECKPOINT']\n",
    )
    .unwrap();
    cli.run(&[
        "rule",
        "add",
        "checkpoint",
        "--spec-file",
        &rule_file.to_string_lossy(),
    ])
    .await;
    let rule = cli.json(&["rule", "get", "checkpoint"]).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    Scene {
        original: files(&folder),
        cluster,
        client,
        folder,
        rule,
        _bucket: bucket,
    }
}

async fn delete_namespace(client: &ClusterClient) {
    client.delete("/api/v1/namespaces", "shop").await.unwrap();
    eventually("namespace shop gone", || async {
        client
            .get("/api/v1/namespaces", "shop")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
}

/// The restored volume holds the backed-up files (with the pre-rule's file).
async fn data_came_back(scene: &Scene) {
    let restored = claim_folder(&scene.cluster, &scene.client, "shop", "data").await;
    assert_ne!(restored, scene.folder, "the claim got a new volume");
    let mut expected = scene.original.clone();
    expected.insert("CHECKPOINT".into(), b"checkpointed\n".to_vec());
    assert_eq!(
        files(&restored),
        expected,
        "the files came back byte for byte"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_backs_up_and_restores_an_application_through_the_server() {
    let data = tempfile::tempdir().unwrap();
    let mut token = None;
    let server = ServerProcess::start(data.path(), &mut token);
    let cli = Cli::new(&server, token.as_deref().unwrap());
    let scene = scene("served", &cli).await;

    let created = cli
        .run(&[
            "backup",
            "create",
            "nightly",
            "--cluster",
            "source",
            "--location",
            "local",
            "-n",
            "shop",
            "--pre-rule",
            "checkpoint",
            "--label",
            "tier=gold",
            "--wait",
        ])
        .await;
    assert!(created.contains("completed"), "{created}");
    let listed = cli.run(&["backup", "list"]).await;
    assert!(
        listed.contains("nightly") && listed.contains("completed"),
        "{listed}"
    );
    let described = cli.json(&["backup", "describe", "nightly"]).await;
    assert_eq!(described["status"], "completed", "{described}");
    let backup_run = described["run"].as_str().unwrap().to_string();
    assert_eq!(described["restorable"], true);
    assert_eq!(described["labels"]["tier"], "gold");
    assert!(
        described["progress"]["objects"].as_u64().unwrap() >= 5,
        "{described}"
    );
    assert_eq!(described["progress"]["volumes_done"], 1, "{described}");
    assert!(
        described["progress"]["bytes_read"].as_u64().unwrap() >= 300_000,
        "{described}"
    );
    let logs = cli.run(&["backup", "logs", "nightly"]).await;
    for step in [
        "validate",
        "pre_rules",
        "collect",
        "snapshot",
        "upload",
        "finalize",
    ] {
        assert!(
            logs.contains(&format!("\"step\":\"{step}\"")),
            "{step} missing in {logs}"
        );
    }
    let filtered = cli
        .call(reqwest::Method::GET, "/v1/backups?label=tier=silver", None)
        .await;
    assert_eq!(filtered["items"], json!([]), "the label filter applies");
    no_temporaries(&scene.client, "shop").await;

    delete_namespace(&scene.client).await;
    let restored = cli
        .run(&[
            "restore",
            "create",
            "back",
            "--backup",
            "nightly",
            "--cluster",
            "source",
            "--wait",
        ])
        .await;
    assert!(restored.contains("completed"), "{restored}");
    data_came_back(&scene).await;
    let described = cli.run(&["restore", "describe", "back"]).await;
    for object in ["Deployment.apps/shop/db", "PersistentVolumeClaim/shop/data"] {
        assert!(
            described
                .lines()
                .any(|line| line.contains("created") && line.contains(object)),
            "{object} is not shown created in {described}"
        );
    }
    let restores = cli.json(&["restore", "list"]).await;
    assert_eq!(restores[0]["progress"]["failed"], 0, "{restores}");
    assert_eq!(restores[0]["progress"]["volumes_done"], 1, "{restores}");
    no_temporaries(&scene.client, "shop").await;

    // The runs behind them, listed by type.
    let runs = cli.json(&["workflow", "list", "--type", "restore"]).await;
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs[0]["id"], restores[0]["run"], "{runs}");
    assert_eq!(runs[0]["status"], "completed", "{runs}");
    let table = cli.run(&["workflow", "list"]).await;
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows[0].contains(&backup_run)
            && rows[0].contains("backup")
            && rows[0].contains("completed"),
        "{table}"
    );

    // Every request the CLI made was to an operation the OpenAPI document describes.
    super::assert_every_answered_route_is_documented(&server.url).await;
}

/// Follows the audit stream and SIGKILLs the server the first time each step of `run` starts,
/// starting it again each time, until the run finishes. Returns the steps interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_adds_policies_and_schedules_that_show_their_next_runs() {
    let data = tempfile::tempdir().unwrap();
    let mut token = None;
    let server = ServerProcess::start(data.path(), &mut token);
    let cli = Cli::new(&server, token.as_deref().unwrap());
    let _scene = scene("served-schedules", &cli).await;

    let refused = cli
        .run_failing(&["policy", "add", "bad", "--daily", "25:00"])
        .await;
    assert!(
        refused.contains("spec.schedule.daily.times[0]"),
        "{refused}"
    );
    let refused = cli.run_failing(&["policy", "add", "vague"]).await;
    assert!(refused.contains("--daily"), "{refused}");
    let policy = cli
        .json(&[
            "policy",
            "add",
            "weeknights",
            "--cron",
            "30 2 * * 1-5",
            "--retain",
            "5",
            "--timezone",
            "Europe/Berlin",
        ])
        .await;
    assert_eq!(policy["spec"]["retain"], 5, "{policy}");
    assert_eq!(policy["next_runs"].as_array().unwrap().len(), 3, "{policy}");
    cli.run(&[
        "policy", "add", "sundays", "--weekly", "sun", "--at", "03:00",
    ])
    .await;
    let policies = cli.run(&["policy", "list"]).await;
    assert!(
        policies.contains("NEXT RUN") && policies.contains("weeknights"),
        "{policies}"
    );

    let refused = cli
        .run_failing(&[
            "schedule",
            "add",
            "shop-nightly",
            "--policy",
            "weeknights",
            "--cluster",
            "source",
            "--location",
            "local",
            "-n",
            "Shop!",
        ])
        .await;
    assert!(refused.contains("spec.backup.namespaces[0]"), "{refused}");
    let schedule = cli
        .json(&[
            "schedule",
            "add",
            "shop-nightly",
            "--policy",
            "weeknights",
            "--cluster",
            "source",
            "--location",
            "local",
            "-n",
            "shop",
            "--pre-rule",
            "checkpoint",
            "--reclaim",
            "delete",
            "--backup-label",
            "tier=gold",
        ])
        .await;
    assert_eq!(schedule["next_runs"], policy["next_runs"], "{schedule}");
    assert_eq!(
        schedule["spec"]["backup"]["pre_rules"][0],
        _scene.rule.as_str()
    );
    assert_eq!(schedule["spec"]["backup_labels"]["tier"], "gold");
    let first = policy["next_runs"][0].as_str().unwrap();
    let listed = cli.run(&["schedule", "list"]).await;
    assert!(
        listed.contains("shop-nightly") && listed.contains(first),
        "{listed}"
    );
    let suspended = cli.run(&["schedule", "suspend", "shop-nightly"]).await;
    assert!(suspended.contains("suspended"), "{suspended}");
    let shown = cli.json(&["schedule", "get", "shop-nightly"]).await;
    assert_eq!(shown["spec"]["suspended"], true);
    assert_eq!(shown["next_runs"], serde_json::json!([]));
    let resumed = cli.run(&["schedule", "resume", "shop-nightly"]).await;
    assert!(resumed.contains(first), "{resumed}");
    let removed = cli.run(&["schedule", "remove", "shop-nightly"]).await;
    assert!(removed.contains("removed `shop-nightly`"), "{removed}");
    let listed = cli.json(&["schedule", "list"]).await;
    assert_eq!(listed, serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_adds_azure_and_gcs_locations_and_names_a_refused_key() {
    let data = tempfile::tempdir().unwrap();
    let mut token = None;
    let server = ServerProcess::start(data.path(), &mut token);
    let cli = Cli::new(&server, token.as_deref().unwrap());
    let prefix = format!("cli-{}", uuid::Uuid::new_v4());
    let passphrase = ("STOWAGE_PASSPHRASE", "correct horse battery");

    let azurite = stowage_tests::services::azurite();
    let azure = |name: &'static str| {
        [
            "location",
            "add",
            name,
            "--azure-container",
            &azurite.container,
            "--azure-account",
            &azurite.account,
            "--endpoint",
            &azurite.endpoint,
            "--prefix",
            &prefix,
            "-o",
            "json",
        ]
        .map(str::to_string)
    };
    let args = azure("azure");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let added = cli
        .output_with(
            &args,
            &[
                passphrase,
                ("STOWAGE_AZURE_ACCESS_KEY", azurite.key.as_str()),
            ],
        )
        .await;
    let stdout = String::from_utf8_lossy(&added.stdout);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let record: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        record["spec"]["location"]["kind"]["type"], "azure",
        "{record}"
    );
    assert_eq!(
        record["spec"]["location"]["kind"]["auth"]["access_key"], "<redacted>",
        "{record}"
    );
    let args = azure("azure-wrong-key");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let refused = cli
        .output_with(
            &args,
            &[passphrase, ("STOWAGE_AZURE_ACCESS_KEY", "d3Jvbmcga2V5")],
        )
        .await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    let args = azure("azure-no-key");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let unkeyed = cli.output_with(&args, &[passphrase]).await;
    assert!(!unkeyed.status.success());
    assert!(
        String::from_utf8_lossy(&unkeyed.stderr).contains("STOWAGE_AZURE_ACCESS_KEY"),
        "{unkeyed:?}"
    );

    let (proxy, location) = stowage_tests::services::gcs().location(&prefix).await;
    let stowage_storage::LocationKind::Gcs {
        bucket,
        service_account_key,
        endpoint,
    } = &location.kind
    else {
        panic!("a GCS location");
    };
    let key_file = data.path().join("gcs-key.json");
    std::fs::write(&key_file, service_account_key.expose()).unwrap();
    let added = cli
        .output_with(
            &[
                "location",
                "add",
                "gcs",
                "--gcs-bucket",
                bucket,
                "--endpoint",
                endpoint.as_deref().unwrap(),
                "--service-account-key-file",
                &key_file.to_string_lossy(),
                "--prefix",
                &prefix,
                "-o",
                "json",
            ],
            &[passphrase],
        )
        .await;
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let record: Value = serde_json::from_slice(&added.stdout).unwrap();
    assert_eq!(
        record["spec"]["location"]["kind"]["type"], "gcs",
        "{record}"
    );
    let listed = cli.run(&["location", "list"]).await;
    assert!(
        listed.contains("azure") && listed.contains("gcs") && !listed.contains("azure-wrong-key"),
        "{listed}"
    );
    drop(proxy);
}

async fn kill_at_every_step(
    server: &mut ServerProcess,
    cli: &mut Cli,
    token: &mut Option<String>,
    run: &str,
) -> Vec<String> {
    let stream = format!("wf/{run}");
    let mut killed: Vec<String> = Vec::new();
    let mut after = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    'follow: loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "run {run} did not finish; killed at {killed:?}"
        );
        let response = reqwest::Client::new()
            .get(format!("{}/v1/events?follow=true&after={after}", cli.url))
            .bearer_auth(&cli.token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        let mut events = Box::pin(eventsource_stream::Eventsource::eventsource(
            response.bytes_stream(),
        ));
        while let Some(event) = events.next().await {
            let Ok(event) = event else { break };
            let Ok(event) = serde_json::from_str::<Value>(&event.data) else {
                continue;
            };
            after = event["global_seq"].as_u64().unwrap_or(after);
            if event["stream"] != stream.as_str() {
                continue;
            }
            match event["kind"].as_str() {
                Some("workflow.finished") => return killed,
                Some("workflow.step_started") => {
                    let step = event["payload"]["step"].as_str().unwrap().to_string();
                    if killed.contains(&step) {
                        continue;
                    }
                    server.kill();
                    killed.push(step);
                    *server = ServerProcess::start(&server.data_dir.clone(), token);
                    cli.url = server.url.clone();
                    continue 'follow;
                }
                _ => {}
            }
        }
        // The stream ended without the run finishing: read again from where it stopped.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_at_every_step_finishes_the_backup_and_the_restore() {
    let data = tempfile::tempdir().unwrap();
    let mut token = None;
    let mut server = ServerProcess::start(data.path(), &mut token);
    let mut cli = Cli::new(&server, token.as_deref().unwrap());
    let scene = scene("crash", &cli).await;
    let cluster = cli.run(&["cluster", "get", "source", "-o", "json"]).await;
    let cluster: Value = serde_json::from_str(&cluster).unwrap();
    let location = cli.json(&["location", "get", "local"]).await;

    let backup = cli
        .call(
            reqwest::Method::POST,
            "/v1/backups",
            Some(json!({"name": "crashy", "spec": {
                "cluster": cluster["id"], "location": location["id"],
                "namespaces": ["shop"], "pre_rules": [scene.rule], "post_rules": [scene.rule]
            }})),
        )
        .await;
    let run = backup["run"].as_str().unwrap().to_string();
    let killed = kill_at_every_step(&mut server, &mut cli, &mut token, &run).await;
    let record = cli
        .call(
            reqwest::Method::GET,
            &format!("/v1/backups/{}", backup["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        record["status"], "completed",
        "{record}; killed at {killed:?}"
    );
    assert_eq!(record["restorable"], true);
    assert_eq!(
        killed,
        [
            "validate",
            "pre_rules",
            "collect",
            "snapshot",
            "post_rules",
            "upload",
            "finalize",
            "remove_temporaries"
        ],
        "each step, cleanup included, started once with the server killed"
    );
    println!("backup: the server was killed as these steps started: {killed:?}");
    no_temporaries(&scene.client, "shop").await;

    delete_namespace(&scene.client).await;
    let restore = cli
        .call(
            reqwest::Method::POST,
            "/v1/restores",
            Some(json!({"name": "crashy", "spec": {
                "backup": backup["id"], "cluster": cluster["id"]
            }})),
        )
        .await;
    let run = restore["run"].as_str().unwrap().to_string();
    let killed = kill_at_every_step(&mut server, &mut cli, &mut token, &run).await;
    let record = cli
        .call(
            reqwest::Method::GET,
            &format!("/v1/restores/{}", restore["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        record["status"], "completed",
        "{record}; killed at {killed:?}"
    );
    assert_eq!(record["progress"]["failed"], 0, "{record}");
    assert_eq!(
        killed,
        [
            "validate",
            "objects",
            "volumes",
            "workloads",
            "remove_temporaries"
        ]
    );
    println!("restore: the server was killed as these steps started: {killed:?}");
    data_came_back(&scene).await;
    no_temporaries(&scene.client, "shop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_grants_namespaces_shows_them_and_revokes_them() {
    let data = tempfile::tempdir().unwrap();
    let mut token = None;
    let server = ServerProcess::start(data.path(), &mut token);
    let cli = Cli::new(&server, token.as_deref().unwrap());
    cli.run(&["cluster", "add", "shared", "--in-cluster"]).await;

    cli.run(&[
        "cluster",
        "grant",
        "shared",
        "--group",
        "data-team",
        "--namespaces",
        "team-*,shared",
    ])
    .await;
    cli.run(&[
        "cluster",
        "grant",
        "shared",
        "--user",
        "carol",
        "--namespaces",
        "reports",
    ])
    .await;
    let shown = cli.run(&["cluster", "get", "shared"]).await;
    assert!(
        shown.contains("grant: group data-team: team-*, shared")
            && shown.contains("grant: user carol: reports"),
        "{shown}"
    );
    let record = cli.json(&["cluster", "get", "shared"]).await;
    assert_eq!(
        record["spec"]["grants"],
        json!([
            {"to": {"group": "data-team"}, "namespaces": ["team-*", "shared"]},
            {"to": {"user": "carol"}, "namespaces": ["reports"]},
        ]),
        "{record}"
    );
    assert_eq!(
        record["spec"]["in_cluster"], true,
        "the rest of the spec stays"
    );

    let refused = cli
        .run_failing(&[
            "cluster",
            "grant",
            "shared",
            "--group",
            "data-team",
            "--namespaces",
            "Team_A",
        ])
        .await;
    assert!(
        refused.contains("spec.grants[0].namespaces[2]"),
        "{refused}"
    );
    let refused = cli
        .run_failing(&["cluster", "grant", "shared", "--namespaces", "a"])
        .await;
    assert!(
        refused.contains("--user") || refused.contains("--group"),
        "{refused}"
    );

    cli.run(&[
        "cluster",
        "revoke",
        "shared",
        "--group",
        "data-team",
        "--namespaces",
        "shared",
    ])
    .await;
    cli.run(&["cluster", "revoke", "shared", "--user", "carol"])
        .await;
    let refused = cli
        .run_failing(&["cluster", "revoke", "shared", "--user", "carol"])
        .await;
    assert!(refused.contains("grants user `carol` none"), "{refused}");
    let record = cli.json(&["cluster", "get", "shared"]).await;
    assert_eq!(
        record["spec"]["grants"],
        json!([{"to": {"group": "data-team"}, "namespaces": ["team-*"]}]),
        "{record}"
    );
}
