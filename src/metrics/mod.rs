//! Prometheus metrics, per component, registered into one explicit registry per process.
//!
//! Each component has its own struct with `register(&mut Registry) -> Self`; a process registers
//! only the components it runs and then freezes the registry into its [`Metrics`], the
//! exposition `/metrics` serves. So a sidecar exports no `rtconfig_relay_*` or
//! `rtconfig_admin_*` series, an admin no `rtconfig_sync_*` or `rtconfig_snapshot_*`:
//!
//! | role | components |
//! |---|---|
//! | `sidecar` | [`HttpMetrics`], [`SnapshotMetrics`], [`SyncMetrics`] |
//! | `admin` | [`HttpMetrics`], [`AdminMetrics`], [`RelayMetrics`] |
//! | `dev` | [`HttpMetrics`], [`SnapshotMetrics`], [`AdminMetrics`] (one registry for both listeners) |
//!
//! Names follow DESIGN §7: prefix `rtconfig_`, units in the name, `_total` for counters,
//! bounded labels: label values are enums (one variant per value, written as the variant), and
//! `route` is the pattern a route was registered under ([`crate::http::routes::Routes`]),
//! never a raw path. Every metric (the test `the_table_lists_every_registered_metric` keeps
//! this table and the code in step):
//!
//! | metric | type | labels | component |
//! |---|---|---|---|
//! | `rtconfig_admin_writes_total` | counter | `result`: ok, unchanged, replayed, invalid, conflict, error, refused | admin |
//! | `rtconfig_http_request_duration_seconds` | histogram | `route` | http |
//! | `rtconfig_http_requests_total` | counter | `route`, `status` | http |
//! | `rtconfig_ready` | gauge | | snapshot |
//! | `rtconfig_redis_connected` | gauge | 1 while the sidecar's Redis connection is up | sync |
//! | `rtconfig_relay_applied_total` | counter | | relay |
//! | `rtconfig_relay_drift_repairs_total` | counter | anti-entropy found Redis differing from the ledger and rebuilt it | relay |
//! | `rtconfig_relay_errors_total` | counter | | relay |
//! | `rtconfig_relay_foreign_redis` | gauge | 1 while Redis holds another cluster's data (alarm) | relay |
//! | `rtconfig_relay_lag_versions` | gauge | ledger version minus Redis version (max over namespaces) | relay |
//! | `rtconfig_relay_leader` | gauge | 1 while this admin is the relay leader | relay |
//! | `rtconfig_relay_rebuilds_total` | counter | | relay |
//! | `rtconfig_relay_term` | gauge | the fencing term of this admin's current (or last) leadership | relay |
//! | `rtconfig_snapshot_age_seconds` | gauge | seconds since last confirmed in sync (set at scrape) | snapshot |
//! | `rtconfig_snapshot_epoch` | gauge | | snapshot |
//! | `rtconfig_snapshot_keys` | gauge | | snapshot |
//! | `rtconfig_snapshot_rejected_values` | gauge | stored values the local schema rejects (drift) | snapshot |
//! | `rtconfig_snapshot_stale` | gauge | 1 when readers are told `stale` | snapshot |
//! | `rtconfig_snapshot_swaps_total` | counter | | snapshot |
//! | `rtconfig_snapshot_version` | gauge | | snapshot |
//! | `rtconfig_sync_anomalies_total` | counter | `kind`: foreign_redis, older_epoch, redis_behind, incomplete_image, bad_item, bad_log_entry, bad_disk_snapshot | sync |
//! | `rtconfig_sync_catchups_total` | counter | | sync |
//! | `rtconfig_sync_full_fetches_total` | counter | | sync |
//! | `rtconfig_sync_messages_total` | counter | `result`: newer, duplicate, invalid, lagged | sync |
//! | `rtconfig_sync_resyncs_total` | counter | `reason`: reconnect, message, timer, lagged, decode_error | sync |
//! | `rtconfig_watchers` | gauge | open long-polls and SSE streams | snapshot |
//! | `rtconfig_watchers_rejected_total` | counter | refused over `--max-watchers` | snapshot |
//!
//! Handles are cheap clones of shared atomics: a component struct is cloned into whatever counts
//! into it. A labelled series on a hot path is resolved once and kept (see [`RouteMetrics`]).

mod admin;
mod http;
mod relay;
mod snapshot;
mod sync;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

