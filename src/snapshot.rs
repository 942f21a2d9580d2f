//! The immutable snapshot every sidecar read is served from, and the store that swaps it.
//!
//! A [`Snapshot`] holds every value of one namespace at one `(epoch, version)`, already encoded:
//! each key's JSON body and the whole `/v1/configs` document are `Bytes`, so a read is
//! `load()` + a hash lookup + `Bytes::clone()`. Snapshots are never mutated; a change builds a
//! new one ([`Snapshot::build`]) and [`SnapshotStore::publish`] swaps it in with `arc-swap`,
//! after checking that it is not older than the current one (a version never goes back within
//! an epoch, and an epoch never goes back at all).
//!
//! The store also owns what readers wait on (a `watch` channel that wakes long-polls and SSE
//! streams), readiness (flips once), and freshness (how long since the state was last confirmed
//! in sync: `X-Config-Age`, `X-Config-Stale`). The only writers are the sync loop (sidecar) and
//! the local publisher (`dev`).

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::HeaderValue;
use serde_json::Value;
use tokio::sync::watch;

use crate::schema::{Schema, ValueType};

/// Where the values being served came from (`X-Config-Source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Confirmed from Redis.
    Redis,
    /// Loaded from the disk snapshot at cold start, not yet confirmed from Redis.
    Disk,
    /// Nothing loaded yet: schema defaults.
    Defaults,
    /// `dev`: the in-process ledger publishes directly; always authoritative.
    Local,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Redis => "redis",
            Source::Disk => "disk",
            Source::Defaults => "defaults",
            Source::Local => "local",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `(epoch, version, generation)`: the order snapshots are accepted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub epoch: u64,
    pub version: u64,
    /// Bumped by anti-entropy when Redis was repaired at the same version.
    pub generation: u64,
}

impl Position {
    pub fn new(epoch: u64, version: u64) -> Position {
        Position {
            epoch,
            version,
            generation: 0,
        }
    }

    /// `"<epoch>-<version>"`: ETag body, long-poll index, SSE id.
    pub fn tag(&self) -> String {
        format!("{}-{}", self.epoch, self.version)
    }
}

/// A value the schema rejected (schema drift): the key serves its default instead.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rejected {
    pub key: String,
    pub rule: &'static str,
    pub reason: String,
    /// The stored value as it came (kept for [`Snapshot::stored`]; never shown: it may be a
    /// secret).
    #[serde(skip)]
    pub value: Value,
}

/// One key of a snapshot, pre-encoded.
#[derive(Debug)]
pub struct Entry {
    pub key: Box<str>,
    pub value: Value,
    /// The value as JSON.
    pub json: Bytes,
    /// `?format=raw`: strings bare, everything else as JSON.
    pub raw: Bytes,
    /// The `GET /v1/configs/{key}` body when fresh.
    pub body: Bytes,
    /// No stored value: serving the schema default.
    pub is_default: bool,
    pub secret: bool,
    pub ty: ValueType,
}

/// The changes between a snapshot and the one before it.
#[derive(Debug, Clone)]
pub struct Delta {
    pub from: Position,
    /// Keys whose value changed, with their new value.
    pub changes: Vec<(Box<str>, Value)>,
}

/// Everything served at one position, immutable.
pub struct Snapshot {
    pub namespace: Arc<str>,
    pub position: Position,
    pub source: Source,
    entries: Vec<Entry>,
    index: HashMap<Box<str>, usize>,
    /// The `GET /v1/configs` body when fresh.
    document: Bytes,
    /// The same with `"stale":true`, built on first need.
    document_stale: OnceLock<Bytes>,
    /// `{"KEY": value, …}`.
    values_json: Bytes,
    pub etag: HeaderValue,
    pub version_header: HeaderValue,
    pub epoch_header: HeaderValue,
    pub rejected: Vec<Rejected>,
    /// Stored keys this schema does not know (ignored).
    pub unknown_keys: usize,
    /// Those keys with their stored values (kept for [`Snapshot::stored`]).
    unknown: Vec<(Box<str>, Value)>,
    pub schema_hash: Arc<str>,
    /// Filled in by [`SnapshotStore::publish`].
    delta: OnceLock<Delta>,
    pub built_at: SystemTime,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("namespace", &self.namespace)
            .field("position", &self.position)
            .field("source", &self.source)
            .field("keys", &self.entries.len())
            .finish()
    }
}

