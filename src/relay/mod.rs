//! The admin's relay/reconciler: makes Redis an exact projection of the ledger.
//!
//! Written against the [`Ledger`] trait. Each round, per namespace (after every commit — the
//! write path kicks it — and every second):
//! - read `meta` and refresh `relay_at` ([`scripts::RELAY_TICK`]);
//! - Redis of another `cluster_id` → never touched; alarm (`rtconfig_relay_foreign_redis`);
//! - empty, flushed, incomplete or other-epoch Redis → **rebuild**: the ledger's current image
//!   into temp keys, the log tail too, then one script renames them in and sets `complete`,
//!   `count`, `generation`; sidecars never see a half-built image;
//! - Redis *ahead* of the ledger in the same epoch (a restored ledger) → never overwritten;
//!   writes are refused with `ledger_behind` until an operator bumps the epoch (the mark is kept
//!   in the ledger too, so every admin replica refuses them);
//! - an empty ledger (version 0) and a complete image of ours → the ledger **adopts** the image
//!   (same epoch and version) instead of wiping it ([`Ledger::adopt`]);
//! - Redis behind → replay the missing changesets one by one through [`scripts::APPLY`]
//!   (idempotent, gap-detecting; a gap or a missing image falls back to a rebuild);
//! - every 30 s, anti-entropy: compare every item with the ledger; a difference → rebuild at
//!   the same version with a new `generation`, so sidecars refetch.
//!
//! Every script checks the fencing `term`, so a paused ex-leader cannot write after a newer
//! leader did.
//!
//! Every decision is made by `plan` (pure functions with table tests); this module reads the
//! ledger and Redis (replies decoded by `redis::wire`), asks `plan`, and performs the answer.

mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fred::clients::Client;
use fred::interfaces::{ClientLike as _, HashesInterface, KeysInterface, StreamsInterface};
use fred::types::Value as RedisValue;
use tokio::sync::Notify;

use crate::admin::fleet::{Fleet, FleetError, SidecarInfo};
use crate::admin::write::{AfterCommit, WriteGate};
use crate::content_hash::ContentHash;
use crate::ledger::{
    ChangeMeta, Changeset, CurrentValues, Ledger, LedgerError, NamespaceState, StoredValue,
};
use crate::metrics::RelayMetrics;
use crate::redis::{
    self, scripts, ApplyOutcome, Heartbeat, HintPayload, Image, Item, Keys, LogEntry, Meta, Redis,
    RedisError, SwapOutcome, WireError, LOG_MAXLEN,
};
use crate::schema::Schema;
use crate::shutdown::Shutdown;
use crate::telemetry::Chain;
use plan::{Action, Adoption, AfterApply};

/// Items written per command during a rebuild.
const REBUILD_BATCH: usize = 500;
/// Changesets replayed per ledger read.
const REPLAY_BATCH: usize = 500;
/// The default of `--hint-payload-max-bytes` (issue 12 item 3: "small" = at most 8 KiB).
pub const DEFAULT_HINT_PAYLOAD_MAX_BYTES: usize = 8192;

/// Why a relay round (or building a relay) failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The last step of a rebuild was refused (`FOREIGN`, `FENCED`, `COUNT`); nothing changed.
    #[error("rebuild swap refused: {0}")]
    SwapRefused(SwapOutcome),
}

impl From<fred::error::Error> for RelayError {
    fn from(e: fred::error::Error) -> Self {
        RelayError::Redis(RedisError::Command(e))
    }
}

impl From<WireError> for RelayError {
    fn from(e: WireError) -> Self {
        RelayError::Redis(RedisError::Reply(e))
    }
}

#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub cluster_id: String,
    /// The fencing token of this leader: higher than any earlier leader's.
    pub term: u64,
    pub interval: Duration,
    pub anti_entropy_interval: Duration,
    /// The largest changeset (its hint payload's JSON, in bytes) inlined in the PUBLISH hint
    /// (`--hint-payload-max-bytes`; 0 = never inline).
    pub hint_payload_max_bytes: usize,
}

