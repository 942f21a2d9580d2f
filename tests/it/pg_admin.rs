//! Several admins on one PostgreSQL and one Redis: one relay leader, NOTIFY wake-ups, leadership
//! moving, contiguous history under concurrent writes (S17), adopting a Redis image into an empty
//! database, and refusing writes while Redis is ahead of a restored database.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use rtconfig::app::{AdminParts, Running};
use serde_json::json;

use crate::harness::eventually;
use crate::harness::postgres::shared_cluster;
use crate::harness::redis::RedisServer;
use crate::pg_stack::{
    admin_settings, code, fresh_db, path_str, redis_at, redis_item, redis_meta_u64, run_binary,
    schema_dir, sidecar_shows, sidecar_state, sql, start_admin, start_sidecar, Api, SETTLE,
};

fn leading(admin: &Running<AdminParts>) -> bool {
    admin.relay_metrics.leader.get() == 1
}

/// Waits until exactly one of `admins` leads; returns its index.
async fn the_leader(admins: &[&Running<AdminParts>]) -> usize {
    eventually(SETTLE, "exactly one admin leads the relay", || async {
        let leaders: Vec<usize> = (0..admins.len()).filter(|&n| leading(admins[n])).collect();
        (leaders.len() == 1).then(|| leaders[0])
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_admins_writing_one_key_concurrently_leave_2000_contiguous_versions() {
    const EACH: usize = 1000;
    const IN_FLIGHT: usize = 4;
    let pg = shared_cluster();
    let (db, url) = fresh_db(pg);
    let redis = RedisServer::start();
    let a = start_admin(&url, &redis.url()).await;
    let b = start_admin(&url, &redis.url()).await;
    let sidecar = start_sidecar(&redis.url()).await;
    redis_at(&redis, 1, 0).await;
    let started = std::time::Instant::now();
    let mut writers = Vec::new();
    for (name, admin) in [("a", &a), ("b", &b)] {
        for lane in 0..IN_FLIGHT {
            let api = Api::new(admin.addr);
            writers.push(tokio::spawn(async move {
                let mut versions = Vec::new();
                for i in (lane..EACH).step_by(IN_FLIGHT) {
                    versions.push(api.set_site_name_retrying(&format!("{name}-{i}")).await);
                }
                versions
            }));
        }
    }
    let mut versions = BTreeSet::new();
    for w in writers {
        for v in w.await.expect("writer") {
            assert!(versions.insert(v), "version {v} acknowledged twice");
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "S17: {} writes through two admins in {elapsed:?} ({:.0}/s)",
        2 * EACH,
        (2 * EACH) as f64 / elapsed.as_secs_f64()
    );
    let expected: BTreeSet<u64> = (1..=(2 * EACH) as u64).collect();
    assert_eq!(versions, expected, "acknowledged versions are 1..=2000");
    assert_eq!(
        sql(
            pg,
            &db,
            "SELECT count(*) || ' ' || min(version) || ' ' || max(version) FROM rtconfig_changesets"
        ),
        "2000 1 2000"
    );
    assert_eq!(
        sql(
            pg,
            &db,
            "SELECT count(DISTINCT version) FROM rtconfig_history"
        ),
        "2000",
        "one history row per version"
    );
    let last = sql(
        pg,
        &db,
        "SELECT new #>> '{}' FROM rtconfig_history ORDER BY version DESC LIMIT 1",
    );
    assert_eq!(
        sql(
            pg,
            &db,
            "SELECT value #>> '{}' FROM rtconfig_values WHERE key = 'SITE_NAME'"
        ),
        last,
        "the current value is the last version's"
    );
    redis_at(&redis, 1, 2000).await;
    assert_eq!(redis_item(&redis, "SITE_NAME"), Some(json!(last)));
    sidecar_shows(&sidecar, 1, 2000, &last).await;
    let leader = the_leader(&[&a, &b]).await;
    eprintln!("S17: relay leader is admin {leader}");
    sidecar.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_write_on_a_follower_wakes_the_leader_through_notify() {
    let pg = shared_cluster();
    let (_, url) = fresh_db(pg);
    let redis = RedisServer::start();
    // A relay round only every minute: only a wake-up can deliver the write in time.
    let slow = |url: &str| {
        let mut s = admin_settings(url, &redis.url());
        s.relay_interval = Duration::from_secs(60);
        s.anti_entropy_interval = Duration::from_secs(60);
        s
    };
    let a = rtconfig::app::start_admin(slow(&url)).await.expect("a");
    let b = rtconfig::app::start_admin(slow(&url)).await.expect("b");
    let leader = the_leader(&[&a, &b]).await;
    redis_at(&redis, 1, 0).await;
    let follower = if leader == 0 { &b } else { &a };
    let v = Api::new(follower.addr)
        .set_site_name("via the follower")
        .await;
    let t = std::time::Instant::now();
    redis_at(&redis, 1, v).await;
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "delivered by NOTIFY, not by the minute timer"
    );
    assert_eq!(
        redis_item(&redis, "SITE_NAME"),
        Some(json!("via the follower"))
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn leadership_moves_when_the_leader_stops_or_loses_its_connection() {
    let pg = shared_cluster();
    let (db, url) = fresh_db(pg);
    let redis = RedisServer::start();
    let a = start_admin(&url, &redis.url()).await;
    let b = start_admin(&url, &redis.url()).await;
    let leader = the_leader(&[&a, &b]).await;
    redis_at(&redis, 1, 0).await;
    let first_term = redis_meta_u64(&redis, "term").expect("term");
    let (old, survivor) = if leader == 0 { (a, b) } else { (b, a) };
    let api = Api::new(survivor.addr);
    let v1 = api.set_site_name("one").await;
    redis_at(&redis, 1, v1).await;

    old.stop().await;
    eventually(SETTLE, "the survivor takes the lead", || async {
        leading(&survivor).then_some(())
    })
    .await;
    let v2 = api.set_site_name("two").await;
    redis_at(&redis, 1, v2).await;
    let second_term = redis_meta_u64(&redis, "term").expect("term");
    assert!(
        second_term > first_term,
        "a new leader writes with a higher term"
    );

    // Its dedicated connection is cut: it stops relaying, then leads again with a new term.
    let killed = pg.terminate_backends(&db);
    assert!(killed >= 1);
    eventually(SETTLE, "leadership is taken again", || async {
        (leading(&survivor) && survivor.relay_metrics.term.get() > second_term as i64).then_some(())
    })
    .await;
    let v3 = eventually(SETTLE, "writes work again", || async {
        let (status, body) = api.patch(json!({"SITE_NAME": "three"}), Some("k3")).await;
        (status == StatusCode::OK).then(|| body["version"].as_u64().expect("version"))
    })
    .await;
    redis_at(&redis, 1, v3).await;
    assert!(redis_meta_u64(&redis, "term").expect("term") > second_term);
    survivor.stop().await;
}

#[tokio::test]
async fn an_empty_database_adopts_the_complete_redis_image_of_its_cluster() {
    let pg = shared_cluster();
    let (_, old_url) = fresh_db(pg);
    let redis = RedisServer::start();
    let sidecar = start_sidecar(&redis.url()).await;
    let first = start_admin(&old_url, &redis.url()).await;
    let api = Api::new(first.addr);
    api.set_site_name("kept").await;
    let (status, body) = api
        .patch(
            json!({"ITEMS_PER_PAGE": 42, "MAINTENANCE_MODE": true}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    api.patch(json!({"MAINTENANCE_MODE": null}), None).await;
    redis_at(&redis, 1, 3).await;
    sidecar_shows(&sidecar, 1, 3, "kept").await;
    first.stop().await;

    // The database is lost; a new, empty one is configured.
    let (db, url) = fresh_db(pg);
    let second = start_admin(&url, &redis.url()).await;
    eventually(SETTLE, "the new database adopts the image", || async {
        let s = second.ledger.namespace_state("demo").await.ok()?;
        (s.version == 3).then_some(())
    })
    .await;
    assert_eq!(
        sql(
            pg,
            &db,
            "SELECT version || ' ' || epoch || ' ' || actor FROM rtconfig_changesets"
        ),
        "3 1 rtconfig",
        "one changeset records the adopted image"
    );
    let current = second.ledger.current("demo").await.expect("current");
    let stored: Vec<(&str, &serde_json::Value)> = current.stored().collect();
    assert_eq!(
        stored,
        [
            ("ITEMS_PER_PAGE", &json!(42)),
            ("SITE_NAME", &json!("kept"))
        ]
    );
    assert_eq!(redis_meta_u64(&redis, "version"), Some(3), "not wiped");
    let v = Api::new(second.addr).set_site_name("next").await;
    assert_eq!(v, 4);
    sidecar_shows(&sidecar, 1, 4, "next").await;
    assert_eq!(
        sidecar_state(&sidecar).await["values"]["ITEMS_PER_PAGE"],
        42
    );
    second.stop().await;
    sidecar.stop().await;
}

#[tokio::test]
async fn redis_ahead_of_a_restored_database_blocks_writes_until_reconcile_force() {
    let pg = shared_cluster();
    let (_, url) = fresh_db(pg);
    let redis = RedisServer::start();
    let sidecar = start_sidecar(&redis.url()).await;
    let first = start_admin(&url, &redis.url()).await;
    Api::new(first.addr).set_site_name("one").await;
    Api::new(first.addr).set_site_name("two").await;
    redis_at(&redis, 1, 2).await;
    first.stop().await;
    // Redis saw versions the database no longer has (the database was restored from a backup).
    redis.cmd(&["HSET", "rtconfig:{demo}:meta", "version", "5"]);

    let a = start_admin(&url, &redis.url()).await;
    let b = start_admin(&url, &redis.url()).await;
    for admin in [&a, &b] {
        let api = Api::new(admin.addr);
        eventually(SETTLE, "every admin answers 503 ledger_behind", || async {
            let (status, body) = api.patch(json!({"SITE_NAME": "fork"}), None).await;
            assert_ne!(status, StatusCode::OK, "a write forked history: {body}");
            (status == StatusCode::SERVICE_UNAVAILABLE && code(&body) == "ledger_behind")
                .then_some(())
        })
        .await;
    }
    assert_eq!(
        redis_meta_u64(&redis, "version"),
        Some(5),
        "never overwritten"
    );

    let (exit, out) = run_binary(&[
        "admin",
        "reconcile",
        "--database-url",
        &url,
        "--schema-dir",
        path_str(&schema_dir()),
    ]);
    assert_eq!(exit, 64, "--force is required: {out}");
    let (exit, out) = run_binary(&[
        "admin",
        "reconcile",
        "--force",
        "--database-url",
        &url,
        "--schema-dir",
        path_str(&schema_dir()),
    ]);
    assert_eq!(exit, 0, "{out}");
    assert!(out.contains("demo: epoch 2 (version 2)"), "{out}");
    redis_at(&redis, 2, 2).await;
    for (n, admin) in [&a, &b].into_iter().enumerate() {
        let api = Api::new(admin.addr);
        let value = format!("after reconcile {n}");
        eventually(SETTLE, "writes are taken again", || async {
            let (status, _) = api.patch(json!({"SITE_NAME": value}), None).await;
            (status == StatusCode::OK).then_some(())
        })
        .await;
    }
    redis_at(&redis, 2, 4).await;
    sidecar_shows(&sidecar, 2, 4, "after reconcile 1").await;
    a.stop().await;
    b.stop().await;
    sidecar.stop().await;
}

/// A gauge from an admin's `/metrics` (`None` when it does not answer).
async fn gauge(api_addr: &str, name: &str) -> Option<i64> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .ok()?;
    let text = client
        .get(format!("http://{api_addr}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A leader whose process freezes (SIGSTOP) loses the lead after PostgreSQL's silence timeout;
/// once it wakes up it is a follower and its stale term cannot write to Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_is_replaced_and_cannot_write_when_it_wakes() {
    use crate::harness::signal;
    use crate::pg_stack::spawn_admin;
    let pg = shared_cluster();
    let (_, url) = fresh_db(pg);
    let redis = RedisServer::start();
    let (first, first_api) = spawn_admin(&url, &redis.url(), &[]).await;
    let (second, second_api) = spawn_admin(&url, &redis.url(), &[]).await;
    let addrs = [first_api.addr_string(), second_api.addr_string()];
    let leader = eventually(SETTLE, "one child admin leads", || async {
        let a = gauge(&addrs[0], "rtconfig_relay_leader").await?;
        let b = gauge(&addrs[1], "rtconfig_relay_leader").await?;
        match (a, b) {
            (1, 0) => Some(0),
            (0, 1) => Some(1),
            _ => None,
        }
    })
    .await;
    redis_at(&redis, 1, 0).await;
    let (frozen, frozen_api, survivor_api) = if leader == 0 {
        (&first, &first_api, &second_api)
    } else {
        (&second, &second_api, &first_api)
    };
    let old_term = redis_meta_u64(&redis, "term").expect("term");
    assert!(signal(&[frozen.pid()], "STOP"));
    let t = std::time::Instant::now();
    let survivor = &addrs[1 - leader];
    eventually(
        Duration::from_secs(30),
        "the survivor takes the lead",
        || async { (gauge(survivor, "rtconfig_relay_leader").await? == 1).then_some(()) },
    )
    .await;
    eprintln!("a frozen leader was replaced after {:?}", t.elapsed());
    let v = survivor_api.set_site_name("while frozen").await;
    redis_at(&redis, 1, v).await;
    let new_term = redis_meta_u64(&redis, "term").expect("term");
    assert!(new_term > old_term);

    assert!(signal(&[frozen.pid()], "CONT"));
    let woken = &addrs[leader];
    eventually(
        SETTLE,
        "the woken ex-leader knows it lost the lead",
        || async { (gauge(woken, "rtconfig_relay_leader").await? == 0).then_some(()) },
    )
    .await;
    assert_eq!(redis_meta_u64(&redis, "term"), Some(new_term), "fenced");
    // It still takes writes (as a follower); the leader relays them.
    let v2 = frozen_api.set_site_name("after waking").await;
    redis_at(&redis, 1, v2).await;
    assert_eq!(redis_item(&redis, "SITE_NAME"), Some(json!("after waking")));
    assert_eq!(redis_meta_u64(&redis, "term"), Some(new_term));
}
