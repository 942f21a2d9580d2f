//! The immutable snapshot every sidecar read is served from, and the store that swaps it.
//!
//! A [`Snapshot`] holds every value of one namespace at one `(epoch, version)`, already encoded
//! as JSON (`Bytes`), so a read is `load()` + a hash lookup + a `Bytes::clone()`. Snapshots are
//! never mutated. A change makes a new one from the one before ([`Snapshot::apply`]) in
//! O(k log n) for k changed keys of n: the entries live in a persistent vector (`imbl`), in
//! schema display order, so the new snapshot copies only the paths to the changed entries and
//! shares everything else; the key → position index depends only on the schema and is shared
//! by every snapshot built from it. What depends on the snapshot's position — each key's
//! response body, the whole `/v1/configs` document — is built lazily, once per snapshot and
//! only when a reader asks for it (`bodies`), never on the apply path. Each entry carries the
//! version of the changeset that last set its key (OFREP's per-flag `metadata.version`).
//! [`SnapshotStore::publish`] swaps a snapshot in with `arc-swap`, after checking that it is
//! not older than the current one (a version never goes back within an epoch, and an epoch
//! never goes back at all).
//!
//! The store also owns what readers wait on (a `watch` channel that wakes long-polls and SSE
//! streams), readiness (flips once), and freshness (how long since the state was last confirmed
//! in sync: `X-Config-Age`, `X-Config-Stale`). The only writers are the sync loop (sidecar) and
//! the local publisher (`dev`).

mod bodies;

use std::borrow::{Borrow, Cow};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::HeaderValue;
use serde_json::Value;
use tokio::sync::watch;

use crate::schema::{KeyDef, Schema, ValueType};
use bodies::{document_body, entry_tail, key_body, push_json_str, raw_body, Document, KeyBodies};

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
    /// The version that stored it.
    #[serde(skip)]
    pub version: u64,
}

/// One key of a snapshot, pre-encoded: its value as JSON only (48 bytes, held in the persistent
/// vector's leaf chunk, plus the JSON; a chunk of 64 is shared by every snapshot until one of
/// its keys changes); [`Entry::value`] decodes it when something needs the `Value` (OFREP, the
/// status page, the content hash), which the read path never does.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The schema's own name (an `Arc` clone of [`KeyDef::name`]).
    pub key: Arc<str>,
    /// The value as JSON, exact size.
    json: Box<[u8]>,
    /// The version of the changeset that last set this key (to a value or back to its
    /// default); 0 when no changeset is known to have touched it. See [`Snapshot::apply`] and
    /// `docs/ARCHITECTURE.md` for where each source of snapshots takes it from.
    pub version: u64,
    /// Its position in schema display order: its index in the snapshot and its body's slot.
    slot: u32,
    pub ty: ValueType,
    /// No stored value: serving the schema default.
    pub is_default: bool,
    pub secret: bool,
}

impl Entry {
    /// The value as JSON.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// The value, decoded from its JSON (which was encoded from a validated `Value`, so this
    /// gives that `Value` back: `serde_json` with `float_roundtrip` reads back every float
    /// it wrote).
    pub fn value(&self) -> Value {
        match serde_json::from_slice(&self.json) {
            Ok(v) => v,
            Err(e) => {
                // Never: `json` is what `serde_json` wrote for a `Value`. Were it to happen, say
                // so loudly rather than serve a silent `null` as if it were the value.
                debug_assert!(false, "{}: its JSON does not decode: {e}", self.key);
                tracing::error!(key = %self.key, error = %e, "a snapshot entry's JSON does not decode; shown as null");
                Value::Null
            }
        }
    }
}

/// The changes between a snapshot and the one before it: which keys changed, by position (4
/// bytes each; their new values are the snapshot's own entries, read by
/// [`Snapshot::delta_changes`] when a stream asks, so a 100,000-key first load keeps 400 KB
/// here, not a second copy of every value).
#[derive(Debug, Clone)]
pub struct Delta {
    pub from: Position,
    /// Positions of the keys whose value changed, in display order.
    slots: Vec<u32>,
}