impl RelaySettings {
    pub fn new(cluster_id: &str, term: u64) -> RelaySettings {
        RelaySettings {
            cluster_id: cluster_id.to_owned(),
            term,
            interval: Duration::from_secs(1),
            anti_entropy_interval: Duration::from_secs(30),
            hint_payload_max_bytes: DEFAULT_HINT_PAYLOAD_MAX_BYTES,
        }
    }
}

/// Wakes the relay after a commit.
pub struct RelayKick(pub Arc<Notify>);

#[async_trait]
impl AfterCommit for RelayKick {
    async fn committed(&self, _namespace: &str, _state: NamespaceState) {
        self.0.notify_one();
    }
}

/// What a namespace round found (for logging transitions once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Ok,
    Foreign,
    Fenced,
    LedgerBehind,
    Failing,
}

pub struct Relay {
    ledger: Arc<dyn Ledger>,
    /// One client, or on Redis Cluster one per primary (`client_for` a namespace's key).
    redis: Redis,
    schemas: Vec<Arc<Schema>>,
    settings: RelaySettings,
    /// Wakes the relay after a commit (shared by the relays of successive leadership terms).
    kick: Arc<Notify>,
    metrics: RelayMetrics,
    /// This admin's write gate: the relay closes it for a namespace whose ledger is behind.
    gate: Arc<WriteGate>,
    health: BTreeMap<String, Health>,
    /// The django-constance mirror of this term (`--constance-mirror`), run beside the relay.
    mirror: Option<crate::constance::mirror::Mirror>,
}

impl Relay {
    /// A relay for one leadership term. `kick` and `gate` outlive it: the write path notifies
    /// `kick` after every commit and checks `gate` before every write.
    pub fn new(
        ledger: Arc<dyn Ledger>,
        redis: Redis,
        schemas: Vec<Arc<Schema>>,
        settings: RelaySettings,
        metrics: RelayMetrics,
        kick: Arc<Notify>,
        gate: Arc<WriteGate>,
    ) -> Relay {
        Relay {
            ledger,
            redis,
            schemas,
            settings,
            kick,
            metrics,
            gate,
            health: BTreeMap::new(),
            mirror: None,
        }
    }

    /// Runs `mirror` beside the relay for as long as this term lasts.
    pub fn with_mirror(mut self, mirror: Option<crate::constance::mirror::Mirror>) -> Relay {
        self.mirror = mirror;
        self
    }

