//! History, changesets, compare and rollback through the admin API, on both ledgers: `dev`
//! (embedded) and `rtconfig admin` on the shared PostgreSQL (with a spawned Redis, whose log
//! keeps `null` for "reset to default" while the API shows the default in effect).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::postgres::shared_cluster;
use crate::harness::redis::RedisServer;
use crate::pg_stack::{fresh_db, redis_at, start_admin, TOKEN};
use crate::support::{client_with_token, Dev};

/// The admin API of one namespace (`demo`), authenticated.
struct Api {
    client: reqwest::Client,
    ns: String,
}

impl Api {
    fn of_dev(dev: &Dev) -> Api {
        Api {
            client: dev.client.clone(),
            ns: dev.ns_url(""),
        }
    }

    fn of_admin(addr: std::net::SocketAddr) -> Api {
        Api {
            client: client_with_token(TOKEN),
            ns: format!("http://{addr}/api/v1/namespaces/demo"),
        }
    }

    async fn answer(rb: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = rb.send().await.expect("answered");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> (StatusCode, Value) {
        Api::answer(self.client.get(format!("{}{path}", self.ns)).query(query)).await
    }

    async fn ok(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let (status, body) = self.get(path, query).await;
        assert_eq!(status, StatusCode::OK, "GET {path} {query:?}: {body}");
        body
    }

    async fn write(&self, changes: Value, comment: &str) -> u64 {
        let (status, body) = Api::answer(
            self.client
                .patch(format!("{}/configs", self.ns))
                .json(&json!({"changes": changes, "comment": comment})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "write {changes}: {body}");
        body["version"].as_u64().expect("version")
    }

    async fn rollback(&self, dry_run: bool, body: Value) -> (StatusCode, Value) {
        let url = format!("{}/rollback?dry_run={dry_run}", self.ns);
        Api::answer(self.client.post(url).json(&body)).await
    }

    async fn version(&self) -> u64 {
        self.ok("/configs", &[]).await["version"]
            .as_u64()
            .expect("version")
    }

    /// Versions of a history page.
    async fn versions(&self, query: &[(&str, &str)]) -> Vec<u64> {
        self.ok("/history", query).await["changesets"]
            .as_array()
            .expect("changesets")
            .iter()
            .map(|c| c["version"].as_u64().expect("version"))
            .collect()
    }
}

fn change(key: &str, old: Value, old_default: bool, new: Value, new_default: bool) -> Value {
    json!({"key": key, "old": old, "new": new,
           "old_is_default": old_default, "new_is_default": new_default})
}

fn sorted(changes: &Value) -> Vec<Value> {
    let mut v = changes.as_array().expect("changes").clone();
    v.sort_by_key(|c| c["key"].as_str().map(str::to_owned));
    v
}

/// The same checks on either ledger.
async fn history_shows_values_in_effect(api: &Api) {
    let v1 = api
        .write(json!({"SITE_NAME": "Shop", "ITEMS_PER_PAGE": 20}), "launch")
        .await;
    let v2 = api
        .write(json!({"SITE_NAME": null}), "back to the default")
        .await;
    let first = api.ok(&format!("/changesets/{v1}"), &[]).await;
    assert_eq!(
        sorted(&first["changes"]),
        [
            change("ITEMS_PER_PAGE", json!(5), true, json!(20), false),
            change(
                "SITE_NAME",
                json!("Config Manager"),
                true,
                json!("Shop"),
                false
            ),
        ],
        "the first change shows the default it replaced"
    );
    let reset = api.ok(&format!("/changesets/{v2}"), &[]).await;
    assert_eq!(
        reset["changes"],
        json!([change(
            "SITE_NAME",
            json!("Shop"),
            false,
            json!("Config Manager"),
            true
        )])
    );
    let history = api.ok("/history", &[("limit", "2")]).await;
    assert_eq!(history["changesets"][0], reset, "history shows the same");
    assert_eq!(history["changesets"][1], first);
}

async fn history_filters_combine_and_page(api: &Api) {
    let base = api.version().await;
    for (n, comment) in ["Ship the shop", "fix typo", "SHIP day two", "tune"]
        .iter()
        .enumerate()
    {
        api.write(json!({"LOGS_COUNT": 20 + n}), comment).await;
        // Distinct millisecond timestamps, so time bounds fall between changesets.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v = |n: u64| base + n;
    assert_eq!(
        api.versions(&[("q", "ship")]).await,
        [v(3), v(1)],
        "text in the comment, any case"
    );
    let all = api.ok("/history", &[("key", "LOGS_COUNT")]).await;
    let created = |version: u64| -> String {
        all["changesets"]
            .as_array()
            .expect("changesets")
            .iter()
            .find(|c| c["version"] == version)
            .and_then(|c| c["created_at"].as_str())
            .expect("created_at")
            .to_owned()
    };
    let (since, until) = (created(v(2)), created(v(4)));
    assert_eq!(
        api.versions(&[("since", &since), ("until", &until)]).await,
        [v(3), v(2)],
        "since inclusive, until exclusive"
    );
    let actor = all["changesets"][0]["actor"]
        .as_str()
        .expect("actor")
        .to_owned();
    assert_eq!(
        api.versions(&[
            ("q", "ship"),
            ("actor", &actor),
            ("key", "LOGS_COUNT"),
            ("since", &since),
        ])
        .await,
        [v(3)],
        "every filter at once"
    );
    assert!(api.versions(&[("actor", "nobody")]).await.is_empty());
    let today = chrono::Utc::now().date_naive();
    let yesterday = (today - chrono::Days::new(1)).to_string();
    let today = today.to_string();
    assert_eq!(
        api.versions(&[("since", &today), ("key", "LOGS_COUNT")])
            .await
            .len(),
        4,
        "a date is a day in UTC"
    );
    assert!(api.versions(&[("until", &yesterday)]).await.is_empty());
    let empty_form = [
        ("key", ""),
        ("actor", ""),
        ("q", ""),
        ("since", ""),
        ("until", ""),
    ];
    assert_eq!(
        api.versions(&empty_form).await.len() as u64,
        v(4),
        "an empty GET form filters nothing"
    );

    // Paging under a filter: follow `next`.
    let page = api
        .ok("/history", &[("key", "LOGS_COUNT"), ("limit", "3")])
        .await;
    assert_eq!(page["next"], v(2));
    let next = v(2).to_string();
    assert_eq!(
        api.versions(&[("key", "LOGS_COUNT"), ("limit", "3"), ("before", &next)])
            .await,
        [v(1)]
    );

    for (param, value) in [
        ("since", "last week"),
        ("until", "2026-02-30"),
        ("key", "no spaces allowed"),
        ("before", "0"),
        ("limit", "5000"),
    ] {
        let (status, body) = api.get("/history", &[(param, value)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{param}={value}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query");
        assert_eq!(body["error"]["details"]["parameter"], param, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(param)),
            "the message names {param}: {body}"
        );
    }
}

async fn compare_shows_keys_that_differ(api: &Api) {
    let a = api
        .write(json!({"SITE_NAME": "Compare A", "SHOW_LOGS": false}), "a")
        .await;
    let b = api
        .write(
            json!({"SITE_NAME": null, "ITEMS_PER_PAGE": 42, "UI_POLLING_INTERVAL": 500.5}),
            "b",
        )
        .await;
    let (from, to) = (a.to_string(), b.to_string());
    let cmp = api.ok("/compare", &[("from", &from), ("to", &to)]).await;
    assert_eq!(
        (cmp["from"].as_u64(), cmp["to"].as_u64()),
        (Some(a), Some(b))
    );
    let keys: Vec<&str> = cmp["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["key"].as_str().expect("key"))
        .collect();
    assert_eq!(
        keys,
        ["SITE_NAME", "ITEMS_PER_PAGE", "UI_POLLING_INTERVAL"],
        "only keys that differ, in schema order"
    );
    let site = &cmp["changes"][0];
    assert_eq!(
        (
            &site["old"],
            &site["new"],
            &site["new_is_default"],
            &site["type"]
        ),
        (
            &json!("Compare A"),
            &json!("Config Manager"),
            &json!(true),
            &json!("string")
        )
    );
    assert_eq!(cmp["changes"][2]["type"], "float");
    let current = api.ok("/compare", &[("from", &from)]).await;
    assert_eq!(current["to"], b, "to defaults to the current version");
    let zero = api.ok("/compare", &[("from", "0"), ("to", &from)]).await;
    assert!(
        zero["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .all(|c| c["old_is_default"] == true),
        "version 0 is every key at its default: {zero}"
    );
    let (status, body) = api.get("/compare", &[("from", "999999")]).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("unknown_version"))
    );
    for query in [
        vec![],
        vec![("from", "x")],
        vec![("from", "1"), ("to", "-1")],
    ] {
        let (status, body) = api.get("/compare", &query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query");
    }
}

async fn rollback_previews_then_commits_exactly_that(api: &Api) {
    let before = api
        .write(
            json!({"THEME_COLOR": "#111111", "MAINTENANCE_MODE": true}),
            "set",
        )
        .await;
    let bad = api
        .write(
            json!({"THEME_COLOR": "#222222", "WELCOME_MESSAGE": "oops"}),
            "bad",
        )
        .await;
    // Undo `bad`: the state just before it.
    let target = bad - 1;
    let (status, preview) = api.rollback(true, json!({"to_version": target})).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["dry_run"], true);
    assert_eq!(
        (preview["version"].as_u64(), preview["to_version"].as_u64()),
        (Some(bad), Some(target))
    );
    assert_eq!(
        sorted(&preview["changes"]),
        [
            change(
                "THEME_COLOR",
                json!("#222222"),
                false,
                json!("#111111"),
                false
            ),
            change(
                "WELCOME_MESSAGE",
                json!("oops"),
                false,
                json!("You can see real-time configs and their values here"),
                true
            ),
        ]
    );
    assert_eq!(api.version().await, bad, "a preview writes nothing");

    // Confirming a stale preview is refused.
    let (status, body) = api
        .rollback(
            false,
            json!({"to_version": target, "expected_version": bad - 1, "comment": "undo"}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::CONFLICT, &json!("version_conflict"))
    );
    let (status, body) = api
        .rollback(
            true,
            json!({"to_version": target, "expected_version": bad - 1}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "a stale preview too: {body}");

    let (status, done) = api
        .rollback(
            false,
            json!({"to_version": target, "expected_version": bad, "comment": "undo bad"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let v = done["version"].as_u64().expect("version");
    assert_eq!(v, bad + 1, "a rollback is a new changeset");
    let cs = api.ok(&format!("/changesets/{v}"), &[]).await;
    assert_eq!(cs["comment"], "undo bad");
    assert_eq!(
        sorted(&cs["changes"]),
        sorted(&preview["changes"]),
        "it did exactly what the preview showed"
    );
    let configs = api.ok("/configs", &[]).await;
    let value = |k: &str| {
        configs["configs"]
            .as_array()
            .expect("configs")
            .iter()
            .find(|c| c["key"] == k)
            .map(|c| c["value"].clone())
            .expect("key")
    };
    assert_eq!(value("THEME_COLOR"), "#111111");
    assert_eq!(value("MAINTENANCE_MODE"), true, "untouched by `bad`, kept");
    let _ = before;

    // To version 0: every key at its default; the preview lists every stored key.
    let (status, zero) = api.rollback(true, json!({"to_version": 0})).await;
    assert_eq!(status, StatusCode::OK, "{zero}");
    assert!(
        zero["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .all(|c| c["new_is_default"] == true && c["old_is_default"] == false),
        "{zero}"
    );
    let (status, _) = api.rollback(false, json!({"to_version": 0})).await;
    assert_eq!(status, StatusCode::OK);
    let configs = api.ok("/configs", &[]).await;
    assert!(configs["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .all(|c| c["modified"] == false));
    let (status, body) = api.rollback(true, json!({"to_version": 999999})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("unknown_version"))
    );
    let (status, body) = Api::answer(
        api.client
            .post(format!("{}/rollback?dry_run=perhaps", api.ns))
            .json(&json!({"to_version": 0})),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_query"))
    );
}

#[tokio::test]
async fn embedded_history_shows_values_in_effect() {
    let dev = Dev::start().await;
    history_shows_values_in_effect(&Api::of_dev(&dev)).await;
}

#[tokio::test]
async fn embedded_history_filters_combine_and_page() {
    let dev = Dev::start().await;
    history_filters_combine_and_page(&Api::of_dev(&dev)).await;
}

#[tokio::test]
async fn embedded_compare_shows_keys_that_differ() {
    let dev = Dev::start().await;
    compare_shows_keys_that_differ(&Api::of_dev(&dev)).await;
}

#[tokio::test]
async fn embedded_rollback_previews_then_commits_exactly_that() {
    let dev = Dev::start().await;
    rollback_previews_then_commits_exactly_that(&Api::of_dev(&dev)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_history_compare_and_rollback() {
    let pg = shared_cluster();
    let (_db, url) = fresh_db(pg);
    let redis = RedisServer::start();
    let admin = start_admin(&url, &redis.url()).await;
    let api = Api::of_admin(admin.addr);
    history_shows_values_in_effect(&api).await;
    // The Redis log keeps `null` for "reset to default" (version 2 reset SITE_NAME).
    redis_at(&redis, 1, 2).await;
    let log = redis.cmd(&["XRANGE", "rtconfig:{demo}:log", "2-0", "2-0"]);
    assert!(
        log.contains(r#"{"SITE_NAME":null}"#),
        "the log entry of a reset is null: {log}"
    );
    history_filters_combine_and_page(&api).await;
    compare_shows_keys_that_differ(&api).await;
    rollback_previews_then_commits_exactly_that(&api).await;
}

#[tokio::test]
async fn history_keeps_the_default_that_was_in_effect_when_the_schema_changes_it() {
    let schema = tempfile::tempdir().expect("tempdir");
    let demo = std::fs::read_to_string(crate::support::demo_schema_dir().join("demo.toml"))
        .expect("demo.toml");
    std::fs::write(schema.path().join("demo.toml"), &demo).expect("schema");
    let path = schema.path().join("demo.toml");
    let mut dev = Dev::start_with(Some(schema), |_| {}).await;
    let api = Api::of_dev(&dev);
    let v = api.write(json!({"SITE_NAME": "Shop"}), "launch").await;
    std::fs::write(
        &path,
        demo.replace(r#"default = "Config Manager""#, r#"default = "Acme""#),
    )
    .expect("new default");
    dev.restart().await;
    let api = Api::of_dev(&dev);
    let cs = api.ok(&format!("/changesets/{v}"), &[]).await;
    assert_eq!(
        cs["changes"][0],
        change(
            "SITE_NAME",
            json!("Config Manager"),
            true,
            json!("Shop"),
            false
        ),
        "the default in effect then, not the schema's new one"
    );
    let (_, preview) = api.rollback(true, json!({"to_version": 0})).await;
    assert_eq!(
        preview["changes"][0],
        change("SITE_NAME", json!("Shop"), false, json!("Acme"), true),
        "a rollback goes to today's default"
    );
}

#[tokio::test]
async fn secrets_stay_masked_in_compare_and_rollback_previews() {
    let dev = Dev::start_with_secret().await;
    let api = Api::of_dev(&dev);
    let a = api.write(json!({"DB_PASSWORD": "hunter2"}), "set").await;
    api.write(json!({"DB_PASSWORD": "swordfish"}), "rotate")
        .await;
    let from = a.to_string();
    let (_, cmp) = api.get("/compare", &[("from", &from)]).await;
    let (_, preview) = api.rollback(true, json!({"to_version": a})).await;
    let (_, zero) = api.rollback(true, json!({"to_version": 0})).await;
    let (_, history) = api.get("/history", &[("key", "DB_PASSWORD")]).await;
    for body in [&cmp, &preview, &zero, &history] {
        let text = body.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("swordfish"),
            "{text}"
        );
        assert!(text.contains("fingerprint"), "{text}");
    }
    assert_eq!(cmp["changes"][0]["secret"], true);
    assert_eq!(cmp["changes"][0]["old"]["masked"], true);
}
