//! The CLI commands of backups and restores: `backup create|list|describe|logs|cancel|retry|
//! delete|share|unshare` and `restore create|list|describe|cancel|share|unshare`. Clusters, locations, rules and backups are
//! named by name or id; `--wait` follows the run until it ends (see [`super::progress`]).

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use stowage_workflows::labels::LabelSelector;

use super::client::Client;
use super::output::{self, Format};
use super::progress::{self, Watched};
use super::{CliError, ClientFlags, client, print};

/// `stowage backup` commands.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Starts a backup.
    Create(Box<BackupCreate>),
    /// Lists the backups you may see (every page).
    List {
        /// Only backups in this status (running, completed, failed, cancelled, deleting).
        #[arg(long)]
        status: Option<String>,
        /// Only backups of this cluster (name or id).
        #[arg(long)]
        cluster: Option<String>,
        /// Only backups in this location (name or id).
        #[arg(long)]
        location: Option<String>,
        /// Only backups made by this schedule (name or id).
        #[arg(long)]
        schedule: Option<String>,
        /// Only backups with this label, `key=value` (repeatable: all must match).
        #[arg(long = "label", short = 'l', value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Client flags.
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Shows one backup: status, step, figures, error.
    Describe(Named),
    /// Shows the events of a backup's run: steps, attempts, failures.
    Logs(Named),
    /// Asks a running backup to stop.
    Cancel(Named),
    /// Runs a failed or cancelled backup again.
    Retry(NamedWait),
    /// Deletes a backup from its location (then chunks nothing else uses).
    Delete(NamedWait),
    /// Gives a user or group a level on a backup (view, restore or full).
    Share(super::shares::ShareArgs),
    /// Takes away what a user or group was given on a backup.
    Unshare(super::shares::UnshareArgs),
}

