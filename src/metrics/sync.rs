//! The sidecar's sync loop against Redis.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// What triggered a sync round (`rtconfig_sync_resyncs_total{reason}`); the variant is the label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ResyncReason {
    /// A connect, the first one included.
    reconnect,
    message,
    timer,
    lagged,
    decode_error,
}

impl ResyncReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ResyncReason::reconnect => "reconnect",
            ResyncReason::message => "message",
            ResyncReason::timer => "timer",
            ResyncReason::lagged => "lagged",
            ResyncReason::decode_error => "decode_error",
        }
    }
}

/// What a Pub/Sub change hint was (`rtconfig_sync_messages_total{result}`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum MessageResult {
    newer,
    /// Exactly the position served (a rebuild's `PUBLISH`): verified with a round.
    same,
    duplicate,
    invalid,
    lagged,
    /// The hint's inlined changeset was applied without reading Redis.
    applied,
    /// The inlined changeset did not lead to the hint's content hash: resynced from the log.
    hash_mismatch,
}

/// A Redis state the sidecar refused (`rtconfig_sync_anomalies_total{kind}`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum AnomalyKind {
    foreign_redis,
    older_epoch,
    redis_behind,
    incomplete_image,
    bad_item,
    bad_log_entry,
    bad_disk_snapshot,
    /// Same position as Redis, other content (`meta.content_hash`): the whole image refetched.
    content_hash_mismatch,
}

/// Which disk snapshot file a cold start loaded (`rtconfig_snapshot_disk_loaded{generation}`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum DiskGeneration {
    newest,
    previous,
    none,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GenerationLabel {
    generation: DiskGeneration,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: ResyncReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: MessageResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: AnomalyKind,
}

/// `rtconfig_redis_connected` and `rtconfig_sync_*`.
#[derive(Clone)]
pub struct SyncMetrics {
    pub redis_connected: Gauge,
    resyncs: Family<ReasonLabel, Counter>,
    messages: Family<ResultLabel, Counter>,
    pub full_fetches: Counter,
    pub catchups: Counter,
    anomalies: Family<KindLabel, Counter>,
    /// Failed attempts to write the disk snapshot (each retry counts).
    pub snapshot_write_failures: Counter,
    /// The version of the snapshot file on disk (loaded at start, then each one written).
    pub snapshot_disk_version: Gauge,
    disk_loaded: Family<GenerationLabel, Gauge>,
    /// The subscriber liveness timeout in force (adapts to measured round trips).
    pub liveness_timeout: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// The staleness bound `B` in force (docs/OPERATIONS.md).
    pub staleness_bound: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl SyncMetrics {
    pub fn register(registry: &mut Registry) -> SyncMetrics {
        let m = SyncMetrics {
            redis_connected: Gauge::default(),
            resyncs: Family::default(),
            messages: Family::default(),
            full_fetches: Counter::default(),
            catchups: Counter::default(),
            anomalies: Family::default(),
            snapshot_write_failures: Counter::default(),
            snapshot_disk_version: Gauge::default(),
            disk_loaded: Family::default(),
            liveness_timeout: Gauge::default(),
            staleness_bound: Gauge::default(),
        };
        registry.register(
            "sync_liveness_timeout_seconds",
            "Subscriber PING timeout in force: 4x the p90 round trip, between the floor and the cap",
            m.liveness_timeout.clone(),
        );
        registry.register(
            "sync_staleness_bound_seconds",
            "Staleness bound B: a read marked fresh is never further behind the ledger",
            m.staleness_bound.clone(),
        );
        registry.register(
            "redis_connected",
            "1 while both Redis connections are up and a command succeeded within a ping interval + the liveness timeout",
            m.redis_connected.clone(),
        );
        registry.register(
            "sync_resyncs",
            "Sync rounds against Redis, by trigger",
            m.resyncs.clone(),
        );
        registry.register(
            "sync_messages",
            "Pub/Sub change hints received, by result",
            m.messages.clone(),
        );
        registry.register(
            "sync_full_fetches",
            "Full image reads from Redis",
            m.full_fetches.clone(),
        );
        registry.register(
            "sync_catchups",
            "Catch-ups from the Redis change log",
            m.catchups.clone(),
        );
        registry.register(
            "sync_anomalies",
            "Redis states the sidecar refused to apply, by kind",
            m.anomalies.clone(),
        );
        registry.register(
            "snapshot_write_failures",
            "Failed attempts to write the disk snapshot (--snapshot-path); retried with back-off",
            m.snapshot_write_failures.clone(),
        );
        registry.register(
            "snapshot_disk_version",
            "Version of the disk snapshot file as last loaded or written",
            m.snapshot_disk_version.clone(),
        );
        registry.register(
            "snapshot_disk_loaded",
            "1 for the disk snapshot file the cold start loaded: newest, previous (the newest was unusable) or none",
            m.disk_loaded.clone(),
        );
        m
    }

    /// Records which disk snapshot file the cold start loaded.
    pub fn disk_loaded(&self, generation: DiskGeneration) {
        self.disk_loaded
            .get_or_create(&GenerationLabel { generation })
            .set(1);
    }

    pub fn resync(&self, reason: ResyncReason) {
        self.resyncs.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn message(&self, result: MessageResult) {
        self.messages.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn anomaly(&self, kind: AnomalyKind) {
        self.anomalies.get_or_create(&KindLabel { kind }).inc();
    }
}
