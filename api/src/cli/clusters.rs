//! `stowage cluster`: the commands every entity has, and `grant` / `revoke`, which edit the
//! cluster's grants (which namespaces a user or group it is shared with may back up from and
//! restore into) through the update route, at the version read. The spec comes back with its
//! secrets as `<redacted>`, which the server keeps as stored.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::entities::{self, ClusterAdd, EntityCommand, find_id, show_records};
use super::{CliError, ClientFlags, client};

/// `stowage cluster` commands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Add, list, get, remove.
    #[command(flatten)]
    Entity(EntityCommand<ClusterAdd>),
    /// Lets a user or group the cluster is shared with back up from and restore into
    /// namespaces (names or patterns such as `team-*`).
    Grant(GrantArgs),
    /// Takes namespaces (or, without --namespaces, every one) back from a user or group.
    Revoke(RevokeArgs),
}

/// Who a grant is for.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct GranteeArgs {
    /// A user, by subject.
    #[arg(long)]
    pub user: Option<String>,
    /// A group.
    #[arg(long)]
    pub group: Option<String>,
}

impl GranteeArgs {
    /// The grantee as the spec writes it: `{"user": ...}` or `{"group": ...}`.
    fn to_json(&self) -> Value {
        match (&self.user, &self.group) {
            (Some(user), _) => json!({ "user": user }),
            (None, Some(group)) => json!({ "group": group }),
            (None, None) => Value::Null,
        }
    }

    fn describe(&self) -> String {
        match (&self.user, &self.group) {
            (Some(user), _) => format!("user `{user}`"),
            (None, Some(group)) => format!("group `{group}`"),
            (None, None) => "nobody".into(),
        }
    }
}

/// `stowage cluster grant`.
#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The cluster (name or id).
    pub cluster: String,
    /// Who.
    #[command(flatten)]
    pub to: GranteeArgs,
    /// Namespaces or patterns, comma-separated (`team-a,team-b-*`).
    #[arg(long, value_delimiter = ',', required = true)]
    pub namespaces: Vec<String>,
    /// Client flags.
    #[command(flatten)]
    pub client: ClientFlags,
}

/// `stowage cluster revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The cluster (name or id).
    pub cluster: String,
    /// Who.
    #[command(flatten)]
    pub to: GranteeArgs,
    /// Only these namespaces or patterns, comma-separated (all of the grantee's when absent).
    #[arg(long, value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Client flags.
    #[command(flatten)]
    pub client: ClientFlags,
}

/// Runs a `stowage cluster` command.
pub async fn cluster(command: ClusterCommand) -> Result<(), CliError> {
    match command {
        ClusterCommand::Entity(command) => {
            entities::run("clusters", command, entities::cluster_add).await
        }
        ClusterCommand::Grant(args) => {
            let to = args.to.to_json();
            edit_grants(&args.cluster, &args.client, |grants| {
                add(grants, &to, &args.namespaces);
                Ok(())
            })
            .await
        }
        ClusterCommand::Revoke(args) => {
            let to = args.to.to_json();
            let who = args.to.describe();
            edit_grants(&args.cluster, &args.client, |grants| {
                if remove(grants, &to, &args.namespaces) {
                    Ok(())
                } else {
                    Err(CliError::Usage(format!(
                        "cluster `{}` grants {who} none of that; `stowage cluster get {}` shows its grants",
                        args.cluster, args.cluster
                    )))
                }
            })
            .await
        }
    }
}

/// Reads the cluster, changes its grants with `change`, writes it back at the version read and
/// shows the result.
async fn edit_grants(
    cluster: &str,
    flags: &ClientFlags,
    change: impl FnOnce(&mut Vec<Value>) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let client = client(flags).await?;
    let id = find_id(&client, "clusters", cluster).await?;
    let path = format!("/v1/clusters/{id}");
    let record = client.call(Method::GET, &path, None).await?;
    let mut spec = record["spec"].clone();
    let mut grants = spec["grants"].as_array().cloned().unwrap_or_default();
    change(&mut grants)?;
    spec["grants"] = Value::Array(grants);
    let body = json!({ "version": record["version"], "labels": record["labels"], "spec": spec });
    let updated = client.call(Method::PUT, &path, Some(&body)).await?;
    show_records(flags.output, &updated)
}

/// Adds `namespaces` to the grant of `to` (a new grant when it has none), each once.
fn add(grants: &mut Vec<Value>, to: &Value, namespaces: &[String]) {
    let existing = grants.iter_mut().find(|grant| &grant["to"] == to);
    let Some(grant) = existing else {
        grants.push(json!({ "to": to, "namespaces": namespaces }));
        return;
    };
    let mut held: Vec<Value> = grant["namespaces"].as_array().cloned().unwrap_or_default();
    for namespace in namespaces {
        if !held.iter().any(|item| item == namespace.as_str()) {
            held.push(json!(namespace));
        }
    }
    grant["namespaces"] = Value::Array(held);
}

/// Removes `namespaces` (all when empty) from the grants of `to`, dropping a grant left empty.
/// Whether anything was removed.
fn remove(grants: &mut Vec<Value>, to: &Value, namespaces: &[String]) -> bool {
    let before = grants.clone();
    for grant in grants.iter_mut().filter(|grant| &grant["to"] == to) {
        let kept: Vec<Value> = grant["namespaces"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|item| {
                !namespaces.is_empty() && !namespaces.iter().any(|name| item == name.as_str())
            })
            .collect();
        grant["namespaces"] = Value::Array(kept);
    }
    grants.retain(|grant| {
        grant["namespaces"]
            .as_array()
            .is_some_and(|namespaces| !namespaces.is_empty())
    });
    *grants != before
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn grants_are_merged_per_grantee_and_revoked_in_part_or_whole() {
        let team = json!({"group": "data-team"});
        let carol = json!({"user": "carol"});
        let mut grants = Vec::new();
        add(&mut grants, &team, &names(&["team-*"]));
        add(&mut grants, &team, &names(&["team-*", "shared"]));
        add(&mut grants, &carol, &names(&["reports"]));
        assert_eq!(
            grants,
            [
                json!({"to": team, "namespaces": ["team-*", "shared"]}),
                json!({"to": carol, "namespaces": ["reports"]}),
            ]
        );
        assert!(remove(&mut grants, &team, &names(&["shared"])));
        assert_eq!(grants[0]["namespaces"], json!(["team-*"]));
        assert!(!remove(&mut grants, &team, &names(&["elsewhere"])));
        assert!(remove(&mut grants, &carol, &[]));
        assert_eq!(grants, [json!({"to": team, "namespaces": ["team-*"]})]);
    }
}
