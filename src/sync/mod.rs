//! The sidecar's sync loop: keeps the snapshot an exact, fresh copy of the namespace in Redis.
//! It is the only writer of the sidecar's snapshot.
//!
//! Protocol (DESIGN §4): subscribe first — and after every reconnect, resubscribe — then read.
//! A round ([`SyncLoop::resync`]) reads `meta`, Redis `TIME` and the change log after our version
//! in one script; when Redis is ahead it catches up from the log, or fetches the whole image when
//! the log does not cover the gap. It never applies an incomplete image, another cluster's data,
//! an older epoch, or an older version within an epoch; it keeps serving the last snapshot
//! instead and says why in `/status`. Values the local schema rejects keep their default (schema
//! drift during a rollout is normal) and unknown keys are ignored, so one key never stalls sync.
//!
//! Every decision is made by `plan` (pure functions with table tests); this module gathers the
//! inputs (one script call each, decoded by `redis::wire`), asks `plan`, and performs the answer:
//! build and swap a snapshot, set the status, count metrics. The loop holds the last snapshot it
//! built (`Arc<Snapshot>`, which keeps the stored values catch-up applies changes to) and its
//! position (`None` until data from Redis or disk is loaded); nothing is copied per round.
//!
//! Triggers: a Pub/Sub hint, the resync timer (interval ±20 %), every (re)subscribe, a lagged
//! broadcast buffer. Liveness: `PING` on the subscriber connection with a timeout (a SIGSTOPped
//! Redis accepts TCP but never answers); a failed ping marks the state stale at once. The read
//! path never waits on any of this.

pub mod freshness;
mod plan;

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::clients::{Client, SubscriberClient};
use fred::interfaces::{ClientLike, EventInterface, HashesInterface, PubsubInterface};
use fred::types::Value as RedisValue;
use parking_lot::Mutex;
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::content_hash::ContentHash;
use crate::disk::{self, DiskSnapshot, Generation};
use crate::metrics::{
    AnomalyKind, DiskGeneration, MessageResult, ResyncReason, SnapshotMetrics, SyncMetrics,
};
use crate::redis::{
    self, scripts, ConnectOptions, Heartbeat, Hint, Image, Keys, RedisError, SyncRead,
};
use crate::schema::Schema;
use crate::shutdown::Shutdown;
use crate::sidecar::SyncReport;
use crate::snapshot::{Position, PublishError, Snapshot, SnapshotStore, Source};
use crate::telemetry::Chain;
use plan::{Action, Cause, FetchReason, HintAction, ImageAction, Keep};

/// Log entries read per round; a larger gap is closed by a full fetch.
const CATCH_UP_MAX: u64 = 1000;

/// A full fetch of at least this many fields reconnects its client afterwards, to give back the
/// read buffer the reply grew (≈ 100 bytes per field; below this it is at most ≈ 2 MiB).
const BIG_IMAGE_FIELDS: usize = 20_000;

/// The first wait after a failed disk snapshot write; it doubles up to [`WRITE_RETRY_MAX`].
const WRITE_RETRY_FIRST: Duration = Duration::from_millis(500);
/// The longest wait between two attempts to write the disk snapshot.
const WRITE_RETRY_MAX: Duration = Duration::from_secs(5);

/// The wait before the next attempt after a failed write (`None`: the first failure).
fn write_retry_delay(last: Option<Duration>) -> Duration {
    match last {
        None => WRITE_RETRY_FIRST,
        Some(d) => (d * 2).min(WRITE_RETRY_MAX),
    }
}

/// How a sidecar syncs.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub namespace: String,
    pub cluster_id: String,
    pub redis_url: String,
    /// The subscriber's own URL when it differs (fault tests route the Pub/Sub link through its
    /// own proxy); `None` = `redis_url`.
    pub subscriber_redis_url: Option<String>,
    pub resync_interval: Duration,
    /// How often the subscriber connection is pinged, and the shortest time an answer may
    /// take before the link counts as failed (the timeout adapts to measured round trips, up
    /// to [`SyncSettings::liveness_cap`]).
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub snapshot_path: Option<PathBuf>,
    pub instance_id: String,
    pub connect: ConnectOptions,
}

impl SyncSettings {
    /// Liveness defaults derived from the resync interval.
    pub fn new(namespace: &str, cluster_id: &str, redis_url: &str, resync: Duration) -> Self {
        SyncSettings {
            namespace: namespace.to_owned(),
            cluster_id: cluster_id.to_owned(),
            redis_url: redis_url.to_owned(),
            subscriber_redis_url: None,
            resync_interval: resync,
            ping_interval: (resync / 2).clamp(Duration::from_millis(200), Duration::from_secs(2)),
            ping_timeout: Duration::from_secs(1).min(resync.max(Duration::from_millis(300))),
            snapshot_path: None,
            instance_id: default_instance_id(),
            connect: ConnectOptions::default(),
        }
    }
}

impl SyncSettings {
    /// The longest the adaptive liveness timeout may grow to.
    pub fn liveness_cap(&self) -> Duration {
        freshness::liveness_cap(self.resync_interval, self.ping_timeout)
    }

    /// The staleness bound `B` for a relay beating every `relay` (docs/OPERATIONS.md).
    pub fn staleness_bound(&self, relay: Duration) -> Duration {
        freshness::staleness_bound(self.resync_interval, relay, self.liveness_cap())
    }
}

/// The relay's interval when `meta` does not say (the admin's `--relay-interval` default).
pub const DEFAULT_RELAY_INTERVAL: Duration = Duration::from_secs(1);

/// Resolves when a cluster's slot table changed; never without a cluster.
async fn slot_table_changed(ranges: &mut Option<watch::Receiver<redis::cluster::SlotRanges>>) {
    match ranges {
        Some(rx) => {
            if rx.changed().await.is_err() {
                *ranges = None;
            }
        }
        None => std::future::pending().await,
    }
}

/// RFC 3339 with milliseconds, UTC.
fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `$HOSTNAME` (the pod name in Kubernetes) plus the process id.
pub fn default_instance_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "sidecar".into());
    format!("{host}-{}", std::process::id())
}

/// What `/status` and `/readyz` show about sync.
#[derive(Debug, Default)]
pub struct SyncStatus {
    inner: Mutex<StatusInner>,
}

#[derive(Debug, Default)]
struct StatusInner {
    connected: bool,
    /// Why the state is not (known to be) in sync, if it is not.
    cause: Option<&'static str>,
    last_sync_at: Option<String>,
    last_error: Option<String>,
    disconnected_since: Option<Instant>,
    /// When `connected` last changed (for the logged durations).
    link_since: Option<Instant>,
    /// `connected` was true at some point (a later `true` is a reconnect).
    ever_connected: bool,
    /// The current liveness timeout (adapts to measured round trips).
    liveness_timeout: Option<Duration>,
    /// The staleness bound `B` in force.
    staleness_bound: Option<Duration>,
    relay_down: bool,
    rounds: u64,
    full_fetches: u64,
    catchups: u64,
    /// The content hash of the values served (16 hex digits), once known.
    content_hash: Option<String>,
    disk: Option<DiskStatus>,
    /// How the last subscription listens for hints (`plain` or `sharded`).
    pubsub: Option<redis::PubSub>,
}

