//! How secrets are shown outside the sidecar: `{"masked": true, "fingerprint": "…"}`.
//!
//! The fingerprint lets an operator see *whether* a secret changed without seeing it: an
//! HMAC-style SHA-256 of the value keyed with a per-deployment random key (so a low-entropy
//! secret cannot be found by hashing guesses), truncated to 12 hex digits.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Masks secret values with a keyed fingerprint.
#[derive(Clone)]
pub struct Masker {
    key: [u8; 32],
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Masker(..)")
    }
}

impl Masker {
    pub fn new(key: [u8; 32]) -> Masker {
        Masker { key }
    }

    /// A random key for this process (fingerprints then differ across restarts).
    pub fn random() -> Masker {
        Masker::new(rand::random())
    }

    /// Loads the key from `path`, creating it (mode 0600) on first use.
    pub fn load_or_create(path: &std::path::Path) -> std::io::Result<Masker> {
        if let Ok(bytes) = std::fs::read(path) {
            if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
                return Ok(Masker::new(key));
            }
        }
        let key: [u8; 32] = rand::random();
        crate::disk::write_private(path, &[&key])?;
        Ok(Masker::new(key))
    }

    pub fn fingerprint(&self, namespace: &str, key: &str, value: &Value) -> String {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(namespace.as_bytes());
        h.update([0]);
        h.update(key.as_bytes());
        h.update([0]);
        h.update(value.to_string().as_bytes());
        let inner = h.finalize();
        let mut outer = Sha256::new();
        outer.update(self.key);
        outer.update(inner);
        hex::encode(&outer.finalize()[..6])
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

    #[test]
    fn a_fingerprint_is_pinned_so_it_does_not_change_across_releases() {
        let m = Masker::new([7; 32]);
        assert_eq!(
            m.fingerprint("demo", "DB_PASSWORD", &json!("hunter2")),
            "257ac9c382d8"
        );
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
