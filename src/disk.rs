//! The sidecar's disk snapshot: the last state it confirmed, for a cold start while Redis is
//! unreachable (`--snapshot-path`).
//!
//! Format: one header line `rtconfig-snapshot 1 <sha256 of the body, hex>\n`, then a JSON body
//! with the namespace, cluster id, position, schema hash and the stored (non-default) values.
//! Written as tmp + fsync + rename + fsync of the directory, mode 0600, so the file is always
//! either the old or the new complete snapshot; a torn or altered file fails its checksum and is
//! ignored (the sidecar then starts from Redis, or from defaults).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::snapshot::Position;

const MAGIC: &str = "rtconfig-snapshot 1";

/// What the disk snapshot holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSnapshot {
    pub namespace: String,
    pub cluster_id: String,
    pub epoch: u64,
    pub version: u64,
    #[serde(default)]
    pub generation: u64,
    pub schema_hash: String,
    pub saved_at: String,
    /// The stored values as Redis held them (not schema-defaulted).
    pub values: BTreeMap<String, Value>,
}

impl DiskSnapshot {
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            version: self.version,
            generation: self.generation,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("no snapshot file")]
    Missing,
    #[error("snapshot file is damaged: {0}")]
    Damaged(String),
    #[error("snapshot I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads and verifies a snapshot file.
pub fn load(path: &Path) -> Result<DiskSnapshot, DiskError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(DiskError::Missing),
        Err(e) => return Err(e.into()),
    };
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| DiskError::Damaged("no header line".into()))?;
    let header = std::str::from_utf8(&bytes[..newline])
        .map_err(|_| DiskError::Damaged("header is not text".into()))?;
    let digest = header
        .strip_prefix(MAGIC)
        .map(str::trim)
        .ok_or_else(|| DiskError::Damaged("unknown format".into()))?;
    let body = &bytes[newline + 1..];
    if hex::encode(Sha256::digest(body)) != digest {
        return Err(DiskError::Damaged("checksum mismatch".into()));
    }
    serde_json::from_slice(body).map_err(|e| DiskError::Damaged(format!("body: {e}")))
}

/// Writes a snapshot atomically and durably.
pub fn save(path: &Path, snapshot: &DiskSnapshot) -> Result<(), DiskError> {
    let body = serde_json::to_vec(snapshot).map_err(|e| DiskError::Damaged(e.to_string()))?;
    let digest = hex::encode(Sha256::digest(&body));
    let header = format!("{MAGIC} {digest}\n");
    write_private(path, &[header.as_bytes(), &body])?;
    Ok(())
}

/// Replaces `path` with `parts` so that it is always either the old or the new whole file:
/// tmp (mode 0600) + fsync + rename + fsync of the directory. For files that may hold secrets.
pub fn write_private(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
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
    use serde_json::json;

    use super::*;

    fn sample() -> DiskSnapshot {
        DiskSnapshot {
            namespace: "demo".into(),
            cluster_id: "default".into(),
            epoch: 1,
            version: 9,
            generation: 0,
            schema_hash: "abc".into(),
            saved_at: "2026-01-01T00:00:00Z".into(),
            values: BTreeMap::from([("SITE_NAME".into(), json!("x"))]),
        }
    }

    #[test]
    fn a_saved_snapshot_loads_back_and_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snap.json");
        save(&path, &sample()).expect("save");
        assert_eq!(load(&path).expect("load"), sample());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn truncated_or_bit_flipped_files_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snap.json");
        save(&path, &sample()).expect("save");
        let good = std::fs::read(&path).expect("read");
        std::fs::write(&path, &good[..good.len() - 5]).expect("truncate");
        assert!(matches!(load(&path), Err(DiskError::Damaged(_))));
        let mut flipped = good.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x01;
        std::fs::write(&path, &flipped).expect("flip");
        assert!(matches!(load(&path), Err(DiskError::Damaged(_))));
        std::fs::write(&path, b"").expect("empty");
        assert!(matches!(load(&path), Err(DiskError::Damaged(_))));
        assert!(matches!(
            load(&dir.path().join("none")),
            Err(DiskError::Missing)
        ));
    }
}
