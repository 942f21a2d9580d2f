//! Helpers for the PostgreSQL-ledger tests: admins on a real PostgreSQL, sidecars on a real
//! Redis, an API client, and a child-process admin (for crashes).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use rtconfig::app::{self, AdminParts, AdminSettings, Running, SidecarParts, SidecarSettings};
use serde_json::{json, Value};

use crate::harness::eventually;
use crate::harness::ports::free_port;
use crate::harness::postgres::PgCluster;
use crate::harness::redis::RedisServer;

pub const TOKEN: &str = "test-token-0123456789";
pub const META: &str = "rtconfig:{demo}:meta";
pub const ITEMS: &str = "rtconfig:{demo}:items";
/// Deadline of `eventually` checks: generous, for a loaded 2-core machine.
pub const SETTLE: Duration = Duration::from_secs(15);

pub fn schema_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
}

/// Admin settings on PostgreSQL with short relay intervals.
pub fn admin_settings(database_url: &str, redis_url: &str) -> AdminSettings {
    let mut s = AdminSettings::for_tests_pg(schema_dir(), database_url, redis_url);
    s.admin_token = Some(TOKEN.into());
    s.relay_interval = Duration::from_millis(200);
    s
}

pub async fn start_admin(database_url: &str, redis_url: &str) -> Running<AdminParts> {
    app::start_admin(admin_settings(database_url, redis_url))
        .await
        .expect("start admin")
}

pub async fn start_sidecar(redis_url: &str) -> Running<SidecarParts> {
    let mut s = SidecarSettings::for_tests(schema_dir(), redis_url);
    s.resync_interval = Duration::from_millis(300);
    app::start_sidecar(s).await.expect("start sidecar")
}

/// A fresh database on `pg`: (name, url).
pub fn fresh_db(pg: &PgCluster) -> (String, String) {
    let db = pg.create_database();
    let url = pg.url(&db);
    (db, url)
}

/// The admin JSON API.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
}

/// An answer: status and JSON body (`Null` when there is none).
pub type Answer = (StatusCode, Value);

impl Api {
    pub fn new(addr: impl std::fmt::Display) -> Api {
        Api {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            base: format!("http://{addr}"),
        }
    }

