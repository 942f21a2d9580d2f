//! The served snapshot and its readers.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::gauge_value;
use crate::snapshot::SnapshotStore;

/// `rtconfig_snapshot_*`, `rtconfig_ready`, `rtconfig_watchers*`: what a process serving a
/// snapshot (sidecar, dev) exports.
#[derive(Clone)]
pub struct SnapshotMetrics {
    pub version: Gauge,
    pub epoch: Gauge,
    pub age_seconds: Gauge<f64, AtomicU64>,
    pub stale: Gauge,
    pub keys: Gauge,
    pub swaps: Counter,
    pub rejected_values: Gauge,
    pub ready: Gauge,
    pub watchers: Gauge,
    pub watchers_rejected: Counter,
}

impl SnapshotMetrics {
    pub fn register(registry: &mut Registry) -> SnapshotMetrics {
        let m = SnapshotMetrics {
            version: Gauge::default(),
            epoch: Gauge::default(),
            age_seconds: Gauge::default(),
            stale: Gauge::default(),
            keys: Gauge::default(),
            swaps: Counter::default(),
            rejected_values: Gauge::default(),
            ready: Gauge::default(),
            watchers: Gauge::default(),
            watchers_rejected: Counter::default(),
        };
        registry.register(
            "snapshot_version",
            "Version of the snapshot being served",
            m.version.clone(),
        );
        registry.register(
            "snapshot_epoch",
            "Epoch of the snapshot being served",
            m.epoch.clone(),
        );
        registry.register(
            "snapshot_age_seconds",
            "Seconds since the served state was last confirmed in sync",
            m.age_seconds.clone(),
        );
        registry.register(
            "snapshot_stale",
            "1 when reads are answered with stale=true",
            m.stale.clone(),
        );
        registry.register(
            "snapshot_keys",
            "Keys in the served snapshot",
            m.keys.clone(),
        );
        registry.register("snapshot_swaps", "Snapshots swapped in", m.swaps.clone());
        registry.register(
            "snapshot_rejected_values",
            "Stored values the local schema rejects (served as defaults)",
            m.rejected_values.clone(),
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
        m
    }

    /// Refreshes the gauges derived from the snapshot store (called at scrape and on swap).
    pub fn observe_store(&self, store: &SnapshotStore) {
        let snap = store.guard();
        self.version.set(gauge_value(snap.position.version));
        self.epoch.set(gauge_value(snap.position.epoch));
        self.keys.set(snap.len() as i64);
        self.rejected_values.set(snap.rejected().len() as i64);
        self.age_seconds
            .set(store.age().map_or(-1.0, |a| a.as_secs_f64()));
        self.stale.set(i64::from(store.is_stale()));
        self.ready.set(i64::from(store.is_ready()));
    }
}