impl Snapshot {
    /// Builds a snapshot: schema defaults overlaid with `stored` values. A stored value the schema
    /// rejects keeps the default and is reported in [`Snapshot::rejected`]; an unknown key is
    /// ignored. Both are normal during a rollout (schema drift) and never stop the build.
    pub fn build<I, K, V>(
        schema: &Schema,
        position: Position,
        source: Source,
        stored: I,
    ) -> Snapshot
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Borrow<Value>,
    {
        let mut overrides: HashMap<&str, Value> = HashMap::with_capacity(schema.len());
        let mut rejected = Vec::new();
        let mut unknown = Vec::new();
        // Keep the owned keys alive while `overrides` borrows from the schema's names.
        for (key, value) in stored {
            let key = key.as_ref();
            let value: &Value = value.borrow();
            let Some(def) = schema.key(key) else {
                unknown.push((Box::from(key), value.clone()));
                continue;
            };
            if value.is_null() {
                continue;
            }
            match def.validate(value) {
                Ok(v) => {
                    overrides.insert(def.name.as_str(), v);
                }
                Err(e) => rejected.push(Rejected {
                    key: def.name.clone(),
                    rule: e.rule,
                    reason: e.message,
                    value: value.clone(),
                }),
            }
        }

        let namespace: Arc<str> = Arc::from(schema.namespace.as_str());
        let mut entries = Vec::with_capacity(schema.len());
        let mut index = HashMap::with_capacity(schema.len());
        let mut values = Vec::with_capacity(64 * schema.len() + 2);
        values.push(b'{');
        let tail = entry_tail(position, false, source);
        for def in schema.keys() {
            let (value, is_default) = match overrides.remove(def.name.as_str()) {
                Some(v) => (v, false),
                None => (def.default.clone(), true),
            };
            let json = Bytes::from(serde_json::to_vec(&value).unwrap_or_else(|_| b"null".to_vec()));
            let raw = match &value {
                Value::String(s) => Bytes::from(s.clone()),
                _ => json.clone(),
            };
            if values.len() > 1 {
                values.push(b',');
            }
            push_json_str(&mut values, &def.name);
            values.push(b':');
            values.extend_from_slice(&json);
            let body = key_body(&def.name, &json, &tail);
            index.insert(Box::from(def.name.as_str()), entries.len());
            entries.push(Entry {
                key: Box::from(def.name.as_str()),
                value,
                json,
                raw,
                body,
                is_default,
                secret: def.secret,
                ty: def.ty,
            });
        }
        values.push(b'}');
        let values_json = Bytes::from(values);
        let document = document_body(&namespace, position, false, source, &values_json);
        let tag = position.tag();
        Snapshot {
            // A repair at the same version (anti-entropy bumps `generation`) changes the content,
            // so it must change the ETag too.
            etag: header(&if position.generation == 0 {
                format!("\"{tag}\"")
            } else {
                format!("\"{tag}.{}\"", position.generation)
            }),
            version_header: HeaderValue::from(position.version),
            epoch_header: HeaderValue::from(position.epoch),
            namespace,
            position,
            source,
            entries,
            index,
            document,
            document_stale: OnceLock::new(),
            values_json,
            rejected,
            unknown_keys: unknown.len(),
            unknown,
            schema_hash: Arc::from(schema.hash.as_str()),
            delta: OnceLock::new(),
            built_at: SystemTime::now(),
        }
    }

