//! Resource packs: the Kubernetes objects of a backup, written as a stream of sealed frames
//! (`backups/<id>/resources/frames/<n>`, each a few MiB of concatenated objects) and a sealed
//! index (`backups/<id>/resources/index`) naming, per object, its group, version, kind,
//! namespace and name and where its bytes are. Writing keeps only the current frame and the
//! index in memory; reading fetches only the frames that hold the objects asked for.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tracing::instrument;

use crate::error::{Error, Result};
use crate::names;
use crate::object::{self, Kind};
use crate::repository::Repository;

/// A frame is sealed and uploaded once it holds this many bytes of objects.
const FRAME_TARGET: usize = 4 * 1024 * 1024;

/// One Kubernetes object as the API returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRecord {
    /// API group; empty for the core group.
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `ConfigMap`.
    pub kind: String,
    /// Namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// The object, raw JSON as the API returned it.
    pub body: Vec<u8>,
}

/// Where one object is in the pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceEntry {
    /// API group; empty for the core group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// The frame number.
    pub frame: u32,
    /// Offset of the body in the frame's content.
    pub offset: u64,
    /// Length of the body.
    pub length: u64,
}

/// One stored frame, as the index records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameRecord {
    /// BLAKE3 of the stored (sealed) frame, hex: a replaced frame is caught.
    pub hash: String,
    /// Bytes of the stored frame: a truncated one is caught by a listing.
    pub stored: u64,
    /// Bytes of objects in it.
    pub content: u64,
}

/// The index of a backup's resource pack.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceIndex {
    /// Every object, in the order written.
    pub entries: Vec<ResourceEntry>,
    /// Every frame, by number.
    pub frames: Vec<FrameRecord>,
}

impl ResourceIndex {
    /// Objects per namespace; cluster-scoped objects are counted under `""`.
    pub fn counts_by_namespace(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for entry in &self.entries {
            *counts
                .entry(entry.namespace.clone().unwrap_or_default())
                .or_insert(0) += 1;
        }
        counts
    }

    /// Objects per kind, keyed `kind.group` (`kind` alone for the core group).
    pub fn counts_by_kind(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for entry in &self.entries {
            let key = if entry.group.is_empty() {
                entry.kind.clone()
            } else {
                format!("{}.{}", entry.kind, entry.group)
            };
            *counts.entry(key).or_insert(0) += 1;
        }
        counts
    }
}

/// What a finished resource pack holds; recorded in the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourcesSummary {
    /// Objects.
    pub objects: u64,
    /// Frames.
    pub frames: u64,
    /// Bytes of objects (before compression).
    pub bytes: u64,
    /// BLAKE3 of the stored (sealed) index object, hex.
    pub index_hash: String,
}

/// An API group and kind, e.g. `apps` and `Deployment` (the core group is `""`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKind {
    /// API group; empty for the core group.
    pub group: String,
    /// Kind.
    pub kind: String,
}

/// Which objects to read. Each empty list selects everything on its axis; the axes combine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceFilter {
    /// Namespaces; when not empty, cluster-scoped objects are selected only with
    /// `cluster_scoped`.
    pub namespaces: Vec<String>,
    /// With `namespaces` not empty: select cluster-scoped objects too.
    pub cluster_scoped: bool,
    /// Group and kind pairs.
    pub kinds: Vec<GroupKind>,
    /// Object names.
    pub names: Vec<String>,
}

impl ResourceFilter {
    /// Whether the entry is selected.
    pub fn matches(&self, entry: &ResourceEntry) -> bool {
        let namespace_ok = self.namespaces.is_empty()
            || match &entry.namespace {
                Some(namespace) => self.namespaces.contains(namespace),
                None => self.cluster_scoped,
            };
        let kind_ok = self.kinds.is_empty()
            || self
                .kinds
                .iter()
                .any(|gk| gk.group == entry.group && gk.kind == entry.kind);
        let name_ok = self.names.is_empty() || self.names.contains(&entry.name);
        namespace_ok && kind_ok && name_ok
    }
}

/// Writes a backup's resource pack; [`ResourceWriter::finish`] writes the index. A writer
/// dropped without `finish` leaves frames without an index, which the backup's finalize
/// ignores and garbage collection removes after its grace window.
#[derive(Debug)]
pub struct ResourceWriter {
    repo: Repository,
    backup: String,
    frame: Vec<u8>,
    index: ResourceIndex,
    bytes: u64,
}

impl Repository {
    /// Starts the resource pack of backup `backup`.
    pub fn resource_writer(&self, backup: &str) -> Result<ResourceWriter> {
        names::check_name("backup id", backup)?;
        Ok(ResourceWriter {
            repo: self.clone(),
            backup: backup.into(),
            frame: Vec::with_capacity(FRAME_TARGET),
            index: ResourceIndex::default(),
            bytes: 0,
        })
    }

