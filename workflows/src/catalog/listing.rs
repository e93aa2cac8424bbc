//! Pages of the catalog: which stored records a listing returns, read without decoding more of
//! each record than its filters need.
//!
//! A record is stored as the JSON the API answers with. To decide whether a record belongs on a
//! page, a listing decodes only its head ([`BackupHead`], [`RestoreHead`]: owner, shares and the
//! fields filters test); the rest (spec, progress, ...) is skipped by the parser, not built.
//! Typed pages then decode only the records that made the page; JSON pages ([`JsonPage`])
//! splice the stored bytes into the answer without decoding them at all.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::projection::{self, CATALOG_PROJECTION};
use super::{
    BackupRecord, BackupStatus, Catalog, CatalogError, CatalogPage, CatalogQuery, RestoreRecord,
    RestoreStatus,
};
use crate::entity::Share;

/// Records scanned per read of the database while a listing fills a page.
const SCAN_BATCH: usize = 256;

/// What a listing reads of a stored backup: who may see it and what its filters test.
#[derive(Debug, Clone, Deserialize)]
pub struct BackupHead {
    /// Its name.
    pub name: String,
    /// Who asked for it.
    pub owner: String,
    /// Who else may use it.
    #[serde(default)]
    pub shares: Vec<Share>,
    /// Free labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The cluster it protects.
    pub cluster: String,
    /// The location it is stored in.
    pub location: String,
    /// The schedule that made it.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Where it stands.
    pub status: BackupStatus,
}

/// What a listing reads of a stored restore.
#[derive(Debug, Clone, Deserialize)]
pub struct RestoreHead {
    /// Its name.
    pub name: String,
    /// Who asked for it.
    pub owner: String,
    /// Who else may see it.
    #[serde(default)]
    pub shares: Vec<Share>,
    /// The backup restored.
    pub backup: String,
    /// The location read.
    pub location: String,
    /// The cluster restored into.
    pub cluster: String,
    /// Where it stands.
    pub status: RestoreStatus,
}

/// A page of records as stored: each item is one record's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPage {
    /// The records' JSON, by id.
    pub items: Vec<Vec<u8>>,
    /// Where the next page starts, if there is one.
    pub next_after: Option<String>,
}

impl JsonPage {
    /// The page as the API answers it: `{"items":[...],"next_after":...}`.
    pub fn to_json(&self) -> Vec<u8> {
        let size = self.items.iter().map(|item| item.len() + 1).sum::<usize>() + 64;
        let mut body = Vec::with_capacity(size);
        body.extend_from_slice(b"{\"items\":[");
        for (n, item) in self.items.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(item);
        }
        body.extend_from_slice(b"],\"next_after\":");
        match &self.next_after {
            // Ids are the catalog's own (UUIDs), but they are quoted by the JSON encoder all
            // the same, so that no id can break the document.
            Some(after) => body.extend_from_slice(
                serde_json::Value::String(after.clone())
                    .to_string()
                    .as_bytes(),
            ),
            None => body.extend_from_slice(b"null"),
        }
        body.push(b'}');
        body
    }
}

/// The ids and stored JSON of one page.
struct Scanned {
    items: Vec<(String, Vec<u8>)>,
    next_after: Option<String>,
}

impl Catalog {
    /// A page of backups that match `query` and that `visible` admits. With a schedule,
    /// cluster, location or status filter it reads that field's index (in that order of
    /// preference), so it reads only the records that match it.
    pub fn backups(
        &self,
        query: &CatalogQuery,
        visible: impl Fn(&BackupHead) -> bool,
    ) -> Result<CatalogPage<BackupRecord>, CatalogError> {
        typed(self.scan_backups(query, visible)?)
    }

    /// [`Catalog::backups`], each record as stored (the JSON the API answers with).
    pub fn backups_json(
        &self,
        query: &CatalogQuery,
        visible: impl Fn(&BackupHead) -> bool,
    ) -> Result<JsonPage, CatalogError> {
        Ok(stored(self.scan_backups(query, visible)?))
    }

    /// A page of restores that match `query` and that `visible` admits.
    pub fn restores(
        &self,
        query: &CatalogQuery,
        visible: impl Fn(&RestoreHead) -> bool,
    ) -> Result<CatalogPage<RestoreRecord>, CatalogError> {
        typed(self.scan_restores(query, visible)?)
    }

    /// [`Catalog::restores`], each record as stored.
    pub fn restores_json(
        &self,
        query: &CatalogQuery,
        visible: impl Fn(&RestoreHead) -> bool,
    ) -> Result<JsonPage, CatalogError> {
        Ok(stored(self.scan_restores(query, visible)?))
    }

