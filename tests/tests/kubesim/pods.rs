//! Pods as local processes: `pods/exec` over WebSocket with kubectl and kube-rs, the mapping
//! of a pod's volume mounts to host folders, local-image pods (phases, exit codes, logs) and
//! that no process outlives its pod or kubesim.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::Client;
use kube::api::{Api, AttachParams, DeleteParams, LogParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use stowage_tests::kubesim::LocalImage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::controllers::{apply, json_of};
use super::kube_rs::client;
use super::kubectl::{kubectl, kubectl_with_input, ok};
use super::{TestCluster, start_cluster, start_cluster_with};

/// A PersistentVolume `pv` bound to claim `claim` in `default`, and its host folder.
async fn bound_claim(cluster: &TestCluster, client: &Client, claim: &str, pv: &str) -> PathBuf {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let volume: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": pv},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "csi": {"driver": stowage_tests::kubesim::CSI_DRIVER, "volumeHandle": pv},
            "claimRef": {"namespace": "default", "name": claim},
        },
    }))
    .unwrap();
    volumes
        .create(&PostParams::default(), &volume)
        .await
        .unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": claim},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "volumeName": pv,
        },
    }))
    .unwrap();
    claims.create(&PostParams::default(), &pvc).await.unwrap();
    let folder = cluster.sim.cluster().volume_folders().volume(pv);
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

/// A pod with one container `app` mounting claim `claim` at `/data`.
fn pod(name: &str, image: &str, command: &[&str], claim: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "app",
                "image": image,
                "command": command,
                "env": [
                    {"name": "GREETING", "value": "hello"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "OUT", "value": "/data/$(POD_NAME).out"},
                ],
                "volumeMounts": [
                    {"name": "data", "mountPath": "/data"},
                    {"name": "scratch", "mountPath": "/scratch"},
                ],
            }],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": claim}},
                {"name": "scratch", "emptyDir": {}},
            ],
        },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_runs_in_the_pod_volumes_and_propagates_exit_codes() {
    let cluster = start_cluster("kubectl-exec").await;
    let client = client(&cluster).await;
    let folder = bound_claim(&cluster, &client, "data", "pv-exec").await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(
        &PostParams::default(),
        &pod("app", "nginx:1.27", &["nginx"], "data"),
    )
    .await
    .unwrap();

    let output = kubectl(
        &cluster,
        &[
            "exec",
            "app",
            "--",
            "sh",
            "-c",
            "echo $GREETING; echo oops >&2; echo hi > /data/x; echo $POD_NAME > $OUT; ls /data",
        ],
    )
    .await;
    assert!(output.success, "stderr: {}", output.stderr);
    assert_eq!(output.stdout, "hello\napp.out\nx\n");
    assert!(output.stderr.contains("oops"), "stderr: {}", output.stderr);
    assert_eq!(std::fs::read_to_string(folder.join("x")).unwrap(), "hi\n");
    assert_eq!(
        std::fs::read_to_string(folder.join("app.out")).unwrap(),
        "app\n"
    );

    let failed = kubectl(&cluster, &["exec", "app", "--", "sh", "-c", "exit 3"]).await;
    assert_eq!(failed.code, Some(3), "stderr: {}", failed.stderr);
    assert!(
        failed
            .stderr
            .contains("command terminated with exit code 3"),
        "stderr: {}",
        failed.stderr
    );

    let piped = kubectl_with_input(
        &cluster,
        &[
            "exec",
            "-i",
            "app",
            "--",
            "sh",
            "-c",
            "cat > /scratch/in; wc -c < /scratch/in",
        ],
        Some("four\n"),
    )
    .await;
    assert!(piped.success, "stderr: {}", piped.stderr);
    assert_eq!(piped.stdout.trim(), "5");

    let missing = kubectl(&cluster, &["exec", "nothere", "--", "true"]).await;
    assert!(!missing.success);
    assert!(
        missing.stderr.contains("pods \"nothere\" not found"),
        "stderr: {}",
        missing.stderr
    );
    let wrong_container = kubectl(&cluster, &["exec", "app", "-c", "nope", "--", "true"]).await;
    assert!(!wrong_container.success);
    assert!(
        wrong_container
            .stderr
            .contains("container nope is not valid for pod app"),
        "stderr: {}",
        wrong_container.stderr
    );
}