/// The disk snapshot's part of `/status`.
#[derive(Debug, Default, serde::Serialize)]
struct DiskStatus {
    path: String,
    /// The file the cold start loaded (`newest`, `previous`), `None` if none.
    loaded: Option<Generation>,
    /// Why that one (or none).
    loaded_because: String,
    /// The version of the file on disk, as last loaded or written.
    file_version: Option<u64>,
    /// Failed attempts since the last successful write (retried with back-off).
    write_failures: u64,
    last_write_error: Option<String>,
    last_written_at: Option<String>,
}

impl SyncStatus {
    fn update(&self, f: impl FnOnce(&mut StatusInner)) {
        f(&mut self.inner.lock());
    }

    /// The current cause of staleness, if any (tests and heartbeats).
    pub fn cause(&self) -> Option<&'static str> {
        self.inner.lock().cause
    }

    pub fn counts(&self) -> (u64, u64) {
        let i = self.inner.lock();
        (i.full_fetches, i.catchups)
    }
}

impl SyncReport for SyncStatus {
    fn status(&self) -> Value {
        let i = self.inner.lock();
        json!({
            "mode": "redis",
            "redis_connected": i.connected,
            "in_sync": i.cause.is_none(),
            "cause": i.cause,
            "relay_down": i.relay_down,
            "last_sync_at": i.last_sync_at,
            "last_error": i.last_error,
            "disconnected_seconds": i.disconnected_since.map(|t| t.elapsed().as_secs_f64()),
            "liveness_timeout_seconds": i.liveness_timeout.map(|d| d.as_secs_f64()),
            "staleness_bound_seconds": i.staleness_bound.map(|d| d.as_secs_f64()),
            "rounds": i.rounds,
            "full_fetches": i.full_fetches,
            "catchups": i.catchups,
            "content_hash": i.content_hash,
            "disk_snapshot": i.disk,
            "pubsub": i.pubsub.map(|m| match m {
                redis::PubSub::Plain => "plain",
                redis::PubSub::Sharded => "sharded",
            }),
        })
    }
}

/// The running sync: its status and task.
pub struct SyncHandle {
    pub status: Arc<SyncStatus>,
    pub task: JoinHandle<()>,
}

/// The state the loop owns.
pub struct SyncLoop {
    settings: SyncSettings,
    keys: Keys,
    schema: Arc<Schema>,
    store: Arc<SnapshotStore>,
    metrics: SyncMetrics,
    snapshot_metrics: SnapshotMetrics,
    status: Arc<SyncStatus>,
    /// One client, or on Redis Cluster one per primary: `client()` is the slot owner's.
    redis: redis::Redis,
    subscriber: SubscriberClient,
    /// On a cluster, the node the subscriber is connected to (it follows the slot's owner).
    subscriber_node: Option<fred::types::config::Server>,
    /// The last snapshot this loop built or loaded: its stored values are what log catch-up
    /// applies changes to.
    snapshot: Arc<Snapshot>,
    /// `snapshot`'s position once it holds data from Redis or disk; `None` while it holds
    /// schema defaults.
    position: Option<Position>,
    /// The content hash of the values at `position` as Redis held them (`crate::content_hash`);
    /// `None` with `position`.
    hash: Option<ContentHash>,
    /// The disk snapshot writer's latest job: the snapshot and its content hash.
    disk: Option<watch::Sender<DiskJob>>,
    /// When this process started (RFC 3339), for the heartbeat.
    started_at: String,
    /// The (epoch, version) of the last heartbeat written: a new one is reported at once.
    reported: Option<(u64, u64)>,
    /// Wakes the heartbeat task at once (a round moved the served version).
    beat_now: Arc<Notify>,
    /// The latest subscriber `PING` round trips (the adaptive liveness timeout).
    rtts: VecDeque<Duration>,
    /// When a Redis command last succeeded (round or ping).
    last_ok: Option<Instant>,
    /// The liveness warning of the current outage was logged (reset by a successful ping).
    liveness_warned: bool,
}

/// Loads the disk snapshot (when configured and valid) into the store, connects, and spawns
/// the loop. Returns at once: the read API may serve while Redis is still unreachable.
pub fn start(
    settings: SyncSettings,
    schema: Arc<Schema>,
    store: Arc<SnapshotStore>,
    metrics: SyncMetrics,
    snapshot_metrics: SnapshotMetrics,
    shutdown: Shutdown,
) -> Result<SyncHandle, RedisError> {
    let redis = redis::Redis::new(&settings.redis_url, &settings.connect)?;
    let subscriber_url = settings
        .subscriber_redis_url
        .as_deref()
        .unwrap_or(&settings.redis_url);
    let keys = Keys::new(&settings.namespace);
    let (subscriber_node, subscriber) =
        redis.subscriber_for(&keys.changes, subscriber_url, &settings.connect)?;
    let status = Arc::new(SyncStatus::default());
    let mut lp = SyncLoop {
        keys,
        snapshot: store.load(),
        settings,
        schema,
        store,
        metrics,
        snapshot_metrics,
        status: status.clone(),
        redis,
        subscriber,
        subscriber_node,
        position: None,
        hash: None,
        disk: None,
        started_at: rfc3339(std::time::SystemTime::now()),
        reported: None,
        beat_now: Arc::new(Notify::new()),
        rtts: VecDeque::with_capacity(freshness::RTT_SAMPLES),
        last_ok: None,
        liveness_warned: false,
    };
    lp.load_disk_snapshot();
    // The file's bytes and its decoded maps are gone; only the snapshot stays (crate::heap).
    // Off the start path: the listeners bind meanwhile.
    crate::heap::release_free_memory_soon();
    let mut writer = None;
    if let Some(path) = lp.settings.snapshot_path.clone() {
        let (tx, rx) = watch::channel(None);
        lp.disk = Some(tx);
        writer = Some(tokio::spawn(write_disk_snapshots(
            DiskWriter {
                path,
                cluster_id: lp.settings.cluster_id.clone(),
                metrics: lp.metrics.clone(),
                status: lp.status.clone(),
            },
            rx,
            shutdown.clone(),
        )));
    }
    // The task ends once the loop stopped and the disk writer wrote what was pending.
    let task = tokio::spawn(async move {
        lp.run(shutdown).await;
        if let Some(writer) = writer {
            let _ = writer.await;
        }
    });
    Ok(SyncHandle { status, task })
}

/// The latest snapshot to write, with its content hash.
type DiskJob = Option<(Arc<Snapshot>, Option<ContentHash>)>;

