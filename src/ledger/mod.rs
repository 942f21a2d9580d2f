//! The source of truth: changesets, history and current values, behind the [`Ledger`] trait.
//!
//! Every write is one [`Changeset`]: many keys under one gap-free, commit-ordered `version`,
//! with the old and new value of each key and who made it, when and why. A write is
//! acknowledged only once it is durable. Implementations:
//! - [`embedded::EmbeddedLedger`]: an append-only, checksummed, fsynced log in a data dir
//!   (`rtconfig dev`, small single-admin installs);
//! - [`postgres::PgLedger`]: PostgreSQL, the production ledger (several admin replicas).
//!
//! Both must pass the one conformance suite in `conformance` (built for tests and with the
//! `test-support` feature).
//!
//! Identity (DESIGN §4): `cluster_id` names the deployment (set by `--cluster-id`, recorded
//! when the ledger is created; a ledger never serves another cluster's id). `epoch` is a rising
//! integer per namespace, 1 at creation, changed only by an explicit reconcile after a restore;
//! `version` orders changes and never repeats or skips. Values here are already validated
//! against the schema: the ledger stores, orders and remembers; it does not judge.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub mod embedded;
pub mod postgres;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The version counter and epoch of one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceState {
    pub epoch: u64,
    pub version: u64,
}

/// A key's stored state: `value: None` means it was reset to the schema default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredValue {
    pub value: Option<Value>,
    /// The version of the changeset that last touched this key.
    pub version: u64,
}

/// Every stored value of a namespace at one version.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentValues {
    pub state: NamespaceState,
    pub values: BTreeMap<String, StoredValue>,
}

impl CurrentValues {
    /// Keys with a stored (non-default) value.
    pub fn stored(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.values
            .iter()
            .filter_map(|(k, v)| v.value.as_ref().map(|v| (k.as_str(), v)))
    }
}

/// Who made a change, and why. Kept with every changeset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangeMeta {
    pub actor: String,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// One key's change: `None` is "the schema default" (not set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub key: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
    /// The schema's default for the key when the change was committed, recorded when `old` or
    /// `new` is the default, so history can show the value that was in effect ("Config
    /// Manager") even after the schema's default changes. `None` in changesets written before
    /// defaults were recorded and in adopted images: readers fall back to the current schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

/// A committed changeset: the unit of history, replication and rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Changeset {
    pub namespace: String,
    pub epoch: u64,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    #[serde(flatten)]
    pub meta: ChangeMeta,
    pub changes: Vec<Change>,
}

/// A write: set (`Some`) or reset (`None`) each key, all under one new version.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    pub namespace: String,
    pub changes: Vec<(String, Option<Value>)>,
    /// The namespace version the writer saw (`expected_version`).
    pub expected_version: Option<u64>,
    /// Per-key versions the writer saw (`expected`), so edits of different keys don't conflict.
    pub expected_keys: BTreeMap<String, u64>,
    pub meta: ChangeMeta,
    /// `Idempotency-Key`: a retry with the same key and the same request gets the same outcome.
    pub idempotency_key: Option<String>,
    /// A digest of the request, so a key reused for a different request is refused.
    pub fingerprint: String,
    /// Keys written even when the new value equals the stored one (secrets): answering "no
    /// change" would tell the writer that their value *is* the stored secret.
    pub always_write: std::collections::BTreeSet<String>,
    /// The schema default of the keys this request changes (see [`Change::default`]).
    pub defaults: BTreeMap<String, Value>,
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub state: NamespaceState,
    /// The changes written (empty when nothing differed from the stored state).
    pub changes: Vec<Change>,
    /// `true` when this answers a retry of an earlier request with the same `Idempotency-Key`.
    pub replayed: bool,
}

impl Committed {
    /// The answer to a retry: the outcome of the changeset the first request produced.
    pub fn replay_of(cs: &Changeset) -> Committed {
        Committed {
            state: NamespaceState {
                epoch: cs.epoch,
                version: cs.version,
            },
            changes: cs.changes.clone(),
            replayed: true,
        }
    }
}

/// Filters and paging for [`Ledger::history`]; every filter given must match.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    /// Only changesets that changed this key (and only that key's change is returned).
    pub key: Option<String>,
    /// Only changesets by exactly this actor.
    pub actor: Option<String>,
    /// Only changesets whose comment contains this text, ignoring case.
    pub text: Option<String>,
    /// Only changesets created at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only changesets created before this instant (exclusive).
    pub until: Option<DateTime<Utc>>,
    /// Only changesets with a version below this.
    pub before: Option<u64>,
    pub limit: usize,
}

