//! The `stowage` command line: its arguments (clap) and the client commands, which speak only
//! the REST API; `admin` commands work on a stopped server's database directly.

pub mod backups;
pub mod client;
pub mod clusters;
pub mod config;
pub mod entities;
pub mod login;
pub mod output;
pub mod progress;
pub mod runs;
pub mod schedules;
pub mod shares;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use futures::StreamExt;

use crate::audit::{AuditEvent, AuditPage};
use client::{Client, ClientError};
use config::{ClientConfig, ConfigError, DEFAULT_SERVER};
use output::Format;

/// Stowage: back up Kubernetes applications with their data, restore them anywhere.
#[derive(Debug, Parser)]
#[command(name = "stowage", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags of every client command.
#[derive(Debug, Clone, Args)]
pub struct ClientFlags {
    /// The server's URL (else the configuration file's, else http://127.0.0.1:8432).
    #[arg(long, env = "STOWAGE_SERVER", global = true)]
    pub server: Option<String>,
    /// The bearer token (else the configuration file's).
    #[arg(long, env = "STOWAGE_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// A PEM file of CA certificates to trust for an HTTPS server (else the configuration
    /// file's; the system's CAs are trusted too).
    #[arg(long, env = "STOWAGE_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the Stowage server: the REST API over an embedded RocksDB.
    Server(ServerArgs),
    /// Logs in: gets a token (OIDC device flow, client credentials, or one given), checks it
    /// with the server and stores it for the commands that follow.
    Login(login::LoginArgs),
    /// Shows who the server takes you for.
    Whoami(ClientFlags),
    /// Shows the audit stream: every command with its actor and time.
    Events {
        /// Events after this global position.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many (without --follow).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Keep following new events.
        #[arg(short, long)]
        follow: bool,
        /// Client flags.
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Registers, lists, shows (with live status and grants) and removes clusters; grants and
    /// revokes namespaces to the users and groups they are shared with.
    Cluster {
        /// What to do.
        #[command(subcommand)]
        command: clusters::ClusterCommand,
    },
    /// Registers, lists, shows and removes backup locations (validated against their store).
    Location {
        /// What to do.
        #[command(subcommand)]
        command: LocationCommand,
    },
    /// Registers, lists, shows and removes cloud credentials that locations name.
    Credential {
        /// What to do.
        #[command(subcommand)]
        command: entities::EntityCommand<entities::CredentialAdd>,
    },
    /// Registers, lists, shows and removes rules: commands run in pods around a backup.
    Rule {
        /// What to do.
        #[command(subcommand)]
        command: entities::EntityCommand<entities::RuleAdd>,
    },
    /// Adds, lists, shows (with their next runs) and removes schedule policies.
    Policy {
        /// What to do.
        #[command(subcommand)]
        command: entities::EntityCommand<schedules::PolicyAdd>,
    },
    /// Adds, lists, shows (next run, last run), suspends, resumes and removes backup schedules.
    Schedule {
        /// What to do.
        #[command(subcommand)]
        command: schedules::ScheduleCommand,
    },
    /// Starts, lists, describes, cancels, retries and deletes backups.
    Backup {
        /// What to do.
        #[command(subcommand)]
        command: backups::BackupCommand,
    },
    /// Starts, lists, describes and cancels restores.
    Restore {
        /// What to do.
        #[command(subcommand)]
        command: backups::RestoreCommand,
    },
    /// Lists workflow runs (backups, restores, deletions, syncs, schedule ticks) by type and
    /// status.
    Workflow {
        /// What to do.
        #[command(subcommand)]
        command: runs::WorkflowCommand,
    },
    /// Lists a cluster's live resources by namespace and kind: what a backup can pick.
    Resources(entities::ResourcesArgs),
    /// Works on a stopped server's database.
    Admin {
        /// What to do.
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The data mover run inside Jobs: backs up or restores a local folder.
    Mover {
        /// What to move.
        #[command(subcommand)]
        command: crate::mover::MoverCommand,
    },
    /// Prints a shell completion script.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `stowage location` commands: those of every entity, and `sync`.
#[derive(Debug, Subcommand)]
pub enum LocationCommand {
    /// Add, list, get, remove.
    #[command(flatten)]
    Entity(entities::EntityCommand<Box<entities::LocationAdd>>),
    /// Lists the finished backups found in the location into the catalog (after a disaster,
    /// on a new server).
    Sync {
        /// The location (name or id).
        name: String,
        /// Follow the sync until it ends and say what it found.
        #[arg(long)]
        wait: bool,
        /// Client flags.
        #[command(flatten)]
        client: ClientFlags,
    },
}

/// `stowage server`'s arguments.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Folder of the embedded database; created if missing.
    #[arg(long, env = "STOWAGE_DATA_DIR", default_value = "./stowage-data")]
    pub data_dir: PathBuf,
    /// Address to listen on (loopback only unless --tls-cert is given).
    #[arg(long, env = "STOWAGE_LISTEN", default_value = "127.0.0.1:8432")]
    pub listen: SocketAddr,
    /// OIDC issuer URL whose access tokens are accepted (discovered at start).
    #[arg(long, env = "STOWAGE_OIDC_ISSUER", requires = "oidc_audience")]
    pub oidc_issuer: Option<String>,
    /// The audience Stowage's access tokens carry.
    #[arg(long, env = "STOWAGE_OIDC_AUDIENCE")]
    pub oidc_audience: Option<String>,
    /// The token claim holding the caller's groups.
    #[arg(long, env = "STOWAGE_OIDC_GROUPS_CLAIM", default_value = "groups")]
    pub oidc_groups_claim: String,
    /// The issuer's public client for `stowage login --device` (allowed the device
    /// authorization grant); the CLI learns it from the server.
    #[arg(long, env = "STOWAGE_OIDC_DEVICE_CLIENT_ID", requires = "oidc_issuer")]
    pub oidc_device_client_id: Option<String>,
    /// A group whose members are admins (repeatable).
    #[arg(
        long = "admin-group",
        env = "STOWAGE_ADMIN_GROUPS",
        value_delimiter = ','
    )]
    pub admin_groups: Vec<String>,
    /// A group whose members are operators (repeatable).
    #[arg(
        long = "operator-group",
        env = "STOWAGE_OPERATOR_GROUPS",
        value_delimiter = ','
    )]
    pub operator_groups: Vec<String>,
    /// The image data-mover Jobs run (it must hold the `stowage` binary).
    #[arg(long, env = "STOWAGE_MOVER_IMAGE")]
    pub mover_image: Option<String>,
    /// File of the master key that seals stored secrets (mode 0600; generated on the first
    /// start). Default: `master-key` in the data folder. The key can instead be given as base64
    /// in the STOWAGE_MASTER_KEY environment variable.
    #[arg(long, env = "STOWAGE_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// PEM file of the certificate chain to serve HTTPS with (with --tls-key). Without it the
    /// server speaks plain HTTP and listens on loopback only.
    #[arg(long, env = "STOWAGE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file of the certificate's private key.
    #[arg(long, env = "STOWAGE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// `stowage admin` commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Reads the whole database and reports what is in it and anything wrong.
    Inspect {
        /// The server's database folder.
        #[arg(long, env = "STOWAGE_DATA_DIR", default_value = "./stowage-data")]
        data_dir: PathBuf,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Drops the projections and replays the whole log into fresh ones.
    Rebuild {
        /// The server's database folder.
        #[arg(long, env = "STOWAGE_DATA_DIR", default_value = "./stowage-data")]
        data_dir: PathBuf,
    },
}

