//! `GET /api/v1/namespaces/{ns}/events`: the admin's SSE stream of commits, on the embedded
//! store and on PostgreSQL (a commit on replica B appears on replica A's stream), its
//! `Last-Event-ID` replay, and its end with `event: revoked` when the session or token behind
//! it is revoked or expires (sign-out, token revoked, user disabled, idle timeout, and a token
//! revoked through another replica).

use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use rtconfig::app;
use serde_json::{json, Value};

use crate::auth_support::{answer, Backend, Browser, Target};
use crate::harness::postgres::shared_cluster;
use crate::harness::redis::RedisServer;
use crate::pg_stack::{admin_settings, fresh_db, TOKEN};
use crate::support::{Event, Sse};

const EVENTS: &str = "/api/v1/namespaces/demo/events";
/// Longer than the streams' periodic re-check (5 s), for a loaded 2-core machine.
const RECHECK_WITHIN: Duration = Duration::from_secs(15);

async fn write(t: &Target, rb: RequestBuilder, changes: Value) -> u64 {
    let _ = t;
    answer(rb.json(&json!({"changes": changes, "comment": "from the test"})))
        .await
        .expect_status(200)
        .json()["version"]
        .as_u64()
        .expect("version")
}

async fn bootstrap_write(t: &Target, changes: Value) -> u64 {
    write(
        t,
        t.with_token(
            t.bootstrap(),
            Method::PATCH,
            "/api/v1/namespaces/demo/configs",
        ),
        changes,
    )
    .await
}

/// The stream's last event must be `revoked`, and then the stream ends.
async fn expect_revoked(sse: &mut Sse, within: Duration, code: &str) {
    let ev = sse
        .next_within(within)
        .await
        .expect("a revoked event before the end");
    assert_eq!(ev.event, "revoked", "{ev:?}");
    assert_eq!(ev.json()["code"], code, "{ev:?}");
    assert!(
        sse.next_within(within).await.is_none(),
        "the stream ends after revoked"
    );
}

fn commit_of(ev: &Event) -> Value {
    assert_eq!(ev.event, "commit", "{ev:?}");
    ev.json()
}

async fn a_commit_appears_on_the_stream_and_is_replayed_after_last_event_id(backend: Backend) {
    let t = Target::start(backend, |_| {}).await;
    let alice = t.user("alice", &["viewer:demo"], None).await;
    let browser = t.session(&alice).await;
    let mut sse = Sse::open(t.as_browser(&browser, Method::GET, EVENTS)).await;
    assert_eq!(
        sse.headers.get("cache-control").map(|v| v.to_str().ok()),
        Some(Some("no-store"))
    );

    let v1 = bootstrap_write(&t, json!({"SITE_NAME": "Live", "THEME_COLOR": "#112233"})).await;
    let ev = sse.next().await.expect("a commit event");
    assert_eq!(ev.id, Some(v1.to_string()));
    let data = commit_of(&ev);
    assert_eq!(data["namespace"], "demo");
    assert_eq!(data["version"], v1);
    assert_eq!(data["actor"], "admin-token");
    assert_eq!(data["comment"], "from the test");
    assert_eq!(data["keys"], json!(["SITE_NAME", "THEME_COLOR"]));
    assert!(
        chrono::DateTime::parse_from_rfc3339(data["created_at"].as_str().expect("created_at"))
            .is_ok(),
        "{data}"
    );
    let v2 = bootstrap_write(&t, json!({"ITEMS_PER_PAGE": 9})).await;
    assert_eq!(
        commit_of(&sse.next().await.expect("second")).get("version"),
        Some(&json!(v2))
    );
    drop(sse);

    // Reconnecting with the last id seen replays what came after it, then goes live.
    let v3 = bootstrap_write(&t, json!({"SITE_NAME": "While away"})).await;
    let mut again = Sse::open(
        t.as_browser(&browser, Method::GET, EVENTS)
            .header("last-event-id", v1.to_string()),
    )
    .await;
    for want in [v2, v3] {
        let ev = again.next().await.expect("replayed");
        assert_eq!(ev.id, Some(want.to_string()), "{ev:?}");
    }
    let v4 = bootstrap_write(&t, json!({"SITE_NAME": "Back"})).await;
    assert_eq!(again.next().await.expect("live").id, Some(v4.to_string()));

    // A viewer of another namespace may not listen; nobody anonymous may.
    let bob = t.user("bob", &["viewer:payments"], None).await;
    let bob = t.session(&bob).await;
    answer(t.as_browser(&bob, Method::GET, EVENTS))
        .await
        .expect_error(403, "forbidden");
    answer(t.request(Method::GET, EVENTS))
        .await
        .expect_error(401, "unauthorized");
    answer(t.with_token(t.bootstrap(), Method::GET, "/api/v1/namespaces/nope/events"))
        .await
        .expect_status(404);

    // The open streams are counted.
    let metrics = answer(t.request(Method::GET, "/metrics")).await.text();
    let open: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rtconfig_admin_event_streams "))
        .and_then(|v| v.trim().parse().ok())
        .expect("rtconfig_admin_event_streams");
    assert!(open >= 1, "{metrics}");
    drop(again);
    t.stop().await;
}

