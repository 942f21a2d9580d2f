//! The content hash of a namespace's image (issue 11 item 8, DESIGN §4): what lets a sidecar
//! notice that it holds other content than Redis at the same (epoch, version) — a sidecar whose
//! disk snapshot is *ahead* of a ledger restored from a backup, once the ledger reaches that
//! version with other values.
//!
//! Definition (the relay writes it into `meta.content_hash`, the hint carries it, the sidecar
//! computes it over its snapshot and its disk file stores it):
//!
//! - an item's hash `h(key, value)` = the first 8 bytes, little-endian, of
//!   `SHA-256(len(key) as u64 little-endian ‖ key ‖ canonical JSON of value)`;
//! - canonical JSON = `serde_json`'s compact text with every object's members sorted by key
//!   (byte order), recursively; numbers as `serde_json` prints them;
//! - only stored values count: an absent key or a JSON `null` (back to the schema default) adds
//!   nothing;
//! - the image's hash = the sum of its items' hashes modulo 2⁶⁴, written as 16 lower-case hex
//!   digits (the empty image is `0000000000000000`).
//!
//! The sum makes it independent of order and *incremental*: a changeset of k keys moves the
//! hash by `Σ h(new) − Σ h(old)`, O(k), so neither the relay nor the sidecar ever rehashes the
//! whole image for a small change. It detects divergence, not an adversary: a deliberate
//! collision is possible, which is fine because the channel and `meta` are written only by the
//! relay (DESIGN §4: the hint is only a hint; resync verifies).

use std::borrow::Borrow;
use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// An image's content hash (see the module docs for the definition).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ContentHash(pub u64);

impl ContentHash {
    /// The empty image.
    pub const EMPTY: ContentHash = ContentHash(0);

    /// The hash of every `(key, value)` (a `null` value counts as absent).
    pub fn of<K: AsRef<str>, V: Borrow<Value>>(items: impl IntoIterator<Item = (K, V)>) -> Self {
        let mut h = ContentHash::EMPTY;
        for (k, v) in items {
            h.add(k.as_ref(), v.borrow());
        }
        h
    }

    /// Adds an item (nothing for `null`).
    pub fn add(&mut self, key: &str, value: &Value) {
        self.0 = self.0.wrapping_add(item_hash(key, value));
    }

    /// Removes an item added before (nothing for `null`).
    pub fn remove(&mut self, key: &str, value: &Value) {
        self.0 = self.0.wrapping_sub(item_hash(key, value));
    }

    /// 16 lower-case hex digits.
    pub fn to_hex(self) -> String {
        format!("{:016x}", self.0)
    }

    /// From exactly 16 hex digits.
    pub fn parse(text: &str) -> Option<ContentHash> {
        if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(ContentHash)
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// `h(key, value)`; 0 for `null`.
fn item_hash(key: &str, value: &Value) -> u64 {
    if value.is_null() {
        return 0;
    }
    let mut text = String::new();
    canonical(value, &mut text);
    let mut d = Sha256::new();
    d.update((key.len() as u64).to_le_bytes());
    d.update(key.as_bytes());
    d.update(text.as_bytes());
    let out = d.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&out[..8]);
    u64::from_le_bytes(first)
}

/// Compact JSON with object members sorted by key, recursively.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_hash_is_pinned_order_independent_and_ignores_nulls() {
        let a = json!("B");
        let b = json!({"y": [1, 2.5], "x": true});
        let h = ContentHash::of([("S", &a), ("T", &b)]);
        // Pinned: the relay, the sidecar and the disk file of another release must agree.
        assert_eq!(h.to_hex(), ContentHash::of([("T", &b), ("S", &a)]).to_hex());
        assert_eq!(ContentHash::of([("S", &a)]).to_hex(), PINNED_S_B);
        assert_eq!(ContentHash::EMPTY.to_hex(), "0000000000000000");
        assert_eq!(
            ContentHash::of([("S", &a), ("N", &Value::Null)]),
            ContentHash::of([("S", &a)])
        );
        // Object member order does not matter; array order does.
        let b2: Value = serde_json::from_str(r#"{"x":true,"y":[1,2.5]}"#).expect("json");
        assert_eq!(ContentHash::of([("T", &b)]), ContentHash::of([("T", &b2)]));
        assert_ne!(
            ContentHash::of([("T", &json!([1, 2]))]),
            ContentHash::of([("T", &json!([2, 1]))])
        );
        // Key and value are kept apart: ("ab", "c") is not ("a", "bc").
        assert_ne!(
            ContentHash::of([("ab", &json!("c"))]),
            ContentHash::of([("a", &json!("bc"))])
        );
        // Another value, another hash; "1" is not 1.
        assert_ne!(
            ContentHash::of([("S", &json!("C"))]),
            ContentHash::of([("S", &a)])
        );
        assert_ne!(
            ContentHash::of([("S", &json!(1))]),
            ContentHash::of([("S", &json!("1"))])
        );
    }

    /// Computed independently: `sha256(pack("<Q", 1) + b"S" + b"\"B\"")[:8]` read little-endian.
    const PINNED_S_B: &str = "f3532e14dd6c5ab8";

    #[test]
    fn a_change_moves_the_hash_incrementally() {
        let (b, c, t) = (json!("B"), json!("C"), json!(5));
        let mut h = ContentHash::of([("S", &b), ("T", &t)]);
        h.remove("S", &b);
        h.add("S", &c);
        assert_eq!(h, ContentHash::of([("S", &c), ("T", &t)]));
        h.remove("T", &t);
        assert_eq!(h, ContentHash::of([("S", &c)]));
        h.remove("S", &c);
        assert_eq!(h, ContentHash::EMPTY);
    }

    #[test]
    fn hex_round_trips_and_junk_is_refused() {
        let h = ContentHash(0x0123_4567_89ab_cdef);
        assert_eq!(h.to_hex(), "0123456789abcdef");
        assert_eq!(ContentHash::parse("0123456789abcdef"), Some(h));
        assert_eq!(ContentHash::parse("0123456789ABCDEF"), Some(h));
        for bad in [
            "",
            "0123",
            "0123456789abcdefa",
            "0123456789abcdeg",
            "+123456789abcdef",
        ] {
            assert_eq!(ContentHash::parse(bad), None, "{bad}");
        }
    }
}