    /// Schema defaults only: what a sidecar serves before it has loaded anything.
    pub fn defaults(schema: &Schema) -> Snapshot {
        Snapshot::build(
            schema,
            Position::default(),
            Source::Defaults,
            std::iter::empty::<(String, Value)>(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.index.get(key).map(|&i| &self.entries[i])
    }

    /// Entries in schema display order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The stored values this snapshot was built from, before schema defaults: every key that
    /// is not at its default (its canonical value), and the values the schema rejected or does
    /// not know, as they came. Building a snapshot from them gives the same snapshot, so the
    /// sync loop applies log changes to them and the disk snapshot saves them, without keeping a
    /// copy of its own.
    pub fn stored(&self) -> impl Iterator<Item = (&str, &Value)> + '_ {
        let accepted = self
            .entries
            .iter()
            .filter(|e| !e.is_default)
            .map(|e| (&*e.key, &e.value));
        let rejected = self.rejected.iter().map(|r| (r.key.as_str(), &r.value));
        let unknown = self.unknown.iter().map(|(k, v)| (&**k, v));
        accepted.chain(rejected).chain(unknown)
    }

    /// The `GET /v1/configs` body.
    pub fn document(&self, stale: bool) -> Bytes {
        if !stale {
            return self.document.clone();
        }
        self.document_stale
            .get_or_init(|| {
                document_body(
                    &self.namespace,
                    self.position,
                    true,
                    self.source,
                    &self.values_json,
                )
            })
            .clone()
    }

    /// The `GET /v1/configs/{key}` body.
    pub fn key_body(&self, entry: &Entry, stale: bool) -> Bytes {
        if !stale {
            return entry.body.clone();
        }
        key_body(
            &entry.key,
            &entry.json,
            &entry_tail(self.position, true, self.source),
        )
    }

    /// `{"KEY": value, …}` in display order.
    pub fn values_json(&self) -> Bytes {
        self.values_json.clone()
    }

    /// The same object with secrets masked (status page).
    pub fn values_masked(&self) -> Value {
        Value::Object(
            self.entries
                .iter()
                .map(|e| (e.key.to_string(), mask_if(e.secret, &e.value)))
                .collect(),
        )
    }

    /// The whole state with secrets masked, for the status page and `?mask=secrets` streams.
    pub fn masked_document(&self, stale: bool) -> Value {
        serde_json::json!({
            "namespace": &*self.namespace,
            "epoch": self.position.epoch,
            "version": self.position.version,
            "stale": stale,
            "source": self.source,
            "values": self.values_masked(),
            "secrets": self.entries.iter().filter(|e| e.secret).map(|e| &*e.key).collect::<Vec<_>>(),
        })
    }

    /// `changes` as a JSON object, secrets masked when `mask`.
    pub fn changes_json(
        &self,
        changes: &[(Box<str>, Value)],
        mask: bool,
    ) -> serde_json::Map<String, Value> {
        changes
            .iter()
            .map(|(k, v)| {
                let secret = mask && self.get(k).is_some_and(|e| e.secret);
                (k.to_string(), mask_if(secret, v))
            })
            .collect()
    }

    /// What changed since the snapshot it replaced (set when published).
    pub fn delta(&self) -> Option<&Delta> {
        self.delta.get()
    }

    /// Keys whose value differs between `older` and `self`, with their new value.
    pub fn diff(&self, older: &Snapshot) -> Vec<(Box<str>, Value)> {
        self.entries
            .iter()
            .filter(|e| older.get(&e.key).is_none_or(|o| o.json != e.json))
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect()
    }
}

/// What a secret's value looks like on the status page and masked streams.
fn mask_if(secret: bool, value: &Value) -> Value {
    if secret {
        Value::String("••••••".into())
    } else {
        value.clone()
    }
}

fn header(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("\"0-0\""))
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Key and namespace names are restricted to ASCII without quotes, but stay correct anyway.
    if let Ok(v) = serde_json::to_vec(s) {
        out.extend_from_slice(&v);
    }
}