#[tokio::test]
async fn events_a_commit_appears_and_is_replayed_embedded() {
    a_commit_appears_on_the_stream_and_is_replayed_after_last_event_id(Backend::Embedded).await;
}

#[tokio::test]
async fn events_a_commit_appears_and_is_replayed_postgres() {
    a_commit_appears_on_the_stream_and_is_replayed_after_last_event_id(Backend::Postgres).await;
}

/// Sign-out, a revoked token and a disabled user each close their streams at once.
async fn revocation_closes_streams(backend: Backend) {
    let t = Target::start(backend, |_| {}).await;
    let alice = t.user("alice", &["editor:demo"], None).await;

    // Sign-out.
    let browser = t.session(&alice).await;
    let mut sse = Sse::open(t.as_browser(&browser, Method::GET, EVENTS)).await;
    answer(t.as_browser(&browser, Method::DELETE, "/api/v1/session"))
        .await
        .expect_status(204);
    expect_revoked(&mut sse, Duration::from_secs(5), "unauthorized").await;

    // A revoked token.
    let (id, token) = t.token("ci", &["viewer:demo"], None, None).await;
    let mut sse = Sse::open(t.with_token(&token, Method::GET, EVENTS)).await;
    answer(t.with_token(
        t.bootstrap(),
        Method::DELETE,
        &format!("/api/v1/tokens/{id}"),
    ))
    .await
    .expect_status(204);
    expect_revoked(&mut sse, Duration::from_secs(5), "unauthorized").await;

    // A disabled user: their session's stream and the stream of a token they made.
    let browser: Browser = t.session(&alice).await;
    let (_, made) = t
        .token("alice-ci", &["viewer:demo"], Some(&alice), None)
        .await;
    let mut by_session = Sse::open(t.as_browser(&browser, Method::GET, EVENTS)).await;
    let mut by_token = Sse::open(t.with_token(&made, Method::GET, EVENTS)).await;
    answer(
        t.with_token(t.bootstrap(), Method::PATCH, "/api/v1/users/alice")
            .json(&json!({"disabled": true})),
    )
    .await
    .expect_status(200);
    expect_revoked(&mut by_session, Duration::from_secs(5), "unauthorized").await;
    // The token itself is not revoked, but it lost every right with its creator.
    expect_revoked(&mut by_token, Duration::from_secs(5), "forbidden").await;

    let metrics = answer(t.request(Method::GET, "/metrics")).await.text();
    assert!(
        metrics.contains("rtconfig_admin_event_stream_ends_total{reason=\"revoked\"} 4"),
        "{metrics}"
    );
    t.stop().await;
}

#[tokio::test]
async fn events_revocation_closes_streams_embedded() {
    revocation_closes_streams(Backend::Embedded).await;
}

#[tokio::test]
async fn events_revocation_closes_streams_postgres() {
    revocation_closes_streams(Backend::Postgres).await;
}