    /// Reads the index of backup `backup`'s resource pack. When the backup has a manifest,
    /// the index must have the hash it records; a staged backup's index is read as it is.
    #[instrument(skip(self), fields(location = %self.description()))]
    pub async fn resource_index(&self, backup: &str) -> Result<ResourceIndex> {
        names::check_name("backup id", backup)?;
        let expected = match self.manifest(backup).await {
            Ok(manifest) => match manifest.resources {
                Some(resources) => Some(resources.index_hash),
                None => {
                    return Err(Error::NotFound(format!(
                        "backup `{backup}` has no resources"
                    )));
                }
            },
            Err(Error::NotFound(_)) => None,
            Err(err) => return Err(err),
        };
        let name = names::resource_index(backup);
        let bytes = self.get_raw(&name).await.map_err(|err| match err {
            Error::Missing { .. } if expected.is_none() => {
                Error::NotFound(format!("backup `{backup}` has no resources"))
            }
            other => other,
        })?;
        self.open_resource_index(&name, &bytes, expected.as_deref())
    }

    /// Opens and decodes a stored index, checking its hash when one is expected.
    pub(crate) fn open_resource_index(
        &self,
        name: &str,
        bytes: &[u8],
        expected_hash: Option<&str>,
    ) -> Result<ResourceIndex> {
        if let Some(expected) = expected_hash {
            let hash = blake3::hash(bytes).to_hex().to_string();
            if hash != expected {
                return Err(Error::Corrupt {
                    object: name.into(),
                    what: format!("its hash {hash} is not the {expected} the manifest records"),
                });
            }
        }
        let body = object::open(self.key(), Kind::ResourceIndex, name, bytes)?;
        let index: ResourceIndex = serde_json::from_slice(&body).map_err(|err| Error::Corrupt {
            object: name.into(),
            what: format!("not a resource index: {err}"),
        })?;
        for entry in &index.entries {
            let fits = index
                .frames
                .get(entry.frame as usize)
                .is_some_and(|frame| entry.offset.saturating_add(entry.length) <= frame.content);
            if !fits {
                return Err(Error::Corrupt {
                    object: name.into(),
                    what: format!("object {} points outside the frames", describe_entry(entry)),
                });
            }
        }
        Ok(index)
    }

    /// The objects of backup `backup` selected by `filter`, in the order written. Only the
    /// frames holding selected objects are read; each of them is read and checked before the
    /// first object is given out, so a damaged pack yields an error naming the frame and an
    /// object in it, and no object at all. Memory holds the index and one frame.
    pub async fn read_resources(
        &self,
        backup: &str,
        filter: &ResourceFilter,
    ) -> Result<impl Stream<Item = Result<ResourceRecord>> + Send + 'static> {
        let index = self.resource_index(backup).await?;
        let mut by_frame: BTreeMap<u32, Vec<ResourceEntry>> = BTreeMap::new();
        for entry in index.entries.into_iter().filter(|e| filter.matches(e)) {
            by_frame.entry(entry.frame).or_default().push(entry);
        }
        // `open_resource_index` checked that every entry's frame exists and that its bytes lie
        // within the frame's content, and `read_frame` that the content has that length: the
        // indexing and slicing below stay in bounds.
        let frames: Vec<(u32, FrameRecord, Vec<ResourceEntry>)> = by_frame
            .into_iter()
            .map(|(number, entries)| (number, index.frames[number as usize].clone(), entries))
            .collect();
        for (number, record, entries) in &frames {
            self.read_frame(backup, *number, record, entries).await?;
        }
        let repo = self.clone();
        let backup = backup.to_string();
        let stream = futures::stream::iter(frames)
            .then(move |(number, record, entries)| {
                let repo = repo.clone();
                let backup = backup.clone();
                async move {
                    let content = repo.read_frame(&backup, number, &record, &entries).await?;
                    let records: Vec<Result<ResourceRecord>> = entries
                        .into_iter()
                        .map(|entry| {
                            let start = entry.offset as usize;
                            let end = start + entry.length as usize;
                            Ok(ResourceRecord {
                                body: content[start..end].to_vec(),
                                group: entry.group,
                                version: entry.version,
                                kind: entry.kind,
                                namespace: entry.namespace,
                                name: entry.name,
                            })
                        })
                        .collect();
                    Ok::<_, Error>(futures::stream::iter(records))
                }
            })
            .map(|frame| match frame {
                Ok(records) => records.left_stream(),
                Err(err) => futures::stream::iter([Err(err)]).right_stream(),
            })
            .flatten();
        Ok(stream)
    }

    /// Reads frame `number`, checks it against the index and returns its content.
    async fn read_frame(
        &self,
        backup: &str,
        number: u32,
        record: &FrameRecord,
        entries: &[ResourceEntry],
    ) -> Result<Vec<u8>> {
        let name = names::resource_frame(backup, number);
        let first = entries
            .first()
            .map(describe_entry)
            .unwrap_or_else(|| "none".into());
        let holds = |what: String| Error::Corrupt {
            object: name.clone(),
            what: format!(
                "{what} (it holds {first} and {} more)",
                entries.len().saturating_sub(1)
            ),
        };
        let bytes = self.get_raw(&name).await.map_err(|err| match err {
            Error::Missing { .. } => Error::Missing {
                object: format!("{name} (holding {first})"),
            },
            other => other,
        })?;
        let hash = blake3::hash(&bytes).to_hex().to_string();
        if hash != record.hash {
            return Err(holds(format!(
                "its hash {hash} is not the {} the index records ({} bytes stored, {} expected)",
                record.hash,
                bytes.len(),
                record.stored
            )));
        }
        let content = object::open(self.key(), Kind::ResourceFrame, &name, &bytes)?;
        if content.len() as u64 != record.content {
            return Err(holds(format!(
                "{} bytes of objects where the index records {}",
                content.len(),
                record.content
            )));
        }
        Ok(content)
    }
}

