//! The live mirror between one rtconfig namespace and django-constance's Redis keys
//! (`rtconfig admin --constance-mirror PREFIX`): the I/O around [`super::adopt::decide`].
//!
//! Runs in the admin while it is the relay leader (one writer per deployment; a new term starts a
//! new mirror). Each pass:
//! 1. reads the ledger's current values, `MGET` of every `PREFIX + KEY`, and the record
//!    (`rtconfig:{ns}:constance`, in constance's Redis: what the mirror last wrote or saw);
//! 2. decides per key ([`decide`]);
//! 3. **adopts first**: every value saved through constance goes into the ledger as one changeset
//!    (actor `django-constance`, comment `adopted from constance`, per-key expected versions so a
//!    concurrent rtconfig write is never overwritten), through the admin's write path (validated,
//!    relayed to sidecars, shown to open pages); until that succeeds nothing is written to
//!    constance — on the first pass this is "adopt before anything is written";
//! 4. writes rtconfig's changes with a compare-and-set script ([`scripts::CONSTANCE_CAS`]:
//!    only if the key still holds what was decided on; a reset deletes the key) that records the
//!    new bytes and publishes the key's name on `--constance-channel`;
//! 5. records keys found in sync, reports invalid values (logged once per value, counted, shown
//!    by `GET /api/v1/namespaces/{ns}/constance`).
//!
//! Passes run after every commit on this admin, on each keyspace notification for the prefix
//! (when constance's Redis has `notify-keyspace-events` with `K` and `$`/`A`; the mirror never
//! sets it), and every `--constance-poll-interval` (the safety net, and how commits on other
//! admin replicas arrive). Every pass compares every key, so it is its own anti-entropy: a
//! flushed or restarted Redis is refilled from the ledger on the next pass.
//!
//! Not atomic with the relay's projection: the mirror is a separate Redis (or at least separate
//! keys outside the namespace's hash slot) written right after; both are idempotent and
//! converge within one pass.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::{
    ClientLike as _, EventInterface as _, HashesInterface, KeysInterface, PubsubInterface as _,
};
use fred::types::Value as RedisValue;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;

use super::adopt::{decide, Decision, KeyState, Seen};
use crate::admin::write::{AfterCommit, WriteRequest};
use crate::admin::AdminState;
use crate::ledger::{ChangeMeta, Ledger, LedgerError, NamespaceState};
use crate::metrics::{ConstanceMetrics, KeyLabel};
use crate::redis::{self, keys, scripts, ConnectOptions, RedisError};
use crate::schema::Schema;
use crate::shutdown::Shutdown;
use crate::telemetry::Chain;

/// The actor of adopted changesets.
pub const ACTOR: &str = "django-constance";
/// Their comment.
pub const COMMENT: &str = "adopted from constance";

/// `--constance-*`, resolved against the schema dir.
#[derive(Debug, Clone)]
pub struct MirrorSettings {
    /// `--constance-mirror`: constance's `CONSTANCE_REDIS_PREFIX` (`constance:`).
    pub prefix: String,
    /// `--constance-namespace` (or the schema dir's only namespace).
    pub namespace: String,
    /// `--constance-redis-url`, else the admin's `--redis-url`.
    pub redis_url: String,
    /// `--constance-channel`: where each written key's name is published.
    pub channel: Option<String>,
    /// `--constance-poll-interval`.
    pub poll_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("adopting constance's values failed: {code}: {message}")]
    Adopt { code: String, message: String },
}

impl From<fred::error::Error> for MirrorError {
    fn from(e: fred::error::Error) -> Self {
        MirrorError::Redis(RedisError::Command(e))
    }
}

