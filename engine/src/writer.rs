//! The single writer: one thread owns every write to the log, gathers the appends that arrive
//! while it is busy into one `WriteBatch` and syncs it once (group commit).
//!
//! # Guarantees
//! - An append's reply is sent only after the batch holding it is synced to disk.
//! - Appends are checked against stream heads that include earlier appends of the same group, so
//!   two conflicting appends in one group cannot both succeed.
//! - An append that fails (conflict, projection refusal) leaves no trace in the batch; the other
//!   appends of its group are unaffected.
//! - Projection rebuilds run on this thread too, so no append interleaves with a rebuild.

use std::collections::HashMap;
use std::sync::Arc;

use rocksdb::{DB, WriteBatch, WriteOptions};
use tokio::sync::mpsc::{Receiver, error::TryRecvError};
use tokio::sync::{oneshot, watch};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::event::{Appended, ExpectedSeq, NewEvent, RecordedEvent, StoredEvent};
use crate::keys::{self, CF_EVENTS, CF_GLOBAL, CF_META, CF_PROJECTIONS};
use crate::projection::{Overlay, Projection, ProjectionState};
use crate::store::{cf, read_global_range, stream_head};

/// The most appends gathered into one group commit.
const MAX_GROUP: usize = 1024;
/// Events replayed between two batch writes during a rebuild.
const REBUILD_CHUNK: usize = 4096;
/// Key in `meta` set while a rebuild is under way; a start-up that finds it rebuilds again.
pub(crate) const META_REBUILD_IN_PROGRESS: &[u8] = b"rebuild_in_progress";

/// A request to the writer thread.
pub(crate) enum Command {
    Append {
        stream: String,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
        actor: String,
        reply: oneshot::Sender<Result<Appended>>,
    },
    Rebuild {
        reply: oneshot::Sender<Result<u64>>,
    },
}

pub(crate) struct Writer {
    pub db: Arc<DB>,
    pub projections: Arc<Vec<Arc<dyn Projection>>>,
    pub clock: Arc<dyn Clock>,
    pub global_head: u64,
    pub head_tx: watch::Sender<u64>,
    /// Last sequence of each stream written or read so far.
    pub heads: HashMap<String, u64>,
}

/// An append that passed its checks, waiting for the group's sync.
struct Accepted {
    reply: oneshot::Sender<Result<Appended>>,
    appended: Appended,
}

impl Writer {
    /// Runs until every sender is dropped.
    pub fn run(mut self, mut commands: Receiver<Command>) {
        while let Some(first) = commands.blocking_recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match commands.try_recv() {
                    Ok(command) => group.push(command),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            let mut appends = Vec::with_capacity(group.len());
            for command in group {
                match command {
                    Command::Append { .. } => appends.push(command),
                    Command::Rebuild { reply } => {
                        // Appends received before the rebuild are committed first.
                        self.commit_group(std::mem::take(&mut appends));
                        let _ = reply.send(self.rebuild());
                    }
                }
            }
            self.commit_group(appends);
        }
        tracing::debug!("event store writer stopped");
    }