/// What the disk snapshot writer needs.
struct DiskWriter {
    path: PathBuf,
    cluster_id: String,
    metrics: SyncMetrics,
    status: Arc<SyncStatus>,
}

/// Writes the latest snapshot at most once a second (debounced), atomically, keeping the
/// previous generation. The loop hands over the snapshot itself (an `Arc`); its stored values
/// are copied out here, only for the snapshots actually written. A failed write (disk full,
/// read-only, a directory in the way) is retried with back-off ([`write_retry_delay`]) until
/// it succeeds — always with the latest snapshot — so the file catches up without waiting for
/// the next change; each failure is counted, the first of a run is logged, and so is the
/// recovery. On shutdown, a snapshot not written yet (inside the debounce) is written once
/// more before the task ends — the sync task waits for it — so a graceful restart never comes
/// back on an older version than it served.
async fn write_disk_snapshots(w: DiskWriter, mut rx: watch::Receiver<DiskJob>, shutdown: Shutdown) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            res = rx.changed() => if res.is_err() { return write_pending(&w, &mut rx).await },
            () = &mut stop => return write_pending(&w, &mut rx).await,
        }
        let mut retry: Option<Duration> = None;
        let mut failures = 0u64;
        loop {
            let Some((snapshot, hash)) = rx.borrow_and_update().clone() else {
                break;
            };
            match write_one(&w, snapshot, hash).await {
                Ok(version) => {
                    if failures > 0 {
                        tracing::info!(path = %w.path.display(), version, failures, "disk snapshot written again");
                    } else {
                        tracing::debug!(path = %w.path.display(), version, "disk snapshot written");
                    }
                    break;
                }
                Err(error) => {
                    failures += 1;
                    let delay = write_retry_delay(retry);
                    retry = Some(delay);
                    if failures == 1 {
                        tracing::warn!(path = %w.path.display(), %error, "cannot write the disk snapshot; retrying with back-off");
                    }
                    w.status.update(|s| {
                        let d = s.disk.get_or_insert_with(DiskStatus::default);
                        d.write_failures = failures;
                    });
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = &mut stop => return write_pending(&w, &mut rx).await,
                    }
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = &mut stop => return write_pending(&w, &mut rx).await,
        }
    }
}

/// At shutdown: the latest snapshot, if one arrived since the last write (one attempt).
async fn write_pending(w: &DiskWriter, rx: &mut watch::Receiver<DiskJob>) {
    if !rx.has_changed().unwrap_or(true) {
        return;
    }
    let Some((snapshot, hash)) = rx.borrow_and_update().clone() else {
        return;
    };
    match write_one(w, snapshot, hash).await {
        Ok(version) => {
            tracing::debug!(path = %w.path.display(), version, "disk snapshot written at shutdown")
        }
        Err(error) => {
            tracing::warn!(path = %w.path.display(), %error, "cannot write the disk snapshot at shutdown")
        }
    }
}

