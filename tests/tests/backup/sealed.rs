//! Secrets at rest, end to end: a marker planted in a cluster's kubeconfig, in a credential's
//! secret key and in a location's passphrase goes through a real `stowage server` process, a
//! backup and a restart, and is then looked for in every byte of the server's data folder
//! (RocksDB's tables, logs and manifests), in every key and value of the database read back
//! through RocksDB (its tables may be compressed), and in the whole audit stream: it is nowhere. A value
//! stored in clear beside it is found, so the scan can see what is stored. Then the master key is
//! checked at start: a wrong key or a lost key file stops the server with a message saying so.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use super::end_to_end::{MOVER_IMAGE, claim_folder, connect, deploy_app, start, stowage_binary};
use super::served::{Cli, ServerProcess};
use stowage_tests::services;

/// Every file under `folder` that holds `needle`, with its path.
fn files_holding(folder: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut scanned = 0;
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            scanned += 1;
            if bytes.windows(needle.len()).any(|window| window == needle) {
                found.push(path.display().to_string());
            }
        }
    }
    assert!(scanned > 5, "the data folder holds only {scanned} files");
    found
}

/// Every key and value RocksDB holds in `folder` (every column family, decompressed) that
/// contains `needle`, as `family/key`: the file scan above cannot see into compressed tables.
fn stored_entries_holding(folder: &Path, needle: &[u8]) -> Vec<String> {
    let options = rocksdb::Options::default();
    let families = rocksdb::DB::list_cf(&options, folder).unwrap();
    let db = rocksdb::DB::open_cf_for_read_only(&options, folder, &families, false).unwrap();
    let holds = |bytes: &[u8]| bytes.windows(needle.len()).any(|window| window == needle);
    let mut found = Vec::new();
    let mut entries = 0;
    for family in &families {
        let handle = db.cf_handle(family).unwrap();
        for item in db.iterator_cf(handle, rocksdb::IteratorMode::Start) {
            let (key, value) = item.unwrap();
            entries += 1;
            if holds(&key) || holds(&value) {
                found.push(format!("{family}/{}", String::from_utf8_lossy(&key)));
            }
        }
    }
    assert!(entries > 100, "the database holds only {entries} entries");
    found
}

/// The kubeconfig at `path` with a second user whose token is `marker`: still a working
/// kubeconfig (its current context is unchanged), now holding the marker.
fn kubeconfig_with_marker(path: &Path, marker: &str) -> String {
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let users = config["users"].as_sequence_mut().unwrap();
    users.push(
        serde_yaml::from_str(&format!("{{name: planted, user: {{token: {marker}}}}}")).unwrap(),
    );
    serde_yaml::to_string(&config).unwrap()
}