/// One key's state in the status view.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// constance holds the ledger's value (or both the default).
    Mirrored,
    /// The last pass recorded constance's value in the ledger.
    Adopted,
    /// A write is under way (or was refused because constance changed in between).
    Pending,
    /// constance holds a value the schema refuses; left alone.
    Invalid,
    /// The ledger's value has no constance form.
    Unmirrorable,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyReport {
    pub key: String,
    pub state: KeyStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /api/v1/namespaces/{ns}/constance`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct MirrorStatus {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Whether this admin runs the mirror now (it is the relay leader).
    pub running: bool,
    pub keyspace_notifications: bool,
    /// RFC 3339 time of the last complete pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_pass_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub keys: Vec<KeyReport>,
}

/// The status shared by the mirror (writer) and the admin API (reader).
pub type StatusHandle = Arc<parking_lot::RwLock<MirrorStatus>>;

/// Wakes the mirror after a commit on this admin.
pub struct MirrorKick(pub Arc<Notify>);

#[async_trait::async_trait]
impl AfterCommit for MirrorKick {
    async fn committed(&self, _namespace: &str, _state: NamespaceState) {
        self.0.notify_one();
    }
}

/// The mirror of one leadership term.
pub struct Mirror {
    settings: MirrorSettings,
    schema: Arc<Schema>,
    ledger: Arc<dyn Ledger>,
    write: Arc<dyn AdoptSink>,
    kick: Arc<Notify>,
    metrics: ConstanceMetrics,
    status: StatusHandle,
    client: Client,
    record_key: String,
    /// Invalid values already logged and counted: key → the bytes.
    reported: HashMap<String, Vec<u8>>,
    failing: bool,
}

/// Where adopted values are committed: the admin's write path.
#[async_trait::async_trait]
pub trait AdoptSink: Send + Sync + 'static {
    async fn adopt(
        &self,
        namespace: &str,
        changes: Vec<(String, Value)>,
        expected: BTreeMap<String, u64>,
    ) -> Result<(), MirrorError>;
}

#[async_trait::async_trait]
impl AdoptSink for AdminState {
    async fn adopt(
        &self,
        namespace: &str,
        changes: Vec<(String, Value)>,
        expected: BTreeMap<String, u64>,
    ) -> Result<(), MirrorError> {
        let request = WriteRequest {
            changes,
            expected_version: None,
            expected_keys: expected,
            meta: ChangeMeta {
                actor: ACTOR.into(),
                comment: COMMENT.into(),
                ..ChangeMeta::default()
            },
            idempotency_key: None,
        };
        self.write
            .write(namespace, request)
            .await
            .map(|_| ())
            .map_err(|e| MirrorError::Adopt {
                code: e.code.to_string(),
                message: e.message.clone(),
            })
    }
}

impl Mirror {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: MirrorSettings,
        schema: Arc<Schema>,
        ledger: Arc<dyn Ledger>,
        write: Arc<dyn AdoptSink>,
        kick: Arc<Notify>,
        metrics: ConstanceMetrics,
        status: StatusHandle,
    ) -> Result<Mirror, RedisError> {
        let client = redis::command_client(&settings.redis_url, &ConnectOptions::default())?;
        let record_key = keys::constance_record(&settings.namespace);
        Ok(Mirror {
            settings,
            schema,
            ledger,
            write,
            kick,
            metrics,
            status,
            client,
            record_key,
            reported: HashMap::new(),
            failing: false,
        })
    }

    /// Runs passes until shutdown.
    pub async fn run(mut self, shutdown: Shutdown) {
        redis::start(&self.client);
        {
            let mut s = self.status.write();
            s.running = true;
        }
        let notifications = tokio::spawn(watch_keyspace(
            self.settings.clone(),
            self.client.clone(),
            self.kick.clone(),
            self.status.clone(),
            shutdown.clone(),
        ));
        let stop = shutdown.wait();
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(self.settings.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reconnects = self.client.reconnect_rx();
        let kick = self.kick.clone();
        loop {
            tokio::select! {
                () = kick.notified() => {}
                _ = tick.tick() => {}
                _ = reconnects.recv() => {}
                () = &mut stop => break,
            }
            match self.pass().await {
                Ok(again) => {
                    if self.failing {
                        tracing::info!(namespace = %self.settings.namespace, "constance mirror recovered");
                    }
                    self.failing = false;
                    self.status.write().last_error = None;
                    if again {
                        // A compare-and-set lost a race or values were adopted: decide again now.
                        kick.notify_one();
                    }
                }
                Err(e) => {
                    self.metrics.errors.inc();
                    if !self.failing {
                        tracing::warn!(namespace = %self.settings.namespace, error = %Chain(&e), "constance mirror pass failed; retrying");
                    }
                    self.failing = true;
                    self.status.write().last_error = Some(Chain(&e).to_string());
                }
            }
        }
        notifications.abort();
        self.status.write().running = false;
        let _ = self.client.quit().await;
    }

    /// One pass; `Ok(true)` when another pass should follow at once.
    pub async fn pass(&mut self) -> Result<bool, MirrorError> {
        let ns = self.settings.namespace.clone();
        let current = self.ledger.current(&ns).await?;
        let names: Vec<&str> = self.schema.keys().iter().map(|k| &*k.name).collect();
        if names.is_empty() {
            return Ok(false);
        }
        let constance_keys: Vec<String> = names
            .iter()
            .map(|k| format!("{}{k}", self.settings.prefix))
            .collect();
        let now: RedisValue = self.client.mget(constance_keys.clone()).await?;
        let now = bytes_list(now, names.len())?;
        let records: RedisValue = self
            .client
            .hmget(self.record_key.as_str(), names.clone())
            .await?;
        let records: Vec<Option<Seen>> = bytes_list(records, names.len())?
            .into_iter()
            .map(|r| r.and_then(|r| Seen::from_record(&r)))
            .collect();

        let mut adopt: Vec<(String, Value)> = Vec::new();
        let mut expected: BTreeMap<String, u64> = BTreeMap::new();
        let mut writes: Vec<(usize, Seen, Option<String>)> = Vec::new();
        let mut record: Vec<(usize, Seen)> = Vec::new();
        let mut reports: Vec<KeyReport> = Vec::with_capacity(names.len());
        let mut invalid_now: HashMap<String, Vec<u8>> = HashMap::new();
        for (i, def) in self.schema.keys().iter().enumerate() {
            let stored = current.values.get(&*def.name);
            let decision = decide(KeyState {
                def,
                ledger: stored.and_then(|s| s.value.as_ref()),
                seen: records[i].as_ref(),
                constance: now[i].as_deref(),
            });
            let report = |state, code: Option<&str>, reason: Option<String>| KeyReport {
                key: def.name.to_string(),
                state,
                code: code.map(str::to_owned),
                reason,
            };
            reports.push(match decision {
                Decision::Nothing => report(KeyStatus::Mirrored, None, None),
                Decision::Record => {
                    record.push((i, Seen::of(now[i].as_deref())));
                    report(KeyStatus::Mirrored, None, None)
                }
                Decision::Write { expect, new } => {
                    writes.push((i, expect, new));
                    report(KeyStatus::Pending, None, None)
                }
                Decision::Adopt(value) => {
                    adopt.push((def.name.to_string(), value));
                    expected.insert(def.name.to_string(), stored.map_or(0, |s| s.version));
                    record.push((i, Seen::of(now[i].as_deref())));
                    report(KeyStatus::Adopted, None, None)
                }
                Decision::Invalid { code, reason } => {
                    // A secret's value never reaches a log or the status view.
                    let reason = if def.secret {
                        format!("the value fails the schema ({code})")
                    } else {
                        reason
                    };
                    let bytes = now[i].clone().unwrap_or_default();
                    if self.reported.get(&*def.name) != Some(&bytes) {
                        tracing::warn!(namespace = %ns, key = %def.name, code, reason = %reason, "constance holds a value the schema refuses; not adopted, left alone");
                        self.metrics
                            .rejected
                            .get_or_create(&KeyLabel {
                                key: def.name.to_string(),
                            })
                            .inc();
                    }
                    invalid_now.insert(def.name.to_string(), bytes);
                    report(KeyStatus::Invalid, Some(code), Some(reason))
                }
                Decision::Unmirrorable(e) => {
                    let reason = if def.secret {
                        "the value has no constance form".to_owned()
                    } else {
                        e.to_string()
                    };
                    report(KeyStatus::Unmirrorable, Some("unrepresentable"), Some(reason))
                }
            });
        }
        self.reported = invalid_now;
        self.metrics
            .invalid_keys
            .set(i64::try_from(self.reported.len()).unwrap_or(i64::MAX));

        let mut again = false;
        // Adopt first: nothing is written to constance before constance's own values are in
        // the ledger.
        if !adopt.is_empty() {
            let n = adopt.len() as u64;
            let keys: Vec<String> = adopt.iter().map(|(k, _)| k.clone()).collect();
            match self.write.adopt(&ns, adopt, expected).await {
                Ok(()) => {
                    self.metrics.adopted.inc_by(n);
                    tracing::info!(namespace = %ns, keys = ?keys, "adopted values saved through constance");
                }
                Err(MirrorError::Adopt { code, .. }) if code == "version_conflict" => {
                    // An rtconfig write to one of these keys came first: decide again.
                    self.metrics.conflicts.inc();
                    return Ok(true);
                }
                Err(e) => return Err(e),
            }
            again = true;
        }
        for (i, expect, new) in writes {
            let field = names[i];
            let new_seen = match &new {
                Some(b) => Seen::Bytes(b.clone().into_bytes()),
                None => Seen::Absent,
            };
            let args: Vec<RedisValue> = vec![
                field.into(),
                RedisValue::from(expect.to_record().as_slice()),
                RedisValue::from(new_seen.to_record().as_slice()),
                self.settings.channel.clone().unwrap_or_default().into(),
                field.into(),
            ];
            let done: i64 = scripts::CONSTANCE_CAS
                .evalsha_with_reload(
                    &self.client,
                    vec![constance_keys[i].as_str(), self.record_key.as_str()],
                    args,
                )
                .await?;
            if done == 1 {
                self.metrics.mirrored.inc();
                reports[i].state = KeyStatus::Mirrored;
            } else {
                self.metrics.conflicts.inc();
                again = true;
            }
        }
        if !record.is_empty() {
            let pairs: Vec<(String, RedisValue)> = record
                .into_iter()
                .map(|(i, seen)| {
                    (
                        names[i].to_owned(),
                        RedisValue::from(seen.to_record().as_slice()),
                    )
                })
                .collect();
            let _: i64 = self.client.hset(self.record_key.as_str(), pairs).await?;
        }
        let now_at = chrono::Utc::now();
        self.metrics.last_pass.set(now_at.timestamp());
        {
            let mut s = self.status.write();
            s.keys = reports;
            s.last_pass_at = Some(now_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        }
        Ok(again)
    }
}

/// An `MGET`/`HMGET` reply: one optional byte string per key.
fn bytes_list(reply: RedisValue, n: usize) -> Result<Vec<Option<Vec<u8>>>, MirrorError> {
    let items = match reply {
        RedisValue::Array(items) => items,
        other => vec![other],
    };
    if items.len() != n {
        return Err(MirrorError::Redis(RedisError::Reply(
            redis::WireError::Length {
                what: "constance MGET",
                expected: n,
                got: items.len(),
            },
        )));
    }
    Ok(items
        .into_iter()
        .map(|v| match v {
            RedisValue::Null => None,
            RedisValue::Bytes(b) => Some(b.to_vec()),
            RedisValue::String(s) => Some(s.as_bytes().to_vec()),
            other => other.as_bytes().map(<[u8]>::to_vec),
        })
        .collect())
}

/// Whether `notify-keyspace-events` reports `SET` and `DEL` on keyspace channels.
pub fn keyspace_events_cover_strings(flags: &str) -> bool {
    flags.contains('K') && (flags.contains('A') || (flags.contains('$') && flags.contains('g')))
}

/// A glob pattern matching exactly the keys that start with `prefix`.
pub fn glob_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('*');
    out
}

/// Subscribes to keyspace notifications of constance's keys when the Redis has them on; each
/// one wakes the mirror. Checked again after every reconnect (a restarted Redis may differ).
async fn watch_keyspace(
    settings: MirrorSettings,
    client: Client,
    kick: Arc<Notify>,
    status: StatusHandle,
    shutdown: Shutdown,
) {
    use fred::types::{ClusterHash, CustomCommand};
    let database = fred::prelude::Config::from_url(&settings.redis_url)
        .ok()
        .and_then(|c| c.database)
        .unwrap_or(0);
    let pattern = format!("__keyspace@{database}__:{}", glob_prefix(&settings.prefix));
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        if client.wait_for_connect().await.is_err() {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                () = &mut stop => return,
            }
        }
        let command = CustomCommand::new_static("CONFIG", ClusterHash::Random, false);
        let flags: Result<Vec<String>, _> = client
            .custom(command, vec!["GET", "notify-keyspace-events"])
            .await;
        let enabled = match &flags {
            Ok(pair) => pair
                .get(1)
                .is_some_and(|f| keyspace_events_cover_strings(f)),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read notify-keyspace-events (CONFIG GET not allowed?); polling only");
                false
            }
        };
        // Said only once the subscription stands (below): a save before it is the poll's.
        status.write().keyspace_notifications = false;
        let subscriber = if enabled {
            match redis::subscriber_client(&settings.redis_url, &ConnectOptions::default()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), "cannot open the keyspace subscriber; polling only");
                    None
                }
            }
        } else {
            tracing::info!(
                poll_interval = ?settings.poll_interval,
                "constance's Redis has no keyspace notifications for strings (notify-keyspace-events K$g or KA); the mirror polls"
            );
            None
        };
        let mut reconnects = client.reconnect_rx();
        match subscriber {
            Some(sub) => {
                redis::start(&sub);
                // fred hands `__keyspace@…` messages to its keyspace-event channel, never to
                // `message_rx` (fred 10 `router::responses`): listening there is what wakes us.
                let mut messages = sub.keyspace_event_rx();
                let _ = sub.wait_for_connect().await;
                match sub.psubscribe(pattern.clone()).await {
                    Ok(()) => {
                        status.write().keyspace_notifications = true;
                        // Whatever changed while we were not subscribed: one pass now.
                        kick.notify_one();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "keyspace psubscribe failed; polling only");
                    }
                }
                let manage = sub.manage_subscriptions();
                loop {
                    tokio::select! {
                        m = messages.recv() => match m {
                            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => kick.notify_one(),
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                        },
                        _ = reconnects.recv() => break,
                        () = &mut stop => {
                            manage.abort();
                            let _ = sub.quit().await;
                            return;
                        }
                    }
                }
                manage.abort();
                let _ = sub.quit().await;
            }
            None => {
                tokio::select! {
                    _ = reconnects.recv() => {}
                    () = &mut stop => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_flags_must_cover_set_and_del() {
        for (flags, want) in [
            ("", false),
            ("KA", true),
            ("AKE", true),
            ("K$g", true),
            ("K$", false),
            ("E$g", false),
            ("Kx", false),
        ] {
            assert_eq!(keyspace_events_cover_strings(flags), want, "{flags:?}");
        }
    }

    #[test]
    fn the_prefix_is_matched_literally() {
        assert_eq!(glob_prefix("constance:"), "constance:*");
        assert_eq!(glob_prefix("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\*");
    }
}
