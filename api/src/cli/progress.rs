//! `--wait`: follows a backup or restore until its run ends, drawing progress bars (step and
//! objects, volumes with an ETA, bytes with their rate) on a terminal, or printing each new step
//! on stderr when stderr is not one. It follows the run's events as server-sent events and reads
//! the catalog record, which the run keeps current, after each.

use std::io::IsTerminal;
use std::time::Duration;

use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use serde_json::Value;

use super::CliError;
use super::client::{Client, ClientError};

/// How often the record is read when no events come.
const POLL: Duration = Duration::from_millis(300);

/// What is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// A backup.
    Backup,
    /// A restore.
    Restore,
}

impl Watched {
    /// Its name, as messages say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backup => "backup",
            Self::Restore => "restore",
        }
    }

    fn path(self, id: &str) -> String {
        match self {
            Self::Backup => format!("/v1/backups/{id}"),
            Self::Restore => format!("/v1/restores/{id}"),
        }
    }
}

/// `bytes` for people: `1.5 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    indicatif::BinaryBytes(bytes).to_string()
}

fn number(value: &Value, name: &str) -> u64 {
    value["progress"][name].as_u64().unwrap_or(0)
}

/// The bars of one followed run.
struct Bars {
    _multi: MultiProgress,
    step: ProgressBar,
    volumes: ProgressBar,
    bytes: ProgressBar,
}

impl Bars {
    fn new() -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let step = multi.add(ProgressBar::new_spinner());
        step.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        step.enable_steady_tick(Duration::from_millis(120));
        let volumes = multi.add(ProgressBar::new(0));
        volumes.set_style(
            ProgressStyle::with_template("  volumes [{bar:30}] {pos}/{len} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let bytes = multi.add(ProgressBar::new_spinner());
        bytes.set_style(
            ProgressStyle::with_template("  data    {binary_bytes} at {binary_bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        Self {
            _multi: multi,
            step,
            volumes,
            bytes,
        }
    }

    fn update(&self, watched: Watched, record: &Value) {
        let step = record["step"].as_str().unwrap_or("");
        let status = record["status"].as_str().unwrap_or("");
        let figures = match watched {
            Watched::Backup => format!("{} objects", number(record, "objects")),
            Watched::Restore => format!(
                "{} created, {} skipped, {} failed",
                number(record, "created"),
                number(record, "skipped"),
                number(record, "failed")
            ),
        };
        self.step.set_message(if step.is_empty() {
            format!("{status} · {figures}")
        } else {
            format!("{status} · step {step} · {figures}")
        });
        self.volumes.set_length(number(record, "volumes_total"));
        self.volumes.set_position(number(record, "volumes_done"));
        let bytes = match watched {
            Watched::Backup => number(record, "bytes_read"),
            Watched::Restore => number(record, "bytes"),
        };
        self.bytes.set_position(bytes);
    }

    fn finish(&self) {
        self.step.finish();
        self.volumes.finish();
        self.bytes.finish();
    }
}

/// Follows the backup or restore `id` until it is no longer running; returns its last record.
/// It follows the events of the record's run as the server sends them, reading the record again
/// after each (the catalog changes in the same write as the event); when the server cannot send
/// them, or once they end, it reads the record every [`POLL`] until the run's end shows.
pub async fn wait(client: &Client, watched: Watched, id: &str) -> Result<Value, CliError> {
    let mut shown = Shown {
        bars: Bars::new(),
        quiet_terminal: !std::io::stderr().is_terminal(),
        last_step: String::new(),
        watched,
        id,
    };
    let record = client.call(Method::GET, &watched.path(id), None).await?;
    let run = record["run"].as_str().unwrap_or_default().to_string();
    if let Some(done) = shown.record(record) {
        return Ok(done);
    }
    if let Ok(events) = client
        .follow::<Value>(&format!("/v1/workflows/{run}/events?follow=true"))
        .await
    {
        let mut events = std::pin::pin!(events);
        while let Some(Ok(_event)) = events.next().await {
            let record = client.call(Method::GET, &watched.path(id), None).await?;
            if let Some(done) = shown.record(record) {
                return Ok(done);
            }
        }
    }
    loop {
        let record = client.call(Method::GET, &watched.path(id), None).await?;
        if let Some(done) = shown.record(record) {
            return Ok(done);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What `wait` shows of a followed record.
struct Shown<'a> {
    bars: Bars,
    quiet_terminal: bool,
    last_step: String,
    watched: Watched,
    id: &'a str,
}

impl Shown<'_> {
    /// Shows `record`; returns it when its run is over.
    fn record(&mut self, record: Value) -> Option<Value> {
        self.bars.update(self.watched, &record);
        let step = record["step"].as_str().unwrap_or("").to_string();
        if self.quiet_terminal && !step.is_empty() && step != self.last_step {
            eprintln!("{} {}: step {step}", self.watched.as_str(), self.id);
            self.last_step = step;
        }
        if record["status"] == "running" {
            return None;
        }
        self.bars.finish();
        Some(record)
    }
}

/// Follows the deletion of backup `id` until the backup is gone; fails with the deletion's
/// error when it stops without deleting.
pub async fn wait_deleted(client: &Client, id: &str) -> Result<(), CliError> {
    loop {
        match client
            .call(Method::GET, &format!("/v1/backups/{id}"), None)
            .await
        {
            Err(ClientError::Api { status: 404, .. }) => return Ok(()),
            Err(err) => return Err(err.into()),
            Ok(record) if record["status"] != "deleting" => {
                return Err(CliError::Usage(format!(
                    "backup {id} was not deleted: {}",
                    record["deletion"]["error"]
                        .as_str()
                        .unwrap_or("unknown reason")
                )));
            }
            Ok(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Follows workflow run `run` until it ends; returns its final state.
pub async fn wait_run(client: &Client, run: &str) -> Result<Value, CliError> {
    loop {
        let state = client
            .call(Method::GET, &format!("/v1/workflows/{run}"), None)
            .await?;
        if state["status"] != "running" {
            return Ok(state);
        }
        tokio::time::sleep(POLL).await;
    }
}
