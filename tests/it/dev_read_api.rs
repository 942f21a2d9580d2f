//! The sidecar read API and probe listener of `rtconfig dev` (DESIGN §5), over real sockets.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::{send, Dev};

/// The demo schema's keys in group order.
const DEMO_KEYS: [&str; 8] = [
    "SITE_NAME",
    "THEME_COLOR",
    "MAINTENANCE_MODE",
    "WELCOME_MESSAGE",
    "ITEMS_PER_PAGE",
    "SHOW_LOGS",
    "LOGS_COUNT",
    "UI_POLLING_INTERVAL",
];

#[tokio::test]
async fn all_configs_are_served_with_their_defaults_version_and_etag() {
    let dev = Dev::start().await;
    let resp = dev
        .get(dev.read_url("/v1/configs"))
        .await
        .expect_status(200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("etag"), Some("\"1-0\""));
    assert_eq!(resp.expect_read_headers(), (1, 0));
    let body = resp.json();
    assert_eq!(
        body,
        json!({
            "namespace": "demo",
            "epoch": 1,
            "version": 0,
            "stale": false,
            "source": "local",
            "values": {
                "SITE_NAME": "Config Manager",
                "THEME_COLOR": "#4a6cf7",
                "MAINTENANCE_MODE": false,
                "WELCOME_MESSAGE": "You can see real-time configs and their values here",
                "ITEMS_PER_PAGE": 5,
                "SHOW_LOGS": true,
                "LOGS_COUNT": 10,
                "UI_POLLING_INTERVAL": 300.0,
            }
        })
    );
    let keys: Vec<&str> = body["values"]
        .as_object()
        .expect("values")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, DEMO_KEYS, "values come in the schema's group order");
}

#[tokio::test]
async fn if_none_match_with_the_current_etag_answers_304_until_a_write() {
    let dev = Dev::start().await;
    let etag = dev
        .get(dev.read_url("/v1/configs"))
        .await
        .header("etag")
        .expect("etag")
        .to_owned();
    let conditional = || {
        dev.client
            .get(dev.read_url("/v1/configs"))
            .header("if-none-match", &etag)
    };
    let resp = send(conditional()).await.expect_status(304);
    assert!(resp.body.is_empty(), "a 304 has no body");
    assert_eq!(resp.header("etag"), Some(etag.as_str()));
    assert_eq!(resp.expect_read_headers(), (1, 0));
    let weak_in_a_list = send(
        dev.client
            .get(dev.read_url("/v1/configs"))
            .header("if-none-match", format!("\"0-9\", W/{etag}")),
    )
    .await;
    assert_eq!(weak_in_a_list.status, 304, "lists and weak tags match too");

    dev.write(json!({"ITEMS_PER_PAGE": 7})).await;
    let resp = send(conditional()).await.expect_status(200);
    assert_eq!(resp.header("etag"), Some("\"1-1\""));
    assert_eq!(resp.json()["values"]["ITEMS_PER_PAGE"], 7);
}

#[tokio::test]
async fn one_key_is_served_as_json_with_its_version_and_source() {
    let dev = Dev::start().await;
    let resp = dev
        .get(dev.read_url("/v1/configs/ITEMS_PER_PAGE"))
        .await
        .expect_status(200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.expect_read_headers(), (1, 0));
    assert_eq!(
        resp.json(),
        json!({"key": "ITEMS_PER_PAGE", "value": 5, "version": 0, "epoch": 1, "stale": false, "source": "local"})
    );
    let v = dev.write(json!({"ITEMS_PER_PAGE": 9})).await;
    let resp = dev
        .get(dev.read_url("/v1/configs/ITEMS_PER_PAGE"))
        .await
        .expect_status(200);
    assert_eq!(resp.expect_read_headers(), (1, v));
    assert_eq!(resp.json()["value"], 9);
    assert_eq!(resp.json()["version"], v);
}

