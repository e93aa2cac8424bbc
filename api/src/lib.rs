//! `stowage`: the server and the command-line client.
//!
//! It owns the REST API (warp), authentication (OIDC bearer tokens and the bootstrap admin
//! token) and authorization, the audit stream, the CLI's client commands, the `stowage mover`
//! entry point run inside data-mover Jobs, and will own the web UI's assets.
//!
//! It is thin: it validates a request, hands a command to `stowage-workflows` and reads the
//! engine's projections. It does not reach RocksDB, object stores or clusters by itself.

pub mod audit;
pub mod auth;
pub mod authz;
pub mod backups;
pub mod catalog_shares;
pub mod catalog_state;
pub mod cli;
pub mod clusters;
pub mod entities;
pub mod error;
mod grants;
pub mod listing;
pub mod login_options;
pub mod master_key;
pub mod metrics;
pub mod mover;
pub mod openapi;
pub mod preconditions;
pub mod private_file;
pub mod restores;
pub mod runs;
pub mod schedules;
mod server;
pub mod sync;
pub mod tls;

pub use catalog_state::{WorkflowSettings, server_runtime};
pub use server::{
    AppState, ServerConfig, ServerError, Started, open_store, open_store_with_clock, routes, serve,
};