    /// Runs until shutdown.
    pub async fn run(mut self, shutdown: Shutdown) {
        self.redis.start();
        let mirror = self
            .mirror
            .take()
            .map(|m| tokio::spawn(m.run(shutdown.clone())));
        if let Some(first) = self.schemas.first() {
            if let Ok(client) = self.redis.client_for(&Keys::new(&first.namespace).meta) {
                tokio::spawn(check_eviction_policy(client));
            }
        }
        let stop = shutdown.wait();
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(self.settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut entropy = tokio::time::interval(self.settings.anti_entropy_interval);
        entropy.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        entropy.reset();
        let kick = self.kick.clone();
        // Redis accepting connections again (restarted, possibly empty): a round at once, so a
        // rebuild does not wait for the next tick.
        let mut reconnects = self.redis.reconnect_rx();
        loop {
            let anti_entropy = tokio::select! {
                () = kick.notified() => false,
                ev = reconnected(&mut reconnects) => match ev {
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => false,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => false,
                _ = entropy.tick() => true,
                () = &mut stop => break,
            };
            self.round(anti_entropy).await;
        }
        if let Some(mut task) = mirror {
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        self.redis.quit().await;
    }

    /// One pass over every namespace.
    pub async fn round(&mut self, anti_entropy: bool) {
        let mut max_lag = 0i64;
        for schema in self.schemas.clone() {
            let ns = schema.namespace.as_str();
            // On a cluster, a namespace whose node is down is skipped at once instead of
            // holding every other namespace's round for a command timeout.
            let result = match self.redis.node_down(&Keys::new(ns).meta) {
                Some(node) => Err(RelayError::Redis(RedisError::NodeDown(node))),
                None => self.sync_namespace(&schema, anti_entropy).await,
            };
            let health = match result {
                Ok((health, lag)) => {
                    max_lag = max_lag.max(lag);
                    health
                }
                Err(e) => {
                    self.metrics.errors.inc();
                    self.redis.command_failed();
                    if self.health.get(ns) != Some(&Health::Failing) {
                        tracing::warn!(namespace = ns, error = %Chain(&e), "relay round failed; retrying every second");
                    }
                    Health::Failing
                }
            };
            let before = self.health.insert(ns.to_owned(), health);
            if before == Some(Health::Failing) && health == Health::Ok {
                tracing::info!(namespace = ns, "relay recovered");
            }
            if anti_entropy && health != Health::Failing {
                if let Err(e) = self.prune_sidecars(ns).await {
                    tracing::debug!(namespace = ns, error = %Chain(&e), "cannot prune silent sidecars");
                }
            }
        }
        self.metrics.lag_versions.set(max_lag);
        let foreign = self.health.values().any(|h| *h == Health::Foreign);
        self.metrics.foreign_redis.set(i64::from(foreign));
    }

    /// Gathers the ledger's state and `RELAY_TICK`, asks the plan, performs its answer.
    async fn sync_namespace(
        &mut self,
        schema: &Schema,
        anti_entropy: bool,
    ) -> Result<(Health, i64), RelayError> {
        let ns = schema.namespace.as_str();
        let keys = Keys::new(ns);
        let read_at = std::time::Instant::now();
        let client = self.redis.client_for(&keys.meta)?;
        let mut ledger = self.ledger.namespace_state(ns).await?;
        let reply: RedisValue = scripts::RELAY_TICK
            .evalsha_with_reload(
                &client,
                vec![keys.meta.as_str()],
                vec![
                    self.settings.cluster_id.clone(),
                    self.settings.term.to_string(),
                    self.settings.interval.as_millis().to_string(),
                    ledger.epoch.to_string(),
                    ledger.version.to_string(),
                    read_at.elapsed().as_millis().to_string(),
                ],
            )
            .await
            .map_err(RedisError::from)?;
        let meta = Meta::decode(&reply)?;
        let mut may_adopt = true;
        let action = loop {
            let state = plan::State {
                cluster_id: &self.settings.cluster_id,
                term: self.settings.term,
                ledger,
                may_adopt,
                anti_entropy,
            };
            match plan::plan(&state, &meta) {
                Action::Adopt => {
                    // An empty ledger (a first start on a new database) takes over a complete
                    // image of ours rather than wiping a live deployment; then decide again.
                    self.adopt(ns).await?;
                    ledger = self.ledger.namespace_state(ns).await?;
                    may_adopt = false;
                }
                action => break action,
            }
        };
        let (redis_epoch, redis_version) = (meta.epoch.unwrap_or(0), meta.version.unwrap_or(0));
        if action.is_level() {
            if self.health.get(ns) != Some(&Health::Ok) {
                // A new term, a recovery or a reconcile: lift a mark this or an earlier leader
                // set.
                self.ledger.set_ledger_behind(ns, false).await?;
            }
            self.gate.set_ledger_behind(ns, false);
        }
        let synced = match action {
            Action::Foreign { redis_cluster_id } => {
                if self.health.get(ns) != Some(&Health::Foreign) {
                    tracing::error!(namespace = ns, redis_cluster_id = %redis_cluster_id, our_cluster_id = %self.settings.cluster_id, "redis holds another cluster's data; refusing to write to it");
                }
                return Ok((Health::Foreign, 0));
            }
            Action::Fenced { redis_term } => {
                if self.health.get(ns) != Some(&Health::Fenced) {
                    tracing::error!(
                        namespace = ns,
                        redis_term,
                        our_term = self.settings.term,
                        "a newer relay leader wrote to redis; this relay stops writing"
                    );
                }
                return Ok((Health::Fenced, 0));
            }
            Action::LedgerBehind => {
                // A complete image of ours ahead of the ledger: the ledger was restored from a
                // backup. Never overwrite it; an operator decides (reconcile --force bumps the
                // epoch).
                if self.health.get(ns) != Some(&Health::LedgerBehind) {
                    tracing::error!(namespace = ns, redis_epoch, redis_version, ledger_epoch = ledger.epoch, ledger_version = ledger.version, "redis is ahead of the ledger; writes are refused until `rtconfig admin reconcile --force`");
                    // In the ledger too, so every admin replica refuses writes.
                    self.ledger.set_ledger_behind(ns, true).await?;
                }
                self.gate.set_ledger_behind(ns, true);
                return Ok((Health::LedgerBehind, 0));
            }
            Action::Rebuild => {
                tracing::info!(
                    namespace = ns,
                    complete = meta.complete,
                    redis_epoch,
                    ledger_epoch = ledger.epoch,
                    "rebuilding the redis image"
                );
                self.rebuild(schema, false).await?
            }
            Action::Replay { from, hash } => self.replay(schema, from, hash).await?,
            Action::Check { at } => {
                if self.image_matches(schema, &meta).await? {
                    at
                } else {
                    self.metrics.drift_repairs.inc();
                    tracing::warn!(
                        namespace = ns,
                        "anti-entropy found redis differing from the ledger; rebuilding"
                    );
                    self.rebuild(schema, true).await?
                }
            }
            Action::Nothing { at } => at,
            // Adoption is planned at most once per round (`may_adopt` is now false).
            Action::Adopt => redis_version,
        };
        let after = self.ledger.namespace_state(ns).await?;
        let lag = after.version.saturating_sub(synced) as i64;
        Ok((Health::Ok, lag))
    }

    /// Reads the complete Redis image of `ns` in one step and offers it to the (empty) ledger.
    async fn adopt(&self, ns: &str) -> Result<bool, RelayError> {
        let keys = Keys::new(ns);
        let client = self.redis.client_for(&keys.meta)?;
        let reply: RedisValue = scripts::FULL_READ
            .evalsha_with_reload(
                &client,
                vec![keys.meta.as_str(), keys.items.as_str()],
                Vec::<String>::new(),
            )
            .await
            .map_err(RedisError::from)?;
        let image = Image::decode(&reply)?;
        let (epoch, version) = match plan::plan_adopt(&self.settings.cluster_id, &image) {
            Adoption::Adopt { epoch, version } => (epoch, version),
            Adoption::NotOurs => return Ok(false),
            Adoption::Damaged => {
                tracing::error!(
                    namespace = ns,
                    "the redis image holds a damaged item; not adopting it"
                );
                return Ok(false);
            }
            Adoption::MissingItems => {
                tracing::error!(namespace = ns, count = ?image.meta.count, items = image.items.len(), "the redis image is missing items; not adopting it");
                return Ok(false);
            }
        };
        let values = image
            .items
            .into_iter()
            .map(|(key, item)| {
                let stored = StoredValue {
                    value: Some(item.value),
                    version: item.version,
                };
                (key, stored)
            })
            .collect();
        let image = CurrentValues {
            state: NamespaceState { epoch, version },
            values,
        };
        let comment = format!(
            "adopted the Redis image (epoch {epoch}, version {version}) into an empty ledger"
        );
        let adopted = self
            .ledger
            .adopt(
                ns,
                &image,
                ChangeMeta {
                    actor: "rtconfig".into(),
                    comment,
                    ..ChangeMeta::default()
                },
            )
            .await?;
        if adopted {
            tracing::warn!(
                namespace = ns,
                epoch,
                version,
                keys = image.values.len(),
                "the ledger was empty: adopted the complete redis image instead of wiping it"
            );
        }
        Ok(adopted)
    }

    /// Applies changesets after `from` (where Redis's image has content hash `hash`), in order;
    /// falls back to a rebuild on a gap. Returns the version Redis is at afterwards.
    async fn replay(
        &mut self,
        schema: &Schema,
        mut from: u64,
        mut hash: ContentHash,
    ) -> Result<u64, RelayError> {
        let ns = schema.namespace.as_str();
        let keys = Keys::new(ns);
        loop {
            let batch = self.ledger.changes_since(ns, from, REPLAY_BATCH).await?;
            if batch.is_empty() {
                return Ok(from);
            }
            for cs in &batch {
                let after = hash_after(hash, cs);
                let outcome = self.apply(&keys, schema, cs, after).await?;
                match plan::after_apply(outcome) {
                    AfterApply::Applied => {
                        self.metrics.applied.inc();
                    }
                    AfterApply::Skip => {}
                    AfterApply::Rebuild => {
                        tracing::info!(namespace = ns, version = cs.version, result = %outcome, "cannot apply in order; rebuilding");
                        return self.rebuild(schema, false).await;
                    }
                    AfterApply::Stop => {
                        tracing::warn!(
                            namespace = ns,
                            version = cs.version,
                            result = %outcome,
                            "relay apply refused"
                        );
                        return Ok(from);
                    }
                }
                from = cs.version;
                hash = after;
            }
        }
    }

    async fn apply(
        &self,
        keys: &Keys,
        schema: &Schema,
        cs: &Changeset,
        content_hash: ContentHash,
    ) -> Result<ApplyOutcome, RelayError> {
        let entry = log_entry(cs);
        let payload = HintPayload {
            cluster_id: self.settings.cluster_id.clone(),
            changes: entry.changes.clone(),
        }
        .encode_within(self.settings.hint_payload_max_bytes)?;
        let client = self.redis.client_for(&keys.meta)?;
        let mut args = vec![
            self.settings.cluster_id.clone(),
            cs.epoch.to_string(),
            self.settings.term.to_string(),
            cs.version.to_string(),
            entry.changes_json()?,
            LOG_MAXLEN.to_string(),
            keys.changes.clone(),
            schema.hash.clone(),
            content_hash.to_hex(),
            payload.unwrap_or_default(),
            self.redis.pubsub_for(&keys.changes).command().to_owned(),
        ];
        for c in &cs.changes {
            args.push(c.key.clone());
            args.push(match &c.new {
                Some(v) => Item::encode(v, cs.version)?,
                None => String::new(),
            });
        }
        let reply: RedisValue = scripts::APPLY
            .evalsha_with_reload(
                &client,
                vec![keys.meta.as_str(), keys.items.as_str(), keys.log.as_str()],
                args,
            )
            .await
            .map_err(RedisError::from)?;
        Ok(ApplyOutcome::decode(&reply)?)
    }

    /// Writes the ledger's current image and log tail into temp keys, then swaps them in; returns
    /// the version of the new image.
    pub async fn rebuild(
        &mut self,
        schema: &Schema,
        bump_generation: bool,
    ) -> Result<u64, RelayError> {
        let ns = schema.namespace.as_str();
        let keys = Keys::new(ns);
        let client = self.redis.client_for(&keys.meta)?;
        let current = self.ledger.current(ns).await?;
        let version = current.state.version;
        let _: i64 = client
            .del(vec![keys.items_tmp.as_str(), keys.log_tmp.as_str()])
            .await?;
        let items: Vec<(String, String)> = current
            .values
            .iter()
            .filter_map(|(k, s)| s.value.as_ref().map(|v| (k, Item::encode(v, s.version))))
            .map(|(k, item)| item.map(|item| (k.clone(), item)))
            .collect::<Result<_, _>>()?;
        for chunk in items.chunks(REBUILD_BATCH) {
            let _: i64 = client.hset(keys.items_tmp.as_str(), chunk.to_vec()).await?;
        }
        let from = version.saturating_sub(LOG_MAXLEN);
        let mut after = from;
        while after < version {
            let batch = self.ledger.changes_since(ns, after, REBUILD_BATCH).await?;
            if batch.is_empty() {
                break;
            }
            let mut pending = Vec::with_capacity(batch.len());
            for cs in batch.iter().filter(|cs| cs.version <= version) {
                let entry = log_entry(cs);
                pending.push(client.xadd::<RedisValue, _, _, _, _>(
                    keys.log_tmp.as_str(),
                    false,
                    None,
                    entry.id(),
                    vec![
                        ("epoch", entry.epoch.to_string()),
                        ("changes", entry.changes_json()?),
                    ],
                ));
                after = cs.version;
            }
            futures_util::future::try_join_all(pending).await?;
            if batch.last().is_some_and(|cs| cs.version >= version) {
                break;
            }
        }
        let reply: RedisValue = scripts::SWAP
            .evalsha_with_reload(
                &client,
                vec![
                    keys.meta.as_str(),
                    keys.items.as_str(),
                    keys.log.as_str(),
                    keys.items_tmp.as_str(),
                    keys.log_tmp.as_str(),
                ],
                vec![
                    self.settings.cluster_id.clone(),
                    current.state.epoch.to_string(),
                    version.to_string(),
                    self.settings.term.to_string(),
                    items.len().to_string(),
                    keys.changes.clone(),
                    schema.hash.clone(),
                    if bump_generation { "1" } else { "0" }.to_owned(),
                    ContentHash::of(current.stored()).to_hex(),
                    self.redis.pubsub_for(&keys.changes).command().to_owned(),
                ],
            )
            .await
            .map_err(RedisError::from)?;
        match SwapOutcome::decode(&reply)? {
            SwapOutcome::Ok => {}
            refused => return Err(RelayError::SwapRefused(refused)),
        }
        self.metrics.rebuilds.inc();
        tracing::info!(
            namespace = ns,
            version,
            items = items.len(),
            "redis image rebuilt"
        );
        Ok(version)
    }

    /// Whether every item in Redis equals the ledger's, and `meta`'s content hash the ledger
    /// image's (anti-entropy).
    async fn image_matches(&self, schema: &Schema, meta: &Meta) -> Result<bool, RelayError> {
        let ns = schema.namespace.as_str();
        let keys = Keys::new(ns);
        let client = self.redis.client_for(&keys.meta)?;
        let current = self.ledger.current(ns).await?;
        if meta.content_hash != Some(ContentHash::of(current.stored())) {
            return Ok(false);
        }
        let in_redis: std::collections::HashMap<String, String> =
            client.hgetall(keys.items.as_str()).await?;
        let stored: Vec<(&str, &serde_json::Value)> = current.stored().collect();
        if stored.len() != in_redis.len() {
            return Ok(false);
        }
        Ok(stored.iter().all(|(k, v)| {
            in_redis
                .get(*k)
                .and_then(|text| Item::decode(text).ok())
                .is_some_and(|item| item.value == **v)
        }))
    }

    /// Removes heartbeats silent for more than 10 of their intervals.
    async fn prune_sidecars(&self, ns: &str) -> Result<(), RelayError> {
        let keys = Keys::new(ns);
        let client = self.redis.client_for(&keys.meta)?;
        let all: std::collections::HashMap<String, String> =
            client.hgetall(keys.sidecars.as_str()).await?;
        let now = chrono::Utc::now();
        let silent: Vec<String> = all
            .into_iter()
            .filter(|(_, beat)| plan::is_silent(beat, now))
            .map(|(id, _)| id)
            .collect();
        if !silent.is_empty() {
            let _: i64 = client.hdel(keys.sidecars.as_str(), silent).await?;
        }
        Ok(())
    }
}

/// Warns when Redis may evict keys: the image must stay whole (`maxmemory-policy noeviction`).
/// Sidecars catch an evicted image anyway (the item count no longer matches `meta.count`).
async fn check_eviction_policy(client: Client) {
    use fred::types::{ClusterHash, CustomCommand};
    let command = CustomCommand::new_static("CONFIG", ClusterHash::Random, false);
    let policy: Result<Vec<String>, _> = client
        .custom(command, vec!["GET", "maxmemory-policy"])
        .await;
    match policy {
        Ok(pair) => match pair.get(1).map(String::as_str) {
            Some("noeviction") => {}
            Some(other) => tracing::warn!(
                policy = other,
                "redis maxmemory-policy is not noeviction: under memory pressure it may evict config keys (sidecars will then refuse the incomplete image); set maxmemory-policy noeviction"
            ),
            None => {}
        },
        Err(e) => tracing::debug!(error = %e, "cannot read maxmemory-policy (CONFIG GET not allowed?)"),
    }
}

/// The content hash of the image after `cs`, from the hash before it: O(changed keys).
fn hash_after(mut hash: ContentHash, cs: &Changeset) -> ContentHash {
    for c in &cs.changes {
        if let Some(old) = &c.old {
            hash.remove(&c.key, old);
        }
        if let Some(new) = &c.new {
            hash.add(&c.key, new);
        }
    }
    hash
}

/// A changeset as a log entry: `changes` is `{"KEY": value | null}`, in the changeset's order.
fn log_entry(cs: &Changeset) -> LogEntry {
    LogEntry {
        version: cs.version,
        epoch: cs.epoch,
        changes: cs
            .changes
            .iter()
            .map(|c| {
                let value = c.new.clone().unwrap_or(serde_json::Value::Null);
                (c.key.clone(), value)
            })
            .collect(),
    }
}

/// The fleet view from the sidecars' heartbeats in Redis.
pub struct RedisFleet {
    pub redis: Redis,
}

#[async_trait]
impl Fleet for RedisFleet {
    async fn sidecars(&self, namespace: &str) -> Result<Vec<SidecarInfo>, FleetError> {
        let keys = Keys::new(namespace);
        let client = self
            .redis
            .client_for(&keys.meta)
            .map_err(|e| FleetError::Unavailable(Box::new(e)))?;
        let all: std::collections::HashMap<String, String> =
            client.hgetall(keys.sidecars.as_str()).await.map_err(|e| {
                self.redis.command_failed();
                FleetError::Unavailable(Box::new(RedisError::Command(e)))
            })?;
        // A field that is not a heartbeat is not a sidecar (the relay prunes it).
        let mut out: Vec<SidecarInfo> = all
            .into_iter()
            .filter_map(|(id, beat)| {
                let beat = Heartbeat::decode(&beat).ok()?;
                Some(SidecarInfo {
                    id,
                    epoch: beat.epoch,
                    version: beat.version,
                    schema_hash: beat.schema_hash,
                    status: beat.status,
                    seen_at: beat.seen_at,
                    interval_ms: beat.interval_ms,
                    applied_at: beat.applied_at,
                    started_at: beat.started_at,
                    cause: beat.cause,
                    redis_connected: beat.redis_connected,
                })
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

/// Before an admin takes writes: marks in the ledger every namespace whose Redis image (ours,
/// complete) is ahead of it — a restored ledger, or an empty one the relay is about to adopt the
/// image into — so no write can fork history before the relay leader has looked. The relay lifts
/// the mark once the ledger is level again. Best effort: a Redis that does not answer within
/// `timeout` is left to the relay.
pub async fn mark_if_redis_ahead(
    ledger: &dyn Ledger,
    redis: &Redis,
    cluster_id: &str,
    namespaces: &[String],
    timeout: Duration,
) {
    let check = async {
        for ns in namespaces {
            let keys = Keys::new(ns);
            let client = redis.client_for(&keys.meta)?;
            client.wait_for_connect().await?;
            let meta = match redis::read_meta(&client, &keys).await {
                Ok(meta) => meta,
                Err(RedisError::Reply(e)) => {
                    tracing::warn!(namespace = %ns, error = %Chain(&e), "unreadable meta in redis; the relay decides");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let state = ledger.namespace_state(ns).await?;
            if plan::redis_ahead(cluster_id, &meta, state) {
                tracing::warn!(namespace = %ns, redis_epoch = meta.epoch, redis_version = meta.version, ledger_epoch = state.epoch, ledger_version = state.version, "redis is ahead of the ledger; writes wait for the relay leader");
                ledger.set_ledger_behind(ns, true).await?;
            }
        }
        Ok::<(), RelayError>(())
    };
    match tokio::time::timeout(timeout, check).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %Chain(&e), "cannot compare redis with the ledger at start; the relay will")
        }
        Err(_) => {
            tracing::warn!("redis did not answer at start; the relay compares it with the ledger")
        }
    }
}

/// The next reconnection of a single Redis client; never on a cluster.
async fn reconnected(
    rx: &mut Option<tokio::sync::broadcast::Receiver<fred::types::config::Server>>,
) -> Result<fred::types::config::Server, tokio::sync::broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
