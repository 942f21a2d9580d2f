//! PostgreSQL faults (reliability.md S14–S16): an admin crash right after COMMIT, an immediate
//! PostgreSQL shutdown with fsync on, and a PostgreSQL paused mid-commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use rtconfig::app::AdminLedger;
use rtconfig::ledger::postgres::Failpoints;
use serde_json::json;

use crate::harness::eventually;
use crate::harness::postgres::{shared_cluster, PgCluster, PgOptions};
use crate::harness::redis::RedisServer;
use crate::pg_stack::{
    admin_settings, code, fresh_db, redis_at, redis_item, redis_meta_u64, sidecar_shows,
    sidecar_state, spawn_admin, sql, start_admin, start_sidecar, Api, SETTLE,
};

/// Writes answer within this while PostgreSQL is down or paused (DESIGN §6).
const FAIL_FAST: Duration = Duration::from_secs(2);

/// S14: the admin process dies right after COMMIT, before answering and before relaying. The
/// write is durable; sidecars see the relay is down; a restarted admin relays it; the client's
/// retry with the same Idempotency-Key gets the same version, not a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s14_a_crash_after_commit_loses_nothing_and_a_retry_adds_nothing() {
    let pg = shared_cluster();
    let (db, url) = fresh_db(pg);
    let redis = RedisServer::start();
    let sidecar = start_sidecar(&redis.url()).await;
    let (mut crashing, api) = spawn_admin(
        &url,
        &redis.url(),
        &[("RTCONFIG_FAILPOINTS", "crash_after_commit")],
    )
    .await;
    redis_at(&redis, 1, 0).await;
    eventually(SETTLE, "the sidecar is in sync", || async {
        sidecar.sync.cause().is_none().then_some(())
    })
    .await;

    let changes = json!({"SITE_NAME": "written before the crash"});
    let lost = api.try_patch(changes.clone(), Some("s14")).await;
    assert!(
        lost.is_err(),
        "the admin died before answering, yet it answered {lost:?}"
    );
    assert_eq!(
        crashing.exit_code(SETTLE).await,
        Some(86),
        "the failpoint ended the process:\n{}",
        crashing.log()
    );
    assert_eq!(
        sql(
            pg,
            &db,
            "SELECT version || ' ' || (request_id <> '')::text FROM rtconfig_changesets"
        ),
        "1 true",
        "the commit is durable"
    );
    assert_eq!(redis_meta_u64(&redis, "version"), Some(0), "never relayed");
    eventually(SETTLE, "the sidecar reports the relay down", || async {
        (sidecar.sync.cause() == Some("relay_down")).then_some(())
    })
    .await;
    assert_eq!(sidecar_state(&sidecar).await["stale"], json!(true));

    let restarted = start_admin(&url, &redis.url()).await;
    sidecar_shows(&sidecar, 1, 1, "written before the crash").await;
    let api = Api::new(restarted.addr);
    let (status, body) = api.patch(changes, Some("s14")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 1);
    assert_eq!(body["replayed"], true);
    assert_eq!(
        sql(pg, &db, "SELECT count(*) FROM rtconfig_changesets"),
        "1",
        "no second version"
    );
    eventually(SETTLE, "the sidecar is in sync again", || async {
        sidecar.sync.cause().is_none().then_some(())
    })
    .await;
    restarted.stop().await;
    sidecar.stop().await;
}

/// The parts of Redis a write changes: meta version, the items, the log length.
fn redis_image(redis: &RedisServer) -> (Option<u64>, String, String) {
    (
        redis_meta_u64(redis, "version"),
        redis.cmd(&["HGETALL", "rtconfig:{demo}:items"]),
        redis.cmd(&["XLEN", "rtconfig:{demo}:log"]),
    )
}