impl ResourceWriter {
    /// Adds one object. Objects are kept in the order added.
    pub async fn add(&mut self, record: ResourceRecord) -> Result<()> {
        check_record(&record)?;
        if !self.frame.is_empty() && self.frame.len() + record.body.len() > FRAME_TARGET {
            self.flush().await?;
        }
        let frame = self.index.frames.len() as u32;
        self.index.entries.push(ResourceEntry {
            group: record.group,
            version: record.version,
            kind: record.kind,
            namespace: record.namespace,
            name: record.name,
            frame,
            offset: self.frame.len() as u64,
            length: record.body.len() as u64,
        });
        self.bytes += record.body.len() as u64;
        self.frame.extend_from_slice(&record.body);
        Ok(())
    }

    /// Seals and uploads the current frame.
    async fn flush(&mut self) -> Result<()> {
        let number = self.index.frames.len() as u32;
        let name = names::resource_frame(&self.backup, number);
        let content = std::mem::replace(&mut self.frame, Vec::with_capacity(FRAME_TARGET));
        let key = self.repo.key().clone();
        let content_len = content.len() as u64;
        let sealed = {
            let name = name.clone();
            tokio::task::spawn_blocking(move || {
                object::seal(&key, Kind::ResourceFrame, &name, &content)
            })
            .await
            .map_err(|err| Error::Random(format!("sealing thread failed: {err}")))??
        };
        self.index.frames.push(FrameRecord {
            hash: blake3::hash(&sealed).to_hex().to_string(),
            stored: sealed.len() as u64,
            content: content_len,
        });
        self.repo.put_raw(&name, Bytes::from(sealed)).await
    }

    /// Uploads the last frame and the index.
    #[instrument(skip(self), fields(backup = %self.backup, objects = self.index.entries.len()))]
    pub async fn finish(mut self) -> Result<ResourcesSummary> {
        if !self.frame.is_empty() {
            self.flush().await?;
        }
        let name = names::resource_index(&self.backup);
        let body = serde_json::to_vec(&self.index).map_err(|err| Error::Corrupt {
            object: name.clone(),
            what: format!("cannot encode: {err}"),
        })?;
        let sealed = object::seal(self.repo.key(), Kind::ResourceIndex, &name, &body)?;
        let index_hash = blake3::hash(&sealed).to_hex().to_string();
        self.repo.put_raw(&name, Bytes::from(sealed)).await?;
        Ok(ResourcesSummary {
            objects: self.index.entries.len() as u64,
            frames: self.index.frames.len() as u64,
            bytes: self.bytes,
            index_hash,
        })
    }
}

/// Refuses a record with an empty or unusable field, naming it.
fn check_record(record: &ResourceRecord) -> Result<()> {
    let invalid = |what: String| Err(Error::InvalidResource(what));
    for (field, value) in [
        ("version", &record.version),
        ("kind", &record.kind),
        ("name", &record.name),
    ] {
        if value.is_empty() {
            return invalid(format!(
                "{} has an empty {field}",
                describe(
                    &record.group,
                    &record.kind,
                    record.namespace.as_deref(),
                    &record.name
                )
            ));
        }
    }
    if record.namespace.as_deref() == Some("") {
        return invalid(format!(
            "{}/{} has an empty namespace (use none for cluster-scoped objects)",
            record.kind, record.name
        ));
    }
    if record.body.is_empty() {
        return invalid(format!(
            "{} has an empty body",
            describe(
                &record.group,
                &record.kind,
                record.namespace.as_deref(),
                &record.name
            )
        ));
    }
    Ok(())
}

/// `kind.group namespace/name` for messages.
fn describe(group: &str, kind: &str, namespace: Option<&str>, name: &str) -> String {
    let kind = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    match namespace {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}

fn describe_entry(entry: &ResourceEntry) -> String {
    describe(
        &entry.group,
        &entry.kind,
        entry.namespace.as_deref(),
        &entry.name,
    )
}