/// `stowage restore` commands.
#[derive(Debug, Subcommand)]
pub enum RestoreCommand {
    /// Starts a restore.
    Create(Box<RestoreCreate>),
    /// Lists the restores you may see (every page).
    List {
        /// Only restores in this status (running, completed, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
        /// Only restores into this cluster (name or id).
        #[arg(long)]
        cluster: Option<String>,
        /// Only restores from this location (name or id).
        #[arg(long)]
        location: Option<String>,
        /// Only restores of this backup (name or id).
        #[arg(long)]
        backup: Option<String>,
        /// Client flags.
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Shows one restore with every object's result.
    Describe(Named),
    /// Asks a running restore to stop.
    Cancel(Named),
    /// Gives a user or group a level on a restore (view or full).
    Share(super::shares::ShareArgs),
    /// Takes away what a user or group was given on a restore.
    Unshare(super::shares::UnshareArgs),
}

/// A backup or restore named by name or id.
#[derive(Debug, Args)]
pub struct Named {
    /// Its name or id.
    pub name: String,
    /// Client flags.
    #[command(flatten)]
    pub client: ClientFlags,
}

/// A backup named by name or id, and whether to wait.
#[derive(Debug, Args)]
pub struct NamedWait {
    /// Its name or id.
    pub name: String,
    /// Follow it until it ends.
    #[arg(long)]
    pub wait: bool,
    /// Client flags.
    #[command(flatten)]
    pub client: ClientFlags,
}

/// What a backup protects and where it goes: the flags `backup create` and `schedule add` share.
#[derive(Debug, Args)]
pub struct BackupSelection {
    /// The cluster to back up (name or id).
    #[arg(long)]
    pub cluster: String,
    /// The location to write to (name or id).
    #[arg(long)]
    pub location: String,
    /// A namespace to back up (repeatable; all namespaces when none).
    #[arg(short = 'n', long = "namespace")]
    pub namespaces: Vec<String>,
    /// Only namespaces whose labels match.
    #[arg(long)]
    pub namespace_selector: Option<String>,
    /// Only objects whose labels match, e.g. `app=shop,tier in (db)`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Only these resource types (repeatable: `deployments.apps`, `ConfigMap`).
    #[arg(long = "include-resource")]
    pub include_resources: Vec<String>,
    /// Never these resource types (repeatable).
    #[arg(long = "exclude-resource")]
    pub exclude_resources: Vec<String>,
    /// A rule run before the backup (name or id, repeatable).
    #[arg(long = "pre-rule")]
    pub pre_rules: Vec<String>,
    /// A rule run once the point-in-time copies exist (name or id, repeatable).
    #[arg(long = "post-rule")]
    pub post_rules: Vec<String>,
    /// How volume data is copied.
    #[arg(long, value_parser = ["snapshot", "copy", "skip"], default_value = "snapshot")]
    pub volumes: String,
}

impl BackupSelection {
    /// The backup spec these flags give, with names turned into ids.
    pub async fn spec(&self, client: &Client) -> Result<Value, CliError> {
        let cluster = super::entities::find_id(client, "clusters", &self.cluster).await?;
        let location = super::entities::find_id(client, "locations", &self.location).await?;
        let mut pre_rules = Vec::new();
        for rule in &self.pre_rules {
            pre_rules.push(super::entities::find_id(client, "rules", rule).await?);
        }
        let mut post_rules = Vec::new();
        for rule in &self.post_rules {
            post_rules.push(super::entities::find_id(client, "rules", rule).await?);
        }
        let mut spec = json!({
            "cluster": cluster,
            "location": location,
            "namespaces": self.namespaces,
            "include_resources": self.include_resources,
            "exclude_resources": self.exclude_resources,
            "pre_rules": pre_rules,
            "post_rules": post_rules,
            "volumes": self.volumes,
        });
        let namespace_selector = selector(&self.namespace_selector, "namespace-selector")?;
        if !namespace_selector.is_null() {
            spec["namespace_selector"] = namespace_selector;
        }
        let object_selector = selector(&self.selector, "selector")?;
        if !object_selector.is_null() {
            spec["selector"] = object_selector;
        }
        Ok(spec)
    }
}

/// `stowage backup create`.
#[derive(Debug, Args)]
pub struct BackupCreate {
    /// The backup's name.
    pub name: String,
    /// What it protects, and where to.
    #[command(flatten)]
    pub selection: BackupSelection,
    /// A label of the backup, `key=value` (repeatable).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Follow it until it ends, with progress bars.
    #[arg(long)]
    pub wait: bool,
    /// Client flags.
    #[command(flatten)]
    pub client: ClientFlags,
}

/// `stowage restore create`.
#[derive(Debug, Args)]
pub struct RestoreCreate {
    /// The restore's name.
    pub name: String,
    /// The backup to restore (name or id).
    #[arg(long)]
    pub backup: String,
    /// The cluster to restore into (name or id).
    #[arg(long)]
    pub cluster: String,
    /// Restore backed-up namespace `from` as `to` (`from=to`, repeatable).
    #[arg(long = "namespace-mapping")]
    pub namespace_mappings: Vec<String>,
    /// Use storage class `to` for claims of class `from` (`from=to`, repeatable).
    #[arg(long = "storage-class-mapping")]
    pub storage_class_mappings: Vec<String>,
    /// Only this backed-up namespace (repeatable).
    #[arg(short = 'n', long = "namespace")]
    pub namespaces: Vec<String>,
    /// Only this kind (`ConfigMap`, `Deployment.apps`; repeatable).
    #[arg(long = "kind")]
    pub kinds: Vec<String>,
    /// Only objects of this name (repeatable).
    #[arg(long = "name")]
    pub names: Vec<String>,
    /// What to do with objects that exist: keep them, update them, or replace them.
    #[arg(long, value_parser = ["keep", "update", "replace"], default_value = "keep")]
    pub existing: String,
    /// Keep Services' cluster IPs and node ports.
    #[arg(long)]
    pub keep_service_addresses: bool,
    /// Create claims empty, without their backed-up data.
    #[arg(long)]
    pub without_volume_data: bool,
    /// Follow it until it ends, with progress bars.
    #[arg(long)]
    pub wait: bool,
    /// Client flags.
    #[command(flatten)]
    pub client: ClientFlags,
}

pub(crate) fn pairs(entries: &[String], flag: &str) -> Result<BTreeMap<String, String>, CliError> {
    entries
        .iter()
        .map(|entry| {
            entry
                .split_once('=')
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .ok_or_else(|| {
                    CliError::Usage(format!("--{flag} takes `key=value`, not `{entry}`"))
                })
        })
        .collect()
}

fn selector(text: &Option<String>, flag: &str) -> Result<Value, CliError> {
    match text {
        None => Ok(Value::Null),
        Some(text) => {
            let parsed = LabelSelector::parse(text)
                .map_err(|err| CliError::Usage(format!("--{flag}: {err}")))?;
            Ok(json!(parsed.to_spec()))
        }
    }
}

/// The id of the backup or restore (`plural`) named `name`, or with that id.
pub(super) async fn find_record(
    client: &Client,
    plural: &str,
    name: &str,
) -> Result<Value, CliError> {
    if let Ok(record) = client
        .call(Method::GET, &format!("/v1/{plural}/{name}"), None)
        .await
    {
        return Ok(record);
    }
    let items = client.list_all(plural, &[("name", name)]).await?;
    let singular = plural.trim_end_matches('s');
    match items.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(CliError::Usage(format!(
            "no {singular} named `{name}` that you may see; `stowage {singular} list` shows them"
        ))),
        several => Err(CliError::Usage(format!(
            "{} {plural} are named `{name}`; give the id (see `stowage {singular} list`)",
            several.len()
        ))),
    }
}

