//! The `stowage` command: the server, the data mover and, later, the client commands.

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
    },
    /// The data mover run inside Jobs: backs up or restores a local folder.
    Mover {
        #[command(subcommand)]
        command: stowage::mover::MoverCommand,
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
        Command::Server { data_dir, listen } => {
            let config = stowage::ServerConfig { data_dir, listen };
            stowage::serve(
                config,
                |addr| eprintln!("stowage server listening on http://{addr}"),
                shutdown_signal(),
            )
            .await
            .context("stowage server")?;
        }
        Command::Mover { command } => {
            let code = stowage::mover::run(command).await;
            if code != 0 {
                std::process::exit(code);
            }
        }
    }
    Ok(())
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
