//! Redis's wire formats (DESIGN §4): what the scripts return and what the hashes, the stream
//! and the channel hold, as typed values decoded in this one place.
//!
//! - [`Meta`]: the namespace's `meta` hash, read with one field list ([`META_FIELDS`]) by every
//!   script (`SYNC_READ`, `FULL_READ`, `RELAY_TICK`) and by a plain `HMGET`;
//! - [`SyncRead`]: `SYNC_READ`'s reply (meta, Redis `TIME`, the log after a version);
//! - [`Image`]: `FULL_READ`'s reply, one consistent image (the sidecar's full fetch and the
//!   relay's adopt);
//! - [`Item`]: an item's envelope `{"value": …, "version": v}`;
//! - [`LogEntry`]: a change-log entry, id `<version>-0`, fields `epoch` and `changes`
//!   (`{"KEY": value | null}`, null = back to the default);
//! - [`Hint`]: a Pub/Sub message `"<epoch>:<version>:<generation>:<hash>"`, optionally followed
//!   by a space and a [`HintPayload`] (the changeset inlined);
//! - [`Heartbeat`]: a sidecar's entry in the fleet hash;
//! - [`ApplyOutcome`], [`SwapOutcome`]: what the writing scripts answer.
//!
//! Decoding never trusts the content: a malformed reply is a [`WireError`]; damaged *content*
//! (an item that is not an envelope, an unreadable log entry) is reported in the decoded value so
//! the caller can refuse it or fall back, as DESIGN §4 asks. Errors never carry a stored value
//! (it may be a secret): they name the field and the kind of reply only.

use std::collections::BTreeMap;
use std::fmt;

use fred::types::Value as RedisValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::content_hash::ContentHash;

/// The fields of `meta` in the order every reader asks for them (`scripts::hmget_meta!` spells
/// the same list in Lua).
pub const META_FIELDS: [&str; 11] = [
    "cluster_id",
    "epoch",
    "version",
    "complete",
    "relay_at",
    "count",
    "generation",
    "schema_hash",
    "relay_interval_ms",
    "term",
    "content_hash",
];

