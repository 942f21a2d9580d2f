//! The sidecar's disk snapshot: the last state it confirmed, for a cold start while Redis is
//! unreachable (`--snapshot-path`).
//!
//! Format: one header line `rtconfig-snapshot 1 <sha256 of the body, hex>\n`, then a JSON body
//! with the namespace, cluster id, position, schema hash and the stored (non-default) values.
//! Written with [`crate::private_file::write`] (tmp + fsync + rename + fsync of the directory,
//! mode 0600), so the file is always either the old or the new complete snapshot; a torn or
//! altered file fails its checksum and is ignored (the sidecar then starts from Redis, or from
//! defaults).

use std::collections::BTreeMap;
use std::path::Path;

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

/// Why a snapshot file was not loaded or saved. The path is the caller's to log.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("no snapshot file")]
    Missing,
    /// The header or checksum is wrong: torn, altered, or not a snapshot file.
    #[error("the snapshot file is damaged: {0}")]
    Damaged(&'static str),
    /// The checksum matches but the body is not a snapshot (written by another version?).
    #[error("the snapshot file's body is not a snapshot")]
    BadBody(#[source] serde_json::Error),
    #[error("cannot read the snapshot file")]
    Read(#[source] std::io::Error),
    #[error("cannot encode the snapshot")]
    Encode(#[source] serde_json::Error),
    #[error("cannot write the snapshot file")]
    Write(#[source] std::io::Error),
}

/// Reads and verifies a snapshot file.
pub fn load(path: &Path) -> Result<DiskSnapshot, DiskError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(DiskError::Missing),
        Err(e) => return Err(DiskError::Read(e)),
    };
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or(DiskError::Damaged("no header line"))?;
    let header = std::str::from_utf8(&bytes[..newline])
        .map_err(|_| DiskError::Damaged("the header is not text"))?;
    let digest = header
        .strip_prefix(MAGIC)
        .map(str::trim)
        .ok_or(DiskError::Damaged("unknown format"))?;
    let body = &bytes[newline + 1..];
    if hex::encode(Sha256::digest(body)) != digest {
        return Err(DiskError::Damaged("checksum mismatch"));
    }
    serde_json::from_slice(body).map_err(DiskError::BadBody)
}

/// Writes a snapshot atomically and durably.
pub fn save(path: &Path, snapshot: &DiskSnapshot) -> Result<(), DiskError> {
    let body = serde_json::to_vec(snapshot).map_err(DiskError::Encode)?;
    let digest = hex::encode(Sha256::digest(&body));
    let header = format!("{MAGIC} {digest}\n");
    crate::private_file::write(path, &[header.as_bytes(), &body]).map_err(DiskError::Write)
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
        let body = b"{\"namespace\": 5}";
        let header = format!("{MAGIC} {}\n", hex::encode(Sha256::digest(body)));
        std::fs::write(&path, [header.as_bytes(), body].concat()).expect("foreign body");
        assert!(matches!(load(&path), Err(DiskError::BadBody(_))));
    }
}