pub use admin::{AdminMetrics, WriteLabels, WriteResult};
pub use http::{HttpMetrics, RouteLabel, RouteMetrics, RouteStatus};
pub use relay::RelayMetrics;
pub use snapshot::SnapshotMetrics;
pub use sync::{
    AnomalyKind, AnomalyLabels, MessageLabels, MessageResult, ResyncLabels, ResyncReason,
    SyncMetrics,
};

/// The prefix of every metric name.
pub const PREFIX: &str = "rtconfig";

/// An empty registry with the `rtconfig_` prefix, for a process's components to register into.
pub fn registry() -> Registry {
    Registry::with_prefix(PREFIX)
}

/// The exposition of one process: the registry its components registered into, frozen.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new(registry: Registry) -> Metrics {
        Metrics { registry }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The metric names of an exposition as documented (counters with `_total`), from its
    /// `# TYPE` lines, in order.
    fn family_names(exposition: &str) -> Vec<String> {
        exposition
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| {
                let (name, kind) = l.split_once(' ')?;
                Some(match kind {
                    "counter" => format!("{name}_total"),
                    _ => name.to_owned(),
                })
            })
            .collect()
    }

    type Register = fn(&mut Registry);

    /// Every component, registered with one series in each labelled family (a family without
    /// a series is not exported at all).
    const COMPONENTS: [(&str, Register); 5] = [
        ("http", |r| {
            let route = HttpMetrics::register(r).route("/");
            route.record(axum::http::StatusCode::OK, std::time::Duration::ZERO);
        }),
        ("snapshot", |r| drop(SnapshotMetrics::register(r))),
        ("admin", |r| {
            AdminMetrics::register(r).write(WriteResult::ok)
        }),
        ("sync", |r| {
            let sync = SyncMetrics::register(r);
            sync.resync(ResyncReason::timer);
            sync.message(MessageResult::newer);
            sync.anomaly(AnomalyKind::redis_behind);
        }),
        ("relay", |r| drop(RelayMetrics::register(r))),
    ];

    fn everything() -> Metrics {
        let mut registry = registry();
        for (_, register) in COMPONENTS {
            register(&mut registry);
        }
        Metrics::new(registry)
    }

    /// The metric names in the first column of the `//!` table above.
    fn documented() -> Vec<String> {
        include_str!("mod.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//! | `rtconfig_"))
            .filter_map(|l| l.split_once('`'))
            .map(|(name, _)| format!("rtconfig_{name}"))
            .collect()
    }

    #[test]
    fn the_table_lists_every_registered_metric() {
        let registered: BTreeSet<String> =
            family_names(&everything().encode()).into_iter().collect();
        let documented = documented();
        let mut sorted = documented.clone();
        sorted.sort();
        assert_eq!(documented, sorted, "the table is sorted by name");
        let documented: BTreeSet<String> = documented.into_iter().collect();
        assert_eq!(registered, documented);
    }

    #[test]
    fn the_table_names_the_component_of_every_metric() {
        let source = include_str!("mod.rs");
        for (component, register) in COMPONENTS {
            let mut alone = registry();
            register(&mut alone);
            for name in family_names(&Metrics::new(alone).encode()) {
                let row = source
                    .lines()
                    .find(|l| l.starts_with(&format!("//! | `{name}`")))
                    .unwrap_or_else(|| panic!("{name} has no row"));
                assert!(
                    row.trim_end().ends_with(&format!("| {component} |")),
                    "{name} belongs to {component}: {row}"
                );
            }
        }
    }

    #[test]
    fn label_values_are_written_as_documented() {
        let mut registry = registry();
        let sync = SyncMetrics::register(&mut registry);
        let admin = AdminMetrics::register(&mut registry);
        sync.resync(ResyncReason::decode_error);
        sync.message(MessageResult::lagged);
        sync.anomaly(AnomalyKind::bad_disk_snapshot);
        admin.write(WriteResult::refused);
        let text = Metrics::new(registry).encode();
        for line in [
            "rtconfig_sync_resyncs_total{reason=\"decode_error\"} 1",
            "rtconfig_sync_messages_total{result=\"lagged\"} 1",
            "rtconfig_sync_anomalies_total{kind=\"bad_disk_snapshot\"} 1",
            "rtconfig_admin_writes_total{result=\"refused\"} 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