/// One atomic write of `snapshot`; its version, or the error as text. Updates the metrics and
/// `/status` either way.
async fn write_one(
    w: &DiskWriter,
    snapshot: Arc<Snapshot>,
    hash: Option<ContentHash>,
) -> Result<u64, String> {
    let version = snapshot.position.version;
    let p = w.path.clone();
    let cluster_id = w.cluster_id.clone();
    let result = match tokio::task::spawn_blocking(move || {
        // O(n): every stored value decoded from its JSON, then encoded into the file — off
        // the runtime's threads.
        let file = disk_snapshot(&snapshot, &cluster_id, hash);
        drop(snapshot);
        let saved = disk::save(&p, &file);
        // The file's encoding was the size of the snapshot (crate::heap).
        drop(file);
        crate::heap::release_free_memory();
        saved
    })
    .await
    {
        Ok(r) => r.map_err(|e| Chain(&e).to_string()),
        Err(e) => Err(format!("the write task failed: {e}")),
    };
    match &result {
        Ok(()) => {
            w.metrics
                .snapshot_disk_version
                .set(i64::try_from(version).unwrap_or(i64::MAX));
            w.status.update(|s| {
                let d = s.disk.get_or_insert_with(DiskStatus::default);
                d.file_version = Some(version);
                d.write_failures = 0;
                d.last_write_error = None;
                d.last_written_at = Some(now_rfc3339());
            });
        }
        Err(error) => {
            w.metrics.snapshot_write_failures.inc();
            w.status.update(|s| {
                let d = s.disk.get_or_insert_with(DiskStatus::default);
                d.last_write_error = Some(error.clone());
            });
        }
    }
    result.map(|()| version)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The disk file's form of a snapshot.
fn disk_snapshot(snapshot: &Snapshot, cluster_id: &str, hash: Option<ContentHash>) -> DiskSnapshot {
    // One pass, each value decoded once: `stored_versioned` is `stored` with the versions, plus
    // the keys back at their default (`None`), which have a version and no value.
    let mut values = BTreeMap::new();
    let mut versions = BTreeMap::new();
    for (key, value, version) in snapshot.stored_versioned() {
        if let Some(value) = value {
            values.insert(key.to_owned(), value.into_owned());
        }
        versions.insert(key.to_owned(), version);
    }
    DiskSnapshot {
        content_hash: hash.map(ContentHash::to_hex),
        namespace: snapshot.namespace.to_string(),
        cluster_id: cluster_id.to_owned(),
        epoch: snapshot.position.epoch,
        version: snapshot.position.version,
        generation: snapshot.position.generation,
        schema_hash: snapshot.schema_hash.to_string(),
        saved_at: now_rfc3339(),
        values,
        versions: Some(versions),
    }
}

/// The snapshot of a whole Redis image at `position`. Each item carries the version that last
/// set it. A key the image lacks is at its default, and Redis does not say since when: it keeps
/// the version it had in `previous` (the snapshot served until now) when it was at its default
/// there too (its value did not change), else it changed at some version up to the image's and
/// takes `position`'s.
fn image_snapshot(
    schema: &Schema,
    position: Position,
    image: &Image,
    previous: &Snapshot,
) -> Snapshot {
    let items = image
        .items
        .iter()
        .map(|(k, item)| (k.as_str(), Some(&item.value), item.version));
    let defaults = schema
        .keys()
        .iter()
        .filter(|def| !image.items.contains_key(&*def.name))
        .map(|def| {
            let version = match previous.get(&def.name) {
                Some(e) if e.is_default => e.version,
                _ => position.version,
            };
            (&*def.name, None, version)
        });
    Snapshot::build_versioned(schema, position, Source::Redis, items.chain(defaults))
}

/// How a round ended.
enum Outcome {
    InSync,
    Keep(Keep),
}

impl SyncLoop {
    /// The cold start from disk: the newest snapshot file that verifies and is ours, else the
    /// previous generation, else none (`disk::choose`); `/status` and
    /// `rtconfig_snapshot_disk_loaded` say which and why. A temporary file a crashed write left
    /// behind is removed.
    fn load_disk_snapshot(&mut self) {
        let Some(path) = self.settings.snapshot_path.clone() else {
            return;
        };
        match disk::remove_stale_temp(&path) {
            Ok(true) => {
                tracing::info!(path = %path.display(), "removed a temporary snapshot file left by an interrupted write")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %Chain(&e), "cannot remove the temporary snapshot file")
            }
        }
        let choice =
            disk::load_generations(&path, &self.settings.namespace, &self.settings.cluster_id);
        let why = choice.why();
        if choice.found_damage() {
            self.metrics.anomaly(AnomalyKind::bad_disk_snapshot);
        }
        let mut loaded = None;
        let mut file_version = None;
        match choice.snapshot {
            Some((snap, generation)) => {
                let position = snap.position();
                file_version = Some(position.version);
                let snapshot = Arc::new(Snapshot::build_versioned(
                    &self.schema,
                    position,
                    Source::Disk,
                    snap.stored_versioned(),
                ));
                match self.store.publish_shared(snapshot.clone()) {
                    Ok(_) => {
                        if generation == Generation::Newest {
                            tracing::info!(path = %path.display(), version = position.version, epoch = position.epoch, "serving the disk snapshot until Redis confirms");
                        } else {
                            tracing::warn!(path = %path.display(), version = position.version, epoch = position.epoch, reason = %why, "serving the previous disk snapshot until Redis confirms");
                        }
                        self.snapshot = snapshot;
                        self.position = Some(position);
                        self.hash = Some(snap.content_hash());
                        let hash = snap.content_hash().to_hex();
                        self.status.update(|s| s.content_hash = Some(hash));
                        loaded = Some(generation);
                    }
                    Err(e) => tracing::warn!(error = %e, "disk snapshot not used"),
                }
            }
            None if choice.found_damage() => {
                tracing::warn!(path = %path.display(), reason = %why, "disk snapshot ignored")
            }
            None => tracing::info!(path = %path.display(), "no disk snapshot yet"),
        }
        self.metrics.disk_loaded(match loaded {
            Some(Generation::Newest) => DiskGeneration::newest,
            Some(Generation::Previous) => DiskGeneration::previous,
            None => DiskGeneration::none,
        });
        if let Some(v) = file_version {
            self.metrics
                .snapshot_disk_version
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        }
        self.status.update(|s| {
            s.disk = Some(DiskStatus {
                path: path.display().to_string(),
                loaded,
                loaded_because: why,
                file_version,
                ..DiskStatus::default()
            });
        });
    }

    fn jittered(&self) -> Duration {
        let factor = rand::thread_rng().gen_range(0.8..=1.2);
        self.settings.resync_interval.mul_f64(factor)
    }

    async fn run(mut self, shutdown: Shutdown) {
        let mut messages = self.subscriber.message_rx();
        let mut sub_reconnects = self.subscriber.reconnect_rx();
        let mut sub_errors = self.subscriber.error_rx();
        let Ok(first_client) = self.client() else {
            tracing::error!("no redis node to connect to; the sync loop stops");
            return;
        };
        let mut cmd_errors = first_client.error_rx();
        let mut ranges = self.redis.watch_ranges();
        self.redis.start();
        redis::start(&self.subscriber);
        let stop = shutdown.wait();
        tokio::pin!(stop);
        let timer = tokio::time::sleep(self.jittered());
        tokio::pin!(timer);
        let mut ping = tokio::time::interval(self.settings.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first beat after one interval, when there is something to report.
        // The heartbeat runs in its own task: a hung Pub/Sub link or a slow round never stops
        // it.
        tokio::spawn(
            Heartbeater {
                redis: self.redis.clone(),
                store: self.store.clone(),
                status: self.status.clone(),
                field: self.keys.sidecars.clone(),
                instance_id: self.settings.instance_id.clone(),
                interval: self.settings.resync_interval,
                timeout: self.settings.connect.command_timeout,
                started_at: self.started_at.clone(),
                applied: None,
                wake: self.beat_now.clone(),
            }
            .run(shutdown.clone()),
        );
        self.status.update(|s| {
            s.liveness_timeout = Some(self.liveness_timeout());
            s.staleness_bound = Some(self.settings.staleness_bound(DEFAULT_RELAY_INTERVAL));
        });
        loop {
            tokio::select! {
                msg = messages.recv() => match msg {
                    Ok(m) => {
                        // A message on the subscriber connection proves the link alive as a
                        // PONG would (a hung Redis sends nothing): while hints flow, the next
                        // liveness ping is due one interval after the latest, so a stream of
                        // changes costs no pings. After a failed check the pings go on: a
                        // successful one is what resyncs.
                        if self.status.cause() != Some("liveness_failed") {
                            self.last_ok = Some(Instant::now());
                            ping.reset();
                        }
                        // The message's bytes, shared (no copy).
                        let hint = m.value.as_bytes_str().and_then(|t| Hint::parse(&t));
                        match plan::plan_hint(&self.state(), hint.as_ref()) {
                            HintAction::Apply { to, changes, hash } => {
                                if self.apply_hint(to, &changes, hash) {
                                    self.metrics.message(MessageResult::applied);
                                } else {
                                    self.metrics.message(MessageResult::hash_mismatch);
                                    tracing::warn!(version = to.version, "the hint's changeset does not lead to its content hash; catching up from the log");
                                    self.resync(ResyncReason::message).await;
                                }
                            }
                            HintAction::Newer => {
                                self.metrics.message(MessageResult::newer);
                                self.resync(ResyncReason::message).await;
                            }
                            HintAction::Same => {
                                // The relay's rebuild publishes the version it rebuilt at
                                // (Redis came back empty, or was flushed): verify now, not on
                                // the timer.
                                self.metrics.message(MessageResult::same);
                                self.resync(ResyncReason::message).await;
                            }
                            HintAction::Duplicate => {
                                self.metrics.message(MessageResult::duplicate);
                                if self.status.cause().is_some() {
                                    self.resync(ResyncReason::message).await;
                                }
                            }
                            HintAction::Invalid => {
                                self.metrics.message(MessageResult::invalid);
                                self.resync(ResyncReason::decode_error).await;
                            }
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        self.metrics.message(MessageResult::lagged);
                        tracing::warn!(missed = n, "change hints lagged; resyncing");
                        self.resync(ResyncReason::lagged).await;
                    }
                    Err(RecvError::Closed) => break,
                },
                ev = sub_reconnects.recv() => match ev {
                    Ok(_) | Err(RecvError::Lagged(_)) => self.on_reconnect().await,
                    Err(RecvError::Closed) => break,
                },
                ev = sub_errors.recv() => if let Ok((e, _)) = ev { self.on_error(&e) },
                ev = cmd_errors.recv() => if let Ok((e, _)) = ev { self.on_error(&e) },
                () = slot_table_changed(&mut ranges) => {
                    if self.follow_slot_owner().await {
                        messages = self.subscriber.message_rx();
                        sub_reconnects = self.subscriber.reconnect_rx();
                        sub_errors = self.subscriber.error_rx();
                        redis::start(&self.subscriber);
                    }
                }
                () = &mut timer => {
                    self.resync(ResyncReason::timer).await;
                    timer.as_mut().reset(tokio::time::Instant::now() + self.jittered());
                }
                _ = ping.tick() => self.ping().await,
                () = &mut stop => break,
            }
        }
        let _ = self.subscriber.quit().await;
        self.redis.quit().await;
        tracing::debug!("sync loop stopped");
    }

    /// The client for this namespace's slot.
    fn client(&self) -> Result<Client, RedisError> {
        self.redis.client_for(&self.keys.meta)
    }

    /// On a cluster whose slot table moved this namespace's slot to another node: a new
    /// subscriber on that node (the old one is closed). Returns whether it was replaced; the
    /// new one's connection then resubscribes and resyncs like any reconnect.
    async fn follow_slot_owner(&mut self) -> bool {
        let owner = self.redis.owner_of(&self.keys.changes);
        if owner.is_none() || owner == self.subscriber_node {
            return false;
        }
        let url = self
            .settings
            .subscriber_redis_url
            .clone()
            .unwrap_or_else(|| self.settings.redis_url.clone());
        match self
            .redis
            .subscriber_for(&self.keys.changes, &url, &self.settings.connect)
        {
            Ok((node, subscriber)) => {
                tracing::info!(
                    from = ?self.subscriber_node.as_ref().map(ToString::to_string),
                    to = ?node.as_ref().map(ToString::to_string),
                    "the namespace's slot moved; subscribing on its new owner"
                );
                let old = std::mem::replace(&mut self.subscriber, subscriber);
                self.subscriber_node = node;
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(1), old.quit()).await;
                });
                true
            }
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "cannot build a subscriber for the slot's new owner");
                false
            }
        }
    }

    async fn on_reconnect(&mut self) {
        tracing::debug!("redis connection (re)established; resubscribing");
        // Subscribe (again) and wait for the confirmation before reading, so no change can
        // slip between the read and the subscription. Bounded: a hung link must not stall the
        // loop (the liveness ping reports it).
        // On a cluster node of Redis ≥ 7 the relay publishes with `SPUBLISH` (the hint stays on
        // the slot's own shard): subscribe with `SSUBSCRIBE` as well. The plain subscription is
        // kept, so a relay that still publishes plainly (a rolling upgrade) is heard too.
        let mode = redis::PubSub::choose(
            self.subscriber_node.is_some(),
            self.subscriber.server_version().map(|v| v.major),
        );
        let channel = self.keys.changes.clone();
        let subscriber = self.subscriber.clone();
        let subscribe = async move {
            subscriber.subscribe(channel.as_str()).await?;
            if mode == redis::PubSub::Sharded {
                // Refused (an ACL without `+ssubscribe`): plain only, and said so.
                if let Err(e) = subscriber.ssubscribe(channel.as_str()).await {
                    tracing::warn!(error = %e, "SSUBSCRIBE refused: only plain Pub/Sub hints arrive (a sharded relay's reach this sidecar by its resync timer)");
                    return Ok(redis::PubSub::Plain);
                }
            }
            Ok::<_, fred::error::Error>(mode)
        };
        match tokio::time::timeout(self.liveness_timeout(), subscribe).await {
            Ok(Ok(mode)) => {
                self.status.update(|s| s.pubsub = Some(mode));
                self.command_ok();
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "subscribe failed; the resync timer keeps the snapshot fresh");
            }
            Err(_) => {
                tracing::warn!("subscribe timed out; the resync timer keeps the snapshot fresh");
            }
        }
        self.resync(ResyncReason::reconnect).await;
    }

    fn on_error(&mut self, e: &fred::error::Error) {
        self.status.update(|s| s.last_error = Some(e.to_string()));
        tracing::debug!(error = %e, "redis error");
        self.update_link();
    }

    /// A Redis command just succeeded.
    fn command_ok(&mut self) {
        self.last_ok = Some(Instant::now());
        self.update_link();
    }

    /// Re-derives `redis_connected` from the clients' real state and the last successful
    /// command (`freshness::link_up`); logs each change once, with the time spent in the state
    /// it leaves.
    fn update_link(&mut self) {
        let clients =
            self.client().is_ok_and(|c| c.is_connected()) && self.subscriber.is_connected();
        let window = self.settings.ping_interval + self.liveness_timeout();
        let up = freshness::link_up(clients, self.last_ok.map(|t| t.elapsed()), window);
        let mut changed = None;
        self.status.update(|s| {
            if s.connected != up || s.link_since.is_none() {
                let held = s.link_since.map(|t| t.elapsed());
                changed = Some(freshness::link_change(up, s.ever_connected, held));
                s.ever_connected |= up;
                s.connected = up;
                s.link_since = Some(Instant::now());
                s.disconnected_since = if up { None } else { Some(Instant::now()) };
            }
        });
        self.metrics.redis_connected.set(i64::from(up));
        let tenths = |d: Duration| (d.as_secs_f64() * 10.0).round() / 10.0;
        match changed {
            None => {}
            Some(freshness::LinkChange::Connected) => tracing::info!("redis connected"),
            Some(freshness::LinkChange::Reconnected(d)) => {
                let secs = tenths(d);
                tracing::info!(after_seconds = secs, "redis reconnected after {secs:.1} s")
            }
            Some(freshness::LinkChange::Disconnected(d)) => {
                let secs = tenths(d);
                tracing::warn!(
                    connected_seconds = secs,
                    "redis disconnected after {secs:.1} s connected; serving the last snapshot"
                )
            }
            Some(freshness::LinkChange::NotReachableYet) => {
                tracing::warn!("redis not reachable yet; serving the last snapshot")
            }
        }
    }

    /// The current liveness timeout: [`freshness::liveness_timeout`] over the latest round
    /// trips, between `ping_timeout` and the cap.
    fn liveness_timeout(&self) -> Duration {
        let rtts: Vec<Duration> = self.rtts.iter().copied().collect();
        freshness::liveness_timeout(
            &rtts,
            self.settings.ping_timeout,
            self.settings.liveness_cap(),
        )
    }

    async fn ping(&mut self) {
        let timeout = self.liveness_timeout();
        let started = Instant::now();
        let ping = self.subscriber.ping::<RedisValue>(None);
        match tokio::time::timeout(timeout, ping).await {
            Ok(Ok(_)) => {
                if self.rtts.len() == freshness::RTT_SAMPLES {
                    self.rtts.pop_front();
                }
                self.rtts.push_back(started.elapsed());
                let next = self.liveness_timeout();
                if next != timeout {
                    self.metrics.liveness_timeout.set(next.as_secs_f64());
                    self.status.update(|s| s.liveness_timeout = Some(next));
                }
                self.command_ok();
                self.liveness_warned = false;
                // A live link again after a failed check: verify now rather than on the timer.
                if self.status.cause() == Some("liveness_failed") {
                    self.resync(ResyncReason::reconnect).await;
                }
            }
            Ok(Err(e)) => self.liveness_failed(&e.to_string()),
            Err(_) => self.liveness_failed(&format!(
                "PING timed out after {:.1} s",
                timeout.as_secs_f64()
            )),
        }
    }

    /// A failed liveness check: stale at once. Warned once per outage — until a ping succeeds
    /// again — although rounds in between set the cause to `redis_unavailable`.
    fn liveness_failed(&mut self, why: &str) {
        self.status.update(|s| {
            s.cause = Some("liveness_failed");
            s.last_error = Some(why.to_owned());
        });
        self.store.mark_cut_off();
        self.update_link();
        if !std::mem::replace(&mut self.liveness_warned, true) {
            tracing::warn!(
                error = why,
                "redis subscriber liveness check failed; reads are marked stale"
            );
        }
    }

    /// What the plan decides on.
    fn state(&self) -> plan::State<'_> {
        plan::State {
            cluster_id: &self.settings.cluster_id,
            position: self.position,
            hash: self.hash,
        }
    }

    /// One sync round.
    pub async fn resync(&mut self, reason: ResyncReason) {
        self.metrics.resync(reason);
        let outcome = self.round().await;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        match outcome {
            Ok(Outcome::InSync) => self.status.update(|s| {
                s.rounds += 1;
                if s.relay_down {
                    s.cause = Some("relay_down");
                } else {
                    s.cause = None;
                }
                s.last_sync_at = Some(now);
            }),
            Ok(Outcome::Keep(Keep::NotConfirmed(cause))) => self.status.update(|s| {
                s.rounds += 1;
                s.cause = Some(cause.as_str());
            }),
            Ok(Outcome::Keep(Keep::Refused(cause))) => {
                self.store.mark_cut_off();
                self.status.update(|s| {
                    s.rounds += 1;
                    s.cause = Some(cause.as_str());
                });
            }
            Err(e) => {
                self.redis.command_failed();
                self.status.update(|s| {
                    s.rounds += 1;
                    s.cause = Some("redis_unavailable");
                    s.last_error = Some(Chain(&e).to_string());
                });
                tracing::debug!(error = %Chain(&e), reason = reason.as_str(), "sync round failed");
            }
        }
        self.snapshot_metrics.observe_store(&self.store);
        let served = self.store.load().position;
        if self.position.is_some() && self.reported != Some((served.epoch, served.version)) {
            self.reported = Some((served.epoch, served.version));
            self.beat_now.notify_one();
        }
    }

    /// Gathers `SYNC_READ`, asks the plan, performs its answer.
    async fn round(&mut self) -> Result<Outcome, RedisError> {
        let after = plan::log_after(&self.state());
        let sent = Instant::now();
        let client = self.client()?;
        let reply = redis::eval_ro(
            &client,
            &scripts::SYNC_READ,
            &[self.keys.meta.as_str(), self.keys.log.as_str()],
            &[after.to_string(), CATCH_UP_MAX.to_string()],
        )
        .await?;
        let read = SyncRead::decode(&reply)?;
        self.command_ok();
        let relay = read
            .meta
            .relay_interval_ms
            .map_or(DEFAULT_RELAY_INTERVAL, Duration::from_millis);
        let bound = self.settings.staleness_bound(relay);
        self.store.set_stale_after(bound);
        self.metrics.staleness_bound.set(bound.as_secs_f64());
        self.status.update(|s| s.staleness_bound = Some(bound));
        let round = plan::plan(&self.state(), &read);
        if let Some(down) = round.relay_down {
            self.status.update(|s| s.relay_down = down);
        }
        let outcome = match round.action {
            Action::Keep(keep) => {
                if keep == Keep::NotConfirmed(Cause::RedisBehind) {
                    tracing::warn!(
                        redis_version = read.meta.version,
                        our_version = self.position.map(|p| p.version),
                        "redis is behind this sidecar; not going back"
                    );
                }
                return Ok(self.kept(keep));
            }
            Action::InSync => Outcome::InSync,
            Action::CatchUp {
                to,
                changes,
                versions,
            } => {
                let got = self.catch_up(to, &changes, &versions);
                if plan::verify_applied(read.meta.content_hash, got) {
                    Outcome::InSync
                } else {
                    self.metrics.anomaly(AnomalyKind::content_hash_mismatch);
                    tracing::warn!(version = to.version, expected = ?read.meta.content_hash.map(ContentHash::to_hex), got = %got, "the values caught up from the log do not match redis's content hash; fetching the whole image");
                    self.full_fetch().await?
                }
            }
            Action::FullFetch(reason) => {
                match reason {
                    FetchReason::LogDamaged => self.metrics.anomaly(AnomalyKind::bad_log_entry),
                    FetchReason::ContentHash => {
                        self.metrics.anomaly(AnomalyKind::content_hash_mismatch);
                        tracing::warn!(
                            epoch = read.meta.epoch,
                            version = read.meta.version,
                            expected = ?read.meta.content_hash.map(ContentHash::to_hex),
                            served = ?self.hash.map(ContentHash::to_hex),
                            "same version as redis but other content (content hash); fetching the whole image"
                        );
                    }
                    _ => {}
                }
                self.full_fetch().await?
            }
        };
        if matches!(outcome, Outcome::InSync) {
            if self.store.load().source != Source::Redis {
                // Same position, now confirmed by Redis (e.g. a disk snapshot at cold start).
                let confirmed = self.snapshot.with_source(Source::Redis);
                self.swap(Arc::new(confirmed));
            }
            // In sync with Redis; with the ledger as of the relay's last beat (which the relay
            // moves only while Redis covers the ledger): that is what the age counts from.
            match freshness::proven_at(sent, read.time, read.meta.relay_at) {
                Some(at) => self.store.confirm_at(at),
                None => self.store.mark_cut_off(),
            }
            if round.relay_down == Some(true) {
                self.store.mark_cut_off();
            }
        }
        Ok(outcome)
    }

    /// Counts what the plan refused, and keeps serving.
    fn kept(&self, keep: Keep) -> Outcome {
        match keep.cause() {
            Cause::ForeignRedis => self.metrics.anomaly(AnomalyKind::foreign_redis),
            Cause::RedisOlderEpoch => self.metrics.anomaly(AnomalyKind::older_epoch),
            Cause::RedisBehind => self.metrics.anomaly(AnomalyKind::redis_behind),
            Cause::RedisEmpty | Cause::RedisIncomplete => {}
        }
        Outcome::Keep(keep)
    }

    /// Applies the log's changes to the served values, each key at the version of the log
    /// entry that last changed it; returns the new content hash.
    fn catch_up(
        &mut self,
        to: Position,
        changes: &std::collections::BTreeMap<String, Value>,
        versions: &std::collections::BTreeMap<String, u64>,
    ) -> ContentHash {
        self.metrics.catchups.inc();
        self.status.update(|s| s.catchups += 1);
        let hash = self.changed_hash(changes);
        self.apply_changes(to, changes, |k| versions.get(k).copied(), hash);
        hash
    }

    /// The content hash once `changes` are applied to the served values.
    fn changed_hash(&self, changes: &std::collections::BTreeMap<String, Value>) -> ContentHash {
        let base = self.snapshot.clone();
        match self.hash {
            // O(k log n): each changed key's stored value is looked up.
            Some(before) => plan::hash_after_changes(before, changes, |k| base.stored_value(k)),
            // Nothing to move from: hash the result whole.
            None => {
                let unchanged = base.stored().filter(|(k, _)| !changes.contains_key(*k));
                ContentHash::of(
                    unchanged.chain(changes.iter().map(|(k, v)| (k.as_str(), Cow::Borrowed(v)))),
                )
            }
        }
    }

    /// Applies `changes` to the served snapshot (O(k log n), [`Snapshot::apply`]) and swaps
    /// the result in, at `to`. `version_of` gives the version that changed a key (`None`:
    /// `to`'s).
    fn apply_changes(
        &mut self,
        to: Position,
        changes: &std::collections::BTreeMap<String, Value>,
        version_of: impl Fn(&str) -> Option<u64>,
        hash: ContentHash,
    ) {
        let snapshot = self.snapshot.apply(
            &self.schema,
            to,
            Source::Redis,
            changes.iter().map(|(k, v)| {
                let version = version_of(k).unwrap_or(to.version);
                (k.as_str(), Some(v), version)
            }),
        );
        for key in changes.keys() {
            if let Some(r) = snapshot.rejected().find(|r| r.key == *key) {
                tracing::warn!(key = %r.key, rule = r.rule, "value rejected by the local schema (drift); serving the default");
            }
        }
        self.hash = Some(hash);
        self.position = Some(to);
        self.swap(Arc::new(snapshot));
    }

    /// Applies a hint's inlined changeset without reading Redis, when it leads to the hint's
    /// content hash; `false` (nothing changed) when it does not. Not a confirmation: the
    /// freshness clock and the periodic resync are untouched (DESIGN §4: the hint is only a
    /// hint).
    fn apply_hint(
        &mut self,
        to: Position,
        changes: &std::collections::BTreeMap<String, Value>,
        expected: ContentHash,
    ) -> bool {
        let got = self.changed_hash(changes);
        if !plan::verify_applied(Some(expected), got) {
            return false;
        }
        // One changeset: every key it carries changed at its version.
        self.apply_changes(to, changes, |_| None, got);
        self.snapshot_metrics.observe_store(&self.store);
        true
    }

    async fn full_fetch(&mut self) -> Result<Outcome, RedisError> {
        self.metrics.full_fetches.inc();
        self.status.update(|s| s.full_fetches += 1);
        let client = self.client()?;
        let reply = redis::eval_ro(
            &client,
            &scripts::FULL_READ,
            &[self.keys.meta.as_str(), self.keys.items.as_str()],
            &[],
        )
        .await?;
        let image = Image::decode(&reply)?;
        let action = plan::plan_image(&self.state(), &image);
        if !matches!(action, ImageAction::Keep(_)) && image.bad_items > 0 {
            self.metrics.anomaly(AnomalyKind::bad_item);
            tracing::warn!(
                bad_items = image.bad_items,
                "redis items that are not valid envelopes were ignored"
            );
        }
        Ok(match action {
            ImageAction::Keep(keep) => self.kept(keep),
            ImageAction::Incomplete => {
                // Evicted or half-written: never apply an image that is not whole.
                self.metrics.anomaly(AnomalyKind::incomplete_image);
                Outcome::Keep(Keep::NotConfirmed(Cause::RedisIncomplete))
            }
            ImageAction::Behind => self.kept(Keep::NotConfirmed(Cause::RedisBehind)),
            ImageAction::Apply(position) => {
                self.hash = Some(ContentHash::of(
                    image
                        .items
                        .iter()
                        .map(|(k, item)| (k.as_str(), &item.value)),
                ));
                let snapshot = image_snapshot(&self.schema, position, &image, &self.snapshot);
                for r in snapshot.rejected() {
                    tracing::warn!(key = %r.key, rule = r.rule, "value rejected by the local schema (drift); serving the default");
                }
                self.position = Some(position);
                self.swap(Arc::new(snapshot));
                // The reply and the image decoded from it were the size of the namespace.
                let fields = image.fields;
                drop(image);
                drop(reply);
                crate::heap::release_free_memory_soon();
                if fields >= BIG_IMAGE_FIELDS {
                    self.give_back_read_buffer(&client).await;
                }
                Outcome::InSync
            }
        })
    }

    /// After a large full fetch: the connection's read buffer grew to the reply's size and
    /// keeps it as long as the connection lives (16 MiB for 100,000 keys); a new connection
    /// gives it back. Awaited here, within the round, so that no command of this loop is in
    /// flight while the connection is replaced, and the link is up again before the round
    /// reports it (no "redis disconnected" for a deliberate reconnect), unless the reconnect
    /// takes longer than the command timeout; then the round ends without it and the link
    /// shows what it is. Only the heartbeat's
    /// task shares the client; a beat caught in the switch is retried by fred
    /// (`max_command_attempts`), or else sent on the next interval.
    async fn give_back_read_buffer(&mut self, client: &Client) {
        let timeout = self.settings.connect.command_timeout;
        match tokio::time::timeout(timeout, client.force_reconnection()).await {
            Ok(Ok(())) => tracing::debug!("reconnected after a large full fetch"),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "reconnect after a large full fetch failed; fred keeps retrying")
            }
            Err(_) => {
                tracing::debug!(
                    "reconnect after a large full fetch still pending; fred keeps retrying"
                )
            }
        }
    }

    /// Publishes `snapshot`, keeps it as the loop's own, and queues the disk write.
    fn swap(&mut self, snapshot: Arc<Snapshot>) {
        let position = snapshot.position;
        self.snapshot = snapshot.clone();
        let hash = self.hash.map(ContentHash::to_hex);
        self.status.update(|s| s.content_hash = hash);
        match self.store.publish_shared(snapshot.clone()) {
            Ok(true) => {
                self.snapshot_metrics.swaps.inc();
                tracing::debug!(
                    version = position.version,
                    epoch = position.epoch,
                    "snapshot swapped"
                );
            }
            Ok(false) => {}
            Err(PublishError::Older { current, offered }) => {
                tracing::warn!(
                    ?current,
                    ?offered,
                    "refused to go back to an older snapshot"
                );
            }
            Err(e) => tracing::error!(error = %e, "cannot publish snapshot"),
        }
        if let Some(tx) = &self.disk {
            tx.send_replace(Some((snapshot, self.hash)));
        }
    }
}

