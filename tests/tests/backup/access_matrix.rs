//! The authorization matrix, over real HTTP with real OIDC tokens: alice (admin through
//! `backup-admins`), bob and carol (operators through `platform` and `data-team`) and dave (in no
//! group: a viewer) call every route of the served OpenAPI document on objects of every kind
//! that bob owns and that carol owns. Bob shares everything with the group `data-team` at
//! `view`, his entities with dave at `full` and his backup with dave at `restore`; nothing of
//! carol's is shared.
//!
//! Each answer must be what the caller's standing gives: 404 for what it may not see (never a
//! 403 that would reveal it exists), 403 for what it sees but may not do, and otherwise an
//! answer past authorization (changes are sent at a stale version, so they are refused with 409
//! after the check and nothing is destroyed). Every list (the workflow runs' too) and the audit
//! stream hold exactly what the caller may see. A route of the document with no row here fails
//! the test.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method as M;
use serde_json::{Value, json};
use stowage_workflows::entity::ShareLevel;

use super::create;
use super::end_to_end::{connect, start};
use super::routes::settled;
use crate::entity_routes::Users;

const CALLERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const OWNERS: [&str; 2] = ["bob", "carol"];

/// What a route needs.
#[derive(Debug, Clone, Copy)]
enum Needs {
    /// Nothing but a valid token (whoami, the audit stream).
    Anyone,
    /// No token at all.
    Public,
    /// The operator role (creating).
    Operator,
    /// This level on the object named by `{id}` (and the operator role when `operator`).
    Level(ShareLevel, bool),
}

/// What each route of the document needs. A new route must get a row here.
fn needs(method: &str, template: &str) -> Option<Needs> {
    use Needs::*;
    use ShareLevel::*;
    let entity = [
        "clusters",
        "locations",
        "credentials",
        "rules",
        "schedule-policies",
        "backup-schedules",
    ];
    if ["/healthz", "/readyz", "/metrics"].contains(&template) {
        return (method == "get").then_some(Public);
    }
    let parts: Vec<&str> = template.trim_start_matches("/v1/").split('/').collect();
    Some(match (method, parts.as_slice()) {
        ("get", ["openapi.json" | "login-options"]) => Public,
        ("get", ["whoami"]) | ("get", ["events"]) => Anyone,
        ("get", [_]) => Anyone,
        ("post", [_]) => Operator,
        ("get", [collection, "{id}"]) if entity.contains(collection) => Level(View, false),
        ("put", [collection, "{id}"]) if entity.contains(collection) => Level(Full, false),
        ("delete", [collection, "{id}"]) if entity.contains(collection) => Level(Full, false),
        ("put", [_, "{id}", "shares"]) => Level(Full, false),
        ("get", ["clusters", "{id}", "status" | "resources"]) => Level(View, false),
        ("post", ["backup-schedules", "{id}", "suspend" | "resume"]) => Level(Full, false),
        ("post", ["locations", "{id}", "sync"]) => Level(View, true),
        ("get", ["backups" | "restores" | "workflows", "{id}"]) => Level(View, false),
        ("get", ["backups", "{id}", "logs"]) => Level(View, false),
        ("get", ["restores", "{id}", "results"]) => Level(View, false),
        ("get", ["workflows", "{id}", "events"]) => Level(View, false),
        ("post", ["backups" | "restores", "{id}", "cancel"]) => Level(Full, false),
        ("post", ["backups", "{id}", "retry"]) => Level(Full, true),
        ("delete", ["backups", "{id}"]) => Level(Full, false),
        _ => return None,
    })
}

/// The objects of one owner, by the collection their routes live in.
type Objects = BTreeMap<&'static str, String>;

/// Creates an object in `collection` as `owner` and keeps its id.
async fn post(
    users: &Users,
    owner: &str,
    objects: &mut Objects,
    collection: &'static str,
    body: Value,
) -> (String, Value) {
    let (status, record) = users
        .call(owner, M::POST, &format!("/v1/{collection}"), Some(body))
        .await;
    assert!(status == 201 || status == 202, "{collection}: {record}");
    let id = record["id"].as_str().unwrap().to_string();
    objects.insert(collection, id.clone());
    (id, record)
}

