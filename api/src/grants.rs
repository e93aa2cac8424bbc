//! Cluster grants at the door: a backup, restore or backup schedule on a cluster shared with the
//! caller is refused (403, nothing started) when it reaches namespaces the cluster's grants do
//! not give the caller; the application view shows it only those namespaces; and only the
//! cluster's owner or an admin may change its grants.
//!
//! The cluster's owner and admins are not bound by grants; everyone else who may use the cluster
//! through a share is. Matching lives in `stowage_workflows::grants`.

use stowage_workflows::backup::BackupSpec;
use stowage_workflows::entity::Record;
use stowage_workflows::grants::{self, Caller, Refusal};

use crate::auth::Principal;
use crate::error::ApiError;

/// What is being done with the namespaces, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// Backing up from them (a backup or a schedule).
    BackUp,
    /// Restoring into them.
    Restore,
}

impl Use {
    fn phrase(self) -> &'static str {
        match self {
            Self::BackUp => "back up from",
            Self::Restore => "restore into",
        }
    }
}

/// Whether `principal` is bound by the grants of `cluster`: it is neither an admin nor the
/// cluster's owner.
pub(crate) fn bound(principal: &Principal, cluster: &Record) -> bool {
    !principal.is_admin() && cluster.owner != principal.subject
}

fn caller(principal: &Principal) -> Caller<'_> {
    Caller {
        subject: &principal.subject,
        groups: &principal.groups,
    }
}

/// Keeps in `namespaces` (the application view's) only those `principal` may use on `cluster`.
pub(crate) fn keep_granted<T>(
    principal: &Principal,
    cluster: &Record,
    namespaces: &mut Vec<T>,
    name: impl Fn(&T) -> &str,
) {
    if !bound(principal, cluster) {
        return;
    }
    let grants = grants::of_spec(&cluster.spec);
    namespaces
        .retain(|namespace| grants::grants_namespace(&grants, caller(principal), name(namespace)));
}

/// Refuses backup `spec` of `cluster` unless `principal` may back up every namespace it names.
pub(crate) fn check_backup(
    principal: &Principal,
    cluster: &Record,
    spec: &BackupSpec,
) -> Result<(), ApiError> {
    if !bound(principal, cluster) {
        return Ok(());
    }
    let refusal = grants::backup_refusal(&grants::of_spec(&cluster.spec), caller(principal), spec);
    match refusal {
        None => Ok(()),
        Some(refusal) => Err(refused(&refusal, cluster, Use::BackUp)),
    }
}

/// Refuses a restore into `targets` of `cluster` unless `principal` may restore into each;
/// `None` targets: the restore names no namespaces and the backup's are not known.
pub(crate) fn check_restore(
    principal: &Principal,
    cluster: &Record,
    targets: Option<&[String]>,
) -> Result<(), ApiError> {
    if !bound(principal, cluster) {
        return Ok(());
    }
    let refusal = match targets {
        None => Some(Refusal::NamespacesNotNamed),
        Some(targets) => grants::refused(
            &grants::of_spec(&cluster.spec),
            caller(principal),
            targets.iter().map(String::as_str),
        ),
    };
    match refusal {
        None => Ok(()),
        Some(refusal) => Err(refused(&refusal, cluster, Use::Restore)),
    }
}

/// Refuses a change of `cluster`'s grants to `new_spec`'s by anyone bound by them.
pub(crate) fn check_change(
    principal: &Principal,
    cluster: &Record,
    new_spec: &serde_json::Value,
) -> Result<(), ApiError> {
    if bound(principal, cluster) && grants::of_spec(&cluster.spec) != grants::of_spec(new_spec) {
        return Err(ApiError::forbidden(format!(
            "only the owner of cluster `{}` (`{}`) or an admin may change its grants",
            cluster.name, cluster.owner
        ))
        .with_details(serde_json::json!({ "field": "spec.grants", "cluster": cluster.id })));
    }
    Ok(())
}

/// The 403 of `refusal` on `cluster`: the namespaces named, and what to do.
fn refused(refusal: &Refusal, cluster: &Record, doing: Use) -> ApiError {
    let (name, owner) = (&cluster.name, &cluster.owner);
    let ask = format!("ask the cluster's owner (`{owner}`) for a grant");
    match refusal {
        Refusal::NamespacesNotNamed => {
            let message = match doing {
                Use::BackUp => format!(
                    "cluster `{name}` is shared with you: name the namespaces to back up in spec.namespaces, each one granted to you (backing up every namespace needs its owner or an admin)"
                ),
                Use::Restore => format!(
                    "cluster `{name}` is shared with you and the backup's namespaces are not known: name the namespaces to restore in spec.namespaces, each one granted to you"
                ),
            };
            ApiError::forbidden(message).with_details(serde_json::json!({
                "namespaces": [], "cluster": cluster.id, "field": "spec.namespaces"
            }))
        }
        Refusal::ClusterResources => ApiError::forbidden(format!(
            "cluster_resources `include` backs up every cluster-scoped object of cluster `{name}`: only its owner or an admin may; use `auto` or `needed`"
        ))
        .with_details(serde_json::json!({
            "namespaces": [], "cluster": cluster.id, "field": "spec.cluster_resources"
        })),
        Refusal::NotGranted {
            namespaces,
            nothing_granted,
        } => {
            let listed = namespaces
                .iter()
                .map(|namespace| format!("`{namespace}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let why = if *nothing_granted {
                format!("cluster `{name}` grants you no namespaces; {ask}")
            } else {
                format!("your grants on cluster `{name}` do not cover them; {ask}")
            };
            ApiError::forbidden(format!(
                "you may not {} namespaces {listed}: {why}",
                doing.phrase()
            ))
            .with_details(serde_json::json!({ "namespaces": namespaces, "cluster": cluster.id }))
        }
    }
}
