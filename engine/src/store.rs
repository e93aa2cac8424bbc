//! The event store: opening the RocksDB database, appending through the writer thread, reading
//! streams and the global log, following the log live, and projections.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::Stream;
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options};
use tokio::sync::{mpsc, oneshot, watch};

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::event::{Appended, ExpectedSeq, NewEvent, RecordedEvent, StoredEvent, check_name};
use crate::keys::{
    self, CF_EVENTS, CF_GLOBAL, CF_META, CF_PROJECTIONS, COLUMN_FAMILIES, FORMAT_VERSION,
    META_FORMAT_VERSION,
};
use crate::projection::Projection;
use crate::writer::{Command, META_REBUILD_IN_PROGRESS, Writer, rebuild_projections};

/// Key in `meta`: the global position up to which every event was decoded successfully.
const META_VERIFIED_THROUGH: &[u8] = b"verified_through";
/// Appends waiting for the writer before `append` callers wait for room.
const WRITER_QUEUE: usize = 8192;

/// How a [`Store`] is opened.
pub struct StoreOptions {
    /// The projections maintained with every append.
    pub projections: Vec<Arc<dyn Projection>>,
    /// The clock that stamps events.
    pub clock: Arc<dyn Clock>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            projections: Vec::new(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// The event store: one RocksDB database holding streams of events, the global log and the
/// projections derived from it.
pub struct Store {
    db: Arc<DB>,
    path: PathBuf,
    /// Taken on drop, which stops the writer.
    commands: Option<mpsc::Sender<Command>>,
    head_rx: watch::Receiver<u64>,
    writer: Option<std::thread::JoinHandle<()>>,
    projection_names: Vec<&'static str>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("global_head", &*self.head_rx.borrow())
            .finish()
    }
}

/// The column family `name`.
pub(crate) fn cf<'a>(db: &'a DB, name: &'static str) -> &'a ColumnFamily {
    // Invariant: `Store::open` and `inspect` fail unless every family of COLUMN_FAMILIES exists,
    // and no family is ever dropped while the database is open.
    #[allow(clippy::expect_used)]
    db.cf_handle(name)
        .expect("every column family exists once the database is open")
}

fn database(operation: &'static str) -> impl FnOnce(rocksdb::Error) -> Error {
    move |source| Error::Database { operation, source }
}

fn open_db(path: &Path, read_only: bool) -> Result<DB> {
    let mut options = Options::default();
    options.create_if_missing(!read_only);
    options.create_missing_column_families(!read_only);
    let families = COLUMN_FAMILIES
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
    let opened = if read_only {
        DB::open_cf_for_read_only(&options, path, COLUMN_FAMILIES, false)
    } else {
        DB::open_cf_descriptors(&options, path, families)
    };
    let db = opened.map_err(|source| Error::Open {
        path: path.to_path_buf(),
        source,
    })?;
    for name in COLUMN_FAMILIES {
        if db.cf_handle(name).is_none() {
            return Err(Error::MissingColumnFamily(name));
        }
    }
    Ok(db)
}

fn check_format(db: &DB, path: &Path, create: bool) -> Result<()> {
    let raw = db
        .get_cf(cf(db, CF_META), META_FORMAT_VERSION)
        .map_err(database("read of the format marker"))?;
    let found = match raw {
        Some(bytes) => decode_format(path, &bytes)?,
        None if create => {
            db.put_cf(
                cf(db, CF_META),
                META_FORMAT_VERSION,
                FORMAT_VERSION.to_be_bytes(),
            )
            .map_err(database("write of the format marker"))?;
            FORMAT_VERSION
        }
        None => 0,
    };
    if found != FORMAT_VERSION {
        return Err(Error::UnsupportedFormat {
            path: path.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

fn decode_format(path: &Path, bytes: &[u8]) -> Result<u32> {
    let array: [u8; 4] = bytes.try_into().map_err(|_| Error::MalformedFormatMarker {
        path: path.to_path_buf(),
        len: bytes.len(),
    })?;
    Ok(u32::from_be_bytes(array))
}

fn read_u64(db: &DB, key: &[u8], operation: &'static str) -> Result<u64> {
    let raw = db
        .get_cf(cf(db, CF_META), key)
        .map_err(database(operation))?;
    Ok(raw
        .and_then(|bytes| bytes.as_slice().try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

/// The last sequence of `stream`, 0 when it has no events.
pub(crate) fn stream_head(db: &DB, stream: &str) -> Result<u64> {
    let prefix = keys::stream_prefix(stream);
    let mut iter = db.raw_iterator_cf(cf(db, CF_EVENTS));
    iter.seek_for_prev(keys::event_key(stream, u64::MAX));
    if iter.valid()
        && let Some(key) = iter.key()
        && key.starts_with(&prefix)
        && let Some((_, seq)) = keys::split_event_key(key)
    {
        return Ok(seq);
    }
    iter.status().map_err(database("read of a stream head"))?;
    Ok(0)
}

/// The last global position, 0 when the log is empty.
fn global_head(db: &DB) -> Result<u64> {
    let mut iter = db.raw_iterator_cf(cf(db, CF_GLOBAL));
    iter.seek_to_last();
    if iter.valid()
        && let Some(key) = iter.key()
    {
        return keys::split_global_key(key).ok_or_else(|| Error::Corrupt {
            stream: "<global>".into(),
            seq: 0,
            reason: format!("global index key of {} bytes", key.len()),
        });
    }
    iter.status().map_err(database("read of the global head"))?;
    Ok(0)
}

fn decode_event(stream: String, seq: u64, bytes: &[u8]) -> Result<RecordedEvent> {
    match StoredEvent::from_bytes(bytes) {
        Ok(stored) => Ok(RecordedEvent::from_stored(stream, seq, stored)),
        Err(err) => Err(Error::Corrupt {
            stream,
            seq,
            reason: err.to_string(),
        }),
    }
}

/// Up to `limit` events of the global log after position `after`, in order.
///
/// The global index names the events; they are then read in key order with one iterator over
/// `events`. A stream's events in a window of the global log have consecutive sequences, so most
/// reads are a `next()` from the previous one and each stream costs a single seek.
pub(crate) fn read_global_range(db: &DB, after: u64, limit: usize) -> Result<Vec<RecordedEvent>> {
    let mut iter = db.raw_iterator_cf(cf(db, CF_GLOBAL));
    iter.seek(keys::global_key(after.saturating_add(1)));
    let mut index = Vec::with_capacity(limit.min(4096));
    while index.len() < limit
        && let (Some(key), Some(event_key)) = (iter.key(), iter.value())
    {
        let global_seq = keys::split_global_key(key).ok_or_else(|| Error::Corrupt {
            stream: "<global>".into(),
            seq: 0,
            reason: format!("global index key of {} bytes", key.len()),
        })?;
        index.push((global_seq, event_key.to_vec()));
        iter.next();
    }
    iter.status().map_err(database("read of the global log"))?;
    drop(iter);

    let mut by_key: Vec<usize> = (0..index.len()).collect();
    by_key.sort_unstable_by(|&a, &b| index[a].1.cmp(&index[b].1));
    let mut slots: Vec<Option<RecordedEvent>> = Vec::with_capacity(index.len());
    slots.resize_with(index.len(), || None);
    let mut events_iter = db.raw_iterator_cf(cf(db, CF_EVENTS));
    for position in by_key {
        let (global_seq, event_key) = &index[position];
        let (stream, seq) = keys::split_event_key(event_key).ok_or_else(|| Error::Corrupt {
            stream: "<global>".into(),
            seq: *global_seq,
            reason: "global index entry is not an event key".into(),
        })?;
        if events_iter.key() != Some(event_key.as_slice()) {
            events_iter.seek(event_key);
        }
        let bytes = match (events_iter.key(), events_iter.value()) {
            (Some(key), Some(bytes)) if key == event_key.as_slice() => bytes,
            _ => {
                events_iter.status().map_err(database("read of an event"))?;
                return Err(Error::Corrupt {
                    stream,
                    seq,
                    reason: format!("global position {global_seq} points to a missing event"),
                });
            }
        };
        let event = decode_event(stream, seq, bytes)?;
        if event.global_seq != *global_seq {
            return Err(Error::Corrupt {
                stream: event.stream,
                seq,
                reason: format!(
                    "recorded at global position {}, indexed at {global_seq}",
                    event.global_seq
                ),
            });
        }
        slots[position] = Some(event);
        events_iter.next();
    }
    // Every slot was filled above: each index entry was read or the function returned an error.
    Ok(slots.into_iter().flatten().collect())
}

impl Store {
    /// Opens the store in `path` with no projections and the system clock.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens the store in `path`, creating it on first use.
    ///
    /// Start-up checks the format marker, finishes a projection rebuild that was interrupted,
    /// and decodes every event appended since the last start: a corrupt event stops it with an
    /// error naming the stream and sequence.
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut names = HashSet::new();
        for projection in &options.projections {
            check_name("projection name", projection.name())?;
            if !names.insert(projection.name()) {
                return Err(Error::DuplicateProjection(projection.name()));
            }
        }
        let db = Arc::new(open_db(&path, false)?);
        check_format(&db, &path, true)?;

        let head = global_head(&db)?;
        let verified = read_u64(&db, META_VERIFIED_THROUGH, "read of the verification mark")?;
        let mut after = verified.min(head);
        loop {
            let events = read_global_range(&db, after, 4096)?;
            let Some(last) = events.last() else { break };
            after = last.global_seq;
        }
        if after != head {
            return Err(Error::Corrupt {
                stream: "<global>".into(),
                seq: after + 1,
                reason: format!("the global log ends at {after} but its last key is {head}"),
            });
        }
        db.put_cf(cf(&db, CF_META), META_VERIFIED_THROUGH, head.to_be_bytes())
            .map_err(database("write of the verification mark"))?;

        let projection_names = options.projections.iter().map(|p| p.name()).collect();
        let projections = Arc::new(options.projections);
        let interrupted = db
            .get_cf(cf(&db, CF_META), META_REBUILD_IN_PROGRESS)
            .map_err(database("read of the rebuild marker"))?
            .is_some();
        if interrupted {
            tracing::warn!("an interrupted projection rebuild is finished now");
            rebuild_projections(&db, &projections)?;
        }

        let (head_tx, head_rx) = watch::channel(head);
        let (commands, receiver) = mpsc::channel(WRITER_QUEUE);
        let writer = Writer {
            db: db.clone(),
            projections,
            clock: options.clock,
            global_head: head,
            head_tx,
            heads: HashMap::new(),
        };
        let writer = std::thread::Builder::new()
            .name("stowage-event-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|err| Error::Corrupt {
                stream: "<writer>".into(),
                seq: 0,
                reason: format!("cannot start the writer thread: {err}"),
            })?;
        tracing::info!(path = %path.display(), global_head = head, "event store open");
        Ok(Self {
            db,
            path,
            commands: Some(commands),
            head_rx,
            writer: Some(writer),
            projection_names,
        })
    }

    /// The folder the database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the format marker back: proves the database answers reads. Used by health checks.
    pub fn format_version(&self) -> Result<u32> {
        let raw = self
            .db
            .get_cf(cf(&self.db, CF_META), META_FORMAT_VERSION)
            .map_err(database("read of the format marker"))?;
        match raw {
            Some(bytes) => decode_format(&self.path, &bytes),
            None => Ok(0),
        }
    }

    /// Whether the store maintains the projection `name`.
    pub fn has_projection(&self, name: &str) -> bool {
        self.projection_names.contains(&name)
    }

    /// The global position of the last committed event (0: the log is empty).
    pub fn global_head(&self) -> u64 {
        *self.head_rx.borrow()
    }

    /// A receiver of the global head: it changes whenever events are committed, so a waiter can
    /// look again at what it watches (an entity, a run) without following the whole log.
    pub fn head_changes(&self) -> watch::Receiver<u64> {
        self.head_rx.clone()
    }

    /// Appends `events` to `stream` atomically, if the stream's head is what `expected` says.
    /// Returns once the events, and the projection updates they cause, are synced to disk.
    pub async fn append(
        &self,
        stream: &str,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
        actor: &str,
    ) -> Result<Appended> {
        check_name("stream id", stream)?;
        let (reply, answer) = oneshot::channel();
        let command = Command::Append {
            stream: stream.to_string(),
            expected,
            events,
            actor: actor.to_string(),
            reply,
        };
        self.send(command).await?;
        answer.await.map_err(|_| Error::Closed)?
    }

    async fn send(&self, command: Command) -> Result<()> {
        let commands = self.commands.as_ref().ok_or(Error::Closed)?;
        commands.send(command).await.map_err(|_| Error::Closed)
    }

    /// The events of `stream` from sequence `from` (1 for all), at most `limit`.
    pub fn read_stream(&self, stream: &str, from: u64, limit: usize) -> Result<Vec<RecordedEvent>> {
        check_name("stream id", stream)?;
        let prefix = keys::stream_prefix(stream);
        let start = keys::event_key(stream, from.max(1));
        let iter = self.db.iterator_cf(
            cf(&self.db, CF_EVENTS),
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut events = Vec::new();
        for item in iter {
            if events.len() >= limit {
                break;
            }
            let (key, value) = item.map_err(database("read of a stream"))?;
            if !key.starts_with(&prefix) {
                break;
            }
            let (_, seq) = keys::split_event_key(&key).ok_or_else(|| Error::Corrupt {
                stream: stream.to_string(),
                seq: 0,
                reason: "malformed event key".into(),
            })?;
            events.push(decode_event(stream.to_string(), seq, &value)?);
        }
        Ok(events)
    }

    /// The last sequence of `stream` (0: no events).
    pub fn stream_head(&self, stream: &str) -> Result<u64> {
        check_name("stream id", stream)?;
        stream_head(&self.db, stream)
    }

    /// Up to `limit` events of the global log after position `after`.
    pub fn read_global(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>> {
        read_global_range(&self.db, after, limit)
    }

    /// Every event after global position `after`: first those already in the log, then each new
    /// one as it is committed. Ends only when the store is dropped.
    pub fn subscribe(&self, after: u64) -> impl Stream<Item = Result<RecordedEvent>> + use<> {
        struct Follow {
            db: Arc<DB>,
            after: u64,
            buffer: VecDeque<RecordedEvent>,
            head: watch::Receiver<u64>,
            failed: bool,
        }
        let state = Follow {
            db: self.db.clone(),
            after,
            buffer: VecDeque::new(),
            head: self.head_rx.clone(),
            failed: false,
        };
        futures::stream::unfold(state, |mut state| async move {
            if state.failed {
                return None;
            }
            loop {
                if let Some(event) = state.buffer.pop_front() {
                    state.after = event.global_seq;
                    return Some((Ok(event), state));
                }
                let committed = *state.head.borrow_and_update();
                if committed > state.after {
                    match read_global_range(&state.db, state.after, 1024) {
                        Ok(events) => state.buffer.extend(events),
                        Err(err) => {
                            state.failed = true;
                            return Some((Err(err), state));
                        }
                    }
                    continue;
                }
                if state.head.changed().await.is_err() {
                    return None;
                }
            }
        })
    }

    /// Drops every projection and rebuilds it by replaying the whole log, with appends held
    /// back meanwhile. Returns the number of events replayed.
    pub async fn rebuild_projections(&self) -> Result<u64> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Rebuild { reply }).await?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// The value of `key` in `projection`.
    pub fn projection_get(&self, projection: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        check_name("projection name", projection)?;
        self.db
            .get_cf(
                cf(&self.db, CF_PROJECTIONS),
                keys::projection_key(projection, key),
            )
            .map_err(database("read of a projection"))
    }

    /// Every key and value of `projection` whose key starts with `prefix`, in key order.
    pub fn projection_scan(
        &self,
        projection: &str,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        check_name("projection name", projection)?;
        let name_len = keys::projection_prefix(projection).len();
        let start = keys::projection_key(projection, prefix);
        let iter = self.db.iterator_cf(
            cf(&self.db, CF_PROJECTIONS),
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut found = Vec::new();
        for item in iter {
            let (key, value) = item.map_err(database("scan of a projection"))?;
            if !key.starts_with(&start) {
                break;
            }
            found.push((key[name_len..].to_vec(), value.to_vec()));
        }
        Ok(found)
    }

    /// Up to `limit` keys and values of `projection` that start with `prefix` and sort after
    /// `after` (a key without the prefix, as returned), in key order: one page of a long listing.
    pub fn projection_page(
        &self,
        projection: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        check_name("projection name", projection)?;
        let name_len = keys::projection_prefix(projection).len();
        let start = keys::projection_key(projection, prefix);
        let from = match after {
            Some(after) => {
                // The smallest key strictly greater than `after`.
                let mut key = keys::projection_key(projection, after);
                key.push(0);
                key.max(start.clone())
            }
            None => start.clone(),
        };
        let iter = self.db.iterator_cf(
            cf(&self.db, CF_PROJECTIONS),
            IteratorMode::From(&from, Direction::Forward),
        );
        let mut found = Vec::new();
        for item in iter.take(limit) {
            let (key, value) = item.map_err(database("scan of a projection"))?;
            if !key.starts_with(&start) {
                break;
            }
            found.push((key[name_len..].to_vec(), value.to_vec()));
        }
        Ok(found)
    }

    /// Every key and value of every projection, raw: for comparing a rebuild with the live state.
    pub fn projection_dump(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.db
            .iterator_cf(cf(&self.db, CF_PROJECTIONS), IteratorMode::Start)
            .map(|item| {
                item.map(|(key, value)| (key.to_vec(), value.to_vec()))
                    .map_err(database("dump of the projections"))
            })
            .collect()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the channel stops the writer after the appends already queued.
        drop(self.commands.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the event store writer panicked");
        }
    }
}

/// What [`inspect`] found in a database.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct InspectReport {
    /// Streams with at least one event.
    pub streams: u64,
    /// Events in the `events` family.
    pub events: u64,
    /// The last global position.
    pub global_head: u64,
    /// Projection entries.
    pub projection_entries: u64,
    /// Every problem found, in the order found. Empty for a healthy database.
    pub problems: Vec<String>,
}

/// Reads a whole database without changing it and reports what is in it and what is wrong:
/// undecodable events, gaps in stream or global sequences, index entries that point nowhere.
pub fn inspect(path: impl AsRef<Path>) -> Result<InspectReport> {
    let path = path.as_ref();
    let db = open_db(path, true)?;
    check_format(&db, path, false)?;
    let mut report = InspectReport::default();
    let mut current: Option<(String, u64)> = None;
    let mut globals: HashMap<u64, (String, u64)> = HashMap::new();
    // Reported once as undecodable; the global index entry pointing to them is not reported again.
    let mut undecodable: HashSet<(String, u64)> = HashSet::new();
    for item in db.iterator_cf(cf(&db, CF_EVENTS), IteratorMode::Start) {
        let (key, value) = item.map_err(database("scan of the events"))?;
        report.events += 1;
        let Some((stream, seq)) = keys::split_event_key(&key) else {
            report
                .problems
                .push(format!("malformed event key {key:02x?}"));
            continue;
        };
        let expected = match &current {
            Some((last, last_seq)) if *last == stream => last_seq + 1,
            _ => {
                report.streams += 1;
                1
            }
        };
        if seq != expected {
            report.problems.push(format!(
                "stream `{stream}`: sequence {seq} follows {}",
                expected - 1
            ));
        }
        match decode_event(stream.clone(), seq, &value) {
            Ok(event) => {
                globals.insert(event.global_seq, (stream.clone(), seq));
            }
            Err(err) => {
                report.problems.push(err.to_string());
                undecodable.insert((stream.clone(), seq));
            }
        }
        current = Some((stream, seq));
    }
    let mut expected_global = 1;
    for item in db.iterator_cf(cf(&db, CF_GLOBAL), IteratorMode::Start) {
        let (key, value) = item.map_err(database("scan of the global log"))?;
        let Some(global_seq) = keys::split_global_key(&key) else {
            report
                .problems
                .push(format!("malformed global key {key:02x?}"));
            continue;
        };
        if global_seq != expected_global {
            report.problems.push(format!(
                "global position {global_seq} follows {}",
                expected_global - 1
            ));
        }
        expected_global = global_seq + 1;
        report.global_head = global_seq;
        let target = keys::split_event_key(&value);
        match (target, globals.get(&global_seq)) {
            (Some(target), Some(found)) if target == *found => {}
            (Some(target), _) if undecodable.contains(&target) => {}
            (Some((stream, seq)), _) => report.problems.push(format!(
                "global position {global_seq} points to event {seq} of `{stream}`, which is not recorded there"
            )),
            (None, _) => report
                .problems
                .push(format!("global position {global_seq} holds a malformed event key")),
        }
    }
    report.projection_entries = db
        .iterator_cf(cf(&db, CF_PROJECTIONS), IteratorMode::Start)
        .count() as u64;
    Ok(report)
}
