//! Stowage's integration tests, in one binary (one link on two cores). Each module talks to real
//! services started by `ops/test`; see docs/testing.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod locations;
mod object_stores;
mod oidc;
mod repository;
mod server;
