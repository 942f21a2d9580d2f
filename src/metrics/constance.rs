//! The admin's django-constance mirror (`--constance-mirror`): `rtconfig_constance_*`.
//!
//! Labels are bounded: `key` is a schema key of the mirrored namespace.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabel {
    pub key: String,
}

#[derive(Clone)]
pub struct ConstanceMetrics {
    /// Values written to (or deleted from) constance's keys.
    pub mirrored: Counter,
    /// Values saved through constance and recorded in the ledger.
    pub adopted: Counter,
    /// Distinct values found in constance that the schema refuses, per key.
    pub rejected: Family<KeyLabel, Counter>,
    /// Compare-and-set writes refused because constance's key changed in between.
    pub conflicts: Counter,
    /// Passes that failed (Redis or the ledger unavailable).
    pub errors: Counter,
    /// Unix time of the last complete pass.
    pub last_pass: Gauge,
    /// Keys whose constance value is invalid now.
    pub invalid_keys: Gauge,
}

impl ConstanceMetrics {
    pub fn register(registry: &mut Registry) -> ConstanceMetrics {
        let m = ConstanceMetrics {
            mirrored: Counter::default(),
            adopted: Counter::default(),
            rejected: Family::default(),
            conflicts: Counter::default(),
            errors: Counter::default(),
            last_pass: Gauge::default(),
            invalid_keys: Gauge::default(),
        };
        registry.register(
            "constance_mirrored",
            "Values the mirror wrote to (or deleted from) django-constance's keys",
            m.mirrored.clone(),
        );
        registry.register(
            "constance_adopted",
            "Values saved through django-constance and recorded in the ledger",
            m.adopted.clone(),
        );
        registry.register(
            "constance_rejected",
            "Distinct django-constance values the schema refused (left alone), per key",
            m.rejected.clone(),
        );
        registry.register(
            "constance_conflicts",
            "Mirror writes refused because django-constance's key changed in between",
            m.conflicts.clone(),
        );
        registry.register(
            "constance_errors",
            "Mirror passes that failed (Redis or the ledger unavailable)",
            m.errors.clone(),
        );
        registry.register(
            "constance_last_pass_timestamp_seconds",
            "Unix time of the mirror's last complete pass",
            m.last_pass.clone(),
        );
        registry.register(
            "constance_invalid_keys",
            "Keys whose django-constance value the schema refuses now",
            m.invalid_keys.clone(),
        );
        m
    }
}
