//! `stowage`: the server and the command-line client.
//!
//! It owns the REST API (warp), and will own authentication and authorization, the CLI's client
//! commands, the web UI's assets; and the `stowage mover` entry point run inside data-mover Jobs.
//!
//! It is thin: it validates a request, hands a command to `stowage-workflows` and reads the
//! engine's projections. It does not reach RocksDB, object stores or clusters by itself.

pub mod mover;
mod server;

pub use server::{ServerConfig, ServerError, routes, serve};
