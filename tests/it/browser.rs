//! The web UI in a real browser: Debian's `chromium` driven by `playwright-core` from the node
//! scripts in `tests/browser/` (installed by `scripts/test`), with axe-core accessibility checks
//! and screenshots to `target/ui-screenshots/`. Each test starts the product, seeds users, runs
//! one script with the base URL and credentials in its environment, and asserts its exit code.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rtconfig::auth::store::NewUser;
use rtconfig::auth::{Auth, Grants};

use crate::support::Dev;

/// The password every seeded user gets (long enough for the policy, not a common one).
pub const PASSWORD: &str = "correct horse battery staple 42";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// A user with a real password hash, straight in the store.
pub async fn seed_user(auth: &Arc<Auth>, name: &str, grants: &[&str]) {
    let hash = auth.hasher.hash(PASSWORD).await.expect("hash");
    auth.store
        .create_user(NewUser {
            username: name.to_owned(),
            grants: Grants::new(grants.iter().map(|g| g.parse().expect("grant")).collect()),
            password_hash: Some(hash),
            oidc: None,
        })
        .await
        .expect("create user");
}

/// Runs `tests/browser/<script>` with `RTCONFIG_URL` = `base`, `RTCONFIG_USER` = `user`,
/// `RTCONFIG_PASSWORD` and `extra`; panics with its output unless it exits 0.
pub async fn run_script(script: &str, base: &str, user: &str, extra: &[(&str, String)]) -> String {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "tests/browser/node_modules is missing: run scripts/test (it runs npm ci --prefix tests/browser)"
    );
    let mut cmd = Command::new("node");
    cmd.arg(dir.join(script))
        .current_dir(&dir)
        .env("RTCONFIG_URL", base)
        .env("RTCONFIG_USER", user)
        .env("RTCONFIG_PASSWORD", PASSWORD);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run node (is it installed? scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    // What the script measured (e.g. the live notice's delay), visible with --nocapture.
    print!("{stdout}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sign_in_and_the_namespaces_list() {
    let dev = Dev::start().await;
    seed_user(&dev.auth(), "alice", &["editor:demo"]).await;
    run_script("signin.mjs", &dev.admin, "alice", &[]).await;
}

/// The walk-through on `rtconfig dev` (with a secret key in the schema).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_configs_walk_through_on_dev() {
    let dev = Dev::start_with_secret().await;
    seed_user(&dev.auth(), "alice", &["editor:demo"]).await;
    seed_user(&dev.auth(), "vera", &["viewer:demo"]).await;
    run_script(
        "walkthrough.mjs",
        &dev.admin,
        "alice",
        &[
            ("RTCONFIG_VIEWER", "vera".into()),
            ("RTCONFIG_SIDECAR", dev.read.clone()),
            ("RTCONFIG_SECRET_KEY", "DB_PASSWORD".into()),
            ("RTCONFIG_SHOTS", "1".into()),
        ],
    )
    .await;
}

/// The same walk-through on the production shape: `rtconfig admin` on PostgreSQL, Redis, and
/// a sidecar that gets the commits through Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_configs_walk_through_on_admin_postgres_redis_and_a_sidecar() {
    use crate::harness::postgres::shared_cluster;
    use crate::harness::redis::RedisServer;
    use crate::pg_stack::{fresh_db, start_admin, start_sidecar};

    let redis = RedisServer::start();
    let (_, url) = fresh_db(shared_cluster());
    let admin = start_admin(&url, &redis.url()).await;
    let sidecar = start_sidecar(&redis.url()).await;
    seed_user(&admin.auth, "alice", &["editor:demo"]).await;
    seed_user(&admin.auth, "vera", &["viewer:demo"]).await;
    run_script(
        "walkthrough.mjs",
        &format!("http://{}", admin.addr),
        "alice",
        &[
            ("RTCONFIG_VIEWER", "vera".into()),
            ("RTCONFIG_SIDECAR", format!("http://{}", sidecar.read_addr)),
        ],
    )
    .await;
    sidecar.stop().await;
    admin.stop().await;
}

/// The users and API tokens pages (`tests/browser/people.mjs`), as a global admin on dev.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_people_users_and_tokens_pages() {
    let dev = Dev::start().await;
    seed_user(&dev.auth(), "root", &["admin"]).await;
    run_script("people.mjs", &dev.admin, "root", &[]).await;
}
