//! Each role exports the metrics of the components it runs, and no other: a sidecar no
//! `rtconfig_admin_*`/`rtconfig_relay_*`, an admin no `rtconfig_snapshot_*`/`rtconfig_sync_*`.
//! The families are read from the `# TYPE` lines of a scrape of `/metrics`.

use std::collections::BTreeSet;

use serde_json::json;

use crate::harness::redis::RedisServer;
use crate::stack::{read_doc, Stack};
use crate::support::Dev;

const HTTP: &[&str] = &[
    "rtconfig_http_requests_total",
    "rtconfig_http_request_duration_seconds",
];
const SNAPSHOT: &[&str] = &[
    "rtconfig_snapshot_version",
    "rtconfig_snapshot_epoch",
    "rtconfig_snapshot_age_seconds",
    "rtconfig_snapshot_stale",
    "rtconfig_snapshot_keys",
    "rtconfig_snapshot_swaps_total",
    "rtconfig_snapshot_rejected_values",
    "rtconfig_ready",
    "rtconfig_watchers",
    "rtconfig_watchers_rejected_total",
];
const SYNC: &[&str] = &[
    "rtconfig_redis_connected",
    "rtconfig_sync_resyncs_total",
    "rtconfig_sync_messages_total",
    "rtconfig_sync_full_fetches_total",
    "rtconfig_sync_catchups_total",
    "rtconfig_sync_anomalies_total",
];
const ADMIN: &[&str] = &["rtconfig_admin_writes_total"];
const RELAY: &[&str] = &[
    "rtconfig_relay_lag_versions",
    "rtconfig_relay_applied_total",
    "rtconfig_relay_rebuilds_total",
    "rtconfig_relay_errors_total",
    "rtconfig_relay_drift_repairs_total",
    "rtconfig_relay_foreign_redis",
    "rtconfig_relay_leader",
    "rtconfig_relay_term",
];
/// Labelled families these tests give no event to: a family without a series is not exported.
const ON_EVENT: &[&str] = &[
    "rtconfig_sync_messages_total",
    "rtconfig_sync_anomalies_total",
];

/// The families of an exposition, named as documented (counters with `_total`).
fn families(exposition: &str) -> BTreeSet<String> {
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

/// `exposition` has every family of `components` (but those only an event creates) and
/// nothing else.
fn exports_exactly(role: &str, exposition: &str, components: &[&[&str]]) {
    let exported = families(exposition);
    let own: BTreeSet<String> = components
        .iter()
        .flat_map(|c| c.iter())
        .map(|n| n.to_string())
        .collect();
    let foreign: Vec<&String> = exported.difference(&own).collect();
    assert!(
        foreign.is_empty(),
        "{role} exports {foreign:?}:\n{exposition}"
    );
    let missing: Vec<&String> = own
        .iter()
        .filter(|n| !ON_EVENT.contains(&n.as_str()) && !exported.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "{role} lacks {missing:?}:\n{exposition}"
    );
}

async fn scrape(client: &reqwest::Client, url: String) -> String {
    let resp = client.get(&url).send().await.expect("scrape");
    assert_eq!(resp.status(), 200, "{url}");
    resp.text().await.expect("text")
}

#[tokio::test]
async fn dev_exports_the_admin_and_the_sidecars_read_side() {
    let dev = Dev::start().await;
    dev.write(json!({"LOGS_COUNT": 20})).await;
    dev.get(dev.read_url("/v1/configs/LOGS_COUNT"))
        .await
        .expect_status(200);
    // One registry behind both listeners.
    for url in [
        format!("{}/metrics", dev.probe),
        format!("{}/metrics", dev.admin),
    ] {
        let text = scrape(&dev.client, url).await;
        exports_exactly("dev", &text, &[HTTP, SNAPSHOT, ADMIN]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_exports_http_snapshot_and_sync_only() {
    let redis = RedisServer::start();
    let stack = Stack::start(&redis.url(), &[redis.url()]).await;
    let v = stack.write(json!({"SITE_NAME": "roles"})).await;
    stack.converge(v, std::time::Duration::from_secs(15)).await;
    let sidecar = &stack.sidecars[0];
    read_doc(&stack.client, sidecar).await.expect("read");
    let text = scrape(
        &stack.client,
        format!("http://{}/metrics", sidecar.probe_addr),
    )
    .await;
    exports_exactly("sidecar", &text, &[HTTP, SNAPSHOT, SYNC]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_exports_http_writes_and_relay_only() {
    let redis = RedisServer::start();
    let stack = Stack::start(&redis.url(), &[]).await;
    stack.write(json!({"SITE_NAME": "roles"})).await;
    let text = scrape(
        &stack.client,
        format!("http://{}/metrics", stack.admin().addr),
    )
    .await;
    exports_exactly("admin", &text, &[HTTP, ADMIN, RELAY]);
    stack.stop().await;
}
