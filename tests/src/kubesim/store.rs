//! The object store: every object of every resource as JSON, keyed by resource, namespace and
//! name, with one cluster-wide resourceVersion counter, atomic read-modify-write, a bounded
//! history of changes for watches, a broadcast of new changes, and an optional journal file that
//! makes the state survive a restart.
//!
//! The store knows nothing of Kubernetes rules (validation, finalizers, defaults): callers decide
//! what an object becomes inside [`Store::modify`], and the store makes it happen all at once or
//! not at all.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

use super::errors::{ApiError, StartError};

/// How many past changes watches can resume from.
const HISTORY_LIMIT: usize = 100_000;

/// Namespace (empty for cluster-scoped objects) and name.
pub type ObjectKey = (String, String);

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl ChangeType {
    /// The watch event type: `ADDED`, `MODIFIED`, `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Change {
    /// The resourceVersion the change produced.
    pub resource_version: u64,
    /// The storage key of the resource (`group/plural`).
    pub resource: Arc<str>,
    /// The type of change.
    pub change: ChangeType,
    /// The object after the change (before it, for a deletion, with the new resourceVersion).
    pub object: Arc<Value>,
    /// The object before the change (`None` for a creation): watches with selectors compare
    /// it with `object` to tell when an object starts or stops matching.
    pub previous: Option<Arc<Value>>,
}

/// What a [`Store::modify`] callback decides.
#[derive(Debug)]
pub enum Decision<T> {
    /// Store this object (its resourceVersion is set by the store) and answer `T`.
    Put(Value, T),
    /// Remove the object and answer `T`.
    Delete(T),
    /// Change nothing and answer `T`.
    Keep(T),
}

/// One line of the journal.
#[derive(Debug, Serialize, Deserialize)]
struct JournalEntry {
    rv: u64,
    resource: String,
    namespace: String,
    name: String,
    object: Option<Value>,
}

