//! Authorization: what a principal may do with an entity, from its role, ownership and shares.
//!
//! Admins may do everything. Otherwise the owner has full rights, and a share to the caller (as a
//! user) or to one of its groups gives its level. Creating needs the operator role. An entity the
//! caller may not see is answered as not found, so that its existence does not leak.

use stowage_workflows::entity::{Grantee, Record, Share, ShareLevel};

use crate::auth::{Principal, Role};
use crate::error::ApiError;

/// The highest level `principal` holds on `record`, if any.
pub fn level(principal: &Principal, record: &Record) -> Option<ShareLevel> {
    level_of(principal, &record.owner, &record.shares)
}

/// The highest level `principal` holds on something owned by `owner` and shared as `shares`.
pub fn level_of(principal: &Principal, owner: &str, shares: &[Share]) -> Option<ShareLevel> {
    if principal.is_admin() || owner == principal.subject {
        return Some(ShareLevel::Full);
    }
    shares
        .iter()
        .filter(|share| match &share.to {
            Grantee::User(subject) => *subject == principal.subject,
            Grantee::Group(group) => principal.groups.contains(group),
        })
        .map(|share| share.level)
        .max()
}

/// Whether `principal` may see `record`.
pub fn visible(principal: &Principal, record: &Record) -> bool {
    level(principal, record).is_some()
}

/// Refuses unless `principal` holds at least `needed` on `record`: 404 when it may not see it,
/// 403 when it may see it but not do this.
pub fn require(principal: &Principal, record: &Record, needed: ShareLevel) -> Result<(), ApiError> {
    require_on(
        principal,
        Owned {
            kind: record.kind.as_str(),
            id: &record.id,
            name: &record.name,
            owner: &record.owner,
            shares: &record.shares,
        },
        needed,
    )
}

/// Who holds what on one object, for [`require_on`].
#[derive(Debug, Clone, Copy)]
pub struct Owned<'a> {
    /// Its kind, as errors name it.
    pub kind: &'a str,
    /// Its id.
    pub id: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its owner.
    pub owner: &'a str,
    /// Its shares.
    pub shares: &'a [Share],
}

/// Refuses unless `principal` holds at least `needed` on `object`: 404 when it may not see it,
/// 403 when it may see it but not do this.
pub fn require_on(
    principal: &Principal,
    object: Owned<'_>,
    needed: ShareLevel,
) -> Result<(), ApiError> {
    match level_of(principal, object.owner, object.shares) {
        None => Err(not_found(object.kind, object.id)),
        Some(held) if held >= needed => Ok(()),
        Some(held) => Err(ApiError::forbidden(format!(
            "you hold {held:?} on {} `{}`; this needs {needed:?}",
            object.kind, object.name
        ))
        .with_details(serde_json::json!({ "held": held, "needed": needed }))),
    }
}

/// Refuses unless `principal` may create entities.
pub fn require_operator(principal: &Principal) -> Result<(), ApiError> {
    if principal.role >= Role::Operator {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "creating needs the operator or admin role; ask an admin to add you to an operator group",
        ))
    }
}

/// The answer for an entity that does not exist or may not be seen.
pub fn not_found(kind: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("no {kind} with id `{id}`"))
}
