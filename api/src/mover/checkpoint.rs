//! The mover's checkpoint file: the last [`VolumeCheckpoint`] of a backup as JSON, written
//! atomically (a temporary file renamed over it) so a killed mover leaves the previous one.

use std::path::Path;

use stowage_workflows::storage::VolumeCheckpoint;

/// Reads the checkpoint file; `None` when there is none yet.
pub fn read(file: &Path) -> Result<Option<VolumeCheckpoint>, String> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|err| {
            format!(
                "the checkpoint file {} is not a checkpoint: {err}",
                file.display()
            )
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(format!(
            "cannot read the checkpoint file {}: {err}",
            file.display()
        )),
    }
}

/// Replaces the checkpoint file with `state`.
pub fn write(file: &Path, state: &VolumeCheckpoint) -> Result<(), String> {
    let body = serde_json::to_vec(state).map_err(|err| format!("cannot encode: {err}"))?;
    let temporary = file.with_extension("partial");
    std::fs::write(&temporary, body)
        .and_then(|()| std::fs::rename(&temporary, file))
        .map_err(|err| format!("cannot write {}: {err}", file.display()))
}

/// Removes the checkpoint file of a finished backup.
pub fn remove(file: &Path) -> Result<(), String> {
    match std::fs::remove_file(file) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(format!("cannot remove {}: {err}", file.display())),
    }
}
