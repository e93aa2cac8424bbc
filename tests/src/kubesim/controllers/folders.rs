//! Copies and removals of volume folders on the host: a point-in-time copy keeps every file's
//! content, mode and modification time, every directory's mode and modification time, and
//! symlinks as symlinks (not followed). Removal works through read-only directories.

use std::fs::{self, File, FileTimes};
use std::io;
use std::path::Path;

use walkdir::WalkDir;

fn walk_error(error: walkdir::Error) -> io::Error {
    let text = error.to_string();
    error
        .into_io_error()
        .unwrap_or_else(|| io::Error::other(text))
}

/// Copies the tree at `from` to `to`, which must not exist yet.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    if to.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already exists", to.display()),
        ));
    }
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut partial_name = to.file_name().unwrap_or_default().to_os_string();
    partial_name.push(".copying");
    let partial = to.with_file_name(partial_name);
    if partial.exists() {
        remove_tree(&partial)?;
    }
    for entry in WalkDir::new(from).follow_links(false) {
        let entry = entry.map_err(walk_error)?;
        let target = partial.join(entry.path().strip_prefix(from).map_err(io::Error::other)?);
        let kind = entry.file_type();
        if kind.is_dir() {
            fs::create_dir(&target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
            let modified = entry.metadata().map_err(walk_error)?.modified()?;
            File::open(&target)?.set_times(FileTimes::new().set_modified(modified))?;
        }
    }
    // Directories last, deepest first: their modes may forbid writing and copying into them
    // changed their times.
    for entry in WalkDir::new(from).follow_links(false).contents_first(true) {
        let entry = entry.map_err(walk_error)?;
        if !entry.file_type().is_dir() {
            continue;
        }
        let target = partial.join(entry.path().strip_prefix(from).map_err(io::Error::other)?);
        let metadata = entry.metadata().map_err(walk_error)?;
        File::open(&target)?.set_times(FileTimes::new().set_modified(metadata.modified()?))?;
        fs::set_permissions(&target, metadata.permissions())?;
    }
    fs::rename(&partial, to)
}

/// Removes the tree at `path` (nothing when it is absent), making read-only directories
/// writable first.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    for entry in WalkDir::new(path).follow_links(false) {
        let entry = entry.map_err(walk_error)?;
        if entry.file_type().is_dir() {
            let mut permissions = entry.metadata().map_err(walk_error)?.permissions();
            use std::os::unix::fs::PermissionsExt;
            permissions.set_mode(permissions.mode() | 0o700);
            fs::set_permissions(entry.path(), permissions)?;
        }
    }
    fs::remove_dir_all(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_copy_keeps_modes_times_and_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let from = root.path().join("from");
        fs::create_dir_all(from.join("sub")).unwrap();
        fs::write(from.join("sub/data"), b"payload").unwrap();
        fs::set_permissions(from.join("sub/data"), fs::Permissions::from_mode(0o640)).unwrap();
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        File::open(from.join("sub/data"))
            .unwrap()
            .set_times(FileTimes::new().set_modified(old))
            .unwrap();
        std::os::unix::fs::symlink("sub/data", from.join("link")).unwrap();
        fs::set_permissions(from.join("sub"), fs::Permissions::from_mode(0o550)).unwrap();
        let to = root.path().join("to");
        copy_tree(&from, &to).unwrap();
        assert_eq!(fs::read(to.join("sub/data")).unwrap(), b"payload");
        let metadata = fs::metadata(to.join("sub/data")).unwrap();
        assert_eq!(metadata.permissions().mode() & 0o777, 0o640);
        assert_eq!(metadata.modified().unwrap(), old);
        assert_eq!(
            fs::read_link(to.join("link")).unwrap(),
            Path::new("sub/data")
        );
        assert_eq!(
            fs::metadata(to.join("sub")).unwrap().permissions().mode() & 0o777,
            0o550
        );
        remove_tree(&to).unwrap();
        remove_tree(&from).unwrap();
        assert!(!to.exists() && !from.exists());
    }
}
