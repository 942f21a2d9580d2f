//! Issue 11 item 9, through HTTP on `rtconfig dev`: values are stored exactly or refused (a
//! decimal sent as a JSON number keeps every digit; date, time, datetime and decimal take only
//! the documented formats), and every query parameter a route does not take is 400
//! `invalid_query` — `mask=` on the watch stream fails closed.

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::support::{demo_schema_dir, send, Dev, Resp};

/// The demo schema plus one key of each strict type, in a group `Typed`.
fn typed_schema() -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = std::fs::read_to_string(demo_schema_dir().join("demo.toml")).expect("demo.toml");
    let text = demo
        + r#"
[[group]]
name = "Typed"
keys = ["PRICE", "LAUNCH_DAY", "OPENS_AT", "SALE_STARTS"]

[keys.PRICE]
type = "decimal"
default = "9.90"

[keys.LAUNCH_DAY]
type = "date"
default = "2026-01-31"

[keys.OPENS_AT]
type = "time"
default = "09:00"

[keys.SALE_STARTS]
type = "datetime"
default = "2026-01-31T09:00:00Z"
"#;
    std::fs::write(dir.path().join("demo.toml"), text).expect("write schema");
    dir
}

/// A PATCH whose body is sent as this exact text (a JSON client would round the number).
async fn patch_text(dev: &Dev, body: &str) -> Resp {
    send(
        dev.client
            .patch(dev.ns_url("/configs"))
            .header("content-type", "application/json")
            .body(body.to_owned()),
    )
    .await
}

async fn value(dev: &Dev, key: &str) -> Value {
    dev.get(dev.read_url(&format!("/v1/configs/{key}")))
        .await
        .expect_status(200)
        .json()["value"]
        .clone()
}

