//! `stowage server` over real HTTP: it opens its database and answers its health endpoints; the
//! first start prints the bootstrap token once and keeps it and the master key private.

#[tokio::test]
async fn server_answers_healthz_over_http() {
    let data = tempfile::tempdir().unwrap();
    let config = stowage::ServerConfig::new(data.path().join("db"), "127.0.0.1:0".parse().unwrap());
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(stowage::serve(
        config,
        move |started: &stowage::Started| {
            let _ = addr_tx.send(started.addr);
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    let addr = addr_rx.await.unwrap();
    let body: serde_json::Value = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database_format"], stowage_engine::FORMAT_VERSION);
    assert!(
        data.path().join("db").join("CURRENT").exists(),
        "RocksDB files are on disk"
    );
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// Starts `stowage server` on `data_dir`, waits until it answers `/healthz`, stops it, and
/// returns everything it wrote on stderr.
async fn one_start(data_dir: &std::path::Path) -> String {
    let mut child = std::process::Command::new(crate::backup::end_to_end::stowage_binary())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("STOWAGE_LOG", "warn")
        .env_remove("STOWAGE_MASTER_KEY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut text = String::new();
        let mut lines = std::io::BufReader::new(stderr);
        let mut line = String::new();
        while lines.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(url) = line.trim().strip_prefix("stowage server listening on ") {
                let _ = line_tx.send(url.to_string());
            }
            text.push_str(&line);
            line.clear();
        }
        text
    });
    let url = tokio::task::spawn_blocking(move || {
        line_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the server says where it listens")
    })
    .await
    .unwrap();
    let health = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert!(health.status().is_success());
    // The start's messages are printed before it serves: all of them are in the pipe now.
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap()
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_prints_the_bootstrap_token_once_and_keeps_its_secrets_private() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    let first = one_start(data.path()).await;
    let token_file = data.path().join("bootstrap-token");
    let key_file = data.path().join("master-key");
    let token = std::fs::read_to_string(&token_file).unwrap();
    let token = token.trim();
    assert!(token.starts_with("stowage-bootstrap-"), "{token}");
    assert!(
        first.contains("bootstrap admin token (shown this once"),
        "{first}"
    );
    assert_eq!(first.matches(token).count(), 1, "printed once: {first}");
    assert!(
        first.contains(&format!(
            "a master key was generated in {}",
            key_file.display()
        )),
        "{first}"
    );
    for file in [&token_file, &key_file] {
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert!(
        !first.contains(key.trim()),
        "the master key is never printed"
    );

    // The next start finds both and prints neither.
    let second = one_start(data.path()).await;
    assert!(second.contains("stowage server listening on"), "{second}");
    assert!(!second.contains(token), "{second}");
    assert!(!second.contains("bootstrap admin token"), "{second}");
    assert!(!second.contains("master key was generated"), "{second}");
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        key,
        "the key is kept"
    );

    // A key file others may read stops the start, naming the file.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = tokio::process::Command::new(crate::backup::end_to_end::stowage_binary())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("STOWAGE_LOG", "warn")
        .env_remove("STOWAGE_MASTER_KEY")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains(&key_file.display().to_string()), "{said}");
}
