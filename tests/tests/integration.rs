//! Stowage's integration tests, in one binary (one link on two cores). Each module talks to real
//! services started by `ops/test`; see docs/testing.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod auth;
mod backup;
mod entity_routes;
mod kubesim;
mod locations;
mod login;
mod meta_routes;
mod object_stores;
mod repository;
mod resource_packs;
mod rules;
mod server;
mod staged_backups;
mod store_faults;
mod tls;