impl Delta {
    /// How many keys changed.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// Positions of the keys whose value changed, in display order.
type Changes = Vec<u32>;

/// Key → position in display order: the schema's own ([`Schema::index`]), shared by every
/// snapshot built from it.
use crate::schema::KeyIndex;

/// Identifies a snapshot, so that the store can tell whether one was applied on top of the
/// snapshot it replaces (and then takes its delta instead of diffing).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Everything served at one position, immutable.
pub struct Snapshot {
    pub namespace: Arc<str>,
    pub position: Position,
    pub source: Source,
    id: u64,
    /// Every key of the schema, in display order (persistent: shared with the snapshots
    /// before and after this one).
    entries: imbl::Vector<Entry>,
    index: Arc<KeyIndex>,
    /// The fresh `GET /v1/configs/{key}` bodies, built on first read.
    bodies: KeyBodies,
    /// The `GET /v1/configs/{key}?format=raw` bodies, built on first read.
    raw_bodies: KeyBodies,
    /// The `GET /v1/configs` body when fresh, built on first read (kept up to 1 MiB).
    document: Document,
    /// The same with `"stale":true`.
    document_stale: Document,
    pub etag: HeaderValue,
    pub version_header: HeaderValue,
    pub epoch_header: HeaderValue,
    /// Stored values the schema rejected, by key.
    rejected: imbl::OrdMap<Box<str>, Rejected>,
    /// Stored keys this schema does not know (ignored), with their value and version (kept
    /// for [`Snapshot::stored`]).
    unknown: imbl::OrdMap<Box<str>, (Value, u64)>,
    pub schema_hash: Arc<str>,
    /// What [`Snapshot::apply`] changed: the id of the snapshot it started from, and the keys
    /// whose value changed.
    applied: Option<(u64, Changes)>,
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

/// One key's entry with `value` (already validated).
fn entry(def: &KeyDef, slot: usize, value: &Value, version: u64) -> Entry {
    // An exact-size copy: `to_vec` leaves a 128-byte buffer, and shrinking it in place
    // (`into_boxed_slice`) would leave its freed tail between two live entries, one hole per
    // key; the copy's scratch buffer is freed whole and reused by the next key.
    let json = match serde_json::to_vec(value) {
        Ok(v) => Box::from(v.as_slice()),
        Err(_) => Box::from(&b"null"[..]),
    };
    entry_of(def, slot, json, false, version)
}

/// One key's entry at its default: the schema's JSON of it, copied.
fn default_entry(def: &KeyDef, slot: usize, version: u64) -> Entry {
    entry_of(
        def,
        slot,
        Box::from(def.default.json().as_bytes()),
        true,
        version,
    )
}

fn entry_of(def: &KeyDef, slot: usize, json: Box<[u8]>, is_default: bool, version: u64) -> Entry {
    Entry {
        key: def.name.clone(),
        json,
        is_default,
        secret: def.secret,
        ty: def.ty,
        version,
        // A schema holds at most `schema::MAX_KEYS` keys, far below `u32::MAX`.
        slot: u32::try_from(slot).unwrap_or(u32::MAX),
    }
}

/// What a stored value (`None` or JSON null: none, the default) becomes under `def`: its
/// entry, and the rejection when the schema refuses the value (the key then serves its
/// default).
fn resolve(
    def: &KeyDef,
    slot: usize,
    stored: Option<&Value>,
    version: u64,
) -> (Entry, Option<Rejected>) {
    match stored {
        Some(value) if !value.is_null() => match def.validate(value) {
            Ok(v) => (entry(def, slot, &v, version), None),
            Err(e) => (
                default_entry(def, slot, version),
                Some(Rejected {
                    key: def.name.to_string(),
                    rule: e.rule,
                    reason: e.message,
                    value: value.clone(),
                    version,
                }),
            ),
        },
        _ => (default_entry(def, slot, version), None),
    }
}

fn header(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("\"0-0\""))
}

/// The parts a snapshot is made of; [`Parts::assemble`] adds what derives from them.
struct Parts {
    namespace: Arc<str>,
    position: Position,
    source: Source,
    entries: imbl::Vector<Entry>,
    index: Arc<KeyIndex>,
    rejected: imbl::OrdMap<Box<str>, Rejected>,
    unknown: imbl::OrdMap<Box<str>, (Value, u64)>,
    schema_hash: Arc<str>,
    applied: Option<(u64, Changes)>,
}

impl Parts {
    /// O(1): the headers, and empty lazy bodies.
    fn assemble(self) -> Snapshot {
        let position = self.position;
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
            namespace: self.namespace,
            position,
            source: self.source,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            bodies: KeyBodies::new(self.entries.len()),
            raw_bodies: KeyBodies::new(self.entries.len()),
            entries: self.entries,
            index: self.index,
            document: Document::default(),
            document_stale: Document::default(),
            rejected: self.rejected,
            unknown: self.unknown,
            schema_hash: self.schema_hash,
            applied: self.applied,
            delta: OnceLock::new(),
            built_at: SystemTime::now(),
        }
    }
}