/// Writes this sidecar's entry in the fleet hash every interval, and at once when the loop
/// says the served version moved (so the fleet view sees a change arrive without waiting up to
/// an interval; one extra `HSET` per change). Its own task with its own timeout: a hung
/// Pub/Sub link or a slow round never stops the heartbeat.
struct Heartbeater {
    /// The fleet hash's node is asked for at each beat (on a cluster it may move).
    redis: redis::Redis,
    store: Arc<SnapshotStore>,
    status: Arc<SyncStatus>,
    field: String,
    instance_id: String,
    interval: Duration,
    timeout: Duration,
    started_at: String,
    /// The (epoch, version) served and when it was first served (RFC 3339): the heartbeat's
    /// `applied_at`, from which the fleet view measures propagation lag.
    applied: Option<((u64, u64), String)>,
    wake: Arc<Notify>,
}

impl Heartbeater {
    async fn run(mut self, shutdown: Shutdown) {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        // The first beat after one interval, when there is something to report.
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + self.interval, self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let wake = self.wake.clone();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = wake.notified() => {}
                () = &mut stop => return,
            }
            self.beat().await;
        }
    }

    async fn beat(&mut self) {
        let snap = self.store.load();
        let at = (snap.position.epoch, snap.position.version);
        let applied_at = match &self.applied {
            Some((p, t)) if *p == at => t.clone(),
            // The first snapshot at a version is built when that version is applied.
            _ => {
                let t = rfc3339(snap.built_at);
                self.applied = Some((at, t.clone()));
                t
            }
        };
        let (connected, cause) = {
            let i = self.status.inner.lock();
            (i.connected, i.cause)
        };
        let beat = Heartbeat {
            version: snap.position.version,
            epoch: snap.position.epoch,
            schema_hash: snap.schema_hash.to_string(),
            status: if self.store.is_stale() { "stale" } else { "ok" }.to_owned(),
            seen_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            interval_ms: Some(self.interval.as_millis() as u64),
            applied_at: Some(applied_at),
            started_at: Some(self.started_at.clone()),
            cause: cause.map(str::to_owned),
            redis_connected: Some(connected),
        };
        let beat = match beat.encode() {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %Chain(&e), "heartbeat not encoded");
                return;
            }
        };
        let client = match self.redis.client_for(&self.field) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %Chain(&e), "heartbeat not written: no node for the fleet hash");
                return;
            }
        };
        let write = client.hset::<(), _, _>(self.field.as_str(), (self.instance_id.as_str(), beat));
        match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "heartbeat not written"),
            Err(_) => tracing::debug!("heartbeat timed out"),
        }
    }
}

