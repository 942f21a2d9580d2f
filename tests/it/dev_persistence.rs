//! `rtconfig dev` keeps everything it acknowledged across a restart on the same data dir.

use serde_json::json;

use crate::support::{send, Dev};

#[tokio::test]
async fn a_restart_keeps_versions_values_and_history() {
    let mut dev = Dev::start_with_secret().await;
    dev.write(json!({"SITE_NAME": "Shop", "ITEMS_PER_PAGE": 20}))
        .await;
    dev.write(json!({"DB_PASSWORD": "hunter2"})).await;
    dev.write(json!({"ITEMS_PER_PAGE": null, "SHOW_LOGS": false}))
        .await;
    send(
        dev.client
            .post(dev.ns_url("/rollback"))
            .json(&json!({"to_version": 2})),
    )
    .await
    .expect_status(200);
    let v = dev.admin_version().await;
    assert_eq!(v, 4);
    assert_eq!(
        dev.sidecar_values().await["ITEMS_PER_PAGE"],
        20,
        "rolled back"
    );

    let document = dev.get(dev.read_url("/v1/configs")).await.json();
    let configs = dev.get(dev.ns_url("/configs")).await.json();
    let history = dev.history("").await;
    let export = dev.get(dev.ns_url("/export")).await.json();

    dev.restart().await;

    let after = dev
        .get(dev.read_url("/v1/configs"))
        .await
        .expect_status(200);
    assert_eq!(after.header("etag"), Some("\"1-4\""));
    assert_eq!(after.json(), document, "the sidecar serves the same state");
    assert_eq!(
        dev.get(dev.ns_url("/configs")).await.json(),
        configs,
        "the admin shows the same values and modified flags"
    );
    assert_eq!(
        dev.history("").await,
        history,
        "history is intact, secrets masked with the same fingerprints"
    );
    assert_eq!(dev.get(dev.ns_url("/export")).await.json(), export);
    assert_eq!(dev.sidecar_values().await["DB_PASSWORD"], "hunter2");

    // Versions continue without a gap.
    let next = dev.write(json!({"LOGS_COUNT": 77})).await;
    assert_eq!(next, v + 1);
}

#[tokio::test]
async fn idempotency_keys_survive_a_restart() {
    let mut dev = Dev::start().await;
    let write = |dev: &Dev| {
        send(
            dev.client
                .patch(dev.ns_url("/configs"))
                .header("idempotency-key", "persisted-op")
                .json(&json!({"changes": {"LOGS_COUNT": 12}})),
        )
    };
    let first = write(&dev).await.expect_status(200).json();
    assert_eq!(first["version"], 1);
    dev.restart().await;
    let retry = write(&dev).await.expect_status(200).json();
    assert_eq!(retry["version"], 1);
    assert_eq!(retry["replayed"], true);
    assert_eq!(dev.admin_version().await, 1);
}

#[tokio::test]
async fn a_second_dev_on_the_same_data_dir_is_refused_while_the_first_runs() {
    let dev = Dev::start().await;
    let refused = rtconfig::app::start_dev(dev.settings.clone()).await;
    let Err(e) = refused else {
        panic!("two processes must not share a ledger");
    };
    assert!(e.to_string().contains("in use"), "the error says why: {e}");
    // The first one is unaffected.
    dev.write(json!({"SHOW_LOGS": false})).await;
}

#[tokio::test]
async fn a_restart_with_a_stricter_schema_serves_the_default_for_a_value_it_now_rejects() {
    let mut dev = Dev::start_with_secret().await;
    dev.write(json!({"ITEMS_PER_PAGE": 50, "SITE_NAME": "Kept"}))
        .await;
    dev.stop().await;
    let path = dev.schema_dir().join("demo.toml");
    let schema = std::fs::read_to_string(&path).expect("schema");
    let stricter = schema.replacen(
        "min = 1\nmax = 100\n\n[keys.SHOW_LOGS]",
        "min = 1\nmax = 20\n\n[keys.SHOW_LOGS]",
        1,
    );
    assert_ne!(schema, stricter, "ITEMS_PER_PAGE's bounds were found");
    std::fs::write(&path, stricter).expect("write schema");

    dev.restart().await;
    let values = dev.sidecar_values().await;
    assert_eq!(
        values["ITEMS_PER_PAGE"], 5,
        "the default, not the rejected 50"
    );
    assert_eq!(values["SITE_NAME"], "Kept", "other keys are unaffected");
    let status = dev.status().await;
    let rejected = status["rejected_values"]
        .as_array()
        .expect("rejected_values");
    assert_eq!(rejected.len(), 1, "{status}");
    assert_eq!(rejected[0]["key"], "ITEMS_PER_PAGE");
    assert_eq!(rejected[0]["rule"], "max");
}
