//! The names of objects inside a repository, in one place: backups, manifests, volume trees
//! resource packs, chunks, packs and the chunk index, and the rule for the ids and names callers choose.

use crate::chunk_id::ChunkId;
use crate::error::{Error, Result};

/// The folder of every backup.
pub(crate) const BACKUPS: &str = "backups";
/// The folder of the chunks of version-1 repositories, one object each.
pub(crate) const CHUNKS: &str = "chunks";
/// The folder of pack files: chunks stored together.
pub(crate) const PACKS: &str = "packs";
/// The folder of the chunk index: which pack holds which chunk.
pub(crate) const INDEX: &str = "index";

/// Checks an id or name the caller chose (backup id, volume name): 1 to 128 of
/// `A-Z a-z 0-9 . _ -`, not starting with a dot.
pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::NotFound(format!(
            "invalid {what} `{name}`: use 1 to 128 of A-Z a-z 0-9 . _ - (not starting with a dot)"
        )))
    }
}

/// Checks a backup id: the rule of [`check_name`], with an error naming the id.
pub fn check_backup_id(backup: &str) -> Result<()> {
    check_name("backup id", backup)
}

/// `backups/<id>/manifest`.
pub(crate) fn manifest(backup: &str) -> String {
    format!("{BACKUPS}/{backup}/manifest")
}

/// `backups/<id>/volumes/<name>`.
pub(crate) fn volume_tree(backup: &str, volume: &str) -> String {
    format!("{BACKUPS}/{backup}/volumes/{volume}")
}

/// `chunks/<first two hex digits>/<64 hex digits>`: a chunk's object in a version-1 repository,
/// and in every version the name its sealed bytes are bound to (inside a pack too).
pub(crate) fn chunk(id: &ChunkId) -> String {
    let id_hex = id.to_hex();
    format!("{CHUNKS}/{}/{id_hex}", &id_hex[..2])
}

/// `packs/<first two hex digits>/<32 hex digits>`.
pub(crate) fn pack(id_hex: &str) -> String {
    format!("{PACKS}/{}/{id_hex}", &id_hex[..2.min(id_hex.len())])
}

/// `index/<32 hex digits>`.
pub(crate) fn index(id_hex: &str) -> String {
    format!("{INDEX}/{id_hex}")
}

/// `backups/<id>`: the folder of everything of one backup.
pub(crate) fn backup_folder(backup: &str) -> String {
    format!("{BACKUPS}/{backup}")
}

/// `backups/<id>/resources/frames/<n>`, `n` zero-padded to eight digits.
pub(crate) fn resource_frame(backup: &str, number: u32) -> String {
    format!("{BACKUPS}/{backup}/resources/frames/{number:08}")
}

/// `backups/<id>/resources/index`.
pub(crate) fn resource_index(backup: &str) -> String {
    format!("{BACKUPS}/{backup}/resources/index")
}
