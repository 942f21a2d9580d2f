//! `rtconfig user …` and `rtconfig token …` as a user runs them: the binary on a temp data dir
//! and on PostgreSQL, passwords on stdin, exit codes, audit rows, and a data dir held by a
//! running admin.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use rtconfig::auth::embedded::EmbeddedAuthStore;
use rtconfig::auth::postgres::PgAuthStore;
use rtconfig::auth::store::AuditQuery;
use rtconfig::auth::AuthStore;
use rtconfig::ledger::postgres::PgSettings;

use crate::harness::postgres::shared_cluster;
use crate::pg_stack::fresh_db;

const PASSWORD: &str = "correct horse battery staple";

/// Runs `rtconfig ARGS` with `stdin`: (exit code, stdout, stderr).
fn rtconfig(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtconfig"))
        .args(args)
        .env("RTCONFIG_LOG_FORMAT", "json")
        .env_remove("RTCONFIG_DATA_DIR")
        .env_remove("RTCONFIG_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rtconfig");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        // A command that fails early (a bad flag, a locked data dir) exits without reading.
        if let Err(e) = input.write_all(text.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
        }
    }
    drop(input);
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str], stdin: Option<&str>) -> String {
    let (code, out, err) = rtconfig(args, stdin);
    assert_eq!(code, 0, "rtconfig {args:?}: {out}{err}");
    assert!(
        !out.contains(PASSWORD) && !err.contains(PASSWORD),
        "the password is never printed"
    );
    out
}

fn fails(args: &[&str], stdin: Option<&str>, code: i32, says: &str) {
    let (got, out, err) = rtconfig(args, stdin);
    assert_eq!(got, code, "rtconfig {args:?}: {out}{err}");
    assert!(
        err.contains(says),
        "rtconfig {args:?} should say {says:?}: {err}"
    );
}

