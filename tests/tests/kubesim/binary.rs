//! The `kubesim` command as a user runs it: started on a state folder, driven with kubectl
//! through the kubeconfig it writes, stopped by SIGTERM, and started again on the same folder
//! with its objects and credentials kept.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use super::kubectl::{Output, kubectl_at};

/// A running `kubesim` process and what it printed when it started.
struct Running {
    child: Child,
    url: String,
    kubeconfig: PathBuf,
    _stdout: Lines<BufReader<ChildStdout>>,
}

/// Starts `kubesim --folder FOLDER` and reads the address and kubeconfig it prints.
async fn start(folder: &Path) -> Running {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .arg("--folder")
        .arg(folder)
        .args(["--name", "cli"])
        .env("KUBESIM_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the kubesim binary starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = None;
    let kubeconfig = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            if let Some(address) = line.strip_prefix("kubesim serving on ") {
                url = Some(address.to_string());
            }
            if let Some(path) = line.strip_prefix("kubeconfig: ") {
                return PathBuf::from(path);
            }
        }
        panic!("kubesim ended without printing its kubeconfig");
    })
    .await
    .expect("kubesim prints its kubeconfig within 30 s");
    let url = url.expect("kubesim prints its address before its kubeconfig");
    Running {
        child,
        url,
        kubeconfig,
        _stdout: stdout,
    }
}

/// Sends SIGTERM to the process by its pid and waits for it to exit successfully.
async fn terminate(mut running: Running) {
    let pid = running.child.id().expect("kubesim is still running");
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), running.child.wait())
        .await
        .expect("kubesim stops within 20 s of SIGTERM")
        .unwrap();
    assert!(
        status.success(),
        "kubesim exits cleanly on SIGTERM: {status}"
    );
}

async fn kubectl(running: &Running, scratch: &Path, args: &[&str], input: Option<&str>) -> Output {
    let output = kubectl_at(&running.kubeconfig, scratch, args, input).await;
    assert!(
        output.success,
        "kubectl {args:?} failed\nstdout: {}\nstderr: {}",
        output.stdout, output.stderr
    );
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubesim_binary_serves_and_keeps_its_state_across_a_sigterm() {
    let scratch = tempfile::tempdir().unwrap();
    let folder = scratch.path().join("state");
    let first = start(&folder).await;
    assert_eq!(first.kubeconfig, folder.join("kubeconfig"));
    assert!(first.url.starts_with("https://127.0.0.1:"), "{}", first.url);
    let written = std::fs::read_to_string(&first.kubeconfig).unwrap();
    assert!(written.contains(&first.url), "{written}");
    let token = std::fs::read_to_string(folder.join("token")).unwrap();

    let namespaces = kubectl(&first, scratch.path(), &["get", "ns"], None)
        .await
        .stdout;
    let mut rows: Vec<Vec<&str>> = namespaces
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(rows.remove(0), ["NAME", "STATUS", "AGE"]);
    let mut names: Vec<(&str, &str)> = rows.iter().map(|row| (row[0], row[1])).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            ("default", "Active"),
            ("kube-node-lease", "Active"),
            ("kube-public", "Active"),
            ("kube-system", "Active"),
        ]
    );
    let config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kept, namespace: default}\n\
                      data: {answer: \"42\"}\n";
    let created = kubectl(
        &first,
        scratch.path(),
        &["create", "-f", "-"],
        Some(config_map),
    )
    .await;
    assert_eq!(created.stdout, "configmap/kept created\n");
    terminate(first).await;

    let second = start(&folder).await;
    assert_eq!(
        std::fs::read_to_string(folder.join("token")).unwrap(),
        token,
        "the token is kept"
    );
    let rewritten = std::fs::read_to_string(&second.kubeconfig).unwrap();
    assert!(rewritten.contains(&second.url), "{rewritten}");
    let answer = kubectl(
        &second,
        scratch.path(),
        &["get", "configmap", "kept", "-o", "jsonpath={.data.answer}"],
        None,
    )
    .await;
    assert_eq!(answer.stdout, "42");
    terminate(second).await;
}
