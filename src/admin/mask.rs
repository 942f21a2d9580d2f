//! How secrets are shown outside the sidecar: `{"masked": true, "fingerprint": "…"}`.
//!
//! The fingerprint lets an operator see *whether* a secret changed without seeing it:
//! HMAC-SHA256 (the `hmac` crate) of `namespace \0 key \0 value-as-JSON`, keyed with a
//! per-deployment random key (so a low-entropy secret cannot be found by hashing guesses),
//! truncated to 12 hex digits. The key lives in PostgreSQL (`rtconfig_cluster.mask_key`) or,
//! for the embedded admin, in `<data-dir>/secret.key`: [`Masker::load_or_create`] creates that
//! file once and afterwards refuses to start on a file it cannot read or that is not a key,
//! because a new key would silently change every fingerprint.

use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub use crate::key_file::{KeyFileError, KEY_BYTES};

/// The embedded admin's `secret.key`.
pub const FINGERPRINT_KEY: crate::key_file::KeyKind = crate::key_file::KeyKind {
    name: "secret-fingerprint key",
    if_unreadable: "a new key would change every secret's fingerprint",
    if_replaced: "every secret's fingerprint then changes",
};

/// Masks secret values with a keyed fingerprint.
#[derive(Clone)]
pub struct Masker {
    /// HMAC-SHA256 already keyed; cloned for each fingerprint.
    mac: HmacSha256,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Masker(..)")
    }
}

impl Masker {
    pub fn new(key: [u8; KEY_BYTES]) -> Masker {
        // HMAC pads a key shorter than SHA-256's 64-byte block with zeros, so this is HMAC keyed
        // with `key` itself (what `new_from_slice(&key)` does), without a fallible length check.
        let mut block = [0u8; 64];
        block[..KEY_BYTES].copy_from_slice(&key);
        Masker {
            mac: HmacSha256::new(&block.into()),
        }
    }

    /// A random key for this process (fingerprints then differ across restarts).
    pub fn random() -> Masker {
        Masker::new(rand::random())
    }

    /// Loads the key from `path`, creating it (mode 0600) when there is no such file. A file
    /// that cannot be read or is not a key is an error, never replaced.
    pub fn load_or_create(path: &Path) -> Result<Masker, KeyFileError> {
        crate::key_file::load_or_create(path, FINGERPRINT_KEY).map(Masker::new)
    }

    pub fn fingerprint(&self, namespace: &str, key: &str, value: &Value) -> String {
        let mut mac = self.mac.clone();
        mac.update(namespace.as_bytes());
        mac.update(&[0]);
        mac.update(key.as_bytes());
        mac.update(&[0]);
        mac.update(value.to_string().as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..6])
    }

    /// The masked form of a secret value (`None`, the default, stays `null`).
    pub fn mask(&self, namespace: &str, key: &str, value: Option<&Value>) -> Value {
        match value {
            None => Value::Null,
            Some(v) => json!({"masked": true, "fingerprint": self.fingerprint(namespace, key, v)}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_per_key_and_hide_the_value() {
        let m = Masker::new([7; 32]);
        let a = m.mask("demo", "DB_PASSWORD", Some(&json!("hunter2")));
        assert_eq!(a, m.mask("demo", "DB_PASSWORD", Some(&json!("hunter2"))));
        assert_ne!(a, m.mask("demo", "DB_PASSWORD", Some(&json!("hunter3"))));
        assert!(!a.to_string().contains("hunter2"));
        assert_ne!(
            m.fingerprint("demo", "A", &json!("x")),
            Masker::new([8; 32]).fingerprint("demo", "A", &json!("x")),
            "another deployment's key gives another fingerprint"
        );
        assert!(
            crate::schema::is_mask(&a),
            "a mask is recognised when written back"
        );
    }

    /// Pinned so that fingerprints do not change across releases. The value is standard
    /// HMAC-SHA256, e.g. Python's `hmac.new(bytes([7] * 32), b'demo\0DB_PASSWORD\0"hunter2"',
    /// 'sha256').hexdigest()[:12]`. (Before issue 7 a hand-made `sha256(key ‖ sha256(key ‖ m))`,
    /// which is not HMAC, gave "257ac9c382d8"; fingerprints changed once with the switch.)
    #[test]
    fn a_fingerprint_is_pinned_so_it_does_not_change_across_releases() {
        let m = Masker::new([7; 32]);
        assert_eq!(
            m.fingerprint("demo", "DB_PASSWORD", &json!("hunter2")),
            "45296d2e1162"
        );
    }

    #[test]
    fn an_unreadable_key_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory where the key should be: reading it fails (EISDIR), as a file without
        // read permission would.
        let path = dir.path().join("secret.key");
        std::fs::create_dir(&path).expect("mkdir");
        let e = Masker::load_or_create(&path).expect_err("refused");
        assert!(matches!(e, KeyFileError::Unreadable { .. }), "{e:?}");
        let message = e.to_string();
        assert!(
            message.contains(&*path.to_string_lossy()),
            "names the file: {message}"
        );
        assert!(path.is_dir(), "nothing was written over it");
    }

    #[test]
    fn a_malformed_key_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret.key");
        for damaged in [&b""[..], &[1; 31][..], &[1; 33][..]] {
            std::fs::write(&path, damaged).expect("write");
            let e = Masker::load_or_create(&path).expect_err("refused");
            assert!(
                matches!(e, KeyFileError::Malformed { len, .. } if len == damaged.len()),
                "{e:?}"
            );
            let message = e.to_string();
            assert!(
                message.contains(&*path.to_string_lossy()),
                "names the file: {message}"
            );
            assert!(message.contains("restore it"), "says what to do: {message}");
            assert_eq!(
                std::fs::read(&path).expect("read"),
                damaged,
                "left as it was"
            );
        }
    }

    #[test]
    fn the_key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret.key");
        let a = Masker::load_or_create(&path).expect("create");
        let b = Masker::load_or_create(&path).expect("load");
        assert_eq!(
            a.fingerprint("n", "k", &json!(1)),
            b.fingerprint("n", "k", &json!(1))
        );
    }
}
