//! `stowage server` over HTTPS: a certificate signed by a private CA (made here with rcgen) is
//! served; clients that trust the CA (reqwest, the CLI with `--ca-file`) get answers, clients
//! that do not are told what to do, plain HTTP gets nothing, and unusable certificate or key
//! files are named when the server starts.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

use crate::backup::end_to_end::stowage_binary;

/// A CA, and a server certificate it signed for 127.0.0.1, written as PEM files.
struct Certificates {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    other_key: PathBuf,
    _folder: tempfile::TempDir,
}

fn certificates() -> Certificates {
    let folder = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.clone().self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, &ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let write = |name: &str, text: String| {
        let path = folder.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Certificates {
        ca: write("ca.pem", ca.pem()),
        cert: write("server.pem", cert.pem()),
        key: write("server-key.pem", key.serialize_pem()),
        other_key: write(
            "other-key.pem",
            KeyPair::generate().unwrap().serialize_pem(),
        ),
        _folder: folder,
    }
}

/// Serves on a loopback port with `tls` until the returned sender is dropped or fires.
async fn serve(
    data: &Path,
    tls: stowage::tls::TlsFiles,
) -> (
    std::net::SocketAddr,
    String,
    tokio::sync::oneshot::Sender<()>,
) {
    let mut config = stowage::ServerConfig::new(data.join("db"), "127.0.0.1:0".parse().unwrap());
    config.tls = Some(tls);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(stowage::serve(
        config,
        move |started: &stowage::Started| {
            assert_eq!(started.scheme, "https");
            let _ = ready_tx.send((started.addr, started.new_bootstrap_token.clone().unwrap()));
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    let (addr, token) = ready_rx.await.unwrap();
    (addr, token, stop_tx)
}

async fn cli(args: &[&str]) -> (bool, String, String) {
    let home = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(stowage_binary())
        .args(args)
        .env("HOME", home.path())
        .env_remove("STOWAGE_CA_FILE")
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_https_to_clients_that_trust_its_ca() {
    let certs = certificates();
    let data = tempfile::tempdir().unwrap();
    let (addr, token, _stop) = serve(
        data.path(),
        stowage::tls::TlsFiles {
            cert: certs.cert.clone(),
            key: certs.key.clone(),
        },
    )
    .await;
    let url = format!("https://{addr}");

    let ca = reqwest::Certificate::from_pem(&std::fs::read(&certs.ca).unwrap()).unwrap();
    let trusting = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let health: serde_json::Value = trusting
        .get(format!("{url}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let who: serde_json::Value = trusting
        .get(format!("{url}/v1/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who["role"], "admin", "{who}");

    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::get(format!("http://{addr}/healthz")).await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");

    // The CLI with the CA file; without it, an error that names the way out.
    let ca_file = certs.ca.to_string_lossy().to_string();
    let (ok, stdout, stderr) = cli(&[
        "whoami",
        "--server",
        &url,
        "--token",
        &token,
        "--ca-file",
        &ca_file,
    ])
    .await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("stowage:bootstrap-admin"), "{stdout}");
    let (ok, _, stderr) = cli(&["whoami", "--server", &url, "--token", &token]).await;
    assert!(!ok);
    assert!(
        stderr.contains("--ca-file") && stderr.contains("does not trust"),
        "{stderr}"
    );
    let (ok, _, stderr) = cli(&[
        "whoami",
        "--server",
        &url,
        "--token",
        &token,
        "--ca-file",
        &certs.key.to_string_lossy(),
    ])
    .await;
    assert!(!ok);
    assert!(stderr.contains("CA file"), "{stderr}");
}

#[tokio::test]
async fn unusable_certificate_and_key_files_are_named() {
    let certs = certificates();
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("missing.pem");
    for (cert, key, expected) in [
        (&missing, &certs.key, "TLS certificate"),
        (&certs.key, &certs.key, "holds no"),
        (&certs.cert, &missing, "TLS key"),
        (&certs.cert, &certs.cert, "TLS key"),
        (&certs.cert, &certs.other_key, "with key"),
    ] {
        let mut config =
            stowage::ServerConfig::new(data.path().join("db"), "127.0.0.1:0".parse().unwrap());
        config.tls = Some(stowage::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
        let err = stowage::serve(config, |_| {}, async {})
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{cert:?} {key:?}: {err}");
        let named = if expected == "TLS key" { key } else { cert };
        assert!(err.contains(&*named.to_string_lossy()), "{err}");
    }
}
