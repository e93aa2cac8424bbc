//! The CLI commands of schedule policies and backup schedules: `policy add|list|get|remove` and
//! `schedule add|list|get|remove|suspend|resume`. Lists show each one's next run; a schedule
//! also shows its last backup and its last skipped run.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::backups::{BackupSelection, pairs};
use super::entities::{EntityCommand, find_id, read_spec_file};
use super::{CliError, ClientFlags, client};

/// `stowage policy add`: a schedule from one of the flags below, or the whole spec from a file.
#[derive(Debug, Args)]
pub struct PolicyAdd {
    /// Its name.
    pub name: String,
    /// Every N minutes (1 to 1440).
    #[arg(long, value_name = "MINUTES", group = "when")]
    pub every: Option<u32>,
    /// Every day at these times (`02:00`, or `02:00,14:00`).
    #[arg(long, value_name = "HH:MM[,HH:MM]", group = "when")]
    pub daily: Option<String>,
    /// On these days of the week (`sun`, or `mon,thu`), at `--at`.
    #[arg(long, value_name = "DAYS", group = "when", requires = "at")]
    pub weekly: Option<String>,
    /// On these dates of the month (`1`, or `1,15`), at `--at`.
    #[arg(long, value_name = "DATES", group = "when", requires = "at")]
    pub monthly: Option<String>,
    /// A five-field cron expression (`30 2 * * 1-5`).
    #[arg(long, value_name = "EXPRESSION", group = "when")]
    pub cron: Option<String>,
    /// A YAML or JSON file holding the whole spec (monthly relative days, tiers; docs/api.md).
    #[arg(long = "spec-file", group = "when")]
    pub spec_file: Option<std::path::PathBuf>,
    /// The time of day of `--weekly` and `--monthly`.
    #[arg(long, value_name = "HH:MM")]
    pub at: Option<String>,
    /// Rolling copies kept.
    #[arg(long, default_value_t = 7)]
    pub retain: u32,
    /// The IANA time zone the times are in.
    #[arg(long, default_value = "UTC")]
    pub timezone: String,
    /// Client flags.
    #[command(flatten)]
    pub client: ClientFlags,
}

/// `stowage schedule add`.
#[derive(Debug, Args)]
pub struct ScheduleAdd {
    /// Its name (its backups are named after it and their time).
    pub name: String,
    /// The schedule policy to follow (name or id).
    #[arg(long)]
    pub policy: String,
    /// What each backup protects, and where to.
    #[command(flatten)]
    pub selection: BackupSelection,
    /// What happens to its backups when the schedule is removed.
    #[arg(long, value_parser = ["retain", "delete"], default_value = "retain")]
    pub reclaim: String,
    /// Create it suspended.
    #[arg(long)]
    pub suspended: bool,
    /// A label of every backup it makes, `key=value` (repeatable).
    #[arg(long = "backup-label")]
    pub backup_labels: Vec<String>,
    /// Client flags.
    #[command(flatten)]
    pub client: ClientFlags,
}

/// `stowage schedule` commands.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Add, list, get, remove.
    #[command(flatten)]
    Entity(EntityCommand<Box<ScheduleAdd>>),
    /// Stops it from starting backups until resumed.
    Suspend {
        /// Its name or id.
        name: String,
        /// Client flags.
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Lets it run again from the next time its policy names.
    Resume {
        /// Its name or id.
        name: String,
        /// Client flags.
        #[command(flatten)]
        client: ClientFlags,
    },
}

fn listed(text: &str) -> Vec<String> {
    text.split(',')
        .map(|part| part.trim().to_string())
        .filter(|part| !part.is_empty())
        .collect()
}

/// The create body of `stowage policy add`.
pub async fn policy_add(args: PolicyAdd) -> Result<(ClientFlags, Value), CliError> {
    let at = || args.at.clone().unwrap_or_default();
    let schedule = if let Some(minutes) = args.every {
        json!({"interval": {"minutes": minutes}})
    } else if let Some(times) = &args.daily {
        json!({"daily": {"times": listed(times)}})
    } else if let Some(days) = &args.weekly {
        json!({"weekly": {"days": listed(days), "time": at()}})
    } else if let Some(dates) = &args.monthly {
        let dates = listed(dates)
            .iter()
            .map(|date| {
                date.parse::<u32>().map_err(|_| {
                    CliError::Usage(format!("--monthly takes dates such as 1,15, not `{date}`"))
                })
            })
            .collect::<Result<Vec<u32>, CliError>>()?;
        json!({"monthly": {"dates": dates, "time": at()}})
    } else if let Some(expression) = &args.cron {
        json!({"cron": {"expression": expression}})
    } else if let Some(path) = &args.spec_file {
        let spec = read_spec_file(path, "the policy spec")?;
        return Ok((args.client, json!({"name": args.name, "spec": spec})));
    } else {
        return Err(CliError::Usage(
            "say when: --every MINUTES, --daily HH:MM, --weekly DAYS --at HH:MM, --monthly DATES --at HH:MM, --cron EXPRESSION or --spec-file FILE".into(),
        ));
    };
    let spec = json!({"schedule": schedule, "retain": args.retain, "timezone": args.timezone});
    Ok((args.client, json!({"name": args.name, "spec": spec})))
}

/// The create body of `stowage schedule add`.
pub async fn schedule_add(args: Box<ScheduleAdd>) -> Result<(ClientFlags, Value), CliError> {
    let client = client(&args.client).await?;
    let policy = find_id(&client, "schedule-policies", &args.policy).await?;
    let backup = args.selection.spec(&client).await?;
    let spec = json!({
        "policy": policy,
        "backup": backup,
        "reclaim": args.reclaim,
        "suspended": args.suspended,
        "backup_labels": pairs(&args.backup_labels, "backup-label")?,
    });
    Ok((args.client, json!({"name": args.name, "spec": spec})))
}

/// Runs a `stowage schedule` command.
pub async fn schedule(command: ScheduleCommand) -> Result<(), CliError> {
    let (name, flags, action) = match command {
        ScheduleCommand::Entity(command) => {
            return super::entities::run("backup-schedules", command, schedule_add).await;
        }
        ScheduleCommand::Suspend { name, client } => (name, client, "suspend"),
        ScheduleCommand::Resume { name, client } => (name, client, "resume"),
    };
    let client = client(&flags).await?;
    let id = find_id(&client, "backup-schedules", &name).await?;
    let record = client
        .call(
            Method::POST,
            &format!("/v1/backup-schedules/{id}/{action}"),
            None,
        )
        .await?;
    super::entities::show_records(flags.output, &record)
}
