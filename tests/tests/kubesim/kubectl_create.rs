//! `kubectl create -f` of every file of every shared app under `../shared/testdata/apps`, and of
//! the project's widget fixtures, each into a fresh cluster, asserting the `... created` line
//! kubectl prints for every object of the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use stowage_tests::kubesim::Controllers;

use super::kubectl::{documents, ensure_namespace, kubectl, ok};
use super::{TestCluster, fixture, shared_testdata, start_cluster, start_cluster_with};

/// The objects of a file: its documents, with a `kind: List` replaced by its items.
fn objects(path: &Path) -> Vec<Value> {
    documents(path)
        .into_iter()
        .flat_map(|document| match document["items"].as_array() {
            Some(items) if document["kind"] == "List" => items.clone(),
            _ => vec![document],
        })
        .collect()
}

fn group(object: &Value) -> &str {
    object["apiVersion"]
        .as_str()
        .and_then(|version| version.split_once('/'))
        .map_or("", |(group, _)| group)
}

/// What kubectl prints for an object it created: `<kind>[.<group>]/<name> created`.
fn created_line(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap().to_lowercase();
    let name = object["metadata"]["name"].as_str().unwrap();
    match group(object) {
        "" => format!("{kind}/{name} created"),
        group => format!("{kind}.{group}/{name} created"),
    }
}

/// OpenShift kinds are custom resources without their CRDs here, as on any cluster that is not
/// OpenShift: kubectl reports them and creates the rest.
fn is_openshift(object: &Value) -> bool {
    group(object).ends_with("openshift.io")
}

/// Identifies an object across files: group, kind, namespace, name.
fn identity(object: &Value) -> (String, String, String, String) {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
    (
        group(object).to_string(),
        text(&object["kind"]),
        text(&object["metadata"]["namespace"]),
        text(&object["metadata"]["name"]),
    )
}

/// One app's files to create: CRDs first, then files holding Namespaces, then the rest.
struct App {
    name: String,
    files: Vec<(PathBuf, Vec<Value>)>,
}

fn read_app(dir: &Path) -> App {
    let mut files: Vec<(PathBuf, Vec<Value>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .map(|path| {
            let objects = objects(&path);
            (path, objects)
        })
        // Kustomize files are not API objects.
        .filter(|(_, objects)| {
            !objects.is_empty() && objects.iter().all(|o| o["kind"] != "Kustomization")
        })
        .collect();
    let class = |objects: &[Value]| {
        if objects
            .iter()
            .all(|o| o["kind"] == "CustomResourceDefinition")
        {
            0
        } else if objects.iter().any(|o| o["kind"] == "Namespace") {
            1
        } else {
            2
        }
    };
    files.sort_by(|a, b| (class(&a.1), &a.0).cmp(&(class(&b.1), &b.0)));
    App {
        name: dir.file_name().unwrap().to_string_lossy().into_owned(),
        files,
    }
}

/// The CRD file of any app defining each custom kind, by group and kind.
fn crd_files(apps: &[App]) -> BTreeMap<(String, String), PathBuf> {
    let mut found = BTreeMap::new();
    for app in apps {
        for (path, objects) in &app.files {
            for crd in objects
                .iter()
                .filter(|o| o["kind"] == "CustomResourceDefinition")
            {
                let group = crd["spec"]["group"].as_str().unwrap().to_string();
                let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
                found.insert((group, kind), path.clone());
            }
        }
    }
    found
}

/// `kubectl ARGS -f FILE` (with `--validate=false` for a `kind: List`, which kubectl validates
/// itself against the `/openapi/v2` kubesim does not serve); fails the test on any error but
/// the OpenShift kinds'. Answers stdout.
async fn run_on_file(cluster: &TestCluster, args: &[&str], file: &Path) -> String {
    let mut all = args.to_vec();
    all.extend(["-f", file.to_str().unwrap()]);
    if documents(file).iter().any(|d| d["kind"] == "List") {
        all.push("--validate=false");
    }
    let output = kubectl(cluster, &all).await;
    // kubectl names the missing kind on one line and adds a hint on the next.
    let unexpected: Vec<&str> = output
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.contains("openshift.io") && *l != "ensure CRDs are installed first")
        .collect();
    assert!(
        output.success || unexpected.is_empty(),
        "kubectl {all:?} failed\nstdout: {}\nstderr: {}",
        output.stdout,
        output.stderr
    );
    output.stdout
}

