//! `stowage-workflows`: Stowage's domain.
//!
//! It owns clusters, locations, schedule policies, rules, backups, restores and schedules as
//! event-sourced entities, the backup, restore, delete, schedule, sync, verify and prune
//! workflows and their steps, and access to clusters through kube-rs.
//!
//! It builds on `stowage-engine` (durability) and `stowage-storage` (bytes at rest) and knows
//! nothing of HTTP, the CLI or authentication: the `stowage` crate turns requests into the
//! commands defined here.

/// The storage layer, for the `stowage` crate's data mover: the API reaches storage through the
/// domain, as the layering `api → workflows → {engine, storage}` says.
pub use stowage_storage as storage;

pub mod backup;
pub mod catalog;
pub mod cluster;
pub mod credential;
pub mod entity;
pub mod grants;
pub mod inventory;
pub mod kube_ops;
pub mod labels;
pub mod location;
pub mod redact;
pub mod restore;
pub mod rule;
pub mod schedule;
pub mod schedule_policy;
pub mod sealing;
pub mod services;
pub mod sync;
pub mod validate;

pub use catalog::events_json as catalog_event_json;
pub use entity::events_json as entity_event_json;