#[tokio::test]
async fn raw_format_serves_the_bare_value_as_plain_text() {
    let dev = Dev::start().await;
    for (key, raw) in [
        ("SITE_NAME", "Config Manager"),
        ("ITEMS_PER_PAGE", "5"),
        ("SHOW_LOGS", "true"),
        ("MAINTENANCE_MODE", "false"),
        ("UI_POLLING_INTERVAL", "300.0"),
    ] {
        let resp = dev
            .get(dev.read_url(&format!("/v1/configs/{key}?format=raw")))
            .await
            .expect_status(200);
        assert_eq!(resp.text(), raw, "{key}");
        assert!(
            resp.header("content-type")
                .is_some_and(|ct| ct.starts_with("text/plain")),
            "{key}: {:?}",
            resp.header("content-type")
        );
        resp.expect_read_headers();
    }
}

#[tokio::test]
async fn an_unknown_key_is_404_unknown_key_in_json() {
    let dev = Dev::start().await;
    for path in ["/v1/configs/NOPE", "/v1/configs/NOPE?format=raw"] {
        let resp = dev.get(dev.read_url(path)).await;
        let error = resp.expect_error(404, "unknown_key");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("NOPE")),
            "{error}"
        );
    }
}

#[tokio::test]
async fn every_read_carries_the_config_headers() {
    let dev = Dev::start().await;
    let v = dev.write(json!({"SHOW_LOGS": false})).await;
    let reads = [
        dev.client.get(dev.read_url("/v1/configs")),
        dev.client.get(dev.read_url("/v1/configs?index=0&wait=1s")),
        dev.client.get(dev.read_url("/v1/configs/SHOW_LOGS")),
        dev.client
            .get(dev.read_url("/v1/configs/SHOW_LOGS?format=raw")),
        dev.client
            .post(dev.read_url("/ofrep/v1/evaluate/flags/SHOW_LOGS"))
            .json(&json!({"context": {}})),
        dev.client
            .post(dev.read_url("/ofrep/v1/evaluate/flags"))
            .json(&json!({"context": {}})),
        dev.client.get(dev.read_url("/")),
    ];
    for rb in reads {
        let resp = send(rb).await.expect_status(200);
        assert_eq!(resp.expect_read_headers(), (1, v));
        assert_eq!(resp.header("cache-control"), Some("no-store"));
    }
    let sse = dev.watch("", None).await;
    let version: u64 = sse.headers["x-config-version"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    assert_eq!(version, v, "the stream says where it starts");
    assert_eq!(sse.headers["x-config-epoch"], "1");
    assert_eq!(sse.headers["x-config-source"], "local");
    assert_eq!(sse.headers["x-config-stale"], "false");
    assert!(sse.headers.contains_key("x-config-age"));
}

#[tokio::test]
async fn ofrep_single_evaluation_is_static_with_default_or_configured_variant() {
    let dev = Dev::start().await;
    let url = dev.read_url("/ofrep/v1/evaluate/flags/ITEMS_PER_PAGE");
    let resp = send(
        dev.client
            .post(&url)
            .json(&json!({"context": {"targetingKey": "u1"}})),
    )
    .await
    .expect_status(200);
    assert_eq!(
        resp.json(),
        json!({
            "key": "ITEMS_PER_PAGE",
            "value": 5,
            "reason": "STATIC",
            "variant": "default",
            "metadata": {"version": 0, "epoch": 1, "source": "local", "stale": false},
        })
    );
    // The evaluation context is optional.
    let no_body = send(dev.client.post(&url)).await.expect_status(200);
    assert_eq!(no_body.json()["value"], 5);

    let v = dev.write(json!({"ITEMS_PER_PAGE": 42})).await;
    let body = send(dev.client.post(&url).json(&json!({})))
        .await
        .expect_status(200)
        .json();
    assert_eq!(body["value"], 42);
    assert_eq!(body["variant"], "configured");
    assert_eq!(body["metadata"]["version"], v);
}

#[tokio::test]
async fn ofrep_bulk_evaluates_every_key_with_etag_and_304() {
    let dev = Dev::start().await;
    let url = dev.read_url("/ofrep/v1/evaluate/flags");
    let resp = send(dev.client.post(&url).json(&json!({"context": {}})))
        .await
        .expect_status(200);
    let etag = resp.header("etag").expect("bulk has an etag").to_owned();
    assert_eq!(etag, "\"1-0\"");
    let body = resp.json();
    let flags = body["flags"].as_array().expect("flags");
    assert_eq!(flags.len(), 8);
    assert!(flags.iter().all(|f| f["reason"] == "STATIC"));
    let site = flags
        .iter()
        .find(|f| f["key"] == "SITE_NAME")
        .expect("SITE_NAME evaluated");
    assert_eq!(site["value"], "Config Manager");
    assert_eq!(body["metadata"]["version"], 0);

    let cached = send(
        dev.client
            .post(&url)
            .header("if-none-match", &etag)
            .json(&json!({"context": {}})),
    )
    .await
    .expect_status(304);
    assert!(cached.body.is_empty());
    cached.expect_read_headers();

    dev.write(json!({"SITE_NAME": "Shop"})).await;
    let fresh = send(
        dev.client
            .post(&url)
            .header("if-none-match", &etag)
            .json(&json!({"context": {}})),
    )
    .await
    .expect_status(200);
    assert_eq!(fresh.header("etag"), Some("\"1-1\""));
    let site = fresh.json()["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .find(|f| f["key"] == "SITE_NAME")
        .cloned()
        .expect("SITE_NAME");
    assert_eq!(site["value"], "Shop");
    assert_eq!(site["variant"], "configured");
}

#[tokio::test]
async fn ofrep_errors_use_ofrep_shapes() {
    let dev = Dev::start().await;
    let missing = send(
        dev.client
            .post(dev.read_url("/ofrep/v1/evaluate/flags/NOPE"))
            .json(&json!({"context": {}})),
    )
    .await
    .expect_status(404);
    let body = missing.json();
    assert_eq!(body["key"], "NOPE");
    assert_eq!(body["errorCode"], "FLAG_NOT_FOUND");
    assert!(body["errorDetails"].as_str().is_some_and(|d| !d.is_empty()));

    for (path, bad) in [
        ("/ofrep/v1/evaluate/flags/SITE_NAME", "{"),
        ("/ofrep/v1/evaluate/flags/SITE_NAME", "{\"context\": 5}"),
        ("/ofrep/v1/evaluate/flags", "[1, 2]"),
        ("/ofrep/v1/evaluate/flags", "{\"context\""),
    ] {
        let resp = send(
            dev.client
                .post(dev.read_url(path))
                .header("content-type", "application/json")
                .body(bad),
        )
        .await
        .expect_status(400);
        let body = resp.json();
        assert_eq!(body["errorCode"], "PARSE_ERROR", "{path} {bad}: {body}");
        assert!(body["errorDetails"].as_str().is_some_and(|d| !d.is_empty()));
    }

    // A context over the 64 KiB limit is refused in the same JSON shape.
    let huge = json!({"context": {"blob": "x".repeat(100 * 1024)}});
    for path in [
        "/ofrep/v1/evaluate/flags/SITE_NAME",
        "/ofrep/v1/evaluate/flags",
    ] {
        let resp = send(dev.client.post(dev.read_url(path)).json(&huge))
            .await
            .expect_status(413);
        let body = resp.json();
        assert_eq!(body["errorCode"], "INVALID_CONTEXT", "{path}: {body}");
        assert!(body["errorDetails"].as_str().is_some_and(|d| !d.is_empty()));
    }
}

#[tokio::test]
async fn the_status_page_shows_values_and_masks_secrets() {
    let dev = Dev::start_with_secret().await;
    let script = "</script><script>alert(1)</script>";
    dev.write(json!({"SITE_NAME": script, "DB_PASSWORD": "hunter2"}))
        .await;
    let resp = dev.get(dev.read_url("/")).await.expect_status(200);
    assert!(resp
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("text/html")));
    let html = resp.text();
    assert!(
        html.contains("You can see real-time configs and their values here"),
        "defaults are shown too"
    );
    assert!(
        !html.contains(script),
        "a value cannot close the page's script tag"
    );
    assert!(html.contains("alert(1)"), "the page shows the values");
    assert!(html.contains("UI_POLLING_INTERVAL"));
    assert!(html.contains("DB_PASSWORD"), "the secret key is listed");
    assert!(!html.contains("hunter2"), "the secret value is not shown");
    assert!(html.contains("EventSource"), "the page updates over SSE");
    assert!(!html.contains("setInterval"), "without polling");
    // The sidecar read itself is the one place a secret is served in clear.
    let values = dev.sidecar_values().await;
    assert_eq!(values["DB_PASSWORD"], "hunter2");
}

#[tokio::test]
async fn other_methods_are_405_method_not_allowed_in_json() {
    let dev = Dev::start().await;
    let cases = [
        (Method::POST, dev.read_url("/v1/configs")),
        (Method::PUT, dev.read_url("/v1/configs/SITE_NAME")),
        (Method::DELETE, dev.read_url("/v1/configs/SITE_NAME")),
        (Method::POST, dev.read_url("/v1/watch")),
        (Method::GET, dev.read_url("/ofrep/v1/evaluate/flags")),
        (
            Method::GET,
            dev.read_url("/ofrep/v1/evaluate/flags/SITE_NAME"),
        ),
        (Method::POST, dev.read_url("/")),
        (Method::POST, format!("{}/healthz", dev.probe)),
        (Method::DELETE, format!("{}/metrics", dev.probe)),
    ];
    for (method, url) in cases {
        let resp = send(dev.request(method.clone(), &url)).await;
        resp.expect_error(405, "method_not_allowed");
    }
}

#[tokio::test]
async fn unknown_paths_are_404_in_json() {
    let dev = Dev::start().await;
    for url in [
        dev.read_url("/v2/configs"),
        dev.read_url("/v1/configs/SITE_NAME/extra"),
        format!("{}/nope", dev.probe),
    ] {
        dev.get(&url).await.expect_error(404, "not_found");
    }
}

#[tokio::test]
async fn a_uri_over_8_kib_is_414_uri_too_long() {
    let dev = Dev::start().await;
    // A long but valid query (the index's epoch with leading zeros), so only its length counts.
    let long = "0".repeat(9 * 1024);
    let resp = dev
        .get(dev.read_url(&format!("/v1/configs?index={long}-0")))
        .await;
    resp.expect_error(414, "uri_too_long");
    // Just under the limit is fine.
    let fits = "0".repeat(8 * 1024 - 64);
    dev.get(dev.read_url(&format!("/v1/configs?index={fits}-0")))
        .await
        .expect_status(200);
}

#[tokio::test]
async fn huge_or_too_many_headers_are_431() {
    let dev = Dev::start().await;
    let huge = send(
        dev.client
            .get(dev.read_url("/v1/configs"))
            .header("x-padding", "a".repeat(20 * 1024)),
    )
    .await;
    assert_eq!(huge.status, 431);
    let mut many = dev.client.get(dev.read_url("/v1/configs"));
    for i in 0..100 {
        many = many.header(format!("x-h{i}"), "v");
    }
    assert_eq!(send(many).await.status, 431);
    // Over our bound of 64 but under hyper's own (100): still 431, and the connection closes.
    let mut over = dev.client.get(dev.read_url("/v1/configs/SITE_NAME"));
    for i in 0..70 {
        over = over.header(format!("x-h{i}"), "v");
    }
    let over = send(over).await;
    assert_eq!(over.status, 431);
    assert_eq!(over.headers["connection"], "close");
    // 60 of ours (64 with what the client adds) are fine.
    let mut fits = dev.client.get(dev.read_url("/v1/configs/SITE_NAME"));
    for i in 0..60 {
        fits = fits.header(format!("x-h{i}"), "v");
    }
    assert_eq!(send(fits).await.status, 200);
    // The server still answers normal requests.
    dev.get(dev.read_url("/v1/configs"))
        .await
        .expect_status(200);
}

#[tokio::test]
async fn probes_report_health_readiness_status_and_metrics() {
    let dev = Dev::start().await;
    let health = dev
        .get(format!("{}/healthz", dev.probe))
        .await
        .expect_status(200);
    assert_eq!(health.text().trim(), "ok");
    let ready = dev
        .get(format!("{}/readyz", dev.probe))
        .await
        .expect_status(200);
    assert_eq!(ready.json()["ready"], true);

    let v = dev.write(json!({"LOGS_COUNT": 20})).await;
    let status = dev.status().await;
    assert_eq!(status["namespace"], "demo");
    assert_eq!(status["epoch"], 1);
    assert_eq!(status["version"], v);
    assert_eq!(status["source"], "local");
    assert_eq!(status["stale"], false);
    assert_eq!(status["ready"], true);
    assert_eq!(status["keys"], 8);
    assert_eq!(status["watchers"], 0);
    assert_eq!(status["sync"]["mode"], "local");

    // Some traffic so the request counters have samples.
    dev.get(dev.read_url("/v1/configs/LOGS_COUNT"))
        .await
        .expect_status(200);
    let metrics = dev
        .get(format!("{}/metrics", dev.probe))
        .await
        .expect_status(200);
    let text = metrics.text();
    for name in [
        "rtconfig_snapshot_version ",
        "rtconfig_snapshot_age_seconds ",
        "rtconfig_http_requests_total{",
        "rtconfig_http_request_duration_seconds_bucket{",
        "rtconfig_admin_writes_total{",
    ] {
        assert!(text.contains(name), "metric {name:?} missing:\n{text}");
    }
    assert!(
        text.contains(&format!("rtconfig_snapshot_version {v}")),
        "the version gauge follows writes:\n{text}"
    );
    assert!(
        text.contains("route=\"/v1/configs/{key}\""),
        "routes are labelled by pattern, not raw path:\n{text}"
    );
    assert!(!text.contains("LOGS_COUNT"), "no raw paths in labels");
    assert!(
        text.contains("result=\"ok\""),
        "admin writes by result:\n{text}"
    );
}

#[tokio::test]
async fn a_write_is_readable_from_the_sidecar_as_soon_as_the_admin_answers() {
    let dev = Dev::start().await;
    for i in 1..=20u64 {
        let v = dev.write(json!({"ITEMS_PER_PAGE": i})).await;
        let resp = dev
            .get(dev.read_url("/v1/configs/ITEMS_PER_PAGE"))
            .await
            .expect_status(200);
        assert_eq!(resp.json()["value"], i, "read-your-writes at version {v}");
        assert_eq!(resp.expect_read_headers(), (1, v));
    }
}

#[tokio::test]
async fn long_poll_wakes_as_soon_as_a_write_lands() {
    let dev = Dev::start().await;
    let poll = send(
        dev.client
            .get(dev.read_url("/v1/configs?index=1-0&wait=30s")),
    );
    let poll = tokio::spawn(poll);
    dev.await_watchers(1).await;
    let started = std::time::Instant::now();
    let v = dev.write(json!({"MAINTENANCE_MODE": true})).await;
    let resp = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("long-poll answered well before its wait")
        .expect("task")
        .expect_status(200);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(resp.header("etag"), Some(format!("\"1-{v}\"").as_str()));
    let body = resp.json();
    assert_eq!(body["version"], v);
    assert_eq!(body["values"]["MAINTENANCE_MODE"], true);
    assert_eq!(
        dev.status().await["watchers"],
        0,
        "the watcher slot is released"
    );
}

#[tokio::test]
async fn long_poll_times_out_with_the_current_state() {
    let dev = Dev::start().await;
    let v = dev.write(json!({"LOGS_COUNT": 11})).await;
    let started = std::time::Instant::now();
    let resp = dev
        .get(dev.read_url(&format!("/v1/configs?index=1-{v}&wait=300ms")))
        .await
        .expect_status(200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "waited only {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    assert_eq!(resp.header("etag"), Some(format!("\"1-{v}\"").as_str()));
    assert_eq!(resp.json()["values"]["LOGS_COUNT"], 11);
    resp.expect_read_headers();
}

