//! The `stowage` command: the server, the data mover, and the client commands that talk to it.

use anyhow::Context;
use clap::Parser;
use stowage::cli::{self, AdminCommand, Cli, Command, ServerArgs};
use tracing_subscriber::EnvFilter;

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
        Command::Server(args) => server(args).await?,
        Command::Login(args) => cli::login::login(args).await?,
        Command::Whoami(flags) => cli::whoami(&flags).await?,
        Command::Events {
            after,
            limit,
            follow,
            client,
        } => cli::events(after, limit, follow, &client).await?,
        Command::Admin { command } => match command {
            AdminCommand::Inspect { data_dir, output } => cli::admin_inspect(&data_dir, output)?,
            AdminCommand::Rebuild { data_dir } => cli::admin_rebuild(&data_dir).await?,
        },
        Command::Mover { command } => {
            let code = stowage::mover::run(command).await;
            if code != 0 {
                std::process::exit(code);
            }
        }
        Command::Completion { shell } => cli::completion(shell),
        Command::Cluster { command } => cli::clusters::cluster(command).await?,
        Command::Location { command } => match command {
            cli::LocationCommand::Entity(command) => {
                cli::entities::run("locations", command, cli::entities::location_add).await?
            }
            cli::LocationCommand::Sync { name, wait, client } => {
                cli::backups::location_sync(&name, wait, &client).await?
            }
        },
        Command::Credential { command } => {
            cli::entities::run("credentials", command, cli::entities::credential_add).await?
        }
        Command::Rule { command } => {
            cli::entities::run("rules", command, cli::entities::rule_add).await?
        }
        Command::Policy { command } => {
            cli::entities::run("schedule-policies", command, cli::schedules::policy_add).await?
        }
        Command::Schedule { command } => cli::schedules::schedule(command).await?,
        Command::Resources(args) => cli::entities::resources(args).await?,
        Command::Backup { command } => cli::backups::backup(command).await?,
        Command::Restore { command } => cli::backups::restore(command).await?,
        Command::Workflow { command } => cli::runs::workflow(command).await?,
    }
    Ok(())
}

async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let mut config = stowage::ServerConfig::new(args.data_dir, args.listen);
    if let (Some(issuer), Some(audience)) = (args.oidc_issuer, args.oidc_audience) {
        let mut oidc = stowage::auth::OidcConfig::new(issuer, audience);
        oidc.groups_claim = args.oidc_groups_claim;
        oidc.device_client_id = args.oidc_device_client_id;
        config.oidc = Some(oidc);
    }
    config.roles = stowage::auth::RoleMapping {
        admin_groups: args.admin_groups,
        operator_groups: args.operator_groups,
    };
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(stowage::tls::TlsFiles { cert, key });
    }
    if let Some(image) = args.mover_image {
        config.workflows.mover.image = image;
    }
    // The key itself only from the environment, never as an argument (shell history, `ps`).
    match (
        std::env::var("STOWAGE_MASTER_KEY").ok(),
        args.master_key_file,
    ) {
        (Some(_), Some(_)) => anyhow::bail!(
            "give the master key either in STOWAGE_MASTER_KEY or as --master-key-file, not both"
        ),
        (Some(key), None) => config.master_key = stowage::master_key::MasterKeySource::Given(key),
        (None, Some(path)) => config.master_key = stowage::master_key::MasterKeySource::File(path),
        (None, None) => {}
    }
    stowage::serve(config, print_started, shutdown_signal())
        .await
        .context("stowage server")
}

/// Tells the operator where the server listens, and the bootstrap token the one time it exists.
fn print_started(started: &stowage::Started) {
    eprintln!(
        "stowage server listening on {}://{}",
        started.scheme, started.addr
    );
    if let Some(token) = &started.new_bootstrap_token {
        eprintln!(
            "\nbootstrap admin token (shown this once; kept in {}, mode 0600):\n\n    {token}\n",
            started.bootstrap_token_path.display()
        );
    }
    if let Some(path) = &started.generated_master_key {
        eprintln!(
            "\na master key was generated in {} (mode 0600): it seals the kubeconfigs, cloud keys \
             and passphrases stored here. Keep a copy apart from the data: without it they cannot \
             be read.\n",
            path.display()
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
