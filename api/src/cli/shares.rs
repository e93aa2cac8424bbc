//! `stowage backup share|unshare` and `stowage restore share|unshare`: give a user or a group a
//! level on a backup or restore, or take it away. Reads the record, changes its list of shares
//! and puts it back at the `shares_version` read (a concurrent change is refused by the server).

use clap::{Args, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};

use super::backups::find_record;
use super::{CliError, ClientFlags, client, print};

/// A level a share gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Level {
    /// See it (and a backup's run and events).
    View,
    /// Also restore from it.
    Restore,
    /// Also cancel, retry, delete and share it.
    Full,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Restore => "restore",
            Self::Full => "full",
        }
    }
}

/// Who a share is for: one user or one group.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Grantee {
    /// A user (their subject).
    #[arg(long)]
    pub user: Option<String>,
    /// A group.
    #[arg(long)]
    pub group: Option<String>,
}

impl Grantee {
    fn json(&self) -> Value {
        match (&self.user, &self.group) {
            (Some(user), _) => json!({ "user": user }),
            (None, Some(group)) => json!({ "group": group }),
            (None, None) => Value::Null,
        }
    }
}

/// `share NAME --user U|--group G --level L`.
#[derive(Debug, Args)]
pub struct ShareArgs {
    /// Its name or id.
    pub name: String,
    /// Who.
    #[command(flatten)]
    pub to: Grantee,
    /// How much.
    #[arg(long, value_enum)]
    pub level: Level,
    /// Client flags.
    #[command(flatten)]
    pub client: ClientFlags,
}

/// `unshare NAME --user U|--group G`.
#[derive(Debug, Args)]
pub struct UnshareArgs {
    /// Its name or id.
    pub name: String,
    /// Who.
    #[command(flatten)]
    pub to: Grantee,
    /// Client flags.
    #[command(flatten)]
    pub client: ClientFlags,
}

/// Gives `args.to` `args.level` on the backup or restore (`plural` `backups` or `restores`),
/// replacing any level they had.
pub async fn share(plural: &str, args: &ShareArgs) -> Result<(), CliError> {
    let to = args.to.json();
    let share = json!({ "to": to, "level": args.level.as_str() });
    change(plural, &args.name, &args.client, &to, Some(share)).await
}

/// Takes away what `args.to` was given on the backup or restore.
pub async fn unshare(plural: &str, args: &UnshareArgs) -> Result<(), CliError> {
    change(plural, &args.name, &args.client, &args.to.json(), None).await
}

async fn change(
    plural: &str,
    name: &str,
    flags: &ClientFlags,
    to: &Value,
    share: Option<Value>,
) -> Result<(), CliError> {
    let client = client(flags).await?;
    let record = find_record(&client, plural, name).await?;
    let id = record["id"].as_str().unwrap_or_default().to_string();
    let mut shares: Vec<Value> = record["shares"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|existing| existing["to"] != *to)
        .collect();
    shares.extend(share);
    let body = json!({ "version": record["shares_version"], "shares": shares });
    let changed = client
        .call(
            Method::PUT,
            &format!("/v1/{plural}/{id}/shares"),
            Some(&body),
        )
        .await?;
    let listed: Vec<String> = changed["shares"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|share| {
            let to = &share["to"];
            let who = match (to["user"].as_str(), to["group"].as_str()) {
                (Some(user), _) => format!("user {user}"),
                (_, Some(group)) => format!("group {group}"),
                _ => to.to_string(),
            };
            format!("{who}: {}", share["level"].as_str().unwrap_or_default())
        })
        .collect();
    print(&format!(
        "{} `{}` ({id}) is shared with: {}",
        plural.trim_end_matches('s'),
        record["name"].as_str().unwrap_or_default(),
        if listed.is_empty() {
            "no one".to_string()
        } else {
            listed.join(", ")
        }
    ))
}
