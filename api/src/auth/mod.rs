//! Who is calling: turns the `Authorization: Bearer` header of a request into a [`Principal`],
//! from an OIDC access token or the bootstrap admin token, and maps groups to roles.
//!
//! What a principal may do with each object is decided elsewhere (authorization); this module
//! only establishes identity and role.

mod bootstrap;
mod oidc;

use std::sync::Arc;

pub use bootstrap::{BOOTSTRAP_SUBJECT, Bootstrap, BootstrapError, BootstrapToken};
pub use oidc::{OidcConfig, OidcVerifier, VerifiedToken};

/// A caller's standing on the server as a whole.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees and acts on its own objects and those shared with it.
    Viewer,
    /// Also registers clusters and locations and runs backups and restores.
    Operator,
    /// Sees and does everything.
    Admin,
}

impl Role {
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

/// Which groups hold which role; a caller in none of them is a viewer.
#[derive(Debug, Clone, Default)]
pub struct RoleMapping {
    /// Groups whose members are admins.
    pub admin_groups: Vec<String>,
    /// Groups whose members are operators.
    pub operator_groups: Vec<String>,
}

impl RoleMapping {
    /// The highest role any of `groups` holds.
    pub fn role_of(&self, groups: &[String]) -> Role {
        let member_of = |names: &[String]| groups.iter().any(|group| names.contains(group));
        if member_of(&self.admin_groups) {
            Role::Admin
        } else if member_of(&self.operator_groups) {
            Role::Operator
        } else {
            Role::Viewer
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Principal {
    /// Who: the token's subject, or [`BOOTSTRAP_SUBJECT`].
    pub subject: String,
    /// The groups the token carries.
    pub groups: Vec<String>,
    /// The role those groups give.
    pub role: Role,
}

impl Principal {
    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Why a request was not authenticated. Every variant says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("no bearer token: send `Authorization: Bearer <token>` (`stowage login` stores one)")]
    Missing,
    /// The header or the token is not well formed.
    #[error("malformed bearer token: {0}")]
    Malformed(String),
    /// The token has expired.
    #[error("the token has expired; log in again")]
    Expired,
    /// The token is not valid yet (`nbf` in the future).
    #[error("the token is not valid yet (nbf is in the future; check the clocks)")]
    NotYetValid,
    /// The token is for another audience.
    #[error("the token is for another audience; Stowage accepts audience `{expected}`")]
    WrongAudience {
        /// The audience Stowage accepts.
        expected: String,
    },
    /// The token comes from another issuer.
    #[error("the token was issued by `{found}`; Stowage trusts issuer `{expected}`")]
    WrongIssuer {
        /// The token's `iss`.
        found: String,
        /// The issuer Stowage trusts.
        expected: String,
    },
    /// The signature does not match the token.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// The token names a signing key the issuer does not publish.
    #[error("the token is signed with key `{0}`, which the issuer does not publish")]
    UnknownKey(String),
    /// A token that is neither the bootstrap token nor accepted by an issuer, with no issuer set.
    #[error("unknown token: no OIDC issuer is configured and it is not the bootstrap token")]
    Unknown,
    /// The OIDC provider could not be reached or answered nonsense.
    #[error("OIDC provider: {0}")]
    Provider(String),
}

impl AuthError {
    fn from_jwt(err: jsonwebtoken::errors::Error, config: &OidcConfig) -> Self {
        use jsonwebtoken::errors::ErrorKind;
        match err.kind() {
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidAudience => Self::WrongAudience {
                expected: config.audience.clone(),
            },
            ErrorKind::InvalidIssuer => Self::WrongIssuer {
                found: "another issuer".into(),
                expected: config.issuer.clone(),
            },
            ErrorKind::InvalidSignature => Self::BadSignature,
            _ => Self::Malformed(err.to_string()),
        }
    }

    /// Whether the fault is the server's (its provider), not the caller's token.
    pub fn is_server_side(&self) -> bool {
        matches!(self, Self::Provider(_))
    }
}

/// Authenticates requests: the bootstrap token first, then the OIDC issuer if one is set.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    bootstrap: Option<Arc<BootstrapToken>>,
    oidc: Option<Arc<OidcVerifier>>,
    roles: RoleMapping,
}

impl Authenticator {
    /// An authenticator accepting `bootstrap` and tokens of `oidc`, with `roles` for groups.
    pub fn new(
        bootstrap: Option<BootstrapToken>,
        oidc: Option<OidcVerifier>,
        roles: RoleMapping,
    ) -> Self {
        Self {
            bootstrap: bootstrap.map(Arc::new),
            oidc: oidc.map(Arc::new),
            roles,
        }
    }

    /// The OIDC issuer whose tokens are accepted, if any.
    pub fn oidc_config(&self) -> Option<&OidcConfig> {
        self.oidc.as_deref().map(OidcVerifier::config)
    }

    /// The principal behind an `Authorization` header value.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                AuthError::Malformed("the Authorization header is not `Bearer <token>`".into())
            })?;
        if let Some(bootstrap) = &self.bootstrap
            && bootstrap.matches(token)
        {
            return Ok(Principal {
                subject: BOOTSTRAP_SUBJECT.into(),
                groups: Vec::new(),
                role: Role::Admin,
            });
        }
        let Some(oidc) = &self.oidc else {
            return Err(AuthError::Unknown);
        };
        let verified = oidc.verify(token).await?;
        let role = self.roles.role_of(&verified.groups);
        Ok(Principal {
            subject: verified.subject,
            groups: verified.groups,
            role,
        })
    }
}