/// A reply that does not have the shape its script or command promises.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{what}: expected an array, got {got}")]
    NotArray { what: &'static str, got: String },
    #[error("{what}: expected {expected} elements, got {got}")]
    Length {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{what}: expected a string, got {got}")]
    NotText { what: &'static str, got: String },
    #[error("{what}: not UTF-8")]
    NotUtf8 { what: &'static str },
    #[error("{field} is not a number: {text:?}")]
    NotNumber { field: &'static str, text: String },
    #[error("{what} is not valid JSON of its shape")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what}: malformed ({why})")]
    Malformed {
        what: &'static str,
        why: &'static str,
    },
    #[error("{script} answered an unknown outcome {outcome:?}")]
    UnknownOutcome {
        script: &'static str,
        outcome: String,
    },
}

/// The namespace's `meta` hash. Absent fields are `None` (an empty or flushed Redis has none);
/// `generation` and `term` count from 0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    pub cluster_id: Option<String>,
    pub epoch: Option<u64>,
    pub version: Option<u64>,
    /// `complete == "1"`: `items` is a whole image at `version`.
    pub complete: bool,
    /// Redis `TIME` (seconds) of the relay's last beat.
    pub relay_at: Option<f64>,
    /// Items in the image (sidecars check it after a full read).
    pub count: Option<u64>,
    /// Bumped when anti-entropy repaired Redis at the same version.
    pub generation: u64,
    pub schema_hash: Option<String>,
    /// How often the relay refreshes `relay_at` (absent before its first round).
    pub relay_interval_ms: Option<u64>,
    /// The fencing token of the last relay leader that wrote.
    pub term: u64,
    /// The image's [`ContentHash`] (absent from images a relay before content hashes wrote).
    pub content_hash: Option<ContentHash>,
}

impl Meta {
    /// From an array of [`META_FIELDS`] (bulk strings or nils), as every script returns it.
    pub fn decode(v: &RedisValue) -> Result<Meta, WireError> {
        let f = fields(v, META_FIELDS.len(), "meta")?;
        Ok(Meta {
            cluster_id: f[0].clone(),
            epoch: number(&f[1], "meta.epoch")?,
            version: number(&f[2], "meta.version")?,
            complete: f[3].as_deref() == Some("1"),
            relay_at: match &f[4] {
                Some(s) => Some(s.parse().map_err(|_| WireError::NotNumber {
                    field: "meta.relay_at",
                    text: s.clone(),
                })?),
                None => None,
            },
            count: number(&f[5], "meta.count")?,
            generation: number(&f[6], "meta.generation")?.unwrap_or(0),
            schema_hash: f[7].clone(),
            relay_interval_ms: number(&f[8], "meta.relay_interval_ms")?,
            term: number(&f[9], "meta.term")?.unwrap_or(0),
            content_hash: match &f[10] {
                Some(t) => Some(ContentHash::parse(t).ok_or(WireError::Malformed {
                    what: "meta.content_hash",
                    why: "not 16 hex digits",
                })?),
                None => None,
            },
        })
    }
}

/// An item's stored form: `{"value": …, "version": v}` (absent item = schema default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub value: Value,
    /// The version that last set this key.
    pub version: u64,
}

/// [`Item`] borrowed, for encoding without a copy of the value.
#[derive(Serialize)]
struct ItemRef<'a> {
    value: &'a Value,
    version: u64,
}

impl Item {
    pub fn encode(value: &Value, version: u64) -> Result<String, WireError> {
        serde_json::to_string(&ItemRef { value, version }).map_err(|source| WireError::Json {
            what: "item",
            source,
        })
    }

    /// An error when the text is not an envelope (poisoned content).
    pub fn decode(text: &str) -> Result<Item, WireError> {
        serde_json::from_str(text).map_err(|source| WireError::Json {
            what: "item",
            source,
        })
    }
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub version: u64,
    pub epoch: u64,
    /// `KEY → value`, or `KEY → null` (reset to the default).
    pub changes: serde_json::Map<String, Value>,
}

impl LogEntry {
    /// The stream entry id: `<version>-0`.
    pub fn id(&self) -> String {
        format!("{}-0", self.version)
    }

    /// The `changes` field.
    pub fn changes_json(&self) -> Result<String, WireError> {
        serde_json::to_string(&self.changes).map_err(|source| WireError::Json {
            what: "log entry changes",
            source,
        })
    }

    /// From one `XRANGE` element: `[id, [field, value, …]]`.
    pub fn decode(v: &RedisValue) -> Result<LogEntry, WireError> {
        const WHAT: &str = "log entry";
        let parts = array(v, WHAT)?;
        let [id, kv] = parts else {
            return Err(WireError::Length {
                what: WHAT,
                expected: 2,
                got: parts.len(),
            });
        };
        let id = text(id, "log entry id")?.ok_or(WireError::Malformed {
            what: WHAT,
            why: "no id",
        })?;
        let version =
            id.strip_suffix("-0")
                .and_then(|v| v.parse().ok())
                .ok_or(WireError::Malformed {
                    what: WHAT,
                    why: "the id is not <version>-0",
                })?;
        let kv = array(kv, "log entry fields")?;
        if kv.len() % 2 != 0 {
            return Err(WireError::Malformed {
                what: WHAT,
                why: "an odd number of fields",
            });
        }
        let (mut epoch, mut changes) = (None, None);
        for pair in kv.chunks(2) {
            let [k, v] = pair else { continue };
            match text(k, "log entry field")?.as_deref() {
                Some("epoch") => {
                    let t = text(v, "log entry epoch")?;
                    epoch = number(&t, "log entry epoch")?;
                }
                Some("changes") => {
                    let t = text(v, "log entry changes")?.unwrap_or_default();
                    changes = Some(serde_json::from_str(&t).map_err(|source| WireError::Json {
                        what: "log entry changes",
                        source,
                    })?);
                }
                _ => {}
            }
        }
        Ok(LogEntry {
            version,
            epoch: epoch.ok_or(WireError::Malformed {
                what: WHAT,
                why: "no epoch",
            })?,
            changes: changes.ok_or(WireError::Malformed {
                what: WHAT,
                why: "no changes",
            })?,
        })
    }
}

/// `SYNC_READ`'s reply: meta, Redis's clock, and the log after the version asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncRead {
    pub meta: Meta,
    /// Redis `TIME` in seconds; `None` when unreadable (the relay then counts as down).
    pub time: Option<f64>,
    /// The entries in stream order, up to the first that cannot be decoded.
    pub log: Vec<LogEntry>,
    /// An entry could not be decoded; `log` stops before it.
    pub log_damaged: bool,
}

