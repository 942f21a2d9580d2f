//! The admin's relay (ledger → Redis) and its leadership.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `rtconfig_relay_*`: what an admin exports (whether or not it leads).
#[derive(Clone)]
pub struct RelayMetrics {
    pub lag_versions: Gauge,
    pub applied: Counter,
    pub rebuilds: Counter,
    pub errors: Counter,
    /// Anti-entropy found Redis differing from the ledger (and rebuilt it).
    pub drift_repairs: Counter,
    pub foreign_redis: Gauge,
    pub leader: Gauge,
    pub term: Gauge,
}

impl RelayMetrics {
    pub fn register(registry: &mut Registry) -> RelayMetrics {
        let m = RelayMetrics {
            lag_versions: Gauge::default(),
            applied: Counter::default(),
            rebuilds: Counter::default(),
            errors: Counter::default(),
            drift_repairs: Counter::default(),
            foreign_redis: Gauge::default(),
            leader: Gauge::default(),
            term: Gauge::default(),
        };
        registry.register(
            "relay_lag_versions",
            "Versions committed in the ledger but not yet in Redis",
            m.lag_versions.clone(),
        );
        registry.register(
            "relay_applied",
            "Changesets applied to Redis by the relay",
            m.applied.clone(),
        );
        registry.register(
            "relay_rebuilds",
            "Full rebuilds of a namespace's Redis image",
            m.rebuilds.clone(),
        );
        registry.register("relay_errors", "Relay rounds that failed", m.errors.clone());
        registry.register(
            "relay_drift_repairs",
            "Anti-entropy checks that found Redis differing from the ledger",
            m.drift_repairs.clone(),
        );
        registry.register(
            "relay_foreign_redis",
            "1 while Redis holds another cluster's data (the relay refuses to write)",
            m.foreign_redis.clone(),
        );
        registry.register(
            "relay_leader",
            "1 while this admin is the relay leader",
            m.leader.clone(),
        );
        registry.register(
            "relay_term",
            "Fencing term of this admin's current or last relay leadership",
            m.term.clone(),
        );
        m
    }
}