#[cfg(test)]
mod disk_writer_tests {
    use super::*;

    #[test]
    fn a_disk_snapshot_holds_every_stored_value_and_every_known_version() {
        use crate::schema::ValueType;
        let schema = Schema::from_keys(
            "demo",
            &[
                ("SET", ValueType::Int, json!(0)),
                ("RESET", ValueType::Int, json!(0)),
                ("BAD", ValueType::Int, json!(0)),
                ("NEVER", ValueType::Int, json!(0)),
            ],
        );
        let s = Snapshot::build_versioned(
            &schema,
            Position::new(1, 9),
            Source::Redis,
            [
                ("SET", Some(json!(1)), 2),
                ("RESET", None, 4),
                ("BAD", Some(json!("not an int")), 5),
                ("GONE", Some(json!(true)), 6),
            ],
        );
        let file = disk_snapshot(&s, "c1", None);
        let values: Vec<(&str, &Value)> = file.values.iter().map(|(k, v)| (&**k, v)).collect();
        assert_eq!(
            values,
            [
                ("BAD", &json!("not an int")),
                ("GONE", &json!(true)),
                ("SET", &json!(1)),
            ]
        );
        let versions: Vec<(&str, u64)> = file
            .versions
            .iter()
            .flatten()
            .map(|(k, v)| (&**k, *v))
            .collect();
        assert_eq!(
            versions,
            [("BAD", 5), ("GONE", 6), ("RESET", 4), ("SET", 2)]
        );
        assert_eq!((file.epoch, file.version), (1, 9));
        assert_eq!(file.cluster_id, "c1");
        // What it holds rebuilds the snapshot, versions included.
        let back = Snapshot::build_versioned(
            &schema,
            file.position(),
            Source::Disk,
            file.stored_versioned(),
        );
        assert_eq!(back.values_json(), s.values_json());
        let v = |s: &Snapshot| -> Vec<u64> { s.entries().map(|e| e.version).collect() };
        assert_eq!(v(&back), v(&s));
    }