impl SyncRead {
    /// From `{meta fields, TIME, XRANGE entries}`.
    pub fn decode(v: &RedisValue) -> Result<SyncRead, WireError> {
        let parts = array(v, "SYNC_READ")?;
        let [meta, time, log] = parts else {
            return Err(WireError::Length {
                what: "SYNC_READ",
                expected: 3,
                got: parts.len(),
            });
        };
        let entries: &[RedisValue] = match log {
            RedisValue::Null => &[],
            other => array(other, "SYNC_READ log")?,
        };
        let mut decoded = Vec::with_capacity(entries.len());
        let mut log_damaged = false;
        for entry in entries {
            match LogEntry::decode(entry) {
                Ok(e) => decoded.push(e),
                Err(_) => {
                    log_damaged = true;
                    break;
                }
            }
        }
        Ok(SyncRead {
            meta: Meta::decode(meta)?,
            time: redis_time(time),
            log: decoded,
            log_damaged,
        })
    }
}

/// Redis `TIME` (`[seconds, microseconds]`) as seconds.
fn redis_time(v: &RedisValue) -> Option<f64> {
    let f = fields(v, 2, "TIME").ok()?;
    let secs: f64 = f[0].as_deref()?.parse().ok()?;
    let micros: f64 = f[1].as_deref()?.parse().ok()?;
    Some(secs + micros / 1e6)
}

/// `FULL_READ`'s reply decoded once: meta and every item, read in one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub meta: Meta,
    /// The valid envelopes at or below `meta.version`.
    pub items: BTreeMap<String, Item>,
    /// Fields of the items hash that are not valid envelopes, or carry a version above the
    /// image's (poisoned content): not in `items`.
    pub bad_items: usize,
    /// Fields in the items hash, valid or not (what `meta.count` counts).
    pub fields: usize,
}

impl Image {
    /// From `{meta fields, HGETALL items}`.
    pub fn decode(v: &RedisValue) -> Result<Image, WireError> {
        let parts = array(v, "FULL_READ")?;
        let [meta, flat] = parts else {
            return Err(WireError::Length {
                what: "FULL_READ",
                expected: 2,
                got: parts.len(),
            });
        };
        let meta = Meta::decode(meta)?;
        let flat = array(flat, "FULL_READ items")?;
        let limit = meta.version.unwrap_or(0);
        let mut items = BTreeMap::new();
        let mut bad_items = 0;
        for pair in flat.chunks(2) {
            let [k, v] = pair else { continue };
            let key = text(k, "item key").ok().flatten();
            let item = text(v, "item")
                .ok()
                .flatten()
                .and_then(|t| Item::decode(&t).ok())
                .filter(|item| item.version <= limit);
            match (key, item) {
                (Some(key), Some(item)) => {
                    items.insert(key, item);
                }
                _ => bad_items += 1,
            }
        }
        Ok(Image {
            meta,
            items,
            bad_items,
            fields: flat.len() / 2,
        })
    }
}

/// A change hint on the namespace's channel (DESIGN §4):
/// `"<epoch>:<version>:<generation>:<hash>"`, optionally followed by one space and a
/// [`HintPayload`] (JSON). The relay before content hashes sent `"<epoch>:<version>"`; that
/// form is still read during a rolling upgrade (`generation` and `hash` then unknown).
#[derive(Debug, Clone, PartialEq)]
pub struct Hint {
    pub epoch: u64,
    pub version: u64,
    /// `None` in the old two-field form.
    pub generation: Option<u64>,
    /// The image's content hash at `version`; `None` in the old two-field form.
    pub hash: Option<ContentHash>,
    /// The changeset that made `version`, when the relay inlined it; `None` when absent.
    pub payload: Option<HintPayload>,
    /// A payload was present but could not be decoded (the sidecar falls back to the log).
    pub payload_damaged: bool,
}

/// The changeset inlined in a hint: `{"cluster_id": …, "changes": {"KEY": value | null}}`
/// (`changes` as in a log entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HintPayload {
    pub cluster_id: String,
    pub changes: serde_json::Map<String, Value>,
}

