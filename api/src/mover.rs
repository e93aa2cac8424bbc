//! `stowage mover`: the data mover's entry point, run inside a data-mover Job: back up a local
//! folder into a location's repository, or restore one volume of a backup into a folder, then
//! print one JSON summary line on stdout.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use serde::Serialize;
use stowage_workflows::storage::{
    BackupOptions, KdfParams, Location, Repository, VolumeCheckpoint, VolumeSource,
};

mod checkpoint;

/// Where the repository is and how to unlock it; each from an argument or the environment.
#[derive(Debug, Clone, Args)]
pub struct RepositoryArgs {
    /// The location as JSON, e.g. `{"kind":{"type":"local","root":"/backups"},"prefix":"repo"}`.
    #[arg(long, env = "STOWAGE_LOCATION")]
    pub location: String,
    /// The repository's passphrase.
    #[arg(long, env = "STOWAGE_PASSPHRASE", hide_env_values = true)]
    pub passphrase: String,
    /// Uploads or downloads in flight at once.
    #[arg(long, env = "STOWAGE_MOVER_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,
}

/// Which volume of which backup, in which repository.
#[derive(Debug, Clone, Args)]
pub struct VolumeArgs {
    /// Where the repository is and how to unlock it.
    #[command(flatten)]
    pub repository: RepositoryArgs,
    /// The backup's id.
    #[arg(long, env = "STOWAGE_BACKUP_ID")]
    pub backup: String,
    /// The volume's name in the backup.
    #[arg(long, env = "STOWAGE_VOLUME")]
    pub volume: String,
}

/// The mover's two directions.
#[derive(Debug, Subcommand)]
pub enum MoverCommand {
    /// Backs up a folder as one volume of a backup (creating the repository with `--init`).
    Backup {
        /// The repository, backup and volume.
        #[command(flatten)]
        volume: VolumeArgs,
        /// The folder to back up.
        #[arg(long, env = "STOWAGE_SOURCE_PATH")]
        path: PathBuf,
        /// Create the repository if the location has none.
        #[arg(long)]
        init: bool,
        /// Write only this volume's chunks and tree, no manifest: the backup is staged, and
        /// whoever writes its other parts finalizes it.
        #[arg(long, env = "STOWAGE_MOVER_STAGED")]
        staged: bool,
        /// A file to keep the checkpoint in: read on start to resume an interrupted backup of
        /// the same backup and volume, rewritten as files complete, removed at the end.
        #[arg(long, env = "STOWAGE_MOVER_CHECKPOINT")]
        checkpoint: Option<PathBuf>,
        /// An earlier finalized backup of the same volume: files unchanged since are not read
        /// again (an incremental backup). A checkpoint found in `--checkpoint` wins over it.
        #[arg(long, env = "STOWAGE_MOVER_PARENT")]
        parent: Option<String>,
    },
    /// Restores one volume of a backup (or one path of it) into a folder.
    Restore {
        /// The repository, backup and volume.
        #[command(flatten)]
        volume: VolumeArgs,
        /// The folder to restore into; created if missing.
        #[arg(long, env = "STOWAGE_TARGET_PATH")]
        target: PathBuf,
        /// Restore only this path of the volume.
        #[arg(long)]
        only: Option<String>,
    },
}

/// The final JSON line.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Whether the move succeeded.
    pub ok: bool,
    /// `backup` or `restore`.
    pub command: &'static str,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long it took.
    pub seconds: f64,
    /// What was moved (files, bytes, chunks).
    #[serde(flatten)]
    pub figures: serde_json::Value,
}

/// Runs the mover, prints the JSON summary and returns the process exit code.
pub async fn run(command: MoverCommand) -> i32 {
    let summary = execute(command).await;
    match serde_json::to_string(&summary) {
        Ok(line) => println!("{line}"),
        Err(err) => eprintln!("cannot encode the summary: {err}"),
    }
    if summary.ok { 0 } else { 1 }
}

