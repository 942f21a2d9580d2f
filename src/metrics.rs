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

    pub fn admin_write(&self, result: &'static str) {
        self.admin_writes
            .get_or_create(&ResultLabel { result })
            .inc();
    }
}
