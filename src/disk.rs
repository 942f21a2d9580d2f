//! The sidecar's disk snapshot: the last state it confirmed, for a cold start while Redis is
//! unreachable (`--snapshot-path`).
//!
//! Format: one header line `rtconfig-snapshot 3 <sha256 of the body, hex>\n`, then a JSON body
//! with the namespace, cluster id, position, schema hash, the stored (non-default) values, the
//! image's `content_hash` (`crate::content_hash`) and each key's `versions` (the version that
//! last set it, also for keys back at their default). Older formats still load: format 2 has
//! no `versions` (each stored value is then taken as set at the file's version, each other key
//! at 0 — [`DiskSnapshot::stored_versioned`]), format 1 not even `content_hash` (computed from
//! the values).
//! Written with [`crate::private_file::write_keeping`] (tmp + fsync + rename + fsync of the
//! directory, mode 0600), so the file is always either the old or the new complete snapshot.
//!
//! Two generations: before a new snapshot takes `<path>`'s place, the file there — when it
//! verifies — becomes `<path>.prev` ([`previous_path`]). A cold start loads the newest file that
//! verifies and is ours ([`choose`]): `<path>`, else `<path>.prev`, else none (the sidecar then
//! starts from Redis, or from defaults), and says which and why ([`Choice`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::content_hash::ContentHash;
use crate::snapshot::Position;

/// The header of the current format: the body carries `content_hash` and `versions`.
const MAGIC: &str = "rtconfig-snapshot 3";
/// The header of files written before per-key versions: still loaded.
const MAGIC_V2: &str = "rtconfig-snapshot 2";
/// The header of files written before content hashes: still loaded (the hash is then computed
/// from the values).
const MAGIC_V1: &str = "rtconfig-snapshot 1";

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
    /// The content hash (`crate::content_hash`) of the image these values came from, as 16 hex
    /// digits; absent in format-1 files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// The version of the changeset that last set each key whose version is known (the keys
    /// of `values`, and keys set back to their default); absent in format-1 and -2 files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<BTreeMap<String, u64>>,
}

impl DiskSnapshot {
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            version: self.version,
            generation: self.generation,
        }
    }

    /// `(key, value, version)` for `snapshot::Snapshot::build_versioned`: every stored value
    /// and every key back at its default (`None`) whose version is known. Without `versions`
    /// (format 1 and 2) a stored value is taken as set at the file's version, the latest it can
    /// have been set at; other keys are then not given (version 0).
    pub fn stored_versioned(&self) -> impl Iterator<Item = (&str, Option<&Value>, u64)> + '_ {
        use std::cmp::Ordering;
        // Both maps are sorted by key: one merged pass in key order, no lookup per key (at
        // 100,000 keys a `versions.get` per value was ≈ 17 string comparisons each).
        let mut values = self.values.iter().peekable();
        let mut versions = self.versions.iter().flatten().peekable();
        std::iter::from_fn(move || match (values.peek(), versions.peek()) {
            (None, None) => None,
            (Some(_), None) => values
                .next()
                .map(|(k, v)| (k.as_str(), Some(v), self.version)),
            (None, Some(_)) => versions.next().map(|(k, ver)| (k.as_str(), None, *ver)),
            (Some((vk, _)), Some((sk, _))) => match vk.cmp(sk) {
                Ordering::Less => values
                    .next()
                    .map(|(k, v)| (k.as_str(), Some(v), self.version)),
                Ordering::Equal => {
                    let ver = versions.next().map(|(_, ver)| *ver);
                    values
                        .next()
                        .map(|(k, v)| (k.as_str(), Some(v), ver.unwrap_or(self.version)))
                }
                Ordering::Greater => versions.next().map(|(k, ver)| (k.as_str(), None, *ver)),
            },
        })
    }

    /// The stored content hash, or (format 1, or unreadable) the hash of the values.
    pub fn content_hash(&self) -> ContentHash {
        self.content_hash
            .as_deref()
            .and_then(ContentHash::parse)
            .unwrap_or_else(|| ContentHash::of(self.values.iter()))
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
        .or_else(|| header.strip_prefix(MAGIC_V2))
        .or_else(|| header.strip_prefix(MAGIC_V1))
        .map(str::trim)
        .ok_or(DiskError::Damaged("unknown format"))?;
    let body = &bytes[newline + 1..];
    if hex::encode(Sha256::digest(body)) != digest {
        return Err(DiskError::Damaged("checksum mismatch"));
    }
    serde_json::from_slice(body).map_err(DiskError::BadBody)
}

/// Writes a snapshot atomically and durably, keeping the file it replaces as
/// [`previous_path`] when that file verifies (a damaged newest file never pushes out the good
/// previous one). On error nothing changed and no temporary file is left.
pub fn save(path: &Path, snapshot: &DiskSnapshot) -> Result<(), DiskError> {
    let body = serde_json::to_vec(snapshot).map_err(DiskError::Encode)?;
    let digest = hex::encode(Sha256::digest(&body));
    let header = format!("{MAGIC} {digest}\n");
    let previous = previous_path(path);
    let keep = load(path).is_ok().then_some(previous.as_path());
    crate::private_file::write_keeping(path, keep, &[header.as_bytes(), &body])
        .map_err(DiskError::Write)
}

