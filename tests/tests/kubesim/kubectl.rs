//! kubectl 1.32 against kubesim, asserting on what kubectl prints. kubectl runs with its own
//! HOME and discovery cache, so nothing from another cluster leaks in.

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::{TestCluster, eventually, fixture, shared_testdata, start_cluster, volume_folder};

pub struct Output {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub async fn kubectl_with_input(
    cluster: &TestCluster,
    args: &[&str],
    input: Option<&str>,
) -> Output {
    kubectl_at(
        cluster.sim.kubeconfig_path(),
        cluster.folder.path(),
        args,
        input,
    )
    .await
}

/// kubectl with the kubeconfig `kubeconfig`, its HOME and discovery cache under `scratch`.
pub async fn kubectl_at(
    kubeconfig: &Path,
    scratch: &Path,
    args: &[&str],
    input: Option<&str>,
) -> Output {
    let home = scratch.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut child = tokio::process::Command::new("kubectl")
        .args(args)
        .arg("--request-timeout=20s")
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECACHEDIR", scratch.join("kubectl-cache"))
        .env("HOME", &home)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl 1.32 is installed (see docs/testing.md)");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
    }
    let output = child.wait_with_output().await.unwrap();
    Output {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub async fn kubectl(cluster: &TestCluster, args: &[&str]) -> Output {
    kubectl_with_input(cluster, args, None).await
}

/// Runs kubectl and fails the test with its output unless it succeeds; returns stdout.
pub async fn ok(cluster: &TestCluster, args: &[&str]) -> String {
    let output = kubectl(cluster, args).await;
    assert!(
        output.success,
        "kubectl {args:?} failed\nstdout: {}\nstderr: {}",
        output.stdout, output.stderr
    );
    output.stdout
}

fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|line| line.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_api_resources_lists_the_real_resources() {
    let cluster = start_cluster("kubectl-api-resources").await;
    let table = ok(&cluster, &["api-resources"]).await;
    let rows = rows(&table);
    assert_eq!(
        rows[0],
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    );
    for expected in [
        vec!["deployments", "deploy", "apps/v1", "true", "Deployment"],
        vec!["namespaces", "ns", "v1", "false", "Namespace"],
        vec![
            "customresourcedefinitions",
            "crd,crds",
            "apiextensions.k8s.io/v1",
            "false",
            "CustomResourceDefinition",
        ],
        vec!["jobs", "batch/v1", "true", "Job"],
    ] {
        assert!(
            rows.iter().any(|row| *row == expected),
            "api-resources lists {expected:?}:\n{table}"
        );
    }
    let namespaced = ok(
        &cluster,
        &["api-resources", "--namespaced=false", "-o", "name"],
    )
    .await;
    assert!(
        namespaced.lines().any(|l| l == "persistentvolumes"),
        "{namespaced}"
    );
    assert!(!namespaced.lines().any(|l| l == "pods"), "{namespaced}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_gets_selects_waits_and_deletes_a_namespace() {
    let cluster = start_cluster("kubectl-lifecycle").await;
    let shop = fixture("shop.yaml");
    let created = ok(&cluster, &["create", "-f", shop.to_str().unwrap()]).await;
    for line in [
        "namespace/shop created",
        "configmap/shop-config created",
        "secret/shop-db created",
        "deployment.apps/shop-web created",
        "service/shop-web created",
        "pod/shop-worker created",
    ] {
        assert!(created.lines().any(|l| l == line), "{line} in:\n{created}");
    }

    let again = kubectl(&cluster, &["create", "-f", shop.to_str().unwrap()]).await;
    assert!(!again.success);
    assert!(
        again
            .stderr
            .contains("Error from server (AlreadyExists): error when creating")
            && again
                .stderr
                .contains("configmaps \"shop-config\" already exists"),
        "{}",
        again.stderr
    );

    let all = ok(&cluster, &["get", "configmaps", "-A"]).await;
    assert!(
        rows(&all)
            .iter()
            .any(|row| row.len() >= 2 && row[0] == "shop" && row[1] == "shop-config"),
        "get -A lists shop/shop-config:\n{all}"
    );

    let frontend = ok(
        &cluster,
        &[
            "get",
            "deploy,svc,cm,pods",
            "-n",
            "shop",
            "-l",
            "tier=frontend",
            "-o",
            "name",
        ],
    )
    .await;
    // The deployment's pods (once its controllers made them) carry its template's labels too.
    let (pods, mut names): (Vec<&str>, Vec<&str>) =
        frontend.lines().partition(|name| name.starts_with("pod/"));
    names.sort();
    assert_eq!(names, ["deployment.apps/shop-web", "service/shop-web"]);
    assert!(
        pods.iter().all(|pod| pod.starts_with("pod/shop-web-")),
        "{frontend}"
    );
    let set_based = ok(
        &cluster,
        &[
            "get",
            "cm,secrets,pods",
            "-n",
            "shop",
            "-l",
            "tier in (backend,worker),app",
            "-o",
            "name",
        ],
    )
    .await;
    let mut names: Vec<&str> = set_based.lines().collect();
    names.sort();
    assert_eq!(names, ["configmap/shop-config", "pod/shop-worker"]);

    let json: Value = serde_json::from_str(
        &ok(
            &cluster,
            &["get", "service", "shop-web", "-n", "shop", "-o", "json"],
        )
        .await,
    )
    .unwrap();
    assert_eq!(json["kind"], "Service");
    assert!(
        json["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .starts_with("10.96."),
        "{json}"
    );
    assert!(json["metadata"]["uid"].is_string());

    let by_name = ok(
        &cluster,
        &[
            "get",
            "pods",
            "-n",
            "shop",
            "--field-selector",
            "metadata.name=shop-worker",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ],
    )
    .await;
    assert_eq!(by_name, "Running");

    let waited = ok(
        &cluster,
        &[
            "wait",
            "--for=condition=Ready",
            "pod/shop-worker",
            "-n",
            "shop",
            "--timeout=20s",
        ],
    )
    .await;
    assert_eq!(waited.trim(), "pod/shop-worker condition met");

    let deleted = ok(&cluster, &["delete", "namespace", "shop", "--timeout=20s"]).await;
    assert_eq!(deleted.trim(), "namespace \"shop\" deleted");
    let gone = kubectl(&cluster, &["get", "namespace", "shop"]).await;
    assert!(!gone.success);
    assert!(
        gone.stderr
            .contains("Error from server (NotFound): namespaces \"shop\" not found"),
        "{}",
        gone.stderr
    );
    let leftovers = ok(&cluster, &["get", "configmaps", "-A", "-o", "name"]).await;
    assert!(
        !leftovers.contains("shop-config"),
        "the namespace's contents went with it:\n{leftovers}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_creates_then_leaves_unchanged_then_configures() {
    let cluster = start_cluster("kubectl-apply").await;
    let shop = fixture("shop.yaml");
    let path = shop.to_str().unwrap();
    let first = ok(&cluster, &["apply", "-f", path]).await;
    assert!(
        first.contains("deployment.apps/shop-web created"),
        "{first}"
    );
    let second = ok(&cluster, &["apply", "-f", path]).await;
    assert!(
        second.contains("deployment.apps/shop-web unchanged"),
        "{second}"
    );
    assert!(
        second.contains("configmap/shop-config unchanged"),
        "{second}"
    );

    let changed = std::fs::read_to_string(&shop)
        .unwrap()
        .replace("replicas: 2", "replicas: 5")
        .replace("nginx:1.27", "nginx:1.28");
    let third = kubectl_with_input(&cluster, &["apply", "-f", "-"], Some(&changed)).await;
    assert!(third.success, "{}", third.stderr);
    assert!(
        third.stdout.contains("deployment.apps/shop-web configured"),
        "{}",
        third.stdout
    );
    let deployment: Value = serde_json::from_str(
        &ok(
            &cluster,
            &["get", "deploy", "shop-web", "-n", "shop", "-o", "json"],
        )
        .await,
    )
    .unwrap();
    assert_eq!(deployment["spec"]["replicas"], 5);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );
    assert_eq!(deployment["metadata"]["generation"], 2);
    assert!(
        deployment["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string(),
        "client-side apply keeps its annotation"
    );

    let labelled = ok(
        &cluster,
        &[
            "label",
            "configmap",
            "shop-config",
            "-n",
            "shop",
            "stage=prod",
        ],
    )
    .await;
    assert_eq!(labelled.trim(), "configmap/shop-config labeled");
    let annotated = ok(
        &cluster,
        &[
            "annotate",
            "configmap",
            "shop-config",
            "-n",
            "shop",
            "owner=team-a",
        ],
    )
    .await;
    assert_eq!(annotated.trim(), "configmap/shop-config annotated");
    let patched = ok(
        &cluster,
        &[
            "patch",
            "configmap",
            "shop-config",
            "-n",
            "shop",
            "-p",
            r#"{"data":{"currency":"USD"}}"#,
        ],
    )
    .await;
    assert_eq!(patched.trim(), "configmap/shop-config patched");
    let value = ok(
        &cluster,
        &[
            "get",
            "cm",
            "shop-config",
            "-n",
            "shop",
            "-o",
            "jsonpath={.data.currency} {.metadata.labels.stage} {.metadata.annotations.owner}",
        ],
    )
    .await;
    assert_eq!(value, "USD prod team-a");

    let server_side = ok(
        &cluster,
        &[
            "apply",
            "--server-side",
            "-f",
            fixture("widgets-crd.yaml").to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        server_side.contains(
            "customresourcedefinition.apiextensions.k8s.io/widgets.example.com serverside-applied"
        ),
        "{server_side}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_round_trips_a_custom_resource_definition() {
    let cluster = start_cluster("kubectl-crd").await;
    let created = ok(
        &cluster,
        &["apply", "-f", fixture("widgets-crd.yaml").to_str().unwrap()],
    )
    .await;
    assert!(
        created
            .contains("customresourcedefinition.apiextensions.k8s.io/widgets.example.com created"),
        "{created}"
    );
    let established = ok(
        &cluster,
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.com",
            "--timeout=20s",
        ],
    )
    .await;
    assert_eq!(
        established.trim(),
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com condition met"
    );
    let widget = ok(
        &cluster,
        &["apply", "-f", fixture("widget.yaml").to_str().unwrap()],
    )
    .await;
    assert_eq!(widget.trim(), "widget.example.com/blue created");
    let size = ok(
        &cluster,
        &["get", "wdg", "blue", "-o", "jsonpath={.spec.size}"],
    )
    .await;
    assert_eq!(size, "3");
    let beta = ok(
        &cluster,
        &[
            "get",
            "widgets.v1beta1.example.com",
            "blue",
            "-o",
            "jsonpath={.apiVersion}",
        ],
    )
    .await;
    assert_eq!(beta, "example.com/v1beta1");
    let resources = ok(&cluster, &["api-resources", "--api-group=example.com"]).await;
    assert!(
        rows(&resources)
            .iter()
            .any(|r| *r == ["widgets", "wdg", "example.com/v1", "true", "Widget"]),
        "{resources}"
    );

    ok(&cluster, &["delete", "crd", "widgets.example.com"]).await;
    let gone = kubectl(&cluster, &["get", "widgets.example.com"]).await;
    assert!(!gone.success);
    assert!(
        gone.stderr
            .contains("the server doesn't have a resource type"),
        "{}",
        gone.stderr
    );
}

/// The YAML documents of a file that are objects (Lists included as they are).
pub fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|document| serde::Deserialize::deserialize(document).ok())
        .filter(|value: &Value| value.is_object())
        .collect()
}

/// Creates a namespace through `apply -f -` (`kubectl create namespace` sends protobuf, which
/// kubesim does not read).
pub async fn ensure_namespace(cluster: &TestCluster, namespace: &str) {
    let manifest = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n");
    let output = kubectl_with_input(cluster, &["apply", "-f", "-"], Some(&manifest)).await;
    assert!(output.success, "namespace {namespace}: {}", output.stderr);
}

/// Applies every app under `../shared/testdata/apps` with kubectl (CRDs first), checking
/// kubectl's output for each file; the number of files applied, or `None` when the shared data
/// is absent.
pub async fn apply_shared_apps(cluster: &TestCluster) -> Option<usize> {
    let apps = shared_testdata("apps")?;
    let mut app_dirs: Vec<_> = std::fs::read_dir(&apps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    app_dirs.sort();
    let mut applied_files = 0;
    // Kustomize files are not API objects; every app's CRDs go first, so that apps using
    // another app's custom resources (VolumeSnapshots) find them served.
    let mut crds = Vec::new();
    let mut others = Vec::new();
    for app in &app_dirs {
        let mut files: Vec<_> = std::fs::read_dir(app)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        for file in files {
            let docs = documents(&file);
            if docs.is_empty() || docs.iter().any(|d| d["kind"] == "Kustomization") {
                continue;
            }
            let listed = docs
                .iter()
                .flat_map(|d| d["items"].as_array().cloned().unwrap_or_default());
            let objects: Vec<Value> = docs.iter().cloned().chain(listed).collect();
            for object in &objects {
                if let Some(namespace) = object["metadata"]["namespace"].as_str() {
                    ensure_namespace(cluster, namespace).await;
                }
            }
            if docs.iter().all(|d| d["kind"] == "CustomResourceDefinition") {
                crds.push(file);
            } else {
                others.push(file);
            }
        }
    }
    for file in crds.iter().chain(others.iter()) {
        // kubectl validates a `kind: List` on the client against /openapi/v2, which kubesim
        // does not serve (docs/kubesim.md); every other file is validated by the server.
        let is_list = documents(file).iter().any(|d| d["kind"] == "List");
        let mut args = vec!["apply", "-f", file.to_str().unwrap()];
        if is_list {
            args.push("--validate=false");
        }
        let output = kubectl(cluster, &args).await;
        // OpenShift kinds are custom resources without their CRDs here, as on any
        // cluster that is not OpenShift: kubectl reports them and applies the rest.
        let unexpected: Vec<&str> = output
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.contains("openshift.io"))
            .collect();
        assert!(
            output.success || unexpected.is_empty(),
            "kubectl apply -f {} failed\nstdout: {}\nstderr: {}",
            file.display(),
            output.stdout,
            output.stderr
        );
        assert!(
            output.stdout.lines().all(|l| l.ends_with(" created")
                || l.ends_with(" configured")
                || l.ends_with(" unchanged")),
            "{}: {}",
            file.display(),
            output.stdout
        );
        assert!(
            !output.stdout.trim().is_empty(),
            "{} applied nothing",
            file.display()
        );
        applied_files += 1;
    }
    Some(applied_files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_every_shared_app() {
    let cluster = start_cluster("kubectl-apps").await;
    let Some(applied_files) = apply_shared_apps(&cluster).await else {
        return;
    };
    assert!(
        applied_files >= 40,
        "every file of every shared app was applied ({applied_files})"
    );
    let everything = ok(
        &cluster,
        &[
            "get",
            "deployments,statefulsets,services,persistentvolumeclaims",
            "-A",
            "-o",
            "name",
        ],
    )
    .await;
    assert!(
        everything.contains("statefulset.apps/cassandra"),
        "{everything}"
    );
    assert!(
        everything.contains("deployment.apps/frontend"),
        "{everything}"
    );
    let snapshots = ok(&cluster, &["get", "volumesnapshots", "-A", "-o", "name"]).await;
    assert!(
        snapshots.contains("volumesnapshot.snapshot.storage.k8s.io/"),
        "{snapshots}"
    );
    every_shared_workload_runs(&cluster).await;
}

fn json_list(text: &str) -> Vec<Value> {
    let list: Value = serde_json::from_str(text).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

fn owned_by<'a>(objects: &'a [Value], owner: &Value) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|o| {
            o["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner["metadata"]["uid"]))
        })
        .collect()
}

/// After the shared apps are applied: every Deployment is Available with its ReplicaSet and
/// pods, every StatefulSet has its pods and claims, and the claims of kubesim's provisioner are
/// bound to volumes with folders on disk (others wait, as for a driver not installed).
async fn every_shared_workload_runs(cluster: &TestCluster) {
    let waited = ok(
        cluster,
        &[
            "wait",
            "--for=condition=Available",
            "deployments",
            "--all",
            "-A",
            "--timeout=30s",
        ],
    )
    .await;
    assert!(
        waited.contains("deployment.apps/frontend condition met"),
        "{waited}"
    );
    let deployments = json_list(&ok(cluster, &["get", "deployments", "-A", "-o", "json"]).await);
    let sets = json_list(&ok(cluster, &["get", "replicasets", "-A", "-o", "json"]).await);
    let pods = json_list(&ok(cluster, &["get", "pods", "-A", "-o", "json"]).await);
    assert!(deployments.len() >= 8, "{} deployments", deployments.len());
    for deployment in &deployments {
        let name = deployment["metadata"]["name"].as_str().unwrap();
        // velero-nginx-example applies nginx-deployment twice: two revisions, the old at zero.
        let mut owned = owned_by(&sets, deployment);
        assert!(!owned.is_empty(), "a ReplicaSet for {name}");
        owned.sort_by_key(|rs| {
            rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                .as_str()
                .and_then(|r| r.parse::<u32>().ok())
                .unwrap_or_default()
        });
        let current = owned.pop().unwrap();
        assert!(
            owned.iter().all(|old| old["spec"]["replicas"] == 0),
            "{name}"
        );
        let replicas = deployment["spec"]["replicas"].as_i64().unwrap();
        assert_eq!(
            owned_by(&pods, current).len() as i64,
            replicas,
            "pods of {name}"
        );
        assert_eq!(
            deployment["status"]["availableReplicas"], replicas,
            "{name}"
        );
    }
    let claims_of_ours = |claim: &Value| claim["spec"]["storageClassName"] == "standard";
    let mut expected_claims = Vec::new();
    let statefulsets = json_list(&ok(cluster, &["get", "statefulsets", "-A", "-o", "json"]).await);
    assert!(
        statefulsets.len() >= 2,
        "{} statefulsets",
        statefulsets.len()
    );
    for statefulset in &statefulsets {
        let name = statefulset["metadata"]["name"].as_str().unwrap();
        let namespace = statefulset["metadata"]["namespace"].as_str().unwrap();
        let replicas = statefulset["spec"]["replicas"].as_i64().unwrap();
        let rolled = ok(
            cluster,
            &[
                "rollout",
                "status",
                &format!("statefulset/{name}"),
                "-n",
                namespace,
                "--timeout=20s",
            ],
        )
        .await;
        assert!(rolled.contains("roll out complete"), "{rolled}");
        let pods = json_list(&ok(cluster, &["get", "pods", "-n", namespace, "-o", "json"]).await);
        for ordinal in 0..replicas {
            let pod = format!("{name}-{ordinal}");
            assert!(
                pods.iter().any(|p| p["metadata"]["name"] == pod.as_str()),
                "{pod} runs"
            );
            for template in statefulset["spec"]["volumeClaimTemplates"]
                .as_array()
                .unwrap()
            {
                expected_claims.push((
                    namespace.to_string(),
                    format!(
                        "{}-{name}-{ordinal}",
                        template["metadata"]["name"].as_str().unwrap()
                    ),
                ));
            }
        }
    }
    // Claims of kubesim's provisioner bind; others (cassandra's class "fast") stay Pending.
    let expected_claims = &expected_claims;
    let claims = eventually("every StatefulSet claim to settle", move || async move {
        let claims = json_list(&ok(cluster, &["get", "pvc", "-A", "-o", "json"]).await);
        let settled = expected_claims.iter().all(|(namespace, name)| {
            claims.iter().any(|claim| {
                let wanted = if claims_of_ours(claim) {
                    "Bound"
                } else {
                    "Pending"
                };
                claim["metadata"]["namespace"] == namespace.as_str()
                    && claim["metadata"]["name"] == name.as_str()
                    && claim["status"]["phase"] == wanted
            })
        });
        settled.then_some(claims)
    })
    .await;
    let mut bound = 0;
    for claim in &claims {
        if claim["status"]["phase"] != "Bound" || !claims_of_ours(claim) {
            continue;
        }
        bound += 1;
        let volume = claim["spec"]["volumeName"].as_str().unwrap();
        assert!(
            volume_folder(cluster, volume).is_dir(),
            "the folder of {volume}"
        );
    }
    assert!(
        bound >= 4,
        "minio's four claims at least are bound ({bound})"
    );
    let cassandra = ok(cluster, &["get", "pvc", "-A", "-o", "name"]).await;
    assert!(
        cassandra.contains("persistentvolumeclaim/cassandra-data-cassandra-0")
            && cassandra.contains("persistentvolumeclaim/data-minio-0"),
        "{cassandra}"
    );
    let controllers = json_list(
        &ok(
            cluster,
            &["get", "replicationcontrollers", "-A", "-o", "json"],
        )
        .await,
    );
    assert!(
        !controllers.is_empty(),
        "spark-legacy-rc has ReplicationControllers"
    );
    let controllers = &controllers;
    eventually("every ReplicationController's pods", move || async move {
        let pods = json_list(&ok(cluster, &["get", "pods", "-A", "-o", "json"]).await);
        controllers
            .iter()
            .all(|rc| {
                owned_by(&pods, rc).len() as i64 == rc["spec"]["replicas"].as_i64().unwrap_or(1)
            })
            .then_some(())
    })
    .await;
}

/// The header and the row of `name` (the first column) in kubectl's table output.
fn header_and_row(table: &str, name: &str) -> (Vec<String>, Vec<String>) {
    let rows = rows(table);
    let row = rows
        .iter()
        .find(|row| row.first().map(String::as_str) == Some(name))
        .unwrap_or_else(|| panic!("{name} in:\n{table}"))
        .clone();
    (rows[0].clone(), row)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_prints_the_server_side_tables() {
    let cluster = start_cluster("kubectl-tables").await;
    let shop = fixture("shop.yaml");
    ok(&cluster, &["create", "-f", shop.to_str().unwrap()]).await;

    let (header, row) = header_and_row(
        &ok(&cluster, &["get", "pods", "-n", "shop", "-o", "wide"]).await,
        "shop-worker",
    );
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ]
    );
    assert_eq!(row[1..4], ["1/1", "Running", "0"]);
    assert!(row[4].ends_with('s'), "age {}", row[4]);
    assert_eq!(row[5..], ["127.0.0.1", "kubesim-node", "<none>", "<none>"]);

    let (header, row) = header_and_row(
        &ok(&cluster, &["get", "services", "-n", "shop"]).await,
        "shop-web",
    );
    assert_eq!(
        header,
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    assert_eq!(row[1], "ClusterIP");
    assert!(row[2].starts_with("10.96."), "{row:?}");
    assert_eq!(row[3], "<none>");

    ok(
        &cluster,
        &[
            "rollout",
            "status",
            "deployment/shop-web",
            "-n",
            "shop",
            "--timeout=20s",
        ],
    )
    .await;
    let (header, row) = header_and_row(
        &ok(&cluster, &["get", "deployments", "-n", "shop"]).await,
        "shop-web",
    );
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert_eq!(&row[1..4], ["2/2", "2", "2"]);

    let (header, row) = header_and_row(
        &ok(&cluster, &["get", "configmaps", "-n", "shop"]).await,
        "shop-config",
    );
    assert_eq!(header, ["NAME", "DATA", "AGE"]);
    assert_eq!(row[1], "2");

    let (header, row) = header_and_row(&ok(&cluster, &["get", "namespaces"]).await, "shop");
    assert_eq!(header, ["NAME", "STATUS", "AGE"]);
    assert_eq!(row[1], "Active");

    // Kinds without a printer of their own: Name and Created At.
    let gadgets = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
      additionalPrinterColumns:
        - {name: Size, type: integer, jsonPath: .spec.size}
        - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
"#;
    let applied = kubectl_with_input(&cluster, &["apply", "-f", "-"], Some(gadgets)).await;
    assert!(applied.success, "{}", applied.stderr);
    let (header, row) = header_and_row(
        &ok(&cluster, &["get", "customresourcedefinitions"]).await,
        "gadgets.example.com",
    );
    assert_eq!(header, ["NAME", "CREATED", "AT"]);
    assert!(row[1].ends_with('Z'), "{row:?}");

    // A custom resource: its additionalPrinterColumns.
    let gadget = "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g1, namespace: default}\nspec: {size: 7}\n";
    let created = kubectl_with_input(
        &cluster,
        &["apply", "--validate=false", "-f", "-"],
        Some(gadget),
    )
    .await;
    assert!(created.success, "{}", created.stderr);
    let (header, row) = header_and_row(&ok(&cluster, &["get", "gadgets"]).await, "g1");
    assert_eq!(header, ["NAME", "SIZE", "AGE"]);
    assert_eq!(row[1], "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_sees_a_namespace_terminate_until_its_last_finalizer_goes() {
    let cluster = start_cluster("kubectl-terminating").await;
    let c = &cluster;
    let manifest = "apiVersion: v1\nkind: Namespace\nmetadata: {name: closing}\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, namespace: closing, \
                    finalizers: [example.com/hold]}\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain, namespace: closing}\n";
    let created = kubectl_with_input(c, &["create", "-f", "-"], Some(manifest)).await;
    assert!(created.success, "{}", created.stderr);

    let deleted = ok(c, &["delete", "namespace", "closing", "--wait=false"]).await;
    assert_eq!(deleted, "namespace \"closing\" deleted\n");
    let phase = ok(
        c,
        &[
            "get",
            "namespace",
            "closing",
            "-o",
            "jsonpath={.status.phase}",
        ],
    )
    .await;
    assert_eq!(phase, "Terminating");
    let (_, row) = header_and_row(&ok(c, &["get", "namespaces"]).await, "closing");
    assert_eq!(row[1], "Terminating");

    let late = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: late, namespace: closing}\n";
    let refused = kubectl_with_input(c, &["create", "-f", "-"], Some(late)).await;
    assert!(!refused.success);
    assert_eq!(
        refused.stderr.trim(),
        "Error from server (Forbidden): error when creating \"STDIN\": configmaps \"late\" is \
         forbidden: unable to create new content in namespace closing because it is being \
         terminated"
    );

    // The namespace controller empties it and says what holds it.
    let held_by =
        "jsonpath={.status.conditions[?(@.type==\"NamespaceFinalizersRemaining\")].message}";
    let message = eventually(
        "the namespace to name its remaining finalizer",
        move || async move {
            let text = ok(c, &["get", "namespace", "closing", "-o", held_by]).await;
            (!text.is_empty()).then_some(text)
        },
    )
    .await;
    assert_eq!(
        message,
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource \
         instances"
    );
    let left = ok(c, &["get", "configmaps", "-n", "closing", "-o", "name"]).await;
    assert_eq!(left, "configmap/held\n");
    let marked = ok(
        c,
        &[
            "get",
            "configmap",
            "held",
            "-n",
            "closing",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ],
    )
    .await;
    assert!(marked.ends_with('Z'), "{marked}");

    let patched = ok(
        c,
        &[
            "patch",
            "configmap",
            "held",
            "-n",
            "closing",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
    )
    .await;
    assert_eq!(patched, "configmap/held patched\n");
    let gone = eventually("the namespace to go", move || async move {
        let output = kubectl(c, &["get", "namespace", "closing"]).await;
        (!output.success).then_some(output.stderr)
    })
    .await;
    assert_eq!(
        gone.trim(),
        "Error from server (NotFound): namespaces \"closing\" not found"
    );
}
