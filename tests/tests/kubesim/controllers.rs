//! kubesim's simulated workload controllers judged through kubectl and kube-rs: ServiceAccount
//! defaults, Deployment → ReplicaSet → Pods with rollouts, StatefulSets, DaemonSets, and Jobs
//! completing or failing from pod phases written whenever and by whomever.

use futures::TryStreamExt;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, WatchEvent, WatchParams};
use serde_json::{Value, json};
use stowage_tests::kubesim::{Controllers, CronJobRunError};

use super::kube_rs::client;
use super::kubectl::{kubectl, kubectl_with_input, ok};
use super::{TestCluster, eventually, start_cluster, start_cluster_with, volume_folder};

/// `kubectl apply -f -` of a manifest; fails the test unless it succeeds.
pub async fn apply(cluster: &TestCluster, manifest: &str) -> String {
    let output = kubectl_with_input(cluster, &["apply", "-f", "-"], Some(manifest)).await;
    assert!(
        output.success,
        "kubectl apply failed\n{manifest}\nstdout: {}\nstderr: {}",
        output.stdout, output.stderr
    );
    output.stdout
}

/// `kubectl get ARGS -o json`, or `None` when kubectl fails (e.g. not found).
pub async fn try_json(cluster: &TestCluster, args: &[&str]) -> Option<Value> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let output = kubectl(cluster, &all).await;
    output
        .success
        .then(|| serde_json::from_str(&output.stdout).expect("kubectl prints JSON"))
}

/// `kubectl get ARGS -o json`; fails the test when kubectl fails.
pub async fn json_of(cluster: &TestCluster, args: &[&str]) -> Value {
    match try_json(cluster, args).await {
        Some(value) => value,
        None => panic!("kubectl get {args:?} failed"),
    }
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

fn condition<'a>(object: &'a Value, kind: &str) -> &'a Value {
    object["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .unwrap_or(&Value::Null)
}

