//! Crash-safe file operations: every write goes to a temporary file in the target's
//! directory, is flushed to disk, renamed over the target, and the directory is flushed so the
//! rename itself survives a crash. A reader therefore sees either the old or the new content,
//! never a mix.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::Path;

use crate::VaultError;

/// Prefix of temporary files. Secret names may not start with a dot, so no secret file can
/// ever be mistaken for one.
pub(crate) const TMP_PREFIX: &str = ".tmp-";

/// Creates `dir` (and missing parents) if absent, owner-only on Unix, and makes the new entry
/// durable by syncing its parent.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), VaultError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| VaultError::io("create the directory", dir, e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Flushes a directory's entries (renames, creations, removals) to disk.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), VaultError> {
    #[cfg(unix)]
    {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| VaultError::io("sync the directory", dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Atomically replaces `dir/name` with `bytes`. With `no_clobber`, fails with an I/O error of
/// kind `AlreadyExists` (and writes nothing) if the target exists. The new file is readable by
/// its owner only.
pub(crate) fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    no_clobber: bool,
) -> Result<(), VaultError> {
    let target = dir.join(name);
    let mut tmp = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .rand_bytes(12)
        .tempfile_in(dir)
        .map_err(|e| VaultError::io("create a temporary file in", dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| VaultError::io("write", tmp.path().to_path_buf(), e))?;
    // On failure the temporary file is dropped, which removes it.
    let persisted = if no_clobber {
        tmp.persist_noclobber(&target)
    } else {
        tmp.persist(&target)
    };
    persisted.map_err(|e| VaultError::io("rename a temporary file to", &target, e.error))?;
    sync_dir(dir)
}

/// Removes a file durably. Returns whether it existed.
pub(crate) fn remove(dir: &Path, name: &str) -> Result<bool, VaultError> {
    let path = dir.join(name);
    match fs::remove_file(&path) {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(VaultError::io("remove", path, e)),
    }
}

/// Removes temporary files left in `dir` by an interrupted write.
pub(crate) fn remove_temp_files(dir: &Path) -> Result<(), VaultError> {
    let entries = fs::read_dir(dir).map_err(|e| VaultError::io("list", dir, e))?;
    let mut removed = false;
    for entry in entries {
        let entry = entry.map_err(|e| VaultError::io("list", dir, e))?;
        let is_tmp = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(TMP_PREFIX));
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_tmp && is_file {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(VaultError::io("remove", entry.path(), e)),
            }
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "a", b"one", false).unwrap();
        write_atomic(dir.path(), "a", b"two", false).unwrap();
        assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"two");
        let err = write_atomic(dir.path(), "a", b"three", true).unwrap_err();
        assert!(
            matches!(&err, VaultError::Io { source, .. } if source.kind() == ErrorKind::AlreadyExists)
        );
        assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a")]);
    }

    #[cfg(unix)]
    #[test]
    fn written_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "a", b"one", false).unwrap();
        let mode = fs::metadata(dir.path().join("a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }

    #[test]
    fn temp_files_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".tmp-abc"), b"half").unwrap();
        fs::write(dir.path().join("keep"), b"x").unwrap();
        remove_temp_files(dir.path()).unwrap();
        assert!(!dir.path().join(".tmp-abc").exists());
        assert!(dir.path().join("keep").exists());
        assert!(remove(dir.path(), "keep").unwrap());
        assert!(!remove(dir.path(), "keep").unwrap());
    }
}
