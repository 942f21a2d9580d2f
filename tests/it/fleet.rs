//! The fleet view on a real deployment: a spawned `redis-server`, the real admin and real
//! sidecars (one on another schema file, one whose Pub/Sub link goes through a fault proxy):
//! versions, the last change's propagation lag, stale sidecars and why, drift, and the
//! namespaces list's fleet columns — also while Redis is down.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::eventually;
use crate::harness::proxy::TcpProxy;
use crate::harness::redis::RedisServer;
use crate::stack::{schema_dir, Stack, RESYNC, TOKEN};
use crate::support::Sse;
use rtconfig::app::SidecarSettings;

const CONVERGE: Duration = Duration::from_secs(15);

async fn get(stack: &Stack, path: &str) -> (u16, Value) {
    let resp = stack
        .client
        .get(format!("http://{}/api/v1{path}", stack.admin().addr))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

fn sidecar<'a>(fleet: &'a Value, id: &str) -> &'a Value {
    fleet["sidecars"]
        .as_array()
        .expect("sidecars")
        .iter()
        .find(|s| s["id"] == json!(id))
        .unwrap_or_else(|| panic!("{id} in {fleet:#}"))
}

fn codes(s: &Value) -> Vec<String> {
    s["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p["code"].as_str().expect("code").to_owned())
        .collect()
}

/// Waits until the fleet view satisfies `ok`.
async fn fleet_until(stack: &Stack, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(10), what, || async {
        let (status, v) = get(stack, "/namespaces/demo/sidecars").await;
        (status == 200 && ok(&v)).then_some(v)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_view_shows_versions_lag_drift_and_why_sidecars_are_stale() {
    let redis = RedisServer::start();
    let sub_proxy = TcpProxy::start(redis.addr());
    let drifted = tempfile::tempdir().expect("tempdir");
    let schema = std::fs::read_to_string(schema_dir().join("demo.toml")).expect("schema");
    std::fs::write(
        drifted.path().join("demo.toml"),
        format!("{schema}\n# the next release's schema\n"),
    )
    .expect("write");
    let mut stack = Stack::start(&redis.url(), &[]).await;
    for (id, dir, sub) in [
        ("pod-a", schema_dir(), None),
        ("pod-b", schema_dir(), Some(sub_proxy.url_for_redis())),
        ("pod-drift", drifted.path().to_path_buf(), None),
    ] {
        stack
            .add_sidecar(SidecarSettings {
                resync_interval: RESYNC,
                instance_id: Some(id.into()),
                subscriber_redis_url: sub,
                ..SidecarSettings::for_tests(dir, &redis.url())
            })
            .await;
    }
    let before = Instant::now();
    let v = stack.write(json!({"SITE_NAME": "fleet"})).await;
    stack.converge(v, CONVERGE).await;
    let fleet = fleet_until(&stack, "every sidecar reports the change", |f| {
        f["propagation"]["version"] == json!(v) && f["propagation"]["reached"] == json!(3)
    })
    .await;
    let seen = before.elapsed();
    assert_eq!(fleet["version"], json!(v));
    assert_eq!(
        fleet["summary"],
        json!({"total": 3, "in_sync": 2, "stale": 0, "old_version": 0, "schema_drift": 1}),
        "{fleet:#}"
    );
    assert_eq!(fleet["schema_drift"], json!(["pod-drift"]));
    assert_eq!(fleet["stragglers"], json!([]));
    assert_eq!(fleet["by_version"], json!({ format!("1-{v}"): 3 }));
    let drift = sidecar(&fleet, "pod-drift");
    assert_eq!(drift["state"], "schema_drift");
    assert_eq!(codes(drift), vec!["schema_drift"]);
    assert_ne!(drift["schema_hash"], fleet["schema_hash"]);
    let p = &fleet["propagation"];
    assert_eq!(p["actor"], "admin-token");
    assert_eq!(
        (p["pending"].clone(), p["joined_later"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(p["pending_for_ms"], Value::Null);
    // Every sidecar received the change as a change (they started before it): each is measured,
    // and no lag can exceed the time from before the write to the view showing it (one clock).
    assert_eq!(p["unmeasured"], json!(0));
    let max = p["lag_ms"]["max"].as_u64().expect("max lag");
    assert!(
        max <= seen.as_millis() as u64,
        "lag {max} ms within the {seen:?} observed"
    );
    assert!(p["lag_ms"]["min"].as_u64() <= Some(max));
    for id in ["pod-a", "pod-b", "pod-drift"] {
        let s = sidecar(&fleet, id);
        assert!(s["lag_ms"].as_u64().is_some(), "{id} measured: {s:#}");
        assert_eq!(s["redis_connected"], json!(true), "{id}");
        assert!(s["heartbeat_age_ms"].as_u64().is_some(), "{id}");
        assert_eq!(s["interval_ms"], json!(RESYNC.as_millis() as u64));
        assert!(s["started_at"].is_string() && s["applied_at"].is_string());
    }

    // pod-b's Pub/Sub link stops answering: the view marks it stale and says why — from its
    // own report (liveness check failed) or, while its loop waits on the dead link, from its
    // silence.
    sub_proxy.blackhole();
    let fleet = fleet_until(&stack, "pod-b is stale", |f| {
        sidecar(f, "pod-b")["state"] == json!("stale")
    })
    .await;
    let b = sidecar(&fleet, "pod-b");
    let why = codes(b);
    assert!(
        why.contains(&"reports_stale".to_owned()) || why.contains(&"heartbeat_old".to_owned()),
        "{b:#}"
    );
    let message = b["problems"][0]["message"].as_str().expect("message");
    assert!(
        message.contains("liveness check") || message.starts_with("no heartbeat for"),
        "{message}"
    );
    assert_eq!(fleet["summary"]["stale"], json!(1));
    sub_proxy.heal();
    fleet_until(&stack, "pod-b in sync again", |f| {
        sidecar(f, "pod-b")["state"] == json!("in_sync")
    })
    .await;

    // pod-a stops: its heartbeat grows old, and the next change never reaches it.
    let a = stack.sidecars.remove(0);
    a.stop().await;
    let v2 = stack.write(json!({"ITEMS_PER_PAGE": 21})).await;
    let fleet = fleet_until(&stack, "pod-a is late and behind", |f| {
        sidecar(f, "pod-a")["state"] == json!("stale")
            && f["propagation"]["version"] == json!(v2)
            && f["propagation"]["reached"] == json!(2)
    })
    .await;
    let a = sidecar(&fleet, "pod-a");
    assert_eq!(codes(a), vec!["heartbeat_old", "old_version"], "{a:#}");
    assert!(
        a["heartbeat_age_ms"].as_u64() > Some(3 * RESYNC.as_millis() as u64),
        "{a:#}"
    );
    let msg = a["problems"][1]["message"].as_str().expect("message");
    assert_eq!(
        msg,
        format!("it serves version {v}, 1 behind the ledger's {v2}")
    );
    assert_eq!(a["lag_ms"], Value::Null);
    assert_eq!(fleet["stragglers"], json!(["pod-a"]));
    assert_eq!(fleet["propagation"]["pending"], json!(1));
    assert!(fleet["propagation"]["pending_for_ms"].as_u64().is_some());
    assert_eq!(
        fleet["summary"],
        json!({"total": 3, "in_sync": 1, "stale": 1, "old_version": 1, "schema_drift": 1})
    );

    // The namespaces list carries the same counts.
    let (status, list) = get(&stack, "/namespaces").await;
    assert_eq!(status, 200);
    assert_eq!(list["namespaces"][0]["fleet"], fleet["summary"], "{list:#}");

    // Redis down: the fleet view says so; the namespaces list still answers, without counts.
    redis.kill();
    let (status, body) = get(&stack, "/namespaces/demo/sidecars").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "fleet_unavailable");
    let started = Instant::now();
    let (status, list) = get(&stack, "/namespaces").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["namespaces"][0]["fleet"], Value::Null);
    assert!(
        list["namespaces"][0]["fleet_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot read the fleet")),
        "{list:#}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the list does not wait on Redis ({:?})",
        started.elapsed()
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_stream_sends_the_fleet_view_when_it_changes() {
    let redis = RedisServer::start();
    let mut stack = Stack::start(&redis.url(), &[]).await;
    stack
        .add_sidecar(SidecarSettings {
            resync_interval: RESYNC,
            instance_id: Some("pod-live".into()),
            ..SidecarSettings::for_tests(schema_dir(), &redis.url())
        })
        .await;
    let v = stack.write(json!({"SITE_NAME": "before"})).await;
    stack.converge(v, CONVERGE).await;
    let url = format!(
        "http://{}/api/v1/namespaces/demo/events",
        stack.admin().addr
    );
    // Without ?fleet=true a stream carries commits only.
    let mut plain = Sse::open(stack.client.get(&url).bearer_auth(TOKEN)).await;
    let mut sse = Sse::open(
        stack
            .client
            .get(format!("{url}?fleet=true"))
            .bearer_auth(TOKEN),
    )
    .await;
    let first = sse.expect_event("fleet").await.json();
    assert_eq!(first["namespace"], "demo");
    assert_eq!(first["sidecars"][0]["id"], "pod-live");
    assert!(first["summary"].is_object() && first["propagation"].is_object());
    let v2 = stack.write(json!({"SITE_NAME": "after"})).await;
    // The commit, then fleet views until one shows the sidecar at the new version.
    let mut saw_commit = false;
    let reached = loop {
        let e = sse.next().await.expect("stream open");
        match e.event.as_str() {
            "commit" => {
                assert_eq!(e.json()["version"], json!(v2));
                saw_commit = true;
            }
            "fleet" => {
                let f = e.json();
                if f["propagation"]["version"] == json!(v2)
                    && f["propagation"]["pending"] == json!(0)
                {
                    break f;
                }
            }
            other => panic!("unexpected event {other}: {e:?}"),
        }
    };
    assert!(saw_commit, "the commit came first");
    assert_eq!(reached["sidecars"][0]["version"], json!(v2));
    assert!(reached["sidecars"][0]["lag_ms"].as_u64().is_some());
    let e = plain.expect_event("commit").await;
    assert_eq!(e.json()["version"], json!(v2));
    let bad = stack
        .client
        .get(format!("{url}?fleet=maybe"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answer");
    assert_eq!(bad.status(), 400);
    stack.stop().await;
}