/// Runs `stowage server` on `data_dir` with `env` until it exits; returns its stderr.
fn failed_start(data_dir: &Path, env: &[(&str, &str)]) -> String {
    let output = Command::new(stowage_binary())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("STOWAGE_LOG", "error")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!output.status.success(), "the server started");
    String::from_utf8(output.stderr).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_are_sealed_in_the_database_and_never_shown() {
    let marker = format!("planted-secret-{}", uuid::Uuid::new_v4().simple());
    let in_clear = format!("stored-in-clear-{}", uuid::Uuid::new_v4().simple());
    let data = tempfile::tempdir().unwrap();
    let mut token = None;
    let mut server = ServerProcess::start(data.path(), &mut token);
    let token = token.unwrap();
    let cli = Cli::new(&server, &token);

    let cluster = start("sealed").await;
    let client = connect(&cluster).await;
    deploy_app(&client.client).await;
    let folder = claim_folder(&cluster, &client, "shop", "data").await;
    std::fs::write(folder.join("table.dat"), vec![3u8; 100_000]).unwrap();

    let work = tempfile::tempdir().unwrap();
    let kubeconfig = work.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        kubeconfig_with_marker(cluster.sim.kubeconfig_path(), &marker),
    )
    .unwrap();
    cli.run(&[
        "cluster",
        "add",
        "source",
        "--kubeconfig",
        &kubeconfig.to_string_lossy(),
    ])
    .await;

    // moto takes any secret key, so the marker can be a working one.
    let s3 = services::moto();
    let credential = cli
        .call(
            reqwest::Method::POST,
            "/v1/credentials",
            Some(json!({"name": "s3", "spec": {"type": "s3", "access_key_id": s3.access_key_id, "secret_access_key": marker}})),
        )
        .await;
    let prefix = format!("sealed-{}", uuid::Uuid::new_v4().simple());
    cli.call(
        reqwest::Method::POST,
        "/v1/locations",
        Some(json!({
            "name": "s3",
            "labels": {"canary": in_clear},
            "spec": {
                "location": {"kind": {"type": "s3", "bucket": s3.bucket, "region": "us-east-1", "endpoint": s3.endpoint, "path_style": true}, "prefix": prefix},
                "passphrase": format!("passphrase {marker}"),
                "credential": credential["id"],
            },
        })),
    )
    .await;

    let backup = [
        "backup",
        "create",
        "first",
        "--cluster",
        "source",
        "--location",
        "s3",
        "-n",
        "shop",
        "--wait",
    ];
    assert!(cli.run(&backup).await.contains("completed"));

    // Restarted on the same folder, the server opens its sealed secrets with the key it made.
    server.kill();
    server = ServerProcess::start(data.path(), &mut Some(token.clone()));
    let cli = Cli::new(&server, &token);
    let mut second = backup;
    second[2] = "second";
    assert!(cli.run(&second).await.contains("completed"));

    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = cli
            .call(
                reqwest::Method::GET,
                &format!("/v1/events?after={after}&limit=1000"),
                None,
            )
            .await;
        let batch = page["events"].as_array().unwrap().clone();
        if batch.is_empty() {
            break;
        }
        after = page["next_after"].as_u64().unwrap();
        events.extend(batch);
    }
    let audit = Value::Array(events).to_string();
    assert!(
        audit.contains("\"passphrase\":\"<redacted>\""),
        "the audit stream shows the location's events"
    );
    assert!(!audit.contains(&marker), "the audit stream shows a secret");
    for kind in ["clusters", "locations", "credentials"] {
        let listed = cli
            .call(reqwest::Method::GET, &format!("/v1/{kind}"), None)
            .await;
        assert!(!listed.to_string().contains(&marker), "{kind}: {listed}");
    }

    server.kill();
    assert_eq!(
        files_holding(data.path(), marker.as_bytes()),
        Vec::<String>::new(),
        "the marker is in a file of the data folder"
    );
    assert_eq!(
        stored_entries_holding(data.path(), marker.as_bytes()),
        Vec::<String>::new(),
        "the marker is stored in clear"
    );
    assert!(
        !stored_entries_holding(data.path(), in_clear.as_bytes()).is_empty(),
        "a label stored in clear is not found: the scan cannot see stored values"
    );

    // A wrong key, or a lost key file, stops the server and says why.
    let (_, other_key) = stowage_workflows::sealing::MasterKey::generate().unwrap();
    let refused = failed_start(data.path(), &[("STOWAGE_MASTER_KEY", &other_key)]);
    assert!(
        refused.contains("the stored secrets are sealed with master key"),
        "{refused}"
    );
    std::fs::rename(
        data.path().join("master-key"),
        work.path().join("master-key"),
    )
    .unwrap();
    let refused = failed_start(data.path(), &[]);
    assert!(
        refused.contains("master key file") && refused.contains("is missing"),
        "{refused}"
    );
    // The file's key, given in the environment instead, opens them.
    let key = std::fs::read_to_string(work.path().join("master-key")).unwrap();
    let mut given = Command::new(stowage_binary())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(["--mover-image", &format!("{MOVER_IMAGE}:test")])
        .env("STOWAGE_MASTER_KEY", key.trim())
        .env("STOWAGE_LOG", "error")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(given.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    let _ = given.kill();
    let _ = given.wait();
    assert!(line.starts_with("stowage server listening on "), "{line}");
}
