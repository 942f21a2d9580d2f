//! OFREP's per-flag `metadata.version` is the key's own (issue 11 item 10): the version of the
//! last changeset that changed that key, so `ofrep-web-provider` sees a flag change only when
//! that flag changed. Checked in `dev` (the ledger's versions), and on a sidecar fed through a
//! real redis-server along every path a snapshot is made by: the hint or log catch-up, a full
//! image load by a fresh sidecar, and a cold start from the disk snapshot.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::eventually;
use crate::harness::redis::RedisServer;
use crate::stack::{read_doc, schema_dir, Stack, RESYNC};
use crate::support::{send, Dev};
use rtconfig::app::SidecarSettings;

const CONVERGE: Duration = Duration::from_secs(15);
const KEYS: [&str; 3] = ["SITE_NAME", "ITEMS_PER_PAGE", "MAINTENANCE_MODE"];

/// `key → metadata.version` from the bulk evaluation, checked against each single one.
async fn flag_versions(client: &reqwest::Client, read_base: &str) -> BTreeMap<String, u64> {
    let bulk = send(
        client
            .post(format!("{read_base}/ofrep/v1/evaluate/flags"))
            .json(&json!({"context": {}})),
    )
    .await
    .expect_status(200)
    .json();
    let all: BTreeMap<String, u64> = bulk["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .map(|f| {
            let key = f["key"].as_str().expect("key").to_owned();
            (key, f["metadata"]["version"].as_u64().expect("version"))
        })
        .collect();
    for key in KEYS {
        let one = send(
            client
                .post(format!("{read_base}/ofrep/v1/evaluate/flags/{key}"))
                .json(&json!({})),
        )
        .await
        .expect_status(200)
        .json();
        assert_eq!(
            one["metadata"]["version"].as_u64(),
            all.get(key).copied(),
            "{key}: single and bulk agree"
        );
    }
    all.into_iter()
        .filter(|(k, _)| KEYS.contains(&k.as_str()))
        .collect()
}

fn expect(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

#[tokio::test]
async fn in_dev_each_flag_carries_the_version_that_last_changed_it() {
    let dev = Dev::start().await;
    let base = dev.read_url("");
    let base = base.trim_end_matches('/');
    assert_eq!(
        flag_versions(&dev.client, base).await,
        expect(&[
            ("SITE_NAME", 0),
            ("ITEMS_PER_PAGE", 0),
            ("MAINTENANCE_MODE", 0)
        ]),
        "never set: 0"
    );
    let a = dev.write(json!({"SITE_NAME": "A"})).await;
    let b = dev.write(json!({"ITEMS_PER_PAGE": 9})).await;
    let want = expect(&[
        ("SITE_NAME", a),
        ("ITEMS_PER_PAGE", b),
        ("MAINTENANCE_MODE", 0),
    ]);
    assert_eq!(flag_versions(&dev.client, base).await, want);
    // A change of A leaves B's version alone; a reset to the default is a change too.
    let a2 = dev.write(json!({"SITE_NAME": null})).await;
    assert!(a2 > b);
    let want = expect(&[
        ("SITE_NAME", a2),
        ("ITEMS_PER_PAGE", b),
        ("MAINTENANCE_MODE", 0),
    ]);
    assert_eq!(flag_versions(&dev.client, base).await, want);
    // The bulk answer's own metadata stays the namespace's version.
    let bulk = send(
        dev.client
            .post(format!("{base}/ofrep/v1/evaluate/flags"))
            .json(&json!({})),
    )
    .await
    .expect_status(200)
    .json();
    assert_eq!(bulk["metadata"]["version"], json!(a2));
}

/// Waits until the sidecar serves `version` and answers `want`.
async fn sidecar_versions(
    stack: &Stack,
    i: usize,
    version: u64,
    want: &BTreeMap<String, u64>,
    what: &str,
) {
    let sidecar = &stack.sidecars[i];
    eventually(CONVERGE, what, || async {
        let d = read_doc(&stack.client, sidecar).await.ok()?;
        (d.version >= version).then_some(())
    })
    .await;
    let base = format!("http://{}", sidecar.read_addr);
    assert_eq!(&flag_versions(&stack.client, &base).await, want, "{what}");
}

/// The disk snapshot file's version, once written.
fn disk_version(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let body: Value = serde_json::from_str(text.split_once('\n')?.1).ok()?;
    body["version"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_keeps_each_flags_version_through_catch_up_full_load_and_disk() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshot = dir.path().join("snapshot");
    let mut stack = Stack::start(&redis.url(), &[]).await;
    let settings = |snapshot_path: Option<&Path>| SidecarSettings {
        resync_interval: RESYNC,
        snapshot_path: snapshot_path.map(Path::to_path_buf),
        ..SidecarSettings::for_tests(schema_dir(), &redis.url())
    };
    stack.add_sidecar(settings(Some(&snapshot))).await;

    let a = stack.write(json!({"SITE_NAME": "A"})).await;
    let b = stack.write(json!({"ITEMS_PER_PAGE": 9})).await;
    let want = expect(&[
        ("SITE_NAME", a),
        ("ITEMS_PER_PAGE", b),
        ("MAINTENANCE_MODE", 0),
    ]);
    sidecar_versions(&stack, 0, b, &want, "changes applied one by one").await;

    // Change A (and reset it): B's version does not move.
    let a2 = stack.write(json!({"SITE_NAME": "A2"})).await;
    let want = expect(&[
        ("SITE_NAME", a2),
        ("ITEMS_PER_PAGE", b),
        ("MAINTENANCE_MODE", 0),
    ]);
    sidecar_versions(&stack, 0, a2, &want, "A changed, B untouched").await;
    let reset = stack.write(json!({"MAINTENANCE_MODE": true})).await;
    let a3 = stack.write(json!({"SITE_NAME": null})).await;
    let want = expect(&[
        ("SITE_NAME", a3),
        ("ITEMS_PER_PAGE", b),
        ("MAINTENANCE_MODE", reset),
    ]);
    sidecar_versions(&stack, 0, a3, &want, "A reset to its default").await;

    // A fresh sidecar loads the whole image: the items' versions; a key at its default that it
    // never saw change reports 0 (Redis keeps no item for it).
    stack.add_sidecar(settings(None)).await;
    let fresh = expect(&[
        ("SITE_NAME", 0),
        ("ITEMS_PER_PAGE", b),
        ("MAINTENANCE_MODE", reset),
    ]);
    sidecar_versions(&stack, 1, a3, &fresh, "a full image load").await;

    // The disk snapshot keeps them: a sidecar restarted from it serves the first one's.
    eventually(CONVERGE, "the disk snapshot is written", || async {
        (disk_version(&snapshot)? >= a3).then_some(())
    })
    .await;
    stack.sidecars.remove(0).stop().await;
    stack.add_sidecar(settings(Some(&snapshot))).await;
    sidecar_versions(&stack, 1, a3, &want, "a cold start from disk").await;
    stack.stop().await;
}