    fn scan_backups(
        &self,
        query: &CatalogQuery,
        visible: impl Fn(&BackupHead) -> bool,
    ) -> Result<Scanned, CatalogError> {
        let wanted = |head: &BackupHead| {
            query.matches(
                head.status.as_str(),
                &head.cluster,
                &head.location,
                &head.name,
            ) && query
                .schedule
                .as_deref()
                .is_none_or(|schedule| head.schedule.as_deref() == Some(schedule))
                && query
                    .labels
                    .iter()
                    .all(|(key, value)| head.labels.get(key) == Some(value))
                && visible(head)
        };
        let index = [
            ("schedule", &query.schedule),
            ("cluster", &query.cluster),
            ("location", &query.location),
            ("status", &query.status),
        ]
        .into_iter()
        .find_map(|(field, value)| value.as_deref().map(|value| (field, value)));
        match index {
            Some((field, value)) => self.scan(
                &projection::index_prefix(field, value),
                query,
                |_, id| {
                    self.store
                        .projection_get(CATALOG_PROJECTION, &projection::backup_key(id))
                        .map_err(CatalogError::from)
                },
                wanted,
            ),
            None => self.scan(
                projection::BACKUP_PREFIX,
                query,
                |value, _| Ok(Some(value)),
                wanted,
            ),
        }
    }

    fn scan_restores(
        &self,
        query: &CatalogQuery,
        visible: impl Fn(&RestoreHead) -> bool,
    ) -> Result<Scanned, CatalogError> {
        self.scan(
            projection::RESTORE_PREFIX,
            query,
            |value, _| Ok(Some(value)),
            |head: &RestoreHead| {
                query.matches(
                    head.status.as_str(),
                    &head.cluster,
                    &head.location,
                    &head.name,
                ) && query
                    .backup
                    .as_deref()
                    .is_none_or(|backup| head.backup == backup)
                    && visible(head)
            },
        )
    }

    /// Scans the keys under `prefix` (`<prefix><id>`) in id order, from after `query.after`,
    /// until a page is full; `load` gives a record's stored JSON from its key's value and id
    /// (`None`: gone, skip it), and `wanted` decides from the record's head.
    fn scan<H: serde::de::DeserializeOwned>(
        &self,
        prefix: &[u8],
        query: &CatalogQuery,
        load: impl Fn(Vec<u8>, &str) -> Result<Option<Vec<u8>>, CatalogError>,
        wanted: impl Fn(&H) -> bool,
    ) -> Result<Scanned, CatalogError> {
        let limit = query.limit.max(1);
        let mut items: Vec<(String, Vec<u8>)> = Vec::new();
        let mut cursor: Option<Vec<u8>> = query.after.as_ref().map(|after| {
            let mut key = prefix.to_vec();
            key.extend_from_slice(after.as_bytes());
            key
        });
        loop {
            let batch = self.store.projection_page(
                CATALOG_PROJECTION,
                prefix,
                cursor.as_deref(),
                SCAN_BATCH,
            )?;
            let exhausted = batch.len() < SCAN_BATCH;
            for (key, value) in batch {
                let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                cursor = Some(key);
                let Some(json) = load(value, &id)? else {
                    continue;
                };
                let head: H = decode(&json, &id)?;
                if !wanted(&head) {
                    continue;
                }
                if items.len() == limit {
                    let next_after = items.last().map(|(id, _)| id.clone());
                    return Ok(Scanned { items, next_after });
                }
                items.push((id, json));
            }
            if exhausted {
                return Ok(Scanned {
                    items,
                    next_after: None,
                });
            }
        }
    }
}

/// The page with each record decoded.
fn typed<T: serde::de::DeserializeOwned>(scanned: Scanned) -> Result<CatalogPage<T>, CatalogError> {
    let items = scanned
        .items
        .iter()
        .map(|(id, json)| decode(json, id))
        .collect::<Result<_, _>>()?;
    Ok(CatalogPage {
        items,
        next_after: scanned.next_after,
    })
}

/// The page as stored.
fn stored(scanned: Scanned) -> JsonPage {
    JsonPage {
        items: scanned.items.into_iter().map(|(_, json)| json).collect(),
        next_after: scanned.next_after,
    }
}

/// A stored record, or its head; `id` names it in the error.
pub(super) fn decode<T: serde::de::DeserializeOwned>(
    value: &[u8],
    id: &str,
) -> Result<T, CatalogError> {
    serde_json::from_slice(value).map_err(|err| CatalogError::Corrupt {
        key: id.to_string(),
        reason: err.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_json_page_is_the_stored_records_in_an_envelope() {
        let page = JsonPage {
            items: vec![br#"{"id":"a"}"#.to_vec(), br#"{"id":"b","x":[1]}"#.to_vec()],
            next_after: Some("b\"".into()),
        };
        let parsed: serde_json::Value = serde_json::from_slice(&page.to_json()).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"items": [{"id": "a"}, {"id": "b", "x": [1]}], "next_after": "b\""})
        );
        let empty = JsonPage {
            items: Vec::new(),
            next_after: None,
        };
        assert_eq!(
            empty.to_json(),
            br#"{"items":[],"next_after":null}"#.to_vec()
        );
    }
}
