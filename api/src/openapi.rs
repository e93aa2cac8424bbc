//! The OpenAPI 3 document served at `/v1/openapi.json`, generated from the handlers' own
//! annotations and the types they answer with, and the table of every route the server has
//! (a test holds the two together).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::audit::{AuditEvent, AuditPage, AuditServerSentEvent};
use crate::backups::CreateBackup;
use crate::clusters::ClusterProbe;
use crate::entities::{CreateBody, SharesBody, UpdateBody};
use crate::error::ApiError;
use crate::restores::CreateRestore;
use crate::runs::{RunItem, RunPage};

mod common_errors;
use common_errors::CommonErrors;

/// Every route the server answers, as (method, path template).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/v1/openapi.json"),
    ("get", "/v1/events"),
    ("get", "/v1/whoami"),
    ("get", "/v1/login-options"),
    ("post", "/v1/clusters"),
    ("get", "/v1/clusters"),
    ("get", "/v1/clusters/{id}"),
    ("put", "/v1/clusters/{id}"),
    ("delete", "/v1/clusters/{id}"),
    ("put", "/v1/clusters/{id}/shares"),
    ("post", "/v1/locations"),
    ("get", "/v1/locations"),
    ("get", "/v1/locations/{id}"),
    ("put", "/v1/locations/{id}"),
    ("delete", "/v1/locations/{id}"),
    ("put", "/v1/locations/{id}/shares"),
    ("post", "/v1/credentials"),
    ("get", "/v1/credentials"),
    ("get", "/v1/credentials/{id}"),
    ("put", "/v1/credentials/{id}"),
    ("delete", "/v1/credentials/{id}"),
    ("put", "/v1/credentials/{id}/shares"),
    ("get", "/v1/clusters/{id}/status"),
    ("get", "/v1/clusters/{id}/resources"),
    ("post", "/v1/rules"),
    ("get", "/v1/rules"),
    ("get", "/v1/rules/{id}"),
    ("put", "/v1/rules/{id}"),
    ("delete", "/v1/rules/{id}"),
    ("put", "/v1/rules/{id}/shares"),
    ("post", "/v1/schedule-policies"),
    ("get", "/v1/schedule-policies"),
    ("get", "/v1/schedule-policies/{id}"),
    ("put", "/v1/schedule-policies/{id}"),
    ("delete", "/v1/schedule-policies/{id}"),
    ("put", "/v1/schedule-policies/{id}/shares"),
    ("post", "/v1/backup-schedules"),
    ("get", "/v1/backup-schedules"),
    ("get", "/v1/backup-schedules/{id}"),
    ("put", "/v1/backup-schedules/{id}"),
    ("delete", "/v1/backup-schedules/{id}"),
    ("put", "/v1/backup-schedules/{id}/shares"),
    ("post", "/v1/backup-schedules/{id}/suspend"),
    ("post", "/v1/backup-schedules/{id}/resume"),
    ("post", "/v1/backups"),
    ("get", "/v1/backups"),
    ("get", "/v1/backups/{id}"),
    ("delete", "/v1/backups/{id}"),
    ("post", "/v1/backups/{id}/cancel"),
    ("post", "/v1/backups/{id}/retry"),
    ("put", "/v1/backups/{id}/shares"),
    ("post", "/v1/restores"),
    ("get", "/v1/restores"),
    ("get", "/v1/restores/{id}"),
    ("get", "/v1/restores/{id}/results"),
    ("post", "/v1/restores/{id}/cancel"),
    ("put", "/v1/restores/{id}/shares"),
    ("get", "/v1/workflows"),
    ("get", "/v1/workflows/{id}"),
    ("get", "/v1/workflows/{id}/events"),
    ("post", "/v1/locations/{id}/sync"),
];

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Stowage",
        description = "Back up Kubernetes applications with their data; restore them anywhere.",
    ),
    paths(
        crate::server::healthz,
        crate::server::readyz,
        crate::metrics::metrics_reply,
        openapi_json,
        crate::audit::handle,
        crate::server::whoami,
        crate::login_options::login_options,
        crate::entities::cluster_docs::create,
        crate::entities::cluster_docs::list,
        crate::entities::cluster_docs::get,
        crate::entities::cluster_docs::update,
        crate::entities::cluster_docs::delete,
        crate::entities::cluster_docs::share,
        crate::entities::location_docs::create,
        crate::entities::location_docs::list,
        crate::entities::location_docs::get,
        crate::entities::location_docs::update,
        crate::entities::location_docs::delete,
        crate::entities::location_docs::share,
        crate::entities::credential_docs::create,
        crate::entities::credential_docs::list,
        crate::entities::credential_docs::get,
        crate::entities::credential_docs::update,
        crate::entities::credential_docs::delete,
        crate::entities::credential_docs::share,
        crate::clusters::status,
        crate::clusters::resources,
        crate::entities::rule_docs::create,
        crate::entities::rule_docs::list,
        crate::entities::rule_docs::get,
        crate::entities::rule_docs::update,
        crate::entities::rule_docs::delete,
        crate::entities::rule_docs::share,
        crate::entities::schedule_policy_docs::create,
        crate::entities::schedule_policy_docs::list,
        crate::entities::schedule_policy_docs::get,
        crate::entities::schedule_policy_docs::update,
        crate::entities::schedule_policy_docs::delete,
        crate::entities::schedule_policy_docs::share,
        crate::entities::backup_schedule_docs::create,
        crate::entities::backup_schedule_docs::list,
        crate::entities::backup_schedule_docs::get,
        crate::entities::backup_schedule_docs::update,
        crate::entities::backup_schedule_docs::delete,
        crate::entities::backup_schedule_docs::share,
        crate::schedules::suspend,
        crate::schedules::resume,
        crate::backups::create,
        crate::backups::list,
        crate::backups::get,
        crate::backups::delete,
        crate::backups::cancel,
        crate::backups::retry,
        crate::catalog_shares::share_backup,
        crate::restores::create,
        crate::restores::list,
        crate::restores::get,
        crate::restores::results,
        crate::restores::cancel,
        crate::catalog_shares::share_restore,
        crate::runs::list,
        crate::runs::get,
        crate::runs::events,
        crate::sync::sync,
    ),
    components(schemas(ApiError, AuditEvent, AuditPage, AuditServerSentEvent, ClusterProbe, CreateBody, UpdateBody, SharesBody, CreateBackup, CreateRestore, RunItem, RunPage)),
    modifiers(&BearerAuth, &CommonErrors),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT (OIDC access token) or the bootstrap admin token")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document of this server.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "This document", content_type = "application/json")),
)]
pub fn openapi_json() -> serde_json::Value {
    // Invariant: the document is built from static annotations of serializable types.
    serde_json::to_value(ApiDoc::openapi()).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_route_is_in_the_document_and_nothing_else() {
        let document = openapi_json();
        let paths = document["paths"].as_object().unwrap();
        for (method, path) in ROUTES {
            assert!(
                paths
                    .get(*path)
                    .and_then(|item| item.get(*method))
                    .is_some(),
                "{method} {path} is served but missing from /v1/openapi.json"
            );
        }
        let documented: usize = paths
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(
            documented,
            ROUTES.len(),
            "the document lists routes the server lacks"
        );
        assert!(document["components"]["schemas"]["AuditPage"].is_object());
    }
}