#[tokio::test]
async fn long_poll_behind_the_current_version_answers_at_once() {
    let dev = Dev::start().await;
    dev.write(json!({"LOGS_COUNT": 11})).await;
    let v = dev.write(json!({"LOGS_COUNT": 12})).await;
    for index in ["1-0", "0", "1", "\"1-1\"", "0-99"] {
        let started = std::time::Instant::now();
        let resp = dev
            .get(dev.read_url(&format!("/v1/configs?index={index}&wait=30s")))
            .await
            .expect_status(200);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "index {index} is behind: no wait"
        );
        assert_eq!(resp.json()["version"], v, "index {index}");
    }
    // A wait over the 300 s maximum is clamped, not refused.
    let resp = dev
        .get(dev.read_url("/v1/configs?index=0&wait=1h"))
        .await
        .expect_status(200);
    assert_eq!(resp.json()["version"], v);
}

#[tokio::test]
async fn a_bare_version_index_means_the_current_epoch() {
    let dev = Dev::start().await;
    let poll = tokio::spawn(send(
        dev.client.get(dev.read_url("/v1/configs?index=0&wait=30s")),
    ));
    dev.await_watchers(1).await;
    let v = dev.write(json!({"SHOW_LOGS": false})).await;
    let resp = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("woken by the write")
        .expect("task")
        .expect_status(200);
    assert_eq!(resp.json()["version"], v);
}

