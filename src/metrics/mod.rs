//! Prometheus metrics: one explicit registry per process, one struct per component.
//!
//! Each component registers its own metrics ([`HttpMetrics::register`], …) into the process's
//! [`Registry`], so a process exports only what it runs: a sidecar has HTTP, snapshot and sync
//! series; an admin has HTTP, admin and relay series; `dev` has HTTP, snapshot and admin
//! series. Handles are cheap to clone (each field is an `Arc` inside); labels are enums.
//!
//! Names follow DESIGN §7: prefix `rtconfig_`, units in the name, `_total` for counters,
//! bounded labels (routes are the patterns of the route table, `http::routes::Routes`, never raw
//! paths). One row per metric; the test `the_table_is_every_metric_of_every_component` keeps
//! the table and the code in step.
//!
//! | metric | type | labels | component |
//! |---|---|---|---|
//! | `rtconfig_http_requests_total` | counter | `route`, `status` | [`HttpMetrics`] |
//! | `rtconfig_http_request_duration_seconds` | histogram | `route` | [`HttpMetrics`] |
//! | `rtconfig_snapshot_version` | gauge | | [`SnapshotMetrics`] |
//! | `rtconfig_snapshot_epoch` | gauge | | [`SnapshotMetrics`] |
//! | `rtconfig_snapshot_age_seconds` | gauge | seconds since last confirmed in sync (set at scrape) | [`SnapshotMetrics`] |
//! | `rtconfig_snapshot_stale` | gauge | 1 when readers are told `stale` | [`SnapshotMetrics`] |
//! | `rtconfig_snapshot_keys` | gauge | | [`SnapshotMetrics`] |
//! | `rtconfig_snapshot_swaps_total` | counter | | [`SnapshotMetrics`] |
//! | `rtconfig_snapshot_rejected_values` | gauge | stored values the local schema rejects (drift) | [`SnapshotMetrics`] |
//! | `rtconfig_ready` | gauge | | [`SnapshotMetrics`] |
//! | `rtconfig_watchers` | gauge | open long-polls and SSE streams | [`SnapshotMetrics`] |
//! | `rtconfig_watchers_rejected_total` | counter | refused over `--max-watchers` | [`SnapshotMetrics`] |
//! | `rtconfig_admin_writes_total` | counter | `result`: [`WriteResult`] | [`AdminMetrics`] |
//! | `rtconfig_admin_event_streams` | gauge | open admin event streams | [`AdminMetrics`] |
//! | `rtconfig_admin_event_streams_rejected_total` | counter | refused over `--max-event-streams` | [`AdminMetrics`] |
//! | `rtconfig_admin_event_stream_ends_total` | counter | `reason`: [`StreamEnd`] | [`AdminMetrics`] |
//! | `rtconfig_redis_connected` | gauge | 1 while both Redis connections are up and a command succeeded recently | [`SyncMetrics`] |
//! | `rtconfig_sync_liveness_timeout_seconds` | gauge | the adaptive subscriber PING timeout | [`SyncMetrics`] |
//! | `rtconfig_sync_staleness_bound_seconds` | gauge | the staleness bound `B` (docs/OPERATIONS.md) | [`SyncMetrics`] |
//! | `rtconfig_sync_resyncs_total` | counter | `reason`: [`ResyncReason`] | [`SyncMetrics`] |
//! | `rtconfig_sync_messages_total` | counter | `result`: [`MessageResult`] | [`SyncMetrics`] |
//! | `rtconfig_sync_full_fetches_total` | counter | | [`SyncMetrics`] |
//! | `rtconfig_sync_catchups_total` | counter | | [`SyncMetrics`] |
//! | `rtconfig_sync_anomalies_total` | counter | `kind`: [`AnomalyKind`] | [`SyncMetrics`] |
//! | `rtconfig_snapshot_write_failures_total` | counter | failed disk snapshot writes (each retry) | [`SyncMetrics`] |
//! | `rtconfig_snapshot_disk_version` | gauge | version of the disk snapshot file as last loaded or written | [`SyncMetrics`] |
//! | `rtconfig_snapshot_disk_loaded` | gauge | `generation`: [`DiskGeneration`], the file the cold start loaded | [`SyncMetrics`] |
//! | `rtconfig_relay_lag_versions` | gauge | ledger version minus Redis version (max over namespaces) | [`RelayMetrics`] |
//! | `rtconfig_relay_applied_total` | counter | | [`RelayMetrics`] |
//! | `rtconfig_relay_rebuilds_total` | counter | | [`RelayMetrics`] |
//! | `rtconfig_relay_errors_total` | counter | | [`RelayMetrics`] |
//! | `rtconfig_relay_drift_repairs_total` | counter | anti-entropy found Redis differing from the ledger | [`RelayMetrics`] |
//! | `rtconfig_relay_foreign_redis` | gauge | 1 while Redis holds another cluster's data (alarm) | [`RelayMetrics`] |
//! | `rtconfig_relay_leader` | gauge | 1 while this admin is the relay leader | [`RelayMetrics`] |
//! | `rtconfig_relay_term` | gauge | the fencing term of this admin's current (or last) leadership | [`RelayMetrics`] |