/// Registers one of everything as `owner`: entities, a completed backup and restore.
async fn objects_of(
    users: &Users,
    owner: &'static str,
    kubeconfig: &str,
    bucket: &std::path::Path,
) -> Objects {
    let mut objects = Objects::new();
    let (cluster, _) = post(
        users,
        owner,
        &mut objects,
        "clusters",
        json!({"name": "prod", "spec": {"kubeconfig": kubeconfig}}),
    )
    .await;
    let (location, _) = post(
        users,
        owner,
        &mut objects,
        "locations",
        json!({"name": "vault", "spec": {
            "location": {"kind": {"type": "local", "root": bucket}, "prefix": owner},
            "passphrase": "correct horse battery"
        }}),
    )
    .await;
    post(
        users,
        owner,
        &mut objects,
        "credentials",
        json!({"name": "keys", "spec": {
            "type": "s3", "access_key_id": "id", "secret_access_key": "secret"
        }}),
    )
    .await;
    post(
        users,
        owner,
        &mut objects,
        "rules",
        json!({"name": "flush", "spec": {
            "pod_selector": {"matchLabels": {"app": "db"}},
            "actions": [{"command": ["sync"]}]
        }}),
    )
    .await;
    let (policy, _) = post(
        users,
        owner,
        &mut objects,
        "schedule-policies",
        json!({"name": "nightly", "spec": {
            "schedule": {"daily": {"times": ["02:00"]}}, "retain": 3
        }}),
    )
    .await;
    let backup_spec = json!({
        "cluster": cluster, "location": location, "namespaces": ["matrix"], "volumes": "skip"
    });
    post(
        users,
        owner,
        &mut objects,
        "backup-schedules",
        json!({"name": "nightly", "spec": {
            "policy": policy, "backup": backup_spec, "suspended": true
        }}),
    )
    .await;
    let (backup, _) = post(
        users,
        owner,
        &mut objects,
        "backups",
        json!({"name": "first", "spec": backup_spec}),
    )
    .await;
    let done = settled(users, owner, &format!("/v1/backups/{backup}")).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (restore, _) = post(
        users,
        owner,
        &mut objects,
        "restores",
        json!({"name": "back", "spec": {
            "backup": backup, "cluster": cluster,
            "namespace_mapping": {"matrix": format!("matrix-{owner}")}
        }}),
    )
    .await;
    let done = settled(users, owner, &format!("/v1/restores/{restore}")).await;
    assert_eq!(done["status"], "completed", "{done}");
    objects.insert("workflows", done["run"].as_str().unwrap().to_string());
    objects
}

/// The level `caller` holds on `owner`'s object in `collection`.
fn level(caller: &str, owner: &str, collection: &str) -> Option<ShareLevel> {
    match (caller, owner, collection) {
        ("alice", _, _) => Some(ShareLevel::Full),
        (caller, owner, _) if caller == owner => Some(ShareLevel::Full),
        // Everything of bob's is shared with data-team at view; a run is seen with its restore.
        ("carol", "bob", _) => Some(ShareLevel::View),
        // Bob's entities are shared with dave at full, his backup at restore, his restore not.
        ("dave", "bob", "backups") => Some(ShareLevel::Restore),
        ("dave", "bob", "restores" | "workflows") => None,
        ("dave", "bob", _) => Some(ShareLevel::Full),
        _ => None,
    }
}

fn is_operator(caller: &str) -> bool {
    caller != "dave"
}

/// A request for the route, with a body that gets past parsing where one is needed and a stale
/// version wherever the route changes something, so nothing is changed.
fn request(method: &str, path: &str) -> (M, String, Option<Value>) {
    match method {
        "get" => (M::GET, path.to_string(), None),
        "put" if path.ends_with("/shares") => (
            M::PUT,
            path.to_string(),
            Some(json!({"version": 999_999, "shares": []})),
        ),
        "put" => (
            M::PUT,
            path.to_string(),
            Some(json!({"version": 999_999, "labels": {}, "spec": {}})),
        ),
        "delete" => (M::DELETE, format!("{path}?version=999999"), None),
        _ => (M::POST, path.to_string(), Some(json!({}))),
    }
}