    fn commit_group(&mut self, appends: Vec<Command>) {
        if appends.is_empty() {
            return;
        }
        let mut batch = WriteBatch::default();
        let mut group_overlay = Overlay::new();
        let mut group_heads: HashMap<String, u64> = HashMap::new();
        let mut global = self.global_head;
        let mut accepted = Vec::with_capacity(appends.len());
        for command in appends {
            let Command::Append {
                stream,
                expected,
                events,
                actor,
                reply,
            } = command
            else {
                continue;
            };
            let outcome = self.prepare(
                &stream,
                expected,
                events,
                &actor,
                global,
                &group_heads,
                &group_overlay,
            );
            match outcome {
                Ok(prepared) => {
                    for (key, value) in &prepared.event_writes {
                        batch.put_cf(cf(&self.db, CF_EVENTS), key, value);
                    }
                    for (key, value) in &prepared.global_writes {
                        batch.put_cf(cf(&self.db, CF_GLOBAL), key, value);
                    }
                    for (key, value) in &prepared.projection_writes {
                        match value {
                            Some(value) => batch.put_cf(cf(&self.db, CF_PROJECTIONS), key, value),
                            None => batch.delete_cf(cf(&self.db, CF_PROJECTIONS), key),
                        }
                    }
                    group_overlay.extend(prepared.projection_writes);
                    group_heads.insert(stream, prepared.appended.last_seq);
                    global = prepared.appended.last_global_seq;
                    accepted.push(Accepted {
                        reply,
                        appended: prepared.appended,
                    });
                }
                Err(err) => {
                    let _ = reply.send(Err(err));
                }
            }
        }
        if accepted.is_empty() {
            return;
        }
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        match self.db.write_opt(batch, &sync) {
            Ok(()) => {
                self.heads.extend(group_heads);
                self.global_head = global;
                self.head_tx.send_replace(global);
                for done in accepted {
                    let _ = done.reply.send(Ok(done.appended));
                }
            }
            Err(source) => {
                tracing::error!(error = %source, "group commit failed");
                for done in accepted {
                    let _ = done.reply.send(Err(Error::Database {
                        operation: "group commit",
                        source: source.clone(),
                    }));
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn prepare(
        &mut self,
        stream: &str,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
        actor: &str,
        global: u64,
        group_heads: &HashMap<String, u64>,
        group_overlay: &Overlay,
    ) -> Result<Prepared> {
        if events.is_empty() {
            return Err(Error::EmptyAppend(stream.to_string()));
        }
        let head = match group_heads.get(stream).or_else(|| self.heads.get(stream)) {
            Some(head) => *head,
            None => {
                let head = stream_head(&self.db, stream)?;
                self.heads.insert(stream.to_string(), head);
                head
            }
        };
        if !expected.admits(head) {
            return Err(Error::Conflict {
                stream: stream.to_string(),
                expected,
                actual: head,
            });
        }
        let at_ms = self.clock.now_ms();
        let count = events.len() as u64;
        let mut prepared = Prepared {
            appended: Appended {
                first_seq: head + 1,
                last_seq: head + count,
                last_global_seq: global + count,
            },
            event_writes: Vec::with_capacity(events.len()),
            global_writes: Vec::with_capacity(events.len()),
            projection_writes: Overlay::new(),
        };
        for (offset, event) in events.into_iter().enumerate() {
            let seq = head + 1 + offset as u64;
            let global_seq = global + 1 + offset as u64;
            let stored = StoredEvent {
                global_seq,
                at_ms,
                actor: actor.to_string(),
                kind: event.kind,
                payload_version: event.payload_version,
                payload: event.payload,
            };
            let bytes = stored.to_bytes().map_err(|source| Error::Encode {
                kind: stored.kind.clone(),
                source,
            })?;
            let key = keys::event_key(stream, seq);
            let recorded = RecordedEvent::from_stored(stream.to_string(), seq, stored);
            apply_projections(
                &self.db,
                &self.projections,
                &recorded,
                &mut prepared.projection_writes,
                group_overlay,
            )?;
            prepared
                .global_writes
                .push((keys::global_key(global_seq).to_vec(), key.clone()));
            prepared.event_writes.push((key, bytes));
        }
        Ok(prepared)
    }

    /// Drops every projection and replays the whole log into them. Returns the events replayed.
    fn rebuild(&mut self) -> Result<u64> {
        rebuild_projections(&self.db, &self.projections)
    }
}

struct Prepared {
    appended: Appended,
    event_writes: Vec<(Vec<u8>, Vec<u8>)>,
    global_writes: Vec<(Vec<u8>, Vec<u8>)>,
    projection_writes: Overlay,
}

/// Applies every projection to one event, collecting their writes in `pending`.
pub(crate) fn apply_projections(
    db: &DB,
    projections: &[Arc<dyn Projection>],
    event: &RecordedEvent,
    pending: &mut Overlay,
    committed: &Overlay,
) -> Result<()> {
    let read = |key: &[u8]| {
        db.get_cf(cf(db, CF_PROJECTIONS), key)
            .map_err(|err| format!("read of projection state: {err}"))
    };
    for projection in projections {
        let mut state = ProjectionState {
            name: projection.name(),
            pending,
            committed,
            read: &read,
        };
        projection
            .apply(event, &mut state)
            .map_err(|reason| Error::Projection {
                projection: projection.name(),
                stream: event.stream.clone(),
                seq: event.seq,
                reason,
            })?;
    }
    Ok(())
}

/// The rebuild itself, also run at open when an earlier rebuild was interrupted.
pub(crate) fn rebuild_projections(db: &DB, projections: &[Arc<dyn Projection>]) -> Result<u64> {
    let database = |operation| move |source| Error::Database { operation, source };
    let mut start = WriteBatch::default();
    start.put_cf(cf(db, CF_META), META_REBUILD_IN_PROGRESS, [1]);
    // Projection keys start with a u16 length of at most MAX_NAME_LEN: all sort below [0xff].
    start.delete_range_cf(
        cf(db, CF_PROJECTIONS),
        [0u8].as_slice(),
        [0xffu8; 3].as_slice(),
    );
    db.write(start)
        .map_err(database("start of projection rebuild"))?;

    let mut replayed = 0u64;
    let mut after = 0u64;
    loop {
        let events = read_global_range(db, after, REBUILD_CHUNK)?;
        let Some(last) = events.last() else { break };
        after = last.global_seq;
        let mut pending = Overlay::new();
        let empty = Overlay::new();
        for event in &events {
            apply_projections(db, projections, event, &mut pending, &empty)?;
        }
        replayed += events.len() as u64;
        let mut batch = WriteBatch::default();
        for (key, value) in pending {
            match value {
                Some(value) => batch.put_cf(cf(db, CF_PROJECTIONS), key, value),
                None => batch.delete_cf(cf(db, CF_PROJECTIONS), key),
            }
        }
        db.write(batch).map_err(database("projection rebuild"))?;
    }
    let mut done = WriteBatch::default();
    done.delete_cf(cf(db, CF_META), META_REBUILD_IN_PROGRESS);
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    db.write_opt(done, &sync)
        .map_err(database("end of projection rebuild"))?;
    tracing::info!(events = replayed, "projections rebuilt");
    Ok(replayed)
}
