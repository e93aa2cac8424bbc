//! The `stowage` binary as a user runs it: a real server process, then `login`, `whoami`,
//! `events` (table, JSON, YAML, follow), `admin inspect|rebuild`, `completion`, `workflow list`
//! (by type and status), and the errors that tell the user what to do next.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use stowage_engine::{ExpectedSeq, NewEvent, Store};

const STOWAGE: &str = env!("CARGO_BIN_EXE_stowage");

/// A `stowage server` process, ended (SIGTERM, then waited for) when dropped.
struct Server {
    child: Child,
    url: String,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

fn stop(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    // SIGTERM lets the server close its database cleanly.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

/// Starts the server on an ephemeral port; reads its address and bootstrap token from stderr.
fn start_server(data_dir: &Path) -> Server {
    let mut child = Command::new(STOWAGE)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("STOWAGE_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut url = None;
    let mut token = None;
    for line in stderr.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("stowage server listening on ") {
            url = Some(rest.trim().to_string());
        } else if line.trim().starts_with("stowage-bootstrap-") {
            token = Some(line.trim().to_string());
            break;
        }
    }
    // Keep reading what the server logs later (e.g. a cluster that cannot be reached), so that
    // its writes never meet a closed pipe.
    std::thread::spawn(move || stderr.for_each(drop));
    Server {
        child,
        url: url.expect("the server printed its address"),
        token: token.expect("a first start prints the bootstrap token"),
    }
}

fn stowage(config: &Path, args: &[&str]) -> Output {
    stowage_with_env(config, args, &[])
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "stowage failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    assert!(!output.status.success(), "stowage should have failed");
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// History from before the server starts: two commands by two users.
fn record_history(data: &Path) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Store::open(data).unwrap();
        for (stream, actor) in [("cluster/prod", "alice"), ("location/s3", "bob")] {
            let event = NewEvent {
                kind: "test.registered".into(),
                payload_version: 1,
                payload: vec![7],
            };
            store
                .append(stream, ExpectedSeq::Any, vec![event], actor)
                .await
                .unwrap();
        }
    });
}

#[test]
fn a_user_logs_in_reads_the_audit_stream_and_an_admin_inspects_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let config = dir.path().join("cli").join("config.toml");
    record_history(&data);
    let mut server = start_server(&data);

    let refused = stderr(&stowage(&config, &["events", "--server", &server.url]));
    assert!(refused.contains("no bearer token"), "{refused}");
    assert!(refused.contains("stowage login"), "{refused}");

    let wrong = stderr(&stowage(
        &config,
        &["login", "--server", &server.url, "--token", "made-up"],
    ));
    assert!(wrong.contains("unknown token"), "{wrong}");
    assert!(!config.exists(), "a refused login stores nothing");

    let login = stdout(&stowage(
        &config,
        &["login", "--server", &server.url, "--token", &server.token],
    ));
    assert!(
        login.contains("as stowage:bootstrap-admin (admin)"),
        "{login}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the config file holds a token");
    }

    let who: serde_json::Value =
        serde_json::from_str(&stdout(&stowage(&config, &["whoami", "-o", "json"]))).unwrap();
    assert_eq!(who["role"], "admin");

    let table = stdout(&stowage(&config, &["events"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].contains("SEQ") && lines[0].contains("ACTOR"),
        "{table}"
    );
    assert!(
        lines[1].contains("alice") && lines[1].contains("cluster/prod"),
        "{table}"
    );
    assert!(
        lines[2].contains("bob") && lines[2].contains("test.registered"),
        "{table}"
    );

    let page: serde_json::Value = serde_json::from_str(&stdout(&stowage(
        &config,
        &["events", "--after", "1", "-o", "json"],
    )))
    .unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(page["events"][0]["actor"], "bob");
    let yaml = stdout(&stowage(&config, &["events", "-o", "yaml"]));
    assert!(yaml.contains("actor: alice"), "{yaml}");

    // --follow prints the history, then waits for more: read two lines and stop it.
    let mut follow = Command::new(STOWAGE)
        .args(["events", "--follow", "-o", "json"])
        .env("STOWAGE_CONFIG", &config)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let second: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        (first["global_seq"].as_u64(), second["global_seq"].as_u64()),
        (Some(1), Some(2))
    );
    follow.kill().unwrap();
    follow.wait().unwrap();

    // The running server holds the database: rebuild says so.
    let locked = stderr(&stowage(
        &config,
        &["admin", "rebuild", "--data-dir", data_arg],
    ));
    assert!(locked.contains("still running"), "{locked}");

    stop(&mut server.child);
    let report: serde_json::Value = serde_json::from_str(&stdout(&stowage(
        &config,
        &["admin", "inspect", "-o", "json", "--data-dir", data_arg],
    )))
    .unwrap();
    assert_eq!(report["events"], 2);
    assert_eq!(report["streams"], 2);
    assert_eq!(report["problems"], serde_json::json!([]));
    let rebuilt = stdout(&stowage(
        &config,
        &["admin", "rebuild", "--data-dir", data_arg],
    ));
    assert!(rebuilt.contains("replayed 2 events"), "{rebuilt}");

    let unreachable = stderr(&stowage(
        &config,
        &["whoami", "--server", "http://127.0.0.1:9"],
    ));
    assert!(
        unreachable.contains("cannot reach the Stowage server at http://127.0.0.1:9"),
        "{unreachable}"
    );
    assert!(unreachable.contains("stowage server"), "{unreachable}");
    let nothing = stderr(&stowage(
        &config,
        &[
            "admin",
            "rebuild",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
    ));
    assert!(nothing.contains("holds no Stowage database"), "{nothing}");
}