/// The whole command set against one store (`store`: the store flags).
fn walk_through(store: &[&str]) -> String {
    let with = |args: &[&str]| -> Vec<String> {
        args.iter().chain(store).map(|s| (*s).to_owned()).collect()
    };
    let run = |args: &[&str], stdin: Option<&str>| ok(&as_refs(&with(args)), stdin);
    let fail = |args: &[&str], stdin: Option<&str>, code: i32, says: &str| {
        fails(&as_refs(&with(args)), stdin, code, says)
    };
    let pw = format!("{PASSWORD}\n");
    let out = run(
        &[
            "user",
            "add",
            "alice",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some(&pw),
    );
    assert!(out.contains("user alice created"), "{out}");
    run(
        &[
            "user",
            "add",
            "bob",
            "--role",
            "editor:demo",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        Some(&pw),
    );
    // Usage errors: 64, with the reason.
    fail(
        &[
            "user",
            "add",
            "carol",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some("short\n"),
        64,
        "at least 12 characters",
    );
    fail(
        &[
            "user",
            "add",
            "carol",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some(""),
        64,
        "no password on stdin",
    );
    fail(
        &["user", "add", "carol", "--role", "admin"],
        None,
        64,
        "--password-stdin",
    );
    fail(
        &[
            "user",
            "add",
            "carol",
            "--role",
            "owner",
            "--password-stdin",
        ],
        Some(&pw),
        64,
        "unknown role",
    );
    // Run-time errors: 1.
    fail(
        &[
            "user",
            "add",
            "alice",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        Some(&pw),
        1,
        "already exists",
    );
    fail(&["user", "disable", "nobody"], None, 1, "no user named");

    run(&["user", "grant", "bob", "admin:ops"], None);
    run(&["user", "revoke", "bob", "viewer"], None);
    run(&["user", "disable", "bob"], None);
    let list = run(&["user", "list"], None);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(lines[0].starts_with("NAME"), "{list}");
    for col in ["ROLES", "DISABLED", "LOCKED", "MFA", "SSO"] {
        assert!(lines[0].contains(col), "{list}");
    }
    assert!(
        lines[1].starts_with("alice") && lines[1].contains("admin"),
        "{list}"
    );
    let bob: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        bob,
        ["bob", "editor:demo,", "admin:ops", "yes", "no", "-", "-"],
        "{list}"
    );
    run(&["user", "enable", "bob"], None);
    run(
        &["user", "passwd", "bob", "--password-stdin"],
        Some("another long passphrase\n"),
    );

    // Tokens: the token alone on stdout.
    let token = run(
        &[
            "token",
            "create",
            "ci",
            "--role",
            "editor:demo",
            "--expires-in",
            "3600",
        ],
        None,
    );
    assert_eq!(token.lines().count(), 1, "{token}");
    let token = token.trim().to_owned();
    assert!(token.starts_with("rtc_") && token.len() == 47, "{token}");
    fail(
        &["token", "create", "ci", "--role", "viewer"],
        None,
        1,
        "already exists",
    );
    let list = run(&["token", "list"], None);
    assert!(!list.contains(&token), "token list never shows a token");
    let id = list
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("a token row")
        .to_owned();
    assert!(id.starts_with("tok_"), "{list}");
    run(&["token", "revoke", &id], None);
    fail(&["token", "revoke", &id], None, 1, "already revoked");
    fail(&["token", "revoke", "tok_nope"], None, 1, "no token");
    let list = run(&["token", "list"], None);
    let row = list.lines().nth(1).expect("row");
    assert!(!row.ends_with('-'), "the revocation time is shown: {list}");
    token
}

fn as_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

async fn check_store(store: &dyn AuthStore, token: &str) {
    let alice = store
        .user_by_name("alice")
        .await
        .expect("read")
        .expect("alice");
    assert!(
        alice
            .password_hash
            .as_deref()
            .is_some_and(|h| h.starts_with("$argon2id$")),
        "argon2id"
    );
    assert!(store.has_admin().await.expect("has_admin"));
    let page = store
        .audit(&AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    let mut actions: Vec<&str> = page
        .events
        .iter()
        .map(|e| e.event.action.as_str())
        .collect();
    actions.reverse();
    assert_eq!(
        actions,
        [
            "user_created",
            "user_created",
            "roles_changed",
            "roles_changed",
            "user_disabled",
            "user_enabled",
            "password_reset",
            "token_created",
            "token_revoked",
        ]
    );
    assert!(page.events.iter().all(|e| e.event.actor == "cli"));
    let all = serde_json::to_string(&page.events).expect("json");
    assert!(
        !all.contains(token) && !all.contains(PASSWORD),
        "no secret in the audit log"
    );
}

#[tokio::test]
async fn the_user_and_token_commands_work_on_a_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_string_lossy().into_owned();
    let token = tokio::task::spawn_blocking(move || walk_through(&["--data-dir", &path]))
        .await
        .expect("walk through");
    let store = EmbeddedAuthStore::open(dir.path()).expect("open");
    check_store(&store, &token).await;
}

#[tokio::test]
async fn the_user_and_token_commands_work_on_postgres() {
    let pg = shared_cluster();
    let (_, url) = fresh_db(pg);
    let u = url.clone();
    let token = tokio::task::spawn_blocking(move || walk_through(&["--database-url", &u]))
        .await
        .expect("walk through");
    let store = PgAuthStore::open(&PgSettings::new(&url))
        .await
        .expect("open");
    check_store(&store, &token).await;
}

#[test]
fn a_store_flag_is_required_and_a_held_data_dir_is_refused_clearly() {
    fails(&["user", "list"], None, 64, "--data-dir DIR");
    fails(
        &[
            "user",
            "list",
            "--data-dir",
            "x",
            "--database-url",
            "postgres://h/db",
        ],
        None,
        64,
        "cannot be used with",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let _admin = EmbeddedAuthStore::open(dir.path()).expect("a running admin holds the store");
    let d = dir.path().to_string_lossy().into_owned();
    fails(
        &["user", "list", "--data-dir", &d],
        None,
        1,
        "stop the admin, or use the API",
    );
    fails(
        &[
            "token",
            "create",
            "ci",
            "--role",
            "viewer",
            "--data-dir",
            &d,
        ],
        None,
        1,
        "stop the admin, or use the API",
    );
    assert!(!Path::new(&d).join("dev-token").exists());
}