#[tokio::test]
async fn kube_rs_exec_captures_output_pipes_stdin_and_reports_the_status() {
    let cluster = start_cluster("kube-exec").await;
    let client = client(&cluster).await;
    let folder = bound_claim(&cluster, &client, "data", "pv-kube-exec").await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(
        &PostParams::default(),
        &pod("app", "busybox:1.36", &["sleep", "3600"], "data"),
    )
    .await
    .unwrap();

    let mut process = pods
        .exec(
            "app",
            [
                "sh",
                "-c",
                "cat > /data/piped; echo saved; echo warn >&2; exit 5",
            ],
            &AttachParams::default().stdin(true).stderr(true),
        )
        .await
        .unwrap();
    let mut stdin = process.stdin().unwrap();
    let mut stdout = process.stdout().unwrap();
    let mut stderr = process.stderr().unwrap();
    let status = process.take_status().unwrap();
    stdin.write_all(b"from kube-rs\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    let (read_out, read_err) = tokio::join!(
        stdout.read_to_string(&mut out),
        stderr.read_to_string(&mut err)
    );
    read_out.unwrap();
    read_err.unwrap();
    let status = status.await.expect("a status on channel 3");
    process.join().await.unwrap();
    assert_eq!(out, "saved\n");
    assert_eq!(err, "warn\n");
    assert_eq!(
        std::fs::read_to_string(folder.join("piped")).unwrap(),
        "from kube-rs\n"
    );
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let causes = status.details.unwrap().causes.unwrap();
    assert_eq!(
        (causes[0].reason.as_deref(), causes[0].message.as_deref()),
        (Some("ExitCode"), Some("5"))
    );

    let mut process = pods
        .exec("app", ["echo", "ok"], &AttachParams::default())
        .await
        .unwrap();
    let mut out = String::new();
    process
        .stdout()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    let status = process.take_status().unwrap().await.unwrap();
    assert_eq!(out, "ok\n");
    assert_eq!(status.status.as_deref(), Some("Success"));
}

/// A cluster where `stowage/mover*` images run `/bin/sh`.
async fn mover_cluster(name: &str) -> TestCluster {
    start_cluster_with(name, |options| {
        options.local_images = vec![LocalImage {
            prefix: "stowage/mover".into(),
            binary: PathBuf::from("/bin/sh"),
        }];
    })
    .await
}

/// The phases pod `name` goes through until it reaches `last`.
async fn phases_until(pods: &Api<Pod>, name: &str, last: &str) -> Vec<String> {
    phases_seen(watch_pod(pods, name).await, name, last).await
}

type PodEvents = futures::stream::BoxStream<'static, kube::Result<WatchEvent<Pod>>>;

/// A watch on pod `name`, from now on.
async fn watch_pod(pods: &Api<Pod>, name: &str) -> PodEvents {
    let params = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(30);
    pods.watch(&params, "0").await.unwrap().boxed()
}

/// The phases `events` show until pod `name` reaches `last`.
async fn phases_seen(mut events: PodEvents, name: &str, last: &str) -> Vec<String> {
    let mut phases: Vec<String> = Vec::new();
    while let Some(event) = events.try_next().await.unwrap() {
        let pod = match event {
            WatchEvent::Added(pod) | WatchEvent::Modified(pod) => pod,
            other => panic!("unexpected event {other:?}"),
        };
        let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
        if phases.last() != Some(&phase) {
            phases.push(phase.clone());
        }
        if phase == last {
            return phases;
        }
    }
    panic!("pod {name} never reached {last}; phases {phases:?}");
}