impl Hint {
    /// `None` when the message is not a hint in a known form (the sidecar then resyncs): a
    /// future format with more fields is refused, never half-read.
    pub fn parse(text: &str) -> Option<Hint> {
        let (head, payload) = match text.split_once(' ') {
            Some((head, payload)) => (head, Some(payload)),
            None => (text, None),
        };
        let parts: Vec<&str> = head.split(':').collect();
        let digits = |s: &str| -> Option<u64> {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        let (epoch, version, generation, hash) = match parts.as_slice() {
            [e, v] if payload.is_none() => (digits(e)?, digits(v)?, None, None),
            [e, v, g, h] => (
                digits(e)?,
                digits(v)?,
                Some(digits(g)?),
                Some(ContentHash::parse(h)?),
            ),
            _ => return None,
        };
        let (payload, payload_damaged) = match payload {
            None => (None, false),
            Some(p) => match serde_json::from_str::<HintPayload>(p) {
                Ok(p) => (Some(p), false),
                Err(_) => (None, true),
            },
        };
        Some(Hint {
            epoch,
            version,
            generation,
            hash,
            payload,
            payload_damaged,
        })
    }

    /// The message text, as the relay's scripts publish it (they concatenate the same fields in
    /// Lua; a test pins both).
    pub fn encode(&self) -> String {
        let mut text = format!("{}:{}", self.epoch, self.version);
        if let (Some(g), Some(h)) = (self.generation, self.hash) {
            text = format!("{text}:{g}:{h}");
        }
        if let Some(p) = &self.payload {
            if let Ok(json) = serde_json::to_string(p) {
                text.push(' ');
                text.push_str(&json);
            }
        }
        text
    }
}

impl HintPayload {
    /// The payload's JSON, or `None` when it is longer than `max_bytes` (0 = never inline).
    pub fn encode_within(&self, max_bytes: usize) -> Result<Option<String>, WireError> {
        if max_bytes == 0 {
            return Ok(None);
        }
        let json = serde_json::to_string(self).map_err(|source| WireError::Json {
            what: "hint payload",
            source,
        })?;
        Ok((json.len() <= max_bytes).then_some(json))
    }
}

/// A sidecar's heartbeat in `rtconfig:{ns}:sidecars`:
/// `{"version","epoch","schema_hash","status","seen_at","interval_ms","applied_at","started_at",
/// "cause","redis_connected"}`. Every field after `seen_at` is optional, so the admin reads the
/// beats of older sidecars (and older admins ignore the new fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub version: u64,
    pub epoch: u64,
    pub schema_hash: String,
    /// `ok` or `stale`.
    pub status: String,
    /// RFC 3339, milliseconds.
    pub seen_at: String,
    /// The sidecar's heartbeat interval (absent from old sidecars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// RFC 3339, milliseconds: when this sidecar first served `epoch`/`version` (the fleet
    /// view's propagation lag is `applied_at` − the changeset's commit time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    /// RFC 3339, milliseconds: when this sidecar process started (a sidecar that started after
    /// a change did not receive it as a change, so it is left out of that change's lag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Why the sidecar is not (known to be) in sync, as its `/status` says (`liveness_failed`,
    /// `redis_unavailable`, `relay_down`, …); absent when in sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Whether the sidecar's Redis connections are up, as it sees them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_connected: Option<bool>,
}

impl Heartbeat {
    pub fn encode(&self) -> Result<String, WireError> {
        serde_json::to_string(self).map_err(|source| WireError::Json {
            what: "heartbeat",
            source,
        })
    }

    pub fn decode(text: &str) -> Result<Heartbeat, WireError> {
        serde_json::from_str(text).map_err(|source| WireError::Json {
            what: "heartbeat",
            source,
        })
    }
}

/// What `APPLY` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Applied, logged and published.
    Ok,
    /// Already applied (`version ≤ meta.version`): nothing changed.
    Dup,
    /// Not the next version: an earlier one is missing.
    Gap,
    /// No complete image to apply to.
    NotReady,
    /// Redis holds another epoch.
    Epoch,
    /// Redis holds another cluster's data.
    Foreign,
    /// A relay with a higher term has written.
    Fenced,
}