mod admin;
mod constance;
mod http;
mod relay;
mod snapshot;
mod sync;

pub use admin::{AdminMetrics, StreamEnd, WriteResult};
pub use constance::{ConstanceMetrics, KeyLabel};
pub use http::{HttpMetrics, RouteLabel, RouteMetrics, RouteStatus};
pub use relay::RelayMetrics;
pub use snapshot::SnapshotMetrics;
pub use sync::{AnomalyKind, DiskGeneration, MessageResult, ResyncReason, SyncMetrics};

use prometheus_client::encoding::text::encode;
pub use prometheus_client::registry::Registry;

/// A new, empty registry with the `rtconfig_` prefix; components register into it.
pub fn registry() -> Registry {
    Registry::with_prefix("rtconfig")
}

/// A process's registry once every component has registered: what `/metrics` encodes.
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    pub fn new(registry: Registry) -> Exposition {
        Exposition { registry }
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

/// Saturates a `u64` into a gauge's `i64`.
fn gauge_value(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `# TYPE` lines of an exposition: the families it carries.
    fn families(text: &str) -> Vec<&str> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE rtconfig_"))
            .filter_map(|l| l.split(' ').next())
            .collect()
    }

    #[test]
    fn each_component_registers_only_its_own_families() {
        type Case = (&'static str, fn(&mut Registry), &'static [&'static str]);
        // An empty family prints nothing: each case makes one series in its families.
        let cases: [Case; 5] = [
            (
                "http",
                |r| {
                    let route = HttpMetrics::register(r).route("/v1/configs");
                    route.record(axum::http::StatusCode::OK, std::time::Duration::ZERO);
                },
                &["http_requests", "http_request_duration_seconds"],
            ),
            (
                "snapshot",
                |r| drop(SnapshotMetrics::register(r)),
                &[
                    "snapshot_version",
                    "snapshot_swaps",
                    "ready",
                    "watchers",
                    "watchers_rejected",
                ],
            ),
            (
                "sync",
                |r| {
                    let sync = SyncMetrics::register(r);
                    sync.resync(ResyncReason::timer);
                    sync.message(MessageResult::newer);
                    sync.anomaly(AnomalyKind::redis_behind);
                },
                &[
                    "redis_connected",
                    "sync_resyncs",
                    "sync_messages",
                    "sync_anomalies",
                    "sync_catchups",
                ],
            ),
            (
                "relay",
                |r| drop(RelayMetrics::register(r)),
                &[
                    "relay_lag_versions",
                    "relay_drift_repairs",
                    "relay_leader",
                    "relay_term",
                ],
            ),
            (
                "admin",
                |r| AdminMetrics::register(r).write(WriteResult::ok),
                &["admin_writes"],
            ),
        ];
        let prefixes = |name: &str| -> &'static str {
            match name {
                n if n.starts_with("http_") => "http",
                n if n.starts_with("sync_") || n == "redis_connected" => "sync",
                // The disk snapshot is written by the sync loop (the names are the issue's).
                n if n.starts_with("snapshot_write_") || n.starts_with("snapshot_disk_") => "sync",
                n if n.starts_with("relay_") => "relay",
                n if n.starts_with("admin_") => "admin",
                _ => "snapshot",
            }
        };
        for (component, register, expected) in cases {
            let mut registry = registry();
            register(&mut registry);
            let text = Exposition::new(registry).encode();
            let found = families(&text);
            for name in expected {
                assert!(
                    found.contains(name),
                    "{component}: missing {name} in {text}"
                );
            }
            for name in found {
                assert_eq!(prefixes(name), component, "{component} registers {name}");
            }
        }
    }

    /// The metric names of an exposition as documented (counters with `_total`).
    fn documented_names(text: &str) -> Vec<String> {
        text.lines()
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

    #[test]
    fn the_table_is_every_metric_of_every_component() {
        type Register = fn(&mut Registry);
        // One series in each labelled family: an empty family prints nothing.
        let components: [(&str, Register); 5] = [
            ("HttpMetrics", |r| {
                let route = HttpMetrics::register(r).route("/");
                route.record(axum::http::StatusCode::OK, std::time::Duration::ZERO);
            }),
            ("SnapshotMetrics", |r| drop(SnapshotMetrics::register(r))),
            ("SyncMetrics", |r| {
                let sync = SyncMetrics::register(r);
                sync.resync(ResyncReason::timer);
                sync.message(MessageResult::newer);
                sync.anomaly(AnomalyKind::redis_behind);
                sync.disk_loaded(DiskGeneration::newest);
            }),
            ("RelayMetrics", |r| drop(RelayMetrics::register(r))),
            ("AdminMetrics", |r| {
                let admin = AdminMetrics::register(r);
                admin.write(WriteResult::ok);
                admin.event_stream_ended(StreamEnd::client);
            }),
        ];
        // (name, component) of every row of the table above.
        let rows: Vec<(String, String)> = include_str!("mod.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//! | `"))
            .filter_map(|l| {
                let (name, rest) = l.split_once('`')?;
                let component = rest.trim_end().strip_suffix("`] |")?.rsplit_once("[`")?.1;
                Some((name.to_owned(), component.to_owned()))
            })
            .collect();
        let mut registered = Vec::new();
        for (component, register) in components {
            let mut alone = registry();
            register(&mut alone);
            for name in documented_names(&Exposition::new(alone).encode()) {
                registered.push((name, component.to_owned()));
            }
        }
        registered.sort();
        let mut documented = rows.clone();
        documented.sort();
        assert_eq!(
            registered, documented,
            "(metric, component) registered vs the table"
        );
    }

    #[test]
    fn label_values_are_the_documented_strings() {
        let mut registry = registry();
        let sync = SyncMetrics::register(&mut registry);
        let admin = AdminMetrics::register(&mut registry);
        sync.resync(ResyncReason::decode_error);
        sync.message(MessageResult::duplicate);
        sync.anomaly(AnomalyKind::bad_disk_snapshot);
        admin.write(WriteResult::replayed);
        let text = Exposition::new(registry).encode();
        for line in [
            "rtconfig_sync_resyncs_total{reason=\"decode_error\"} 1",
            "rtconfig_sync_messages_total{result=\"duplicate\"} 1",
            "rtconfig_sync_anomalies_total{kind=\"bad_disk_snapshot\"} 1",
            "rtconfig_admin_writes_total{result=\"replayed\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in {text}");
        }
    }
}