#[test]
fn completion_scripts_are_printed_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    for (shell, marker) in [
        ("bash", "_stowage()"),
        ("zsh", "#compdef stowage"),
        ("fish", "complete -c stowage"),
    ] {
        let script = stdout(&stowage(&config, &["completion", shell]));
        assert!(script.contains(marker), "{shell}");
        assert!(script.contains("events"), "{shell} completes subcommands");
    }
}

/// Runs `stowage ARGS` with its own configuration file, no server, token or passphrase from the
/// caller's environment, and `env` added.
fn stowage_with_env(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(STOWAGE)
        .args(args)
        .env("STOWAGE_CONFIG", config)
        .env_remove("STOWAGE_SERVER")
        .env_remove("STOWAGE_TOKEN")
        .env_remove("STOWAGE_PASSPHRASE")
        .envs(env.iter().copied())
        .env("STOWAGE_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn clusters_locations_and_credentials_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cli").join("config.toml");
    let server = start_server(&dir.path().join("data"));
    stdout(&stowage(
        &config,
        &["login", "--server", &server.url, "--token", &server.token],
    ));

    // A cluster whose API server is down: registered, its status says so.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: down\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n- name: admin\n  user: {token: cli-token-marker}\ncontexts:\n- name: down\n  context: {cluster: down, user: admin}\ncurrent-context: down\n",
    )
    .unwrap();
    let added = stdout(&stowage(
        &config,
        &[
            "cluster",
            "add",
            "down",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
    ));
    assert!(added.contains("unreachable"), "{added}");
    assert!(!added.contains("cli-token-marker"), "{added}");
    let shown: serde_json::Value = serde_json::from_str(&stdout(&stowage(
        &config,
        &["cluster", "get", "down", "-o", "json"],
    )))
    .unwrap();
    assert_eq!(
        (&shown["spec"]["kubeconfig"], &shown["status"]["reachable"]),
        (&serde_json::json!("<redacted>"), &serde_json::json!(false))
    );
    let wrong = stderr(&stowage(
        &config,
        &[
            "cluster",
            "add",
            "bad",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--context",
            "nope",
        ],
    ));
    assert!(wrong.contains("spec.context"), "{wrong}");

    // A local location, the passphrase from the environment; then from a file.
    let folder = dir.path().join("backups");
    std::fs::create_dir_all(&folder).unwrap();
    let missing = stderr(&stowage_with_env(
        &config,
        &[
            "location",
            "add",
            "local",
            "--local",
            folder.to_str().unwrap(),
        ],
        &[],
    ));
    assert!(missing.contains("--passphrase-file"), "{missing}");
    stdout(&stowage_with_env(
        &config,
        &[
            "location",
            "add",
            "local",
            "--local",
            folder.to_str().unwrap(),
        ],
        &[("STOWAGE_PASSPHRASE", "cli-passphrase-marker")],
    ));
    let passphrase = dir.path().join("passphrase");
    std::fs::write(&passphrase, "another-passphrase-marker\n").unwrap();
    let absent = stderr(&stowage(
        &config,
        &[
            "location",
            "add",
            "gone",
            "--local",
            "/nonexistent/stowage",
            "--passphrase-file",
            passphrase.to_str().unwrap(),
        ],
    ));
    assert!(absent.contains("spec.location.root"), "{absent}");
    let listed = stdout(&stowage(&config, &["location", "list", "-o", "yaml"]));
    assert!(listed.contains("name: local"), "{listed}");

    // A credential, shown redacted; removed by name.
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "cli-secret-marker").unwrap();
    stdout(&stowage(
        &config,
        &[
            "credential",
            "add",
            "keys",
            "--type",
            "s3",
            "--access-key-id",
            "AK",
            "--secret-file",
            secret.to_str().unwrap(),
        ],
    ));
    let table = stdout(&stowage(&config, &["credential", "list"]));
    assert!(
        table.contains("keys") && table.contains("<redacted>"),
        "{table}"
    );
    stdout(&stowage(&config, &["credential", "remove", "keys"]));
    let gone = stderr(&stowage(&config, &["credential", "get", "keys"]));
    assert!(gone.contains("stowage credential list"), "{gone}");

    // The application view of a cluster that is down names the problem.
    let down = stderr(&stowage(&config, &["resources", "--cluster", "down"]));
    assert!(down.contains("down"), "{down}");

    let events = stdout(&stowage(
        &config,
        &["events", "-o", "json", "--limit", "1000"],
    ));
    for marker in [
        "cli-token-marker",
        "cli-passphrase-marker",
        "another-passphrase-marker",
        "cli-secret-marker",
    ] {
        assert!(!events.contains(marker), "{marker} in the audit stream");
        assert!(!listed.contains(marker) && !table.contains(marker));
    }
}

