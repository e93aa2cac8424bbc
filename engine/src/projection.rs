//! Projections: current-state views derived from the log, updated in the same write batch as the
//! events they derive from, and rebuildable by replaying the whole log.

use std::collections::HashMap;

use crate::event::RecordedEvent;
use crate::keys;

/// A deterministic view of the log.
///
/// `apply` sees every event in global order, once, and changes the projection's keys through
/// [`ProjectionState`]. It must depend only on the event and the state it reads, never on time,
/// randomness or anything outside the database: a rebuild must produce the same bytes.
pub trait Projection: Send + Sync + 'static {
    /// The projection's name, unique in the store; its keys live under it.
    fn name(&self) -> &'static str;

    /// Applies one event. An error rejects the append that carries the event.
    fn apply(&self, event: &RecordedEvent, state: &mut ProjectionState<'_>) -> Result<(), String>;
}

/// Pending projection writes: full projection key → new value (`None`: deleted).
pub(crate) type Overlay = HashMap<Vec<u8>, Option<Vec<u8>>>;

/// Where a value is read from when the overlays do not have it.
pub(crate) type ReadFn<'a> = dyn Fn(&[u8]) -> Result<Option<Vec<u8>>, String> + 'a;

/// One projection's view of its keys while an event is applied: reads see the writes of earlier
/// events that are not committed yet.
pub struct ProjectionState<'a> {
    /// The projection's name, which prefixes its keys.
    pub(crate) name: &'static str,
    /// Writes of the append being built.
    pub(crate) pending: &'a mut Overlay,
    /// Writes of earlier appends in the same group commit.
    pub(crate) committed: &'a Overlay,
    pub(crate) read: &'a ReadFn<'a>,
}

impl ProjectionState<'_> {
    fn full_key(&self, key: &[u8]) -> Vec<u8> {
        keys::projection_key(self.name, key)
    }

    /// The current value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let full = self.full_key(key);
        if let Some(value) = self.pending.get(&full) {
            return Ok(value.clone());
        }
        if let Some(value) = self.committed.get(&full) {
            return Ok(value.clone());
        }
        (self.read)(&full)
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>) {
        let full = self.full_key(key);
        self.pending.insert(full, Some(value));
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: &[u8]) {
        let full = self.full_key(key);
        self.pending.insert(full, None);
    }
}
