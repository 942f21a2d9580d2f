//! Prometheus metrics, registered into one explicit registry per process.
//!
//! Names follow DESIGN §7: prefix `rtconfig_`, units in the name, `_total` for counters,
//! bounded labels (routes are the router's patterns, never raw paths).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `rtconfig_http_requests_total` | counter | `route`, `status` |
//! | `rtconfig_http_request_duration_seconds` | histogram | `route` |
//! | `rtconfig_snapshot_version` / `_epoch` | gauge | |
//! | `rtconfig_snapshot_age_seconds` | gauge | seconds since last confirmed in sync (set at scrape) |
//! | `rtconfig_snapshot_stale` | gauge | 1 when readers are told `stale` |
//! | `rtconfig_snapshot_keys` | gauge | |
//! | `rtconfig_snapshot_swaps_total` | counter | |
//! | `rtconfig_snapshot_rejected_values` | gauge | stored values the local schema rejects (drift) |
//! | `rtconfig_ready` | gauge | |
//! | `rtconfig_watchers` | gauge | open long-polls and SSE streams |
//! | `rtconfig_watchers_rejected_total` | counter | refused over `--max-watchers` |
//! | `rtconfig_admin_writes_total` | counter | `result` |
//! | `rtconfig_redis_connected` | gauge | 1 while the Redis connection is up |
//! | `rtconfig_sync_resyncs_total` | counter | `reason`: startup, message, timer, reconnect, lagged, decode_error |
//! | `rtconfig_sync_messages_total` | counter | `result`: newer, duplicate, invalid, lagged |
//! | `rtconfig_sync_full_fetches_total` / `rtconfig_sync_catchups_total` | counter | |
//! | `rtconfig_sync_anomalies_total` | counter | `kind`: foreign_redis, redis_behind, older_epoch, bad_item, incomplete_image, … |
//! | `rtconfig_relay_lag_versions` | gauge | ledger version minus Redis version (max over namespaces) |
//! | `rtconfig_relay_applied_total`, `rtconfig_relay_rebuilds_total`, `rtconfig_relay_errors_total` | counter | |
//! | `rtconfig_relay_foreign_redis` | gauge | 1 while Redis holds another cluster's data (alarm) |
//! | `rtconfig_relay_leader` | gauge | 1 while this admin is the relay leader |
//! | `rtconfig_relay_term` | gauge | the fencing term of this admin's current (or last) leadership |

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::snapshot::SnapshotStore;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

type HistogramFamily = Family<RouteLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 25 µs … ~0.8 s
    Histogram::new(exponential_buckets(0.000_025, 2.0, 16))
}

