//! The live mirror between rtconfig and django-constance's Redis keys (`--constance-mirror`,
//! issue 13 items 2–3), against real spawned `redis-server`s and the real admin + sidecar. The
//! Django side is played by raw Redis commands writing exactly the bytes constance 4.x writes
//! (tests/it/constance_django.rs drives the real Django + constance).

use std::time::Duration;

use rtconfig::settings::ConstanceSettings;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::eventually;
use crate::harness::redis::RedisServer;
use crate::stack::{read_doc, Stack, TOKEN};

const PREFIX: &str = "constance:";
const CHANNEL: &str = "config-invalidation";
/// "Within 2 s" (issue 13 item 5) for Django-side writes; other waits get a margin.
const ADOPT_WITHIN: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(10);

fn mirror() -> ConstanceSettings {
    ConstanceSettings {
        prefix: PREFIX.into(),
        namespace: None,
        redis_url: None,
        channel: Some(CHANNEL.into()),
        poll_interval: Duration::from_millis(200),
    }
}

async fn start(redis: &RedisServer) -> Stack {
    Stack::start_with(&redis.url(), &[redis.url()], |s| {
        s.constance = Some(mirror());
    })
    .await
}

/// What constance 4.x writes for a str / int (`json.dumps` with Python's separators).
fn py_str(s: &str) -> String {
    format!(r#"{{"__type__": "default", "__value__": "{s}"}}"#)
}
fn py_int(n: i64) -> String {
    format!(r#"{{"__type__": "default", "__value__": {n}}}"#)
}

fn get(redis: &RedisServer, key: &str) -> String {
    redis.cmd(&["GET", &format!("{PREFIX}{key}")])
}

fn set(redis: &RedisServer, key: &str, bytes: &str) {
    assert_eq!(redis.cmd(&["SET", &format!("{PREFIX}{key}"), bytes]), "OK");
}

async fn api(stack: &Stack, path: &str) -> Value {
    let url = format!(
        "http://{}/api/v1/namespaces/demo/{path}",
        stack.admin().addr
    );
    let resp = stack
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin answers");
    assert_eq!(resp.status(), 200, "GET {path}");
    resp.json().await.expect("json")
}

/// Every changeset, oldest first: (actor, comment, keys).
async fn history(stack: &Stack) -> Vec<(String, String, Vec<String>)> {
    let h = api(stack, "history?limit=100").await;
    let mut out: Vec<(String, String, Vec<String>)> = h["changesets"]
        .as_array()
        .expect("changesets")
        .iter()
        .map(|cs| {
            (
                cs["actor"].as_str().unwrap_or_default().to_owned(),
                cs["comment"].as_str().unwrap_or_default().to_owned(),
                {
                    let mut keys: Vec<String> = cs["changes"]
                        .as_array()
                        .map(|c| {
                            c.iter()
                                .map(|c| c["key"].as_str().unwrap_or_default().to_owned())
                                .collect()
                        })
                        .unwrap_or_default();
                    keys.sort();
                    keys
                },
            )
        })
        .collect();
    out.reverse();
    out
}

fn adopted(keys: &[&str]) -> (String, String, Vec<String>) {
    (
        "django-constance".into(),
        "adopted from constance".into(),
        keys.iter().map(|k| (*k).to_owned()).collect(),
    )
}

async fn sidecar_value(stack: &Stack, key: &str) -> Option<Value> {
    read_doc(&stack.client, &stack.sidecars[0])
        .await
        .ok()
        .and_then(|d| d.values.get(key).cloned())
}

async fn metrics(stack: &Stack) -> String {
    let url = format!("http://{}/metrics", stack.admin().addr);
    stack
        .client
        .get(&url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constance_values_are_adopted_as_one_changeset_before_anything_is_written() {
    let redis = RedisServer::start();
    // A live Django shop: constance already holds values (and autofilled a default).
    set(&redis, "SITE_NAME", &py_str("Shop"));
    set(&redis, "ITEMS_PER_PAGE", &py_int(25));
    set(
        &redis,
        "MAINTENANCE_MODE",
        r#"{"__type__": "default", "__value__": false}"#,
    );
    let stack = start(&redis).await;

    let h = eventually(WAIT, "constance's values adopted", || async {
        let h = history(&stack).await;
        (!h.is_empty()).then_some(h)
    })
    .await;
    assert_eq!(h, vec![adopted(&["ITEMS_PER_PAGE", "SITE_NAME"])]);
    eventually(WAIT, "the sidecar serves the adopted values", || async {
        (sidecar_value(&stack, "SITE_NAME").await == Some(json!("Shop"))
            && sidecar_value(&stack, "ITEMS_PER_PAGE").await == Some(json!(25)))
        .then_some(())
    })
    .await;
    // Not overwritten by rtconfig's defaults, and nothing was rewritten.
    assert_eq!(get(&redis, "SITE_NAME"), py_str("Shop"));
    assert_eq!(get(&redis, "ITEMS_PER_PAGE"), py_int(25));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(history(&stack).await.len(), 1, "no echo of the adoption");

    let status = api(&stack, "constance").await;
    assert_eq!(status["enabled"], json!(true));
    assert_eq!(status["prefix"], json!(PREFIX));
    assert_eq!(status["running"], json!(true));
    let states: Vec<&str> = status["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["state"].as_str().unwrap_or_default())
        .collect();
    assert!(states.iter().all(|s| *s == "mirrored"), "{status}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtconfig_writes_reach_constance_byte_exact_resets_delete_and_names_are_published() {
    let redis = RedisServer::start();
    let stack = start(&redis).await;
    let mut subscriber = subscribe(&redis, CHANNEL).await;

    stack
        .write(json!({"SITE_NAME": "Caf\u{e9} \"42\"", "ITEMS_PER_PAGE": 7}))
        .await;
    eventually(WAIT, "constance holds rtconfig's values", || async {
        (get(&redis, "SITE_NAME") == py_str(r#"Caf\u00e9 \"42\""#)
            && get(&redis, "ITEMS_PER_PAGE") == py_int(7))
        .then_some(())
    })
    .await;
    let published = read_until(&mut subscriber, &["SITE_NAME", "ITEMS_PER_PAGE"]).await;
    assert!(published.contains(CHANNEL), "{published}");

    // A reset deletes the key: constance reads a missing key as its default.
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
    eventually(WAIT, "the reset deleted constance's key", || async {
        (redis.cmd(&["EXISTS", &format!("{PREFIX}SITE_NAME")]) == "0").then_some(())
    })
    .await;
    read_until(&mut subscriber, &["SITE_NAME"]).await;

    // No echo: what rtconfig wrote is never adopted back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let h = history(&stack).await;
    assert_eq!(h.len(), 2, "{h:?}");
    assert!(
        h.iter().all(|(actor, _, _)| actor != "django-constance"),
        "{h:?}"
    );
    assert!(metrics(&stack)
        .await
        .contains("rtconfig_constance_mirrored_total 3"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_saved_through_constance_is_adopted_within_2s_and_served() {
    // Keyspace notifications on (the mirror never sets them on a shared Redis).
    let redis = RedisServer::start_with_args(&["--notify-keyspace-events", "KA"]);
    let stack = start(&redis).await;
    eventually(
        WAIT,
        "the mirror sees the keyspace notifications",
        || async {
            (api(&stack, "constance").await["keyspace_notifications"] == json!(true)).then_some(())
        },
    )
    .await;

    set(&redis, "ITEMS_PER_PAGE", &py_int(42));
    let started = std::time::Instant::now();
    eventually(
        ADOPT_WITHIN,
        "the Django-side write is in the ledger",
        || async {
            history(&stack)
                .await
                .contains(&adopted(&["ITEMS_PER_PAGE"]))
                .then_some(())
        },
    )
    .await;
    eventually(ADOPT_WITHIN, "the sidecar serves it", || async {
        (sidecar_value(&stack, "ITEMS_PER_PAGE").await == Some(json!(42))).then_some(())
    })
    .await;
    println!("adopted and served after {:?}", started.elapsed());

    // Then rtconfig changes it again: the write goes out (constance's key is the adopted one).
    stack.write(json!({"ITEMS_PER_PAGE": 43})).await;
    eventually(WAIT, "constance holds 43", || async {
        (get(&redis, "ITEMS_PER_PAGE") == py_int(43)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let h = history(&stack).await;
    assert_eq!(h.len(), 2, "one adoption, one write, no echo: {h:?}");
    assert_eq!(h[0], adopted(&["ITEMS_PER_PAGE"]));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_constance_value_failing_the_schema_is_reported_and_left_alone() {
    let redis = RedisServer::start();
    let stack = start(&redis).await;
    // ITEMS_PER_PAGE has max = 100; MAINTENANCE_MODE is a bool.
    set(&redis, "ITEMS_PER_PAGE", &py_int(1000));
    set(&redis, "MAINTENANCE_MODE", &py_str("yes"));
    let status = eventually(WAIT, "the status shows both as invalid", || async {
        let s = api(&stack, "constance").await;
        let invalid = s["keys"]
            .as_array()?
            .iter()
            .filter(|k| k["state"] == json!("invalid"))
            .count();
        (invalid == 2).then_some(s)
    })
    .await;
    let key = |name: &str| {
        status["keys"]
            .as_array()
            .and_then(|ks| ks.iter().find(|k| k["key"] == json!(name)).cloned())
            .expect("key in status")
    };
    assert_eq!(key("ITEMS_PER_PAGE")["code"], json!("schema"), "{status}");
    assert!(
        key("ITEMS_PER_PAGE")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("max")),
        "{status}"
    );
    assert_eq!(key("MAINTENANCE_MODE")["code"], json!("wrong_type"));
    // Counted once per value, not once per pass.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let m = metrics(&stack).await;
    assert!(
        m.contains(r#"rtconfig_constance_rejected_total{key="ITEMS_PER_PAGE"} 1"#),
        "{m}"
    );
    assert!(m.contains("rtconfig_constance_invalid_keys 2"), "{m}");
    // The fleet page shows them too.
    let page = stack
        .client
        .get(format!(
            "http://{}/namespaces/demo/fleet",
            stack.admin().addr
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("fleet page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("django-constance mirror") && html.contains("ITEMS_PER_PAGE"),
        "{html}"
    );
    // Not adopted, not overwritten.
    assert!(history(&stack).await.is_empty());
    assert_eq!(get(&redis, "ITEMS_PER_PAGE"), py_int(1000));
    // Fixed on the Django side: adopted.
    set(&redis, "ITEMS_PER_PAGE", &py_int(100));
    eventually(WAIT, "the fixed value is adopted", || async {
        (history(&stack).await == vec![adopted(&["ITEMS_PER_PAGE"])]).then_some(())
    })
    .await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_neither_sides_values() {
    let redis = RedisServer::start();
    let mut stack = start(&redis).await;
    stack.write(json!({"SITE_NAME": "from rtconfig"})).await;
    set(&redis, "ITEMS_PER_PAGE", &py_int(42));
    eventually(WAIT, "both sides hold both values", || async {
        (get(&redis, "SITE_NAME") == py_str("from rtconfig")
            && history(&stack)
                .await
                .contains(&adopted(&["ITEMS_PER_PAGE"])))
        .then_some(())
    })
    .await;

    // Redis without persistence comes back empty: the mirror refills constance from the
    // ledger (and the relay refills rtconfig's image).
    redis.restart();
    eventually(WAIT, "constance's keys are refilled", || async {
        (get(&redis, "SITE_NAME") == py_str("from rtconfig")
            && get(&redis, "ITEMS_PER_PAGE") == py_int(42))
        .then_some(())
    })
    .await;

    // Again with the admin down, and a Django worker writing back a default it read from the
    // missing key (constance's autofill): the ledger's value still wins, nothing is adopted.
    stack.admin.take().expect("admin").stop().await;
    redis.restart();
    set(&redis, "SITE_NAME", &py_str("Config Manager"));
    stack.admin = Some(
        rtconfig::app::start_admin(stack.admin_settings.clone())
            .await
            .expect("admin restarts"),
    );
    eventually(WAIT, "the ledger's value is back in constance", || async {
        (get(&redis, "SITE_NAME") == py_str("from rtconfig")
            && get(&redis, "ITEMS_PER_PAGE") == py_int(42))
        .then_some(())
    })
    .await;
    eventually(WAIT, "the sidecar serves both", || async {
        (sidecar_value(&stack, "SITE_NAME").await == Some(json!("from rtconfig"))
            && sidecar_value(&stack, "ITEMS_PER_PAGE").await == Some(json!(42)))
        .then_some(())
    })
    .await;
    let h = history(&stack).await;
    assert_eq!(h.len(), 2, "one write, one adoption: {h:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_needs_a_namespace_when_the_schema_dir_has_several() {
    let dir = tempfile::tempdir().expect("tempdir");
    for ns in ["a", "b"] {
        std::fs::write(
            dir.path().join(format!("{ns}.toml")),
            format!("namespace = \"{ns}\"\n[[group]]\nname = \"G\"\nkeys = [\"K\"]\n[keys.K]\ntype = \"int\"\ndefault = 1\n"),
        )
        .expect("schema");
    }
    let data = tempfile::tempdir().expect("tempdir");
    let mut s = rtconfig::app::AdminSettings::for_tests(
        dir.path().to_path_buf(),
        data.path().join("ledger"),
        "redis://127.0.0.1:1",
    );
    s.constance = Some(mirror());
    let err = match rtconfig::app::start_admin(s).await {
        Ok(_) => panic!("the admin started without --constance-namespace"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("--constance-namespace"), "{err}");
}

/// A raw RESP subscriber (the way a Django worker's invalidation listener would be).
async fn subscribe(redis: &RedisServer, channel: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(redis.addr())
        .await
        .expect("connect");
    let cmd = format!(
        "*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{channel}\r\n",
        channel.len()
    );
    stream.write_all(cmd.as_bytes()).await.expect("subscribe");
    read_until(&mut stream, &["subscribe"]).await;
    stream
}

/// Reads until every one of `needles` was seen; returns what was read.
async fn read_until(stream: &mut tokio::net::TcpStream, needles: &[&str]) -> String {
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    while !needles.iter().all(|n| seen.contains(n)) {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {needles:?} published; got {seen:?}"))
            .expect("read");
        assert!(n > 0, "subscriber closed; got {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    seen
}

#[test]
fn the_compare_and_set_writes_only_over_the_bytes_it_expects() {
    use rtconfig::redis::scripts::CONSTANCE_CAS_LUA;
    let redis = RedisServer::start();
    let record = "rtconfig:{demo}:constance";
    let cas = |expect: &str, new: &str| {
        redis.cmd(&[
            "EVAL",
            CONSTANCE_CAS_LUA,
            "2",
            "constance:K",
            record,
            "K",
            expect,
            new,
            "",
            "K",
        ])
    };
    // Missing, expected missing: written and recorded.
    assert_eq!(cas("-", "=one"), "1");
    assert_eq!(redis.cmd(&["GET", "constance:K"]), "one");
    assert_eq!(redis.cmd(&["HGET", record, "K"]), "=one");
    // Django wrote in between: refused, nothing changed.
    redis.cmd(&["SET", "constance:K", "django"]);
    assert_eq!(cas("=one", "=two"), "0");
    assert_eq!(redis.cmd(&["GET", "constance:K"]), "django");
    assert_eq!(redis.cmd(&["HGET", record, "K"]), "=one");
    // Over what it expects: a reset deletes the key and records it missing.
    assert_eq!(cas("=django", "-"), "1");
    assert_eq!(redis.cmd(&["EXISTS", "constance:K"]), "0");
    assert_eq!(redis.cmd(&["HGET", record, "K"]), "-");
    // Expecting a value where the key is missing: refused.
    assert_eq!(cas("=django", "=three"), "0");
    assert_eq!(redis.cmd(&["EXISTS", "constance:K"]), "0");
}

/// Two admins on one PostgreSQL, both with `--constance-mirror`: only the relay leader mirrors,
/// so a Django-side save is adopted once, and a write on the other replica reaches constance
/// (through the poll, as that replica's commit does not wake the leader's mirror).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_only_the_relay_leader_mirrors() {
    let pg = crate::harness::postgres::shared_cluster();
    let (_db, url) = crate::pg_stack::fresh_db(pg);
    let redis = RedisServer::start();
    let settings = || {
        let mut s = crate::pg_stack::admin_settings(&url, &redis.url());
        s.constance = Some(mirror());
        s
    };
    let a = rtconfig::app::start_admin(settings())
        .await
        .expect("admin a");
    let b = rtconfig::app::start_admin(settings())
        .await
        .expect("admin b");
    let leader = eventually(WAIT, "one admin leads", || async {
        match (a.relay_metrics.leader.get(), b.relay_metrics.leader.get()) {
            (1, 0) => Some(0),
            (0, 1) => Some(1),
            _ => None,
        }
    })
    .await;
    let follower = if leader == 0 { &b } else { &a };
    let client = crate::stack::http();
    let status = |addr: std::net::SocketAddr| {
        let client = client.clone();
        async move {
            let v: Value = client
                .get(format!("http://{addr}/api/v1/namespaces/demo/constance"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .expect("status")
                .json()
                .await
                .expect("json");
            v
        }
    };
    eventually(WAIT, "the leader's mirror runs", || async {
        let (ls, fs) = if leader == 0 {
            (status(a.addr).await, status(b.addr).await)
        } else {
            (status(b.addr).await, status(a.addr).await)
        };
        (ls["running"] == json!(true) && fs["running"] == json!(false)).then_some(())
    })
    .await;

    set(&redis, "ITEMS_PER_PAGE", &py_int(42));
    let history = || async {
        let v: Value = client
            .get(format!(
                "http://{}/api/v1/namespaces/demo/history",
                follower.addr
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("history")
            .json()
            .await
            .expect("json");
        v["changesets"].as_array().cloned().unwrap_or_default()
    };
    eventually(WAIT, "the save is adopted", || async {
        history()
            .await
            .iter()
            .any(|cs| cs["actor"] == json!("django-constance"))
            .then_some(())
    })
    .await;

    let resp = client
        .patch(format!(
            "http://{}/api/v1/namespaces/demo/configs",
            follower.addr
        ))
        .bearer_auth(TOKEN)
        .json(&json!({"changes": {"SITE_NAME": "via the follower"}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 200);
    eventually(WAIT, "the follower's write reaches constance", || async {
        (get(&redis, "SITE_NAME") == py_str("via the follower")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let h = history().await;
    let actors: Vec<&str> = h.iter().filter_map(|cs| cs["actor"].as_str()).collect();
    assert_eq!(actors, vec!["admin-token", "django-constance"], "{h:?}");
    a.stop().await;
    b.stop().await;
}

/// Alternating writes on both sides, each waited for on the other side: the history holds
/// every change in order, each by its side, and nothing else (no echo, nothing lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_writes_on_both_sides_keep_every_change_in_order() {
    const STEPS: i64 = 40;
    let redis = RedisServer::start_with_args(&["--notify-keyspace-events", "KA"]);
    let stack = start(&redis).await;
    for i in 1..=STEPS {
        if i % 2 == 1 {
            stack.write(json!({"ITEMS_PER_PAGE": i})).await;
            eventually(WAIT, "constance holds rtconfig's write", || async {
                (get(&redis, "ITEMS_PER_PAGE") == py_int(i)).then_some(())
            })
            .await;
        } else {
            set(&redis, "ITEMS_PER_PAGE", &py_int(i));
            eventually(WAIT, "the sidecar serves Django's write", || async {
                (sidecar_value(&stack, "ITEMS_PER_PAGE").await == Some(json!(i))).then_some(())
            })
            .await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let h = api(&stack, "history?limit=100").await;
    let mut seen: Vec<(String, i64)> = h["changesets"]
        .as_array()
        .expect("changesets")
        .iter()
        .map(|cs| {
            (
                cs["actor"].as_str().unwrap_or_default().to_owned(),
                cs["changes"][0]["new"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    seen.reverse();
    let want: Vec<(String, i64)> = (1..=STEPS)
        .map(|i| {
            let actor = if i % 2 == 1 {
                "admin-token"
            } else {
                "django-constance"
            };
            (actor.to_owned(), i)
        })
        .collect();
    assert_eq!(seen, want);
    stack.stop().await;
}