#[test]
fn a_backup_is_shared_and_unshared_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cli").join("config.toml");
    let server = start_server(&dir.path().join("data"));
    stdout(&stowage(
        &config,
        &["login", "--server", &server.url, "--token", &server.token],
    ));
    // A backup of a cluster that is down: its record exists while its run tries.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: down\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n- name: admin\n  user: {token: t}\ncontexts:\n- name: down\n  context: {cluster: down, user: admin}\ncurrent-context: down\n",
    )
    .unwrap();
    let kubeconfig = kubeconfig.to_str().unwrap();
    stdout(&stowage(
        &config,
        &["cluster", "add", "down", "--kubeconfig", kubeconfig],
    ));
    let folder = dir.path().join("backups");
    std::fs::create_dir_all(&folder).unwrap();
    stdout(&stowage_with_env(
        &config,
        &[
            "location",
            "add",
            "local",
            "--local",
            folder.to_str().unwrap(),
        ],
        &[("STOWAGE_PASSPHRASE", "cli-passphrase")],
    ));
    stdout(&stowage(
        &config,
        &[
            "backup",
            "create",
            "nightly",
            "--cluster",
            "down",
            "--location",
            "local",
            "-n",
            "shop",
        ],
    ));

    let shared = stdout(&stowage(
        &config,
        &[
            "backup",
            "share",
            "nightly",
            "--group",
            "data-team",
            "--level",
            "view",
        ],
    ));
    assert!(shared.contains("group data-team: view"), "{shared}");
    let shared = stdout(&stowage(
        &config,
        &[
            "backup", "share", "nightly", "--user", "carol", "--level", "restore",
        ],
    ));
    assert!(
        shared.contains("group data-team: view") && shared.contains("user carol: restore"),
        "{shared}"
    );
    let unshared = stdout(&stowage(
        &config,
        &["backup", "unshare", "nightly", "--group", "data-team"],
    ));
    assert!(
        unshared.contains("user carol: restore") && !unshared.contains("data-team"),
        "{unshared}"
    );
    let described: serde_json::Value = serde_json::from_str(&stdout(&stowage(
        &config,
        &["backup", "describe", "nightly", "-o", "json"],
    )))
    .unwrap();
    let record = described.get("backup").unwrap_or(&described);
    assert_eq!(record["shares_version"], 3, "{described}");
    let neither = stderr(&stowage(
        &config,
        &["backup", "share", "nightly", "--level", "view"],
    ));
    assert!(
        neither.contains("--user") || neither.contains("--group"),
        "{neither}"
    );
}

