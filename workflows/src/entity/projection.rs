//! The `entities` projection: the current record of every entity, and the index that keeps names
//! unique per kind and owner.
//!
//! Keys: `rec/<kind>/<id>` → the [`Record`] as JSON; `name/<kind>/<name>/<owner>` → id (a name
//! holds no `/`, so the owner, which may, is the rest of the key).

use stowage_engine::{Projection, ProjectionState, RecordedEvent};

use super::events::{Created, Deleted, Shared, Updated};
use super::{Kind, Record};

/// The projection's name.
pub const ENTITIES_PROJECTION: &str = "entities";

/// A refusal reason that starts with this is a name already taken.
pub(crate) const NAME_TAKEN: &str = "name taken: ";

pub(crate) fn record_key(kind: Kind, id: &str) -> Vec<u8> {
    format!("rec/{}/{id}", kind.as_str()).into_bytes()
}

pub(crate) fn records_prefix(kind: Kind) -> Vec<u8> {
    format!("rec/{}/", kind.as_str()).into_bytes()
}

fn name_key(kind: Kind, name: &str, owner: &str) -> Vec<u8> {
    format!("name/{}/{name}/{owner}", kind.as_str()).into_bytes()
}

fn at(event: &RecordedEvent) -> String {
    chrono::DateTime::from_timestamp_millis(event.at_ms)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Maintains [`Record`]s from entity events.
#[derive(Debug, Default)]
pub struct EntitiesProjection;

impl Projection for EntitiesProjection {
    fn name(&self) -> &'static str {
        ENTITIES_PROJECTION
    }

    fn apply(&self, event: &RecordedEvent, state: &mut ProjectionState<'_>) -> Result<(), String> {
        let Some(rest) = event.stream.strip_prefix("entity/") else {
            return Ok(());
        };
        let Some((kind, id)) = rest.split_once('/') else {
            return Err(format!("entity stream `{}` has no id", event.stream));
        };
        let kind = Kind::parse(kind).ok_or_else(|| format!("unknown entity kind `{kind}`"))?;
        let key = record_key(kind, id);
        if event.is::<Created>() {
            let created: Created = event.decode().map_err(|err| err.to_string())?;
            let name_key = name_key(kind, &created.name, &created.owner);
            if state.get(&name_key)?.is_some() {
                return Err(format!("{NAME_TAKEN}{}", created.name));
            }
            let spec = serde_json::from_str(&created.spec).map_err(|err| err.to_string())?;
            let record = Record {
                kind,
                id: id.to_string(),
                name: created.name,
                owner: created.owner,
                shares: Vec::new(),
                labels: created.labels,
                spec,
                version: event.seq,
                created_at: at(event),
                updated_at: at(event),
                updated_by: event.actor.clone(),
            };
            state.put(&name_key, id.as_bytes().to_vec());
            return put(state, &key, &record);
        }
        let Some(bytes) = state.get(&key)? else {
            return Err(format!("{} has events but was never created", event.stream));
        };
        let mut record: Record = serde_json::from_slice(&bytes).map_err(|err| err.to_string())?;
        record.version = event.seq;
        record.updated_at = at(event);
        record.updated_by = event.actor.clone();
        if event.is::<Updated>() {
            let updated: Updated = event.decode().map_err(|err| err.to_string())?;
            record.spec = serde_json::from_str(&updated.spec).map_err(|err| err.to_string())?;
            record.labels = updated.labels;
        } else if event.is::<Shared>() {
            let shared: Shared = event.decode().map_err(|err| err.to_string())?;
            record.shares = shared.shares;
        } else if event.is::<Deleted>() {
            state.delete(&key);
            state.delete(&name_key(kind, &record.name, &record.owner));
            return Ok(());
        }
        put(state, &key, &record)
    }
}

fn put(state: &mut ProjectionState<'_>, key: &[u8], record: &Record) -> Result<(), String> {
    state.put(
        key,
        serde_json::to_vec(record).map_err(|err| err.to_string())?,
    );
    Ok(())
}