/// Runs the mover and returns its summary.
pub async fn execute(command: MoverCommand) -> Summary {
    let started = Instant::now();
    let (name, result) = match command {
        MoverCommand::Backup {
            volume,
            path,
            init,
            staged,
            checkpoint,
            parent,
        } => (
            "backup",
            backup_cmd(volume, path, init, staged, checkpoint, parent).await,
        ),
        MoverCommand::Restore {
            volume,
            target,
            only,
        } => ("restore", restore_cmd(volume, target, only).await),
    };
    let (ok, error, figures) = match result {
        Ok(figures) => (true, None, figures),
        Err(err) => (
            false,
            Some(err),
            serde_json::Value::Object(Default::default()),
        ),
    };
    Summary {
        ok,
        command: name,
        error,
        seconds: started.elapsed().as_secs_f64(),
        figures,
    }
}

async fn open(args: &RepositoryArgs, init: bool) -> Result<Repository, String> {
    let location: Location = serde_json::from_str(&args.location)
        .map_err(|err| format!("STOWAGE_LOCATION / --location is not a valid location: {err}"))?;
    match Repository::open(&location, &args.passphrase).await {
        Err(stowage_workflows::storage::Error::NotARepository { .. }) if init => {
            match Repository::init(&location, &args.passphrase, KdfParams::default()).await {
                // Another mover of the same backup created it first.
                Err(stowage_workflows::storage::Error::AlreadyInitialized { .. }) => {
                    Repository::open(&location, &args.passphrase).await
                }
                other => other,
            }
            .map_err(|err| err.to_string())
        }
        other => other.map_err(|err| err.to_string()),
    }
}

async fn backup_cmd(
    VolumeArgs {
        repository: args,
        backup,
        volume,
    }: VolumeArgs,
    path: PathBuf,
    init: bool,
    staged: bool,
    checkpoint_file: Option<PathBuf>,
    parent: Option<String>,
) -> Result<serde_json::Value, String> {
    let repo = open(&args, init).await?;
    let options = BackupOptions {
        concurrency: args.concurrency,
        ..BackupOptions::default()
    };
    let source = VolumeSource {
        name: volume.clone(),
        path: path.clone(),
    };
    let mut resume = match &checkpoint_file {
        Some(file) => checkpoint::read(file)?,
        None => None,
    };
    if resume.is_none()
        && let Some(parent) = &parent
    {
        resume = Some(
            repo.checkpoint_from_parent(parent, &backup, &volume)
                .await
                .map_err(|err| format!("parent backup `{parent}`: {err}"))?,
        );
    }
    let save = |state: &VolumeCheckpoint| {
        if let Some(file) = &checkpoint_file
            && let Err(err) = checkpoint::write(file, state)
        {
            tracing::warn!(%err, "cannot save the checkpoint");
        }
    };
    let volume_summary = repo
        .backup_volume(&backup, &source, &options, resume.as_ref(), &|_| {}, &save)
        .await
        .map_err(|err| err.to_string())?;
    let finalized = if staged {
        false
    } else {
        repo.finalize_backup(
            &backup,
            &format!("stowage mover: {}", path.display()),
            Default::default(),
        )
        .await
        .map_err(|err| err.to_string())?;
        true
    };
    if let Some(file) = &checkpoint_file {
        checkpoint::remove(file)?;
    }
    let progress = volume_summary.progress;
    Ok(serde_json::json!({
        "backup": backup,
        "volume": volume,
        "finalized": finalized,
        "tree_hash": volume_summary.record.tree_hash,
        "files": progress.files,
        "files_unchanged": progress.files_unchanged,
        "bytes_read": progress.bytes_read,
        "chunks_uploaded": progress.chunks_uploaded,
        "bytes_uploaded": progress.bytes_uploaded,
        "chunks_reused": progress.chunks_reused,
    }))
}