#[tokio::test]
async fn a_decimal_sent_as_a_json_number_is_stored_exactly_or_refused() {
    let dev = Dev::start_with(Some(typed_schema()), |_| {}).await;
    // Was stored as "1234567890.1234567" (through f64) while the write was acknowledged.
    patch_text(&dev, r#"{"changes": {"PRICE": 1234567890.123456789}}"#)
        .await
        .expect_status(200);
    assert_eq!(value(&dev, "PRICE").await, json!("1234567890.123456789"));
    // PUT too, scale kept.
    send(
        dev.client
            .put(dev.ns_url("/configs/PRICE"))
            .header("content-type", "application/json")
            .body(r#"{"value": 12.50}"#),
    )
    .await
    .expect_status(200);
    assert_eq!(value(&dev, "PRICE").await, json!("12.50"));
    let version = dev.admin_version().await;
    // What cannot be stored exactly is refused, naming the key, and nothing is written.
    for number in [
        "0.12345678901234567890123456789",
        "1e3",
        "12345678901234567890123456789",
    ] {
        let error = patch_text(
            &dev,
            &format!(r#"{{"changes": {{"PRICE": {number}, "SITE_NAME": "not written"}}}}"#),
        )
        .await
        .expect_error(422, "invalid_value");
        let errors = error["details"]["errors"].as_array().expect("errors");
        assert_eq!(errors.len(), 1, "{error}");
        assert_eq!(errors[0]["key"], "PRICE", "{error}");
        assert_eq!(errors[0]["rule"], "format", "{error}");
    }
    // Import goes the same way.
    send(
        dev.client
            .post(dev.ns_url("/import"))
            .header("content-type", "application/json")
            .body(r#"{"values": {"PRICE": 0.1000000000000000000000000000001}}"#),
    )
    .await
    .expect_error(422, "invalid_value");
    assert_eq!(dev.admin_version().await, version, "nothing was written");
    assert_eq!(value(&dev, "PRICE").await, json!("12.50"));
}

#[tokio::test]
async fn only_the_documented_text_formats_are_accepted() {
    let dev = Dev::start_with(Some(typed_schema()), |_| {}).await;
    let refused = [
        ("PRICE", "1_000"),
        ("PRICE", "+1"),
        ("PRICE", "1."),
        ("LAUNCH_DAY", "2026-1-1"),
        ("LAUNCH_DAY", "+10000-01-01"),
        ("OPENS_AT", "9:00"),
        ("OPENS_AT", "23:59:60"),
        ("SALE_STARTS", "2026-01-31T12:30:60Z"),
        ("SALE_STARTS", "2026-01-31 12:30:00Z"),
    ];
    for (key, text) in refused {
        let error = dev
            .patch(json!({ key: text }))
            .await
            .expect_error(422, "invalid_value");
        assert_eq!(
            error["details"]["errors"][0]["rule"], "format",
            "{key} {text:?}: {error}"
        );
    }
    assert_eq!(dev.admin_version().await, 0, "nothing was written");
    let accepted = json!({
        "PRICE": "-0.0001",
        "LAUNCH_DAY": "2028-02-29",
        "OPENS_AT": "07:30:15.250",
        "SALE_STARTS": "2016-12-31T23:59:60Z",
    });
    dev.write(accepted.clone()).await;
    for (key, want) in accepted.as_object().expect("object") {
        assert_eq!(&value(&dev, key).await, want, "{key}");
    }
}

#[tokio::test]
async fn unknown_query_parameters_and_values_are_400_invalid_query_on_the_read_api() {
    let dev = Dev::start_with_secret().await;
    dev.write(json!({"DB_PASSWORD": "hunter2"})).await;
    for path in [
        "/v1/configs?bogus=1",
        "/v1/configs?wiat=1s",
        "/v1/configs?index=1-0&index=1-1",
        "/v1/configs/SITE_NAME?bogus=1",
        "/v1/configs/SITE_NAME?format=RAW",
        "/v1/configs/SITE_NAME?format=raw&bogus",
        "/v1/watch?bogus=1",
        "/v1/watch?mask=secret",
        "/v1/watch?mask=",
        "/v1/watch?mask=SECRETS",
        "/?x=1",
    ] {
        let resp = dev.get(dev.read_url(path)).await;
        resp.expect_error(400, "invalid_query");
        assert!(
            !resp.text().contains("hunter2"),
            "{path}: no secret in the answer"
        );
    }
    // The OFREP endpoints take no query either.
    send(
        dev.client
            .post(dev.read_url("/ofrep/v1/evaluate/flags/SITE_NAME?x=1"))
            .json(&json!({"context": {}})),
    )
    .await
    .expect_error(400, "invalid_query");
    // What is documented still works, percent-encoded or not.
    assert_eq!(
        dev.get(dev.read_url("/v1/configs/SITE_NAME?format=raw"))
            .await
            .expect_status(200)
            .text(),
        "Config Manager"
    );
    dev.get(dev.read_url("/v1/configs/SITE_NAME?%66ormat=raw"))
        .await
        .expect_status(200);
    dev.get(dev.read_url("/v1/configs?index=1-0&wait=0s"))
        .await
        .expect_status(200);
    // The masked stream masks.
    let mut sse = dev.watch("?mask=secrets", None).await;
    let snapshot = sse.expect_event("snapshot").await;
    assert!(!snapshot.data.contains("hunter2"), "{}", snapshot.data);
}

#[tokio::test]
async fn unknown_query_parameters_are_400_invalid_query_on_the_admin_api() {
    let dev = Dev::start().await;
    dev.write(json!({"SITE_NAME": "One"})).await;
    for path in [
        "/api/v1/namespaces?x=1",
        "/api/v1/namespaces/demo/configs?x=1",
        "/api/v1/namespaces/demo/configs/SITE_NAME?x=1",
        "/api/v1/namespaces/demo/changesets/1?x=1",
        "/api/v1/namespaces/demo/export?mask=none",
        "/api/v1/namespaces/demo/sidecars?x=1",
        "/api/v1/namespaces/demo/history?limit=1&limit=2",
        "/api/v1/session?x=1",
        "/api/v1/users?x=1",
        "/api/v1/tokens?x=1",
        "/api/v1/audit?x=1",
    ] {
        dev.get(format!("{}{path}", dev.admin))
            .await
            .expect_error(400, "invalid_query");
    }
    // Writes too: nothing is written.
    send(
        dev.client
            .patch(dev.ns_url("/configs?dry_run=true"))
            .json(&json!({"changes": {"SITE_NAME": "Two"}})),
    )
    .await
    .expect_error(400, "invalid_query");
    send(
        dev.client
            .put(dev.ns_url("/configs/SITE_NAME?force=1"))
            .json(&json!({"value": "Two"})),
    )
    .await
    .expect_error(400, "invalid_query");
    assert_eq!(dev.admin_version().await, 1);
}

/// Issue 11 item 10: a UTF-8 request id and user agent are stored as sent (they were stored as
/// `""` and `null`), and an over-long request id is replaced, echoed and stored alike.
#[tokio::test]
async fn utf8_request_ids_and_user_agents_are_stored_and_long_ids_replaced() {
    let dev = Dev::start().await;
    let written = |id: String, ua: &'static str, site: &'static str| {
        let rb = dev
            .client
            .patch(dev.ns_url("/configs"))
            .header(
                "x-request-id",
                reqwest::header::HeaderValue::from_bytes(id.as_bytes()).expect("id"),
            )
            .header(
                "user-agent",
                reqwest::header::HeaderValue::from_bytes(ua.as_bytes()).expect("ua"),
            )
            .json(&json!({"changes": {"SITE_NAME": site}}));
        send(rb)
    };
    let resp = written("zählung-42".to_owned(), "Prüfer/1.0 (Käse)", "One").await;
    assert_eq!(
        resp.headers
            .get("x-request-id")
            .map(|v| v.as_bytes().to_vec()),
        Some("zählung-42".as_bytes().to_vec())
    );
    let version = resp.expect_status(200).json()["version"]
        .as_u64()
        .expect("version");
    let cs = dev
        .get(dev.ns_url(&format!("/changesets/{version}")))
        .await
        .expect_status(200)
        .json();
    assert_eq!(cs["request_id"], "zählung-42", "{cs}");
    assert_eq!(cs["user_agent"], "Prüfer/1.0 (Käse)", "{cs}");

    let resp = written("x".repeat(8000), "curl/8", "Two").await;
    let echoed = String::from_utf8(
        resp.headers
            .get("x-request-id")
            .map(|v| v.as_bytes().to_vec())
            .expect("echoed"),
    )
    .expect("utf8");
    assert!(echoed.len() <= 200 && !echoed.is_empty(), "{echoed}");
    let version = resp.expect_status(200).json()["version"]
        .as_u64()
        .expect("version");
    let cs = dev
        .get(dev.ns_url(&format!("/changesets/{version}")))
        .await
        .json();
    assert_eq!(
        cs["request_id"],
        echoed.as_str(),
        "the stored id is the echoed one"
    );
}

/// Issue 11 item 10: the Idempotency-Key of a write that changed nothing is remembered, so the
/// same key then refuses a different request (it used to accept it).
#[tokio::test]
async fn the_idempotency_key_of_a_no_op_write_is_remembered() {
    let dev = Dev::start().await;
    let v = dev.write(json!({"SITE_NAME": "Same"})).await;
    let patch = |changes: Value| {
        send(
            dev.client
                .patch(dev.ns_url("/configs"))
                .header("idempotency-key", "noop-1")
                .json(&json!({ "changes": changes })),
        )
    };
    let first = patch(json!({"SITE_NAME": "Same"}))
        .await
        .expect_status(200)
        .json();
    assert_eq!(first["version"], v);
    assert_eq!(first["changes"], json!([]));
    let retry = patch(json!({"SITE_NAME": "Same"}))
        .await
        .expect_status(200)
        .json();
    assert_eq!(retry["replayed"], true, "{retry}");
    assert_eq!(retry["version"], v);
    patch(json!({"SITE_NAME": "Different"}))
        .await
        .expect_error(422, "idempotency_key_reused");
    assert_eq!(dev.admin_version().await, v, "nothing was written");
}