impl ApplyOutcome {
    pub fn decode(v: &RedisValue) -> Result<ApplyOutcome, WireError> {
        let t = text(v, "APPLY")?.unwrap_or_default();
        Ok(match t.as_str() {
            "OK" => ApplyOutcome::Ok,
            "DUP" => ApplyOutcome::Dup,
            "GAP" => ApplyOutcome::Gap,
            "NOT_READY" => ApplyOutcome::NotReady,
            "EPOCH" => ApplyOutcome::Epoch,
            "FOREIGN" => ApplyOutcome::Foreign,
            "FENCED" => ApplyOutcome::Fenced,
            _ => {
                return Err(WireError::UnknownOutcome {
                    script: "APPLY",
                    outcome: t,
                })
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApplyOutcome::Ok => "OK",
            ApplyOutcome::Dup => "DUP",
            ApplyOutcome::Gap => "GAP",
            ApplyOutcome::NotReady => "NOT_READY",
            ApplyOutcome::Epoch => "EPOCH",
            ApplyOutcome::Foreign => "FOREIGN",
            ApplyOutcome::Fenced => "FENCED",
        }
    }
}

impl fmt::Display for ApplyOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `SWAP` (the end of a rebuild) answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapOutcome {
    /// The rebuilt image is live.
    Ok,
    Foreign,
    Fenced,
    /// The temp image does not hold the expected number of items; nothing changed.
    Count,
}

impl SwapOutcome {
    pub fn decode(v: &RedisValue) -> Result<SwapOutcome, WireError> {
        let t = text(v, "SWAP")?.unwrap_or_default();
        Ok(match t.as_str() {
            "OK" => SwapOutcome::Ok,
            "FOREIGN" => SwapOutcome::Foreign,
            "FENCED" => SwapOutcome::Fenced,
            "COUNT" => SwapOutcome::Count,
            _ => {
                return Err(WireError::UnknownOutcome {
                    script: "SWAP",
                    outcome: t,
                })
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SwapOutcome::Ok => "OK",
            SwapOutcome::Foreign => "FOREIGN",
            SwapOutcome::Fenced => "FENCED",
            SwapOutcome::Count => "COUNT",
        }
    }
}

impl fmt::Display for SwapOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn array<'a>(v: &'a RedisValue, what: &'static str) -> Result<&'a [RedisValue], WireError> {
    match v {
        RedisValue::Array(items) => Ok(items),
        other => Err(WireError::NotArray {
            what,
            got: other.kind().to_string(),
        }),
    }
}

/// An array reply of `n` bulk strings or nils.
fn fields(v: &RedisValue, n: usize, what: &'static str) -> Result<Vec<Option<String>>, WireError> {
    let items = array(v, what)?;
    if items.len() != n {
        return Err(WireError::Length {
            what,
            expected: n,
            got: items.len(),
        });
    }
    items.iter().map(|i| text(i, what)).collect()
}

/// A bulk string, integer or nil as text.
fn text(v: &RedisValue, what: &'static str) -> Result<Option<String>, WireError> {
    match v {
        RedisValue::Null => Ok(None),
        RedisValue::String(s) => Ok(Some(s.to_string())),
        RedisValue::Bytes(b) => String::from_utf8(b.to_vec())
            .map(Some)
            .map_err(|_| WireError::NotUtf8 { what }),
        RedisValue::Integer(i) => Ok(Some(i.to_string())),
        other => Err(WireError::NotText {
            what,
            got: other.kind().to_string(),
        }),
    }
}

fn number(s: &Option<String>, field: &'static str) -> Result<Option<u64>, WireError> {
    match s {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| WireError::NotNumber {
            field,
            text: s.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn s(text: &str) -> RedisValue {
        RedisValue::from(text)
    }

    fn arr(items: Vec<RedisValue>) -> RedisValue {
        RedisValue::Array(items)
    }

    /// `meta` as the scripts return it, from `(field, value)` pairs (others nil).
    fn meta(set: &[(&str, &str)]) -> RedisValue {
        arr(META_FIELDS
            .iter()
            .map(|f| match set.iter().find(|(k, _)| k == f) {
                Some((_, v)) => s(v),
                None => RedisValue::Null,
            })
            .collect())
    }

    fn ours(version: &str) -> RedisValue {
        meta(&[
            ("cluster_id", "default"),
            ("epoch", "1"),
            ("version", version),
            ("complete", "1"),
            ("count", "1"),
        ])
    }

    fn log_entry(id: &str, fields: &[(&str, &str)]) -> RedisValue {
        arr(vec![
            s(id),
            arr(fields.iter().flat_map(|(k, v)| [s(k), s(v)]).collect()),
        ])
    }

    #[test]
    fn meta_decodes_every_field_and_defaults_the_counters() {
        let m = Meta::decode(&meta(&[
            ("cluster_id", "prod"),
            ("epoch", "2"),
            ("version", "41"),
            ("complete", "1"),
            ("relay_at", "1700000000.250000"),
            ("count", "8"),
            ("generation", "3"),
            ("schema_hash", "abc"),
            ("relay_interval_ms", "500"),
            ("term", "9"),
            ("content_hash", "00000000000000ab"),
        ]))
        .expect("meta");
        assert_eq!(
            m,
            Meta {
                cluster_id: Some("prod".into()),
                epoch: Some(2),
                version: Some(41),
                complete: true,
                relay_at: Some(1_700_000_000.25),
                count: Some(8),
                generation: 3,
                schema_hash: Some("abc".into()),
                relay_interval_ms: Some(500),
                term: 9,
                content_hash: Some(ContentHash(0xab)),
            }
        );
        // A flushed Redis: every field nil.
        assert_eq!(Meta::decode(&meta(&[])).expect("empty"), Meta::default());
        // `complete` is only "1".
        assert!(
            !Meta::decode(&meta(&[("complete", "true")]))
                .expect("meta")
                .complete
        );
        // Integers (RESP) are numbers too.
        let mut fields: Vec<RedisValue> = vec![RedisValue::Null; META_FIELDS.len()];
        fields[2] = RedisValue::Integer(7);
        assert_eq!(Meta::decode(&arr(fields)).expect("meta").version, Some(7));
    }

    #[test]
    fn malformed_meta_is_an_error_that_names_the_field() {
        let cases: Vec<(RedisValue, &str)> = vec![
            (s("OK"), "expected an array"),
            (arr(vec![s("default")]), "expected 11 elements, got 1"),
            (
                meta(&[("content_hash", "xyz")]),
                "meta.content_hash: malformed",
            ),
            (meta(&[("epoch", "one")]), "meta.epoch is not a number"),
            (meta(&[("version", "-1")]), "meta.version is not a number"),
            (
                meta(&[("relay_at", "noon")]),
                "meta.relay_at is not a number",
            ),
            (meta(&[("term", "1.5")]), "meta.term is not a number"),
            (
                arr(vec![arr(vec![]); META_FIELDS.len()]),
                "expected a string, got Array",
            ),
        ];
        for (reply, expected) in cases {
            let e = Meta::decode(&reply).expect_err(expected).to_string();
            assert!(e.contains(expected), "{e:?} should contain {expected:?}");
        }
        let e = Meta::decode(&arr(vec![
            RedisValue::Bytes(vec![0xff].into());
            META_FIELDS.len()
        ]))
        .expect_err("not utf-8");
        assert!(matches!(e, WireError::NotUtf8 { .. }), "{e:?}");
    }

    #[test]
    fn items_round_trip_byte_compatibly_and_poison_is_rejected() {
        let text = Item::encode(&json!({"a": [1, 2.5]}), 7).expect("encode");
        assert_eq!(text, r#"{"value":{"a":[1,2.5]},"version":7}"#);
        assert_eq!(
            Item::decode(&text).expect("decode"),
            Item {
                value: json!({"a": [1, 2.5]}),
                version: 7
            }
        );
        // A stored null is a value (the snapshot treats it as the default).
        assert_eq!(
            Item::decode(r#"{"value":null,"version":1}"#)
                .expect("null")
                .value,
            Value::Null
        );
        for bad in [
            "",
            "x",
            "{}",
            "{\"value\":1}",
            "{\"version\":1}",
            "{\"value\":1,\"version\":-1}",
            "{\"value\":1,\"version\":1.5}",
            "[1]",
        ] {
            assert!(Item::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn log_entries_decode_and_encode() {
        let entry = LogEntry::decode(&log_entry(
            "5-0",
            &[("epoch", "2"), ("changes", r#"{"A":1,"B":null}"#)],
        ))
        .expect("entry");
        assert_eq!(entry.version, 5);
        assert_eq!(entry.epoch, 2);
        assert_eq!(entry.changes.get("A"), Some(&json!(1)));
        assert_eq!(entry.changes.get("B"), Some(&Value::Null));
        assert_eq!(entry.id(), "5-0");
        assert_eq!(entry.changes_json().expect("json"), r#"{"A":1,"B":null}"#);

        let bad = [
            log_entry("5-1", &[("epoch", "2"), ("changes", "{}")]),
            log_entry("x-0", &[("epoch", "2"), ("changes", "{}")]),
            log_entry("5-0", &[("changes", "{}")]),
            log_entry("5-0", &[("epoch", "2")]),
            log_entry("5-0", &[("epoch", "two"), ("changes", "{}")]),
            log_entry("5-0", &[("epoch", "2"), ("changes", "[1]")]),
            log_entry("5-0", &[("epoch", "2"), ("changes", "{")]),
            arr(vec![s("5-0")]),
            arr(vec![s("5-0"), arr(vec![s("epoch")])]),
            s("5-0"),
        ];
        for b in &bad {
            assert!(LogEntry::decode(b).is_err(), "{b:?}");
        }
    }

    #[test]
    fn sync_read_keeps_the_good_log_prefix_and_flags_damage() {
        let good = |v: u64| {
            log_entry(
                &format!("{v}-0"),
                &[("epoch", "1"), ("changes", r#"{"A":1}"#)],
            )
        };
        let time = arr(vec![s("1700000000"), s("500000")]);
        let read = SyncRead::decode(&arr(vec![
            ours("7"),
            time.clone(),
            arr(vec![good(6), log_entry("7-0", &[("epoch", "1")]), good(8)]),
        ]))
        .expect("read");
        assert_eq!(read.meta.version, Some(7));
        assert_eq!(read.time, Some(1_700_000_000.5));
        assert_eq!(read.log.len(), 1);
        assert!(read.log_damaged);

        // No log asked for (nil or empty), and an unreadable TIME (the relay counts as down).
        for log in [RedisValue::Null, arr(vec![])] {
            let read = SyncRead::decode(&arr(vec![ours("7"), s("noon"), log])).expect("read");
            assert!(read.log.is_empty() && !read.log_damaged);
            assert_eq!(read.time, None);
        }

        for bad in [
            s("OK"),
            arr(vec![ours("7"), time.clone()]),
            arr(vec![ours("7"), time.clone(), s("log")]),
            arr(vec![s("meta"), time, arr(vec![])]),
        ] {
            assert!(SyncRead::decode(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_image_counts_every_field_and_sets_poison_aside() {
        let image = Image::decode(&arr(vec![
            ours("7"),
            arr(vec![
                s("A"),
                s(r#"{"value":1,"version":3}"#),
                s("B"),
                s("not json"),
                s("C"),
                s(r#"{"value":2,"version":8}"#),
                RedisValue::Null,
                s(r#"{"value":3,"version":1}"#),
                s("D"),
                RedisValue::Bytes(vec![0xff].into()),
            ]),
        ]))
        .expect("image");
        assert_eq!(image.meta.version, Some(7));
        assert_eq!(
            image.items,
            BTreeMap::from([(
                "A".to_owned(),
                Item {
                    value: json!(1),
                    version: 3
                }
            )])
        );
        assert_eq!(
            image.bad_items, 4,
            "not json, newer than the image, nil key, not UTF-8"
        );
        assert_eq!(image.fields, 5);

        let empty = Image::decode(&arr(vec![meta(&[]), arr(vec![])])).expect("empty");
        assert_eq!(
            (empty.items.len(), empty.bad_items, empty.fields),
            (0, 0, 0)
        );

        for bad in [
            s("OK"),
            arr(vec![ours("7")]),
            arr(vec![ours("7"), s("items")]),
            arr(vec![s("meta"), arr(vec![])]),
        ] {
            assert!(Image::decode(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hints_carry_position_hash_and_an_optional_payload() {
        let h = Hint::parse("2:41:3:00000000000000ff").expect("hint");
        assert_eq!(
            (h.epoch, h.version, h.generation, h.hash),
            (2, 41, Some(3), Some(ContentHash(255)))
        );
        assert_eq!((h.payload.clone(), h.payload_damaged), (None, false));
        assert_eq!(h.encode(), "2:41:3:00000000000000ff");

        let text = r#"2:41:0:00000000000000ff {"cluster_id":"prod","changes":{"S":"C","T":null}}"#;
        let h = Hint::parse(text).expect("with payload");
        let p = h.payload.clone().expect("payload");
        assert_eq!(p.cluster_id, "prod");
        assert_eq!(p.changes.get("S"), Some(&json!("C")));
        assert_eq!(p.changes.get("T"), Some(&Value::Null));
        assert_eq!(h.encode(), text);

        // The old form, during a rolling upgrade.
        let old = Hint::parse("2:41").expect("old form");
        assert_eq!((old.generation, old.hash), (None, None));

        // A payload that does not decode keeps the position (the sidecar uses the log).
        let h = Hint::parse("2:41:0:00000000000000ff {nope").expect("damaged payload");
        assert!(h.payload.is_none() && h.payload_damaged);

        for bad in [
            "",
            "41",
            "a:b",
            "1:",
            ":1",
            "1:2:3",
            "-1:2",
            "+1:2",
            "1:2 {}",
            "1:2:3:4",
            "1:2:x:00000000000000ff",
            "1:2:3:00000000000000ff:5",
            "1:2:3:00000000000000ff:5 {}",
            "v2|1:2:3:00000000000000ff",
        ] {
            assert_eq!(Hint::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_payload_is_inlined_only_within_the_limit() {
        let p = HintPayload {
            cluster_id: "prod".into(),
            changes: serde_json::from_str(r#"{"S":"C"}"#).expect("json"),
        };
        let json = r#"{"cluster_id":"prod","changes":{"S":"C"}}"#;
        assert_eq!(
            p.encode_within(8192).expect("encode").as_deref(),
            Some(json)
        );
        assert_eq!(
            p.encode_within(json.len()).expect("encode").as_deref(),
            Some(json)
        );
        assert_eq!(p.encode_within(json.len() - 1).expect("encode"), None);
        assert_eq!(p.encode_within(0).expect("encode"), None);
    }

    #[test]
    fn heartbeats_keep_their_json_shape() {
        let beat = Heartbeat {
            version: 4,
            epoch: 1,
            schema_hash: "abc".into(),
            status: "ok".into(),
            seen_at: "2026-01-01T00:00:00.000Z".into(),
            interval_ms: Some(5000),
            applied_at: None,
            started_at: None,
            cause: None,
            redis_connected: None,
        };
        let text = beat.encode().expect("encode");
        assert_eq!(
            text,
            r#"{"version":4,"epoch":1,"schema_hash":"abc","status":"ok","seen_at":"2026-01-01T00:00:00.000Z","interval_ms":5000}"#
        );
        assert_eq!(Heartbeat::decode(&text).expect("decode"), beat);
        let full = Heartbeat {
            applied_at: Some("2026-01-01T00:00:00.100Z".into()),
            started_at: Some("2025-12-31T23:00:00.000Z".into()),
            cause: Some("liveness_failed".into()),
            redis_connected: Some(false),
            ..beat.clone()
        };
        let text = full.encode().expect("encode");
        assert_eq!(
            text,
            r#"{"version":4,"epoch":1,"schema_hash":"abc","status":"ok","seen_at":"2026-01-01T00:00:00.000Z","interval_ms":5000,"applied_at":"2026-01-01T00:00:00.100Z","started_at":"2025-12-31T23:00:00.000Z","cause":"liveness_failed","redis_connected":false}"#
        );
        assert_eq!(Heartbeat::decode(&text).expect("decode"), full);
        let old = Heartbeat::decode(
            r#"{"version":4,"epoch":1,"schema_hash":"abc","status":"ok","seen_at":"x"}"#,
        )
        .expect("without interval_ms");
        assert_eq!(old.interval_ms, None);
        for bad in [
            "",
            "{}",
            r#"{"version":"4","epoch":1,"schema_hash":"abc","status":"ok","seen_at":"x"}"#,
            r#"{"version":4,"epoch":1,"schema_hash":"abc","status":"ok"}"#,
        ] {
            assert!(Heartbeat::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn script_outcomes_are_enums() {
        for (text, outcome) in [
            ("OK", ApplyOutcome::Ok),
            ("DUP", ApplyOutcome::Dup),
            ("GAP", ApplyOutcome::Gap),
            ("NOT_READY", ApplyOutcome::NotReady),
            ("EPOCH", ApplyOutcome::Epoch),
            ("FOREIGN", ApplyOutcome::Foreign),
            ("FENCED", ApplyOutcome::Fenced),
        ] {
            assert_eq!(ApplyOutcome::decode(&s(text)).expect(text), outcome);
            assert_eq!(outcome.to_string(), text);
        }
        for (text, outcome) in [
            ("OK", SwapOutcome::Ok),
            ("FOREIGN", SwapOutcome::Foreign),
            ("FENCED", SwapOutcome::Fenced),
            ("COUNT", SwapOutcome::Count),
        ] {
            assert_eq!(SwapOutcome::decode(&s(text)).expect(text), outcome);
            assert_eq!(outcome.to_string(), text);
        }
        for bad in [s("ok"), s("COUNT "), RedisValue::Null, arr(vec![s("OK")])] {
            assert!(ApplyOutcome::decode(&bad).is_err(), "{bad:?}");
        }
        assert!(SwapOutcome::decode(&s("DUP")).is_err());
    }
}