fn deployment(image: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: default, labels: {{app: web}}}}\n\
         spec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    \
         metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: web, image: \"{image}\"}}]}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_get_their_default_service_account_and_root_ca() {
    let cluster = start_cluster("ctl-accounts").await;
    let c = &cluster;
    apply(
        c,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n",
    )
    .await;
    let account = eventually("the default ServiceAccount", move || {
        try_json(c, &["serviceaccount", "default", "-n", "team"])
    })
    .await;
    let root_ca = eventually("kube-root-ca.crt", move || {
        try_json(c, &["configmap", "kube-root-ca.crt", "-n", "team"])
    })
    .await;
    assert_eq!(root_ca["data"]["ca.crt"], cluster.sim.ca_pem());
    apply(
        c,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: lone, namespace: team}\n\
         spec: {containers: [{name: c, image: busybox}]}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: named, namespace: team}\n\
         spec: {serviceAccountName: mover, containers: [{name: c, image: busybox}]}\n",
    )
    .await;
    let lone = json_of(c, &["pod", "lone", "-n", "team"]).await;
    assert_eq!(lone["spec"]["serviceAccountName"], "default");
    let named = json_of(c, &["pod", "named", "-n", "team"]).await;
    assert_eq!(named["spec"]["serviceAccountName"], "mover");

    let deleted = ok(c, &["delete", "serviceaccount", "default", "-n", "team"]).await;
    assert!(
        deleted.contains("serviceaccount \"default\" deleted"),
        "{deleted}"
    );
    let old_uid = account["metadata"]["uid"].clone();
    eventually("the default ServiceAccount to come back", move || {
        let old_uid = old_uid.clone();
        async move {
            try_json(c, &["serviceaccount", "default", "-n", "team"])
                .await
                .filter(|a| a["metadata"]["uid"] != old_uid)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_rolls_out_through_replica_sets_to_pods() {
    let cluster = start_cluster("ctl-deployment").await;
    let c = &cluster;
    apply(c, &deployment("nginx:1", 2)).await;
    let rolled = ok(c, &["rollout", "status", "deployment/web", "--timeout=20s"]).await;
    assert!(rolled.contains("successfully rolled out"), "{rolled}");
    let waited = ok(
        c,
        &[
            "wait",
            "--for=condition=Available",
            "deployment/web",
            "--timeout=20s",
        ],
    )
    .await;
    assert!(
        waited.contains("deployment.apps/web condition met"),
        "{waited}"
    );

    let web = json_of(c, &["deployment", "web"]).await;
    let status = &web["status"];
    for field in [
        "replicas",
        "readyReplicas",
        "availableReplicas",
        "updatedReplicas",
    ] {
        assert_eq!(status[field], 2, "{field} in {status}");
    }
    assert_eq!(status["observedGeneration"], web["metadata"]["generation"]);
    assert_eq!(condition(&web, "Available")["status"], "True");
    assert_eq!(
        condition(&web, "Progressing")["reason"],
        "NewReplicaSetAvailable"
    );

    let sets = items(&json_of(c, &["replicasets", "-l", "app=web"]).await);
    assert_eq!(sets.len(), 1);
    let first = &sets[0];
    let hash = first["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(name(first), format!("web-{hash}"));
    assert_eq!(
        first["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(
        first["spec"]["selector"]["matchLabels"]["pod-template-hash"],
        hash
    );
    let owner = &first["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            &owner["kind"],
            &owner["name"],
            &owner["controller"],
            &owner["uid"]
        ),
        (
            &json!("Deployment"),
            &json!("web"),
            &json!(true),
            &web["metadata"]["uid"]
        )
    );
    let pods = items(&json_of(c, &["pods", "-l", "app=web"]).await);
    assert_eq!(pods.len(), 2);
    for pod in &pods {
        let suffix = name(pod)
            .strip_prefix(&format!("{}-", name(first)))
            .unwrap_or_else(|| panic!("{} is named after its ReplicaSet", name(pod)));
        assert_eq!(suffix.len(), 5, "{}", name(pod));
        assert_eq!(pod["metadata"]["labels"]["pod-template-hash"], hash);
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        assert_eq!(pod["status"]["phase"], "Running");
    }

    // A template change rolls out a second ReplicaSet and scales the first to zero.
    let configured = apply(c, &deployment("nginx:2", 2)).await;
    assert!(
        configured.contains("deployment.apps/web configured"),
        "{configured}"
    );
    let rolled = ok(c, &["rollout", "status", "deployment/web", "--timeout=20s"]).await;
    assert!(rolled.contains("successfully rolled out"), "{rolled}");
    let sets = items(&json_of(c, &["replicasets", "-l", "app=web"]).await);
    assert_eq!(sets.len(), 2);
    let (old, new): (Vec<_>, Vec<_>) = sets.iter().partition(|rs| name(rs) == name(first));
    assert_eq!(old[0]["spec"]["replicas"], 0);
    assert_eq!(
        new[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    assert_eq!(
        new[0]["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:2"
    );
    let new_name = name(new[0]).to_string();
    let prefix = format!("{new_name}-");
    let prefix = &prefix;
    eventually("only the new ReplicaSet's pods", move || async move {
        let pods = items(&json_of(c, &["pods", "-l", "app=web"]).await);
        (pods.len() == 2 && pods.iter().all(|p| name(p).starts_with(prefix.as_str()))).then_some(())
    })
    .await;

    // Undoing the rollout makes the first ReplicaSet current again, as revision 3.
    let undone = ok(c, &["rollout", "undo", "deployment/web"]).await;
    assert!(undone.contains("rolled back"), "{undone}");
    let first_name = name(first).to_string();
    let first_name = &first_name;
    eventually(
        "the first ReplicaSet to be revision 3 with 2 replicas",
        move || async move {
            try_json(c, &["replicaset", first_name]).await.filter(|rs| {
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
                    && rs["spec"]["replicas"] == 2
            })
        },
    )
    .await;
    let rolled = ok(c, &["rollout", "status", "deployment/web", "--timeout=20s"]).await;
    assert!(rolled.contains("successfully rolled out"), "{rolled}");

    // Scaling through the spec.
    ok(
        c,
        &[
            "patch",
            "deployment",
            "web",
            "-p",
            r#"{"spec":{"replicas":3}}"#,
        ],
    )
    .await;
    let rolled = ok(c, &["rollout", "status", "deployment/web", "--timeout=20s"]).await;
    assert!(rolled.contains("successfully rolled out"), "{rolled}");
    let pods = items(&json_of(c, &["pods", "-l", "app=web"]).await);
    assert_eq!(pods.len(), 3);

    // Deleting the Deployment takes its ReplicaSets and pods along.
    ok(c, &["delete", "deployment", "web"]).await;
    eventually("the ReplicaSets and pods to go", move || async move {
        let left = json_of(c, &["replicasets,pods", "-l", "app=web"]).await;
        items(&left).is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_gets_ordinal_pods_and_a_bound_claim_each() {
    let cluster = start_cluster("ctl-statefulset").await;
    let c = &cluster;
    apply(
        c,
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db, namespace: default}\n\
         spec:\n  replicas: 2\n  serviceName: db\n  selector: {matchLabels: {app: db}}\n  template:\n    \
         metadata: {labels: {app: db}}\n    spec:\n      containers:\n      - {name: db, image: \"postgres:16\", \
         volumeMounts: [{name: data, mountPath: /var/lib/postgresql}]}\n  volumeClaimTemplates:\n  \
         - metadata: {name: data}\n    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n",
    )
    .await;
    let rolled = ok(c, &["rollout", "status", "statefulset/db", "--timeout=20s"]).await;
    // The API server defaults `rollingUpdate.partition` to 0, so kubectl reports a partitioned
    // rollout, as it does against a real cluster.
    assert!(
        rolled.contains("partitioned roll out complete: 2 new pods have been updated"),
        "{rolled}"
    );
    let sts = json_of(c, &["statefulset", "db"]).await;
    assert_eq!(sts["status"]["readyReplicas"], 2);
    assert_eq!(
        sts["status"]["currentRevision"],
        sts["status"]["updateRevision"]
    );
    for ordinal in 0..2 {
        let pod_name = format!("db-{ordinal}");
        let pod = json_of(c, &["pod", &pod_name]).await;
        let labels = &pod["metadata"]["labels"];
        assert_eq!(labels["statefulset.kubernetes.io/pod-name"], pod_name);
        assert_eq!(labels["apps.kubernetes.io/pod-index"], ordinal.to_string());
        assert_eq!(
            labels["controller-revision-hash"],
            sts["status"]["updateRevision"]
        );
        assert_eq!(pod["spec"]["hostname"], pod_name);
        assert_eq!(pod["spec"]["subdomain"], "db");
        let claim_name = format!("data-db-{ordinal}");
        assert_eq!(
            pod["spec"]["volumes"][0],
            json!({"name": "data", "persistentVolumeClaim": {"claimName": claim_name}})
        );
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(
            (&owner["kind"], &owner["name"]),
            (&json!("StatefulSet"), &json!("db"))
        );
        let claim = eventually("the claim to bind", || {
            let claim_name = claim_name.clone();
            async move {
                try_json(c, &["pvc", &claim_name])
                    .await
                    .filter(|claim| claim["status"]["phase"] == "Bound")
            }
        })
        .await;
        assert_eq!(claim["metadata"]["labels"]["app"], "db");
        let volume = claim["spec"]["volumeName"].as_str().unwrap();
        assert!(
            volume_folder(c, volume).is_dir(),
            "the volume's folder exists"
        );
    }

    // Scaling down removes the highest ordinal and keeps its claim.
    ok(
        c,
        &[
            "patch",
            "statefulset",
            "db",
            "-p",
            r#"{"spec":{"replicas":1}}"#,
        ],
    )
    .await;
    eventually("db-1 to go", move || async move {
        try_json(c, &["pod", "db-1"]).await.is_none().then_some(())
    })
    .await;
    assert!(try_json(c, &["pvc", "data-db-1"]).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_runs_one_pod_on_the_node() {
    let cluster = start_cluster("ctl-daemonset").await;
    let c = &cluster;
    apply(
        c,
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent, namespace: kube-system}\n\
         spec:\n  selector: {matchLabels: {app: agent}}\n  template:\n    metadata: {labels: {app: agent}}\n    \
         spec: {containers: [{name: agent, image: \"fluent-bit:3\"}]}\n",
    )
    .await;
    let rolled = ok(
        c,
        &[
            "rollout",
            "status",
            "daemonset/agent",
            "-n",
            "kube-system",
            "--timeout=20s",
        ],
    )
    .await;
    assert!(rolled.contains("successfully rolled out"), "{rolled}");
    let pods = items(&json_of(c, &["pods", "-n", "kube-system", "-l", "app=agent"]).await);
    assert_eq!(pods.len(), 1);
    assert!(name(&pods[0]).starts_with("agent-"));
    assert_eq!(pods[0]["spec"]["nodeName"], "kubesim-node");
    assert!(pods[0]["metadata"]["labels"]["controller-revision-hash"].is_string());
    let ds = json_of(c, &["daemonset", "agent", "-n", "kube-system"]).await;
    assert_eq!(ds["status"]["numberReady"], 1);
    assert_eq!(ds["status"]["desiredNumberScheduled"], 1);
}

const JOB: &str = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: NAME, namespace: default}\n\
    spec:\n  backoffLimit: 1\n  template:\n    spec:\n      restartPolicy: Never\n      \
    containers: [{name: work, image: busybox, command: [sh, -c, 'exit 0']}]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_job_completes_with_the_real_labels_and_conditions() {
    let cluster = start_cluster("ctl-job").await;
    let c = &cluster;
    apply(c, &JOB.replace("NAME", "once")).await;
    let waited = ok(
        c,
        &[
            "wait",
            "--for=condition=Complete",
            "job/once",
            "--timeout=20s",
        ],
    )
    .await;
    assert!(waited.contains("job.batch/once condition met"), "{waited}");
    let job = json_of(c, &["job", "once"]).await;
    let uid = job["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        job["spec"]["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
    );
    assert_eq!(job["status"]["succeeded"], 1);
    assert!(job["status"]["completionTime"].is_string());
    assert!(job["status"]["startTime"].is_string());
    assert_eq!(condition(&job, "SuccessCriteriaMet")["status"], "True");
    assert_eq!(condition(&job, "Complete")["reason"], "CompletionsReached");
    let pods = items(&json_of(c, &["pods", "-l", "job-name=once"]).await);
    assert_eq!(pods.len(), 1);
    let pod = &pods[0];
    assert!(name(pod).starts_with("once-") && name(pod).len() == "once-".len() + 5);
    let labels = &pod["metadata"]["labels"];
    for (key, value) in [
        ("batch.kubernetes.io/job-name", "once"),
        ("job-name", "once"),
        ("batch.kubernetes.io/controller-uid", uid),
        ("controller-uid", uid),
    ] {
        assert_eq!(labels[key], value, "{key}");
    }
    assert_eq!(pod["status"]["phase"], "Succeeded");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        0
    );

    // A CronJob's Job, made as `kubectl create job --from=cronjob/nightly` makes it.
    apply(
        c,
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly, namespace: default}\n\
         spec:\n  schedule: '0 3 * * *'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          \
         restartPolicy: OnFailure\n          containers: [{name: c, image: busybox}]\n",
    )
    .await;
    let cron = json_of(c, &["cronjob", "nightly"]).await;
    let manual = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": "nightly-manual", "namespace": "default",
            "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly",
                "uid": cron["metadata"]["uid"], "controller": true}],
        },
        "spec": cron["spec"]["jobTemplate"]["spec"],
    });
    let created = kubectl_with_input(c, &["create", "-f", "-"], Some(&manual.to_string())).await;
    assert!(created.success, "{}", created.stderr);
    let waited = ok(
        c,
        &[
            "wait",
            "--for=condition=Complete",
            "job/nightly-manual",
            "--timeout=20s",
        ],
    )
    .await;
    assert!(waited.contains("condition met"), "{waited}");
}

const CRON_JOB: &str = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly, namespace: default}\n\
    spec:\n  schedule: '0 3 * * *'\n  jobTemplate:\n    \
    metadata: {labels: {app: backup}, annotations: {team: storage}}\n    spec:\n      template:\n        \
    spec:\n          restartPolicy: OnFailure\n          containers: [{name: c, image: busybox}]\n";

/// The CronJob statuses a watch shows until one has no active Job and a last success.
async fn cron_job_statuses(cron_jobs: &Api<CronJob>, since: &str) -> Vec<Value> {
    let params = WatchParams::default()
        .fields("metadata.name=nightly")
        .timeout(30);
    let mut events = Box::pin(cron_jobs.watch(&params, since).await.unwrap());
    let mut statuses = Vec::new();
    while let Some(event) = events.try_next().await.unwrap() {
        let WatchEvent::Modified(cron_job) = event else {
            continue;
        };
        let status = serde_json::to_value(cron_job.status).unwrap();
        let settled = status.get("active").is_none() && status["lastSuccessfulTime"].is_string();
        statuses.push(status);
        if settled {
            return statuses;
        }
    }
    panic!("the CronJob never settled: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_job_run_on_demand_creates_its_job_as_the_controller_does() {
    let cluster = start_cluster("ctl-cronjob").await;
    let c = &cluster;
    apply(c, CRON_JOB).await;
    let cron = json_of(c, &["cronjob", "nightly"]).await;
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Allow");
    assert_eq!(cron["spec"]["successfulJobsHistoryLimit"], 3);
    assert_eq!(cron["spec"]["failedJobsHistoryLimit"], 1);
    let cron_jobs: Api<CronJob> = Api::namespaced(client(c).await, "default");
    let since = cron["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let watched = {
        let cron_jobs = cron_jobs.clone();
        tokio::spawn(async move { cron_job_statuses(&cron_jobs, &since).await })
    };

    let before = chrono::Utc::now().timestamp() / 60;
    let job = cluster.sim.run_cron_job("default", "nightly").unwrap();
    let name = job["metadata"]["name"].as_str().unwrap().to_string();
    let minutes: i64 = name.strip_prefix("nightly-").unwrap().parse().unwrap();
    assert!((before..=before + 1).contains(&minutes), "{name}");
    let waited = ok(
        c,
        &[
            "wait",
            "--for=condition=Complete",
            &format!("job/{name}"),
            "--timeout=20s",
        ],
    )
    .await;
    assert_eq!(waited, format!("job.batch/{name} condition met\n"));
    let phases = ok(
        c,
        &[
            "get",
            "pods",
            "-l",
            &format!("job-name={name}"),
            "-o",
            "jsonpath={.items[*].status.phase}",
        ],
    )
    .await;
    assert_eq!(phases, "Succeeded");

    let job = json_of(c, &["job", &name]).await;
    assert_eq!(job["metadata"]["labels"], json!({"app": "backup"}));
    let annotations = &job["metadata"]["annotations"];
    assert_eq!(annotations["team"], "storage");
    let scheduled = annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .unwrap();
    let scheduled_at = chrono::DateTime::parse_from_rfc3339(scheduled).unwrap();
    assert_eq!(scheduled_at.timestamp() / 60, minutes);
    assert_eq!(
        job["metadata"]["ownerReferences"],
        json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly",
            "uid": cron["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}])
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox"
    );

    // The status had the Job active, then its success.
    let statuses = tokio::time::timeout(std::time::Duration::from_secs(30), watched)
        .await
        .expect("the CronJob settles within 30 s")
        .unwrap();
    assert!(
        statuses.iter().any(|s| s["active"]
            == json!([{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                "namespace": "default", "uid": job["metadata"]["uid"],
                "resourceVersion": s["active"][0]["resourceVersion"]}])),
        "{statuses:?}"
    );
    let cron = json_of(c, &["cronjob", "nightly"]).await;
    assert_eq!(cron["status"]["lastScheduleTime"], scheduled);
    assert_eq!(
        cron["status"]["lastSuccessfulTime"],
        job["status"]["completionTime"]
    );
    assert!(cron["status"].get("active").is_none(), "{cron}");

    // The same schedule time runs once; a suspended CronJob runs nothing.
    let again = cluster
        .sim
        .cluster()
        .run_cron_job("default", "nightly", scheduled_at.into());
    assert!(
        matches!(&again, Err(CronJobRunError::Api(e)) if e.reason == "AlreadyExists"),
        "{again:?}"
    );
    let patched = ok(
        c,
        &[
            "patch",
            "cronjob",
            "nightly",
            "-p",
            r#"{"spec":{"suspend":true}}"#,
        ],
    )
    .await;
    assert_eq!(patched, "cronjob.batch/nightly patched\n");
    let suspended = cluster.sim.run_cron_job("default", "nightly");
    assert!(
        matches!(suspended, Err(CronJobRunError::Suspended(_))),
        "{suspended:?}"
    );
}

/// Writes a pod's phase through the status subresource, as whatever runs the pod does.
async fn set_phase(pods: &Api<Pod>, pod: &str, phase: &str, exit_code: i32) {
    let state = if phase == "Running" {
        json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}})
    } else {
        json!({"terminated": {"exitCode": exit_code, "reason": if exit_code == 0 { "Completed" } else { "Error" }}})
    };
    let status = json!({"status": {
        "phase": phase,
        "containerStatuses": [{"name": "work", "image": "busybox", "imageID": "", "ready": phase == "Running",
            "restartCount": 0, "state": state}],
    }});
    pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// The name of a pod of the Job other than those in `except`.
async fn running_pod(pods: &Api<Pod>, job: &str, except: &[String]) -> Option<String> {
    let list = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .unwrap();
    list.items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .find(|n| !except.contains(n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_follow_pod_phases_written_later_and_fail_past_their_backoff_limit() {
    // Pods stay as created (no simulated phase), like pods whose containers run elsewhere.
    let controllers = Controllers {
        pods_running: false,
        ..Controllers::default()
    };
    let cluster = start_cluster_with("ctl-job-phases", |options| {
        options.controllers = controllers
    })
    .await;
    let c = &cluster;
    let pods: Api<Pod> = Api::namespaced(client(c).await, "default");
    let pods = &pods;
    apply(
        c,
        &(JOB.replace("NAME", "fails") + "---\n" + &JOB.replace("NAME", "passes")),
    )
    .await;

    let first = eventually("the first pod of job fails", move || {
        running_pod(pods, "fails", &[])
    })
    .await;
    set_phase(pods, &first, "Running", 0).await;
    let job = json_of(c, &["job", "fails"]).await;
    assert!(
        condition(&job, "Failed").is_null(),
        "not failed while running"
    );
    set_phase(pods, &first, "Failed", 3).await;
    let seen = vec![first.clone()];
    let seen = &seen;
    let second = eventually("a replacement pod", move || {
        running_pod(pods, "fails", seen)
    })
    .await;
    let job = json_of(c, &["job", "fails"]).await;
    assert_eq!(job["status"]["failed"], 1);
    assert!(
        condition(&job, "Failed").is_null(),
        "one failure is within backoffLimit 1"
    );
    set_phase(pods, &second, "Failed", 3).await;
    let waited = ok(
        c,
        &[
            "wait",
            "--for=condition=Failed",
            "job/fails",
            "--timeout=20s",
        ],
    )
    .await;
    assert!(waited.contains("job.batch/fails condition met"), "{waited}");
    let job = json_of(c, &["job", "fails"]).await;
    assert_eq!(job["status"]["failed"], 2);
    assert_eq!(condition(&job, "Failed")["reason"], "BackoffLimitExceeded");
    assert_eq!(
        condition(&job, "FailureTarget")["reason"],
        "BackoffLimitExceeded"
    );
    assert!(condition(&job, "Complete").is_null());

    let only = eventually("the pod of job passes", move || {
        running_pod(pods, "passes", &[])
    })
    .await;
    set_phase(pods, &only, "Running", 0).await;
    set_phase(pods, &only, "Succeeded", 0).await;
    let waited = ok(
        c,
        &[
            "wait",
            "--for=condition=Complete",
            "job/passes",
            "--timeout=20s",
        ],
    )
    .await;
    assert!(waited.contains("condition met"), "{waited}");
    let job = json_of(c, &["job", "passes"]).await;
    assert_eq!(job["status"]["succeeded"], 1);
    assert!(job["status"].get("failed").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switched_off_controllers_install_and_default_nothing() {
    let cluster = start_cluster_with("ctl-off", |options| {
        options.controllers = Controllers::none()
    })
    .await;
    let c = &cluster;
    let classes = ok(c, &["get", "storageclasses", "-o", "name"]).await;
    assert!(classes.trim().is_empty(), "{classes}");
    let snapshots = kubectl(c, &["get", "volumesnapshots"]).await;
    assert!(!snapshots.success);
    assert!(
        snapshots
            .stderr
            .contains("the server doesn't have a resource type \"volumesnapshots\""),
        "{}",
        snapshots.stderr
    );
    let config_maps = ok(c, &["get", "configmaps", "-o", "name"]).await;
    assert!(
        config_maps.trim().is_empty(),
        "no kube-root-ca.crt: {config_maps}"
    );
    apply(
        c,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bare, namespace: default}\n\
         spec: {containers: [{name: c, image: busybox}]}\n",
    )
    .await;
    let pod = json_of(c, &["pod", "bare"]).await;
    assert!(pod["spec"].get("serviceAccountName").is_none());
    assert!(pod.get("status").is_none());
    // Selector generation is the API server's, not a controller's.
    apply(c, &JOB.replace("NAME", "bare")).await;
    let job = json_of(c, &["job", "bare"]).await;
    assert_eq!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        job["metadata"]["uid"]
    );
}
