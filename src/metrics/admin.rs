//! `rtconfig_admin_*`: what the admin's write path did with each write.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// `result` of `rtconfig_admin_writes_total`. Variants are the label values as exported.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum WriteResult {
    /// Committed a new version.
    ok,
    /// Committed nothing: every value was already as asked.
    unchanged,
    /// An idempotent retry, answered with the version it produced the first time.
    replayed,
    /// Refused as invalid: no change, an unknown key, a value the schema rejects (or another
    /// 4xx from the ledger).
    invalid,
    /// The ledger refused an `expected` version or key (409).
    conflict,
    /// The ledger failed (5xx).
    error,
    /// The write gate refused: 503 `ledger_behind`.
    refused,
}

/// `{result}`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub result: WriteResult,
}

/// The admin's write path.
#[derive(Clone)]
pub struct AdminMetrics {
    writes: Family<WriteLabels, Counter>,
}

impl AdminMetrics {
    pub fn register(registry: &mut Registry) -> AdminMetrics {
        let m = AdminMetrics {
            writes: Family::default(),
        };
        registry.register(
            "admin_writes",
            "Admin write requests, by result",
            m.writes.clone(),
        );
        m
    }

    pub fn write(&self, result: WriteResult) {
        self.writes.get_or_create(&WriteLabels { result }).inc();
    }
}
