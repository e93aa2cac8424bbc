//! The `stowage` command: the server and, later, the client commands.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Stowage: back up Kubernetes applications with their data, restore them anywhere.
#[derive(Debug, Parser)]
#[command(name = "stowage", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the Stowage server: the REST API over an embedded RocksDB.
    Server {
        /// Folder of the embedded database; created if missing.
        #[arg(long, env = "STOWAGE_DATA_DIR", default_value = "./stowage-data")]
        data_dir: PathBuf,
        /// Address to listen on (loopback only until TLS is configured).
        #[arg(long, env = "STOWAGE_LISTEN", default_value = "127.0.0.1:8432")]
        listen: SocketAddr,
        /// OIDC issuer URL whose access tokens are accepted (discovered at start).
        #[arg(long, env = "STOWAGE_OIDC_ISSUER", requires = "oidc_audience")]
        oidc_issuer: Option<String>,
        /// The audience Stowage's access tokens carry.
        #[arg(long, env = "STOWAGE_OIDC_AUDIENCE")]
        oidc_audience: Option<String>,
        /// The token claim holding the caller's groups.
        #[arg(long, env = "STOWAGE_OIDC_GROUPS_CLAIM", default_value = "groups")]
        oidc_groups_claim: String,
        /// A group whose members are admins (repeatable).
        #[arg(
            long = "admin-group",
            env = "STOWAGE_ADMIN_GROUPS",
            value_delimiter = ','
        )]
        admin_groups: Vec<String>,
        /// A group whose members are operators (repeatable).
        #[arg(
            long = "operator-group",
            env = "STOWAGE_OPERATOR_GROUPS",
            value_delimiter = ','
        )]
        operator_groups: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("STOWAGE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Server {
            data_dir,
            listen,
            oidc_issuer,
            oidc_audience,
            oidc_groups_claim,
            admin_groups,
            operator_groups,
        } => {
            let mut config = stowage::ServerConfig::new(data_dir, listen);
            if let (Some(issuer), Some(audience)) = (oidc_issuer, oidc_audience) {
                let mut oidc = stowage::auth::OidcConfig::new(issuer, audience);
                oidc.groups_claim = oidc_groups_claim;
                config.oidc = Some(oidc);
            }
            config.roles = stowage::auth::RoleMapping {
                admin_groups,
                operator_groups,
            };
            stowage::serve(config, print_started, shutdown_signal())
                .await
                .context("stowage server")?;
        }
    }
    Ok(())
}

/// Tells the operator where the server listens, and the bootstrap token the one time it exists.
fn print_started(started: &stowage::Started) {
    eprintln!("stowage server listening on http://{}", started.addr);
    if let Some(token) = &started.new_bootstrap_token {
        eprintln!(
            "\nbootstrap admin token (shown this once; kept in {}, mode 0600):\n\n    {token}\n",
            started.bootstrap_token_path.display()
        );
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot watch SIGTERM; Ctrl-C only");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