/// `,"version":5,"stale":false,"source":"local"}` — the end of every per-key body.
fn entry_tail(position: Position, stale: bool, source: Source) -> Vec<u8> {
    format!(
        ",\"version\":{},\"epoch\":{},\"stale\":{},\"source\":\"{}\"}}",
        position.version,
        position.epoch,
        stale,
        source.as_str()
    )
    .into_bytes()
}

fn key_body(key: &str, json: &[u8], tail: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(16 + key.len() + json.len() + tail.len());
    out.extend_from_slice(b"{\"key\":");
    push_json_str(&mut out, key);
    out.extend_from_slice(b",\"value\":");
    out.extend_from_slice(json);
    out.extend_from_slice(tail);
    Bytes::from(out)
}

fn document_body(
    namespace: &str,
    position: Position,
    stale: bool,
    source: Source,
    values: &[u8],
) -> Bytes {
    let mut out = Vec::with_capacity(values.len() + 128);
    out.extend_from_slice(b"{\"namespace\":");
    push_json_str(&mut out, namespace);
    out.extend_from_slice(
        format!(
            ",\"epoch\":{},\"version\":{},\"stale\":{},\"source\":\"{}\",\"values\":",
            position.epoch,
            position.version,
            stale,
            source.as_str()
        )
        .as_bytes(),
    );
    out.extend_from_slice(values);
    out.push(b'}');
    Bytes::from(out)
}

/// One entry of the recent-changes list on the status page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecentChange {
    pub epoch: u64,
    pub version: u64,
    pub at: String,
    /// Changed keys with their new value (secrets masked).
    pub changes: serde_json::Map<String, Value>,
}

const RECENT_CHANGES: usize = 50;

/// Why [`SnapshotStore::publish`] refused a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("snapshot {offered:?} is older than the current {current:?}")]
    Older {
        current: Position,
        offered: Position,
    },
    #[error("snapshot is for namespace {offered}, the store serves {current}")]
    WrongNamespace { current: String, offered: String },
}

/// Holds the current snapshot and everything readers need to know about it.
pub struct SnapshotStore {
    current: ArcSwap<Snapshot>,
    changed: watch::Sender<Position>,
    freshness: Freshness,
    ready: AtomicBool,
    /// With `--require-snapshot`, schema defaults do not make the store ready.
    require_snapshot: bool,
    recent: parking_lot::Mutex<VecDeque<RecentChange>>,
    /// Serializes publishers so the compare-then-swap is atomic.
    publish_lock: parking_lot::Mutex<()>,
}

/// How long since the served state was last confirmed in sync.
struct Freshness {
    origin: Instant,
    /// Milliseconds since `origin` at the last confirmation; `u64::MAX` = never.
    confirmed_ms: AtomicU64,
    /// Beyond this age (milliseconds) the state is stale: the staleness bound `B`
    /// (`sync::freshness`), which the sync loop may refine; `u64::MAX` = never stale (`dev`).
    stale_after_ms: AtomicU64,
    /// The subscriber's liveness check failed, or the relay stopped moving.
    cut_off: AtomicBool,
}

impl SnapshotStore {
    /// A store serving `initial`. `stale_after: None` means the state is authoritative (`dev`).
    pub fn new(initial: Snapshot, stale_after: Option<Duration>, require_snapshot: bool) -> Self {
        let position = initial.position;
        let store = SnapshotStore {
            current: ArcSwap::from_pointee(initial),
            changed: watch::Sender::new(position),
            freshness: Freshness {
                origin: Instant::now(),
                confirmed_ms: AtomicU64::new(u64::MAX),
                stale_after_ms: AtomicU64::new(
                    stale_after
                        .map_or(u64::MAX, |d| d.as_millis().min(u64::MAX as u128 - 1) as u64),
                ),
                cut_off: AtomicBool::new(false),
            },
            ready: AtomicBool::new(false),
            require_snapshot,
            recent: parking_lot::Mutex::new(VecDeque::with_capacity(RECENT_CHANGES)),
            publish_lock: parking_lot::Mutex::new(()),
        };
        store.update_readiness(&store.current.load());
        store
    }

