//! `rtconfig admin --data-dir`: the embedded ledger behind the same relay and leadership loop
//! (it always leads), with reconcile --force and adopt-on-empty like PostgreSQL; and the admin's
//! ledger flags.

use rtconfig::app::{self, AdminParts, AdminSettings, Running};
use serde_json::json;

use crate::harness::eventually;
use crate::harness::redis::RedisServer;
use crate::pg_stack::{
    path_str, redis_at, redis_meta_u64, run_binary, schema_dir, sidecar_shows, start_sidecar, Api,
    SETTLE, TOKEN,
};

async fn embedded_admin(data_dir: &std::path::Path, redis_url: &str) -> Running<AdminParts> {
    let mut s = AdminSettings::for_tests(schema_dir(), data_dir.to_path_buf(), redis_url);
    s.admin_token = Some(TOKEN.into());
    app::start_admin(s).await.expect("start the embedded admin")
}

#[tokio::test]
async fn the_embedded_admin_relays_reconciles_and_adopts() {
    let redis = RedisServer::start();
    let sidecar = start_sidecar(&redis.url()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = embedded_admin(dir.path(), &redis.url()).await;
    eventually(SETTLE, "the only admin leads", || async {
        (admin.relay_metrics.leader.get() == 1).then_some(())
    })
    .await;
    let v = Api::new(admin.addr).set_site_name("embedded").await;
    sidecar_shows(&sidecar, 1, v, "embedded").await;
    admin.stop().await;

    // reconcile --force on the (stopped) admin's data dir raises the epoch.
    let (code, out) = run_binary(&[
        "admin",
        "reconcile",
        "--force",
        "--data-dir",
        path_str(dir.path()),
        "--schema-dir",
        path_str(&schema_dir()),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("demo: epoch 2 (version 1)"), "{out}");
    let admin = embedded_admin(dir.path(), &redis.url()).await;
    redis_at(&redis, 2, 1).await;
    sidecar_shows(&sidecar, 2, 1, "embedded").await;
    admin.stop().await;

    // A new, empty data dir adopts the complete image instead of wiping it.
    let fresh = tempfile::tempdir().expect("tempdir");
    let admin = embedded_admin(fresh.path(), &redis.url()).await;
    eventually(SETTLE, "the empty ledger adopts the image", || async {
        let s = admin.ledger.namespace_state("demo").await.ok()?;
        (s.epoch == 2 && s.version == 1).then_some(())
    })
    .await;
    let v = Api::new(admin.addr).set_site_name("after adoption").await;
    assert_eq!(v, 2);
    sidecar_shows(&sidecar, 2, 2, "after adoption").await;
    assert_eq!(redis_meta_u64(&redis, "epoch"), Some(2));
    assert_eq!(
        admin.ledger.current("demo").await.expect("current").values["SITE_NAME"].value,
        Some(json!("after adoption"))
    );
    admin.stop().await;
    sidecar.stop().await;
}

#[test]
fn the_admin_needs_exactly_one_ledger() {
    let common = [
        "admin",
        "--redis-url",
        "redis://127.0.0.1:1",
        "--admin-token",
        TOKEN,
    ];
    let (code, out) = run_binary(&common);
    assert_eq!(code, 64, "{out}");
    assert!(out.contains("--database-url"), "{out}");
    let mut both = common.to_vec();
    both.extend([
        "--database-url",
        "postgres://x@127.0.0.1:1/x",
        "--data-dir",
        "/tmp/x",
    ]);
    let (code, out) = run_binary(&both);
    assert_eq!(code, 64, "{out}");
    let mut bad = common.to_vec();
    bad.extend(["--database-url", "postgres://x@127.0.0.1:notaport/x"]);
    let (code, out) = run_binary(&bad);
    assert_eq!(code, 64, "{out}");
    assert!(out.contains("invalid --database-url"), "{out}");
}
