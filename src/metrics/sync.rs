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
    duplicate,
    invalid,
    lagged,
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
        };
        registry.register(
            "redis_connected",
            "1 while the Redis connection is up",
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
        m
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