struct Journal {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl Journal {
    fn append(&mut self, entry: &JournalEntry) -> Result<(), ApiError> {
        let fail = |error: std::io::Error| {
            ApiError::internal(format!(
                "writing kubesim journal {}: {error}",
                self.path.display()
            ))
        };
        serde_json::to_writer(&mut self.writer, entry)
            .map_err(|error| fail(std::io::Error::other(error)))?;
        self.writer.write_all(b"\n").map_err(fail)?;
        self.writer.flush().map_err(fail)
    }
}

/// A page of a list.
#[derive(Debug)]
pub struct ListPage {
    /// The objects, in key order.
    pub items: Vec<Arc<Value>>,
    /// The store's resourceVersion when listed.
    pub resource_version: u64,
    /// The key of the last item when more follow.
    pub next: Option<ObjectKey>,
    /// How many matching objects follow.
    pub remaining: usize,
}

#[derive(Default)]
struct State {
    resource_version: u64,
    objects: HashMap<Arc<str>, BTreeMap<ObjectKey, Arc<Value>>>,
    history: VecDeque<Change>,
    journal: Option<Journal>,
}

/// The object store; cheap to share behind an `Arc`.
pub struct Store {
    state: RwLock<State>,
    changes: broadcast::Sender<Change>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn state_error(path: &Path) -> impl FnOnce(std::io::Error) -> StartError + '_ {
    move |source| StartError::State {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// An empty store kept in memory only.
    pub fn in_memory() -> Self {
        let (changes, _) = broadcast::channel(16_384);
        Self {
            state: RwLock::new(State::default()),
            changes,
        }
    }

    /// A store whose changes are journaled to `path`; what the journal holds is loaded first,
    /// then the journal is rewritten compactly (one line per live object).
    pub fn open(path: &Path) -> Result<Self, StartError> {
        let store = Self::in_memory();
        {
            let mut state = store.write();
            if path.exists() {
                let file = File::open(path).map_err(state_error(path))?;
                for (index, line) in BufReader::new(file).lines().enumerate() {
                    let line = line.map_err(state_error(path))?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let entry: JournalEntry =
                        serde_json::from_str(&line).map_err(|error| StartError::Journal {
                            path: path.to_path_buf(),
                            line: index + 1,
                            message: error.to_string(),
                        })?;
                    state.resource_version = state.resource_version.max(entry.rv);
                    let objects = state.objects.entry(Arc::from(entry.resource)).or_default();
                    let key = (entry.namespace, entry.name);
                    match entry.object {
                        Some(object) => {
                            objects.insert(key, Arc::new(object));
                        }
                        None => {
                            objects.remove(&key);
                        }
                    }
                }
            }
            let compacted = path.with_extension("compacting");
            {
                let file = File::create(&compacted).map_err(state_error(&compacted))?;
                let mut writer = BufWriter::new(file);
                for (resource, objects) in &state.objects {
                    for ((namespace, name), object) in objects {
                        let entry = JournalEntry {
                            rv: state.resource_version,
                            resource: resource.to_string(),
                            namespace: namespace.clone(),
                            name: name.clone(),
                            object: Some(Value::clone(object)),
                        };
                        serde_json::to_writer(&mut writer, &entry).map_err(|error| {
                            state_error(&compacted)(std::io::Error::other(error))
                        })?;
                        writer.write_all(b"\n").map_err(state_error(&compacted))?;
                    }
                }
                writer.flush().map_err(state_error(&compacted))?;
            }
            std::fs::rename(&compacted, path).map_err(state_error(path))?;
            let file = std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(state_error(path))?;
            state.journal = Some(Journal {
                path: path.to_path_buf(),
                writer: BufWriter::new(file),
            });
        }
        Ok(store)
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock leaves the maps consistent (every change is applied
        // after all checks), so a poisoned lock is still safe to use.
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        // See `read` for why a poisoned lock is still safe.
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current resourceVersion of the whole store.
    pub fn resource_version(&self) -> u64 {
        self.read().resource_version
    }

    /// One object.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Arc<Value>> {
        let state = self.read();
        state
            .objects
            .get(resource)?
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of a resource (in one namespace, or all when `namespace` is `None`) that `filter`
    /// accepts, in key order, starting after `after`, at most `limit` (0: no limit).
    pub fn list(
        &self,
        resource: &str,
        namespace: Option<&str>,
        after: Option<&ObjectKey>,
        limit: usize,
        filter: impl Fn(&Value) -> bool,
    ) -> ListPage {
        let state = self.read();
        let mut page = ListPage {
            items: Vec::new(),
            resource_version: state.resource_version,
            next: None,
            remaining: 0,
        };
        let Some(objects) = state.objects.get(resource) else {
            return page;
        };
        use std::ops::Bound;
        let lower = match (after, namespace) {
            (Some(key), _) => Bound::Excluded(key.clone()),
            (None, Some(namespace)) => Bound::Included((namespace.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        for (key, object) in objects.range((lower, Bound::Unbounded)) {
            if let Some(namespace) = namespace
                && key.0 != namespace
            {
                break;
            }
            if !filter(object) {
                continue;
            }
            if limit > 0 && page.items.len() == limit {
                page.remaining += 1;
                continue;
            }
            page.items.push(Arc::clone(object));
        }
        if page.remaining > 0 {
            page.next = page.items.last().map(|object| key_of(object));
        }
        page
    }

    /// Every object of every resource that `filter` accepts, with its resource key.
    pub fn scan(&self, filter: impl Fn(&str, &Value) -> bool) -> Vec<(Arc<str>, Arc<Value>)> {
        let state = self.read();
        let mut found = Vec::new();
        for (resource, objects) in &state.objects {
            for object in objects.values() {
                if filter(resource, object) {
                    found.push((Arc::clone(resource), Arc::clone(object)));
                }
            }
        }
        found
    }

    /// Atomically reads the object (if any), lets `decide` choose what it becomes, and applies
    /// that: a new resourceVersion, the journal line, the history entry and the broadcast. An
    /// error from `decide` changes nothing.
    pub fn modify<T>(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        decide: impl FnOnce(Option<&Arc<Value>>, u64) -> Result<Decision<T>, ApiError>,
    ) -> Result<(T, Option<Arc<Value>>), ApiError> {
        let mut state = self.write();
        let key = (namespace.to_string(), name.to_string());
        let current = state
            .objects
            .get(resource)
            .and_then(|objects| objects.get(&key))
            .cloned();
        let next_version = state.resource_version + 1;
        match decide(current.as_ref(), next_version)? {
            Decision::Keep(answer) => Ok((answer, current)),
            Decision::Put(mut object, answer) => {
                if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                    metadata.insert(
                        "resourceVersion".into(),
                        Value::String(next_version.to_string()),
                    );
                }
                let object = Arc::new(object);
                self.commit(
                    &mut state,
                    resource,
                    key,
                    Some(object.clone()),
                    current,
                    next_version,
                )?;
                Ok((answer, Some(object)))
            }
            Decision::Delete(answer) => {
                let Some(current) = current else {
                    return Ok((answer, None));
                };
                let mut last = Value::clone(&current);
                if let Some(metadata) = last.get_mut("metadata").and_then(Value::as_object_mut) {
                    metadata.insert(
                        "resourceVersion".into(),
                        Value::String(next_version.to_string()),
                    );
                }
                let last = Arc::new(last);
                self.commit(
                    &mut state,
                    resource,
                    key,
                    None,
                    Some(Arc::clone(&current)),
                    next_version,
                )?;
                // Watches see the object as it was when it went away.
                if let Some(change) = state.history.back_mut() {
                    change.object = Arc::clone(&last);
                }
                let _ = self.changes.send(Change {
                    resource_version: next_version,
                    resource: Arc::from(resource),
                    change: ChangeType::Deleted,
                    object: Arc::clone(&last),
                    previous: Some(current),
                });
                Ok((answer, Some(last)))
            }
        }
    }

    fn commit(
        &self,
        state: &mut State,
        resource: &str,
        key: ObjectKey,
        object: Option<Arc<Value>>,
        previous: Option<Arc<Value>>,
        version: u64,
    ) -> Result<(), ApiError> {
        let change = match (&object, &previous) {
            (None, _) => ChangeType::Deleted,
            (Some(_), None) => ChangeType::Added,
            (Some(_), Some(_)) => ChangeType::Modified,
        };
        if let Some(journal) = state.journal.as_mut() {
            journal.append(&JournalEntry {
                rv: version,
                resource: resource.to_string(),
                namespace: key.0.clone(),
                name: key.1.clone(),
                object: object.as_deref().cloned(),
            })?;
        }
        state.resource_version = version;
        let resource_key: Arc<str> = match state.objects.get_key_value(resource) {
            Some((existing, _)) => Arc::clone(existing),
            None => Arc::from(resource),
        };
        let objects = state.objects.entry(Arc::clone(&resource_key)).or_default();
        let shown = match &object {
            Some(object) => {
                objects.insert(key, Arc::clone(object));
                Arc::clone(object)
            }
            None => objects
                .remove(&key)
                .unwrap_or_else(|| Arc::new(Value::Null)),
        };
        let record = Change {
            resource_version: version,
            resource: resource_key,
            change,
            object: shown,
            previous,
        };
        if state.history.len() == HISTORY_LIMIT {
            state.history.pop_front();
        }
        state.history.push_back(record.clone());
        if change != ChangeType::Deleted {
            let _ = self.changes.send(record);
        }
        Ok(())
    }

    /// Subscribes to changes after `since`: the kept changes after it, then a receiver of the
    /// ones that follow. `Err` with the oldest kept version when `since` is older than history.
    pub fn watch_from(
        &self,
        since: u64,
    ) -> Result<(Vec<Change>, broadcast::Receiver<Change>), u64> {
        let state = self.read();
        let receiver = self.changes.subscribe();
        let oldest = state.history.front().map_or(state.resource_version, |c| {
            c.resource_version.saturating_sub(1)
        });
        if since < oldest {
            return Err(oldest);
        }
        let start = state
            .history
            .partition_point(|change| change.resource_version <= since);
        let past = state.history.range(start..).cloned().collect();
        Ok((past, receiver))
    }

    /// Subscribes to changes from now on, with a consistent list of `resource` taken at the
    /// same instant (for watches that start without a resourceVersion).
    pub fn watch_now(&self, resource: &str) -> (Vec<Arc<Value>>, u64, broadcast::Receiver<Change>) {
        let state = self.read();
        let receiver = self.changes.subscribe();
        let objects = state
            .objects
            .get(resource)
            .map(|objects| objects.values().cloned().collect())
            .unwrap_or_default();
        (objects, state.resource_version, receiver)
    }
}

/// The store key of an object: its namespace and name.
pub fn key_of(object: &Value) -> ObjectKey {
    let field = |name: &str| {
        object
            .pointer(&format!("/metadata/{name}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (field("namespace"), field("name"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn put(store: &Store, namespace: &str, name: &str) -> Arc<Value> {
        let object = json!({"metadata": {"namespace": namespace, "name": name}});
        store
            .modify("/configmaps", namespace, name, |_, _| {
                Ok(Decision::Put(object, ()))
            })
            .unwrap()
            .1
            .unwrap()
    }

    #[test]
    fn every_change_gets_the_next_resource_version() {
        let store = Store::in_memory();
        let first = put(&store, "a", "one");
        let second = put(&store, "a", "two");
        assert_eq!(first["metadata"]["resourceVersion"], "1");
        assert_eq!(second["metadata"]["resourceVersion"], "2");
        assert_eq!(store.resource_version(), 2);
    }

    #[test]
    fn a_failed_decision_changes_nothing() {
        let store = Store::in_memory();
        put(&store, "a", "one");
        let result = store.modify("/configmaps", "a", "one", |_, _| {
            Err::<Decision<()>, _>(ApiError::bad_request("no"))
        });
        assert!(result.is_err());
        assert_eq!(store.resource_version(), 1);
    }

    #[test]
    fn lists_page_in_key_order_within_a_namespace() {
        let store = Store::in_memory();
        for (namespace, name) in [("b", "x"), ("a", "2"), ("a", "1"), ("c", "y")] {
            put(&store, namespace, name);
        }
        let page = store.list("/configmaps", Some("a"), None, 1, |_| true);
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0]["metadata"]["name"], "1");
        assert_eq!(page.remaining, 1);
        let next = store.list("/configmaps", Some("a"), page.next.as_ref(), 1, |_| true);
        assert_eq!(next.items[0]["metadata"]["name"], "2");
        assert_eq!(next.remaining, 0);
        assert!(next.next.is_none());
        assert_eq!(
            store
                .list("/configmaps", None, None, 0, |_| true)
                .items
                .len(),
            4
        );
    }

    #[test]
    fn the_journal_brings_back_the_state_after_a_restart() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("objects.jsonl");
        {
            let store = Store::open(&path).unwrap();
            put(&store, "a", "kept");
            put(&store, "a", "removed");
            store
                .modify("/configmaps", "a", "removed", |_, _| {
                    Ok(Decision::Delete(()))
                })
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert!(store.get("/configmaps", "a", "kept").is_some());
        assert!(store.get("/configmaps", "a", "removed").is_none());
        assert_eq!(store.resource_version(), 3);
    }

    #[test]
    fn watches_resume_from_history_and_refuse_what_is_gone() {
        let store = Store::in_memory();
        put(&store, "a", "one");
        put(&store, "a", "two");
        let (past, _receiver) = store.watch_from(1).unwrap();
        assert_eq!(past.len(), 1);
        assert_eq!(past[0].object["metadata"]["name"], "two");
        assert_eq!(past[0].change, ChangeType::Added);
    }
}
