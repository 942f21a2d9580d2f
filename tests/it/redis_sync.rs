//! Sidecar ↔ Redis behaviours outside the fault matrix: least-privilege ACL users, the fleet
//! view, metrics, and the wire contract of DESIGN §4.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::eventually;
use crate::harness::redis::{command, RedisServer};
use crate::stack::{read_doc, schema_dir, Stack, RESYNC, TOKEN};
use crate::support::assert_families;
use rtconfig::app::SidecarSettings;

const CONVERGE: Duration = Duration::from_secs(15);

/// The ACL line docs/OPERATIONS.md gives for a sidecar of namespace `demo`.
pub const SIDECAR_ACL: &[&str] = &[
    "ACL",
    "SETUSER",
    "sidecar-demo",
    "on",
    ">sidecar-secret",
    "resetkeys",
    "resetchannels",
    "%R~rtconfig:{demo}:*",
    "%W~rtconfig:{demo}:sidecars",
    "&rtconfig:{demo}:changes",
    "-@all",
    "+ping",
    "+auth",
    "+hello",
    "+client|setname",
    "+subscribe",
    "+unsubscribe",
    "+client|id",
    "+info",
    "+evalsha_ro",
    "+script|load",
    "+hmget",
    "+hgetall",
    "+xrange",
    "+time",
    "+hset",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_works_with_a_redis_user_limited_to_reading_its_namespace() {
    let redis = RedisServer::start();
    redis.cmd(SIDECAR_ACL);
    let limited = format!(
        "redis://sidecar-demo:sidecar-secret@127.0.0.1:{}",
        redis.port()
    );
    let mut stack = Stack::start(&redis.url(), &[]).await;
    stack
        .add_sidecar(SidecarSettings {
            resync_interval: RESYNC,
            instance_id: Some("acl-sidecar".into()),
            ..SidecarSettings::for_tests(schema_dir(), &limited)
        })
        .await;
    let v = stack.write(json!({"SITE_NAME": "least privilege"})).await;
    stack.converge(v, CONVERGE).await;
    let v2 = stack.write(json!({"ITEMS_PER_PAGE": 12})).await;
    stack.converge(v2, CONVERGE).await;
    let d = read_doc(&stack.client, &stack.sidecars[0])
        .await
        .expect("read");
    assert_eq!(d.values["SITE_NAME"], json!("least privilege"));
    assert_eq!(d.values["ITEMS_PER_PAGE"], json!(12));
    // Its heartbeat lands in the fleet view.
    let fleet_url = format!(
        "http://{}/api/v1/namespaces/demo/sidecars",
        stack.admin().addr
    );
    let fleet: Value = eventually(
        Duration::from_secs(5),
        "heartbeat in the fleet view",
        || async {
            let v: Value = stack
                .client
                .get(&fleet_url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (v["sidecars"][0]["id"] == json!("acl-sidecar")
                && v["sidecars"][0]["version"] == json!(v2))
            .then_some(v)
        },
    )
    .await;
    assert_eq!(fleet["stragglers"], json!([]));
    // The same user can neither change values nor touch another namespace.
    let auth = Some(("sidecar-demo", "sidecar-secret"));
    let denied = command(
        redis.addr(),
        auth,
        &["HSET", "rtconfig:{demo}:items", "SITE_NAME", "x"],
        Duration::from_secs(2),
    );
    assert!(
        denied.is_err(),
        "items are read-only for sidecars: {denied:?}"
    );
    let other = command(
        redis.addr(),
        auth,
        &["HGETALL", "rtconfig:{other}:items"],
        Duration::from_secs(2),
    );
    assert!(
        other.is_err(),
        "other namespaces are out of reach: {other:?}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_the_design_layout_after_a_write() {
    let redis = RedisServer::start();
    let stack = Stack::start(&redis.url(), &[redis.url()]).await;
    let v = stack
        .write(json!({"SITE_NAME": "layout", "MAINTENANCE_MODE": true}))
        .await;
    stack.converge(v, CONVERGE).await;
    let meta = redis.cmd(&["HGETALL", "rtconfig:{demo}:meta"]);
    for field in [
        "cluster_id",
        "epoch",
        "version",
        "complete",
        "count",
        "term",
        "relay_at",
        "schema_hash",
    ] {
        assert!(meta.contains(field), "meta has {field}: {meta}");
    }
    assert_eq!(
        redis.cmd(&["HGET", "rtconfig:{demo}:meta", "version"]),
        v.to_string()
    );
    assert_eq!(redis.cmd(&["HGET", "rtconfig:{demo}:meta", "count"]), "2");
    let item: Value =
        serde_json::from_str(&redis.cmd(&["HGET", "rtconfig:{demo}:items", "SITE_NAME"]))
            .expect("item json");
    assert_eq!(item, json!({"value": "layout", "version": v}));
    let log = redis.cmd(&["XRANGE", "rtconfig:{demo}:log", "-", "+"]);
    assert!(
        log.contains(&format!("{v}-0")),
        "log entry id is <version>-0: {log}"
    );
    assert!(log.contains("\"MAINTENANCE_MODE\":true"), "{log}");
    // A reset deletes the item and logs null.
    let url = format!(
        "http://{}/api/v1/namespaces/demo/configs/SITE_NAME",
        stack.admin().addr
    );
    let resp = stack
        .client
        .delete(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 200);
    let v2: Value = resp.json().await.expect("json");
    let v2 = v2["version"].as_u64().expect("version");
    stack.converge(v2, CONVERGE).await;
    assert_eq!(
        redis.cmd(&["HEXISTS", "rtconfig:{demo}:items", "SITE_NAME"]),
        "0"
    );
    let log = redis.cmd(&["XRANGE", "rtconfig:{demo}:log", &format!("{v2}-0"), "+"]);
    assert!(log.contains("{\"SITE_NAME\":null}"), "{log}");
    let d = read_doc(&stack.client, &stack.sidecars[0])
        .await
        .expect("read");
    assert_eq!(d.values["SITE_NAME"], json!("Config Manager"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_refuses_to_start_without_a_strong_token() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings =
        rtconfig::app::AdminSettings::for_tests(schema_dir(), dir.path().into(), &redis.url());
    settings.admin_token = Some("short".into());
    let err = rtconfig::app::start_admin(settings)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.exit_code(), 64);
    assert!(err.to_string().contains("--admin-token"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_the_bearer_token() {
    let redis = RedisServer::start();
    let stack = Stack::start(&redis.url(), &[]).await;
    let url = format!("http://{}/api/v1/namespaces", stack.admin().addr);
    let anonymous = stack.client.get(&url).send().await.expect("answer");
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await.expect("json");
    assert_eq!(body["error"]["code"], json!("unauthorized"));
    let wrong = stack
        .client
        .get(&url)
        .bearer_auth("not-the-token-at-all")
        .send()
        .await
        .expect("answer");
    assert_eq!(wrong.status(), 401);
    let ok = stack
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answer");
    assert_eq!(ok.status(), 200);
    let health = stack
        .client
        .get(format!("http://{}/healthz", stack.admin().addr))
        .send()
        .await
        .expect("answer");
    assert_eq!(health.status(), 200, "probes need no token");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_metrics_and_status_describe_the_connection() {
    let redis = RedisServer::start();
    let stack = Stack::start(&redis.url(), &[redis.url()]).await;
    let v = stack.write(json!({"SITE_NAME": "metrics"})).await;
    stack.converge(v, CONVERGE).await;
    // Subscribed by now: this one arrives as a Pub/Sub hint.
    let v = stack.write(json!({"SITE_NAME": "metrics 2"})).await;
    stack.converge(v, CONVERGE).await;
    let s = &stack.sidecars[0];
    let metrics = stack
        .client
        .get(format!("http://{}/metrics", s.probe_addr))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "rtconfig_redis_connected 1",
        "rtconfig_sync_resyncs_total{reason=\"reconnect\"}",
        "rtconfig_sync_messages_total{result=",
        "rtconfig_snapshot_version ",
        "rtconfig_snapshot_age_seconds",
        "rtconfig_http_requests_total",
    ] {
        assert!(metrics.contains(name), "missing {name}");
    }
    let status: Value = stack
        .client
        .get(format!("http://{}/status", s.probe_addr))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["source"], json!("redis"));
    assert_eq!(status["sync"]["redis_connected"], json!(true));
    assert_eq!(status["sync"]["in_sync"], json!(true));
    let admin_metrics = stack.admin().metrics.encode();
    assert!(
        admin_metrics.contains("rtconfig_relay_lag_versions 0"),
        "{admin_metrics}"
    );
    assert!(admin_metrics.contains("rtconfig_admin_writes_total{result=\"ok\"} 2"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_and_admin_export_only_the_metrics_of_what_they_run() {
    let redis = RedisServer::start();
    let stack = Stack::start(&redis.url(), &[redis.url()]).await;
    let v = stack.write(json!({"SITE_NAME": "roles"})).await;
    stack.converge(v, CONVERGE).await;
    let s = &stack.sidecars[0];
    let scrape = |addr: std::net::SocketAddr| {
        let client = stack.client.clone();
        async move {
            client
                .get(format!("http://{addr}/metrics"))
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text")
        }
    };
    // One read, so that the sidecar has an http series (the probe listener counts none).
    let read = stack
        .client
        .get(format!("http://{}/v1/configs", s.read_addr))
        .send()
        .await
        .expect("read");
    assert_eq!(read.status(), 200);
    let sidecar = scrape(s.probe_addr).await;
    assert_families(
        "sidecar",
        &sidecar,
        &[
            "http_requests",
            "http_request_duration_seconds",
            "snapshot_version",
            "snapshot_age_seconds",
            "ready",
            "watchers",
            "redis_connected",
            "sync_resyncs",
            "sync_full_fetches",
        ],
        &["relay_", "admin_"],
    );
    // A first scrape counts itself: the second shows an http series.
    scrape(stack.admin().addr).await;
    let admin = scrape(stack.admin().addr).await;
    assert_families(
        "admin",
        &admin,
        &[
            "http_requests",
            "admin_writes",
            "relay_lag_versions",
            "relay_drift_repairs",
            "relay_leader",
            "relay_term",
        ],
        &["snapshot_", "sync_", "redis_connected", "ready", "watchers"],
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_and_sidecars_reach_redis_through_sentinel() {
    let redis = RedisServer::start();
    let sentinel = crate::harness::sentinel::Sentinel::start(redis.port(), 1);
    let url = format!(
        "redis-sentinel://127.0.0.1:{}?sentinelServiceName=mymaster",
        sentinel.port()
    );
    let stack = Stack::start(&url, std::slice::from_ref(&url)).await;
    let v = stack.write(json!({"SITE_NAME": "via sentinel"})).await;
    stack.converge(v, CONVERGE).await;
    let d = read_doc(&stack.client, &stack.sidecars[0])
        .await
        .expect("read");
    assert_eq!(d.values["SITE_NAME"], json!("via sentinel"));
    assert_eq!(
        redis.cmd(&["HGET", "rtconfig:{demo}:meta", "version"]),
        v.to_string(),
        "the master found through sentinel holds the image"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_entropy_repairs_a_tampered_redis_and_sidecars_refetch() {
    let redis = RedisServer::start();
    let stack = Stack::start_with(&redis.url(), &[redis.url()], |a| {
        a.anti_entropy_interval = Duration::from_millis(700);
    })
    .await;
    let v = stack.write(json!({"SITE_NAME": "truth"})).await;
    stack.converge(v, CONVERGE).await;
    // Someone edits Redis by hand at the same version: no version moves, so only the
    // anti-entropy comparison can notice.
    redis.cmd(&[
        "HSET",
        "rtconfig:{demo}:items",
        "SITE_NAME",
        &format!("{{\"value\":\"tampered\",\"version\":{v}}}"),
    ]);
    eventually(
        CONVERGE,
        "relay repairs redis with a new generation",
        || async {
            let generation = redis.cmd(&["HGET", "rtconfig:{demo}:meta", "generation"]);
            let item = redis.cmd(&["HGET", "rtconfig:{demo}:items", "SITE_NAME"]);
            (generation == "1" && item.contains("truth")).then_some(())
        },
    )
    .await;
    let url = format!("http://{}/v1/configs", stack.sidecars[0].read_addr);
    let etag = eventually(CONVERGE, "sidecar refetched the repaired image", || async {
        let r = stack.client.get(&url).send().await.ok()?;
        let etag = r.headers().get("etag")?.to_str().ok()?.to_owned();
        (etag == format!("\"1-{v}.1\"")).then_some(etag)
    })
    .await;
    let d = read_doc(&stack.client, &stack.sidecars[0])
        .await
        .expect("read");
    assert_eq!(d.values["SITE_NAME"], json!("truth"), "etag {etag}");
    // The repair is counted as the relay's own, not as a sidecar anomaly.
    let metrics = stack.admin().metrics.encode();
    assert!(
        metrics.contains("rtconfig_relay_drift_repairs_total 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("rtconfig_sync_anomalies_total"),
        "{metrics}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_relay_interval_is_not_mistaken_for_a_dead_relay() {
    let redis = RedisServer::start();
    let stack = Stack::start_with(&redis.url(), &[redis.url()], |a| {
        a.relay_interval = Duration::from_secs(4);
    })
    .await;
    let v = stack.write(json!({"SITE_NAME": "slow relay"})).await;
    stack.converge(v, CONVERGE).await;
    assert_eq!(
        redis.cmd(&["HGET", "rtconfig:{demo}:meta", "relay_interval_ms"]),
        "4000"
    );
    // 6 s spans more than one relay interval: with a fixed 3 s threshold this would flip to
    // relay_down; the threshold is three of the relay's own intervals.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        assert_ne!(stack.sidecars[0].sync.cause(), Some("relay_down"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.stop().await;
}
