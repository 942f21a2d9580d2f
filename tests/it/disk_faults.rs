//! Fail-static from disk (issue 11 items 5 and 6), with a real redis-server, the real admin and
//! sidecars, and a real small filesystem: two snapshot generations with fallback (S13),
//! `--require-snapshot` answering 503 `no_snapshot` instead of the schema defaults, and
//! snapshot writes that recover on their own once a full disk has room again, and a graceful
//! stop that leaves the version it served on disk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rtconfig::app::SidecarSettings;
use rtconfig::disk;
use serde_json::{json, Value};

use crate::harness::eventually;
use crate::harness::redis::RedisServer;
use crate::stack::{read_doc, schema_dir, Stack, RESYNC};

const CONVERGE: Duration = Duration::from_secs(15);

fn sidecar_settings(redis: &RedisServer, snapshot: &Path) -> SidecarSettings {
    SidecarSettings {
        resync_interval: RESYNC,
        snapshot_path: Some(snapshot.to_path_buf()),
        require_snapshot: true,
        ..SidecarSettings::for_tests(schema_dir(), &redis.url())
    }
}

async fn get(stack: &Stack, url: String) -> (u16, Value) {
    let r = stack.client.get(url).send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn metrics(stack: &Stack, idx: usize) -> String {
    let url = format!("http://{}/metrics", stack.sidecars[idx].probe_addr);
    stack
        .client
        .get(url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of an unlabelled series in a metrics text.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

async fn file_version(path: &Path) -> Option<u64> {
    disk::load(path).ok().map(|s| s.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s13_a_damaged_snapshot_falls_back_to_the_previous_generation_and_none_answers_503() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshot = dir.path().join("demo.snapshot");
    let previous = disk::previous_path(&snapshot);
    let mut stack = Stack::start(&redis.url(), &[]).await;
    let settings = sidecar_settings(&redis, &snapshot);
    stack.add_sidecar(settings.clone()).await;
    let v1 = stack.write(json!({"SITE_NAME": "first"})).await;
    stack.converge(v1, CONVERGE).await;
    eventually(Duration::from_secs(5), "v1 on disk", || async {
        (file_version(&snapshot).await? >= v1).then_some(())
    })
    .await;
    let v2 = stack.write(json!({"SITE_NAME": "second"})).await;
    stack.converge(v2, CONVERGE).await;
    eventually(Duration::from_secs(5), "v2 on disk, v1 kept", || async {
        let newest = file_version(&snapshot).await?;
        let prev = file_version(&previous).await?;
        (newest == v2 && prev == v1).then_some(())
    })
    .await;
    stack.sidecars.pop().expect("sidecar").stop().await;
    redis.kill();

    // The newest file damaged (torn, bit-flipped): the previous generation is served.
    let good = std::fs::read(&snapshot).expect("read snapshot");
    let mut flipped = good.clone();
    let at = flipped.len() - 10;
    flipped[at] ^= 0x20;
    for (what, bytes) in [
        ("truncated", good[..good.len() / 2].to_vec()),
        ("bit-flipped", flipped),
    ] {
        std::fs::write(&snapshot, &bytes).expect("damage");
        let idx = stack.add_sidecar(settings.clone()).await;
        let probe = stack.sidecars[idx].probe_addr;
        let (status, _) = get(&stack, format!("http://{probe}/readyz")).await;
        assert_eq!(status, 200, "{what}: ready from the previous generation");
        let d = read_doc(&stack.client, &stack.sidecars[idx])
            .await
            .expect("read");
        assert_eq!((d.source.as_str(), d.version), ("disk", v1), "{what}");
        assert_eq!(d.values["SITE_NAME"], json!("first"), "{what}");
        assert!(d.stale, "{what}: not confirmed by Redis");
        let (_, status) = get(&stack, format!("http://{probe}/status")).await;
        let disk_status = &status["sync"]["disk_snapshot"];
        assert_eq!(disk_status["loaded"], "previous", "{what}: {status}");
        assert!(
            disk_status["loaded_because"]
                .as_str()
                .is_some_and(|w| w.contains("newest")),
            "{what}: {status}"
        );
        let m = metrics(&stack, idx).await;
        assert!(
            m.contains("rtconfig_snapshot_disk_loaded{generation=\"previous\"} 1"),
            "{what}"
        );
        assert!(
            m.contains("rtconfig_sync_anomalies_total{kind=\"bad_disk_snapshot\"} 1"),
            "{what}"
        );
        assert_eq!(
            metric(&m, "rtconfig_snapshot_disk_version"),
            Some(v1 as f64),
            "{what}"
        );
        stack.sidecars.pop().expect("sidecar").stop().await;
    }

    // Both damaged: with --require-snapshot nothing is served, not even the defaults.
    std::fs::write(&previous, b"rtconfig-snapshot 1 0000\n{}").expect("damage previous");
    let idx = stack.add_sidecar(settings.clone()).await;
    let (read, probe) = (
        stack.sidecars[idx].read_addr,
        stack.sidecars[idx].probe_addr,
    );
    tokio::time::sleep(RESYNC * 2).await;
    let (status, body) = get(&stack, format!("http://{probe}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    for path in [
        "/v1/configs",
        "/v1/configs/SITE_NAME",
        "/v1/configs/SITE_NAME?format=raw",
        "/v1/watch",
        "/",
    ] {
        let (status, body) = get(&stack, format!("http://{read}{path}")).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["error"]["code"], "no_snapshot", "{path}: {body}");
    }
    let r = stack
        .client
        .post(format!("http://{read}/ofrep/v1/evaluate/flags/SITE_NAME"))
        .json(&json!({}))
        .send()
        .await
        .expect("ofrep");
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<Value>().await.expect("json")["errorCode"],
        "GENERAL"
    );
    let m = metrics(&stack, idx).await;
    assert!(m.contains("rtconfig_snapshot_disk_loaded{generation=\"none\"} 1"));
    let (_, status) = get(&stack, format!("http://{probe}/status")).await;
    assert_eq!(
        status["sync"]["disk_snapshot"]["loaded"],
        Value::Null,
        "{status}"
    );

    // Redis back: the real snapshot arrives and reads answer again.
    redis.restart();
    eventually(CONVERGE, "reads answer once Redis is back", || async {
        let d = read_doc(&stack.client, &stack.sidecars[idx]).await.ok()?;
        (d.version == v2 && d.source == "redis").then_some(())
    })
    .await;
    stack.stop().await;
}

/// A small tmpfs, mounted for the test and unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the filesystem to the last byte; returns the filler file.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        while f.write_all(&[0]).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s24_a_snapshot_write_on_a_full_disk_is_retried_until_the_file_catches_up() {
    let redis = RedisServer::start();
    let small = SmallDisk::mount("256k");
    let snapshot = small.path().join("demo.snapshot");
    let mut stack = Stack::start(&redis.url(), &[]).await;
    let idx = stack.add_sidecar(sidecar_settings(&redis, &snapshot)).await;
    let v1 = stack.write(json!({"SITE_NAME": "fits"})).await;
    stack.converge(v1, CONVERGE).await;
    eventually(Duration::from_secs(5), "v1 on disk", || async {
        (file_version(&snapshot).await? == v1).then_some(())
    })
    .await;

    let filler = small.fill();
    let v2 = stack.write(json!({"SITE_NAME": "does not fit yet"})).await;
    stack.converge(v2, CONVERGE).await;
    eventually(Duration::from_secs(5), "failed writes counted", || async {
        let m = metrics(&stack, idx).await;
        (metric(&m, "rtconfig_snapshot_write_failures_total")? >= 2.0).then_some(())
    })
    .await;
    assert_eq!(
        file_version(&snapshot).await,
        Some(v1),
        "the old file is intact"
    );
    assert!(
        !rtconfig::private_file::temp_path(&snapshot).exists(),
        "no temporary file left on the full disk"
    );
    let probe = stack.sidecars[idx].probe_addr;
    let (_, status) = get(&stack, format!("http://{probe}/status")).await;
    let d = &status["sync"]["disk_snapshot"];
    assert!(
        d["write_failures"].as_u64().is_some_and(|n| n >= 1),
        "{status}"
    );
    assert!(
        d["last_write_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{status}"
    );
    assert_eq!(d["file_version"], v1, "{status}");
    // Reads were never affected.
    let doc = read_doc(&stack.client, &stack.sidecars[idx])
        .await
        .expect("read");
    assert_eq!(doc.version, v2);

    // Room again: the file catches up without any new change.
    std::fs::remove_file(&filler).expect("free the disk");
    eventually(
        Duration::from_secs(10),
        "v2 on disk without a new change",
        || async { (file_version(&snapshot).await? == v2).then_some(()) },
    )
    .await;
    let m = metrics(&stack, idx).await;
    assert_eq!(
        metric(&m, "rtconfig_snapshot_disk_version"),
        Some(v2 as f64)
    );
    let (_, status) = get(&stack, format!("http://{probe}/status")).await;
    let d = &status["sync"]["disk_snapshot"];
    assert_eq!(d["write_failures"], 0, "{status}");
    assert_eq!(d["last_write_error"], Value::Null, "{status}");
    assert_eq!(
        file_version(&disk::previous_path(&snapshot)).await,
        Some(v1)
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_in_the_way_of_the_snapshot_is_retried_until_it_is_gone() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshot = dir.path().join("demo.snapshot");
    // A directory where the file must go (and a file in it, so it cannot be renamed over).
    std::fs::create_dir(&snapshot).expect("dir in the way");
    std::fs::write(snapshot.join("x"), b"x").expect("fill");
    let mut stack = Stack::start(&redis.url(), &[]).await;
    let idx = stack.add_sidecar(sidecar_settings(&redis, &snapshot)).await;
    let v = stack.write(json!({"SITE_NAME": "blocked"})).await;
    stack.converge(v, CONVERGE).await;
    eventually(Duration::from_secs(5), "failed writes counted", || async {
        let m = metrics(&stack, idx).await;
        (metric(&m, "rtconfig_snapshot_write_failures_total")? >= 1.0).then_some(())
    })
    .await;
    assert!(
        !rtconfig::private_file::temp_path(&snapshot).exists(),
        "temp file cleaned up"
    );
    std::fs::remove_dir_all(&snapshot).expect("clear the way");
    eventually(Duration::from_secs(10), "the file catches up", || async {
        (file_version(&snapshot).await? == v).then_some(())
    })
    .await;
    stack.stop().await;
}

/// A graceful stop inside the write debounce (at most one write a second) still leaves the
/// version it served on disk: the last write waits for the shutdown, so a restarted sidecar
/// never comes back older than it was (the restart storm of tests/it/chaos.rs found one that
/// did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s15_a_graceful_stop_writes_the_snapshot_still_in_the_debounce() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshot = dir.path().join("demo.snapshot");
    let mut stack = Stack::start(&redis.url(), &[]).await;
    stack.add_sidecar(sidecar_settings(&redis, &snapshot)).await;
    let v1 = stack.write(json!({"SITE_NAME": "written at once"})).await;
    stack.converge(v1, CONVERGE).await;
    eventually(Duration::from_secs(5), "v1 on disk", || async {
        (file_version(&snapshot).await? >= v1).then_some(())
    })
    .await;
    // The next change arrives within the writer's one-second pause, and the sidecar stops.
    let v2 = stack
        .write(json!({"SITE_NAME": "inside the debounce"}))
        .await;
    stack.converge(v2, CONVERGE).await;
    let served = read_doc(&stack.client, &stack.sidecars[0])
        .await
        .expect("read")
        .version;
    stack.sidecars.remove(0).stop().await;
    assert_eq!(
        file_version(&snapshot).await,
        Some(served),
        "the version served at the stop is on disk"
    );
    stack.stop().await;
}
