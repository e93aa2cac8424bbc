//! Entities: the named, owned, shareable objects users register and refer to (clusters,
//! locations, credentials, rules, ...), each an event stream `entity/<kind>/<id>` whose sequence
//! is the entity's version, and a projection holding their current records.
//!
//! This module owns the lifecycle every kind shares (create, update with optimistic concurrency,
//! share, delete; unique names per owner) and the record's shape; each kind's module owns its spec
//! and how it is validated.

mod events;
mod projection;
mod repository;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use events::events_json;
pub use projection::{ENTITIES_PROJECTION, EntitiesProjection};
pub use repository::{
    Entities, EntityError, ListQuery, NewEntity, Page, SealingReport, sealing_report,
};

/// What sort of entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A registered Kubernetes cluster.
    Cluster,
    /// A backup location.
    Location,
    /// Cloud credentials.
    Credential,
    /// Commands run in pods before and after a backup.
    Rule,
    /// When scheduled backups run and how many copies they keep.
    SchedulePolicy,
    /// A backup made again and again on a schedule policy.
    BackupSchedule,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 6] = [
        Self::Cluster,
        Self::Location,
        Self::Credential,
        Self::Rule,
        Self::SchedulePolicy,
        Self::BackupSchedule,
    ];

    /// The kind's name, as in streams and URLs (singular).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cluster => "cluster",
            Self::Location => "location",
            Self::Credential => "credential",
            Self::Rule => "rule",
            Self::SchedulePolicy => "schedule_policy",
            Self::BackupSchedule => "backup_schedule",
        }
    }

    /// The kind's collection in the REST API (`/v1/<collection>`).
    pub fn collection(self) -> &'static str {
        match self {
            Self::Cluster => "clusters",
            Self::Location => "locations",
            Self::Credential => "credentials",
            Self::Rule => "rules",
            Self::SchedulePolicy => "schedule-policies",
            Self::BackupSchedule => "backup-schedules",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// Who a share is for; in JSON `{"user": "alice"}` or `{"group": "data-team"}`. (Externally
/// tagged: event payloads are bincode, which cannot read internally or adjacently tagged enums.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grantee {
    /// One user, by subject.
    User(String),
    /// Every member of a group.
    Group(String),
}

/// How much a share allows, each level including the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareLevel {
    /// See it.
    View,
    /// Also restore from it (backups) or into it (clusters).
    Restore,
    /// Also change, share and delete it.
    Full,
}

/// One share of an entity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Share {
    /// Who.
    pub to: Grantee,
    /// How much.
    pub level: ShareLevel,
}

/// An entity as it stands now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Its kind.
    pub kind: Kind,
    /// Its id (a UUID v7: sorts by creation time).
    pub id: String,
    /// Its name, unique among the owner's entities of this kind.
    pub name: String,
    /// Who owns it (a subject).
    pub owner: String,
    /// Who else may use it, and how.
    pub shares: Vec<Share>,
    /// Free labels, for filtering.
    pub labels: BTreeMap<String, String>,
    /// The kind's settings, with secrets sealed.
    pub spec: serde_json::Value,
    /// Its version: the sequence of its last event. Updates name the version they change.
    pub version: u64,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
    /// Who changed it last.
    pub updated_by: String,
}

/// The id of the entity of `kind` that `event` created, if it is such an event.
pub fn created_by(event: &stowage_engine::RecordedEvent, kind: Kind) -> Option<&str> {
    use stowage_engine::EventPayload;
    let prefix = stream(kind, "");
    event
        .stream
        .strip_prefix(prefix.as_str())
        .filter(|_| event.kind == events::Created::KIND)
}

/// The stream of entity `id` of `kind`.
pub fn stream(kind: Kind, id: &str) -> String {
    format!("entity/{}/{id}", kind.as_str())
}
