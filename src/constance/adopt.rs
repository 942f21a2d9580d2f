//! What the mirror does with one key (pure): given the ledger's value, what rtconfig last saw
//! in constance's key (its record), and what constance's key holds now.
//!
//! The record is what makes it loop-free. The mirror writes constance's key only with a
//! compare-and-set against the bytes it saw, and records the bytes after every write and every
//! adoption, so:
//! - constance's key unchanged since the record, the ledger moved on → **write** (or delete, for
//!   a reset: constance reads a missing key as its default);
//! - constance's key changed since the record (Django saved it) → **adopt** it into the ledger;
//!   a value rtconfig wrote is always its record, so it is never adopted back (no echo);
//! - both say the same value (compared as the bytes rtconfig would write: `5m` and 300.0 s are
//!   one value; a missing key and the default are one value) → nothing (or refresh the record);
//! - what constance holds fails the key's type or constraints → **invalid**: reported, left
//!   alone, never adopted.
//!
//! Without a record (the first start, or a Redis that lost the record with the data): constance
//! wins — that is the "adopt first" rule, a live Django shop keeps its values — except that a
//! constance *default* never replaces a value the ledger holds (Django writes the default back
//! whenever it reads a missing key, e.g. after a Redis restart without persistence), and a
//! missing key is refilled from the ledger.

use serde_json::Value;

use super::codec::{self, EncodeError};
use crate::schema::KeyDef;

/// What rtconfig last saw in (or wrote to) constance's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Absent,
    Bytes(Vec<u8>),
}

impl Seen {
    pub fn of(bytes: Option<&[u8]>) -> Seen {
        match bytes {
            None => Seen::Absent,
            Some(b) => Seen::Bytes(b.to_vec()),
        }
    }

    /// How the record hash stores it: `-` absent, `=` + bytes.
    pub fn to_record(&self) -> Vec<u8> {
        match self {
            Seen::Absent => b"-".to_vec(),
            Seen::Bytes(b) => {
                let mut out = Vec::with_capacity(b.len() + 1);
                out.push(b'=');
                out.extend_from_slice(b);
                out
            }
        }
    }

    /// `None` for a record this version does not write (treated as no record).
    pub fn from_record(record: &[u8]) -> Option<Seen> {
        match record.split_first() {
            Some((b'-', [])) => Some(Seen::Absent),
            Some((b'=', rest)) => Some(Seen::Bytes(rest.to_vec())),
            _ => None,
        }
    }

