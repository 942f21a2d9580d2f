//! The admin JSON API of `rtconfig dev` (DESIGN §6): every endpoint and every error code, and
//! that a failed write writes nothing.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{assert_families, demo_schema_dir, send, Dev, NS};

/// Asserts the namespace is still at `version` with the same sidecar values (nothing written).
async fn assert_nothing_written(dev: &Dev, version: u64, values: &Value) {
    assert_eq!(
        dev.admin_version().await,
        version,
        "the version did not move"
    );
    assert_eq!(
        &dev.sidecar_values().await,
        values,
        "the values did not change"
    );
    let history = dev.history("").await;
    assert_eq!(
        history["changesets"].as_array().map(Vec::len),
        Some(version as usize),
        "no changeset was recorded: {history}"
    );
}

#[tokio::test]
async fn namespaces_lists_each_schema_with_its_version() {
    let dev = Dev::start().await;
    let body = dev
        .get(dev.api_url("/namespaces"))
        .await
        .expect_status(200)
        .json();
    let list = body["namespaces"].as_array().expect("namespaces");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "demo");
    assert_eq!(list[0]["epoch"], 1);
    assert_eq!(list[0]["version"], 0);
    assert_eq!(list[0]["keys"], 8);
    dev.write(json!({"SHOW_LOGS": false})).await;
    let body = dev.get(dev.api_url("/namespaces")).await.json();
    assert_eq!(body["namespaces"][0]["version"], 1);
}

#[tokio::test]
async fn configs_show_schema_value_default_and_modified_flag() {
    let dev = Dev::start().await;
    let v = dev.write(json!({"ITEMS_PER_PAGE": 12})).await;
    let resp = dev.get(dev.ns_url("/configs")).await.expect_status(200);
    assert!(resp.header("x-request-id").is_some_and(|id| !id.is_empty()));
    let body = resp.json();
    assert_eq!(body["namespace"], "demo");
    assert_eq!(body["version"], v);
    let configs = body["configs"].as_array().expect("configs");
    assert_eq!(configs.len(), 8);
    let items = configs
        .iter()
        .find(|c| c["key"] == "ITEMS_PER_PAGE")
        .expect("ITEMS_PER_PAGE");
    for field in [
        "key",
        "type",
        "group",
        "description",
        "default",
        "value",
        "modified",
        "secret",
    ] {
        assert!(items.get(field).is_some(), "{field} missing: {items}");
    }
    assert_eq!(items["type"], "int");
    assert_eq!(items["group"], "Content");
    assert_eq!(items["default"], 5);
    assert_eq!(items["value"], 12);
    assert_eq!(items["modified"], true);
    assert_eq!(items["secret"], false);
    let site = configs
        .iter()
        .find(|c| c["key"] == "SITE_NAME")
        .expect("SITE_NAME");
    assert_eq!(site["value"], "Config Manager");
    assert_eq!(site["modified"], false);

    let one = dev
        .get(dev.ns_url("/configs/ITEMS_PER_PAGE"))
        .await
        .expect_status(200)
        .json();
    assert_eq!(one["value"], 12);
    assert_eq!(one["modified"], true);
    assert_eq!(one["version"], v, "the key's own version");
}