    /// The current snapshot: one atomic load, no lock.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// A borrow of the current snapshot for the duration of a read (cheaper than `load`).
    pub fn guard(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Swaps `next` in if it is newer than the current snapshot (or the same position from a
    /// better source). Returns whether it was swapped. Wakes every waiter.
    pub fn publish(&self, next: Snapshot) -> Result<bool, PublishError> {
        self.publish_shared(Arc::new(next))
    }

    /// [`SnapshotStore::publish`] for a snapshot the caller keeps a handle to (the sync loop
    /// keeps the last snapshot it built).
    pub fn publish_shared(&self, next: Arc<Snapshot>) -> Result<bool, PublishError> {
        let _serial = self.publish_lock.lock();
        let current = self.current.load_full();
        if *current.namespace != *next.namespace {
            return Err(PublishError::WrongNamespace {
                current: current.namespace.to_string(),
                offered: next.namespace.to_string(),
            });
        }
        let older = next.position.epoch < current.position.epoch
            || (next.position.epoch == current.position.epoch && next.position < current.position);
        if older && current.source != Source::Defaults {
            return Err(PublishError::Older {
                current: current.position,
                offered: next.position,
            });
        }
        if next.position == current.position && next.source == current.source {
            return Ok(false);
        }
        let changes = next.diff(&current);
        if !changes.is_empty() && next.position != current.position {
            self.remember(&next, &changes);
        }
        let _ = next.delta.set(Delta {
            from: current.position,
            changes,
        });
        let position = next.position;
        self.current.store(next.clone());
        self.update_readiness(&next);
        self.changed.send_replace(position);
        Ok(true)
    }

    fn remember(&self, next: &Snapshot, changes: &[(Box<str>, Value)]) {
        let masked = next.changes_json(changes, true);
        let mut recent = self.recent.lock();
        if recent.len() == RECENT_CHANGES {
            recent.pop_back();
        }
        recent.push_front(RecentChange {
            epoch: next.position.epoch,
            version: next.position.version,
            at: chrono::DateTime::<chrono::Utc>::from(next.built_at)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            changes: masked,
        });
    }

    /// The most recent changes this process has seen, newest first (secrets masked).
    pub fn recent_changes(&self) -> Vec<RecentChange> {
        let recent = self.recent.lock();
        recent.iter().cloned().collect()
    }

    /// A receiver woken on every swap (long-poll, SSE).
    pub fn subscribe(&self) -> watch::Receiver<Position> {
        self.changed.subscribe()
    }

    fn update_readiness(&self, snapshot: &Snapshot) {
        let usable = !(self.require_snapshot && snapshot.source == Source::Defaults);
        if usable {
            self.ready.store(true, Ordering::Release);
        }
    }

    /// Readiness flips once, after the first usable snapshot, and stays.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Records that the served state was just confirmed in sync with its source.
    pub fn confirm(&self) {
        self.confirm_at(Instant::now());
    }

    /// Records that the served state was provably in sync with the ledger at `at` (the relay's
    /// heartbeat, carried to our clock). The age never moves back to an earlier proof.
    pub fn confirm_at(&self, at: Instant) {
        let ms = at
            .checked_duration_since(self.freshness.origin)
            .map_or(0, |d| d.as_millis() as u64);
        let prev = self.freshness.confirmed_ms.load(Ordering::Acquire);
        if prev == u64::MAX || ms > prev {
            self.freshness.confirmed_ms.store(ms, Ordering::Release);
        }
        self.freshness.cut_off.store(false, Ordering::Release);
    }

    /// Sets the age beyond which reads are stale (the sync loop: the staleness bound `B`).
    pub fn set_stale_after(&self, limit: Duration) {
        if self.freshness.stale_after_ms.load(Ordering::Acquire) != u64::MAX {
            let ms = limit.as_millis().min(u64::MAX as u128 - 1) as u64;
            self.freshness.stale_after_ms.store(ms, Ordering::Release);
        }
    }

    /// The age beyond which reads are stale; `None` = never (`dev`).
    pub fn stale_after(&self) -> Option<Duration> {
        match self.freshness.stale_after_ms.load(Ordering::Acquire) {
            u64::MAX => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Marks the state as cut off (liveness failed, relay stalled) until the next `confirm`.
    pub fn mark_cut_off(&self) {
        self.freshness.cut_off.store(true, Ordering::Release);
    }

    /// Seconds since the state was last confirmed (`None` = never confirmed).
    pub fn age(&self) -> Option<Duration> {
        if self.stale_after().is_none() {
            return Some(Duration::ZERO);
        }
        let confirmed = self.freshness.confirmed_ms.load(Ordering::Acquire);
        if confirmed == u64::MAX {
            return None;
        }
        let now = self.freshness.origin.elapsed().as_millis() as u64;
        Some(Duration::from_millis(now.saturating_sub(confirmed)))
    }

    /// Whether readers should be told the state may be out of date.
    pub fn is_stale(&self) -> bool {
        let Some(limit) = self.stale_after() else {
            return false;
        };
        if self.freshness.cut_off.load(Ordering::Acquire) {
            return true;
        }
        match self.age() {
            Some(age) => age > limit,
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::{Schema, ValueType};

    fn schema() -> Schema {
        Schema::from_keys(
            "demo",
            &[
                ("SITE_NAME", ValueType::String, json!("Config Manager")),
                ("ITEMS_PER_PAGE", ValueType::Int, json!(5)),
                ("MAINTENANCE_MODE", ValueType::Bool, json!(false)),
            ],
        )
    }

    fn build(version: u64, stored: Vec<(&str, Value)>) -> Snapshot {
        Snapshot::build(&schema(), Position::new(1, version), Source::Local, stored)
    }

    #[test]
    fn a_snapshot_pre_encodes_every_body() {
        let s = build(3, vec![("ITEMS_PER_PAGE", json!(7))]);
        let doc: Value = serde_json::from_slice(&s.document(false)).expect("json");
        assert_eq!(
            doc,
            json!({"namespace":"demo","epoch":1,"version":3,"stale":false,"source":"local",
                   "values":{"SITE_NAME":"Config Manager","ITEMS_PER_PAGE":7,"MAINTENANCE_MODE":false}})
        );
        let stale: Value = serde_json::from_slice(&s.document(true)).expect("json");
        assert_eq!(stale["stale"], json!(true));
        let e = s.get("SITE_NAME").expect("entry");
        let body: Value = serde_json::from_slice(&s.key_body(e, false)).expect("json");
        assert_eq!(
            body,
            json!({"key":"SITE_NAME","value":"Config Manager","version":3,"epoch":1,"stale":false,"source":"local"})
        );
        assert_eq!(&e.raw[..], b"Config Manager");
        assert_eq!(&s.get("ITEMS_PER_PAGE").expect("entry").raw[..], b"7");
        assert!(e.is_default);
        assert!(!s.get("ITEMS_PER_PAGE").expect("entry").is_default);
        assert_eq!(s.etag, "\"1-3\"");
    }

    #[test]
    fn drifted_values_keep_their_default_and_unknown_keys_are_ignored() {
        let s = build(
            2,
            vec![
                ("ITEMS_PER_PAGE", json!("seven")),
                ("REMOVED_KEY", json!(1)),
                ("SITE_NAME", json!("New")),
            ],
        );
        assert_eq!(s.get("ITEMS_PER_PAGE").expect("entry").value, json!(5));
        assert_eq!(s.rejected.len(), 1);
        assert_eq!(s.rejected[0].key, "ITEMS_PER_PAGE");
        assert_eq!(s.unknown_keys, 1);
        assert_eq!(s.get("SITE_NAME").expect("entry").value, json!("New"));
    }

    #[test]
    fn a_snapshot_rebuilds_from_its_stored_values() {
        let s = build(
            2,
            vec![
                ("ITEMS_PER_PAGE", json!("seven")),
                ("REMOVED_KEY", json!({"x": 1})),
                ("SITE_NAME", json!("New")),
                ("MAINTENANCE_MODE", Value::Null),
            ],
        );
        let mut stored: Vec<(&str, &Value)> = s.stored().collect();
        stored.sort_by_key(|(k, _)| *k);
        assert_eq!(
            stored,
            vec![
                ("ITEMS_PER_PAGE", &json!("seven")),
                ("REMOVED_KEY", &json!({"x": 1})),
                ("SITE_NAME", &json!("New")),
            ]
        );
        let again = Snapshot::build(&schema(), s.position, Source::Local, s.stored());
        assert_eq!(again.document(false), s.document(false));
        assert_eq!(again.rejected, s.rejected);
        assert_eq!(again.unknown_keys, 1);
        // The rejected value is kept but never shown.
        let shown = serde_json::to_value(&s.rejected).expect("json");
        assert!(!shown.to_string().contains("seven"), "{shown}");
    }

    #[test]
    fn the_store_never_goes_back_in_version_or_epoch() {
        let store = SnapshotStore::new(build(5, vec![]), None, false);
        assert_eq!(
            store.publish(build(4, vec![])),
            Err(PublishError::Older {
                current: Position::new(1, 5),
                offered: Position::new(1, 4)
            })
        );
        assert_eq!(store.publish(build(5, vec![])), Ok(false));
        assert_eq!(store.publish(build(6, vec![])), Ok(true));
        let older_epoch = Snapshot::build(
            &schema(),
            Position::new(0, 100),
            Source::Local,
            Vec::<(&str, Value)>::new(),
        );
        assert!(store.publish(older_epoch).is_err());
        let newer_epoch = Snapshot::build(
            &schema(),
            Position::new(2, 1),
            Source::Local,
            Vec::<(&str, Value)>::new(),
        );
        assert_eq!(store.publish(newer_epoch), Ok(true));
        assert_eq!(store.load().position, Position::new(2, 1));
    }

    #[test]
    fn publishing_records_the_delta_and_wakes_waiters() {
        let store = SnapshotStore::new(build(1, vec![]), None, false);
        let mut rx = store.subscribe();
        store
            .publish(build(2, vec![("SITE_NAME", json!("X"))]))
            .expect("publish");
        assert!(rx.has_changed().expect("open"));
        assert_eq!(rx.borrow_and_update().version, 2);
        let s = store.load();
        let delta = s.delta().expect("delta");
        assert_eq!(delta.from, Position::new(1, 1));
        assert_eq!(delta.changes, vec![(Box::from("SITE_NAME"), json!("X"))]);
        assert_eq!(store.recent_changes()[0].version, 2);
    }

    #[test]
    fn readiness_waits_for_a_real_snapshot_when_required() {
        let store = SnapshotStore::new(
            Snapshot::defaults(&schema()),
            Some(Duration::from_secs(1)),
            true,
        );
        assert!(!store.is_ready());
        assert!(store.is_stale(), "never confirmed means stale");
        let disk = Snapshot::build(
            &schema(),
            Position::new(1, 4),
            Source::Disk,
            Vec::<(&str, Value)>::new(),
        );
        store.publish(disk).expect("publish");
        assert!(store.is_ready());
        store.confirm();
        assert!(!store.is_stale());
        store.mark_cut_off();
        assert!(store.is_stale());
    }

    #[test]
    fn defaults_are_ready_unless_a_snapshot_is_required() {
        let store = SnapshotStore::new(
            Snapshot::defaults(&schema()),
            Some(Duration::from_secs(1)),
            false,
        );
        assert!(store.is_ready());
        assert_eq!(store.load().source, Source::Defaults);
    }
}
