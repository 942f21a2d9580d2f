//! `rtconfig_sync_*`, `rtconfig_redis_connected`: the sidecar's sync loop against Redis.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `reason` of `rtconfig_sync_resyncs_total`: what triggered a round. Variants are the label
/// values as exported.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum ResyncReason {
    /// The (first) connection, or a reconnection, of the subscriber.
    reconnect,
    /// A change hint newer than the served position.
    message,
    /// The resync timer.
    timer,
    /// Change hints were lost (the subscriber lagged).
    lagged,
    /// A change hint that did not parse.
    decode_error,
}

/// `result` of `rtconfig_sync_messages_total`: what a change hint was.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum MessageResult {
    newer,
    duplicate,
    invalid,
    lagged,
}

/// `kind` of `rtconfig_sync_anomalies_total`: a state the sidecar refused (or repaired).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum AnomalyKind {
    /// Redis holds another cluster's data.
    foreign_redis,
    /// Redis's epoch is older than the served one.
    older_epoch,
    /// Redis (its meta or the image read) is behind the served position in the same epoch.
    redis_behind,
    /// The image read does not hold the item count its meta says (evicted or half-written).
    incomplete_image,
    /// An item of the image did not decode.
    bad_item,
    /// An entry of the change log did not decode.
    bad_log_entry,
    /// The disk snapshot was damaged.
    bad_disk_snapshot,
}

/// `{reason}`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResyncLabels {
    pub reason: ResyncReason,
}

/// `{result}`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    pub result: MessageResult,
}

/// `{kind}`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnomalyLabels {
    pub kind: AnomalyKind,
}

/// The sync loop. Its events are a few per second at most: labelled series are looked up per
/// event.
#[derive(Clone)]
pub struct SyncMetrics {
    pub redis_connected: Gauge,
    resyncs: Family<ResyncLabels, Counter>,
    messages: Family<MessageLabels, Counter>,
    pub full_fetches: Counter,
    pub catchups: Counter,
    anomalies: Family<AnomalyLabels, Counter>,
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
        self.resyncs.get_or_create(&ResyncLabels { reason }).inc();
    }

    pub fn message(&self, result: MessageResult) {
        self.messages.get_or_create(&MessageLabels { result }).inc();
    }

    pub fn anomaly(&self, kind: AnomalyKind) {
        self.anomalies.get_or_create(&AnomalyLabels { kind }).inc();
    }
}