#[tokio::test]
async fn unknown_namespace_is_404_on_every_endpoint() {
    let dev = Dev::start().await;
    let nope = |p: &str| dev.api_url(&format!("/namespaces/nope{p}"));
    let cases = [
        (Method::GET, nope("/configs"), None),
        (
            Method::PATCH,
            nope("/configs"),
            Some(json!({"changes": {"A": 1}})),
        ),
        (Method::GET, nope("/configs/SITE_NAME"), None),
        (
            Method::PUT,
            nope("/configs/SITE_NAME"),
            Some(json!({"value": "x"})),
        ),
        (Method::DELETE, nope("/configs/SITE_NAME"), None),
        (Method::GET, nope("/history"), None),
        (Method::GET, nope("/changesets/1"), None),
        (
            Method::POST,
            nope("/rollback"),
            Some(json!({"to_version": 0})),
        ),
        (Method::GET, nope("/sidecars"), None),
        (Method::GET, nope("/export"), None),
        (Method::POST, nope("/import"), Some(json!({"values": {}}))),
    ];
    for (method, url, body) in cases {
        let mut rb = dev.request(method.clone(), &url);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let error = send(rb).await.expect_error(404, "unknown_namespace");
        assert!(
            error["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "{method} {url}: errors carry the request id: {error}"
        );
    }
}

#[tokio::test]
async fn unknown_keys_are_refused_and_nothing_is_written() {
    let dev = Dev::start().await;
    let values = dev.sidecar_values().await;
    dev.get(dev.ns_url("/configs/NOPE"))
        .await
        .expect_error(404, "unknown_key");
    send(
        dev.client
            .put(dev.ns_url("/configs/NOPE"))
            .json(&json!({"value": 1})),
    )
    .await
    .expect_error(404, "unknown_key");
    send(dev.client.delete(dev.ns_url("/configs/NOPE")))
        .await
        .expect_error(404, "unknown_key");
    let error = dev
        .patch(json!({"SITE_NAME": "valid", "NOPE": 1}))
        .await
        .expect_error(422, "unknown_key");
    assert!(error["message"]
        .as_str()
        .is_some_and(|m| m.contains("NOPE")));
    assert_eq!(error["details"]["errors"][0]["key"], "NOPE");
    assert_nothing_written(&dev, 0, &values).await;
}

#[tokio::test]
async fn an_invalid_value_is_422_naming_the_key_and_rule_and_nothing_is_written() {
    let dev = Dev::start().await;
    dev.write(json!({"SITE_NAME": "Before"})).await;
    let values = dev.sidecar_values().await;
    let cases = [
        (json!({"ITEMS_PER_PAGE": 1000}), "ITEMS_PER_PAGE", "max"),
        (json!({"ITEMS_PER_PAGE": 0}), "ITEMS_PER_PAGE", "min"),
        (json!({"ITEMS_PER_PAGE": "five"}), "ITEMS_PER_PAGE", "type"),
        (json!({"ITEMS_PER_PAGE": 2.5}), "ITEMS_PER_PAGE", "type"),
        (json!({"THEME_COLOR": "red"}), "THEME_COLOR", "pattern"),
        (
            json!({"SITE_NAME": "x".repeat(101)}),
            "SITE_NAME",
            "max_length",
        ),
        (
            json!({"MAINTENANCE_MODE": "yes"}),
            "MAINTENANCE_MODE",
            "type",
        ),
        (
            json!({"UI_POLLING_INTERVAL": 1.0}),
            "UI_POLLING_INTERVAL",
            "min",
        ),
    ];
    for (changes, key, rule) in cases {
        // A valid change in the same request is not written either.
        let mut all = changes.clone();
        all["SITE_NAME"] = json!("After");
        if key == "SITE_NAME" {
            all = changes.clone();
        }
        let error = dev.patch(all).await.expect_error(422, "invalid_value");
        let errors = error["details"]["errors"]
            .as_array()
            .expect("details.errors");
        assert_eq!(errors.len(), 1, "{error}");
        assert_eq!(errors[0]["key"], key, "{error}");
        assert_eq!(errors[0]["rule"], rule, "{changes}: {error}");
        assert!(
            error["message"].as_str().is_some_and(|m| m.contains(key)),
            "the message names the key: {error}"
        );
    }
    // Every problem is reported at once.
    let error = dev
        .patch(json!({"ITEMS_PER_PAGE": 0, "THEME_COLOR": "red"}))
        .await
        .expect_error(422, "invalid_value");
    assert_eq!(error["details"]["errors"].as_array().map(Vec::len), Some(2));
    // PUT validates the same way.
    send(
        dev.client
            .put(dev.ns_url("/configs/LOGS_COUNT"))
            .json(&json!({"value": -1})),
    )
    .await
    .expect_error(422, "invalid_value");
    assert_nothing_written(&dev, 1, &values).await;
}

#[tokio::test]
async fn a_patch_without_changes_is_422() {
    let dev = Dev::start().await;
    dev.patch(json!({}))
        .await
        .expect_error(422, "invalid_value");
    assert_eq!(dev.admin_version().await, 0);
}

#[tokio::test]
async fn a_patch_commits_many_keys_as_one_changeset() {
    let dev = Dev::start().await;
    let resp = dev
        .patch_body(json!({
            "changes": {"SITE_NAME": "Shop", "ITEMS_PER_PAGE": 20, "SHOW_LOGS": false},
            "comment": "launch",
        }))
        .await
        .expect_status(200);
    let body = resp.json();
    assert_eq!(body["version"], 1);
    let mut changes = body["changes"].as_array().expect("changes").clone();
    changes.sort_by_key(|c| c["key"].as_str().map(str::to_owned));
    assert_eq!(
        changes,
        vec![
            json!({"key": "ITEMS_PER_PAGE", "old": null, "new": 20}),
            json!({"key": "SHOW_LOGS", "old": null, "new": false}),
            json!({"key": "SITE_NAME", "old": null, "new": "Shop"}),
        ]
    );
    let values = dev.sidecar_values().await;
    assert_eq!(values["SITE_NAME"], "Shop");
    assert_eq!(values["ITEMS_PER_PAGE"], 20);
    assert_eq!(values["SHOW_LOGS"], false);
    let history = dev.history("").await;
    assert_eq!(history["changesets"].as_array().map(Vec::len), Some(1));
    assert_eq!(history["changesets"][0]["comment"], "launch");
    assert_eq!(history["changesets"][0]["actor"], "token:dev");

    // Writing the values it already has changes nothing and makes no changeset.
    let same = dev
        .patch(json!({"SITE_NAME": "Shop"}))
        .await
        .expect_status(200);
    assert_eq!(same.json()["version"], 1);
    assert_eq!(same.json()["changes"], json!([]));
    assert_eq!(dev.admin_version().await, 1);
}

#[tokio::test]
async fn null_resets_a_key_to_its_default() {
    let dev = Dev::start().await;
    dev.write(json!({"SITE_NAME": "Shop"})).await;
    let resp = dev
        .patch(json!({"SITE_NAME": null}))
        .await
        .expect_status(200);
    assert_eq!(
        resp.json()["changes"],
        json!([{"key": "SITE_NAME", "old": "Shop", "new": null}])
    );
    assert_eq!(dev.sidecar_values().await["SITE_NAME"], "Config Manager");
    let one = dev.get(dev.ns_url("/configs/SITE_NAME")).await.json();
    assert_eq!(one["value"], "Config Manager");
    assert_eq!(one["modified"], false);
    let ofrep = send(
        dev.client
            .post(dev.read_url("/ofrep/v1/evaluate/flags/SITE_NAME"))
            .json(&json!({})),
    )
    .await
    .json();
    assert_eq!(ofrep["variant"], "default");
}

#[tokio::test]
async fn put_sets_one_key_and_delete_resets_it() {
    let dev = Dev::start().await;
    let put = send(
        dev.client
            .put(dev.ns_url("/configs/LOGS_COUNT"))
            .json(&json!({"value": 50, "comment": "more logs"})),
    )
    .await
    .expect_status(200)
    .json();
    assert_eq!(put["version"], 1);
    assert_eq!(
        put["changes"],
        json!([{"key": "LOGS_COUNT", "old": null, "new": 50}])
    );
    assert_eq!(dev.sidecar_values().await["LOGS_COUNT"], 50);

    // PUT with a stale expected_version conflicts.
    send(
        dev.client
            .put(dev.ns_url("/configs/LOGS_COUNT"))
            .json(&json!({"value": 60, "expected_version": 0})),
    )
    .await
    .expect_error(409, "version_conflict");
    // PUT without a value is refused.
    send(
        dev.client
            .put(dev.ns_url("/configs/LOGS_COUNT"))
            .json(&json!({})),
    )
    .await
    .expect_error(422, "invalid_body");

    let del = send(dev.client.delete(dev.ns_url("/configs/LOGS_COUNT")))
        .await
        .expect_status(200)
        .json();
    assert_eq!(del["version"], 2);
    assert_eq!(
        del["changes"],
        json!([{"key": "LOGS_COUNT", "old": 50, "new": null}])
    );
    assert_eq!(dev.sidecar_values().await["LOGS_COUNT"], 10);
    let stale_delete = send(
        dev.client
            .delete(dev.ns_url("/configs/LOGS_COUNT?expected_version=1")),
    )
    .await;
    stale_delete.expect_error(409, "version_conflict");
    let history = dev.history("").await;
    assert_eq!(history["changesets"][1]["comment"], "more logs");
}

#[tokio::test]
async fn a_stale_expected_version_is_409_and_nothing_is_written() {
    let dev = Dev::start().await;
    dev.write(json!({"LOGS_COUNT": 11})).await;
    dev.write(json!({"LOGS_COUNT": 12})).await;
    let values = dev.sidecar_values().await;
    let error = dev
        .patch_body(json!({"changes": {"LOGS_COUNT": 99}, "expected_version": 1}))
        .await
        .expect_error(409, "version_conflict");
    assert_eq!(error["details"]["expected_version"], 1);
    assert_eq!(error["details"]["current_version"], 2);
    assert_nothing_written(&dev, 2, &values).await;
    // With the current version it goes through.
    let ok = dev
        .patch_body(json!({"changes": {"LOGS_COUNT": 99}, "expected_version": 2}))
        .await
        .expect_status(200);
    assert_eq!(ok.json()["version"], 3);
}

#[tokio::test]
async fn per_key_expected_versions_let_edits_of_other_keys_through() {
    let dev = Dev::start().await;
    let v_items = dev.write(json!({"ITEMS_PER_PAGE": 6})).await;
    let v_site = dev.write(json!({"SITE_NAME": "A"})).await;
    // An operator who loaded ITEMS_PER_PAGE at its version is not blocked by the SITE_NAME edit.
    let ok = dev
        .patch_body(
            json!({"changes": {"ITEMS_PER_PAGE": 7}, "expected": {"ITEMS_PER_PAGE": v_items}}),
        )
        .await
        .expect_status(200);
    let v = ok.json()["version"].as_u64().expect("version");
    // One who loaded SITE_NAME before its edit is.
    let values = dev.sidecar_values().await;
    let error = dev
        .patch_body(json!({"changes": {"SITE_NAME": "B"}, "expected": {"SITE_NAME": 0}}))
        .await
        .expect_error(409, "version_conflict");
    assert_eq!(error["details"]["key"], "SITE_NAME");
    assert_eq!(error["details"]["expected_version"], 0);
    assert_eq!(error["details"]["current_version"], v_site);
    // `expected` for a key never written is 0.
    dev.patch_body(json!({"changes": {"SHOW_LOGS": false}, "expected": {"SHOW_LOGS": 1}}))
        .await
        .expect_error(409, "version_conflict");
    dev.patch_body(json!({"changes": {"LOGS_COUNT": 3}, "expected": {"NOPE": 0}}))
        .await
        .expect_error(422, "unknown_key");
    assert_nothing_written(&dev, v, &values).await;
    dev.patch_body(json!({"changes": {"SHOW_LOGS": false}, "expected": {"SHOW_LOGS": 0}}))
        .await
        .expect_status(200);
}

#[tokio::test]
async fn malformed_bodies_get_their_own_codes_and_write_nothing() {
    let dev = Dev::start().await;
    let values = dev.sidecar_values().await;
    let url = dev.ns_url("/configs");

    let wrong_type = send(
        dev.client
            .patch(&url)
            .header("content-type", "text/plain")
            .body(r#"{"changes":{"SITE_NAME":"x"}}"#),
    )
    .await;
    wrong_type.expect_error(415, "unsupported_media_type");
    let no_type = send(
        dev.client
            .patch(&url)
            .body(r#"{"changes":{"SITE_NAME":"x"}}"#),
    )
    .await;
    no_type.expect_error(415, "unsupported_media_type");

    for broken in ["{", "{\"changes\": {\"SITE_NAME\": }}", "not json", ""] {
        let resp = send(
            dev.client
                .patch(&url)
                .header("content-type", "application/json")
                .body(broken),
        )
        .await;
        resp.expect_error(400, "malformed_json");
    }
    for shape in [
        json!({"changes": 5}),
        json!({"changes": ["SITE_NAME"]}),
        json!({"SITE_NAME": "x"}),
        json!({"changes": {"SITE_NAME": "x"}, "expected_version": "one"}),
        json!({"changes": {"SITE_NAME": "x"}, "surprise": true}),
        json!([]),
    ] {
        let resp = send(dev.client.patch(&url).json(&shape)).await;
        resp.expect_error(422, "invalid_body");
    }
    let long_comment = json!({"changes": {"SITE_NAME": "x"}, "comment": "c".repeat(1001)});
    send(dev.client.patch(&url).json(&long_comment))
        .await
        .expect_error(422, "invalid_comment");
    assert_nothing_written(&dev, 0, &values).await;
}

#[tokio::test]
async fn invalid_body_messages_describe_the_json_expected_not_rust_types() {
    let dev = Dev::start().await;
    let cases = [
        (
            dev.client.patch(dev.ns_url("/configs")).json(&json!([])),
            "got an array",
        ),
        (
            dev.client
                .patch(dev.ns_url("/configs"))
                .json(&json!({"changes": {"SITE_NAME": "x"}, "expected_version": "one"})),
            "\"expected_version\" must be a whole number, 0 or more, not the string \"one\"",
        ),
        (
            dev.client
                .put(dev.ns_url("/configs/SITE_NAME"))
                .json(&json!({"value": "x", "surprise": true})),
            "unknown field \"surprise\"",
        ),
        (
            dev.client
                .post(dev.ns_url("/rollback"))
                .json(&json!({"to_version": -3})),
            "\"to_version\" must be a whole number, 0 or more, not the number -3",
        ),
        (
            dev.client.post(dev.ns_url("/import")).json(&json!({})),
            "\"values\" is missing",
        ),
    ];
    for (request, problem) in cases {
        let error = send(request).await.expect_error(422, "invalid_body");
        let message = error["message"].as_str().expect("a message");
        assert!(
            message.starts_with("the body must be a JSON object with "),
            "{message}"
        );
        assert!(message.ends_with(problem), "{message}");
        for rust in ["struct", "Body", "u64", "expected one of"] {
            assert!(!message.contains(rust), "{message}");
        }
    }
}

#[tokio::test]
async fn a_body_over_1_mib_is_413_body_too_large() {
    let dev = Dev::start().await;
    let big = json!({"changes": {"WELCOME_MESSAGE": "x".repeat(1024 * 1024 + 10)}});
    let resp = send(dev.client.patch(dev.ns_url("/configs")).json(&big)).await;
    resp.expect_error(413, "body_too_large");
    let put = send(
        dev.client
            .put(dev.ns_url("/configs/WELCOME_MESSAGE"))
            .json(&json!({"value": "y".repeat(2 * 1024 * 1024)})),
    )
    .await;
    put.expect_error(413, "body_too_large");
    assert_eq!(dev.admin_version().await, 0);
    // Just under the limit is parsed (and then judged on its value).
    let fits = json!({"changes": {"WELCOME_MESSAGE": "x".repeat(1024 * 1024 - 100)}});
    let resp = send(dev.client.patch(dev.ns_url("/configs")).json(&fits)).await;
    let error = resp.expect_error(422, "invalid_value");
    assert_eq!(error["details"]["errors"][0]["rule"], "max_length");
    assert!(
        resp.body.len() < 64 * 1024,
        "the error does not echo the huge value ({} bytes)",
        resp.body.len()
    );
}

#[tokio::test]
async fn wrong_methods_on_admin_paths_are_405_and_unknown_paths_404() {
    let dev = Dev::start().await;
    for (method, path) in [
        (Method::POST, "/namespaces"),
        (Method::POST, "/namespaces/demo/configs"),
        (Method::DELETE, "/namespaces/demo/configs"),
        (Method::POST, "/namespaces/demo/configs/SITE_NAME"),
        (Method::DELETE, "/namespaces/demo/history"),
        (Method::PUT, "/namespaces/demo/changesets/1"),
        (Method::GET, "/namespaces/demo/rollback"),
        (Method::POST, "/namespaces/demo/sidecars"),
        (Method::POST, "/namespaces/demo/export"),
        (Method::GET, "/namespaces/demo/import"),
    ] {
        let resp = send(dev.request(method.clone(), dev.api_url(path))).await;
        let error = resp.expect_error(405, "method_not_allowed");
        assert!(error["request_id"].is_string(), "{method} {path}: {error}");
    }
    for path in ["/api/v1/nope", "/api/v2/namespaces", "/nope"] {
        dev.get(format!("{}{path}", dev.admin))
            .await
            .expect_error(404, "not_found");
    }
    let long = "a".repeat(9 * 1024);
    dev.get(dev.api_url(&format!("/namespaces?pad={long}")))
        .await
        .expect_error(414, "uri_too_long");
}

#[tokio::test]
async fn history_filters_by_key_and_actor_and_pages_with_next() {
    let dev = Dev::start().await;
    for i in 1..=5u64 {
        dev.write(json!({"ITEMS_PER_PAGE": i + 10})).await;
    }
    dev.write(json!({"SITE_NAME": "Shop"})).await;
    dev.write(json!({"SITE_NAME": "Shop", "ITEMS_PER_PAGE": 50}))
        .await;

    let all = dev.history("").await;
    let versions: Vec<u64> = all["changesets"]
        .as_array()
        .expect("changesets")
        .iter()
        .map(|c| c["version"].as_u64().expect("version"))
        .collect();
    assert_eq!(versions, vec![7, 6, 5, 4, 3, 2, 1], "newest first");
    assert!(
        all.get("next").is_none(),
        "one page holds everything: {all}"
    );
    let first = &all["changesets"][6];
    for field in ["version", "actor", "comment", "created_at", "changes"] {
        assert!(first.get(field).is_some(), "{field} missing: {first}");
    }
    assert_eq!(
        first["changes"],
        json!([{"key": "ITEMS_PER_PAGE", "old": 5, "new": 11,
                "old_is_default": true, "new_is_default": false}]),
        "the old value is the default in effect, marked as the default"
    );
    assert_eq!(
        all["changesets"][5]["changes"],
        json!([{"key": "ITEMS_PER_PAGE", "old": 11, "new": 12,
                "old_is_default": false, "new_is_default": false}]),
        "old and new per key"
    );

    let site = dev.history("?key=SITE_NAME").await;
    let site_versions: Vec<u64> = site["changesets"]
        .as_array()
        .expect("changesets")
        .iter()
        .map(|c| c["version"].as_u64().expect("version"))
        .collect();
    assert_eq!(site_versions, vec![6], "v7 did not change SITE_NAME");

    assert_eq!(
        dev.history("?actor=token:dev").await["changesets"]
            .as_array()
            .map(Vec::len),
        Some(7)
    );
    assert_eq!(
        dev.history("?actor=someone-else").await["changesets"],
        json!([])
    );

    // Paging: limit 3, follow `next` until it is absent.
    let mut seen = Vec::new();
    let mut query = "?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let page = dev.history(&query).await;
        pages += 1;
        let batch = page["changesets"].as_array().expect("changesets");
        assert!(batch.len() <= 3);
        seen.extend(batch.iter().map(|c| c["version"].as_u64().expect("v")));
        match page.get("next").and_then(Value::as_u64) {
            Some(next) => query = format!("?limit=3&before={next}"),
            None => break,
        }
        assert!(pages < 10, "paging ends");
    }
    assert_eq!(
        seen,
        vec![7, 6, 5, 4, 3, 2, 1],
        "pages cover every version once"
    );
    let items_page = dev.history("?key=ITEMS_PER_PAGE&limit=2&before=5").await;
    let v: Vec<u64> = items_page["changesets"]
        .as_array()
        .expect("changesets")
        .iter()
        .map(|c| c["version"].as_u64().expect("v"))
        .collect();
    assert_eq!(v, vec![4, 3], "filters and paging combine");
}

#[tokio::test]
async fn bad_history_queries_are_400_invalid_query() {
    let dev = Dev::start().await;
    for query in [
        "?limit=0",
        "?limit=100000",
        "?limit=x",
        "?before=soon",
        "?bogus=1",
    ] {
        dev.get(dev.ns_url(&format!("/history{query}")))
            .await
            .expect_error(400, "invalid_query");
    }
    send(dev.client.delete(dev.ns_url("/configs/SITE_NAME?bogus=1")))
        .await
        .expect_error(400, "invalid_query");
    send(
        dev.client
            .post(dev.ns_url("/import?dry_run=maybe"))
            .json(&json!({"values": {}})),
    )
    .await
    .expect_error(400, "invalid_query");
}

#[tokio::test]
async fn a_changeset_is_served_by_version_and_unknown_versions_are_404() {
    let dev = Dev::start().await;
    dev.write(json!({"SITE_NAME": "One"})).await;
    send(
        dev.client
            .patch(dev.ns_url("/configs"))
            .header("x-request-id", "req-123")
            .json(&json!({"changes": {"SITE_NAME": "Two"}, "comment": "second"})),
    )
    .await
    .expect_status(200);
    let cs = dev
        .get(dev.ns_url("/changesets/2"))
        .await
        .expect_status(200)
        .json();
    assert_eq!(cs["version"], 2);
    assert_eq!(cs["epoch"], 1);
    assert_eq!(cs["actor"], "token:dev");
    assert_eq!(cs["comment"], "second");
    assert_eq!(
        cs["request_id"], "req-123",
        "the caller's request id is kept"
    );
    assert!(cs["created_at"].as_str().is_some_and(|t| t.contains('T')));
    assert_eq!(
        cs["changes"],
        json!([{"key": "SITE_NAME", "old": "One", "new": "Two",
                "old_is_default": false, "new_is_default": false}])
    );
    let history = dev.history("").await;
    assert_eq!(history["changesets"][0], cs, "the same shape as in history");

    for missing in ["3", "0", "999999"] {
        dev.get(dev.ns_url(&format!("/changesets/{missing}")))
            .await
            .expect_error(404, "unknown_version");
    }
    assert_eq!(
        dev.get(dev.ns_url("/changesets/abc")).await.status,
        400,
        "a non-number is a bad request"
    );
}

#[tokio::test]
async fn rollback_creates_a_new_changeset_restoring_that_state() {
    let dev = Dev::start().await;
    dev.write(json!({"SITE_NAME": "One", "ITEMS_PER_PAGE": 7}))
        .await; // v1
    let at_v1 = dev.sidecar_values().await;
    dev.write(json!({"SITE_NAME": "Two", "SHOW_LOGS": false}))
        .await; // v2
    dev.write(json!({"ITEMS_PER_PAGE": null, "LOGS_COUNT": 99}))
        .await; // v3

    let resp = send(
        dev.client
            .post(dev.ns_url("/rollback"))
            .json(&json!({"to_version": 1, "comment": "undo the launch"})),
    )
    .await
    .expect_status(200);
    let body = resp.json();
    assert_eq!(
        body["version"], 4,
        "a rollback is a new version, history is kept"
    );
    assert_eq!(body["rolled_back_to"], 1);
    assert_eq!(dev.sidecar_values().await, at_v1);
    let cs = dev.get(dev.ns_url("/changesets/4")).await.json();
    assert_eq!(cs["comment"], "undo the launch");
    let mut changes = cs["changes"].as_array().expect("changes").clone();
    changes.sort_by_key(|c| c["key"].as_str().map(str::to_owned));
    assert_eq!(
        changes,
        vec![
            json!({"key": "ITEMS_PER_PAGE", "old": 5, "new": 7,
                   "old_is_default": true, "new_is_default": false}),
            json!({"key": "LOGS_COUNT", "old": 99, "new": 10,
                   "old_is_default": false, "new_is_default": true}),
            json!({"key": "SHOW_LOGS", "old": false, "new": true,
                   "old_is_default": false, "new_is_default": true}),
            json!({"key": "SITE_NAME", "old": "Two", "new": "One",
                   "old_is_default": false, "new_is_default": false}),
        ]
    );
    assert_eq!(
        dev.history("").await["changesets"].as_array().map(Vec::len),
        Some(4)
    );

    // To version 0: every default.
    send(
        dev.client
            .post(dev.ns_url("/rollback"))
            .json(&json!({"to_version": 0})),
    )
    .await
    .expect_status(200);
    let defaults = dev.get(dev.ns_url("/configs")).await.json();
    assert!(defaults["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .all(|c| c["modified"] == false));
    assert_eq!(
        dev.history("?limit=1").await["changesets"][0]["comment"],
        "rollback to version 0"
    );

    send(
        dev.client
            .post(dev.ns_url("/rollback"))
            .json(&json!({"to_version": 99})),
    )
    .await
    .expect_error(404, "unknown_version");
    send(
        dev.client
            .post(dev.ns_url("/rollback"))
            .json(&json!({"version": 1})),
    )
    .await
    .expect_error(422, "invalid_body");
    assert_eq!(dev.admin_version().await, 5);
}

#[tokio::test]
async fn an_idempotency_key_retry_returns_the_same_version_and_creates_nothing() {
    let dev = Dev::start().await;
    let write = |key: &'static str, body: Value| {
        send(
            dev.client
                .patch(dev.ns_url("/configs"))
                .header("idempotency-key", key)
                .json(&body),
        )
    };
    let body = json!({"changes": {"LOGS_COUNT": 42}, "expected_version": 0});
    let first = write("op-1", body.clone()).await.expect_status(200).json();
    assert_eq!(first["version"], 1);
    assert_eq!(first["replayed"], false);
    dev.write(json!({"SITE_NAME": "Later"})).await; // v2

    // The retry's expected_version is stale by now: it still gets the original outcome.
    let retry = write("op-1", body).await.expect_status(200).json();
    assert_eq!(retry["version"], 1, "the retry gets the original outcome");
    assert_eq!(retry["replayed"], true);
    assert_eq!(retry["changes"], first["changes"]);
    assert_eq!(dev.admin_version().await, 2, "no changeset was created");

    let reused = write(
        "op-1",
        json!({"changes": {"LOGS_COUNT": 43}, "expected_version": 0}),
    )
    .await;
    reused.expect_error(422, "idempotency_key_reused");
    assert_eq!(dev.admin_version().await, 2);
    assert_eq!(dev.sidecar_values().await["LOGS_COUNT"], 42);

    send(
        dev.client
            .patch(dev.ns_url("/configs"))
            .header("idempotency-key", "k".repeat(300))
            .json(&json!({"changes": {"LOGS_COUNT": 44}})),
    )
    .await
    .expect_error(400, "invalid_idempotency_key");
}

#[tokio::test]
async fn a_retried_rollback_with_the_same_idempotency_key_is_replayed() {
    let dev = Dev::start().await;
    dev.write(json!({"SITE_NAME": "One"})).await;
    dev.write(json!({"SITE_NAME": "Two"})).await;
    let rollback = || {
        send(
            dev.client
                .post(dev.ns_url("/rollback"))
                .header("idempotency-key", "rb-1")
                .json(&json!({"to_version": 1})),
        )
    };
    let first = rollback().await.expect_status(200).json();
    assert_eq!(first["version"], 3);
    let retry = rollback().await.expect_status(200).json();
    assert_eq!(retry["version"], 3, "{retry}");
    assert_eq!(retry["replayed"], true);
    assert_eq!(dev.admin_version().await, 3);
}

#[tokio::test]
async fn export_and_import_round_trip_with_a_dry_run_diff() {
    let dev = Dev::start().await;
    dev.write(json!({"SITE_NAME": "Shop", "LOGS_COUNT": 25}))
        .await;
    let export = dev
        .get(dev.ns_url("/export"))
        .await
        .expect_status(200)
        .json();
    assert_eq!(export["namespace"], "demo");
    assert_eq!(export["version"], 1);
    assert_eq!(
        export["values"],
        json!({"LOGS_COUNT": 25, "SITE_NAME": "Shop"})
    );

    // Importing the export unchanged is a no-op.
    let same = send(
        dev.client
            .post(dev.ns_url("/import?dry_run=true"))
            .json(&export),
    )
    .await
    .expect_status(200)
    .json();
    assert_eq!(same["dry_run"], true);
    assert_eq!(same["changes"], json!([]));

    let doc = json!({"values": {"SITE_NAME": "Store", "LOGS_COUNT": 25, "SHOW_LOGS": false}});
    let dry = send(
        dev.client
            .post(dev.ns_url("/import?dry_run=true"))
            .json(&doc),
    )
    .await
    .expect_status(200)
    .json();
    let mut diff = dry["changes"].as_array().expect("changes").clone();
    diff.sort_by_key(|c| c["key"].as_str().map(str::to_owned));
    assert_eq!(
        diff,
        vec![
            json!({"key": "SHOW_LOGS", "old": null, "new": false}),
            json!({"key": "SITE_NAME", "old": "Shop", "new": "Store"}),
        ]
    );
    assert_eq!(dev.admin_version().await, 1, "a dry run writes nothing");
    assert_eq!(dev.sidecar_values().await["SITE_NAME"], "Shop");

    let bad = json!({"values": {"SITE_NAME": "Store", "ITEMS_PER_PAGE": 0}});
    send(
        dev.client
            .post(dev.ns_url("/import?dry_run=true"))
            .json(&bad),
    )
    .await
    .expect_error(422, "invalid_value");
    send(dev.client.post(dev.ns_url("/import")).json(&bad))
        .await
        .expect_error(422, "invalid_value");
    assert_eq!(dev.admin_version().await, 1);

    let applied = send(dev.client.post(dev.ns_url("/import")).json(&doc))
        .await
        .expect_status(200)
        .json();
    assert_eq!(applied["version"], 2, "an import is one changeset");
    let values = dev.sidecar_values().await;
    assert_eq!(values["SITE_NAME"], "Store");
    assert_eq!(values["SHOW_LOGS"], false);
    assert_eq!(
        dev.history("?limit=1").await["changesets"][0]["comment"],
        "import"
    );
}

#[tokio::test]
async fn the_fleet_view_shows_the_dev_sidecar_at_the_current_version() {
    let dev = Dev::start().await;
    let v = dev.write(json!({"SHOW_LOGS": false})).await;
    let fleet = dev
        .get(dev.ns_url("/sidecars"))
        .await
        .expect_status(200)
        .json();
    assert_eq!(fleet["namespace"], "demo");
    assert_eq!(fleet["version"], v);
    let sidecars = fleet["sidecars"].as_array().expect("sidecars");
    assert_eq!(sidecars.len(), 1);
    assert_eq!(sidecars[0]["version"], v);
    assert_eq!(sidecars[0]["epoch"], 1);
    assert_eq!(sidecars[0]["status"], "ok");
    assert_eq!(sidecars[0]["schema_hash"], fleet["schema_hash"]);
    assert_eq!(fleet["stragglers"], json!([]));
    assert_eq!(fleet["schema_drift"], json!([]));
    assert_eq!(fleet["by_version"], json!({ format!("1-{v}"): 1 }));
}

#[tokio::test]
async fn the_admin_probes_and_openapi_answer() {
    let dev = Dev::start().await;
    let health = dev
        .get(format!("{}/healthz", dev.admin))
        .await
        .expect_status(200);
    assert_eq!(health.text().trim(), "ok");
    let ready = dev
        .get(format!("{}/readyz", dev.admin))
        .await
        .expect_status(200);
    assert_eq!(ready.json()["ready"], true);
    dev.write(json!({"SHOW_LOGS": false})).await;
    let metrics = dev
        .get(format!("{}/metrics", dev.admin))
        .await
        .expect_status(200);
    assert!(metrics
        .text()
        .contains("rtconfig_admin_writes_total{result=\"ok\"} 1"));
    let openapi = dev
        .get(dev.api_url("/openapi.yaml"))
        .await
        .expect_status(200);
    assert!(openapi.text().contains("openapi:"));
    let resp = dev.get(dev.ns_url("/configs")).await;
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(resp.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn secrets_are_masked_in_every_admin_output() {
    let dev = Dev::start_with_secret().await;
    let resp = dev
        .patch(json!({"DB_PASSWORD": "hunter2", "SITE_NAME": "Shop"}))
        .await
        .expect_status(200);
    let write = resp.json();
    assert!(!resp.text().contains("hunter2"), "{write}");
    let change = write["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .find(|c| c["key"] == "DB_PASSWORD")
        .cloned()
        .expect("DB_PASSWORD changed");
    assert_eq!(change["old"], Value::Null, "a default stays null");
    assert_eq!(change["new"]["masked"], true);
    let fingerprint = change["new"]["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_owned();
    assert!(!fingerprint.is_empty());

    let outputs = [
        dev.ns_url("/configs"),
        dev.ns_url("/configs/DB_PASSWORD"),
        dev.ns_url("/history"),
        dev.ns_url("/history?key=DB_PASSWORD"),
        dev.ns_url("/changesets/1"),
        dev.ns_url("/export"),
    ];
    for url in outputs {
        let resp = dev.get(&url).await.expect_status(200);
        assert!(!resp.text().contains("hunter2"), "{url}: {}", resp.text());
        assert!(
            resp.text().contains(&fingerprint),
            "{url} shows the fingerprint"
        );
    }
    let one = dev.get(dev.ns_url("/configs/DB_PASSWORD")).await.json();
    assert_eq!(one["secret"], true);
    assert_eq!(
        one["value"],
        json!({"masked": true, "fingerprint": fingerprint})
    );

    // Another value, another fingerprint; the old one is masked in history too.
    let resp = dev
        .patch(json!({"DB_PASSWORD": "swordfish"}))
        .await
        .expect_status(200);
    assert!(!resp.text().contains("swordfish"));
    let change = &resp.json()["changes"][0];
    assert_eq!(change["old"]["fingerprint"], fingerprint);
    assert_ne!(change["new"]["fingerprint"], fingerprint);
    let history = dev.get(dev.ns_url("/history")).await;
    assert!(!history.text().contains("hunter2") && !history.text().contains("swordfish"));

    // The real value is what the sidecar serves.
    assert_eq!(dev.sidecar_values().await["DB_PASSWORD"], "swordfish");
}

#[tokio::test]
async fn secret_values_are_never_echoed_in_error_bodies() {
    let dev = Dev::start_with_secret().await;
    let bad = "Not Allowed Secret!";
    let cases = [
        dev.patch(json!({"DB_PASSWORD": bad})).await,
        dev.patch(json!({"DB_PASSWORD": bad, "NOPE": 1})).await,
        dev.patch(json!({"DB_PASSWORD": bad, "ITEMS_PER_PAGE": 0}))
            .await,
        send(
            dev.client
                .put(dev.ns_url("/configs/DB_PASSWORD"))
                .json(&json!({"value": bad})),
        )
        .await,
        send(
            dev.client
                .post(dev.ns_url("/import?dry_run=true"))
                .json(&json!({"values": {"DB_PASSWORD": bad}})),
        )
        .await,
        dev.patch_body(json!({"changes": {"DB_PASSWORD": "ok"}, "expected_version": 7}))
            .await,
    ];
    for resp in cases {
        assert!(
            (400..500).contains(&resp.status),
            "refused: {}",
            resp.text()
        );
        assert!(!resp.text().contains(bad), "echoed: {}", resp.text());
        assert!(resp.json()["error"]["code"].is_string());
    }
    let error = dev
        .patch(json!({"DB_PASSWORD": bad}))
        .await
        .expect_error(422, "invalid_value");
    assert_eq!(error["details"]["errors"][0]["key"], "DB_PASSWORD");
    assert_eq!(error["details"]["errors"][0]["rule"], "pattern");
    assert_eq!(dev.admin_version().await, 0);
}

#[tokio::test]
async fn writing_a_secrets_mask_back_is_refused() {
    let dev = Dev::start_with_secret().await;
    dev.write(json!({"DB_PASSWORD": "hunter2"})).await;
    let mask = dev.get(dev.ns_url("/configs/DB_PASSWORD")).await.json()["value"].clone();
    assert_eq!(mask["masked"], true);
    let error = dev
        .patch(json!({"DB_PASSWORD": mask}))
        .await
        .expect_error(422, "invalid_value");
    assert_eq!(error["details"]["errors"][0]["rule"], "masked");
    send(
        dev.client
            .put(dev.ns_url("/configs/DB_PASSWORD"))
            .json(&json!({"value": {"masked": true}})),
    )
    .await
    .expect_error(422, "invalid_value");
    assert_eq!(dev.admin_version().await, 1);
    assert_eq!(dev.sidecar_values().await["DB_PASSWORD"], "hunter2");

    // An export with its masked secret imports back without touching the secret.
    let export = dev.get(dev.ns_url("/export")).await.json();
    let dry = send(
        dev.client
            .post(dev.ns_url("/import?dry_run=true"))
            .json(&export),
    )
    .await
    .expect_status(200)
    .json();
    assert_eq!(dry["changes"], json!([]));
    send(dev.client.post(dev.ns_url("/import")).json(&export))
        .await
        .expect_status(200);
    assert_eq!(dev.sidecar_values().await["DB_PASSWORD"], "hunter2");
}

#[tokio::test]
async fn the_admin_api_needs_credentials_in_dev_too() {
    let dev = Dev::start_with(None, |s| {
        s.admin_token = Some("bootstrap-t0ken-abcdef".into())
    })
    .await;
    let no_auth = send(dev.anon.get(dev.ns_url("/configs"))).await;
    no_auth.expect_error(401, "unauthorized");
    assert!(no_auth.header("www-authenticate").is_some());
    let wrong = send(
        dev.anon
            .get(dev.ns_url("/configs"))
            .bearer_auth("t0ken-abd"),
    )
    .await;
    wrong.expect_error(401, "unauthorized");
    let write = send(
        dev.anon
            .patch(dev.ns_url("/configs"))
            .json(&json!({"changes": {"SITE_NAME": "x"}})),
    )
    .await;
    write.expect_error(401, "unauthorized");
    assert_eq!(dev.sidecar_values().await["SITE_NAME"], "Config Manager");

    // The bootstrap token works and is the actor `admin-token`; the dev token is `token:dev`.
    let ok = send(
        dev.anon
            .patch(dev.ns_url("/configs"))
            .bearer_auth("bootstrap-t0ken-abcdef")
            .json(&json!({"changes": {"SITE_NAME": "x"}})),
    )
    .await
    .expect_status(200);
    assert_eq!(ok.json()["version"], 1);
    send(
        dev.anon
            .patch(dev.ns_url("/configs"))
            .header("authorization", format!("bearer {}", dev.token))
            .json(&json!({"changes": {"SITE_NAME": "y"}})),
    )
    .await
    .expect_status(200);
    let history = dev.history("").await;
    assert_eq!(history["changesets"][0]["actor"], "token:dev");
    assert_eq!(history["changesets"][1]["actor"], "admin-token");
    // Probes stay open; the read API never needs a token.
    send(dev.anon.get(format!("{}/healthz", dev.admin)))
        .await
        .expect_status(200);
    assert_eq!(
        send(dev.anon.get(dev.read_url("/v1/configs"))).await.status,
        200
    );
    assert_eq!(dev.sidecar_values().await["SITE_NAME"], "y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_writers_get_409s_lose_no_update_and_leave_no_gaps() {
    let dev = Arc::new(Dev::start().await);
    const PER_WRITER: u64 = 10;
    let barrier = Arc::new(tokio::sync::Barrier::new(2));

    let writer = |name: &'static str| {
        let dev = dev.clone();
        let barrier = barrier.clone();
        tokio::spawn(async move {
            let mut conflicts = 0u64;
            let mut done = 0u64;
            let mut first = true;
            while done < PER_WRITER {
                let cfg = dev.get(dev.ns_url("/configs/LOGS_COUNT")).await.json();
                let version = cfg["namespace_version"]
                    .as_u64()
                    .expect("namespace_version");
                let count = cfg["value"].as_u64().expect("value");
                if first {
                    // Both writers read the same version before either writes: one must lose.
                    barrier.wait().await;
                    first = false;
                }
                let resp = send(
                    dev.client
                        .patch(dev.ns_url("/configs"))
                        .header("user-agent", name)
                        .json(&json!({
                            "changes": {"LOGS_COUNT": count + 1},
                            "expected_version": version,
                            "comment": name,
                        })),
                )
                .await;
                match resp.status {
                    200 => {
                        assert_eq!(resp.json()["version"], version + 1);
                        done += 1;
                    }
                    409 => {
                        resp.expect_error(409, "version_conflict");
                        conflicts += 1;
                    }
                    other => panic!("{name}: unexpected {other}: {}", resp.text()),
                }
            }
            conflicts
        })
    };
    let (a, b) = (writer("writer-a"), writer("writer-b"));
    let conflicts = a.await.expect("writer a") + b.await.expect("writer b");
    assert!(conflicts >= 1, "the first round conflicts by construction");

    let total = 2 * PER_WRITER;
    assert_eq!(dev.admin_version().await, total);
    assert_eq!(
        dev.sidecar_values().await["LOGS_COUNT"],
        10 + total,
        "no lost update"
    );
    let history = dev.history("?limit=1000").await;
    let changesets = history["changesets"].as_array().expect("changesets");
    let versions: Vec<u64> = changesets
        .iter()
        .rev()
        .map(|c| c["version"].as_u64().expect("version"))
        .collect();
    assert_eq!(
        versions,
        (1..=total).collect::<Vec<_>>(),
        "gap-free versions"
    );
    for (i, cs) in changesets.iter().rev().enumerate() {
        let i = i as u64;
        // The first change's old value is the default in effect (10).
        assert_eq!(
            cs["changes"],
            json!([{"key": "LOGS_COUNT", "old": 10 + i, "new": 10 + i + 1,
                    "old_is_default": i == 0, "new_is_default": false}]),
            "each changeset builds on the one before"
        );
    }
    for name in ["writer-a", "writer-b"] {
        let mine = changesets.iter().filter(|c| c["comment"] == name).count();
        assert_eq!(mine as u64, PER_WRITER, "{name}'s writes all landed");
    }
}

#[tokio::test]
async fn the_admin_serves_every_namespace_and_the_sidecar_only_its_own() {
    let schema = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        demo_schema_dir().join("demo.toml"),
        schema.path().join("demo.toml"),
    )
    .expect("copy demo");
    std::fs::write(
        schema.path().join("shop.toml"),
        r#"namespace = "shop"
description = "Shop"

[[group]]
name = "Checkout"
keys = ["CURRENCY", "TIMEOUT"]

[keys.CURRENCY]
type = "enum"
choices = ["EUR", "USD"]
default = "EUR"

[keys.TIMEOUT]
type = "duration"
default = "30s"
"#,
    )
    .expect("write shop");
    let dev = Dev::start_with(Some(schema), |_| {}).await;
    let list = dev.get(dev.api_url("/namespaces")).await.json();
    let mut names: Vec<&str> = list["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, vec![NS, "shop"]);

    let shop = |p: &str| dev.api_url(&format!("/namespaces/shop{p}"));
    let w = send(
        dev.client
            .patch(shop("/configs"))
            .json(&json!({"changes": {"CURRENCY": "USD", "TIMEOUT": "5m"}})),
    )
    .await
    .expect_status(200)
    .json();
    assert_eq!(w["version"], 1, "versions are per namespace");
    send(
        dev.client
            .patch(shop("/configs"))
            .json(&json!({"changes": {"CURRENCY": "GBP"}})),
    )
    .await
    .expect_error(422, "invalid_value");
    assert_eq!(dev.admin_version().await, 0, "demo is untouched");
    let sidecar = dev.get(dev.read_url("/v1/configs")).await.json();
    assert_eq!(sidecar["namespace"], NS);
    assert_eq!(sidecar["version"], 0, "the sidecar serves --namespace only");
    dev.get(dev.read_url("/v1/configs/CURRENCY"))
        .await
        .expect_error(404, "unknown_key");
    let fleet = dev.get(shop("/sidecars")).await.expect_status(200).json();
    assert_eq!(
        fleet["sidecars"],
        json!([]),
        "no sidecar serves shop in dev"
    );
    let configs = dev.get(shop("/configs")).await.json();
    let currency = configs["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .find(|c| c["key"] == "CURRENCY")
        .cloned()
        .expect("CURRENCY");
    assert_eq!(currency["value"], "USD");
    assert_eq!(currency["type"], "enum");
}

#[tokio::test]
async fn dev_exports_the_metrics_of_what_it_runs() {
    let dev = Dev::start().await;
    dev.write(json!({"SHOW_LOGS": false})).await;
    dev.get(format!("{}/v1/configs/SHOW_LOGS", dev.read))
        .await
        .expect_status(200);
    // Both listeners with `/metrics` encode the one registry of the process.
    for url in [
        format!("{}/metrics", dev.admin),
        format!("{}/metrics", dev.probe),
    ] {
        let text = dev.get(url).await.expect_status(200).text();
        assert_families(
            "dev",
            &text,
            &[
                "http_requests",
                "http_request_duration_seconds",
                "snapshot_version",
                "snapshot_swaps",
                "ready",
                "watchers",
                "admin_writes",
            ],
            // No sync loop and no relay in dev.
            &["sync_", "redis_connected", "relay_"],
        );
        assert!(
            text.contains(
                "rtconfig_http_requests_total{route=\"/v1/configs/{key}\",status=\"200\"} 1"
            ),
            "{text}"
        );
    }
}
