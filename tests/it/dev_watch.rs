//! `GET /v1/watch` (Server-Sent Events) and shutdown of open streams in `rtconfig dev`.

use std::time::Duration;

use serde_json::json;

use crate::support::{send, Dev, WITHIN};

#[tokio::test]
async fn watch_sends_a_snapshot_then_one_change_event_per_write() {
    let dev = Dev::start().await;
    let mut sse = dev.watch("", None).await;
    let snapshot = sse.expect_event("snapshot").await;
    assert_eq!(snapshot.id.as_deref(), Some("1-0"));
    let document = dev.get(dev.read_url("/v1/configs")).await.json();
    assert_eq!(
        snapshot.json(),
        document,
        "the snapshot is the /v1/configs document"
    );

    let v1 = dev
        .write(json!({"SITE_NAME": "Shop", "ITEMS_PER_PAGE": 8}))
        .await;
    let change = sse.expect_event("change").await;
    assert_eq!(change.id, Some(format!("1-{v1}")));
    assert_eq!(
        change.json(),
        json!({"epoch": 1, "version": v1, "changes": {"SITE_NAME": "Shop", "ITEMS_PER_PAGE": 8}})
    );

    let v2 = dev.write(json!({"SITE_NAME": null})).await;
    let change = sse.expect_event("change").await;
    assert_eq!(change.id, Some(format!("1-{v2}")));
    assert_eq!(
        change.json(),
        json!({"epoch": 1, "version": v2, "changes": {"SITE_NAME": "Config Manager"}}),
        "a reset is announced with the default it now serves"
    );
}

#[tokio::test]
async fn watch_with_a_current_last_event_id_skips_the_snapshot() {
    let dev = Dev::start().await;
    let v = dev.write(json!({"LOGS_COUNT": 30})).await;
    let mut sse = dev.watch("", Some(&format!("1-{v}"))).await;
    let next = dev.write(json!({"LOGS_COUNT": 31})).await;
    let first = sse.next().await.expect("an event");
    assert_eq!(
        first.event, "change",
        "up to date: no snapshot first; got {first:?}"
    );
    assert_eq!(first.id, Some(format!("1-{next}")));
    assert_eq!(first.json()["changes"], json!({"LOGS_COUNT": 31}));
}

#[tokio::test]
async fn watch_with_an_old_last_event_id_starts_with_a_snapshot() {
    let dev = Dev::start().await;
    dev.write(json!({"LOGS_COUNT": 30})).await;
    let v = dev.write(json!({"LOGS_COUNT": 40})).await;
    for old in ["1-0", "1-1", "garbage"] {
        let mut sse = dev.watch("", Some(old)).await;
        let first = sse.expect_event("snapshot").await;
        assert_eq!(first.id, Some(format!("1-{v}")), "Last-Event-ID {old}");
        assert_eq!(first.json()["values"]["LOGS_COUNT"], 40);
    }
}

#[tokio::test]
async fn every_open_stream_gets_every_change() {
    let dev = Dev::start().await;
    let mut a = dev.watch("", None).await;
    let mut b = dev.watch("", None).await;
    a.expect_event("snapshot").await;
    b.expect_event("snapshot").await;
    let mut versions = Vec::new();
    for i in 1..=5 {
        versions.push(dev.write(json!({"ITEMS_PER_PAGE": i})).await);
    }
    for sse in [&mut a, &mut b] {
        // A slow reader may get changes combined; it must end at the last version with the
        // last value, ids rising.
        let mut last_id = 0u64;
        let mut last_value = json!(null);
        while last_id < *versions.last().expect("writes") {
            let e = sse.expect_event("change").await;
            let id: u64 =
                e.id.as_deref()
                    .and_then(|id| id.strip_prefix("1-"))
                    .and_then(|v| v.parse().ok())
                    .expect("id is 1-<version>");
            assert!(id > last_id, "ids rise: {id} after {last_id}");
            last_id = id;
            last_value = e.json()["changes"]["ITEMS_PER_PAGE"].clone();
        }
        assert_eq!(last_value, 5);
    }
}

#[tokio::test]
async fn watch_masks_secrets_when_asked_and_serves_them_otherwise() {
    let dev = Dev::start_with_secret().await;
    dev.write(json!({"DB_PASSWORD": "hunter2"})).await;
    let mut masked = dev.watch("?mask=secrets", None).await;
    let mut clear = dev.watch("", None).await;
    let snap = masked.expect_event("snapshot").await;
    assert!(!snap.data.contains("hunter2"), "{}", snap.data);
    assert_eq!(snap.json()["secrets"], json!(["DB_PASSWORD"]));
    let clear_snap = clear.expect_event("snapshot").await;
    assert_eq!(clear_snap.json()["values"]["DB_PASSWORD"], "hunter2");

    dev.write(json!({"DB_PASSWORD": "swordfish"})).await;
    let change = masked.expect_event("change").await;
    assert!(!change.data.contains("swordfish"), "{}", change.data);
    assert!(change.json()["changes"]["DB_PASSWORD"].is_string());
    let clear_change = clear.expect_event("change").await;
    assert_eq!(clear_change.json()["changes"]["DB_PASSWORD"], "swordfish");
}

#[tokio::test]
async fn stopping_dev_ends_open_streams_and_answers_long_polls() {
    // A drain deadline far beyond WITHIN: stopping in time means the streams ended themselves.
    let mut dev = Dev::start_with(None, |s| s.drain_timeout = Duration::from_secs(30)).await;
    let mut sse = dev.watch("", None).await;
    sse.expect_event("snapshot").await;
    let poll = tokio::spawn(send(
        dev.client
            .get(dev.read_url("/v1/configs?index=1-0&wait=60s")),
    ));
    dev.await_watchers(2).await;

    tokio::time::timeout(WITHIN, dev.stop())
        .await
        .expect("streams end on shutdown instead of holding the drain");
    assert_eq!(sse.next().await, None, "the stream is closed");
    let answered = tokio::time::timeout(WITHIN, poll)
        .await
        .expect("long-poll answered on shutdown")
        .expect("task")
        .expect_status(200);
    assert_eq!(answered.json()["version"], 0, "with the current state");
}
