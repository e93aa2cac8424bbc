//! The CLI commands of workflow runs: `workflow list`, every run you may see (every page), by
//! type and status.

use clap::Subcommand;
use serde_json::Value;

use super::backups::{show, text};
use super::output;
use super::{CliError, ClientFlags, client};

/// `stowage workflow` commands.
#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Lists the workflow runs you may see, oldest first (every page): those of the backups and
    /// restores you may see, and the others you started.
    List {
        /// Only runs of this type (backup, backup_delete, catalog_sync, restore, schedule_tick).
        #[arg(long = "type", value_name = "TYPE")]
        workflow_type: Option<String>,
        /// Only runs in this status (running, completed, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
        /// Client flags.
        #[command(flatten)]
        client: ClientFlags,
    },
}

fn runs_table(runs: &[Value]) -> comfy_table::Table {
    let mut table = output::table(&[
        "id", "type", "status", "step", "started", "finished", "error",
    ]);
    for run in runs {
        table.add_row(vec![
            text(&run["id"]),
            text(&run["type"]),
            text(&run["status"]),
            text(&run["step"]),
            text(&run["started_at"]),
            text(&run["finished_at"]),
            text(&run["error"]),
        ]);
    }
    table
}

/// Runs a `stowage workflow` command.
pub async fn workflow(command: WorkflowCommand) -> Result<(), CliError> {
    match command {
        WorkflowCommand::List {
            workflow_type,
            status,
            client: flags,
        } => {
            let client = client(&flags).await?;
            let filters: Vec<(&str, &str)> = [("type", &workflow_type), ("status", &status)]
                .into_iter()
                .filter_map(|(name, value)| value.as_deref().map(|value| (name, value)))
                .collect();
            let runs = Value::Array(client.list_all("workflows", &filters).await?);
            show(flags.output, &runs, |runs| {
                runs_table(runs.as_array().map(Vec::as_slice).unwrap_or_default())
            })
        }
    }
}
