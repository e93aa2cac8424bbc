//! The `kubesim` command: runs one simulated Kubernetes cluster until Ctrl-C and prints where
//! its kubeconfig is (SIGTERM stops it too). Run with `cargo run --bin kubesim -- --folder ./kubesim-data`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use stowage_tests::kubesim::{Controllers, Kubesim, KubesimOptions, LocalImage};
use tracing_subscriber::EnvFilter;

/// A Kubernetes API server for tests: HTTPS on loopback, a generated CA, a bearer token.
#[derive(Debug, Parser)]
#[command(name = "kubesim", version, about)]
struct Cli {
    /// Folder for the CA, token, kubeconfig and the object journal; created if missing.
    #[arg(long, env = "KUBESIM_FOLDER", default_value = "./kubesim-data")]
    folder: PathBuf,
    /// Name of the cluster (and of the kubeconfig context).
    #[arg(long, default_value = "kubesim")]
    name: String,
    /// Address to listen on (loopback only); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Keep objects in memory only instead of journaling them to the folder.
    #[arg(long)]
    in_memory: bool,
    /// Run no simulated controller: an API server and nothing more.
    #[arg(long)]
    no_controllers: bool,
    /// Pods whose container image starts with PREFIX run their command as a local process,
    /// BINARY replacing argv[0] (repeatable), e.g. `stowage/mover=target/debug/stowage`.
    #[arg(long = "local-image", value_name = "PREFIX=BINARY")]
    local_images: Vec<LocalImage>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("KUBESIM_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut options = KubesimOptions::new(cli.name, cli.folder);
    options.listen = cli.listen;
    options.persistent = !cli.in_memory;
    options.local_images = cli.local_images;
    if cli.no_controllers {
        options.controllers = Controllers::none();
    }
    let cluster = Kubesim::start(options).await.context("starting kubesim")?;
    println!("kubesim serving on {}", cluster.url());
    println!("kubeconfig: {}", cluster.kubeconfig_path().display());
    // Stopping on SIGTERM as on Ctrl-C lets kubesim kill the processes of local pods, which
    // run in their own process groups and would otherwise outlive it.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted.context("waiting for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    cluster.stop().await;
    Ok(())
}
