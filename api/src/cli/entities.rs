//! The CLI commands of clusters, locations and credentials (`add`, `list`, `get`, `remove`) and
//! `stowage resources`, the application view of a cluster. Entities are named by name or id;
//! secrets are read from files or the environment, never from the command line.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::output::{self, Format};
use super::{CliError, ClientFlags, client, print};

/// The commands every one of these kinds has.
#[derive(Debug, Subcommand)]
pub enum EntityCommand<A: Args> {
    /// Registers one.
    Add(A),
    /// Lists those you may see (every page).
    List {
        /// Only those with this label, `key=value` (repeatable: all must match).
        #[arg(long = "label", short = 'l', value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Client flags.
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Shows one (a cluster with its live status).
    Get {
        /// Its name or id.
        name: String,
        /// Client flags.
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Removes one.
    Remove {
        /// Its name or id.
        name: String,
        /// Client flags.
        #[command(flatten)]
        client: ClientFlags,
    },
}

/// `stowage cluster add`.
#[derive(Debug, Args)]
pub struct ClusterAdd {
    /// Its name.
    pub name: String,
    /// The kubeconfig file to reach it with.
    #[arg(long, required_unless_present = "in_cluster")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// The cluster the server runs in, through its service account.
    #[arg(long, conflicts_with = "kubeconfig")]
    pub in_cluster: bool,
    /// Client flags.
    #[command(flatten)]
    pub client: ClientFlags,
}

/// `stowage location add`: one store kind, a prefix, and the passphrase from
/// `--passphrase-file` or `STOWAGE_PASSPHRASE`.
#[derive(Debug, Args)]
pub struct LocationAdd {
    /// Its name.
    pub name: String,
    /// A folder on the server's file system.
    #[arg(long, group = "store")]
    pub local: Option<std::path::PathBuf>,
    /// An S3 bucket.
    #[arg(long, group = "store")]
    pub s3_bucket: Option<String>,
    /// The S3 region.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// An Azure Blob container (with --azure-account; the key from --credential,
    /// `STOWAGE_AZURE_ACCESS_KEY` or `STOWAGE_AZURE_SAS`).
    #[arg(long, group = "store", requires = "azure_account")]
    pub azure_container: Option<String>,
    /// The Azure storage account.
    #[arg(long)]
    pub azure_account: Option<String>,
    /// A Google Cloud Storage bucket (the key from --credential or --service-account-key-file).
    #[arg(long, group = "store")]
    pub gcs_bucket: Option<String>,
    /// The GCS service-account key file Google issued (JSON).
    #[arg(long)]
    pub service_account_key_file: Option<std::path::PathBuf>,
    /// A custom endpoint: an S3-compatible store (`http://host:port`, path-style addressing),
    /// an Azure emulator (`http://host:port/account`) or a GCS endpoint.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// The S3 access key id (its secret from `STOWAGE_SECRET_ACCESS_KEY`), unless --credential.
    #[arg(long)]
    pub access_key_id: Option<String>,
    /// A registered credential (name or id) holding the keys.
    #[arg(long)]
    pub credential: Option<String>,
    /// A folder inside the bucket.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// A file holding the repository passphrase (else `STOWAGE_PASSPHRASE`).
    #[arg(long)]
    pub passphrase_file: Option<std::path::PathBuf>,
    /// Client flags.
    #[command(flatten)]
    pub client: ClientFlags,
}

/// `stowage credential add`: an S3 key (secret from `--secret-file`), an Azure key or SAS, or a
/// GCS service-account key file.
#[derive(Debug, Args)]
pub struct CredentialAdd {
    /// Its name.
    pub name: String,
    /// The store type: s3, azure or gcs.
    #[arg(long = "type", value_parser = ["s3", "azure", "gcs"])]
    pub store_type: String,
    /// The S3 access key id.
    #[arg(long)]
    pub access_key_id: Option<String>,
    /// A file with the secret: the S3 secret key, the Azure account key, or the GCS key JSON.
    #[arg(long)]
    pub secret_file: std::path::PathBuf,
    /// The Azure secret is a SAS token, not an account key.
    #[arg(long)]
    pub sas: bool,
    /// Client flags.
    #[command(flatten)]
    pub client: ClientFlags,
}

/// `stowage rule add`: the rule's spec (pod selector, container, actions, on-error, timeouts;
/// see docs/api.md) from a YAML or JSON file.
#[derive(Debug, Args)]
pub struct RuleAdd {
    /// Its name.
    pub name: String,
    /// A YAML or JSON file holding the spec.
    #[arg(long = "spec-file")]
    pub spec_file: std::path::PathBuf,
    /// A label of the rule, `key=value` (repeatable).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Client flags.
    #[command(flatten)]
    pub client: ClientFlags,
}

/// `stowage resources`.
#[derive(Debug, Args)]
pub struct ResourcesArgs {
    /// The cluster (name or id).
    #[arg(long)]
    pub cluster: String,
    /// Only this namespace.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Only objects whose labels match, e.g. `app=shop`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Only these kinds, comma-separated.
    #[arg(long)]
    pub kind: Option<String>,
    /// Client flags.
    #[command(flatten)]
    pub client: ClientFlags,
}

fn read_secret(path: &std::path::Path, what: &str) -> Result<String, CliError> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        CliError::Usage(format!("cannot read {what} from {}: {err}", path.display()))
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

fn env_secret(variable: &str, hint: &str) -> Result<String, CliError> {
    std::env::var(variable)
        .ok()
        .filter(|value| !value.is_empty())
        .ok_or_else(|| CliError::Usage(format!("{hint} (or set {variable})")))
}

/// The `label` parameter of a listing from `--label key=value` flags (`None`: no filter); a
/// flag that is not `key=value` is named.
pub(crate) fn label_filter(labels: &[String]) -> Result<Option<String>, CliError> {
    for label in labels {
        match label.split_once('=') {
            Some((key, _)) if !key.is_empty() && !label.contains(',') => {}
            _ => {
                return Err(CliError::Usage(format!(
                    "--label takes key=value, not `{label}`"
                )));
            }
        }
    }
    Ok((!labels.is_empty()).then(|| labels.join(",")))
}

/// The id of the `plural` entity named `name` (or with that id).
pub(crate) async fn find_id(
    client: &super::client::Client,
    plural: &str,
    name: &str,
) -> Result<String, CliError> {
    let items = client.list_all(plural, &[]).await?;
    let matching: Vec<&Value> = items
        .iter()
        .filter(|item| item["id"] == name || item["name"] == name)
        .collect();
    match matching.as_slice() {
        [one] => Ok(one["id"].as_str().unwrap_or_default().to_string()),
        [] => Err(CliError::Usage(format!(
            "no {plural} named `{name}` that you may see; `stowage {} list` shows them",
            plural.trim_end_matches('s')
        ))),
        _ => Err(CliError::Usage(format!(
            "several {plural} are named `{name}`; give the id (see `stowage {} list`)",
            plural.trim_end_matches('s')
        ))),
    }
}

/// What a schedule policy's or a backup schedule's "next run" column shows.
fn next_run(record: &Value) -> String {
    if record["spec"]["suspended"] == true {
        return "suspended".into();
    }
    record["next_runs"][0]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

/// What a backup schedule's "last" column shows: its last backup, or its last skipped run.
fn last_run(record: &Value) -> String {
    let status = &record["status"];
    match (
        status["last_due"].as_str(),
        status["last_skipped"]["due"].as_str(),
    ) {
        (Some(due), Some(skipped)) if due == skipped => format!(
            "{due} skipped: {}",
            status["last_skipped"]["reason"]
                .as_str()
                .unwrap_or_default()
        ),
        (Some(due), _) => format!(
            "{due} backup {}",
            status["last_backup"].as_str().unwrap_or("-")
        ),
        (None, _) => "-".into(),
    }
}

fn records_table(records: &[Value], status: Option<&Value>) -> comfy_table::Table {
    let scheduled = records
        .iter()
        .any(|record| record.get("next_runs").is_some());
    let schedules = records
        .iter()
        .any(|record| record.get("status").is_some() && scheduled);
    let mut header = vec!["name", "id", "owner", "version"];
    if scheduled {
        header.push("next run");
    }
    if schedules {
        header.push("last run");
    }
    header.push("spec");
    let mut table = output::table(&header);
    for record in records {
        let mut row = vec![
            record["name"].as_str().unwrap_or_default().to_string(),
            record["id"].as_str().unwrap_or_default().to_string(),
            record["owner"].as_str().unwrap_or_default().to_string(),
            record["version"].to_string(),
        ];
        if scheduled {
            row.push(next_run(record));
        }
        if schedules {
            row.push(last_run(record));
        }
        row.push(output::short_json(&record["spec"], 60));
        table.add_row(row);
    }
    if let Some(status) = status {
        table.add_row(vec![format!(
            "status: {}",
            if status["reachable"] == true {
                format!(
                    "reachable, Kubernetes {}",
                    status["version"].as_str().unwrap_or_default()
                )
            } else {
                format!(
                    "unreachable: {}",
                    status["error"].as_str().unwrap_or_default()
                )
            }
        )]);
    }
    if let [record] = records {
        for line in grant_lines(record) {
            table.add_row(vec![line]);
        }
    }
    table
}

/// One line per grant of a cluster record: `grant: group data-team: team-*, shared`.
fn grant_lines(record: &Value) -> Vec<String> {
    let Some(grants) = record["spec"]["grants"].as_array() else {
        return Vec::new();
    };
    grants
        .iter()
        .map(|grant| {
            let to = match (grant["to"]["user"].as_str(), grant["to"]["group"].as_str()) {
                (Some(user), _) => format!("user {user}"),
                (None, Some(group)) => format!("group {group}"),
                (None, None) => grant["to"].to_string(),
            };
            let namespaces: Vec<&str> = grant["namespaces"]
                .as_array()
                .map(|list| list.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!("grant: {to}: {}", namespaces.join(", "))
        })
        .collect()
}

/// Prints one record as `get` does.
pub(crate) fn show_records(format: Format, record: &Value) -> Result<(), CliError> {
    show(format, record, |record| {
        records_table(std::slice::from_ref(record), None)
    })
}

fn show(
    format: Format,
    value: &Value,
    table: impl FnOnce(&Value) -> comfy_table::Table,
) -> Result<(), CliError> {
    print(&output::render(format, value, table).map_err(CliError::Output)?)
}

/// Runs a list, get or remove of `plural`, or creates the record `add` gives.
pub async fn run<A: Args>(
    plural: &str,
    command: EntityCommand<A>,
    add: impl AsyncFnOnce(A) -> Result<(ClientFlags, Value), CliError>,
) -> Result<(), CliError> {
    match command {
        EntityCommand::Add(args) => {
            let (flags, body) = add(args).await?;
            let client = client(&flags).await?;
            let mut record = client
                .call(Method::POST, &format!("/v1/{plural}"), Some(&body))
                .await?;
            let mut status = None;
            if plural == "clusters" {
                let id = record["id"].as_str().unwrap_or_default().to_string();
                let probe = client
                    .call(Method::GET, &format!("/v1/clusters/{id}/status"), None)
                    .await?;
                record["status"] = probe.clone();
                status = Some(probe);
            }
            show(flags.output, &record, |record| {
                records_table(std::slice::from_ref(record), status.as_ref())
            })
        }
        EntityCommand::List {
            labels,
            client: flags,
        } => {
            let labels = label_filter(&labels)?;
            let filters: Vec<(&str, &str)> = labels.iter().map(|l| ("label", l.as_str())).collect();
            let items = client(&flags).await?.list_all(plural, &filters).await?;
            show(flags.output, &Value::Array(items), |items| {
                records_table(
                    items.as_array().map(Vec::as_slice).unwrap_or_default(),
                    None,
                )
            })
        }
        EntityCommand::Get {
            name,
            client: flags,
        } => {
            let client = client(&flags).await?;
            let id = find_id(&client, plural, &name).await?;
            let mut record = client
                .call(Method::GET, &format!("/v1/{plural}/{id}"), None)
                .await?;
            let mut status = None;
            if plural == "clusters" {
                let probe = client
                    .call(Method::GET, &format!("/v1/clusters/{id}/status"), None)
                    .await?;
                record["status"] = probe.clone();
                status = Some(probe);
            }
            show(flags.output, &record, |record| {
                records_table(std::slice::from_ref(record), status.as_ref())
            })
        }
        EntityCommand::Remove {
            name,
            client: flags,
        } => {
            let client = client(&flags).await?;
            let id = find_id(&client, plural, &name).await?;
            client
                .call(Method::DELETE, &format!("/v1/{plural}/{id}"), None)
                .await?;
            let done = serde_json::json!({ "id": id, "name": name, "removed": true });
            let sentence = format!("removed `{name}` ({id})");
            super::backups::outcome(flags.output, &sentence, &done)
        }
    }
}

/// The create body of `stowage cluster add`.
pub async fn cluster_add(args: ClusterAdd) -> Result<(ClientFlags, Value), CliError> {
    let mut spec = json!({});
    if args.in_cluster {
        spec["in_cluster"] = json!(true);
    }
    if let Some(path) = &args.kubeconfig {
        spec["kubeconfig"] = json!(read_secret(path, "the kubeconfig")?);
    }
    if let Some(context) = &args.context {
        spec["context"] = json!(context);
    }
    Ok((args.client, json!({"name": args.name, "spec": spec})))
}

/// The create body of `stowage location add`.
pub async fn location_add(args: Box<LocationAdd>) -> Result<(ClientFlags, Value), CliError> {
    let passphrase = match &args.passphrase_file {
        Some(path) => read_secret(path, "the passphrase")?,
        None => env_secret(
            "STOWAGE_PASSPHRASE",
            "give the repository passphrase with --passphrase-file",
        )?,
    };
    let mut spec = json!({"passphrase": passphrase});
    // Keys come from a registered credential when one is named, else from the flags below.
    let credential = match &args.credential {
        Some(credential) => {
            let client = client(&args.client).await?;
            spec["credential"] = json!(find_id(&client, "credentials", credential).await?);
            true
        }
        None => false,
    };
    let mut kind = if let Some(root) = &args.local {
        json!({"type": "local", "root": root})
    } else if let Some(bucket) = &args.s3_bucket {
        let mut kind = json!({"type": "s3", "bucket": bucket, "region": args.region});
        if args.endpoint.is_some() {
            kind["path_style"] = json!(true);
        }
        match (credential, &args.access_key_id) {
            (true, None) => {}
            (false, Some(key)) => {
                kind["access_key_id"] = json!(key);
                kind["secret_access_key"] = json!(env_secret(
                    "STOWAGE_SECRET_ACCESS_KEY",
                    "give the S3 secret key in STOWAGE_SECRET_ACCESS_KEY, or register a credential with `stowage credential add` and pass --credential"
                )?);
            }
            _ => {
                return Err(CliError::Usage(
                    "give --access-key-id (secret in STOWAGE_SECRET_ACCESS_KEY) or --credential NAME".into(),
                ));
            }
        }
        kind
    } else if let Some(container) = &args.azure_container {
        let mut kind =
            json!({"type": "azure", "container": container, "account": args.azure_account});
        if !credential {
            let key = std::env::var("STOWAGE_AZURE_ACCESS_KEY").ok();
            let sas = std::env::var("STOWAGE_AZURE_SAS").ok();
            kind["auth"] = match (key, sas) {
                (Some(key), None) => json!({"access_key": key}),
                (None, Some(sas)) => json!({"sas": sas}),
                _ => {
                    return Err(CliError::Usage(
                        "give the Azure key in STOWAGE_AZURE_ACCESS_KEY or a SAS in STOWAGE_AZURE_SAS (one of them), or --credential NAME".into(),
                    ));
                }
            };
        }
        kind
    } else if let Some(bucket) = &args.gcs_bucket {
        let mut kind = json!({"type": "gcs", "bucket": bucket});
        match (credential, &args.service_account_key_file) {
            (true, None) => {}
            (false, Some(path)) => {
                kind["service_account_key"] = json!(read_secret(path, "the service-account key")?);
            }
            _ => {
                return Err(CliError::Usage(
                    "give --service-account-key-file FILE or --credential NAME".into(),
                ));
            }
        }
        kind
    } else {
        return Err(CliError::Usage(
            "give one store: --local PATH, --s3-bucket BUCKET, --azure-container C --azure-account A, or --gcs-bucket BUCKET".into(),
        ));
    };
    if let Some(endpoint) = &args.endpoint {
        if args.local.is_some() {
            return Err(CliError::Usage(
                "--endpoint is for S3, Azure and GCS stores".into(),
            ));
        }
        kind["endpoint"] = json!(endpoint);
    }
    spec["location"] = json!({"kind": kind, "prefix": args.prefix});
    Ok((args.client, json!({"name": args.name, "spec": spec})))
}

/// The create body of `stowage credential add`.
pub async fn credential_add(args: CredentialAdd) -> Result<(ClientFlags, Value), CliError> {
    let secret = read_secret(&args.secret_file, "the secret")?;
    let spec = match args.store_type.as_str() {
        "s3" => json!({
            "type": "s3",
            "access_key_id": args.access_key_id.ok_or_else(|| CliError::Usage("an s3 credential needs --access-key-id".into()))?,
            "secret_access_key": secret,
        }),
        "azure" if args.sas => json!({"type": "azure", "auth": {"sas": secret}}),
        "azure" => json!({"type": "azure", "auth": {"access_key": secret}}),
        _ => json!({"type": "gcs", "service_account_key": secret}),
    };
    Ok((args.client, json!({"name": args.name, "spec": spec})))
}

/// A spec read from a YAML or JSON file; `what` names it in errors.
pub(crate) fn read_spec_file(path: &std::path::Path, what: &str) -> Result<Value, CliError> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        CliError::Usage(format!("cannot read {what} from {}: {err}", path.display()))
    })?;
    // YAML is a superset of JSON: one parser reads both.
    serde_yaml::from_str(&text).map_err(|err| {
        CliError::Usage(format!(
            "{} is neither YAML nor JSON: {err}",
            path.display()
        ))
    })
}

/// The create body of `stowage rule add`.
pub async fn rule_add(args: RuleAdd) -> Result<(ClientFlags, Value), CliError> {
    let spec = read_spec_file(&args.spec_file, "the rule spec")?;
    let mut labels = serde_json::Map::new();
    for label in &args.labels {
        let (key, value) = label
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--label takes `key=value`, not `{label}`")))?;
        labels.insert(key.to_string(), json!(value));
    }
    Ok((
        args.client,
        json!({"name": args.name, "labels": labels, "spec": spec}),
    ))
}

/// `stowage resources`.
pub async fn resources(args: ResourcesArgs) -> Result<(), CliError> {
    let client = client(&args.client).await?;
    let id = find_id(&client, "clusters", &args.cluster).await?;
    let pairs: Vec<(&str, &String)> = [
        ("namespace", &args.namespace),
        ("labelSelector", &args.selector),
        ("kind", &args.kind),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.as_ref().map(|value| (name, value)))
    .collect();
    let query = reqwest::Url::parse_with_params("http://query/", &pairs)
        .map_err(|err| CliError::Usage(err.to_string()))?
        .query()
        .unwrap_or_default()
        .to_string();
    let view = client
        .call(
            Method::GET,
            &format!("/v1/clusters/{id}/resources?{query}"),
            None,
        )
        .await?;
    show(args.client.output, &view, |view| {
        let mut table = output::table(&["namespace", "kind", "count", "names"]);
        for namespace in view["namespaces"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            for kind in namespace["kinds"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let names: Vec<&str> = kind["items"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|item| item["name"].as_str())
                    .collect();
                table.add_row(vec![
                    namespace["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    kind["kind"].as_str().unwrap_or_default().to_string(),
                    kind["count"].to_string(),
                    names.join(","),
                ]);
            }
        }
        table
    })
}