    fn matches(&self, now: Option<&[u8]>) -> bool {
        match (self, now) {
            (Seen::Absent, None) => true,
            (Seen::Bytes(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

/// One key as the mirror sees it.
#[derive(Debug, Clone, Copy)]
pub struct KeyState<'a> {
    pub def: &'a KeyDef,
    /// The ledger's stored value (`None`: the schema default).
    pub ledger: Option<&'a Value>,
    /// The record (`None`: none).
    pub seen: Option<&'a Seen>,
    /// What constance's key holds (`None`: missing).
    pub constance: Option<&'a [u8]>,
}

/// What to do with one key.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// In sync, record current.
    Nothing,
    /// In sync; store what constance holds as the record.
    Record,
    /// Compare-and-set constance's key from `expect` to `new` (`None` = delete).
    Write { expect: Seen, new: Option<String> },
    /// Record this value (constance's) in the ledger.
    Adopt(Value),
    /// constance holds a value the schema refuses: left alone. `code` is
    /// [`codec::DecodeError::code`].
    Invalid { code: &'static str, reason: String },
    /// The ledger's value has no constance form (a leap second): not written.
    Unmirrorable(EncodeError),
}

/// Decides for one key (see the module doc for the rules).
pub fn decide(k: KeyState<'_>) -> Decision {
    let desired = match k.ledger.map(|v| codec::encode(k.def, v)).transpose() {
        Ok(d) => d,
        Err(e) => return Decision::Unmirrorable(e),
    };
    let unchanged = k.seen.is_some_and(|s| s.matches(k.constance));
    let in_sync = if unchanged {
        Decision::Nothing
    } else {
        Decision::Record
    };
    let write = || Decision::Write {
        expect: Seen::of(k.constance),
        new: desired.clone(),
    };
    let Some(raw) = k.constance else {
        // Missing in constance: the default there. Refill it from the ledger unless that is
        // the default too.
        return match &desired {
            None => in_sync,
            Some(_) if effective_default(k.def, desired.as_deref()) => in_sync,
            Some(_) => write(),
        };
    };
    let decoded = match codec::decode(k.def, raw) {
        Ok(v) => v,
        // Bytes rtconfig wrote but its schema now refuses (the schema changed): rewrite them.
        Err(_) if unchanged => return write(),
        Err(e) => {
            return Decision::Invalid {
                code: e.code(),
                reason: e.to_string(),
            }
        }
    };
    let theirs = match decoded
        .as_ref()
        .map(|v| codec::encode(k.def, v))
        .transpose()
    {
        Ok(t) => t,
        Err(e) => {
            return Decision::Invalid {
                code: "unrepresentable",
                reason: e.to_string(),
            }
        }
    };
    let default = codec::encode(k.def, &k.def.default.value()).ok();
    let theirs_eff = theirs.clone().or_else(|| default.clone());
    let ours_eff = desired.clone().or_else(|| default.clone());
    if theirs_eff == ours_eff {
        return in_sync;
    }
    if unchanged {
        // Django did not touch it since rtconfig last did: rtconfig's change goes out.
        return write();
    }
    let theirs_is_default = theirs_eff == default;
    if k.seen.is_none() && theirs_is_default && k.ledger.is_some() {
        // No record and constance holds the default: Django's write-back of a default it read
        // from a missing key, not an operator's choice. The ledger's value goes out.
        return write();
    }
    match decoded {
        Some(v) => Decision::Adopt(v),
        // `null` in constance: Django reads the default.
        None => Decision::Adopt(k.def.default.value()),
    }
}

/// Whether `desired` (rtconfig's bytes) says the same as constance's missing key: the default.
fn effective_default(def: &KeyDef, desired: Option<&str>) -> bool {
    desired.is_some_and(|d| codec::encode(def, &def.default.value()).ok().as_deref() == Some(d))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::{Schema, ValueType};

    fn int_key() -> KeyDef {
        Schema::from_keys("t", &[("N", ValueType::Int, json!(5))])
            .key("N")
            .cloned()
            .expect("N")
    }

    fn bytes(n: i64) -> Vec<u8> {
        format!(r#"{{"__type__": "default", "__value__": {n}}}"#).into_bytes()
    }

    fn enc(n: i64) -> Option<String> {
        Some(String::from_utf8(bytes(n)).expect("utf-8"))
    }

    #[test]
    fn every_combination_of_ledger_record_and_constance() {
        let def = int_key();
        let (v1, v2, v5) = (json!(1), json!(2), json!(5));
        let (b1, b2, b5) = (bytes(1), bytes(2), bytes(5));
        let seen = |b: &Vec<u8>| Seen::Bytes(b.clone());
        let s1 = seen(&b1);
        let s5 = seen(&b5);
        let s2 = seen(&b2);
        let bad = br#"{"__type__": "default", "__value__": "x"}"#.to_vec();
        let sbad = seen(&bad);
        let spelled = br#"{"__type__":"default","__value__":2}"#.to_vec();
        let write = |expect: Seen, new: Option<String>| Decision::Write { expect, new };
        #[rustfmt::skip]
        type Case<'a> = (&'a str, Option<&'a Value>, Option<&'a Seen>, Option<&'a [u8]>, Decision);
        let cases: Vec<Case> = vec![
            (
                "in sync, recorded",
                Some(&v1),
                Some(&s1),
                Some(&b1),
                Decision::Nothing,
            ),
            (
                "in sync, no record",
                Some(&v1),
                None,
                Some(&b1),
                Decision::Record,
            ),
            (
                "both default: missing",
                None,
                Some(&Seen::Absent),
                None,
                Decision::Nothing,
            ),
            (
                "both default: no record",
                None,
                None,
                None,
                Decision::Record,
            ),
            (
                "ledger default, constance wrote the default back",
                None,
                Some(&Seen::Absent),
                Some(&b5),
                Decision::Record,
            ),
            (
                "ledger holds the default value, key missing",
                Some(&v5),
                Some(&Seen::Absent),
                None,
                Decision::Nothing,
            ),
            (
                "rtconfig changed it",
                Some(&v2),
                Some(&s1),
                Some(&b1),
                write(s1.clone(), enc(2)),
            ),
            (
                "rtconfig reset it",
                None,
                Some(&s1),
                Some(&b1),
                write(s1.clone(), None),
            ),
            (
                "django changed it",
                Some(&v1),
                Some(&s1),
                Some(&b2),
                Decision::Adopt(v2.clone()),
            ),
            (
                "django changed it while rtconfig did too: django's is newer",
                Some(&v2),
                Some(&s1),
                Some(&b5),
                Decision::Adopt(v5.clone()),
            ),
            (
                "first start: constance wins",
                Some(&v1),
                None,
                Some(&b2),
                Decision::Adopt(v2.clone()),
            ),
            (
                "first start, ledger empty: constance's value adopted",
                None,
                None,
                Some(&b2),
                Decision::Adopt(v2.clone()),
            ),
            (
                "no record, constance holds the default: the ledger's value goes out",
                Some(&v1),
                None,
                Some(&b5),
                write(Seen::Bytes(b5.clone()), enc(1)),
            ),
            (
                "a recorded default set again in Django is adopted",
                Some(&v1),
                Some(&s1),
                Some(&b5),
                Decision::Adopt(v5.clone()),
            ),
            (
                "key deleted (Redis lost it): refilled",
                Some(&v1),
                Some(&s1),
                None,
                write(Seen::Absent, enc(1)),
            ),
            (
                "key missing, no record: refilled",
                Some(&v1),
                None,
                None,
                write(Seen::Absent, enc(1)),
            ),
            (
                "another spelling of the same value: in sync",
                Some(&v2),
                Some(&s5),
                Some(&spelled),
                Decision::Record,
            ),
            (
                "echo: what rtconfig wrote is its record",
                Some(&v2),
                Some(&s2),
                Some(&b2),
                Decision::Nothing,
            ),
            (
                "invalid: left alone",
                Some(&v1),
                Some(&s1),
                Some(&bad),
                Decision::Invalid {
                    code: "wrong_type",
                    reason: "constance holds a str, the rtconfig key is int".into(),
                },
            ),
            (
                "invalid bytes rtconfig itself recorded: rewritten",
                Some(&v1),
                Some(&sbad),
                Some(&bad),
                write(seen(&bad), enc(1)),
            ),
        ];
        for (name, ledger, seen, constance, want) in cases {
            let got = decide(KeyState {
                def: &def,
                ledger,
                seen,
                constance,
            });
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn a_value_failing_the_constraints_is_invalid_with_the_schema_code() {
        let schema = Schema::parse(
            std::path::Path::new("t.toml"),
            "namespace = \"t\"\n[[group]]\nname = \"G\"\nkeys = [\"N\"]\n[keys.N]\ntype = \"int\"\ndefault = 5\nmax = 10\n",
        )
        .expect("schema");
        let def = schema.key("N").expect("N");
        let got = decide(KeyState {
            def,
            ledger: None,
            seen: None,
            constance: Some(&bytes(11)),
        });
        assert!(
            matches!(got, Decision::Invalid { code: "schema", .. }),
            "{got:?}"
        );
    }

    #[test]
    fn records_round_trip() {
        for s in [
            Seen::Absent,
            Seen::Bytes(b"".to_vec()),
            Seen::Bytes(b"{}".to_vec()),
        ] {
            assert_eq!(Seen::from_record(&s.to_record()), Some(s));
        }
        assert_eq!(Seen::from_record(b"junk"), None);
        assert_eq!(Seen::from_record(b""), None);
    }
}