fn terminated(pod: &Pod) -> (i32, String) {
    let state = pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    (state.exit_code, state.reason.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_image_pods_run_their_command_and_finish_with_its_exit_code() {
    let cluster = mover_cluster("local-pods").await;
    let client = client(&cluster).await;
    let folder = bound_claim(&cluster, &client, "data", "pv-mover").await;
    let pods: Api<Pod> = Api::namespaced(client, "default");

    let events = watch_pod(&pods, "mover-ok").await;
    pods.create(
        &PostParams::default(),
        &pod(
            "mover-ok",
            "stowage/mover:test",
            &[
                "stowage",
                "-c",
                "echo moving $GREETING; echo done > /data/moved",
            ],
            "data",
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        phases_seen(events, "mover-ok", "Succeeded").await,
        ["Pending", "Running", "Succeeded"]
    );
    assert_eq!(
        std::fs::read_to_string(folder.join("moved")).unwrap(),
        "done\n"
    );
    assert_eq!(
        terminated(&pods.get("mover-ok").await.unwrap()),
        (0, "Completed".to_string())
    );

    pods.create(
        &PostParams::default(),
        &pod(
            "mover-fail",
            "stowage/mover:test",
            &[
                "stowage",
                "-c",
                "echo line one >&2; echo broken >&2; exit 3",
            ],
            "data",
        ),
    )
    .await
    .unwrap();
    phases_until(&pods, "mover-fail", "Failed").await;
    assert_eq!(
        terminated(&pods.get("mover-fail").await.unwrap()),
        (3, "Error".to_string())
    );

    // A completed pod takes no exec, with the API server's answer.
    let refused = pods
        .exec("mover-ok", ["true"], &AttachParams::default())
        .await
        .err()
        .expect("exec into a completed pod is refused");
    assert!(
        refused.to_string().contains(
            "cannot exec into a container in a completed pod; current phase is Succeeded"
        ),
        "{refused}"
    );

    // Logs through kubectl and kube-rs.
    assert_eq!(ok(&cluster, &["logs", "mover-ok"]).await, "moving hello\n");
    assert_eq!(
        ok(&cluster, &["logs", "mover-fail", "--tail=1"]).await,
        "broken\n"
    );
    let logs = pods
        .logs("mover-fail", &LogParams::default())
        .await
        .unwrap();
    assert_eq!(logs, "line one\nbroken\n");
    let missing = kubectl(&cluster, &["logs", "mover-ok", "-c", "nope"]).await;
    assert!(
        missing
            .stderr
            .contains("container nope is not valid for pod mover-ok"),
        "stderr: {}",
        missing.stderr
    );

    // A followed log ends when the container does.
    pods.create(
        &PostParams::default(),
        &pod(
            "mover-slow",
            "stowage/mover:test",
            &["stowage", "-c", "echo first; sleep 1; echo second"],
            "data",
        ),
    )
    .await
    .unwrap();
    phases_until(&pods, "mover-slow", "Running").await;
    let followed = ok(&cluster, &["logs", "-f", "mover-slow"]).await;
    assert_eq!(followed, "first\nsecond\n");
    let stream = pods
        .log_stream(
            "mover-slow",
            &LogParams {
                follow: true,
                ..LogParams::default()
            },
        )
        .await
        .unwrap();
    let mut lines = Vec::new();
    let mut reader = futures::io::AsyncBufReadExt::lines(stream);
    while let Some(line) = reader.next().await {
        lines.push(line.unwrap());
    }
    assert_eq!(lines, ["first", "second"]);
}

fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie (state Z) is dead, only not yet reaped by its new parent.
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits until `path` holds a pid and returns it.
async fn pid_in(path: &Path) -> u32 {
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never held a pid", path.display());
}

async fn until_dead(pid: u32) {
    for _ in 0..200 {
        if !process_alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("process {pid} outlived its pod");
}

/// Execs a shell in pod `app` that runs `sleep` in the background; answers the session and
/// the pid of the sleep, once it runs.
async fn exec_sleeper(pods: &Api<Pod>) -> (kube::api::AttachedProcess, u32) {
    let mut session = pods
        .exec(
            "app",
            ["sh", "-c", "sleep 300 & echo $!; wait"],
            &AttachParams::default(),
        )
        .await
        .unwrap();
    let mut stdout = session.stdout().unwrap();
    let mut line = Vec::new();
    while !line.ends_with(b"\n") {
        let mut byte = [0u8; 1];
        assert_eq!(stdout.read(&mut byte).await.unwrap(), 1, "the pid line");
        line.push(byte[0]);
    }
    let pid: u32 = String::from_utf8(line).unwrap().trim().parse().unwrap();
    assert!(process_alive(pid));
    (session, pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_processes_and_exec_sessions_die_with_their_client_pod_and_kubesim() {
    let cluster = mover_cluster("local-kill").await;
    let client = client(&cluster).await;
    let folder = bound_claim(&cluster, &client, "data", "pv-kill").await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    // The sleep runs in the background of the shell: killing only the shell would orphan it.
    let sleeper = |name: &str| {
        pod(
            name,
            "stowage/mover:test",
            &[
                "stowage",
                "-c",
                "sleep 300 & echo $! > /data/$(POD_NAME).pid; wait",
            ],
            "data",
        )
    };
    pods.create(&PostParams::default(), &sleeper("doomed"))
        .await
        .unwrap();
    let pid = pid_in(&folder.join("doomed.pid")).await;
    assert!(process_alive(pid));
    pods.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    until_dead(pid).await;

    // An exec session's command dies when its client goes away...
    pods.create(
        &PostParams::default(),
        &pod("app", "busybox:1.36", &["sleep", "3600"], "data"),
    )
    .await
    .unwrap();
    let (session, pid) = exec_sleeper(&pods).await;
    session.abort();
    until_dead(pid).await;

    // ...and with its pod, and the client gets its status.
    let (mut session, pid) = exec_sleeper(&pods).await;
    let status = session.take_status().unwrap();
    pods.delete("app", &DeleteParams::default()).await.unwrap();
    until_dead(pid).await;
    let status = status.await.expect("a status after the kill");
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));

    pods.create(&PostParams::default(), &sleeper("orphan"))
        .await
        .unwrap();
    let pid = pid_in(&folder.join("orphan.pid")).await;
    assert!(process_alive(pid));
    let TestCluster { sim, folder: _kept } = cluster;
    sim.stop().await;
    until_dead(pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mover_job_whose_pod_exits_non_zero_fails() {
    let cluster = mover_cluster("mover-job-fails").await;
    let c = &cluster;
    apply(
        c,
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: mover, namespace: default}\n\
         spec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      \
         containers:\n      - name: mover\n        image: stowage/mover:test\n        \
         command: [stowage, -c, 'echo cannot reach the store >&2; exit 3']\n",
    )
    .await;
    let waited = ok(
        c,
        &[
            "wait",
            "--for=condition=Failed",
            "job/mover",
            "--timeout=30s",
        ],
    )
    .await;
    assert_eq!(waited, "job.batch/mover condition met\n");
    let pods = ok(
        c,
        &[
            "get",
            "pods",
            "-l",
            "job-name=mover",
            "-o",
            "jsonpath={range .items[*]}{.status.phase} \
             {.status.containerStatuses[0].state.terminated.exitCode} \
             {.status.containerStatuses[0].state.terminated.reason}{\"\\n\"}{end}",
        ],
    )
    .await;
    assert_eq!(pods, "Failed 3 Error\n", "one pod, failed with exit code 3");
    let job = json_of(c, &["job", "mover"]).await;
    assert_eq!(job["status"]["failed"], 1);
    assert!(job["status"].get("succeeded").is_none(), "{job}");
    let failed = job["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .unwrap();
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(
        ok(c, &["logs", "job/mover"]).await,
        "cannot reach the store\n"
    );
}