#[tokio::test]
async fn invalid_index_or_wait_is_400_invalid_query() {
    let dev = Dev::start().await;
    for query in [
        "index=abc",
        "index=1-x",
        "index=-1",
        "index=1-2-3",
        "index=1-0&wait=soon",
        "index=1-0&wait=-5",
        "wait=forever",
    ] {
        let resp = dev.get(dev.read_url(&format!("/v1/configs?{query}"))).await;
        let error = resp.expect_error(400, "invalid_query");
        assert!(error["message"].as_str().is_some(), "{query}");
    }
}

#[tokio::test]
async fn open_long_polls_and_streams_are_capped_by_max_watchers() {
    let dev = Dev::start_with(None, |s| s.max_watchers = 2).await;
    let _first = dev.watch("", None).await;
    let poll = tokio::spawn(send(
        dev.client
            .get(dev.read_url("/v1/configs?index=1-0&wait=30s")),
    ));
    dev.await_watchers(2).await;

    let refused_stream = dev.get(dev.read_url("/v1/watch")).await;
    refused_stream.expect_error(503, "too_many_watchers");
    assert!(refused_stream.header("retry-after").is_some());
    let refused_poll = dev
        .get(dev.read_url("/v1/configs?index=1-0&wait=30s"))
        .await;
    refused_poll.expect_error(503, "too_many_watchers");
    // Plain reads are never capped.
    dev.get(dev.read_url("/v1/configs"))
        .await
        .expect_status(200);

    // A write answers the long-poll, which frees its slot for a new watcher.
    dev.write(json!({"SHOW_LOGS": false})).await;
    poll.await.expect("task").expect_status(200);
    dev.await_watchers(1).await;
    let _second = dev.watch("", None).await;
}

#[tokio::test]
async fn a_watcher_slot_is_released_when_its_client_goes_away() {
    let dev = Dev::start_with(None, |s| s.max_watchers = 1).await;
    let stream = dev.watch("", None).await;
    dev.await_watchers(1).await;
    drop(stream);
    dev.await_watchers(0).await;
    let _again = dev.watch("", None).await;
}
