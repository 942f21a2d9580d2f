//! Files that may hold secrets, replaced whole: [`write()`] puts the new content in
//! `<path>.tmp` (created mode 0600 on Unix), fsyncs it, renames it over `path` and fsyncs the
//! directory, so a reader or a crash sees either the old file or the new one, never a part, and
//! no other user can read it. Used by the sidecar's disk snapshot (`disk`) and the embedded
//! admin's fingerprint key (`admin::mask`); it knows nothing about what it writes.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Replaces `path` with the concatenation of `parts` (see the module docs). Creates the parent
/// directory if needed. On error `path` is unchanged (a `.tmp` file may be left behind; the next
/// write truncates it).
pub fn write(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        for part in parts {
            f.write_all(part)?;
        }
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(&dir)?.sync_all()
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
}