/// `<path>.prev`: the generation before the newest.
pub fn previous_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".prev");
    PathBuf::from(p)
}

/// Removes a temporary file a crashed write left behind (at start; best effort).
pub fn remove_stale_temp(path: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(crate::private_file::temp_path(path)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Which file a cold start loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Generation {
    /// `<path>`.
    Newest,
    /// `<path>.prev`: the newest was missing, damaged or not ours.
    Previous,
}

impl Generation {
    pub fn as_str(self) -> &'static str {
        match self {
            Generation::Newest => "newest",
            Generation::Previous => "previous",
        }
    }
}

/// What a cold start takes from disk, and why (for `/status` and the log).
#[derive(Debug)]
pub struct Choice {
    pub snapshot: Option<(DiskSnapshot, Generation)>,
    /// Why the newest file was not used (`None` when it was).
    pub newest_problem: Option<String>,
    /// Why the previous file was not used, when it was looked at.
    pub previous_problem: Option<String>,
}

impl Choice {
    /// One sentence: what was loaded and why.
    pub fn why(&self) -> String {
        match (&self.snapshot, &self.newest_problem, &self.previous_problem) {
            (Some((_, Generation::Newest)), _, _) => "the newest snapshot file is valid".into(),
            (Some((_, Generation::Previous)), Some(newest), _) => {
                format!(
                    "the newest snapshot file was not used ({newest}); the previous one is valid"
                )
            }
            (None, Some(newest), Some(previous)) => {
                format!("no usable snapshot file: newest: {newest}; previous: {previous}")
            }
            _ => "no usable snapshot file".into(),
        }
    }

    /// Whether a file was there but not usable (counted as `bad_disk_snapshot`).
    pub fn found_damage(&self) -> bool {
        self.newest_problem.as_deref().is_some_and(|p| p != MISSING)
            || self
                .previous_problem
                .as_deref()
                .is_some_and(|p| p != MISSING)
    }
}

const MISSING: &str = "no snapshot file";

/// Chooses between the two generations as loaded: the newest that verifies and belongs to
/// `namespace` and `cluster_id`. Pure; [`load_generations`] does the reading.
pub fn choose(
    newest: Result<DiskSnapshot, DiskError>,
    previous: Result<DiskSnapshot, DiskError>,
    namespace: &str,
    cluster_id: &str,
) -> Choice {
    let ours = |r: Result<DiskSnapshot, DiskError>| -> Result<DiskSnapshot, String> {
        match r {
            Ok(s) if s.namespace == namespace && s.cluster_id == cluster_id => Ok(s),
            Ok(s) => Err(format!(
                "it belongs to namespace {:?} of cluster {:?}",
                s.namespace, s.cluster_id
            )),
            Err(e) => Err(crate::telemetry::Chain(&e).to_string()),
        }
    };
    match ours(newest) {
        Ok(s) => Choice {
            snapshot: Some((s, Generation::Newest)),
            newest_problem: None,
            previous_problem: None,
        },
        Err(newest_problem) => match ours(previous) {
            Ok(s) => Choice {
                snapshot: Some((s, Generation::Previous)),
                newest_problem: Some(newest_problem),
                previous_problem: None,
            },
            Err(previous_problem) => Choice {
                snapshot: None,
                newest_problem: Some(newest_problem),
                previous_problem: Some(previous_problem),
            },
        },
    }
}

/// Reads both generations of `path` and [`choose`]s.
pub fn load_generations(path: &Path, namespace: &str, cluster_id: &str) -> Choice {
    choose(
        load(path),
        load(&previous_path(path)),
        namespace,
        cluster_id,
    )
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
            content_hash: Some("00000000000000ab".into()),
            versions: Some(BTreeMap::from([
                ("SITE_NAME".into(), 7),
                ("RESET_KEY".into(), 8),
            ])),
        }
    }

    /// `file`'s body under the header of format `format`.
    fn with_header(format: u8, file: &DiskSnapshot) -> Vec<u8> {
        let body = serde_json::to_vec(file).expect("body");
        let mut out = format!(
            "rtconfig-snapshot {format} {}\n",
            hex::encode(Sha256::digest(&body))
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn stored_versioned_merges_values_and_versions_in_key_order() {
        let file = DiskSnapshot {
            values: BTreeMap::from([
                ("A".into(), json!(1)),
                ("C".into(), json!(3)),
                ("E".into(), json!(5)),
            ]),
            versions: Some(BTreeMap::from([
                ("B".into(), 2),
                ("C".into(), 30),
                ("D".into(), 4),
                ("E".into(), 50),
                ("F".into(), 6),
            ])),
            ..sample()
        };
        let got: Vec<_> = file.stored_versioned().collect();
        assert_eq!(
            got,
            vec![
                ("A", Some(&json!(1)), 9), // no version known: the file's
                ("B", None, 2),
                ("C", Some(&json!(3)), 30),
                ("D", None, 4),
                ("E", Some(&json!(5)), 50),
                ("F", None, 6),
            ]
        );
    }

    #[test]
    fn per_key_versions_are_stored_and_format_2_files_still_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snap.json");
        save(&path, &sample()).expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("rtconfig-snapshot 3 "), "{text}");
        let loaded = load(&path).expect("load");
        let stored: Vec<_> = loaded.stored_versioned().collect();
        assert_eq!(
            stored,
            vec![("RESET_KEY", None, 8), ("SITE_NAME", Some(&json!("x")), 7)],
            "in key order"
        );

        // Format 2: no versions; a stored value is taken as set at the file's version.
        let v2 = DiskSnapshot {
            versions: None,
            ..sample()
        };
        std::fs::write(&path, with_header(2, &v2)).expect("write v2");
        let loaded = load(&path).expect("a format-2 file loads");
        assert_eq!(loaded.content_hash(), ContentHash(0xab));
        let stored: Vec<_> = loaded.stored_versioned().collect();
        assert_eq!(stored, vec![("SITE_NAME", Some(&json!("x")), 9)]);
    }

    #[test]
    fn the_content_hash_is_stored_and_format_1_files_still_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snap.json");
        save(&path, &sample()).expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("rtconfig-snapshot 3 "), "{text}");
        assert!(
            text.contains(r#""content_hash":"00000000000000ab""#),
            "{text}"
        );
        assert_eq!(load(&path).expect("load").content_hash(), ContentHash(0xab));

        // A file of the previous format: no content_hash, header 1; its hash is the values'.
        let old = DiskSnapshot {
            content_hash: None,
            versions: None,
            ..sample()
        };
        std::fs::write(&path, with_header(1, &old)).expect("write v1");
        let loaded = load(&path).expect("a format-1 file loads");
        assert_eq!(loaded.content_hash, None);
        assert_eq!(
            loaded.content_hash(),
            ContentHash::of([("SITE_NAME", &json!("x"))])
        );
        // A future format is refused clearly.
        std::fs::write(&path, b"rtconfig-snapshot 4 00\n{}").expect("write v4");
        assert!(matches!(
            load(&path),
            Err(DiskError::Damaged("unknown format"))
        ));
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

    fn at(version: u64) -> DiskSnapshot {
        DiskSnapshot {
            version,
            ..sample()
        }
    }

    #[test]
    fn a_save_keeps_the_previous_good_generation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snap.json");
        save(&path, &at(1)).expect("save 1");
        assert!(!previous_path(&path).exists());
        save(&path, &at(2)).expect("save 2");
        assert_eq!(load(&path).expect("newest").version, 2);
        assert_eq!(load(&previous_path(&path)).expect("previous").version, 1);
        // A damaged newest file is not kept: the good previous one stays.
        std::fs::write(&path, b"garbage").expect("damage");
        save(&path, &at(3)).expect("save 3");
        assert_eq!(load(&path).expect("newest").version, 3);
        assert_eq!(load(&previous_path(&path)).expect("previous").version, 1);
        assert!(!crate::private_file::temp_path(&path).exists());
        std::fs::write(crate::private_file::temp_path(&path), b"left by a crash").expect("tmp");
        assert!(remove_stale_temp(&path).expect("remove"));
        assert!(!remove_stale_temp(&path).expect("remove"));
    }

    #[test]
    fn the_newest_usable_generation_is_chosen_and_why_is_said() {
        let damaged = || Err(DiskError::Damaged("checksum mismatch"));
        let foreign = || {
            Ok(DiskSnapshot {
                namespace: "other".into(),
                ..at(9)
            })
        };
        /// (newest file, previous file, the chosen version and generation, damage found)
        type Case = (
            Result<DiskSnapshot, DiskError>,
            Result<DiskSnapshot, DiskError>,
            Option<(u64, Generation)>,
            bool,
        );
        let cases: Vec<Case> = vec![
            (Ok(at(2)), Ok(at(1)), Some((2, Generation::Newest)), false),
            (Ok(at(2)), damaged(), Some((2, Generation::Newest)), false),
            (damaged(), Ok(at(1)), Some((1, Generation::Previous)), true),
            (
                Err(DiskError::Missing),
                Ok(at(1)),
                Some((1, Generation::Previous)),
                false,
            ),
            (foreign(), Ok(at(1)), Some((1, Generation::Previous)), true),
            (damaged(), damaged(), None, true),
            (damaged(), foreign(), None, true),
            (
                Err(DiskError::Missing),
                Err(DiskError::Missing),
                None,
                false,
            ),
        ];
        for (i, (newest, previous, want, damage)) in cases.into_iter().enumerate() {
            let c = choose(newest, previous, "demo", "default");
            let got = c.snapshot.as_ref().map(|(s, g)| (s.version, *g));
            assert_eq!(got, want, "case {i}: {}", c.why());
            assert_eq!(c.found_damage(), damage, "case {i}");
            assert!(!c.why().is_empty());
        }
        let c = choose(damaged(), Ok(at(1)), "demo", "default");
        assert!(c.why().contains("checksum mismatch"), "{}", c.why());
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