/// S15: PostgreSQL stops immediately (a crash, fsync on) while writes go on. Every acknowledged
/// write is there after the restart; writes during the outage fail fast with 503
/// `store_unavailable` and touch nothing in Redis; sidecars keep serving; the same admin
/// recovers by itself; history is contiguous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s15_an_immediate_postgres_stop_loses_no_acknowledged_write() {
    let pg = Arc::new(PgCluster::start_with(PgOptions {
        fsync: true,
        ..PgOptions::default()
    }));
    let (db, url) = fresh_db(&pg);
    let redis = RedisServer::start();
    let sidecar = start_sidecar(&redis.url()).await;
    let admin = start_admin(&url, &redis.url()).await;
    let api = Api::new(admin.addr);
    redis_at(&redis, 1, 0).await;

    // Writes go on in the background while PostgreSQL is killed.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (api, stop) = (api.clone(), stop.clone());
        tokio::spawn(async move {
            let mut acked: Vec<(u64, String)> = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let value = format!("s15-{i}");
                if let Ok((StatusCode::OK, body)) =
                    api.try_patch(json!({ "SITE_NAME": value }), None).await
                {
                    acked.push((body["version"].as_u64().expect("version"), value));
                }
            }
            acked
        })
    };
    eventually(SETTLE, "some writes are acknowledged", || async {
        (admin.ledger.namespace_state("demo").await.ok()?.version >= 20).then_some(())
    })
    .await;
    let killer = pg.clone();
    tokio::task::spawn_blocking(move || killer.kill_immediate())
        .await
        .expect("kill");
    stop.store(true, Ordering::SeqCst);
    let acked = writer.await.expect("writer");
    assert!(acked.len() >= 20);

    // The outage: nothing can reach PostgreSQL, so nothing reaches Redis.
    let before = redis_image(&redis);
    for i in 0..5 {
        let t = Instant::now();
        let (status, body) = api
            .patch(json!({ "SITE_NAME": format!("outage-{i}") }), None)
            .await;
        let took = t.elapsed();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(code(&body), "store_unavailable", "{body}");
        assert!(took <= FAIL_FAST, "a failed write took {took:?}");
    }
    let (status, _) = api.get("/readyz").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "/readyz reflects PostgreSQL"
    );
    let read = sidecar_state(&sidecar).await;
    assert!(
        read["version"].as_u64().is_some(),
        "sidecars keep serving: {read}"
    );
    assert_eq!(
        redis_image(&redis),
        before,
        "no Redis mutation for failed writes"
    );

    let restarter = pg.clone();
    tokio::task::spawn_blocking(move || restarter.restart())
        .await
        .expect("restart");
    let after = eventually(SETTLE, "the same admin takes writes again", || async {
        match api
            .patch(json!({"SITE_NAME": "after the restart"}), None)
            .await
        {
            (StatusCode::OK, body) => body["version"].as_u64(),
            _ => None,
        }
    })
    .await;
    let (status, _) = api.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);

    let last_acked = acked.last().map(|a| a.0).expect("acked");
    assert!(after > last_acked);
    let rows = sql(
        &pg,
        &db,
        "SELECT version || '=' || (new #>> '{}') FROM rtconfig_history ORDER BY version",
    );
    let history: Vec<(u64, String)> = rows
        .lines()
        .map(|l| {
            let (v, value) = l.split_once('=').expect("row");
            (v.parse().expect("version"), value.to_owned())
        })
        .collect();
    let versions: Vec<u64> = history.iter().map(|h| h.0).collect();
    assert_eq!(
        versions,
        (1..=after).collect::<Vec<u64>>(),
        "history is contiguous"
    );
    for (version, value) in &acked {
        assert_eq!(
            history.get((*version - 1) as usize),
            Some(&(*version, value.clone())),
            "acknowledged write {version} survived the crash"
        );
    }
    redis_at(&redis, 1, after).await;
    assert_eq!(
        redis_item(&redis, "SITE_NAME"),
        Some(json!("after the restart"))
    );
    sidecar_shows(&sidecar, 1, after, "after the restart").await;
    admin.stop().await;
    sidecar.stop().await;
}

/// S16: PostgreSQL is paused (SIGSTOP) with COMMIT in flight. The request answers 503
/// `outcome_unknown` in time; after SIGCONT, a retry with the same Idempotency-Key settles it:
/// exactly one version, and history agrees with the current values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s16_a_commit_cut_off_by_a_paused_postgres_is_settled_by_an_idempotent_retry() {
    let pg = Arc::new(PgCluster::start());
    let (db, url) = fresh_db(&pg);
    let redis = RedisServer::start();
    let failpoints = Arc::new(Failpoints::default());
    let mut settings = admin_settings(&url, &redis.url());
    if let AdminLedger::Postgres(pg_settings) = &mut settings.ledger {
        pg_settings.failpoints = failpoints.clone();
    }
    let admin = rtconfig::app::start_admin(settings).await.expect("admin");
    let api = Api::new(admin.addr);
    api.set_site_name("before").await;

    let paused = Arc::new(AtomicBool::new(false));
    {
        let (pg, paused) = (pg.clone(), paused.clone());
        failpoints.set_before_commit(Some(Arc::new(move || {
            if !paused.swap(true, Ordering::SeqCst) {
                pg.pause();
            }
        })));
    }
    let changes = json!({"SITE_NAME": "cut off mid-commit"});
    let t = Instant::now();
    let (status, body) = api.patch(changes.clone(), Some("s16")).await;
    let took = t.elapsed();
    assert!(paused.load(Ordering::SeqCst), "the failpoint ran");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(code(&body), "outcome_unknown", "{body}");
    assert!(
        took <= FAIL_FAST + Duration::from_millis(500),
        "took {took:?}"
    );
    // While paused, other writes fail fast too.
    let t = Instant::now();
    let (status, body) = api.patch(json!({"SITE_NAME": "while paused"}), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(code(&body), "store_unavailable", "{body}");
    assert!(t.elapsed() <= FAIL_FAST, "took {:?}", t.elapsed());

    failpoints.set_before_commit(None);
    let resumer = pg.clone();
    tokio::task::spawn_blocking(move || resumer.resume())
        .await
        .expect("resume");
    let settled = eventually(SETTLE, "the retry is answered", || async {
        match api.patch(changes.clone(), Some("s16")).await {
            (StatusCode::OK, body) => Some(body),
            _ => None,
        }
    })
    .await;
    assert_eq!(settled["version"], 2, "{settled}");
    eprintln!(
        "S16: the cut-off COMMIT {} (replayed = {})",
        if settled["replayed"] == true {
            "had committed"
        } else {
            "had not committed; the retry did"
        },
        settled["replayed"]
    );
    let again = api.patch(changes, Some("s16")).await;
    assert_eq!(again.1["version"], 2);
    assert_eq!(again.1["replayed"], true);
    assert_eq!(
        sql(
            &pg,
            &db,
            "SELECT count(*) FILTER (WHERE h.new #>> '{}' = 'cut off mid-commit') || ' ' || count(*) \
             FROM rtconfig_history h"
        ),
        "1 2",
        "exactly one version holds the write"
    );
    assert_eq!(
        sql(
            &pg,
            &db,
            "SELECT (v.value = h.new AND v.version = h.version)::text FROM rtconfig_values v \
             JOIN rtconfig_history h ON h.namespace = v.namespace AND h.key = v.key \
             WHERE h.version = (SELECT max(version) FROM rtconfig_history)"
        ),
        "true",
        "history == items"
    );
    redis_at(&redis, 1, 2).await;
    admin.stop().await;
}