fn assert_answer(
    caller: &str,
    method: &str,
    path: &str,
    status: u16,
    expected: Result<(), u16>,
    body: &Value,
) {
    match expected {
        Err(refused) => assert_eq!(status, refused, "{caller} {method} {path}: {body}"),
        Ok(()) => assert!(
            ![401, 403, 404].contains(&status) && status < 500,
            "{caller} {method} {path} must get past authorization: {status} {body}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_caller_by_its_standing_and_no_list_leaks() {
    let users = Users::start_with_operators(&["platform", "data-team"]).await;
    let cluster = start("matrix").await;
    let client = connect(&cluster).await;
    create(
        &client.client,
        "v1",
        "Namespace",
        "namespaces",
        json!({"metadata": {"name": "matrix"}}),
    )
    .await;
    create(
        &client.client,
        "v1",
        "ConfigMap",
        "configmaps",
        json!({"metadata": {"name": "settings", "namespace": "matrix"}, "data": {"a": "1"}}),
    )
    .await;
    let kubeconfig = std::fs::read_to_string(cluster.sim.kubeconfig_path()).unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let mut objects = BTreeMap::new();
    for owner in OWNERS {
        objects.insert(
            owner,
            objects_of(&users, owner, &kubeconfig, bucket.path()).await,
        );
    }
    let dave = super::routes::users_subject(&users, "dave").await;
    for (collection, id) in &objects["bob"] {
        let to_dave = match *collection {
            "workflows" | "restores" => None,
            "backups" => Some("restore"),
            _ => Some("full"),
        };
        if *collection == "workflows" {
            continue;
        }
        let mut shares = vec![json!({"to": {"group": "data-team"}, "level": "view"})];
        shares.extend(to_dave.map(|level| json!({"to": {"user": dave}, "level": level})));
        let (_, record) = users
            .call("bob", M::GET, &format!("/v1/{collection}/{id}"), None)
            .await;
        let (status, shared) = users
            .call(
                "bob",
                M::PUT,
                &format!("/v1/{collection}/{id}/shares"),
                Some(json!({
                    "version": record.get("shares_version").unwrap_or(&record["version"]),
                    "shares": shares,
                })),
            )
            .await;
        assert_eq!(status, 200, "{collection}: {shared}");
    }

    let (status, document) = users.call("alice", M::GET, "/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    let mut routes = 0;
    let mut object_routes_checked = BTreeSet::new();
    for (template, operations) in document["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let needed = needs(method, template)
                .unwrap_or_else(|| panic!("{method} {template} has no row in the matrix"));
            routes += 1;
            // Deleting a backup is not done at a stale version: it is checked last, below.
            if method == "delete" && template == "/v1/backups/{id}" {
                continue;
            }
            let collection = template
                .trim_start_matches("/v1/")
                .split('/')
                .next()
                .unwrap();
            match needed {
                Needs::Public | Needs::Anyone | Needs::Operator => {
                    for caller in CALLERS {
                        let (verb, path, body) = request(method, template);
                        let (status, answer) = users.call(caller, verb, &path, body).await;
                        let expected = match needed {
                            Needs::Operator if !is_operator(caller) => Err(403),
                            _ => Ok(()),
                        };
                        assert_answer(caller, method, &path, status, expected, &answer);
                    }
                }
                Needs::Level(level_needed, operator) => {
                    for owner in OWNERS {
                        let id = &objects[owner][collection];
                        let path = template.replace("{id}", id);
                        for caller in CALLERS {
                            let (verb, path, body) = request(method, &path);
                            let (status, answer) = users.call(caller, verb, &path, body).await;
                            // The role is checked first: its refusal says nothing of the object.
                            let expected = match level(caller, owner, collection) {
                                _ if operator && !is_operator(caller) => Err(403),
                                None => Err(404),
                                Some(held) if held < level_needed => Err(403),
                                Some(_) => Ok(()),
                            };
                            assert_answer(caller, method, &path, status, expected, &answer);
                        }
                    }
                    object_routes_checked.insert(format!("{method} {template}"));
                }
            }
        }
    }
    assert!(routes >= 50, "the document lists only {routes} routes");
    assert!(
        object_routes_checked.len() >= 30,
        "{object_routes_checked:?}"
    );

    // Lists and the audit stream hold exactly what each caller may see.
    for caller in CALLERS {
        for collection in objects["bob"].keys() {
            if *collection == "workflows" {
                continue;
            }
            let (status, page) = users
                .call(caller, M::GET, &format!("/v1/{collection}?limit=100"), None)
                .await;
            assert_eq!(status, 200, "{page}");
            let listed: BTreeSet<&str> = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["id"].as_str().unwrap())
                .collect();
            let expected: BTreeSet<&str> = OWNERS
                .iter()
                .filter(|owner| level(caller, owner, collection).is_some())
                .map(|owner| objects[owner][collection].as_str())
                .collect();
            assert_eq!(listed, expected, "{caller} lists {collection}");
        }
        let events = Value::Array(users.audit_events(caller).await).to_string();
        for owner in OWNERS {
            for (collection, id) in &objects[owner] {
                if level(caller, owner, collection).is_none() {
                    assert!(
                        !events.contains(id.as_str()),
                        "{caller}'s audit stream shows {owner}'s {collection} {id}"
                    );
                }
            }
        }
    }

    // The runs list holds exactly the runs each caller may see: those of the backups and
    // restores it may see, and the others (the syncs the matrix started) that it started. Read
    // in pages of one, so that paging past hidden runs is checked too.
    let mut run_of = BTreeMap::new();
    for owner in OWNERS {
        let backup = &objects[owner]["backups"];
        let (_, record) = users
            .call(owner, M::GET, &format!("/v1/backups/{backup}"), None)
            .await;
        run_of.insert(
            record["run"].as_str().unwrap().to_string(),
            (owner, "backups"),
        );
        run_of.insert(objects[owner]["workflows"].clone(), (owner, "restores"));
    }
    let everything = list_runs(&users, "alice", "").await;
    let mut started_by = BTreeMap::new();
    for run in &everything {
        let (status, events) = users
            .call(
                "alice",
                M::GET,
                &format!("/v1/workflows/{run}/events"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{events}");
        started_by.insert(run.clone(), events["events"][0]["actor"].clone());
    }
    assert!(
        run_of.keys().all(|run| everything.contains(run)),
        "{everything:?}"
    );
    assert!(
        everything.len() > run_of.len(),
        "the matrix started syncs too: {everything:?}"
    );
    for caller in CALLERS {
        let subject = super::routes::users_subject(&users, caller).await;
        let may_see = |run: &String| match run_of.get(run) {
            Some((owner, collection)) => level(caller, owner, collection).is_some(),
            None => caller == "alice" || started_by[run] == subject,
        };
        let expected: BTreeSet<String> = everything
            .iter()
            .filter(|run| may_see(run))
            .cloned()
            .collect();
        let listed: BTreeSet<String> = list_runs(&users, caller, "").await.into_iter().collect();
        assert_eq!(listed, expected, "{caller} lists workflows");
        let restores: BTreeSet<String> = list_runs(&users, caller, "&type=restore")
            .await
            .into_iter()
            .collect();
        let expected: BTreeSet<String> = OWNERS
            .iter()
            .filter(|owner| level(caller, owner, "restores").is_some())
            .map(|owner| objects[owner]["workflows"].clone())
            .collect();
        assert_eq!(restores, expected, "{caller} lists restore runs");
    }
    assert_ne!(
        list_runs(&users, "dave", "").await.len(),
        everything.len(),
        "some runs are hidden from dave"
    );

    // Deleting a backup: refused to those who may not, then done by its owner.
    for owner in OWNERS {
        let path = format!("/v1/backups/{}", objects[owner]["backups"]);
        for caller in CALLERS
            .iter()
            .filter(|caller| **caller != owner && **caller != "alice")
        {
            let (status, answer) = users.call(caller, M::DELETE, &path, None).await;
            let expected = match level(caller, owner, "backups") {
                None => 404,
                Some(_) => 403,
            };
            assert_eq!(status, expected, "{caller} DELETE {path}: {answer}");
        }
        let (status, answer) = users.call(owner, M::DELETE, &path, None).await;
        assert_eq!(status, 202, "{owner} DELETE {path}: {answer}");
    }

    // Nothing answered was an operation the document does not list.
    super::assert_every_answered_route_is_documented(&users.api.url("")).await;
}

/// The ids of every run `caller` lists with the parameters `filters` (`&type=...`), a page of
/// one at a time, each page after the last one's `next_after`.
async fn list_runs(users: &Users, caller: &str, filters: &str) -> Vec<String> {
    let mut runs = Vec::new();
    let mut after = String::new();
    loop {
        let (status, page) = users
            .call(
                caller,
                M::GET,
                &format!("/v1/workflows?limit=1{filters}{after}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{caller}: {page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 1, "{page}");
        runs.extend(
            items
                .iter()
                .map(|run| run["id"].as_str().unwrap().to_string()),
        );
        match page["next_after"].as_str() {
            Some(next) => {
                assert_eq!(Some(next), runs.last().map(String::as_str), "{page}");
                after = format!("&after={next}");
            }
            None => return runs,
        }
    }
}
