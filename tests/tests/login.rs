//! `stowage login` against the test OIDC provider and a real server: a service account through
//! the client-credentials grant, a person through the device flow (the provider's test route
//! signs in and approves the code as a browser would), stored tokens renewed when they expire
//! (from the secret file, the environment, or the refresh token), an expired token that cannot
//! be renewed refused with the command that logs in again, and each wrong way to log in refused
//! with its reason.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use stowage::auth::OidcConfig;
use stowage::cli::config::{ClientConfig, LoginGrant};
use stowage_tests::services::{self, OidcService};

use crate::backup::end_to_end::stowage_binary;

/// A server on a loopback port, stopped when dropped.
struct Server {
    url: String,
    bootstrap_token: String,
    _stop: tokio::sync::oneshot::Sender<()>,
    _data: tempfile::TempDir,
}

/// Serves with `oidc` trusted (and none of its clock leeway, so a token is refused the second
/// it expires); `platform` and `data-team` are operators, `backup-admins` admins.
async fn serve(oidc: Option<&OidcService>) -> Server {
    let data = tempfile::tempdir().unwrap();
    let mut config =
        stowage::ServerConfig::new(data.path().join("db"), "127.0.0.1:0".parse().unwrap());
    config.oidc = oidc.map(|oidc| {
        let mut config = OidcConfig::new(&oidc.issuer, &oidc.audience);
        config.leeway = Duration::ZERO;
        config.device_client_id = Some(oidc.device_client_id.clone());
        config
    });
    config.roles = stowage::auth::RoleMapping {
        admin_groups: vec!["backup-admins".into()],
        operator_groups: vec!["platform".into(), "data-team".into()],
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(stowage::serve(
        config,
        move |started: &stowage::Started| {
            let _ = ready_tx.send((started.addr, started.new_bootstrap_token.clone().unwrap()));
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    let (addr, bootstrap_token) = ready_rx.await.unwrap();
    Server {
        url: format!("http://{addr}"),
        bootstrap_token,
        _stop: stop_tx,
        _data: data,
    }
}

/// A user's machine: a home of its own, where `stowage login` keeps its configuration.
struct Machine {
    home: tempfile::TempDir,
}

impl Machine {
    fn new() -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn config_path(&self) -> PathBuf {
        self.home.path().join("stowage.toml")
    }

    fn config(&self) -> ClientConfig {
        ClientConfig::load(&self.config_path()).unwrap()
    }

    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(stowage_binary());
        command
            .args(args)
            .env("HOME", self.home.path())
            .env("STOWAGE_CONFIG", self.config_path())
            .env("STOWAGE_LOG", "warn")
            .env_remove("STOWAGE_SERVER")
            .env_remove("STOWAGE_TOKEN")
            .env_remove("STOWAGE_CA_FILE")
            .env_remove("STOWAGE_CLIENT_SECRET")
            .envs(env.iter().copied());
        command
    }

    /// Runs `stowage args...` with `stdin` as its input.
    async fn run(&self, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
        use tokio::io::AsyncWriteExt;
        let mut child = self
            .command(args, env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        child.wait_with_output().await.unwrap()
    }

    /// Runs `stowage args...`; its stdout, failing the test with its stderr if it fails.
    async fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let output = self.run(args, env, "").await;
        assert!(
            output.status.success(),
            "stowage {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// [`Machine::ok`] with `stdin` as the command's input.
    async fn ok_with_stdin(&self, args: &[&str], stdin: &str) -> String {
        let output = self.run(args, &[], stdin).await;
        assert!(
            output.status.success(),
            "stowage {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs `stowage args...` expecting it to fail; its stderr.
    async fn fails(&self, args: &[&str], env: &[(&str, &str)], stdin: &str) -> String {
        let output = self.run(args, env, stdin).await;
        assert!(
            !output.status.success(),
            "stowage {args:?} succeeded: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8(output.stderr).unwrap()
    }

    /// `stowage whoami -o json` with the stored login: (subject, groups, role).
    async fn whoami(&self, env: &[(&str, &str)]) -> (String, Vec<String>, String) {
        let text = self.ok(&["whoami", "-o", "json"], env).await;
        let who: serde_json::Value = serde_json::from_str(&text).unwrap();
        (
            who["subject"].as_str().unwrap().to_string(),
            serde_json::from_value(who["groups"].clone()).unwrap(),
            who["role"].as_str().unwrap().to_string(),
        )
    }
}

fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_logs_in_with_client_credentials_and_its_token_is_renewed() {
    let oidc = services::oidc();
    let server = serve(Some(&oidc)).await;
    let machine = Machine::new();
    let secrets = tempfile::tempdir().unwrap();
    let bob_secret = secret_file(secrets.path(), "bob", &oidc.user("bob").client_secret);
    let bob_secret_text = bob_secret.to_string_lossy().to_string();

    let said = machine
        .ok(
            &[
                "login",
                "--server",
                &server.url,
                "--client-id",
                "bob",
                "--client-secret-file",
                &bob_secret_text,
            ],
            &[],
        )
        .await;
    assert!(
        said.contains(&format!(
            "logged in to {} as bob (operator) until ",
            server.url
        )),
        "{said}"
    );
    let stored = machine.config();
    let login = stored.oidc.clone().unwrap();
    assert_eq!(login.grant, LoginGrant::ClientCredentials);
    assert_eq!(login.issuer, oidc.issuer);
    assert_eq!(login.audience, oidc.audience);
    assert_eq!(
        login.client_secret_file.as_deref(),
        Some(bob_secret.as_path())
    );
    let expires_in = stored.token_expires_at.unwrap() - now();
    assert!((500..=600).contains(&expires_in), "{expires_in}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(machine.config_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the stored token is private");
    }
    assert_eq!(
        machine.whoami(&[]).await,
        ("bob".into(), vec!["platform".into()], "operator".into())
    );

    // A wrong secret is the issuer's refusal, named; the stored login is kept.
    let wrong = secret_file(secrets.path(), "wrong", "not-bobs-secret");
    let err = machine
        .fails(
            &[
                "login",
                "--server",
                &server.url,
                "--client-id",
                "bob",
                "--client-secret-file",
                &wrong.to_string_lossy(),
            ],
            &[],
            "",
        )
        .await;
    assert!(err.contains(&oidc.issuer), "{err}");
    assert!(err.contains("invalid_client"), "{err}");
    assert_eq!(machine.config(), stored);

    // erin's tokens live one second: each command renews the stored one from the secret file.
    let erin = oidc.user("erin-short-lived");
    let erin_secret = secret_file(secrets.path(), "erin", &erin.client_secret);
    machine
        .ok(
            &[
                "login",
                "--server",
                &server.url,
                "--client-id",
                "erin-short-lived",
                "--client-secret-file",
                &erin_secret.to_string_lossy(),
            ],
            &[],
        )
        .await;
    let first = machine.config().token.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(machine.whoami(&[]).await.0, "erin-short-lived");
    let renewed = machine.config();
    assert_ne!(renewed.token.as_deref(), Some(first.as_str()), "renewed");
    assert!(renewed.token_expires_at.unwrap() >= now());

    // A secret given on stdin is not kept: once the token expires, the command that logs in
    // again is named, unless the secret is in the environment.
    let said = machine
        .ok_with_stdin(
            &[
                "login",
                "--server",
                &server.url,
                "--client-id",
                "erin-short-lived",
                "--client-secret-file",
                "-",
            ],
            &erin.client_secret,
        )
        .await;
    assert!(said.contains("as erin-short-lived (operator)"), "{said}");
    assert_eq!(machine.config().oidc.unwrap().client_secret_file, None);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let err = machine.fails(&["whoami"], &[], "").await;
    assert!(err.contains("expired at"), "{err}");
    assert!(
        err.contains(&format!(
            "log in again: stowage login --server {} --client-id erin-short-lived --client-secret-file FILE",
            server.url
        )),
        "{err}"
    );
    let from_env = [("STOWAGE_CLIENT_SECRET", erin.client_secret.as_str())];
    assert_eq!(machine.whoami(&from_env).await.0, "erin-short-lived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_logs_in_through_the_device_flow_and_the_refresh_token_renews_it() {
    let oidc = services::oidc();
    let server = serve(Some(&oidc)).await;
    let machine = Machine::new();

    let mut login = machine
        .command(&["login", "--server", &server.url, "--device"], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = login.stderr.take().unwrap();
    let (shown_tx, shown_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let mut shown = Vec::new();
        let mut shown_tx = Some(shown_tx);
        while let Ok(Some(line)) = lines.next_line().await {
            shown.push(line.clone());
            if let Some((_, code)) = line.split_once("enter the code: ")
                && let Some(tx) = shown_tx.take()
            {
                let _ = tx.send((code.trim().to_string(), shown.clone()));
            }
        }
    });
    let (user_code, shown) = tokio::time::timeout(Duration::from_secs(30), shown_rx)
        .await
        .expect("the login shows a code")
        .expect("the login shows a code before it ends");
    assert!(
        shown[0].contains(&format!("open {}/device", oidc.issuer)),
        "{shown:?}"
    );
    // Nothing is stored while the person has not signed in.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!machine.config_path().exists());
    oidc.approve_device(&user_code, "carol").await.unwrap();
    let output = tokio::time::timeout(Duration::from_secs(30), login.wait_with_output())
        .await
        .expect("the login ends once the code is approved")
        .unwrap();
    let said = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains(&format!("logged in to {} as carol (operator)", server.url)),
        "{said}"
    );
    let stored = machine.config();
    let device_login = stored.oidc.clone().unwrap();
    assert_eq!(device_login.grant, LoginGrant::Device);
    assert_eq!(device_login.client_id, oidc.device_client_id);
    assert!(device_login.refresh_token.is_some());
    assert_eq!(
        machine.whoami(&[]).await,
        ("carol".into(), vec!["data-team".into()], "operator".into())
    );

    // Once the access token has expired, the refresh token gets a new one.
    let mut expired = stored.clone();
    expired.token_expires_at = Some(now() - 60);
    expired.save(&machine.config_path()).unwrap();
    assert_eq!(machine.whoami(&[]).await.0, "carol");
    let renewed = machine.config();
    assert_ne!(renewed.token, stored.token, "a new access token");
    assert!(renewed.token_expires_at.unwrap() > now());

    // A refresh token the issuer does not know cannot renew it: the device login is named.
    let mut revoked = renewed.clone();
    revoked.token_expires_at = Some(now() - 60);
    revoked.oidc.as_mut().unwrap().refresh_token = Some("not-a-refresh-token".into());
    revoked.save(&machine.config_path()).unwrap();
    let err = machine.fails(&["whoami"], &[], "").await;
    assert!(err.contains("could not be renewed"), "{err}");
    assert!(err.contains("invalid_grant"), "{err}");
    assert!(
        err.contains(&format!(
            "log in again: stowage login --server {} --device",
            server.url
        )),
        "{err}"
    );

    // An issuer that cannot be reached cannot renew it either, and the error says the same.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unreachable = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut offline = renewed.clone();
    offline.token_expires_at = Some(now() - 60);
    offline.oidc.as_mut().unwrap().issuer = unreachable.clone();
    offline.save(&machine.config_path()).unwrap();
    let err = machine.fails(&["whoami"], &[], "").await;
    assert!(err.contains("could not be renewed"), "{err}");
    assert!(err.contains(&unreachable), "{err}");
    assert!(
        err.contains(&format!(
            "log in again: stowage login --server {} --device",
            server.url
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_server_finds_expired_is_named_with_how_to_log_in_again() {
    let oidc = services::oidc();
    let server = serve(Some(&oidc)).await;
    let machine = Machine::new();
    let token = oidc
        .token(oidc.user("erin-short-lived"), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = machine
        .fails(
            &["whoami", "--server", &server.url, "--token", &token],
            &[],
            "",
        )
        .await;
    assert!(err.contains("the token has expired"), "{err}");
    assert!(
        err.contains(&format!(
            "log in again with `stowage login --server {}",
            server.url
        )),
        "{err}"
    );

    // Stored by `login --token`, its expiry is read from it: the CLI names it before sending.
    let fresh = oidc.token(oidc.user("dave"), None).await.unwrap();
    let said = machine
        .ok(&["login", "--server", &server.url, "--token", &fresh], &[])
        .await;
    assert!(said.contains("as dave (viewer) until "), "{said}");
    let mut stored = machine.config();
    assert!(stored.token_expires_at.unwrap() > now());
    assert_eq!(stored.oidc, None);
    stored.token_expires_at = Some(now() - 1);
    stored.save(&machine.config_path()).unwrap();
    let err = machine.fails(&["whoami"], &[], "").await;
    assert!(err.contains("expired at "), "{err}");
    assert!(
        err.contains(&format!(
            "stowage login --server {} --token TOKEN",
            server.url
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_wrong_way_to_log_in_is_refused_with_what_to_do() {
    let oidc = services::oidc();
    let with_oidc = serve(Some(&oidc)).await;
    let without_oidc = serve(None).await;
    let machine = Machine::new();

    let options: serde_json::Value = reqwest::get(format!("{}/v1/login-options", with_oidc.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        options,
        serde_json::json!({"oidc": {
            "issuer": oidc.issuer,
            "audience": oidc.audience,
            "device_client_id": oidc.device_client_id,
        }})
    );
    let options: serde_json::Value = reqwest::get(format!("{}/v1/login-options", without_oidc.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(options, serde_json::json!({ "oidc": null }));

    let err = machine
        .fails(&["login", "--server", &with_oidc.url], &[], "")
        .await;
    assert!(err.contains("say how to log in: --device"), "{err}");
    let err = machine
        .fails(
            &["login", "--server", &without_oidc.url, "--device"],
            &[],
            "",
        )
        .await;
    assert!(err.contains("accepts no OIDC tokens"), "{err}");
    assert!(err.contains("--token"), "{err}");
    let err = machine
        .fails(
            &["login", "--server", &with_oidc.url, "--client-id", "bob"],
            &[],
            "",
        )
        .await;
    assert!(err.contains("STOWAGE_CLIENT_SECRET"), "{err}");
    let err = machine
        .fails(
            &[
                "login",
                "--server",
                &with_oidc.url,
                "--client-id",
                "bob",
                "--client-secret-file",
                "/nonexistent/secret",
            ],
            &[],
            "",
        )
        .await;
    assert!(err.contains("/nonexistent/secret"), "{err}");
    let err = machine
        .fails(
            &[
                "login",
                "--server",
                &with_oidc.url,
                "--device",
                "--issuer",
                "http://127.0.0.1:9",
                "--audience",
                &oidc.audience,
            ],
            &[],
            "",
        )
        .await;
    assert!(
        err.contains("cannot discover the OIDC issuer http://127.0.0.1:9"),
        "{err}"
    );
    let err = machine
        .fails(
            &["login", "--server", &with_oidc.url, "--token", "-"],
            &[],
            "\n",
        )
        .await;
    assert!(err.contains("the token is empty"), "{err}");
    assert!(
        !machine.config_path().exists(),
        "nothing stored by a failed login"
    );

    // The bootstrap token logs in to either; it does not expire.
    let said = machine
        .ok_with_stdin(
            &["login", "--server", &without_oidc.url, "--token", "-"],
            &without_oidc.bootstrap_token,
        )
        .await;
    assert!(said.contains("(admin); saved in"), "{said}");
    assert_eq!(machine.config().token_expires_at, None);
    assert_eq!(machine.whoami(&[]).await.2, "admin");
}