/// Why a CLI command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Talking to the server failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The configuration file is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened or read.
    #[error(
        "{0}\n  is the server still running on it? `stowage admin` works on a stopped server's database"
    )]
    Database(#[from] stowage_engine::Error),
    /// Bad input.
    #[error("{0}")]
    Usage(String),
    /// Logging in failed.
    #[error(transparent)]
    Login(#[from] login::LoginError),
    /// Printing failed.
    #[error("cannot print: {0}")]
    Output(String),
    /// The database has problems (`admin inspect`).
    #[error("the database has {0} problem(s); see above")]
    Unhealthy(usize),
}

/// The server and token a client command uses: flags, then the configuration file (its token
/// renewed if it has expired), then defaults.
pub async fn client(flags: &ClientFlags) -> Result<Client, CliError> {
    let path = ClientConfig::default_path()?;
    let file = ClientConfig::load(&path)?;
    let server = flags
        .server
        .clone()
        .or(file.server.clone())
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());
    let ca_file = flags.ca_file.clone().or(file.ca_file.clone());
    // The command that logs in again names the server actually used, and the file's way of
    // logging in only when the file's token is the one presented.
    let login_command = login::login_command(&ClientConfig {
        server: Some(server.clone()),
        oidc: file.oidc.clone().filter(|_| flags.token.is_none()),
        ..ClientConfig::default()
    });
    let token = match &flags.token {
        Some(token) => Some(token.clone()),
        None => login::current_token(file, &path).await?,
    };
    Ok(Client::new(&server, token, ca_file.as_deref())?.with_login_command(login_command))
}

