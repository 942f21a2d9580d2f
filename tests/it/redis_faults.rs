//! The Redis fault suite: scenarios S01–S14, S18, S19 and S23 of `reference/reliability.md`,
//! with real `redis-server` processes on free ports, the real admin and sidecars, and an
//! in-test TCP proxy for partitions, latency and blackholes. Intervals are short (resync
//! 0.5 s, relay 0.2 s) and every time bound carries a 3× margin.
//!
//! Each test asserts its promise and prints what it measured (`cargo test -- --nocapture`).

use std::time::{Duration, Instant};

use rtconfig::app::SidecarSettings;
use serde_json::{json, Value};

use crate::harness::eventually;
use crate::harness::proxy::TcpProxy;
use crate::harness::redis::RedisServer;
use crate::stack::{percentiles, read_doc, schema_dir, Expected, Reader, Stack, RESYNC};

/// Converge bound after a fault heals: reconnect backoff (≤ 5 s cap, usually far less) +
/// a resync interval + a relay round, with margin.
const CONVERGE: Duration = Duration::from_secs(15);
/// Stale must show within 2 × resync + one liveness ping + margin.
const STALE_WITHIN: Duration = Duration::from_secs(5);

fn urls(redis: &RedisServer, n: usize) -> Vec<String> {
    vec![redis.url(); n]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s01_every_write_reaches_every_sidecar_in_order_with_valid_values() {
    let redis = RedisServer::start();
    let stack = Stack::start(&redis.url(), &urls(&redis, 3)).await;
    stack.converge(0, CONVERGE).await;
    let reader = Reader::start(stack.sidecars.iter().map(|s| s.read_addr).collect());
    let mut latencies = Vec::new();
    let mut last = 0;
    for i in 1..=150 {
        let started = Instant::now();
        last = stack.write_n(i).await;
        // Propagation to sidecar 0 (commit acknowledged → visible).
        let s = &stack.sidecars[0];
        eventually(
            Duration::from_secs(5),
            "write visible on sidecar 0",
            || async {
                let d = read_doc(&stack.client, s).await.ok()?;
                (d.version >= last).then_some(())
            },
        )
        .await;
        latencies.push(started.elapsed());
    }
    stack.converge(last, CONVERGE).await;
    let log = reader.finish().await;
    log.check(&mut Expected::new(stack.ledger())).await;
    println!("S01 write→visible: {}", percentiles(latencies));
    let full: u64 = stack.sidecars.iter().map(|s| s.sync.counts().0).sum();
    let catchups: u64 = stack.sidecars.iter().map(|s| s.sync.counts().1).sum();
    println!("S01 full fetches: {full}, log catch-ups: {catchups}");
    assert!(
        full <= 3 * 2,
        "healthy sidecars catch up from the log, not full fetches ({full})"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s02_redis_killed_during_reads_loses_no_read_and_no_write() {
    let redis = RedisServer::start_with_args(&["--appendonly", "yes", "--appendfsync", "always"]);
    let stack = Stack::start(&redis.url(), &urls(&redis, 2)).await;
    let v = stack.write_n(1).await;
    stack.converge(v, CONVERGE).await;
    let reader = Reader::start(stack.sidecars.iter().map(|s| s.read_addr).collect());
    let killed_at = Instant::now();
    redis.kill();
    // Writes keep succeeding: the ledger is the truth; the relay catches up later.
    let mut last = v;
    for i in 2..=20 {
        last = stack.write_n(i).await;
    }
    eventually(STALE_WITHIN, "sidecars report stale", || async {
        let d = read_doc(&stack.client, &stack.sidecars[0]).await.ok()?;
        d.stale.then_some(())
    })
    .await;
    let time_to_stale = killed_at.elapsed();
    redis.restart();
    let converge = stack.converge(last, CONVERGE).await;
    let log = reader.finish().await;
    log.check(&mut Expected::new(stack.ledger())).await;
    println!("S02 time to stale: {time_to_stale:?}; converged {converge:?} after restart");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s03_redis_restarted_empty_is_rebuilt_and_sidecars_never_serve_less() {
    let redis = RedisServer::start();
    let stack = Stack::start(&redis.url(), &urls(&redis, 3)).await;
    let mut last = 0;
    for i in 1..=30 {
        last = stack.write_n(i).await;
    }
    stack.converge(last, CONVERGE).await;
    let full_before: u64 = stack.sidecars.iter().map(|s| s.sync.counts().0).sum();
    let reader = Reader::start(stack.sidecars.iter().map(|s| s.read_addr).collect());
    let started = Instant::now();
    redis.kill();
    redis.restart();
    eventually(CONVERGE, "relay rebuilt redis", || async {
        (redis.cmd(&["HGET", "rtconfig:{demo}:meta", "complete"]) == "1").then_some(())
    })
    .await;
    let rebuilt = started.elapsed();
    let converge = stack.converge(last, CONVERGE).await;
    last = stack.write_n(31).await;
    stack.converge(last, CONVERGE).await;
    let log = reader.finish().await;
    log.check(&mut Expected::new(stack.ledger())).await;
    let full_after: u64 = stack.sidecars.iter().map(|s| s.sync.counts().0).sum();
    println!(
        "S03 rebuilt in {rebuilt:?}, converged in {converge:?}; full fetches during recovery: {}",
        full_after - full_before
    );
    assert!(
        full_after - full_before <= 3,
        "sidecars already at the rebuilt version need no full fetch"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s04_flushall_during_writes_never_exposes_a_partial_image() {
    let redis = RedisServer::start();
    let stack = Stack::start(&redis.url(), &urls(&redis, 3)).await;
    let mut last = stack.write_n(1).await;
    stack.converge(last, CONVERGE).await;
    let reader = Reader::start(stack.sidecars.iter().map(|s| s.read_addr).collect());
    for i in 2..=60 {
        if i % 20 == 0 {
            redis.flushall();
        }
        last = stack.write_n(i).await;
    }
    stack.converge(last, CONVERGE).await;
    let log = reader.finish().await;
    log.check(&mut Expected::new(stack.ledger())).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s05_a_lone_key_in_a_flushed_redis_never_becomes_a_snapshot() {
    let redis = RedisServer::start();
    let stack = Stack::start(&redis.url(), &urls(&redis, 2)).await;
    let v = stack
        .write(json!({"SITE_NAME": "kept", "ITEMS_PER_PAGE": 9}))
        .await;
    stack.converge(v, CONVERGE).await;
    // Stop the relay so nothing repairs Redis, then leave a partial state: one item and a meta
    // without the completeness marker, at a higher version.
    let admin = stack.admin.as_ref().expect("admin");
    let _ = admin;
    let mut stack = stack;
    stack.admin.take().expect("admin").stop().await;
    redis.flushall();
    redis.cmd(&[
        "HSET",
        "rtconfig:{demo}:items",
        "SITE_NAME",
        "{\"value\":\"lonely\",\"version\":99}",
    ]);
    redis.cmd(&[
        "HSET",
        "rtconfig:{demo}:meta",
        "cluster_id",
        "default",
        "epoch",
        "1",
        "version",
        "99",
    ]);
    redis.cmd(&["PUBLISH", "rtconfig:{demo}:changes", "1:99"]);
    tokio::time::sleep(RESYNC * 4).await;
    for s in &stack.sidecars {
        let d = read_doc(&stack.client, s).await.expect("read");
        assert_eq!(d.version, v, "an incomplete image is never applied");
        assert_eq!(d.values["SITE_NAME"], json!("kept"));
        assert_eq!(d.values["ITEMS_PER_PAGE"], json!(9));
        assert_eq!(s.sync.cause(), Some("redis_incomplete"));
    }
    // The admin comes back and rebuilds a complete image from the ledger.
    let admin = rtconfig::app::start_admin(stack.admin_settings.clone())
        .await
        .expect("admin restarts");
    stack.admin = Some(admin);
    let v2 = stack.write(json!({"SITE_NAME": "after"})).await;
    stack.converge(v2, CONVERGE).await;
    for s in &stack.sidecars {
        let d = read_doc(&stack.client, s).await.expect("read");
        assert_eq!(d.values["SITE_NAME"], json!("after"));
        assert_eq!(d.values["ITEMS_PER_PAGE"], json!(9));
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s06_silently_lost_pubsub_is_covered_by_the_resync_timer() {
    let redis = RedisServer::start();
    let sub_proxy = TcpProxy::start(redis.addr());
    let mut stack = Stack::start(&redis.url(), &[]).await;
    let settings = SidecarSettings {
        resync_interval: RESYNC,
        subscriber_redis_url: Some(sub_proxy.url_for_redis()),
        ..SidecarSettings::for_tests(schema_dir(), &redis.url())
    };
    stack.add_sidecar(settings).await;
    let v = stack.write_n(1).await;
    stack.converge(v, CONVERGE).await;
    sub_proxy.blackhole();
    let mut bounds = Vec::new();
    for i in 2..=6 {
        let started = Instant::now();
        let v = stack.write_n(i).await;
        eventually(
            RESYNC.mul_f64(1.2) * 3 + Duration::from_secs(1),
            "write visible through the poll alone",
            || async {
                let d = read_doc(&stack.client, &stack.sidecars[0]).await.ok()?;
                (d.version >= v).then_some(())
            },
        )
        .await;
        bounds.push(started.elapsed());
    }
    // The liveness ping on the dead subscriber marks the state stale.
    eventually(STALE_WITHIN, "liveness failure is reported", || async {
        let d = read_doc(&stack.client, &stack.sidecars[0]).await.ok()?;
        d.stale.then_some(())
    })
    .await;
    sub_proxy.heal();
    let v = stack.write_n(7).await;
    stack.converge(v, CONVERGE).await;
    println!(
        "S06 visibility with Pub/Sub blackholed: {}",
        percentiles(bounds)
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s07_killed_subscriber_connections_lose_no_update() {
    let redis = RedisServer::start();
    let stack = Stack::start(&redis.url(), &urls(&redis, 2)).await;
    let reader = Reader::start(stack.sidecars.iter().map(|s| s.read_addr).collect());
    let mut last = 0;
    for round in 0..10 {
        for i in 0..5 {
            last = stack.write_n(round * 5 + i + 1).await;
        }
        redis.cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.converge(last, CONVERGE).await;
    let log = reader.finish().await;
    log.check(&mut Expected::new(stack.ledger())).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s08_a_slow_subscriber_cut_off_by_redis_catches_up() {
    let redis = RedisServer::start();
    let stack = Stack::start(&redis.url(), &urls(&redis, 2)).await;
    stack.converge(0, CONVERGE).await;
    redis.cmd(&[
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 64 64 1",
    ]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    let stack = std::sync::Arc::new(stack);
    for w in 0..4u64 {
        let st = stack.clone();
        tasks.push(tokio::spawn(async move {
            let mut last = 0;
            for i in 0..75 {
                last = last.max(st.write_n(w * 1000 + i).await);
            }
            last
        }));
    }
    let mut last = 0;
    for t in tasks {
        last = last.max(t.await.expect("writer"));
    }
    let converge = stack.converge(last, CONVERGE).await;
    let (full, catchups): (u64, u64) = stack
        .sidecars
        .iter()
        .map(|s| s.sync.counts())
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    println!(
        "S08 300 writes in {:?}; converged {converge:?} after; full fetches {full}, catch-ups {catchups}",
        started.elapsed() - converge
    );
    let final_values = read_doc(&stack.client, &stack.sidecars[0])
        .await
        .expect("read");
    let mut expected = Expected::new(stack.ledger());
    assert_eq!(final_values.values, expected.at(last).await);
    match std::sync::Arc::try_unwrap(stack) {
        Ok(s) => s.stop().await,
        Err(_) => panic!("stack still shared"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s09_a_paused_redis_never_blocks_reads() {
    let redis = RedisServer::start();
    let stack = Stack::start(&redis.url(), &urls(&redis, 2)).await;
    let v = stack.write_n(1).await;
    stack.converge(v, CONVERGE).await;
    let reader = Reader::start(stack.sidecars.iter().map(|s| s.read_addr).collect());
    let paused_at = Instant::now();
    redis.pause();
    let mut last = v;
    for i in 2..=5 {
        last = stack.write_n(i).await;
    }
    eventually(
        STALE_WITHIN,
        "sidecars report stale while redis hangs",
        || async {
            let d = read_doc(&stack.client, &stack.sidecars[0]).await.ok()?;
            d.stale.then_some(())
        },
    )
    .await;
    let time_to_stale = paused_at.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.resume();
    let converge = stack.converge(last, CONVERGE).await;
    let log = reader.finish().await;
    log.check(&mut Expected::new(stack.ledger())).await;
    println!(
        "S09 time to stale {time_to_stale:?}; converged {converge:?} after SIGCONT; {} reads during the pause, 0 failed",
        log.reads
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_latency_on_the_redis_link_only_delays_propagation() {
    let redis = RedisServer::start();
    let proxy = TcpProxy::start(redis.addr());
    let stack = Stack::start(&redis.url(), &[proxy.url_for_redis()]).await;
    let v = stack.write_n(1).await;
    stack.converge(v, CONVERGE).await;
    let reader = Reader::start(stack.sidecars.iter().map(|s| s.read_addr).collect());
    proxy.set_latency(Duration::from_millis(300));
    let mut latencies = Vec::new();
    let mut last = v;
    for i in 2..=6 {
        let started = Instant::now();
        last = stack.write_n(i).await;
        eventually(
            Duration::from_secs(6),
            "visible despite latency",
            || async {
                let d = read_doc(&stack.client, &stack.sidecars[0]).await.ok()?;
                (d.version >= last).then_some(())
            },
        )
        .await;
        latencies.push(started.elapsed());
    }
    proxy.heal();
    stack.converge(last, CONVERGE).await;
    let log = reader.finish().await;
    log.check(&mut Expected::new(stack.ledger())).await;
    println!(
        "S10 write→visible with 300 ms each way: {}",
        percentiles(latencies)
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_hints_without_data_are_never_applied() {
    let redis = RedisServer::start();
    let cmd_proxy = TcpProxy::start(redis.addr());
    // Hints without their changeset (an inlined one is applied without a read: tests/it/hint.rs).
    let mut stack = Stack::start_with(&redis.url(), &[], |a| a.hint_payload_max_bytes = 0).await;
    let settings = SidecarSettings {
        resync_interval: RESYNC,
        subscriber_redis_url: Some(redis.url()),
        ..SidecarSettings::for_tests(schema_dir(), &cmd_proxy.url_for_redis())
    };
    stack.add_sidecar(settings).await;
    let v = stack.write_n(1).await;
    stack.converge(v, CONVERGE).await;
    let reader = Reader::start(stack.sidecars.iter().map(|s| s.read_addr).collect());
    cmd_proxy.blackhole();
    let v2 = stack.write_n(2).await;
    eventually(
        STALE_WITHIN,
        "stale while data cannot be fetched",
        || async {
            let d = read_doc(&stack.client, &stack.sidecars[0]).await.ok()?;
            d.stale.then_some(())
        },
    )
    .await;
    let d = read_doc(&stack.client, &stack.sidecars[0])
        .await
        .expect("read");
    assert_eq!(d.version, v, "a hint without its data changes nothing");
    cmd_proxy.heal();
    stack.converge(v2, CONVERGE).await;
    let log = reader.finish().await;
    log.check(&mut Expected::new(stack.ledger())).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_a_sidecar_restarted_while_redis_is_down_serves_its_disk_snapshot() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshot = dir.path().join("demo.snapshot");
    let mut stack = Stack::start(&redis.url(), &[]).await;
    let settings = SidecarSettings {
        resync_interval: RESYNC,
        snapshot_path: Some(snapshot.clone()),
        require_snapshot: true,
        ..SidecarSettings::for_tests(schema_dir(), &redis.url())
    };
    stack.add_sidecar(settings.clone()).await;
    let v = stack
        .write(json!({"SITE_NAME": "from disk", "ITEMS_PER_PAGE": 42}))
        .await;
    stack.converge(v, CONVERGE).await;
    eventually(Duration::from_secs(5), "snapshot file written", || async {
        let s = rtconfig::disk::load(&snapshot).ok()?;
        (s.version >= v).then_some(())
    })
    .await;
    stack.sidecars.pop().expect("sidecar").stop().await;
    redis.kill();
    let started = Instant::now();
    let idx = stack.add_sidecar(settings).await;
    let sidecar = &stack.sidecars[idx];
    let probe = format!("http://{}/readyz", sidecar.probe_addr);
    eventually(
        Duration::from_secs(5),
        "ready from the disk snapshot",
        || async {
            let r = stack.client.get(&probe).send().await.ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    let ready_after = started.elapsed();
    let d = read_doc(&stack.client, sidecar).await.expect("read");
    assert_eq!(d.source, "disk");
    assert!(d.stale, "a disk snapshot not confirmed by Redis is stale");
    assert_eq!(d.version, v);
    assert_eq!(d.values["SITE_NAME"], json!("from disk"));
    assert_eq!(d.values["ITEMS_PER_PAGE"], json!(42));
    redis.restart();
    let v2 = stack.write(json!({"SITE_NAME": "back"})).await;
    stack.converge(v2, CONVERGE).await;
    println!("S12 ready from disk {ready_after:?} after start with redis down");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s14_a_commit_the_relay_never_saw_is_published_after_the_admin_restarts() {
    let redis = RedisServer::start();
    let mut stack = Stack::start(&redis.url(), &urls(&redis, 2)).await;
    let v = stack.write_n(1).await;
    stack.converge(v, CONVERGE).await;
    // The admin dies right after a commit: the changeset is durable, Redis never heard of it.
    let committed = stack
        .stop_admin_then_commit_unrelayed("committed, not relayed", "crash-test")
        .await;
    // No relay: sidecars notice relay_at stops moving and report stale.
    eventually(
        Duration::from_secs(8),
        "relay_down makes reads stale",
        || async {
            let d = read_doc(&stack.client, &stack.sidecars[0]).await.ok()?;
            d.stale.then_some(())
        },
    )
    .await;
    assert_eq!(stack.sidecars[0].sync.cause(), Some("relay_down"));
    let admin = rtconfig::app::start_admin(stack.admin_settings.clone())
        .await
        .expect("admin restarts");
    stack.admin = Some(admin);
    stack.converge(committed, CONVERGE).await;
    let d = read_doc(&stack.client, &stack.sidecars[1])
        .await
        .expect("read");
    assert_eq!(d.values["SITE_NAME"], json!("committed, not relayed"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s18_redis_going_back_in_time_never_moves_sidecars_back() {
    let redis = RedisServer::start();
    let stack = Stack::start(&redis.url(), &urls(&redis, 2)).await;
    let old = stack.write_n(1).await;
    stack.converge(old, CONVERGE).await;
    redis.cmd(&["SAVE"]);
    let mut last = old;
    for i in 2..=5 {
        last = stack.write_n(i).await;
    }
    stack.converge(last, CONVERGE).await;
    let reader = Reader::start(stack.sidecars.iter().map(|s| s.read_addr).collect());
    // Restart from the older dump: a failover to a lagging replica.
    redis.kill();
    redis.restart();
    let last2 = stack.write_n(6).await;
    stack.converge(last2, CONVERGE).await;
    let log = reader.finish().await;
    log.check(&mut Expected::new(stack.ledger())).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s19_another_clusters_redis_is_never_applied_nor_overwritten() {
    let redis = RedisServer::start();
    redis.cmd(&[
        "HSET",
        "rtconfig:{demo}:meta",
        "cluster_id",
        "other-cluster",
        "epoch",
        "1",
        "version",
        "7",
        "complete",
        "1",
        "count",
        "1",
    ]);
    redis.cmd(&[
        "HSET",
        "rtconfig:{demo}:items",
        "SITE_NAME",
        "{\"value\":\"theirs\",\"version\":7}",
    ]);
    let stack = Stack::start(&redis.url(), &urls(&redis, 1)).await;
    let v = stack.write(json!({"SITE_NAME": "ours"})).await;
    let s = &stack.sidecars[0];
    eventually(
        STALE_WITHIN,
        "sidecar refuses the foreign image",
        || async { (s.sync.cause() == Some("foreign_redis")).then_some(()) },
    )
    .await;
    let d = read_doc(&stack.client, s).await.expect("read");
    assert_eq!(d.source, "defaults", "nothing of theirs is applied");
    assert!(d.stale);
    assert_ne!(d.values["SITE_NAME"], json!("theirs"));
    assert_eq!(
        redis.cmd(&["HGET", "rtconfig:{demo}:meta", "cluster_id"]),
        "other-cluster",
        "the relay never overwrites another cluster's data"
    );
    assert_eq!(
        redis.cmd(&["HGET", "rtconfig:{demo}:items", "SITE_NAME"]),
        "{\"value\":\"theirs\",\"version\":7}"
    );
    let metrics = stack.admin().metrics.encode();
    assert!(
        metrics.contains("rtconfig_relay_foreign_redis 1"),
        "alarm raised"
    );
    assert!(v >= 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s23_poisoned_redis_content_is_ignored_and_the_last_good_state_kept() {
    let redis = RedisServer::start();
    let mut stack = Stack::start(&redis.url(), &urls(&redis, 1)).await;
    let v = stack
        .write(json!({"SITE_NAME": "good", "ITEMS_PER_PAGE": 3}))
        .await;
    stack.converge(v, CONVERGE).await;
    stack.admin.take().expect("admin").stop().await;
    let s = &stack.sidecars[0];
    // Bogus hints: not "<epoch>:<version>", or pointing at versions that do not exist.
    for msg in ["garbage", "1:notanumber", "999:999999", ""] {
        redis.cmd(&["PUBLISH", "rtconfig:{demo}:changes", msg]);
    }
    // Non-JSON and out-of-range items, a wrong-typed log, a non-numeric version.
    redis.cmd(&[
        "HSET",
        "rtconfig:{demo}:items",
        "ITEMS_PER_PAGE",
        "not json",
    ]);
    redis.cmd(&[
        "HSET",
        "rtconfig:{demo}:items",
        "SITE_NAME",
        &format!("{{\"value\":\"{}\",\"version\":1}}", "x".repeat(500)),
    ]);
    redis.cmd(&["HSET", "rtconfig:{demo}:meta", "version", "NaN"]);
    tokio::time::sleep(RESYNC * 4).await;
    let d = read_doc(&stack.client, s).await.expect("read");
    assert_eq!(d.version, v);
    assert_eq!(d.values["SITE_NAME"], json!("good"));
    assert_eq!(d.values["ITEMS_PER_PAGE"], json!(3));
    redis.cmd(&["DEL", "rtconfig:{demo}:log"]);
    redis.cmd(&["SET", "rtconfig:{demo}:log", "wrong type"]);
    redis.cmd(&[
        "HSET",
        "rtconfig:{demo}:meta",
        "version",
        &(v + 5).to_string(),
    ]);
    tokio::time::sleep(RESYNC * 4).await;
    let d = read_doc(&stack.client, s).await.expect("read");
    assert_eq!(
        d.values["SITE_NAME"],
        json!("good"),
        "poison never replaces good values"
    );
    // An image at a newer version with a value the schema rejects: that key keeps its default,
    // the others apply (schema drift tolerance), and sync does not stall.
    redis.cmd(&["DEL", "rtconfig:{demo}:log"]);
    redis.cmd(&["DEL", "rtconfig:{demo}:items"]);
    redis.cmd(&[
        "HSET",
        "rtconfig:{demo}:items",
        "SITE_NAME",
        "{\"value\":\"fresh\",\"version\":20}",
        "ITEMS_PER_PAGE",
        "{\"value\":\"many\",\"version\":20}",
        "REMOVED_KEY",
        "{\"value\":1,\"version\":20}",
    ]);
    redis.cmd(&[
        "HSET",
        "rtconfig:{demo}:meta",
        "version",
        "20",
        "count",
        "3",
        "generation",
        "1",
    ]);
    eventually(CONVERGE, "the valid parts of the image apply", || async {
        let d = read_doc(&stack.client, s).await.ok()?;
        (d.version == 20).then_some(d)
    })
    .await;
    let d = read_doc(&stack.client, s).await.expect("read");
    assert_eq!(d.values["SITE_NAME"], json!("fresh"));
    assert_eq!(
        d.values["ITEMS_PER_PAGE"],
        json!(5),
        "rejected value keeps the default"
    );
    let status: Value = stack
        .client
        .get(format!("http://{}/status", s.probe_addr))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["rejected_values"][0]["key"], json!("ITEMS_PER_PAGE"));
    assert_eq!(status["unknown_keys"], json!(1));
    stack.sidecars.pop().expect("sidecar").stop().await;
    stack.stop().await;
}