#[tokio::test]
async fn events_an_idle_session_and_an_expired_token_close_their_streams() {
    let t = Target::start(Backend::Embedded, |s| {
        s.auth.session_idle_timeout = Duration::from_secs(2);
    })
    .await;
    let alice = t.user("alice", &["viewer"], None).await;
    let browser = t.session(&alice).await;
    let mut sse = Sse::open(t.as_browser(&browser, Method::GET, EVENTS)).await;
    // The stream is no activity: the session goes idle after 2 s and the stream says so.
    expect_revoked(&mut sse, Duration::from_secs(10), "unauthorized").await;
    answer(t.as_browser(&browser, Method::GET, "/api/v1/session"))
        .await
        .expect_error(401, "unauthorized");
    // A token's stream ends at the token's expiry.
    let (_, token) = t
        .token(
            "short",
            &["viewer"],
            None,
            Some(chrono::Duration::seconds(2)),
        )
        .await;
    let mut sse = Sse::open(t.with_token(&token, Method::GET, EVENTS)).await;
    expect_revoked(&mut sse, Duration::from_secs(10), "unauthorized").await;
    t.stop().await;
}

#[tokio::test]
async fn events_on_postgres_a_commit_and_a_revocation_on_replica_b_reach_replica_a() {
    let redis = RedisServer::start();
    let (_, url) = fresh_db(shared_cluster());
    let a = app::start_admin(admin_settings(&url, &redis.url()))
        .await
        .expect("admin a");
    let b = app::start_admin(admin_settings(&url, &redis.url()))
        .await
        .expect("admin b");
    let client = reqwest::Client::new();
    let on = |addr: std::net::SocketAddr, method: Method, path: &str| {
        client
            .request(method, format!("http://{addr}{path}"))
            .bearer_auth(TOKEN)
    };

    let mut sse = Sse::open(on(a.addr, Method::GET, EVENTS)).await;
    let resp = answer(
        on(b.addr, Method::PATCH, "/api/v1/namespaces/demo/configs")
            .json(&json!({"changes": {"SITE_NAME": "from b"}})),
    )
    .await
    .expect_status(200);
    let version = resp.json()["version"].as_u64().expect("version");
    let ev = sse.next().await.expect("b's commit on a's stream");
    assert_eq!(ev.id, Some(version.to_string()));
    assert_eq!(commit_of(&ev)["keys"], json!(["SITE_NAME"]));
    assert_eq!(commit_of(&ev)["comment"], Value::Null);
    // And one from a itself, once.
    let resp = answer(
        on(a.addr, Method::PATCH, "/api/v1/namespaces/demo/configs")
            .json(&json!({"changes": {"SITE_NAME": "from a"}})),
    )
    .await
    .expect_status(200);
    let version = resp.json()["version"].as_u64().expect("version");
    assert_eq!(
        sse.next().await.expect("a's own").id,
        Some(version.to_string())
    );

    // A token revoked through b: a's stream of it closes at its next re-check.
    let created = answer(
        on(b.addr, Method::POST, "/api/v1/tokens")
            .json(&json!({"name": "watcher", "role": "viewer"})),
    )
    .await
    .expect_status(201)
    .json();
    let (id, token) = (
        created["id"].as_str().expect("id").to_owned(),
        created["token"].as_str().expect("token").to_owned(),
    );
    let mut by_token = Sse::open(
        client
            .get(format!("http://{}{EVENTS}", a.addr))
            .bearer_auth(&token),
    )
    .await;
    answer(on(b.addr, Method::DELETE, &format!("/api/v1/tokens/{id}")))
        .await
        .expect_status(204);
    expect_revoked(&mut by_token, RECHECK_WITHIN, "unauthorized").await;

    drop(sse);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn events_streams_end_on_shutdown_and_are_capped() {
    let t = Target::start(Backend::Embedded, |s| s.max_event_streams = 1).await;
    let mut sse = Sse::open(t.with_token(t.bootstrap(), Method::GET, EVENTS)).await;
    answer(t.with_token(t.bootstrap(), Method::GET, EVENTS))
        .await
        .expect_error(503, "too_many_streams");
    t.stop().await;
    assert!(sse.next().await.is_none(), "the stream ends on shutdown");
}