#[test]
fn a_listing_shows_every_page_and_filters_by_label() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cli").join("config.toml");
    let server = start_server(&dir.path().join("data"));
    stdout(&stowage(
        &config,
        &["login", "--server", &server.url, "--token", &server.token],
    ));

    // More rules than one page holds (1,000), every third labelled team=db.
    const RULES: usize = 1003;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use futures::StreamExt;
        let http = reqwest::Client::new();
        let creates = futures::stream::iter(0..RULES).map(|n| {
            let http = http.clone();
            let (url, token) = (format!("{}/v1/rules", server.url), server.token.clone());
            async move {
                let team = if n.is_multiple_of(3) { "db" } else { "web" };
                let body = serde_json::json!({
                    "name": format!("rule-{n:04}"),
                    "labels": {"team": team},
                    "spec": {
                        "pod_selector": {"matchLabels": {"app": "db"}},
                        "actions": [{"command": ["true"]}]
                    }
                });
                let response = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201, "rule-{n:04}");
            }
        });
        creates.buffer_unordered(16).collect::<Vec<()>>().await;
    });

    let names = |output: &Output| -> Vec<String> {
        let listed: Vec<serde_json::Value> = serde_json::from_str(&stdout(output)).unwrap();
        listed
            .iter()
            .map(|rule| rule["name"].as_str().unwrap().to_string())
            .collect()
    };
    let all = names(&stowage(&config, &["rule", "list", "-o", "json"]));
    assert_eq!(all.len(), RULES, "every page is read");
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), RULES, "no rule twice");
    let db = names(&stowage(
        &config,
        &["rule", "list", "-l", "team=db", "-o", "json"],
    ));
    assert_eq!(db.len(), RULES.div_ceil(3));
    assert!(db.iter().all(|name| {
        let n: usize = name.trim_start_matches("rule-").parse().unwrap();
        n.is_multiple_of(3)
    }));
    let none = names(&stowage(
        &config,
        &[
            "rule", "list", "-l", "team=db", "-l", "tier=x", "-o", "json",
        ],
    ));
    assert!(none.is_empty(), "{none:?}");
    let err = stderr(&stowage(&config, &["rule", "list", "-l", "team"]));
    assert!(err.contains("--label takes key=value, not `team`"), "{err}");

    // A rule past the first page is found by name; removing it says so in JSON.
    let last = format!("rule-{:04}", RULES - 1);
    let got: serde_json::Value = serde_json::from_str(&stdout(&stowage(
        &config,
        &["rule", "get", &last, "-o", "json"],
    )))
    .unwrap();
    assert_eq!(got["name"], last.as_str());
    let removed: serde_json::Value = serde_json::from_str(&stdout(&stowage(
        &config,
        &["rule", "remove", &last, "-o", "json"],
    )))
    .unwrap();
    assert_eq!(
        removed,
        serde_json::json!({"id": got["id"], "name": last, "removed": true})
    );
    let said = stdout(&stowage(&config, &["rule", "remove", "rule-0000"]));
    assert!(said.starts_with("removed `rule-0000` ("), "{said}");
    let left = names(&stowage(&config, &["rule", "list", "-o", "json"]));
    assert_eq!(left.len(), RULES - 2);
}