/// The filters of a listing, entities named by name resolved to their ids.
#[derive(Debug, Default)]
struct Filters(Vec<(&'static str, String)>);

impl Filters {
    /// `parameter` = `value`, when given.
    fn given(&mut self, parameter: &'static str, value: Option<String>) {
        if let Some(value) = value {
            self.0.push((parameter, value));
        }
    }

    /// `parameter` = the id of the `plural` entity named (or with id) `name`, when given.
    async fn entity(
        &mut self,
        client: &Client,
        parameter: &'static str,
        plural: &str,
        name: Option<String>,
    ) -> Result<(), CliError> {
        if let Some(name) = name {
            let id = super::entities::find_id(client, plural, &name).await?;
            self.0.push((parameter, id));
        }
        Ok(())
    }

    fn pairs(&self) -> Vec<(&str, &str)> {
        self.0
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect()
    }
}

/// Prints what a command did: a sentence, or `value` for `-o json|yaml`.
pub(super) fn outcome(format: Format, sentence: &str, value: &Value) -> Result<(), CliError> {
    print(&output::render_outcome(format, sentence, value).map_err(CliError::Output)?)
}

fn id_of(record: &Value) -> String {
    record["id"].as_str().unwrap_or_default().to_string()
}

/// A JSON value as a table cell: strings bare, null empty.
pub(super) fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `done/total` volumes of a record's progress.
fn volumes(progress: &Value) -> String {
    format!(
        "{}/{}",
        text(&progress["volumes_done"]),
        text(&progress["volumes_total"])
    )
}

/// A `field value` row of a detail table; empty values are left out.
fn add_field(table: &mut comfy_table::Table, field: &str, value: String) {
    if !value.is_empty() {
        table.add_row(vec![field.to_string(), value]);
    }
}

fn backups_table(records: &[Value]) -> comfy_table::Table {
    let mut table = output::table(&[
        "name", "id", "status", "objects", "volumes", "bytes", "created",
    ]);
    for record in records {
        let progress = &record["progress"];
        table.add_row(vec![
            text(&record["name"]),
            text(&record["id"]),
            text(&record["status"]),
            text(&progress["objects"]),
            volumes(progress),
            progress::human_bytes(progress["bytes_read"].as_u64().unwrap_or(0)),
            text(&record["created_at"]),
        ]);
    }
    table
}

fn backup_detail(record: &Value) -> comfy_table::Table {
    let mut table = output::table(&["field", "value"]);
    let progress = &record["progress"];
    for (field, value) in [
        ("name", text(&record["name"])),
        ("id", text(&record["id"])),
        ("status", text(&record["status"])),
        ("step", text(&record["step"])),
        ("restorable", text(&record["restorable"])),
        ("cluster", text(&record["cluster"])),
        ("location", text(&record["location"])),
        ("owner", text(&record["owner"])),
        ("attempts", text(&record["attempts"])),
        ("namespaces", text(&progress["namespaces"])),
        ("objects", text(&progress["objects"])),
        ("volumes", volumes(progress)),
        (
            "bytes read",
            progress::human_bytes(progress["bytes_read"].as_u64().unwrap_or(0)),
        ),
        (
            "bytes stored",
            progress::human_bytes(progress["bytes_uploaded"].as_u64().unwrap_or(0)),
        ),
        ("created", text(&record["created_at"])),
        ("finished", text(&record["finished_at"])),
        ("error", text(&record["error"])),
        ("run", text(&record["run"])),
    ] {
        add_field(&mut table, field, value);
    }
    if let Some(error) = record["deletion"]["error"].as_str() {
        table.add_row(vec!["deletion failed".to_string(), error.to_string()]);
    }
    table
}

fn restores_table(records: &[Value]) -> comfy_table::Table {
    let mut table = output::table(&[
        "name", "id", "status", "backup", "created", "skipped", "failed", "volumes",
    ]);
    for record in records {
        let progress = &record["progress"];
        table.add_row(vec![
            text(&record["name"]),
            text(&record["id"]),
            text(&record["status"]),
            text(&record["backup"]),
            text(&progress["created"]),
            text(&progress["skipped"]),
            text(&progress["failed"]),
            volumes(progress),
        ]);
    }
    table
}

/// Prints `value` in `format`, as the table `table` builds for people.
pub(super) fn show(
    format: Format,
    value: &Value,
    table: impl FnOnce(&Value) -> comfy_table::Table,
) -> Result<(), CliError> {
    print(&output::render(format, value, table).map_err(CliError::Output)?)
}

/// Runs a `stowage backup` command.
pub async fn backup(command: BackupCommand) -> Result<(), CliError> {
    match command {
        BackupCommand::Create(args) => backup_create(*args).await,
        BackupCommand::Share(args) => super::shares::share("backups", &args).await,
        BackupCommand::Unshare(args) => super::shares::unshare("backups", &args).await,
        BackupCommand::List {
            status,
            cluster,
            location,
            schedule,
            labels,
            client: flags,
        } => {
            let client = client(&flags).await?;
            let mut filters = Filters::default();
            filters.given("status", status);
            filters
                .entity(&client, "cluster", "clusters", cluster)
                .await?;
            filters
                .entity(&client, "location", "locations", location)
                .await?;
            filters
                .entity(&client, "schedule", "backup-schedules", schedule)
                .await?;
            filters.given("label", super::entities::label_filter(&labels)?);
            let list = client.list_all("backups", &filters.pairs()).await?;
            show(flags.output, &Value::Array(list), |list| {
                backups_table(list.as_array().map(Vec::as_slice).unwrap_or_default())
            })
        }
        BackupCommand::Describe(named) => {
            let client = client(&named.client).await?;
            let record = find_record(&client, "backups", &named.name).await?;
            show(named.client.output, &record, backup_detail)
        }
        BackupCommand::Logs(named) => {
            let client = client(&named.client).await?;
            let record = find_record(&client, "backups", &named.name).await?;
            let run = text(&record["run"]);
            if run.is_empty() {
                return print(&format!(
                    "backup `{}` was found in its location by a sync: it has no run here",
                    text(&record["name"])
                ));
            }
            let events = client
                .call(Method::GET, &format!("/v1/workflows/{run}/events"), None)
                .await?;
            show(named.client.output, &events, |events| {
                let mut table = output::table(&["at", "actor", "kind", "payload"]);
                for event in events["events"].as_array().into_iter().flatten() {
                    table.add_row(vec![
                        text(&event["at"]),
                        text(&event["actor"]),
                        text(&event["kind"])
                            .trim_start_matches("workflow.")
                            .to_string(),
                        output::short_json(&event["payload"], 100),
                    ]);
                }
                table
            })
        }
        BackupCommand::Cancel(named) => {
            let client = client(&named.client).await?;
            let record = find_record(&client, "backups", &named.name).await?;
            let id = id_of(&record);
            let answer = client
                .call(Method::POST, &format!("/v1/backups/{id}/cancel"), None)
                .await?;
            let sentence = format!("asked backup `{}` ({id}) to stop", text(&record["name"]));
            outcome(named.client.output, &sentence, &answer)
        }
        BackupCommand::Retry(named) => {
            let client = client(&named.client).await?;
            let record = find_record(&client, "backups", &named.name).await?;
            let id = id_of(&record);
            let record = client
                .call(Method::POST, &format!("/v1/backups/{id}/retry"), None)
                .await?;
            finish(
                &client,
                Watched::Backup,
                record,
                named.wait,
                named.client.output,
            )
            .await
        }
        BackupCommand::Delete(named) => {
            let client = client(&named.client).await?;
            let record = find_record(&client, "backups", &named.name).await?;
            let id = id_of(&record);
            let name = text(&record["name"]);
            let answer = client
                .call(Method::DELETE, &format!("/v1/backups/{id}"), None)
                .await?;
            if !named.wait {
                let sentence = format!("deleting backup `{name}` ({id})");
                return outcome(named.client.output, &sentence, &answer);
            }
            progress::wait_deleted(&client, &id).await?;
            let sentence = format!("deleted backup `{name}` ({id})");
            let done = json!({ "id": id, "name": name, "deleted": true });
            outcome(named.client.output, &sentence, &done)
        }
    }
}

async fn backup_create(args: BackupCreate) -> Result<(), CliError> {
    let client = client(&args.client).await?;
    let spec = args.selection.spec(&client).await?;
    let body = json!({
        "name": args.name,
        "labels": pairs(&args.labels, "label")?,
        "spec": spec,
    });
    let record = client
        .call(Method::POST, "/v1/backups", Some(&body))
        .await?;
    finish(
        &client,
        Watched::Backup,
        record,
        args.wait,
        args.client.output,
    )
    .await
}

/// Shows a started backup or restore, or follows it to its end when `wait`.
async fn finish(
    client: &Client,
    watched: Watched,
    record: Value,
    wait: bool,
    format: Format,
) -> Result<(), CliError> {
    let record = if wait {
        progress::wait(client, watched, &id_of(&record)).await?
    } else {
        record
    };
    let table = match watched {
        Watched::Backup => backup_detail,
        Watched::Restore => restore_detail,
    };
    show(format, &record, table)?;
    let status = text(&record["status"]);
    if wait && status != "completed" {
        return Err(CliError::Usage(format!(
            "{} `{}` ended {status}: {}",
            watched.as_str(),
            text(&record["name"]),
            text(&record["error"])
        )));
    }
    Ok(())
}

fn restore_detail(record: &Value) -> comfy_table::Table {
    let mut table = output::table(&["field", "value"]);
    let progress = &record["progress"];
    for (field, value) in [
        ("name", text(&record["name"])),
        ("id", text(&record["id"])),
        ("status", text(&record["status"])),
        ("step", text(&record["step"])),
        ("backup", text(&record["backup"])),
        ("cluster", text(&record["cluster"])),
        ("created", text(&progress["created"])),
        ("skipped", text(&progress["skipped"])),
        ("replaced", text(&progress["replaced"])),
        ("updated", text(&progress["updated"])),
        ("failed", text(&progress["failed"])),
        ("volumes", volumes(progress)),
        (
            "bytes",
            progress::human_bytes(progress["bytes"].as_u64().unwrap_or(0)),
        ),
        ("error", text(&record["error"])),
        ("run", text(&record["run"])),
    ] {
        add_field(&mut table, field, value);
    }
    table
}

/// Runs a `stowage restore` command.
pub async fn restore(command: RestoreCommand) -> Result<(), CliError> {
    match command {
        RestoreCommand::Share(args) => super::shares::share("restores", &args).await,
        RestoreCommand::Unshare(args) => super::shares::unshare("restores", &args).await,
        RestoreCommand::Create(args) => {
            let client = client(&args.client).await?;
            let backup = find_record(&client, "backups", &args.backup).await?;
            let cluster = super::entities::find_id(&client, "clusters", &args.cluster).await?;
            let body = json!({
                "name": args.name,
                "spec": {
                    "backup": id_of(&backup),
                    "cluster": cluster,
                    "namespace_mapping": pairs(&args.namespace_mappings, "namespace-mapping")?,
                    "storage_class_mapping": pairs(&args.storage_class_mappings, "storage-class-mapping")?,
                    "namespaces": args.namespaces,
                    "kinds": args.kinds,
                    "names": args.names,
                    "existing": args.existing,
                    "keep_service_addresses": args.keep_service_addresses,
                    "volume_data": !args.without_volume_data,
                },
            });
            let record = client
                .call(Method::POST, "/v1/restores", Some(&body))
                .await?;
            finish(
                &client,
                Watched::Restore,
                record,
                args.wait,
                args.client.output,
            )
            .await
        }
        RestoreCommand::List {
            status,
            cluster,
            location,
            backup,
            client: flags,
        } => {
            let client = client(&flags).await?;
            let mut filters = Filters::default();
            filters.given("status", status);
            filters
                .entity(&client, "cluster", "clusters", cluster)
                .await?;
            filters
                .entity(&client, "location", "locations", location)
                .await?;
            if let Some(backup) = backup {
                let record = find_record(&client, "backups", &backup).await?;
                filters.given("backup", Some(id_of(&record)));
            }
            let list = Value::Array(client.list_all("restores", &filters.pairs()).await?);
            show(flags.output, &list, |list| {
                restores_table(list.as_array().map(Vec::as_slice).unwrap_or_default())
            })
        }
        RestoreCommand::Describe(named) => {
            let client = client(&named.client).await?;
            let mut record = find_record(&client, "restores", &named.name).await?;
            let id = id_of(&record);
            let results = client
                .call(Method::GET, &format!("/v1/restores/{id}/results"), None)
                .await?;
            record["results"] = results["items"].clone();
            show(named.client.output, &record, |record| {
                let mut table = restore_detail(record);
                for result in record["results"].as_array().into_iter().flatten() {
                    let namespace = text(&result["namespace"]);
                    let object = if namespace.is_empty() {
                        format!("{}/{}", text(&result["kind"]), text(&result["name"]))
                    } else {
                        format!(
                            "{}/{}/{}",
                            text(&result["kind"]),
                            namespace,
                            text(&result["name"])
                        )
                    };
                    let reason = text(&result["reason"]);
                    table.add_row(vec![
                        text(&result["outcome"]),
                        if reason.is_empty() {
                            object
                        } else {
                            format!("{object}: {reason}")
                        },
                    ]);
                }
                table
            })
        }
        RestoreCommand::Cancel(named) => {
            let client = client(&named.client).await?;
            let record = find_record(&client, "restores", &named.name).await?;
            let id = id_of(&record);
            let answer = client
                .call(Method::POST, &format!("/v1/restores/{id}/cancel"), None)
                .await?;
            let sentence = format!("asked restore `{}` ({id}) to stop", text(&record["name"]));
            outcome(named.client.output, &sentence, &answer)
        }
    }
}

/// `stowage location sync`: starts a catalog sync; with `wait`, follows it and says what it found.
pub async fn location_sync(name: &str, wait: bool, flags: &ClientFlags) -> Result<(), CliError> {
    let client = client(flags).await?;
    let id = super::entities::find_id(&client, "locations", name).await?;
    let started = client
        .call(Method::POST, &format!("/v1/locations/{id}/sync"), None)
        .await?;
    let run = text(&started["run"]);
    if !wait {
        return print(&format!("syncing location `{name}` (run {run})"));
    }
    let state = progress::wait_run(&client, &run).await?;
    if state["status"] != "completed" {
        return Err(CliError::Usage(format!(
            "the sync of location `{name}` ended {}: {}",
            text(&state["status"]),
            text(&state["error"])
        )));
    }
    let scanned = &state["outputs"]["scan"];
    let found = scanned["backups"].as_array().map_or(0, Vec::len);
    print(&format!(
        "location `{name}` holds {found} finished backup(s); they are in `stowage backup list`"
    ))?;
    for unreadable in scanned["unreadable"].as_array().into_iter().flatten() {
        print(&format!(
            "unreadable: backup {}: {}",
            text(&unreadable["id"]),
            text(&unreadable["error"])
        ))?;
    }
    Ok(())
}