/// Creates every file of `app` into a fresh cluster; answers how many files were created.
async fn create_app(app: &App, crds: &BTreeMap<(String, String), PathBuf>) -> usize {
    let own_crds: BTreeSet<&PathBuf> = app
        .files
        .iter()
        .filter(|(_, objects)| {
            objects
                .iter()
                .any(|o| o["kind"] == "CustomResourceDefinition")
        })
        .map(|(path, _)| path)
        .collect();
    // An app that installs the snapshot CRDs itself gets a cluster without kubesim's.
    let ships_snapshot_crds = app.files.iter().flat_map(|(_, o)| o).any(|o| {
        o["kind"] == "CustomResourceDefinition" && o["spec"]["group"] == "snapshot.storage.k8s.io"
    });
    let cluster = start_cluster_with(&format!("create-{}", app.name), |options| {
        options.controllers = Controllers {
            csi_snapshots: !ships_snapshot_crds,
            ..Controllers::default()
        };
    })
    .await;
    // What the app needs from elsewhere: another app's CRDs, namespaces no file of it creates.
    let all_objects = || app.files.iter().flat_map(|(_, objects)| objects);
    let foreign: BTreeSet<&PathBuf> = all_objects()
        .filter_map(|o| crds.get(&(group(o).to_string(), o["kind"].as_str()?.to_string())))
        .filter(|path| !own_crds.contains(path))
        .collect();
    for path in foreign {
        ok(&cluster, &["apply", "-f", path.to_str().unwrap()]).await;
    }
    let declared: BTreeSet<&str> = all_objects()
        .filter(|o| o["kind"] == "Namespace")
        .filter_map(|o| o["metadata"]["name"].as_str())
        .collect();
    let used: BTreeSet<&str> = all_objects()
        .filter_map(|o| o["metadata"]["namespace"].as_str())
        .filter(|namespace| !declared.contains(namespace))
        .collect();
    for namespace in used {
        ensure_namespace(&cluster, namespace).await;
    }

    let mut created: Vec<(&Path, Vec<Value>)> = Vec::new();
    let mut count = 0;
    for (path, objects) in &app.files {
        // A real server refuses it by its CRD's validation rules, which kubesim does not
        // evaluate (docs/kubesim.md, "What is not (yet)").
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("invalid-")
        {
            continue;
        }
        // Files that hold the same objects (a base and its variant) are alternatives: the one
        // created before is deleted first, as a user switching between them would.
        let ids: BTreeSet<_> = objects.iter().map(identity).collect();
        let (clashing, kept): (Vec<_>, Vec<_>) = created
            .into_iter()
            .partition(|(_, earlier)| earlier.iter().any(|o| ids.contains(&identity(o))));
        created = kept;
        for (earlier, _) in clashing {
            // Deleting a Namespace takes its contents along, which may go before kubectl gets
            // to them.
            let deleted = run_on_file(
                &cluster,
                &["delete", "--ignore-not-found", "--timeout=30s"],
                earlier,
            )
            .await;
            assert!(
                deleted.contains(" deleted"),
                "{}: {deleted}",
                earlier.display()
            );
        }
        let stdout = run_on_file(&cluster, &["create"], path).await;
        let mut printed: Vec<&str> = stdout.lines().collect();
        printed.sort_unstable();
        let mut expected: Vec<String> = objects
            .iter()
            .filter(|o| !is_openshift(o))
            .map(created_line)
            .collect();
        expected.sort_unstable();
        assert_eq!(printed, expected, "kubectl create -f {}", path.display());
        created.push((path.as_path(), objects.clone()));
        count += 1;
    }
    let TestCluster { sim, folder: _kept } = cluster;
    sim.stop().await;
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_every_file_of_every_shared_app() {
    let Some(apps) = shared_testdata("apps") else {
        return;
    };
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&apps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let apps: Vec<App> = dirs.iter().map(|dir| read_app(dir)).collect();
    let crds = crd_files(&apps);
    let mut created = 0;
    for app in &apps {
        created += create_app(app, &crds).await;
    }
    assert!(
        created >= 40,
        "every file of every shared app was created ({created})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_the_widget_fixtures() {
    let cluster = start_cluster("kubectl-create-widgets").await;
    let crd = ok(
        &cluster,
        &[
            "create",
            "-f",
            fixture("widgets-crd.yaml").to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        crd,
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com created\n"
    );
    let widget = ok(
        &cluster,
        &["create", "-f", fixture("widget.yaml").to_str().unwrap()],
    )
    .await;
    assert_eq!(widget, "widget.example.com/blue created\n");
    let again = kubectl(
        &cluster,
        &["create", "-f", fixture("widget.yaml").to_str().unwrap()],
    )
    .await;
    assert!(!again.success);
    assert!(
        again
            .stderr
            .contains("widgets.example.com \"blue\" already exists"),
        "{}",
        again.stderr
    );
    let listed = ok(
        &cluster,
        &["get", "widgets", "-l", "color=blue", "-o", "name"],
    )
    .await;
    assert_eq!(listed, "widget.example.com/blue\n");
}
