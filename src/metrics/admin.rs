//! The admin's write metrics.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// How an admin write ended (`rtconfig_admin_writes_total{result}`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum WriteResult {
    ok,
    unchanged,
    replayed,
    invalid,
    conflict,
    error,
    /// 503 `ledger_behind` from this admin's write gate.
    refused,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: WriteResult,
}

/// `rtconfig_admin_writes_total`.
#[derive(Clone)]
pub struct AdminMetrics {
    writes: Family<ResultLabel, Counter>,
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
        self.writes.get_or_create(&ResultLabel { result }).inc();
    }
}