impl Snapshot {
    /// Builds a snapshot: schema defaults overlaid with `stored` values, each taken as set at
    /// `position`'s version (use [`Snapshot::build_versioned`] when the keys' own versions
    /// are known). A stored value the schema rejects keeps the default and is reported in
    /// [`Snapshot::rejected`]; an unknown key is ignored. Both are normal during a rollout
    /// (schema drift) and never stop the build.
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
        let version = position.version;
        Snapshot::build_versioned(
            schema,
            position,
            source,
            stored.into_iter().map(|(k, v)| (k, Some(v), version)),
        )
    }

    /// [`Snapshot::build`] from `(key, value, version)`: the version of the changeset that
    /// last set the key; a `None` (or JSON null) value is a key back at its default since that
    /// version. Keys not given serve their default at version 0. O(n).
    pub fn build_versioned<I, K, V>(
        schema: &Schema,
        position: Position,
        source: Source,
        stored: I,
    ) -> Snapshot
    where
        I: IntoIterator<Item = (K, Option<V>, u64)>,
        K: AsRef<str>,
        V: Borrow<Value>,
    {
        // By slot: the schema's index already hashed the key; no second hash map per build.
        let mut given: Vec<Option<(Option<V>, u64)>> = Vec::new();
        given.resize_with(schema.len(), || None);
        let mut unknown = imbl::OrdMap::new();
        for (key, value, version) in stored {
            let key = key.as_ref();
            match schema.position(key) {
                Some(slot) => {
                    if let Some(g) = given.get_mut(slot) {
                        *g = Some((value, version));
                    }
                }
                None => {
                    if let Some(v) = value
                        .as_ref()
                        .map(<V as Borrow<Value>>::borrow)
                        .filter(|v| !v.is_null())
                    {
                        unknown.insert(Box::from(key), (v.clone(), version));
                    }
                }
            }
        }
        let mut rejected = imbl::OrdMap::new();
        // Straight into the persistent vector's chunks: no flat copy of every entry first.
        let entries = schema
            .keys()
            .iter()
            .enumerate()
            .map(|(slot, def)| {
                let (value, version) = given
                    .get_mut(slot)
                    .and_then(Option::take)
                    .unwrap_or((None, 0));
                let stored = value.as_ref().map(<V as Borrow<Value>>::borrow);
                let (e, r) = resolve(def, slot, stored, version);
                if let Some(r) = r {
                    rejected.insert(Box::from(&*def.name), r);
                }
                e
            })
            .collect();
        Parts {
            namespace: Arc::from(schema.namespace.as_str()),
            position,
            source,
            entries,
            index: schema.index().clone(),
            rejected,
            unknown,
            schema_hash: Arc::from(schema.hash.as_str()),
            applied: None,
        }
        .assemble()
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

    /// A new snapshot at `position`: this one with `changes` applied — `(key, value,
    /// version)`, where a `None` (or JSON null) value sets the key back to its default and
    /// `version` is the changeset that changed it. O(k log n) for k changes: only the changed
    /// entries are validated and encoded, the rest is shared with `self`. The keys whose
    /// value changed become the new snapshot's [`Delta`] when it is published over `self`.
    /// With another schema than the one `self` was built with, the snapshot is rebuilt whole.
    pub fn apply<'a, I>(
        &self,
        schema: &Schema,
        position: Position,
        source: Source,
        changes: I,
    ) -> Snapshot
    where
        I: IntoIterator<Item = (&'a str, Option<&'a Value>, u64)>,
    {
        if *self.schema_hash != *schema.hash || self.entries.len() != schema.len() {
            let mut stored: BTreeMap<&str, (Option<Cow<'_, Value>>, u64)> = self
                .stored_versioned()
                .map(|(k, v, ver)| (k, (v, ver)))
                .collect();
            for (key, value, version) in changes {
                stored.insert(key, (value.map(Cow::Borrowed), version));
            }
            return Snapshot::build_versioned(
                schema,
                position,
                source,
                stored.into_iter().map(|(k, (v, ver))| (k, v, ver)),
            );
        }
        let mut entries = self.entries.clone();
        let mut rejected = self.rejected.clone();
        let mut unknown = self.unknown.clone();
        let mut touched = BTreeSet::new();
        for (key, value, version) in changes {
            let value = value.filter(|v| !v.is_null());
            let known = schema
                .position(key)
                .and_then(|slot| Some((slot, schema.keys().get(slot)?)));
            let Some((slot, def)) = known else {
                match value {
                    Some(v) => unknown.insert(Box::from(key), (v.clone(), version)),
                    None => unknown.remove(key),
                };
                continue;
            };
            rejected.remove(key);
            let (e, r) = resolve(def, slot, value, version);
            if let Some(r) = r {
                rejected.insert(Box::from(key), r);
            }
            entries.set(slot, e);
            touched.insert(slot);
        }
        let changed = touched
            .into_iter()
            .filter(|&slot| {
                let (old, new) = (self.entries.get(slot), entries.get(slot));
                old.zip(new).is_some_and(|(old, new)| old.json != new.json)
            })
            .map(|slot| slot as u32)
            .collect();
        Parts {
            namespace: self.namespace.clone(),
            position,
            source,
            entries,
            index: self.index.clone(),
            rejected,
            unknown,
            schema_hash: self.schema_hash.clone(),
            applied: Some((self.id, changed)),
        }
        .assemble()
    }

    /// The same values at the same position from another source (a disk snapshot confirmed by
    /// Redis). O(1).
    pub fn with_source(&self, source: Source) -> Snapshot {
        Parts {
            namespace: self.namespace.clone(),
            position: self.position,
            source,
            entries: self.entries.clone(),
            index: self.index.clone(),
            rejected: self.rejected.clone(),
            unknown: self.unknown.clone(),
            schema_hash: self.schema_hash.clone(),
            applied: Some((self.id, Vec::new())),
        }
        .assemble()
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.index
            .find(key, |slot| {
                self.entries.get(slot).filter(|e| *e.key == *key)
            })
            .map(|(_, e)| e)
    }

    /// Entries in schema display order.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &Entry> + '_ {
        self.entries.iter()
    }

    /// How many keys the snapshot serves (the schema's).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Stored values the schema rejected (each key serves its default), by key.
    pub fn rejected(&self) -> impl ExactSizeIterator<Item = &Rejected> + '_ {
        self.rejected.values()
    }

    /// How many stored keys this schema does not know (ignored).
    pub fn unknown_keys(&self) -> usize {
        self.unknown.len()
    }

    /// The stored values this snapshot was built from, before schema defaults: every key that
    /// is not at its default (its canonical value, decoded from its JSON), and the values the
    /// schema rejected or does not know, as they came. Building a snapshot from them gives the
    /// same snapshot, so the content hash and the disk snapshot are taken from them, without a
    /// copy of their own.
    pub fn stored(&self) -> impl Iterator<Item = (&str, Cow<'_, Value>)> + '_ {
        let accepted = self
            .entries
            .iter()
            .filter(|e| !e.is_default)
            .map(|e| (&*e.key, Cow::Owned(e.value())));
        let rejected = self
            .rejected
            .values()
            .map(|r| (r.key.as_str(), Cow::Borrowed(&r.value)));
        let unknown = self
            .unknown
            .iter()
            .map(|(k, (v, _))| (&**k, Cow::Borrowed(v)));
        accepted.chain(rejected).chain(unknown)
    }

    /// [`Snapshot::stored`] with each key's version, and also the keys back at their default
    /// whose version is known (`None` value): what [`Snapshot::build_versioned`] takes to
    /// rebuild this snapshot, versions included (the disk snapshot).
    pub fn stored_versioned(
        &self,
    ) -> impl Iterator<Item = (&str, Option<Cow<'_, Value>>, u64)> + '_ {
        let entries = self
            .entries
            .iter()
            .filter(|e| !e.is_default || (e.version != 0 && !self.rejected.contains_key(&*e.key)))
            .map(|e| {
                let value = (!e.is_default).then(|| Cow::Owned(e.value()));
                (&*e.key, value, e.version)
            });
        let rejected = self
            .rejected
            .values()
            .map(|r| (r.key.as_str(), Some(Cow::Borrowed(&r.value)), r.version));
        let unknown = self
            .unknown
            .iter()
            .map(|(k, (v, version))| (&**k, Some(Cow::Borrowed(v)), *version));
        entries.chain(rejected).chain(unknown)
    }

    /// The stored value of one key as [`Snapshot::stored`] yields it (`None`: at its default,
    /// nothing stored). O(log n).
    pub fn stored_value(&self, key: &str) -> Option<Cow<'_, Value>> {
        if let Some(e) = self.get(key).filter(|e| !e.is_default) {
            return Some(Cow::Owned(e.value()));
        }
        if let Some(r) = self.rejected.get(key) {
            return Some(Cow::Borrowed(&r.value));
        }
        self.unknown.get(key).map(|(v, _)| Cow::Borrowed(v))
    }

    /// The `GET /v1/configs` body, built on first ask: once per snapshot and staleness up to
    /// 1 MiB; a larger one is shared by the responses in flight and built again after them
    /// (`bodies::Document`).
    pub fn document(&self, stale: bool) -> Bytes {
        let cell = if stale {
            &self.document_stale
        } else {
            &self.document
        };
        cell.get_or_build(|| {
            document_body(
                &self.namespace,
                self.position,
                stale,
                self.source,
                self.values_len(),
                |out| self.push_values(out),
            )
        })
    }

    /// The `GET /v1/configs/{key}` body of `entry`, one of this snapshot's (from
    /// [`Snapshot::get`]). The fresh body is built on its first read and kept.
    pub fn key_body(&self, entry: &Entry, stale: bool) -> Bytes {
        if stale {
            return key_body(
                &entry.key,
                &entry.json,
                &entry_tail(self.position, true, self.source),
            );
        }
        debug_assert!(
            self.holds(entry),
            "key_body of an entry of another snapshot"
        );
        self.bodies.get_or_build(entry.slot as usize, || {
            key_body(
                &entry.key,
                &entry.json,
                &entry_tail(self.position, false, self.source),
            )
        })
    }

    /// The `GET /v1/configs/{key}?format=raw` body of `entry`, one of this snapshot's: a
    /// string bare, anything else as its JSON. Built on its first read and kept, like
    /// [`Snapshot::key_body`], so a read clones `Bytes` and allocates nothing.
    pub fn raw_body(&self, entry: &Entry) -> Bytes {
        debug_assert!(
            self.holds(entry),
            "raw_body of an entry of another snapshot"
        );
        self.raw_bodies
            .get_or_build(entry.slot as usize, || raw_body(&entry.json))
    }

    /// Whether `entry` is this snapshot's own (a body is cached by its slot).
    fn holds(&self, entry: &Entry) -> bool {
        self.entries
            .get(entry.slot as usize)
            .is_some_and(|e| std::ptr::eq(e, entry))
    }

    /// `{"KEY": value, …}` in display order. Not kept: the document holds these bytes already,
    /// and a second copy would double what a `/v1/configs` reader costs at 100k keys.
    pub fn values_json(&self) -> Bytes {
        let mut values = Vec::with_capacity(self.values_len());
        self.push_values(&mut values);
        Bytes::from(values)
    }

    /// The length of [`Snapshot::values_json`] (for exact-size buffers; names need no escapes).
    fn values_len(&self) -> usize {
        let members: usize = self
            .entries
            .iter()
            .map(|e| e.key.len() + e.json.len() + 4)
            .sum();
        members + 2
    }

    fn push_values(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_json_str(out, &e.key);
            out.push(b':');
            out.extend_from_slice(&e.json);
        }
        out.push(b'}');
    }

    /// How many fresh key bodies were built so far (tests and benches: the apply path builds
    /// none).
    pub fn bodies_built(&self) -> usize {
        self.bodies.built()
    }

    /// Whether a `GET /v1/configs` body is held now, fresh or stale (tests and benches).
    pub fn document_held(&self) -> bool {
        self.document.is_held() || self.document_stale.is_held()
    }

    /// The same object with secrets masked (status page).
    pub fn values_masked(&self) -> Value {
        Value::Object(
            self.entries()
                .map(|e| (e.key.to_string(), mask_if(e.secret, &e.value())))
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
            "secrets": self.entries().filter(|e| e.secret).map(|e| &*e.key).collect::<Vec<_>>(),
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

    /// The keys whose value changed since `from`, with their new value, in display order, when
    /// this snapshot was published over the one at `from` (its [`Delta`]); `None` otherwise.
    pub fn delta_changes(&self, from: Position) -> Option<Vec<(Box<str>, Value)>> {
        let delta = self.delta.get().filter(|d| d.from == from)?;
        Some(self.changes_at(&delta.slots))
    }

    /// `(key, value)` of the entries at `slots`.
    fn changes_at(&self, slots: &[u32]) -> Vec<(Box<str>, Value)> {
        slots
            .iter()
            .filter_map(|&slot| self.entries.get(slot as usize))
            .map(|e| (Box::from(&*e.key), e.value()))
            .collect()
    }

    /// Keys whose value differs between `older` and `self`, with their new value, in display
    /// order. O(n); entries shared between the two are skipped without comparing bytes.
    pub fn diff(&self, older: &Snapshot) -> Vec<(Box<str>, Value)> {
        self.changes_at(&self.diff_slots(older))
    }

    /// [`Snapshot::diff`]'s keys, by position.
    fn diff_slots(&self, older: &Snapshot) -> Vec<u32> {
        let same_schema = Arc::ptr_eq(&self.index, &older.index);
        self.entries
            .iter()
            .filter(|e| {
                let old = if same_schema {
                    older.entries.get(e.slot as usize)
                } else {
                    older.get(&e.key)
                };
                old.is_none_or(|o| !std::ptr::eq(o, *e) && o.json != e.json)
            })
            .map(|e| e.slot)
            .collect()
    }

    /// The changes since `older`, by position: the ones [`Snapshot::apply`] recorded when
    /// `self` was applied on top of `older`, else [`Snapshot::diff`]'s.
    fn changes_since(&self, older: &Snapshot) -> Vec<u32> {
        match &self.applied {
            Some((base, changes)) if *base == older.id => changes.clone(),
            _ => self.diff_slots(older),
        }
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

/// One entry of the recent-changes list on the status page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecentChange {
    pub epoch: u64,
    pub version: u64,
    pub at: String,
    /// Changed keys with their new value (secrets masked): the first [`RECENT_KEYS`] in
    /// display order.
    pub changes: serde_json::Map<String, Value>,
    /// How many more keys changed than `changes` lists (a first load of 100,000 keys is one
    /// line on the status page, not a copy of every value held for as long as it is listed).
    #[serde(skip_serializing_if = "is_zero")]
    pub more: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

const RECENT_CHANGES: usize = 50;

/// Keys listed per recent change.
pub const RECENT_KEYS: usize = 20;

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
        let changes = next.changes_since(&current);
        if !changes.is_empty() && next.position != current.position {
            self.remember(&next, &changes);
        }
        let _ = next.delta.set(Delta {
            from: current.position,
            slots: changes,
        });
        let position = next.position;
        self.current.store(next.clone());
        self.update_readiness(&next);
        self.changed.send_replace(position);
        Ok(true)
    }

    fn remember(&self, next: &Snapshot, slots: &[u32]) {
        let listed = &slots[..slots.len().min(RECENT_KEYS)];
        let masked = next.changes_json(&next.changes_at(listed), true);
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
            more: slots.len() - listed.len(),
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
        assert_eq!(&s.raw_body(e)[..], b"Config Manager");
        assert_eq!(
            &s.raw_body(s.get("ITEMS_PER_PAGE").expect("entry"))[..],
            b"7"
        );
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
        assert_eq!(s.get("ITEMS_PER_PAGE").expect("entry").value(), json!(5));
        assert_eq!(s.rejected().len(), 1);
        assert_eq!(s.rejected().next().expect("rejected").key, "ITEMS_PER_PAGE");
        assert_eq!(s.unknown_keys(), 1);
        assert_eq!(s.get("SITE_NAME").expect("entry").value(), json!("New"));
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
        let mut stored: Vec<(&str, Value)> = s.stored().map(|(k, v)| (k, v.into_owned())).collect();
        stored.sort_by_key(|(k, _)| *k);
        assert_eq!(
            stored,
            vec![
                ("ITEMS_PER_PAGE", json!("seven")),
                ("REMOVED_KEY", json!({"x": 1})),
                ("SITE_NAME", json!("New")),
            ]
        );
        let again = Snapshot::build(&schema(), s.position, Source::Local, s.stored());
        assert_eq!(again.document(false), s.document(false));
        let rejected = |s: &Snapshot| s.rejected().cloned().collect::<Vec<_>>();
        assert_eq!(rejected(&again), rejected(&s));
        assert_eq!(again.unknown_keys(), 1);
        // The rejected value is kept but never shown.
        let shown = serde_json::to_value(rejected(&s)).expect("json");
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
        assert_eq!(
            s.delta_changes(delta.from),
            Some(vec![(Box::from("SITE_NAME"), json!("X"))])
        );
        assert_eq!(s.delta_changes(Position::new(1, 0)), None, "not from there");
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

    /// The document, the stored values with versions, the rejected values, the unknown count.
    type Seen = (
        Bytes,
        Vec<(String, Option<Value>, u64)>,
        Vec<Rejected>,
        usize,
    );

    /// Everything a reader or the sync loop can see of a snapshot, to compare two.
    fn seen(s: &Snapshot) -> Seen {
        let mut stored: Vec<(String, Option<Value>, u64)> = s
            .stored_versioned()
            .map(|(k, v, ver)| (k.to_owned(), v.map(Cow::into_owned), ver))
            .collect();
        stored.sort_by(|a, b| a.0.cmp(&b.0));
        let bodies = s
            .entries()
            .map(|e| {
                let body = s.key_body(e, false);
                assert_eq!(
                    body,
                    key_body(&e.key, &e.json, &entry_tail(s.position, false, s.source)),
                    "{}",
                    e.key
                );
                e.version
            })
            .count();
        assert_eq!(bodies, s.len());
        (
            s.document(false),
            stored,
            s.rejected().cloned().collect(),
            s.unknown_keys(),
        )
    }

    #[test]
    fn applying_changes_gives_the_snapshot_a_rebuild_gives() {
        // (key, value, version): valid, rejected, back to default, unknown, unknown removed.
        let base = Snapshot::build_versioned(
            &schema(),
            Position::new(1, 4),
            Source::Redis,
            [
                ("SITE_NAME", Some(json!("A")), 2),
                ("ITEMS_PER_PAGE", Some(json!("drifted")), 3),
                ("GONE", Some(json!(1)), 4),
                ("MAINTENANCE_MODE", None, 1),
            ],
        );
        let steps: Vec<Vec<(&str, Option<Value>)>> = vec![
            vec![("SITE_NAME", Some(json!("B")))],
            vec![("ITEMS_PER_PAGE", Some(json!(9))), ("GONE", None)],
            vec![("SITE_NAME", None), ("NEW_UNKNOWN", Some(json!([1])))],
            vec![("MAINTENANCE_MODE", Some(json!("not a bool")))],
            vec![
                ("MAINTENANCE_MODE", Some(Value::Null)),
                ("ITEMS_PER_PAGE", Some(json!(9))),
            ],
            vec![],
        ];
        let mut applied = base;
        for (i, step) in steps.iter().enumerate() {
            let version = 5 + i as u64;
            let to = Position::new(1, version);
            let next = applied.apply(
                &schema(),
                to,
                Source::Redis,
                step.iter().map(|(k, v)| (*k, v.as_ref(), version)),
            );
            assert_eq!(next.bodies_built(), 0, "apply builds no body");
            assert!(!next.document_held(), "nor the document");
            let mut all: BTreeMap<&str, (Option<Cow<'_, Value>>, u64)> = applied
                .stored_versioned()
                .map(|(k, v, ver)| (k, (v, ver)))
                .collect();
            for (k, v) in step {
                all.insert(k, (v.as_ref().map(Cow::Borrowed), version));
            }
            let rebuilt = Snapshot::build_versioned(
                &schema(),
                to,
                Source::Redis,
                all.into_iter().map(|(k, (v, ver))| (k, v, ver)),
            );
            assert_eq!(seen(&next), seen(&rebuilt), "step {i}: {step:?}");
            for e in next.entries() {
                let r = rebuilt.get(&e.key).expect("same keys");
                assert_eq!(
                    (e.version, e.is_default),
                    (r.version, r.is_default),
                    "{}",
                    e.key
                );
            }
            applied = next;
        }
        let e = applied.get("ITEMS_PER_PAGE").expect("entry");
        assert_eq!((e.value(), e.version), (json!(9), 9));
        assert_eq!(applied.get("SITE_NAME").expect("entry").version, 7);
    }

    #[test]
    fn an_apply_copies_only_the_chunks_of_the_keys_it_changes() {
        let names: Vec<String> = (0..200).map(|i| format!("K{i:03}")).collect();
        let keys: Vec<(&str, ValueType, Value)> = names
            .iter()
            .map(|n| (n.as_str(), ValueType::Int, json!(0)))
            .collect();
        let schema = Schema::from_keys("big", &keys);
        let first = Snapshot::build(
            &schema,
            Position::new(1, 1),
            Source::Redis,
            Vec::<(&str, Value)>::new(),
        );
        let next = first.apply(
            &schema,
            Position::new(1, 2),
            Source::Redis,
            [("K000", Some(&json!(1)), 2)],
        );
        assert_eq!(next.get("K000").expect("entry").json(), b"1");
        // Entries sit in the persistent vector's chunks of 64: the changed key's chunk is
        // copied, every other one is shared (same address in both snapshots).
        let same =
            |k: &str| std::ptr::eq(first.get(k).expect("entry"), next.get(k).expect("entry"));
        assert!(!same("K001"), "in the changed key's chunk: copied");
        assert!(same("K100") && same("K199"), "in other chunks: shared");
    }

    #[test]
    fn an_applied_snapshot_publishes_only_what_changed_and_keeps_the_rest_shared() {
        let first = build(
            1,
            vec![("SITE_NAME", json!("A")), ("ITEMS_PER_PAGE", json!(6))],
        );
        let store = SnapshotStore::new(first, None, false);
        let current = store.load();
        let next = current.apply(
            &schema(),
            Position::new(1, 2),
            Source::Local,
            // One real change, one value set to what it already was.
            [
                ("SITE_NAME", Some(&json!("B")), 2),
                ("ITEMS_PER_PAGE", Some(&json!(6)), 2),
            ],
        );
        let untouched = next.get("MAINTENANCE_MODE").expect("entry");
        let before = current.get("MAINTENANCE_MODE").expect("entry");
        assert_eq!(
            (untouched.json(), untouched.version),
            (before.json(), before.version)
        );
        assert_eq!(next.get("ITEMS_PER_PAGE").expect("entry").version, 2);
        store.publish(next).expect("publish");
        let published = store.load();
        let delta = published.delta().expect("delta");
        assert_eq!(delta.from, Position::new(1, 1));
        assert_eq!(
            published.delta_changes(delta.from),
            Some(vec![(Box::from("SITE_NAME"), json!("B"))])
        );
        let body: Value = serde_json::from_slice(
            &published.key_body(published.get("SITE_NAME").expect("entry"), false),
        )
        .expect("json");
        assert_eq!(body["value"], json!("B"));
        assert_eq!(body["version"], json!(2));
        assert_eq!(published.bodies_built(), 1);
        // Confirmed from another source: same values, no change recorded.
        let confirmed = published.with_source(Source::Redis);
        assert_eq!(confirmed.values_json(), published.values_json());
        store.publish(confirmed).expect("publish");
        assert!(store.load().delta().expect("delta").is_empty());
        assert_eq!(store.recent_changes().len(), 1);
    }

    #[test]
    fn a_snapshot_applied_with_another_schema_is_rebuilt() {
        let old = build(1, vec![("SITE_NAME", json!("A"))]);
        let wider = Schema::from_keys(
            "demo",
            &[
                ("SITE_NAME", ValueType::String, json!("Config Manager")),
                ("EXTRA", ValueType::Int, json!(1)),
            ],
        );
        let next = old.apply(
            &wider,
            Position::new(1, 2),
            Source::Local,
            [("EXTRA", Some(&json!(2)), 2)],
        );
        assert_eq!(next.len(), 2);
        assert_eq!(next.get("SITE_NAME").expect("entry").value(), json!("A"));
        assert_eq!(next.get("EXTRA").expect("entry").value(), json!(2));
    }

    #[test]
    fn an_entry_is_its_json_and_48_bytes() {
        // 100,000 keys hold 100,000 of these (plus each value's JSON): no decoded `Value`, no
        // copy of the name, no second body.
        assert!(
            std::mem::size_of::<Entry>() <= 48,
            "{}",
            std::mem::size_of::<Entry>()
        );
        let sch = schema();
        let s = Snapshot::build(
            &sch,
            Position::new(1, 2),
            Source::Redis,
            [
                ("SITE_NAME", json!("caf\u{e9} \"x\"")),
                ("ITEMS_PER_PAGE", json!(7)),
            ],
        );
        let e = s.get("SITE_NAME").expect("entry");
        assert_eq!(e.json(), "\"caf\u{e9} \\\"x\\\"\"".as_bytes());
        assert_eq!(e.value(), json!("caf\u{e9} \"x\""));
        assert_eq!(&s.raw_body(e)[..], "caf\u{e9} \"x\"".as_bytes());
        // Built on the first read, then shared: a raw read allocates nothing.
        assert_eq!(s.raw_body(e).as_ptr(), s.raw_body(e).as_ptr());
        let def = sch.key("SITE_NAME").expect("def");
        assert!(Arc::ptr_eq(&e.key, &def.name), "the schema's own name");
        // A float reads back exactly as it was written (the content hash depends on it).
        for f in [
            0.1,
            1.0 / 3.0,
            2.0f64.powi(-1074),
            1.7976931348623157e308,
            123456.789e-7,
        ] {
            let json = serde_json::to_vec(&json!(f)).expect("json");
            let back: Value = serde_json::from_slice(&json).expect("parse");
            assert_eq!(back.as_f64().map(f64::to_bits), Some(f.to_bits()), "{f}");
        }
    }

    #[test]
    fn a_recent_change_lists_its_first_keys_and_counts_the_rest() {
        let keys: Vec<(String, ValueType, Value)> = (0..RECENT_KEYS + 7)
            .map(|i| (format!("K{i:02}"), ValueType::Int, json!(0)))
            .collect();
        let refs: Vec<(&str, ValueType, Value)> = keys
            .iter()
            .map(|(k, t, v)| (k.as_str(), *t, v.clone()))
            .collect();
        let sch = Schema::from_keys("demo", &refs);
        let store = SnapshotStore::new(Snapshot::defaults(&sch), None, false);
        let all = keys.iter().map(|(k, _, _)| (k.as_str(), json!(1)));
        let first = Snapshot::build(&sch, Position::new(1, 1), Source::Local, all);
        store.publish(first).expect("publish");
        let recent = store.recent_changes();
        assert_eq!(recent[0].changes.len(), RECENT_KEYS);
        assert_eq!(recent[0].more, 7);
        assert_eq!(
            recent[0].changes.keys().next().map(String::as_str),
            Some("K00")
        );
        // The stream still gets every change, from the snapshot's own entries.
        let changes = store
            .load()
            .delta_changes(Position::default())
            .expect("delta");
        assert_eq!(changes.len(), RECENT_KEYS + 7);
        assert!(changes.iter().all(|(_, v)| *v == json!(1)));
        // A small change lists everything and says nothing more.
        let one = store.load().apply(
            &sch,
            Position::new(1, 2),
            Source::Local,
            [("K03", Some(&json!(2)), 2)],
        );
        store.publish(one).expect("publish");
        let recent = store.recent_changes();
        assert_eq!((recent[0].changes.len(), recent[0].more), (1, 0));
        assert!(serde_json::to_value(&recent[0])
            .expect("json")
            .get("more")
            .is_none());
    }
}
