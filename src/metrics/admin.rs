//! The admin's write and event-stream metrics.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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

/// Why an admin events stream ended (`rtconfig_admin_event_stream_ends_total{reason}`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum StreamEnd {
    /// The session or token was revoked or expired, or lost its role (`event: revoked`).
    revoked,
    /// The process is shutting down.
    shutdown,
    /// The client went away.
    client,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabel {
    reason: StreamEnd,
}

/// `rtconfig_admin_writes_total`, `rtconfig_admin_event_streams`,
/// `rtconfig_admin_event_streams_rejected_total`, `rtconfig_admin_event_stream_ends_total`.
#[derive(Clone)]
pub struct AdminMetrics {
    writes: Family<ResultLabel, Counter>,
    /// Open `GET /api/v1/namespaces/{ns}/events` streams.
    pub event_streams: Gauge,
    /// Streams refused because `--max-event-streams` were open.
    pub event_streams_rejected: Counter,
    event_stream_ends: Family<EndLabel, Counter>,
}

impl AdminMetrics {
    pub fn register(registry: &mut Registry) -> AdminMetrics {
        let m = AdminMetrics {
            writes: Family::default(),
            event_streams: Gauge::default(),
            event_streams_rejected: Counter::default(),
            event_stream_ends: Family::default(),
        };
        registry.register(
            "admin_writes",
            "Admin write requests, by result",
            m.writes.clone(),
        );
        registry.register(
            "admin_event_streams",
            "Open admin event streams (GET /api/v1/namespaces/{ns}/events)",
            m.event_streams.clone(),
        );
        registry.register(
            "admin_event_streams_rejected",
            "Admin event streams refused because --max-event-streams were open",
            m.event_streams_rejected.clone(),
        );
        registry.register(
            "admin_event_stream_ends",
            "Admin event streams ended, by reason",
            m.event_stream_ends.clone(),
        );
        m
    }

    pub fn write(&self, result: WriteResult) {
        self.writes.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn event_stream_ended(&self, reason: StreamEnd) {
        self.event_stream_ends
            .get_or_create(&EndLabel { reason })
            .inc();
    }
}