async fn restore_cmd(
    VolumeArgs {
        repository: args,
        backup,
        volume,
    }: VolumeArgs,
    target: PathBuf,
    only: Option<String>,
) -> Result<serde_json::Value, String> {
    let repo = open(&args, false).await?;
    let summary = repo
        .restore(&backup, &volume, &target, only.as_deref(), args.concurrency)
        .await
        .map_err(|err| err.to_string())?;
    Ok(serde_json::json!({
        "backup": backup,
        "entries": summary.entries,
        "bytes": summary.bytes,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_folder_goes_to_a_local_repository_and_back_and_a_wrong_passphrase_fails() {
        let source = tempfile::tempdir().unwrap();
        std::fs::create_dir(source.path().join("d")).unwrap();
        std::fs::write(source.path().join("d/a.txt"), b"mover content").unwrap();
        let repo = tempfile::tempdir().unwrap();
        let args = |passphrase: &str| RepositoryArgs {
            location: serde_json::json!({
                "kind": {"type": "local", "root": repo.path()},
                "prefix": "r"
            })
            .to_string(),
            passphrase: passphrase.into(),
            concurrency: 2,
        };
        let volume = |passphrase: &str| VolumeArgs {
            repository: args(passphrase),
            backup: "b1".into(),
            volume: "v".into(),
        };
        let backup = MoverCommand::Backup {
            volume: volume("pw"),
            path: source.path().to_path_buf(),
            init: true,
            staged: false,
            checkpoint: None,
            parent: None,
        };
        assert_eq!(run(backup).await, 0);
        let target = tempfile::tempdir().unwrap();
        let restore = |passphrase: &str| MoverCommand::Restore {
            volume: volume(passphrase),
            target: target.path().to_path_buf(),
            only: None,
        };
        assert_eq!(run(restore("pw")).await, 0);
        assert_eq!(
            std::fs::read(target.path().join("d/a.txt")).unwrap(),
            b"mover content"
        );
        assert_eq!(run(restore("wrong")).await, 1);
        let refused = execute(restore("wrong")).await;
        assert!(!refused.ok);
        assert!(
            refused
                .error
                .as_deref()
                .unwrap()
                .contains("wrong passphrase"),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_staged_mover_writes_no_manifest_and_its_checkpoint_file_is_removed_at_the_end() {
        let source = tempfile::tempdir().unwrap();
        std::fs::write(source.path().join("a.txt"), b"staged content").unwrap();
        let repo = tempfile::tempdir().unwrap();
        let location = serde_json::json!({
            "kind": {"type": "local", "root": repo.path()},
            "prefix": "r"
        })
        .to_string();
        let checkpoint = source.path().join("checkpoint.json");
        let backup = MoverCommand::Backup {
            volume: VolumeArgs {
                repository: RepositoryArgs {
                    location: location.clone(),
                    passphrase: "pw".into(),
                    concurrency: 2,
                },
                backup: "b1".into(),
                volume: "v".into(),
            },
            path: source.path().to_path_buf(),
            init: true,
            staged: true,
            checkpoint: Some(checkpoint.clone()),
            parent: None,
        };
        let summary = execute(backup).await;
        assert!(summary.ok, "{summary:?}");
        assert_eq!(summary.figures["finalized"], false);
        assert!(!checkpoint.exists(), "the checkpoint file is removed");

        let location: Location = serde_json::from_str(&location).unwrap();
        let repository = Repository::open(&location, "pw").await.unwrap();
        let err = repository.manifest("b1").await.unwrap_err();
        assert!(err.to_string().contains("no manifest"), "{err}");
        let manifest = repository
            .finalize_backup("b1", "server", Default::default())
            .await
            .unwrap();
        assert_eq!(manifest.volumes.len(), 1);
        assert_eq!(manifest.volumes[0].name, "v");
    }

    #[test]
    fn a_checkpoint_file_that_is_not_one_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("checkpoint.json");
        std::fs::write(&file, b"not json").unwrap();
        let err = checkpoint::read(&file).unwrap_err();
        assert!(
            err.contains("checkpoint.json") && err.contains("not a checkpoint"),
            "{err}"
        );
        assert_eq!(
            checkpoint::read(&dir.path().join("none.json")).unwrap(),
            None
        );
    }
}