pub(crate) fn print(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", text.trim_end()).map_err(|err| CliError::Output(err.to_string()))
}

/// `stowage whoami`.
pub async fn whoami(flags: &ClientFlags) -> Result<(), CliError> {
    let who: crate::auth::Principal = client(flags).await?.get("/v1/whoami").await?;
    let text = output::render(flags.output, &who, |who| {
        let mut table = output::table(&["subject", "role", "groups"]);
        table.add_row(vec![
            who.subject.clone(),
            who.role.as_str().to_string(),
            who.groups.join(","),
        ]);
        table
    })
    .map_err(CliError::Output)?;
    print(&text)
}

fn event_row(event: &AuditEvent) -> Vec<String> {
    vec![
        event.global_seq.to_string(),
        event.at.clone(),
        event.actor.clone(),
        event.stream.clone(),
        event.kind.clone(),
        output::short_json(&event.payload, 60),
    ]
}

const EVENT_COLUMNS: [&str; 6] = ["seq", "at", "actor", "stream", "kind", "payload"];

/// `stowage events`.
pub async fn events(
    after: u64,
    limit: usize,
    follow: bool,
    flags: &ClientFlags,
) -> Result<(), CliError> {
    let client = client(flags).await?;
    if !follow {
        let page: AuditPage = client
            .get(&format!("/v1/events?after={after}&limit={limit}"))
            .await?;
        let text = output::render(flags.output, &page, |page| {
            let mut table = output::table(&EVENT_COLUMNS);
            for event in &page.events {
                table.add_row(event_row(event));
            }
            table
        })
        .map_err(CliError::Output)?;
        return print(&text);
    }
    let mut stream = Box::pin(
        client
            .follow::<AuditEvent>(&format!("/v1/events?after={after}&follow=true"))
            .await?,
    );
    if flags.output == Format::Table {
        print(&EVENT_COLUMNS.map(str::to_uppercase).join("\t"))?;
    }
    while let Some(event) = stream.next().await {
        let event = event?;
        let line = match flags.output {
            Format::Table => event_row(&event).join("\t"),
            Format::Json => {
                serde_json::to_string(&event).map_err(|err| CliError::Output(err.to_string()))?
            }
            Format::Yaml => format!(
                "---\n{}",
                serde_yaml::to_string(&event).map_err(|err| CliError::Output(err.to_string()))?
            ),
        };
        print(&line)?;
    }
    Ok(())
}

/// `stowage admin inspect`.
pub fn admin_inspect(data_dir: &std::path::Path, format: Format) -> Result<(), CliError> {
    let report = stowage_engine::inspect(data_dir)?;
    let text = output::render(format, &report, |report| {
        let mut table = output::table(&[
            "streams",
            "events",
            "global head",
            "projection entries",
            "problems",
        ]);
        table.add_row(vec![
            report.streams.to_string(),
            report.events.to_string(),
            report.global_head.to_string(),
            report.projection_entries.to_string(),
            report.problems.len().to_string(),
        ]);
        for problem in &report.problems {
            table.add_row(vec![format!("problem: {problem}")]);
        }
        table
    })
    .map_err(CliError::Output)?;
    print(&text)?;
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::Unhealthy(report.problems.len()))
    }
}

/// `stowage admin rebuild`: the server's projections, dropped and replayed from the log.
pub async fn admin_rebuild(data_dir: &std::path::Path) -> Result<(), CliError> {
    if !data_dir.join("CURRENT").exists() {
        return Err(CliError::Usage(format!(
            "{} holds no Stowage database (pass --data-dir)",
            data_dir.display()
        )));
    }
    let store = crate::server::open_store(data_dir)?;
    let started = std::time::Instant::now();
    let events = store.rebuild_projections().await?;
    print(&format!(
        "replayed {events} events into fresh projections in {:.2} s",
        started.elapsed().as_secs_f64()
    ))
}

/// `stowage completion SHELL`.
pub fn completion(shell: clap_complete::Shell) {
    let mut command = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "stowage", &mut std::io::stdout());
}