    #[test]
    fn an_image_keeps_the_item_versions_and_derives_those_of_defaults() {
        use crate::schema::ValueType;
        let schema = Schema::from_keys(
            "demo",
            &[
                ("SET", ValueType::Int, json!(0)),
                ("STILL_DEFAULT", ValueType::Int, json!(0)),
                ("RESET", ValueType::Int, json!(0)),
                ("NEVER", ValueType::Int, json!(0)),
            ],
        );
        let previous = Snapshot::build_versioned(
            &schema,
            Position::new(1, 5),
            Source::Redis,
            [
                ("SET", Some(json!(1)), 2),
                ("STILL_DEFAULT", None, 4),
                ("RESET", Some(json!(3)), 5),
            ],
        );
        let image = Image {
            meta: crate::redis::wire::Meta::default(),
            items: [(
                "SET".to_owned(),
                crate::redis::wire::Item {
                    value: json!(7),
                    version: 9,
                },
            )]
            .into_iter()
            .collect(),
            bad_items: 0,
            fields: 1,
        };
        let s = image_snapshot(&schema, Position::new(1, 10), &image, &previous);
        let versions: Vec<(&str, u64)> = s.entries().map(|e| (&*e.key, e.version)).collect();
        assert_eq!(
            versions,
            [
                ("SET", 9),
                ("STILL_DEFAULT", 4),
                ("RESET", 10),
                ("NEVER", 0)
            ]
        );
        assert_eq!(s.get("SET").map(|e| e.value()), Some(json!(7)));
    }

    #[test]
    fn failed_writes_are_retried_with_a_doubling_bounded_back_off() {
        let mut last = None;
        let delays: Vec<Duration> = (0..6)
            .map(|_| {
                let d = write_retry_delay(last);
                last = Some(d);
                d
            })
            .collect();
        let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [500, 1000, 2000, 4000, 5000, 5000]);
    }
}