#[test]
fn workflow_runs_are_listed_by_type_and_status_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cli").join("config.toml");
    let server = start_server(&dir.path().join("data"));
    stdout(&stowage(
        &config,
        &["login", "--server", &server.url, "--token", &server.token],
    ));
    let passphrase = dir.path().join("passphrase");
    std::fs::write(&passphrase, "runs-passphrase").unwrap();

    // Two locations: one holding a repository (the mover made it), one an empty folder.
    let (stocked, empty) = (dir.path().join("stocked"), dir.path().join("empty"));
    let source = dir.path().join("source");
    for folder in [&stocked, &empty, &source] {
        std::fs::create_dir_all(folder).unwrap();
    }
    std::fs::write(source.join("a.txt"), b"runs").unwrap();
    let location = serde_json::json!({
        "kind": {"type": "local", "root": stocked},
        "prefix": "repo"
    })
    .to_string();
    let moved = Command::new(STOWAGE)
        .args(["mover", "backup", "--location", &location])
        .args(["--passphrase", "runs-passphrase", "--backup", "b1"])
        .args(["--volume", "data", "--init", "--path"])
        .arg(&source)
        .output()
        .unwrap();
    assert!(moved.status.success(), "{moved:?}");
    for (name, folder) in [("stocked", &stocked), ("empty", &empty)] {
        stdout(&stowage(
            &config,
            &[
                "location",
                "add",
                name,
                "--local",
                folder.to_str().unwrap(),
                "--prefix",
                "repo",
                "--passphrase-file",
                passphrase.to_str().unwrap(),
            ],
        ));
    }
    let synced = stdout(&stowage(
        &config,
        &["location", "sync", "stocked", "--wait"],
    ));
    assert!(synced.contains("finished backup(s)"), "{synced}");
    let refused = stderr(&stowage(&config, &["location", "sync", "empty", "--wait"]));
    assert!(refused.contains("ended failed"), "{refused}");

    // The table: both syncs, oldest first, the failed one with its error.
    let table = stdout(&stowage(&config, &["workflow", "list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    for column in [
        "ID", "TYPE", "STATUS", "STEP", "STARTED", "FINISHED", "ERROR",
    ] {
        assert!(lines[0].contains(column), "{table}");
    }
    assert!(
        lines[1].contains("catalog_sync") && lines[1].contains("completed"),
        "{table}"
    );
    assert!(
        lines[2].contains("catalog_sync")
            && lines[2].contains("failed")
            && lines[2].contains("step `scan`"),
        "{table}"
    );

    // JSON and YAML, filtered by status and type.
    let listed = |filters: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec!["workflow", "list", "-o", "json"];
        args.extend_from_slice(filters);
        serde_json::from_str(&stdout(&stowage(&config, &args))).unwrap()
    };
    let failed = listed(&["--status", "failed"]);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["type"], "catalog_sync");
    assert_eq!(failed[0]["step"], serde_json::Value::Null);
    assert!(failed[0]["finished_at"].is_string(), "{failed:?}");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("step `scan`: "),
        "{failed:?}"
    );
    let completed = listed(&["--type", "catalog_sync", "--status", "completed"]);
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(completed[0]["error"], serde_json::Value::Null);
    assert_ne!(completed[0]["id"], failed[0]["id"]);
    assert!(listed(&["--type", "backup"]).is_empty());
    assert_eq!(listed(&[]).len(), 2);
    let yaml = stdout(&stowage(
        &config,
        &["workflow", "list", "--status", "completed", "-o", "yaml"],
    ));
    assert!(
        yaml.contains("type: catalog_sync") && yaml.contains("status: completed"),
        "{yaml}"
    );
    assert!(!yaml.contains("status: failed"), "{yaml}");

    // A wrong filter is named by the server.
    let wrong = stderr(&stowage(&config, &["workflow", "list", "--status", "done"]));
    assert!(
        wrong.contains("`status` is one of running, completed, failed, cancelled, not `done`"),
        "{wrong}"
    );
    let wrong = stderr(&stowage(&config, &["workflow", "list", "--type", "sync"]));
    assert!(wrong.contains("`type` is one of backup,"), "{wrong}");
}
