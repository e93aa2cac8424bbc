//! `GET /v1/login-options`: what a client needs to get a token for this server, asked before it
//! has one. It names the OIDC issuer the server trusts, the audience its tokens must carry and
//! the public client for the device flow. Nothing in it is secret.

use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Authenticator;

/// How to log in to this server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct LoginOptions {
    /// The OIDC issuer whose tokens the server accepts; absent when only the bootstrap admin
    /// token is accepted.
    pub oidc: Option<OidcLoginOptions>,
}

/// The OIDC issuer a client gets its token from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct OidcLoginOptions {
    /// The issuer's URL (its discovery document is under `/.well-known/openid-configuration`).
    pub issuer: String,
    /// The audience (resource) to ask the token for.
    pub audience: String,
    /// The public client for the device authorization grant (`stowage login --device`), if the
    /// server was given one.
    pub device_client_id: Option<String>,
}

impl LoginOptions {
    /// The options of a server authenticating with `auth`.
    pub fn of(auth: &Authenticator) -> Self {
        Self {
            oidc: auth.oidc_config().map(|config| OidcLoginOptions {
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                device_client_id: config.device_client_id.clone(),
            }),
        }
    }
}

/// How to log in: the OIDC issuer, audience and device-flow client. Needs no token.
#[utoipa::path(
    get,
    path = "/v1/login-options",
    tag = "auth",
    security(()),
    responses((status = 200, description = "How to get a token for this server", body = LoginOptions)),
)]
pub(crate) fn login_options(auth: &Authenticator) -> warp::reply::Json {
    warp::reply::json(&LoginOptions::of(auth))
}