/// Every metric of the process. Cheap handles: clone a field, not the struct.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RouteStatus, Counter>,
    pub http_duration: HistogramFamily,
    pub snapshot_version: Gauge,
    pub snapshot_epoch: Gauge,
    pub snapshot_age_seconds: Gauge<f64, AtomicU64>,
    pub snapshot_stale: Gauge,
    pub snapshot_keys: Gauge,
    pub snapshot_swaps: Counter,
    pub snapshot_rejected_values: Gauge,
    pub ready: Gauge,
    pub watchers: Gauge,
    pub watchers_rejected: Counter,
    pub admin_writes: Family<ResultLabel, Counter>,
    pub redis_connected: Gauge,
    pub sync_resyncs: Family<ReasonLabel, Counter>,
    pub sync_messages: Family<ResultLabel, Counter>,
    pub sync_full_fetches: Counter,
    pub sync_catchups: Counter,
    pub sync_anomalies: Family<KindLabel, Counter>,
    pub relay_lag_versions: Gauge,
    pub relay_applied: Counter,
    pub relay_rebuilds: Counter,
    pub relay_errors: Counter,
    pub relay_foreign_redis: Gauge,
    pub relay_leader: Gauge,
    pub relay_term: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rtconfig");
        let m = Metrics {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            snapshot_version: Gauge::default(),
            snapshot_epoch: Gauge::default(),
            snapshot_age_seconds: Gauge::default(),
            snapshot_stale: Gauge::default(),
            snapshot_keys: Gauge::default(),
            snapshot_swaps: Counter::default(),
            snapshot_rejected_values: Gauge::default(),
            ready: Gauge::default(),
            watchers: Gauge::default(),
            watchers_rejected: Counter::default(),
            admin_writes: Family::default(),
            redis_connected: Gauge::default(),
            sync_resyncs: Family::default(),
            sync_messages: Family::default(),
            sync_full_fetches: Counter::default(),
            sync_catchups: Counter::default(),
            sync_anomalies: Family::default(),
            relay_lag_versions: Gauge::default(),
            relay_applied: Counter::default(),
            relay_rebuilds: Counter::default(),
            relay_errors: Counter::default(),
            relay_foreign_redis: Gauge::default(),
            relay_leader: Gauge::default(),
            relay_term: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by route pattern and status",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to produce a response (streams: time to the first byte)",
            m.http_duration.clone(),
        );
        registry.register(
            "snapshot_version",
            "Version of the snapshot being served",
            m.snapshot_version.clone(),
        );
        registry.register(
            "snapshot_epoch",
            "Epoch of the snapshot being served",
            m.snapshot_epoch.clone(),
        );
        registry.register(
            "snapshot_age_seconds",
            "Seconds since the served state was last confirmed in sync",
            m.snapshot_age_seconds.clone(),
        );
        registry.register(
            "snapshot_stale",
            "1 when reads are answered with stale=true",
            m.snapshot_stale.clone(),
        );
        registry.register(
            "snapshot_keys",
            "Keys in the served snapshot",
            m.snapshot_keys.clone(),
        );
        registry.register(
            "snapshot_swaps",
            "Snapshots swapped in",
            m.snapshot_swaps.clone(),
        );
        registry.register(
            "snapshot_rejected_values",
            "Stored values the local schema rejects (served as defaults)",
            m.snapshot_rejected_values.clone(),
        );
        registry.register(
            "ready",
            "1 once a usable snapshot is being served",
            m.ready.clone(),
        );
        registry.register(
            "watchers",
            "Open long-polls and SSE streams",
            m.watchers.clone(),
        );
        registry.register(
            "watchers_rejected",
            "Long-polls and SSE streams refused over --max-watchers",
            m.watchers_rejected.clone(),
        );
        registry.register(
            "admin_writes",
            "Admin write requests, by result",
            m.admin_writes.clone(),
        );
        registry.register(
            "redis_connected",
            "1 while the Redis connection is up",
            m.redis_connected.clone(),
        );
        registry.register(
            "sync_resyncs",
            "Sync rounds against Redis, by trigger",
            m.sync_resyncs.clone(),
        );
        registry.register(
            "sync_messages",
            "Pub/Sub change hints received, by result",
            m.sync_messages.clone(),
        );
        registry.register(
            "sync_full_fetches",
            "Full image reads from Redis",
            m.sync_full_fetches.clone(),
        );
        registry.register(
            "sync_catchups",
            "Catch-ups from the Redis change log",
            m.sync_catchups.clone(),
        );
        registry.register(
            "sync_anomalies",
            "Redis states the sidecar refused to apply, by kind",
            m.sync_anomalies.clone(),
        );
        registry.register(
            "relay_lag_versions",
            "Versions committed in the ledger but not yet in Redis",
            m.relay_lag_versions.clone(),
        );
        registry.register(
            "relay_applied",
            "Changesets applied to Redis by the relay",
            m.relay_applied.clone(),
        );
        registry.register(
            "relay_rebuilds",
            "Full rebuilds of a namespace's Redis image",
            m.relay_rebuilds.clone(),
        );
        registry.register(
            "relay_errors",
            "Relay rounds that failed",
            m.relay_errors.clone(),
        );
        registry.register(
            "relay_foreign_redis",
            "1 while Redis holds another cluster's data (the relay refuses to write)",
            m.relay_foreign_redis.clone(),
        );
        registry.register(
            "relay_leader",
            "1 while this admin is the relay leader",
            m.relay_leader.clone(),
        );
        registry.register(
            "relay_term",
            "Fencing term of this admin's current or last relay leadership",
            m.relay_term.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Registers more metrics (the sync loop and relay bring their own).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Refreshes the gauges derived from the snapshot store (called at scrape and on swap).
    pub fn observe_store(&self, store: &SnapshotStore) {
        let snap = store.guard();
        self.snapshot_version
            .set(snap.position.version.min(i64::MAX as u64) as i64);
        self.snapshot_epoch
            .set(snap.position.epoch.min(i64::MAX as u64) as i64);
        self.snapshot_keys.set(snap.entries().len() as i64);
        self.snapshot_rejected_values
            .set(snap.rejected.len() as i64);
        self.snapshot_age_seconds
            .set(store.age().map_or(-1.0, |a| a.as_secs_f64()));
        self.snapshot_stale.set(i64::from(store.is_stale()));
        self.ready.set(i64::from(store.is_ready()));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }

    pub fn resync(&self, reason: &'static str) {
        self.sync_resyncs
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn message(&self, result: &'static str) {
        self.sync_messages
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub fn anomaly(&self, kind: &'static str) {
        self.sync_anomalies.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn admin_write(&self, result: &'static str) {
        self.admin_writes
            .get_or_create(&ResultLabel { result })
            .inc();
    }
}
