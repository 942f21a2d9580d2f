//! The Pub/Sub hint `<epoch>:<version>:<generation>:<hash>[ <changeset>]` (DESIGN §4, issue 11
//! item 8, issue 12 item 3): a small change reaches a sidecar with no Redis read; crafted
//! hints (lost, duplicated, out of order, old epoch, foreign cluster, future format, wrong hash)
//! never make a sidecar serve what was not written; a sidecar whose disk snapshot is ahead of a
//! restored ledger refetches once the ledger reaches its version with other content.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::eventually;
use crate::harness::redis::RedisServer;
use crate::stack::{read_doc, schema_dir, Stack};
use rtconfig::app::SidecarSettings;
use rtconfig::content_hash::ContentHash;

const CONVERGE: Duration = Duration::from_secs(15);
const CHANNEL: &str = "rtconfig:{demo}:changes";

/// `INFO commandstats` as `command → calls`.
fn command_calls(redis: &RedisServer) -> BTreeMap<String, u64> {
    let info = redis.cmd(&["INFO", "commandstats"]);
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// The sidecar's reads: every sync round and full fetch is one `EVALSHA_RO` (`SYNC_READ`,
/// `FULL_READ`), and nothing else sends it (the relay's scripts are `EVALSHA`; the commands a
/// script runs inside are counted under their own names, for both).
const SIDECAR_READS: [&str; 1] = ["evalsha_ro"];

fn reads(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> u64 {
    SIDECAR_READS
        .iter()
        .map(|c| after.get(*c).unwrap_or(&0) - before.get(*c).unwrap_or(&0))
        .sum()
}

/// A sidecar whose timer and heartbeat stay quiet for the test (60 s), so every Redis command
/// it sends is caused by the hints.
fn quiet_sidecar(redis: &RedisServer) -> SidecarSettings {
    SidecarSettings {
        resync_interval: Duration::from_secs(60),
        ..SidecarSettings::for_tests(schema_dir(), &redis.url())
    }
}

/// Writes `n` one-key changes, waiting for each to be served; returns the sidecar's Redis
/// reads per change.
async fn reads_per_change(stack: &Stack, redis: &RedisServer, n: u64) -> f64 {
    let before = command_calls(redis);
    for i in 0..n {
        let v = stack
            .write(json!({"SITE_NAME": format!("change {i}")}))
            .await;
        eventually(CONVERGE, "the sidecar serves the change", || async {
            let d = read_doc(&stack.client, &stack.sidecars[0]).await.ok()?;
            (d.version >= v).then_some(())
        })
        .await;
    }
    let after = command_calls(redis);
    let delta: BTreeMap<&String, u64> = after
        .iter()
        .map(|(c, n)| (c, n - before.get(c).unwrap_or(&0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    eprintln!("commands during {n} changes: {delta:?}");
    reads(&before, &after) as f64 / n as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_contiguous_changes_reach_a_sidecar_with_no_redis_read() {
    let redis = RedisServer::start();
    let mut stack = Stack::start(&redis.url(), &[]).await;
    let first = stack.write(json!({"SITE_NAME": "start"})).await;
    stack.add_sidecar(quiet_sidecar(&redis)).await;
    stack.converge(first, CONVERGE).await;

    let per_change = reads_per_change(&stack, &redis, 10).await;
    assert_eq!(per_change, 0.0, "Redis reads per change per sidecar");
    let metrics = stack.sidecars[0].metrics.encode();
    assert!(
        metrics.contains(r#"rtconfig_sync_messages_total{result="applied"} 10"#),
        "{metrics}"
    );
    // What was applied from the hints is what the ledger holds.
    let d = read_doc(&stack.client, &stack.sidecars[0])
        .await
        .expect("read");
    assert_eq!(d.values["SITE_NAME"], json!("change 9"));
    assert_eq!(
        redis.cmd(&["HGET", "rtconfig:{demo}:meta", "content_hash"]),
        ContentHash::of(
            stack
                .ledger()
                .current("demo")
                .await
                .expect("ledger")
                .stored()
        )
        .to_hex(),
        "meta carries the hash of the ledger's image"
    );
    let status: Value = stack
        .client
        .get(format!("http://{}/status", stack.sidecars[0].probe_addr))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(
        status["sync"]["content_hash"],
        json!(redis.cmd(&["HGET", "rtconfig:{demo}:meta", "content_hash"])),
        "/status shows the served values' hash: {status}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_payload_each_change_costs_a_sync_read() {
    let redis = RedisServer::start();
    let mut stack = Stack::start_with(&redis.url(), &[], |a| a.hint_payload_max_bytes = 0).await;
    let first = stack.write(json!({"SITE_NAME": "start"})).await;
    stack.add_sidecar(quiet_sidecar(&redis)).await;
    stack.converge(first, CONVERGE).await;
    let per_change = reads_per_change(&stack, &redis, 10).await;
    assert!(per_change >= 1.0, "{per_change} reads per change");
    stack.stop().await;
}

/// A message on the namespace's channel, as anyone with PUBLISH rights could send it.
fn publish(redis: &RedisServer, message: &str) {
    redis.cmd(&["PUBLISH", CHANNEL, message]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_hints_never_make_a_sidecar_serve_what_was_not_written() {
    let redis = RedisServer::start();
    let mut stack = Stack::start(&redis.url(), &[]).await;
    stack.write(json!({"SITE_NAME": "one"})).await;
    let v = stack.write(json!({"SITE_NAME": "truth"})).await;
    stack.add_sidecar(quiet_sidecar(&redis)).await;
    stack.converge(v, CONVERGE).await;

    // The hash a forged SITE_NAME would give: right for every check but the one that fails.
    let hash = ContentHash::parse(&redis.cmd(&["HGET", "rtconfig:{demo}:meta", "content_hash"]))
        .expect("meta carries a content hash");
    let mut forged_hash = hash;
    forged_hash.remove("SITE_NAME", &json!("truth"));
    forged_hash.add("SITE_NAME", &json!("forged"));
    let forged = |cluster: &str| {
        format!(r#"{{"cluster_id":"{cluster}","changes":{{"SITE_NAME":"forged"}}}}"#)
    };
    let (ours, next, gap) = (forged("default"), v + 1, v + 2);
    let cases = [
        (
            "a lost message (a gap)",
            format!("1:{gap}:0:{forged_hash} {ours}"),
        ),
        ("a duplicate", format!("1:{v}:0:{hash}")),
        (
            "out of order (an older one)",
            format!("1:{}:0:{hash} {ours}", v - 1),
        ),
        ("an old epoch", format!("0:{next}:0:{forged_hash} {ours}")),
        (
            "a foreign cluster id",
            format!("1:{next}:0:{forged_hash} {}", forged("staging")),
        ),
        (
            "a future format",
            format!("1:{next}:0:{forged_hash}:7 {ours}"),
        ),
        ("garbage", "not a hint at all".to_owned()),
        ("a wrong hash", format!("1:{next}:0:{hash} {ours}")),
    ];
    for (name, message) in &cases {
        publish(&redis, message);
        // Whatever the message did (nothing, or a resync) is over once a read answers after a
        // short wait; the value must never be the forged one.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(40)).await;
            let d = read_doc(&stack.client, &stack.sidecars[0])
                .await
                .expect("read");
            assert_eq!(d.values["SITE_NAME"], json!("truth"), "after {name}");
            assert_eq!(d.version, v, "after {name}");
        }
    }
    let metrics = stack.sidecars[0].metrics.encode();
    for expected in [
        r#"rtconfig_sync_messages_total{result="invalid"} 2"#,
        r#"rtconfig_sync_messages_total{result="hash_mismatch"} 1"#,
    ] {
        assert!(metrics.contains(expected), "{expected}\n{metrics}");
    }
    assert!(
        !metrics.contains(r#"result="applied""#),
        "nothing crafted was applied\n{metrics}"
    );
    // And the next real change still arrives.
    let v2 = stack.write(json!({"SITE_NAME": "after"})).await;
    stack.converge(v2, CONVERGE).await;
    let d = read_doc(&stack.client, &stack.sidecars[0])
        .await
        .expect("read");
    assert_eq!(d.values["SITE_NAME"], json!("after"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_ahead_of_a_restored_ledger_is_refetched_at_the_same_version() {
    let disk = tempfile::tempdir().expect("tempdir");
    let path = disk.path().join("demo.snapshot");
    let sidecar = |redis: &RedisServer| SidecarSettings {
        snapshot_path: Some(path.clone()),
        ..quiet_sidecar(redis)
    };
    // Before the loss: S = "B" at v3, on the sidecar's disk.
    {
        let redis = RedisServer::start();
        let mut stack = Stack::start(&redis.url(), &[]).await;
        stack.write(json!({"SITE_NAME": "A"})).await;
        stack.write(json!({"ITEMS_PER_PAGE": 7})).await;
        let v3 = stack.write(json!({"SITE_NAME": "B"})).await;
        assert_eq!(v3, 3);
        stack.add_sidecar(sidecar(&redis)).await;
        stack.converge(v3, CONVERGE).await;
        eventually(CONVERGE, "the disk snapshot is at v3", || async {
            let file = rtconfig::disk::load(&path).ok()?;
            (file.version == 3).then_some(())
        })
        .await;
        stack.stop().await;
    }
    // Redis lost; the ledger restored from a backup taken at v2; then v3 is S = "C".
    let redis = RedisServer::start();
    let mut stack = Stack::start(&redis.url(), &[]).await;
    stack.write(json!({"SITE_NAME": "A"})).await;
    stack.write(json!({"ITEMS_PER_PAGE": 7})).await;
    stack.add_sidecar(sidecar(&redis)).await;
    let d = read_doc(&stack.client, &stack.sidecars[0])
        .await
        .expect("read");
    assert_eq!((d.version, d.values["SITE_NAME"].clone()), (3, json!("B")));
    let v3 = stack.write(json!({"SITE_NAME": "C"})).await;
    assert_eq!(v3, 3);
    let served: Value = eventually(CONVERGE, "the sidecar serves the ledger's v3", || async {
        let d = read_doc(&stack.client, &stack.sidecars[0]).await.ok()?;
        (d.version == 3 && d.values["SITE_NAME"] == json!("C") && !d.stale)
            .then_some(d.values["SITE_NAME"].clone())
    })
    .await;
    assert_eq!(served, json!("C"));
    let metrics = stack.sidecars[0].metrics.encode();
    assert!(
        metrics.contains(r#"rtconfig_sync_anomalies_total{kind="content_hash_mismatch"}"#),
        "{metrics}"
    );
    // The file follows, hash included.
    eventually(CONVERGE, "the disk snapshot holds C", || async {
        let file = rtconfig::disk::load(&path).ok()?;
        (file.values.get("SITE_NAME") == Some(&json!("C"))
            && file.content_hash.as_deref()
                == Some(
                    redis
                        .cmd(&["HGET", "rtconfig:{demo}:meta", "content_hash"])
                        .as_str(),
                ))
        .then_some(())
    })
    .await;
    stack.stop().await;
}
