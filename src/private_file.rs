//! Files that may hold secrets, replaced whole: [`write()`] puts the new content in
//! `<path>.tmp` (created mode 0600 on Unix), fsyncs it, renames it over `path` and fsyncs the
//! directory, so a reader or a crash sees either the old file or the new one, never a part, and
//! no other user can read it. Used by the sidecar's disk snapshot (`disk`) and the embedded
//! admin's fingerprint key (`admin::mask`); it knows nothing about what it writes.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Replaces `path` with the concatenation of `parts` (see the module docs). Creates the parent
/// directory if needed. On error `path` is unchanged and the temporary file is removed (a full
/// disk must not stay full of our half-written files).
pub fn write(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    write_keeping(path, None, parts)
}

/// The temporary file [`write`] writes before renaming it over `path`: `<path>` with its
/// extension replaced by `tmp`.
pub fn temp_path(path: &Path) -> PathBuf {
    path.with_extension("tmp")
}

/// As [`write`], and when `previous` is given and `path` exists, `path` is first renamed to
/// `previous` (after the new content is durable, before it takes `path`'s place): a crash
/// between the two renames leaves `previous` and no `path`, never nothing.
pub fn write_keeping(path: &Path, previous: Option<&Path>, parts: &[&[u8]]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let tmp = temp_path(path);
    let written = write_temp(&tmp, parts).and_then(|()| {
        if let Some(previous) = previous {
            match std::fs::rename(path, previous) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        std::fs::rename(&tmp, path)
    });
    if let Err(e) = written {
        // Best effort: the error that matters is the write's.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(&dir)?.sync_all()
}

fn write_temp(tmp: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(tmp)?;
    for part in parts {
        f.write_all(part)?;
    }
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_replaces_the_old_one_whole_and_is_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested").join("secret.key");
        write(&path, &[b"old"]).expect("first write");
        write(&path, &[b"new ", b"content"]).expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"new content");
        assert!(
            !path.with_extension("tmp").exists(),
            "the temporary file was renamed away"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn the_old_file_can_be_kept_and_a_failed_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snap");
        let prev = dir.path().join("snap.prev");
        write_keeping(
            &path,
            Some(&prev),
            b"one".as_slice().chunks(3).collect::<Vec<_>>().as_slice(),
        )
        .expect("first");
        assert!(!prev.exists(), "nothing to keep yet");
        write_keeping(&path, Some(&prev), &[b"two"]).expect("second");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        assert_eq!(std::fs::read(&prev).expect("read prev"), b"one");
        // A directory where the temp file must go: the write fails, nothing changes, no leftovers.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(temp_path(&blocked)).expect("dir in the way");
        assert!(write(&blocked, &[b"x"]).is_err());
        assert!(!blocked.exists());
        // A directory where the file must go: the temp file is removed again.
        let occupied = dir.path().join("occupied");
        std::fs::create_dir(&occupied).expect("dir in the way");
        std::fs::write(occupied.join("inside"), b"keep").expect("fill dir");
        assert!(write(&occupied, &[b"x"]).is_err());
        assert!(
            !temp_path(&occupied).exists(),
            "the temp file was cleaned up"
        );
    }
}
