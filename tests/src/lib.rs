//! `stowage-tests`: what Stowage's tests stand on.
//!
//! It owns the harness that finds the real test services started by `ops/test` (S3 servers,
//! Azurite, the GCS emulator, the OIDC provider) and fails loudly when one is missing, an API
//! server on a loopback port for HTTP tests, a fault-injecting proxy to put in front of a store, the test-only translation that lets
//! object_store's GCS client talk to the GCS emulator, and `kubesim`, a Kubernetes API server
//! for tests that kubectl and kube-rs use unchanged.
//!
//! Product crates never depend on it.

pub mod api_server;
pub mod bench;
pub mod fault_proxy;
pub mod gcs_xml;
pub mod kubesim;
pub mod services;
