//! `stowage server` over real HTTP: it opens its database and answers its health endpoints.

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