impl HistoryQuery {
    /// Whether a changeset's metadata passes the actor, text and time filters (the key filter
    /// and paging are the caller's). The embedded ledger's filter; PostgreSQL does the same in
    /// SQL (`ILIKE`, which folds case like `to_lowercase` for the scripts PostgreSQL's locale
    /// knows).
    pub fn matches(&self, cs: &Changeset) -> bool {
        self.actor.as_ref().is_none_or(|a| cs.meta.actor == *a)
            && self.since.is_none_or(|t| cs.created_at >= t)
            && self.until.is_none_or(|t| cs.created_at < t)
            && self
                .text
                .as_ref()
                .is_none_or(|t| cs.meta.comment.to_lowercase().contains(&t.to_lowercase()))
    }
}

/// One page of history, newest first; `next` is the `before` of the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub changesets: Vec<Changeset>,
    pub next: Option<u64>,
}

/// Why a ledger operation failed. Variants are what the caller must do differently; the cause,
/// where there is one, is the error's `source()` (print it with [`crate::telemetry::Chain`]).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("unknown namespace {0:?}")]
    UnknownNamespace(String),
    #[error("expected version {expected}, but the namespace is at version {actual}")]
    VersionConflict { expected: u64, actual: u64 },
    #[error("key {key}: expected version {expected}, but it was last changed at version {actual}")]
    KeyConflict {
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error("Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("version {0} does not exist")]
    NoSuchVersion(u64),
    /// The store cannot be used just now (see the cause); nothing was written. Retry later.
    #[error("the ledger is unavailable")]
    Unavailable(#[source] Unavailable),
    #[error("the commit's outcome is unknown (connection lost during COMMIT); retry with the same Idempotency-Key")]
    OutcomeUnknown,
    #[error("the ledger belongs to cluster {found:?}, not {expected:?}")]
    ForeignCluster { expected: String, found: String },
    /// Another process holds the embedded ledger's data dir (its `lock` file names the pid).
    #[error("the data dir {} is in use by another rtconfig process ({}): stop that process, or give this one another --data-dir", .dir.display(), holder(.pid))]
    DataDirInUse { dir: PathBuf, pid: Option<u32> },
    #[error("namespace {0:?}: Redis holds versions this ledger does not (restored from a backup?); writes are refused until `rtconfig admin reconcile --force`")]
    LedgerBehind(String),
    #[error("the ledger is corrupt: {0}")]
    Corrupt(String),
    /// The embedded ledger could not read or write one of its files.
    #[error("cannot {what} {}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn holder(pid: &Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "its pid is not recorded".to_owned(),
    }
}

/// What made the ledger unavailable: the source of [`LedgerError::Unavailable`].
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error(transparent)]
    Postgres(#[from] postgres::PgError),
    /// The embedded ledger's worker task ended without an answer (it panicked).
    #[error("the ledger's worker task failed")]
    Task(#[source] tokio::task::JoinError),
    /// An append failed and cutting the log back to its last good record failed too: the
    /// embedded ledger refuses writes until a restart, whose open repairs the log.
    #[error("an append failed and the log could not be cut back to its last good record; restart rtconfig to repair it")]
    Poisoned(#[source] Arc<std::io::Error>),
}

impl From<postgres::PgError> for LedgerError {
    fn from(e: postgres::PgError) -> Self {
        LedgerError::Unavailable(Unavailable::Postgres(e))
    }
}

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// The source of truth. Implementations serialize commits per namespace and make each durable
/// before returning.
#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// The deployment's `cluster_id`.
    fn cluster_id(&self) -> &str;

    /// Creates the namespace at epoch 1, version 0 if it does not exist; returns its state.
    async fn ensure_namespace(&self, namespace: &str) -> Result<NamespaceState>;

    async fn namespace_state(&self, namespace: &str) -> Result<NamespaceState>;

    /// The namespace's stored values at its current version.
    async fn current(&self, namespace: &str) -> Result<CurrentValues>;

    /// Commits one changeset atomically and durably.
    async fn commit(&self, request: CommitRequest) -> Result<Committed>;

    /// Changesets newest first, filtered and paged.
    async fn history(&self, namespace: &str, query: &HistoryQuery) -> Result<HistoryPage>;

    async fn changeset(&self, namespace: &str, version: u64) -> Result<Option<Changeset>>;

    /// Changesets with a version above `after`, oldest first, at most `limit` (the relay's feed).
    async fn changes_since(
        &self,
        namespace: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Changeset>>;

    /// The stored values as they were right after `version` was committed (rollback).
    async fn state_at(&self, namespace: &str, version: u64) -> Result<BTreeMap<String, Value>>;

    /// Whether the ledger can take writes now (readiness).
    async fn ping(&self) -> Result<()>;

    /// Raises the namespace's epoch by one, keeping its version and history (`rtconfig admin
    /// reconcile --force`, after the ledger was restored from a backup). Lifts `ledger_behind`.
    async fn bump_epoch(&self, namespace: &str) -> Result<NamespaceState>;

    /// Marks the namespace as behind Redis, so every commit is refused with
    /// [`LedgerError::LedgerBehind`] (a replayed `Idempotency-Key` is still answered), or lifts
    /// the mark. Set by the relay leader; seen by every admin sharing the ledger.
    async fn set_ledger_behind(&self, namespace: &str, behind: bool) -> Result<()>;

    /// Takes a complete Redis image as the state of a namespace that has no history yet
    /// (version 0), keeping its epoch and version, so a fresh ledger does not wipe a live
    /// deployment: one changeset at `image.state.version` records every value (older versions
    /// have no history). Refused — `Ok(false)`, nothing changed — when the namespace already
    /// has history, or when the image's epoch is below the namespace's (an operator bumped it).
    async fn adopt(&self, namespace: &str, image: &CurrentValues, meta: ChangeMeta)
        -> Result<bool>;
}

/// The changeset that records an adopted image: every stored value, as set from the default.
pub fn adopted_changeset(namespace: &str, image: &CurrentValues, meta: ChangeMeta) -> Changeset {
    Changeset {
        namespace: namespace.to_owned(),
        epoch: image.state.epoch,
        version: image.state.version,
        created_at: Utc::now(),
        meta,
        changes: image
            .stored()
            .map(|(key, value)| Change {
                key: key.to_owned(),
                old: None,
                new: Some(value.clone()),
                default: None,
            })
            .collect(),
    }
}

/// The changes that turn `current` into `target` (keys absent from `target` reset to default).
pub fn changes_to_reach(
    current: &CurrentValues,
    target: &BTreeMap<String, Value>,
) -> Vec<(String, Option<Value>)> {
    let mut out = Vec::new();
    for (key, stored) in &current.values {
        match (stored.value.as_ref(), target.get(key)) {
            (Some(now), Some(want)) if now == want => {}
            (None, None) => {}
            (_, want) => out.push((key.clone(), want.cloned())),
        }
    }
    for (key, want) in target {
        if !current.values.contains_key(key) {
            out.push((key.clone(), Some(want.clone())));
        }
    }
    out
}

/// Applies the request's preconditions and computes the effective changes against `current`.
/// Shared by every implementation so they agree on conflicts and no-ops: a key whose new value
/// equals its stored one is left out, unless it is in `always_write`.
pub fn plan_commit(
    request: &CommitRequest,
    current: &CurrentValues,
) -> Result<Vec<Change>, LedgerError> {
    if let Some(expected) = request.expected_version {
        if expected != current.state.version {
            return Err(LedgerError::VersionConflict {
                expected,
                actual: current.state.version,
            });
        }
    }
    for (key, &expected) in &request.expected_keys {
        let actual = current.values.get(key).map_or(0, |s| s.version);
        if actual != expected {
            return Err(LedgerError::KeyConflict {
                key: key.clone(),
                expected,
                actual,
            });
        }
    }
    // A key named twice in one request: the last one wins.
    let mut last: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, (key, _)) in request.changes.iter().enumerate() {
        last.insert(key.as_str(), i);
    }
    let mut changes: Vec<Change> = Vec::with_capacity(request.changes.len());
    for (i, (key, new)) in request.changes.iter().enumerate() {
        if last.get(key.as_str()) != Some(&i) {
            continue;
        }
        let old = current.values.get(key).and_then(|s| s.value.clone());
        if old == *new && !request.always_write.contains(key) {
            continue;
        }
        let default = if old.is_none() || new.is_none() {
            request.defaults.get(key).cloned()
        } else {
            None
        };
        changes.push(Change {
            key: key.clone(),
            old,
            new: new.clone(),
            default,
        });
    }
    Ok(changes)
}