    /// `host:port` of the admin.
    pub fn addr_string(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    /// `PATCH /api/v1/namespaces/demo/configs`; `Err` when no answer came (connection lost).
    pub async fn try_patch(
        &self,
        changes: Value,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, reqwest::Error> {
        let mut req = self
            .client
            .patch(format!("{}/api/v1/namespaces/demo/configs", self.base))
            .bearer_auth(TOKEN)
            .json(&json!({ "changes": changes }));
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    pub async fn patch(&self, changes: Value, idempotency_key: Option<&str>) -> Answer {
        self.try_patch(changes, idempotency_key)
            .await
            .expect("PATCH answered")
    }

    /// Sets SITE_NAME as a careful client does: a 503 (`store_unavailable`, e.g. a lock wait past
    /// the operation timeout on a loaded machine) is retried with the same `Idempotency-Key`, so
    /// the write is applied exactly once however often it is sent. Returns the version.
    pub async fn set_site_name_retrying(&self, value: &str) -> u64 {
        let key = format!("set-{value}");
        for _ in 0..20 {
            let (status, body) = self.patch(json!({ "SITE_NAME": value }), Some(&key)).await;
            if status == StatusCode::SERVICE_UNAVAILABLE {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            assert_eq!(status, StatusCode::OK, "write {value:?}: {body}");
            return body["version"].as_u64().expect("version");
        }
        panic!("write {value:?}: 503 twenty times");
    }

    /// Sets SITE_NAME and expects success; returns the version.
    pub async fn set_site_name(&self, value: &str) -> u64 {
        let (status, body) = self.patch(json!({ "SITE_NAME": value }), None).await;
        assert_eq!(status, StatusCode::OK, "write {value:?}: {body}");
        body["version"].as_u64().expect("version")
    }

    pub async fn get(&self, path: &str) -> Answer {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET answered");
        let status = resp.status();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    }
}

/// The error code of an API error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// The sidecar's whole state (`GET /v1/configs`).
pub async fn sidecar_state(sidecar: &Running<SidecarParts>) -> Value {
    reqwest::get(format!("http://{}/v1/configs", sidecar.read_addr))
        .await
        .expect("sidecar answers")
        .json()
        .await
        .expect("sidecar JSON")
}

/// Waits until the sidecar serves `version` (in any epoch ≥ `epoch`) with SITE_NAME = `value`.
pub async fn sidecar_shows(sidecar: &Running<SidecarParts>, epoch: u64, version: u64, value: &str) {
    eventually(
        SETTLE,
        &format!("the sidecar serves epoch {epoch} version {version} with SITE_NAME {value:?}"),
        || async {
            let s = sidecar_state(sidecar).await;
            (s["epoch"].as_u64() == Some(epoch)
                && s["version"].as_u64() == Some(version)
                && s["values"]["SITE_NAME"] == json!(value))
            .then_some(())
        },
    )
    .await;
}

/// A field of the namespace's Redis meta hash (`None` when absent).
pub fn redis_meta(redis: &RedisServer, field: &str) -> Option<String> {
    let v = redis.cmd(&["HGET", META, field]);
    (v != "(nil)").then_some(v)
}

pub fn redis_meta_u64(redis: &RedisServer, field: &str) -> Option<u64> {
    redis_meta(redis, field).and_then(|v| v.parse().ok())
}

/// Waits until Redis holds a complete image at `version` (epoch `epoch`).
pub async fn redis_at(redis: &RedisServer, epoch: u64, version: u64) {
    eventually(
        SETTLE,
        &format!("redis holds a complete image at epoch {epoch}, version {version}"),
        || async {
            (redis_meta(redis, "complete").as_deref() == Some("1")
                && redis_meta_u64(redis, "epoch") == Some(epoch)
                && redis_meta_u64(redis, "version") == Some(version))
            .then_some(())
        },
    )
    .await;
}

/// The stored value of `key` in Redis's items hash.
pub fn redis_item(redis: &RedisServer, key: &str) -> Option<Value> {
    let text = redis.cmd(&["HGET", ITEMS, key]);
    if text == "(nil)" {
        return None;
    }
    let v: Value = serde_json::from_str(&text).expect("item JSON");
    Some(v["value"].clone())
}

/// `psql` one value out of `db`.
pub fn sql(pg: &PgCluster, db: &str, query: &str) -> String {
    pg.psql(db, query)
}

/// `rtconfig …` as a child process (the real binary), killed on drop.
pub struct ChildProcess {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ChildProcess {
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> ChildProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("out.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("dup");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtconfig"));
        cmd.args(args)
            .env("RTCONFIG_LOG_FORMAT", "pretty")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn rtconfig");
        ChildProcess {
            child,
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        crate::harness::log_tail(&self.log, 40)
    }

    /// The file the process's stdout and stderr go to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Waits for the process to exit; its exit code.
    pub async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let start = std::time::Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if start.elapsed() > within {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion: (exit code, stdout + stderr).
pub fn run_binary(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rtconfig"))
        .args(args)
        .env("RTCONFIG_LOG_FORMAT", "pretty")
        .stdin(Stdio::null())
        .output()
        .expect("run rtconfig");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// `rtconfig admin --database-url … --redis-url …` on a free port, with `env`; waits until ready.
pub async fn spawn_admin(
    database_url: &str,
    redis_url: &str,
    env: &[(&str, &str)],
) -> (ChildProcess, Api) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let schema = schema_dir();
    let child = ChildProcess::spawn(
        &[
            "admin",
            "--database-url",
            database_url,
            "--redis-url",
            redis_url,
            "--admin-token",
            TOKEN,
            "--listen",
            &listen,
            "--relay-interval",
            "0.2",
            "--schema-dir",
            path_str(&schema),
        ],
        env,
    );
    let api = Api::new(&listen);
    let probe = reqwest::Client::new();
    eventually(SETTLE, "the child admin answers /readyz", || {
        let probe = probe.clone();
        let url = format!("http://{listen}/readyz");
        async move {
            let resp = probe.get(url).send().await.ok()?;
            resp.status().is_success().then_some(())
        }
    })
    .await;
    (child, api)
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
