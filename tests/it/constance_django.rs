//! django-constance acceptance tests with the real thing (issue 13 item 5): Django 5.2 and
//! django-constance 4.4 from PyPI (the venv `target/pyvenv` that scripts/test makes from
//! clients/python/tests/requirements.txt) run the project in tests/constance against a spawned
//! redis-server, next to the real `rtconfig admin --constance-mirror` and `rtconfig sidecar`
//! binaries (child processes, configured by their flags as an operator would).
//!
//! - No mirror needed: the codec vectors are what the installed constance writes and reads, and
//!   constance reads each vector's bytes from Redis as the Python value they stand for.
//! - (a) values written through rtconfig are read by `constance.config` with the right Python types
//!   for every codec type, byte for byte what constance itself would write; a reset deletes the key.
//! - (b) values saved with `config.KEY = …` and `manage.py constance set` reach the sidecar within
//!   2 s, recorded with actor `django-constance`, comment `adopted from constance`.
//! - (c) a Redis restart during the migration (empty: the worst case) loses neither side's values.
//! - (d) 1,000 alternating writes (rtconfig, Django, rtconfig, …) lose and reorder nothing.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::eventually;
use crate::harness::ports::free_port;
use crate::harness::redis::RedisServer;
use crate::harness::run_with_timeout;
use crate::pg_stack::ChildProcess;

/// The rtconfig namespace of tests/constance/schema/site.toml.
const NS: &str = "site";
const PREFIX: &str = "constance:";
/// The channel the seed's workers listened on for key names to drop from their local cache.
const CHANNEL: &str = "configs:invalidate";
const TOKEN: &str = "test-token-0123456789";
const DJANGO_ACTOR: &str = "django-constance";
const ADOPTED: &str = "adopted from constance";
/// How long a value saved through constance may take to reach the sidecar (issue 13 item 5).
const ADOPTION_BOUND: Duration = Duration::from_secs(2);
/// Deadline for things that have no stated bound (start-up, repair after a restart).
const SETTLE: Duration = Duration::from_secs(15);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn project() -> PathBuf {
    root().join("tests/constance")
}

fn python() -> PathBuf {
    let p = root().join("target/pyvenv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/test (it makes the venv with Django and django-constance)",
        p.display()
    );
    p
}

/// `python tests/constance/SCRIPT ARGS` with the project's environment on `redis_url`.
fn django_command(redis_url: &str, script: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(project().join(script))
        .args(args)
        .current_dir(project())
        .env("CONSTANCE_REDIS_URL", redis_url)
        .env("CONSTANCE_REDIS_PREFIX", PREFIX)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("DJANGO_SETTINGS_MODULE");
    cmd
}

/// Runs `script` to completion: stdout, or the failure with stderr.
fn run_django(redis_url: &str, script: &str, args: &[&str]) -> Result<String, String> {
    let out = run_with_timeout(
        &mut django_command(redis_url, script, args),
        Duration::from_secs(60),
    )?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{script} {args:?} exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `manage.py constance set KEY VALUE…`, the command operators use; panics when it fails.
fn manage_set(redis_url: &str, key: &str, values: &[&str]) {
    let mut args = vec!["constance", "set", key];
    args.extend_from_slice(values);
    if let Err(e) = run_django(redis_url, "manage.py", &args) {
        panic!("manage.py constance set {key}: {e}");
    }
}

/// A long-running `driver.py serve` (Django set up once): one JSON line per request.
struct Driver {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Driver {
    fn start(redis_url: &str) -> Driver {
        let mut child = django_command(redis_url, "driver.py", &["serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn driver.py serve");
        let stdin = child.stdin.take().expect("driver stdin");
        let stdout = child.stdout.take().expect("driver stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Driver {
            child,
            stdin,
            lines,
        }
    }

    /// One request; `Err` with constance's exception when it raised.
    fn call(&mut self, request: Value) -> Result<Value, String> {
        writeln!(self.stdin, "{request}").expect("write to driver.py");
        self.stdin.flush().expect("flush driver.py");
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("driver.py gave no answer to {request}: {e}"));
        let reply: Value = serde_json::from_str(&line).expect("driver.py answers JSON");
        if reply["ok"] == json!(true) {
            Ok(reply["result"].clone())
        } else {
            Err(reply["error"].as_str().unwrap_or("?").to_owned())
        }
    }

    fn must(&mut self, request: Value) -> Value {
        let what = request.to_string();
        self.call(request)
            .unwrap_or_else(|e| panic!("driver.py {what}: {e}"))
    }

    /// `config.KEY = EXPR` through constance's own API.
    fn set(&mut self, key: &str, expr: &str) {
        self.must(json!({"op": "set", "key": key, "expr": expr}));
    }

    /// The keys as constance reads them, without its default write-back (`get_values`).
    fn peek(&mut self, keys: &[&str]) -> Value {
        self.must(json!({"op": "peek", "keys": keys}))
    }

    /// The keys through `constance.config` (a missing key is written back with its default).
    fn get(&mut self, keys: &[&str]) -> Value {
        self.must(json!({"op": "get", "keys": keys}))
    }

    /// The bytes of constance's Redis key, `None` when it is absent.
    fn raw(&mut self, key: &str) -> Option<Vec<u8>> {
        let hex = self.must(json!({"op": "raw", "key": key}));
        hex.as_str().map(|h| hex::decode(h).expect("hex"))
    }

    /// What constance's codec writes for `expr`.
    fn dumps(&mut self, expr: &str) -> String {
        self.must(json!({"op": "dumps", "expr": expr}))
            .as_str()
            .expect("text")
            .to_owned()
    }

    /// `expr` as the driver's typed value (type, repr, json, aware).
    fn eval(&mut self, expr: &str) -> Value {
        self.must(json!({"op": "eval", "expr": expr}))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real admin (embedded ledger, relay, `--constance-mirror`) and one sidecar of `site`, as
/// child processes on one spawned Redis.
struct Migration {
    admin: ChildProcess,
    sidecar: ChildProcess,
    admin_base: String,
    sidecar_base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Migration {
    async fn start(redis: &RedisServer) -> Migration {
        Migration::start_with(redis, &[]).await
    }

    /// As `start`, with `extra` flags for the admin.
    async fn start_with(redis: &RedisServer, extra: &[&str]) -> Migration {
        let dir = tempfile::tempdir().expect("tempdir");
        let schema = project().join("schema");
        let schema = schema.to_str().expect("utf-8 path");
        let redis_url = redis.url();
        let data = dir.path().join("ledger");
        let admin_listen = format!("127.0.0.1:{}", free_port());
        let mut admin_args = vec![
            "admin",
            "--data-dir",
            data.to_str().expect("utf-8 path"),
            "--redis-url",
            &redis_url,
            "--admin-token",
            TOKEN,
            "--listen",
            &admin_listen,
            "--relay-interval",
            "0.2",
            "--schema-dir",
            schema,
            "--constance-mirror",
            PREFIX,
            "--constance-namespace",
            NS,
            "--constance-channel",
            CHANNEL,
        ];
        admin_args.extend_from_slice(extra);
        let admin = ChildProcess::spawn(&admin_args, &[]);
        let read_listen = format!("127.0.0.1:{}", free_port());
        let probe_listen = format!("127.0.0.1:{}", free_port());
        let snapshot = dir.path().join("snapshot.json");
        let sidecar = ChildProcess::spawn(
            &[
                "sidecar",
                "--schema-dir",
                schema,
                "--namespace",
                NS,
                "--redis-url",
                &redis_url,
                "--listen",
                &read_listen,
                "--probe-listen",
                &probe_listen,
                "--snapshot-path",
                snapshot.to_str().expect("utf-8 path"),
                "--resync-interval",
                "0.5",
            ],
            &[],
        );
        let m = Migration {
            admin,
            sidecar,
            admin_base: format!("http://{admin_listen}"),
            sidecar_base: format!("http://{read_listen}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            _dir: dir,
        };
        for (what, url) in [
            ("the admin", format!("{}/readyz", m.admin_base)),
            ("the sidecar", format!("http://{probe_listen}/readyz")),
        ] {
            let started = Instant::now();
            loop {
                if let Ok(r) = m.http.get(&url).send().await {
                    if r.status().is_success() {
                        break;
                    }
                }
                assert!(
                    started.elapsed() < SETTLE,
                    "{what} did not answer {url} within {SETTLE:?}\n{}",
                    m.logs()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        m
    }

    fn logs(&self) -> String {
        format!(
            "--- admin log ---\n{}\n--- sidecar log ---\n{}",
            self.admin.log(),
            self.sidecar.log()
        )
    }

    fn api(&self, path: &str) -> String {
        format!("{}/api/v1/namespaces/{NS}{path}", self.admin_base)
    }

    /// One changeset through the admin API; its version.
    async fn patch(&self, changes: Value) -> u64 {
        let resp = self
            .http
            .patch(self.api("/configs"))
            .bearer_auth(TOKEN)
            .json(&json!({ "changes": changes }))
            .send()
            .await
            .expect("admin answers");
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "PATCH {changes}: {body}\n{}", self.logs());
        body["version"].as_u64().expect("version")
    }

    async fn get_json(&self, url: &str) -> Option<Value> {
        let resp = self.http.get(url).bearer_auth(TOKEN).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    /// Every changeset, oldest first (all pages of `…/history`).
    async fn history(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut before: Option<u64> = None;
        loop {
            let mut url = self.api("/history?limit=1000");
            if let Some(b) = before {
                url.push_str(&format!("&before={b}"));
            }
            let page = self.get_json(&url).await.expect("history answers");
            all.extend(page["changesets"].as_array().expect("changesets").clone());
            match page["next"].as_u64() {
                Some(n) => before = Some(n),
                None => break,
            }
        }
        all.reverse();
        all
    }

    /// The sidecar's `values` (`None` while it does not answer).
    async fn sidecar_values(&self) -> Option<Value> {
        let doc = self
            .get_json(&format!("{}/v1/configs", self.sidecar_base))
            .await?;
        Some(doc["values"].clone())
    }

    /// The mirror's status (`GET /api/v1/namespaces/site/constance`).
    async fn mirror_status(&self) -> Option<Value> {
        self.get_json(&self.api("/constance")).await
    }
}

/// Whether an rtconfig value of type `ty` (as the sidecar serves it) is the value constance
/// holds (`py`: the driver's typed value). Durations, times and date-times compare as what they
/// mean (`"90m"` is `5400.0` seconds); a decimal compares as text, so its scale must match.
fn same_value(ty: &str, rt: &Value, py: &Value) -> bool {
    let py_json = &py["json"];
    match ty {
        "duration" => {
            let (Some(text), Some(secs)) = (rt.as_str(), py_json.as_f64()) else {
                return false;
            };
            humantime::parse_duration(text)
                .map(|d| (d.as_secs_f64() - secs).abs() < 1e-9)
                .unwrap_or(false)
        }
        "datetime" => {
            let (Some(text), Some(iso)) = (rt.as_str(), py_json.as_str()) else {
                return false;
            };
            let Ok(ours) = chrono::DateTime::parse_from_rfc3339(text) else {
                return false;
            };
            if py["aware"] == json!(true) {
                chrono::DateTime::parse_from_str(iso, "%Y-%m-%dT%H:%M:%S%.f%:z")
                    .map(|theirs| theirs == ours && theirs.offset() == ours.offset())
                    .unwrap_or(false)
            } else {
                // A naive datetime stands for UTC in rtconfig (rtconfig import-constance).
                chrono::NaiveDateTime::parse_from_str(iso, "%Y-%m-%dT%H:%M:%S%.f")
                    .map(|naive| naive.and_utc() == ours)
                    .unwrap_or(false)
            }
        }
        "time" => {
            let (Some(a), Some(b)) = (rt.as_str(), py_json.as_str()) else {
                return false;
            };
            let parse = |s: &str| chrono::NaiveTime::parse_from_str(s, "%H:%M:%S%.f").ok();
            let parse_hm = |s: &str| chrono::NaiveTime::parse_from_str(s, "%H:%M").ok();
            match (parse(a).or_else(|| parse_hm(a)), parse(b)) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            }
        }
        "float" => match (rt.as_f64(), py_json.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
        _ => rt == py_json,
    }
}

/// The rtconfig type of each key of tests/constance/schema/site.toml.
fn key_type(key: &str) -> &'static str {
    match key {
        "SITE_NAME" => "string",
        "MAINTENANCE_MODE" => "bool",
        "ITEMS_PER_PAGE" => "int",
        "POLL_RATIO" => "float",
        "PRICE" => "decimal",
        "LAUNCH_DATE" => "date",
        "OPENS_AT" => "time",
        "SALE_STARTS" | "SALE_ENDS" => "datetime",
        "SESSION_TTL" => "duration",
        "ALLOWED_HOSTS" | "FEATURE_LIMITS" => "json",
        other => panic!("{other} is not a key of tests/constance/schema/site.toml"),
    }
}

fn vectors() -> Value {
    let text = std::fs::read_to_string(project().join("codec_vectors.json"))
        .expect("tests/constance/codec_vectors.json");
    serde_json::from_str(&text).expect("codec_vectors.json is JSON")
}

/// The changes of one changeset as `key → new`.
fn changes_of(changeset: &Value) -> Vec<(String, Value)> {
    changeset["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| (c["key"].as_str().expect("key").to_owned(), c["new"].clone()))
        .collect()
}

// --- no mirror needed --------------------------------------------------------------------------

#[test]
fn codec_vectors_are_what_the_installed_constance_writes_and_reads() {
    // make_vectors.py --check regenerates the table with real constance and compares it with the
    // committed file byte for byte: the bytes, the values read back and the round-trip flags.
    let out = run_django("redis://127.0.0.1:1/0", "make_vectors.py", &["--check"]);
    assert!(out.is_ok(), "codec_vectors.json is stale: {out:?}");
    let v = vectors();
    assert_eq!(
        v["constance_version"],
        json!("4.4.0"),
        "the pinned constance"
    );
    let vectors = v["vectors"].as_array().expect("vectors");
    assert!(vectors.len() >= 50, "a table of every codec type");
    let mut types: Vec<&str> = vectors
        .iter()
        .map(|x| x["python_type"].as_str().expect("type"))
        .collect();
    types.sort_unstable();
    types.dedup();
    for ty in [
        "bool",
        "int",
        "float",
        "Decimal",
        "str",
        "date",
        "time",
        "datetime",
        "timedelta",
        "list",
        "dict",
        "NoneType",
    ] {
        assert!(types.contains(&ty), "no vector of type {ty}");
    }
    for x in vectors {
        assert_eq!(x["roundtrip"], json!(true), "constance round-trips {x}");
        let bytes = x["bytes"].as_str().expect("bytes");
        assert!(bytes.is_ascii(), "constance writes ASCII: {x}");
        assert!(
            bytes.starts_with("{\"__type__\": \"") && bytes.contains("\", \"__value__\": "),
            "the wrapper with Python's default separators: {bytes}"
        );
    }
    let decode = v["decode"].as_array().expect("decode");
    let refused: Vec<&str> = decode
        .iter()
        .filter(|d| d.get("error").is_some())
        .map(|d| d["name"].as_str().expect("name"))
        .collect();
    for name in [
        "unknown_discriminator",
        "type_without_value",
        "extra_member",
        "not_json",
        "pickle_3_x",
    ] {
        assert!(refused.contains(&name), "constance refuses {name}");
    }
}

#[test]
fn constance_reads_each_vector_from_redis_as_its_python_value() {
    // Every vector of a type a project key has is stored raw under that key; constance's Redis
    // backend must read it back as the vector's value (type and repr).
    let redis = RedisServer::start();
    let v = vectors();
    let project = v["project"].as_object().expect("project");
    let mut driver = Driver::start(&redis.url());
    let mut checked = 0;
    for x in v["vectors"].as_array().expect("vectors") {
        let ty = x["python_type"].as_str().expect("type");
        let Some((key, _)) = project
            .iter()
            .find(|(_, p)| p["python_type"].as_str() == Some(ty))
        else {
            continue;
        };
        let bytes = x["bytes"].as_str().expect("bytes");
        redis.cmd(&["SET", &format!("{PREFIX}{key}"), bytes]);
        let read = driver.peek(&[key]);
        assert_eq!(read[key]["type"], x["decoded_type"], "{key} from {bytes}");
        assert_eq!(read[key]["repr"], x["decoded_repr"], "{key} from {bytes}");
        checked += 1;
    }
    assert!(
        checked >= 45,
        "only {checked} vectors had a key of their type"
    );
}

// --- with the mirror ---------------------------------------------------------------------------

/// (key, value written through rtconfig, the Python value constance must read).
const RTCONFIG_WRITES: &[(&str, &str, &str)] = &[
    (
        "SITE_NAME",
        r#""Caf\u00e9 \u2603 \"quoted\" \\ \ud83d\ude00""#,
        r#"'Caf\u00e9 \u2603 "quoted" \\ \U0001F600'"#,
    ),
    ("MAINTENANCE_MODE", "true", "True"),
    ("ITEMS_PER_PAGE", "-7", "-7"),
    ("POLL_RATIO", "1e-05", "1e-05"),
    ("PRICE", r#""3.50""#, "Decimal('3.50')"),
    ("LAUNCH_DATE", r#""2025-02-28""#, "date(2025, 2, 28)"),
    ("OPENS_AT", r#""08:15:30.250""#, "time(8, 15, 30, 250000)"),
    (
        "SALE_ENDS",
        r#""2025-07-01T12:00:00+05:30""#,
        "datetime(2025, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))",
    ),
    (
        "SALE_STARTS",
        r#""2025-03-04T05:06:07Z""#,
        "datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)",
    ),
    ("SESSION_TTL", r#""1h30m""#, "timedelta(seconds=5400)"),
    (
        "ALLOWED_HOSTS",
        r#"["x.example", "y.example"]"#,
        "['x.example', 'y.example']",
    ),
    (
        "FEATURE_LIMITS",
        r#"{"uploads": 20, "beta": true, "tiers": ["pro"], "ratio": 0.5}"#,
        "{'uploads': 20, 'beta': True, 'tiers': ['pro'], 'ratio': 0.5}",
    ),
];

#[tokio::test]
async fn values_written_through_rtconfig_are_read_by_constance_with_their_python_types() {
    let redis = RedisServer::start();
    let m = Migration::start(&redis).await;
    let mut dj = Driver::start(&redis.url());

    let mut changes = serde_json::Map::new();
    for (key, rt, _) in RTCONFIG_WRITES {
        changes.insert((*key).into(), serde_json::from_str(rt).expect("JSON value"));
    }
    m.patch(Value::Object(changes)).await;

    let keys: Vec<&str> = RTCONFIG_WRITES.iter().map(|(k, _, _)| *k).collect();
    for (key, _, expr) in RTCONFIG_WRITES {
        // Byte for byte what constance itself writes for that Python value.
        let want = dj.dumps(expr);
        let started = Instant::now();
        loop {
            if dj.raw(key).as_deref() == Some(want.as_bytes()) {
                break;
            }
            assert!(
                started.elapsed() < SETTLE,
                "{PREFIX}{key} holds {:?}, not constance's {want}\n{}",
                dj.raw(key)
                    .map(|b| String::from_utf8_lossy(&b).into_owned()),
                m.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let read = dj.get(&keys);
    for (key, _, expr) in RTCONFIG_WRITES {
        let want = dj.eval(expr);
        assert_eq!(read[key]["type"], want["type"], "{key}: {}", read[key]);
        assert_eq!(read[key]["repr"], want["repr"], "{key}: {}", read[key]);
        assert_eq!(read[key].get("aware"), want.get("aware"), "{key}");
    }

    // A reset deletes the key: constance reads its default (Decimal('1.10'), scale kept).
    m.patch(json!({"PRICE": null})).await;
    let started = Instant::now();
    while dj.raw("PRICE").is_some() {
        assert!(
            started.elapsed() < SETTLE,
            "the reset did not delete {PREFIX}PRICE"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let price = dj.peek(&["PRICE"]);
    assert_eq!(price["PRICE"]["repr"], json!("Decimal('1.10')"));

    // A Django read of the reset key writes the default back (constance's own behaviour). That
    // is not a change: the ledger's value in effect is that default. A save made after it is the
    // sync point — once it is adopted, the write-back before it has been seen too.
    assert_eq!(
        dj.get(&["PRICE"])["PRICE"]["repr"],
        json!("Decimal('1.10')")
    );
    assert!(
        dj.raw("PRICE").is_some(),
        "constance wrote the default back"
    );
    dj.set("ITEMS_PER_PAGE", "8");
    eventually(
        SETTLE,
        "the save after the write-back is adopted",
        || async {
            let v = m.sidecar_values().await?;
            (v["ITEMS_PER_PAGE"] == json!(8)).then_some(())
        },
    )
    .await;

    // What rtconfig mirrored is never adopted back, nor is the default constance wrote back:
    // the two changesets above and the one save.
    let history = m.history().await;
    assert_eq!(
        history.len(),
        3,
        "no echo, no adopted default: {history:#?}"
    );
    assert!(
        history[..2]
            .iter()
            .all(|c| c["actor"] != json!(DJANGO_ACTOR)),
        "{history:#?}"
    );
    assert_eq!(history[2]["actor"], json!(DJANGO_ACTOR));
    assert_eq!(
        changes_of(&history[2]),
        vec![("ITEMS_PER_PAGE".to_owned(), json!(8))]
    );
}

#[tokio::test]
async fn values_saved_through_constance_reach_the_sidecar_within_2s_with_actor_django_constance() {
    let redis = RedisServer::start();
    let m = Migration::start(&redis).await;
    let url = redis.url();
    let mut dj = Driver::start(&url);

    // (key, how it is saved, the Python value it must arrive as)
    enum Save {
        Attr(&'static str),
        Manage(&'static [&'static str]),
    }
    let saves: &[(&str, Save, &str)] = &[
        ("PRICE", Save::Attr("Decimal('9.990')"), "Decimal('9.990')"),
        (
            "SESSION_TTL",
            Save::Attr("timedelta(hours=2, milliseconds=500)"),
            "timedelta(hours=2, milliseconds=500)",
        ),
        (
            "FEATURE_LIMITS",
            Save::Attr("{'uploads': 99, 'nested': {'a': [1, 2]}}"),
            "{'uploads': 99, 'nested': {'a': [1, 2]}}",
        ),
        (
            "SALE_ENDS",
            Save::Attr("datetime(2026, 1, 1, 9, 30, tzinfo=timezone(timedelta(hours=-5)))"),
            "datetime(2026, 1, 1, 9, 30, tzinfo=timezone(timedelta(hours=-5)))",
        ),
        (
            "SALE_STARTS",
            Save::Attr("datetime(2026, 1, 1, 9, 30)"),
            "datetime(2026, 1, 1, 9, 30)",
        ),
        ("OPENS_AT", Save::Attr("time(7, 45)"), "time(7, 45)"),
        ("MAINTENANCE_MODE", Save::Attr("True"), "True"),
        ("ITEMS_PER_PAGE", Save::Manage(&["77"]), "77"),
        (
            "SITE_NAME",
            Save::Manage(&["Acme via manage.py \u{e9}"]),
            "'Acme via manage.py \\u00e9'",
        ),
        (
            "SALE_ENDS",
            Save::Manage(&["2026-05-06", "07:08:09"]),
            "datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)",
        ),
        (
            "LAUNCH_DATE",
            Save::Manage(&["2026-12-24"]),
            "date(2026, 12, 24)",
        ),
        (
            "ALLOWED_HOSTS",
            Save::Manage(&[r#"["m.example"]"#]),
            "['m.example']",
        ),
        ("PRICE", Save::Manage(&["4.20"]), "Decimal('4.20')"),
    ];

    let mut took = Vec::new();
    for (key, save, expr) in saves {
        let want = dj.eval(expr);
        match save {
            Save::Attr(e) => dj.set(key, e),
            Save::Manage(values) => manage_set(&url, key, values),
        }
        let saved = Instant::now();
        let ty = key_type(key);
        eventually(
            SETTLE,
            &format!("the sidecar serves {key} = {}", want["repr"]),
            || async {
                let values = m.sidecar_values().await?;
                same_value(ty, &values[*key], &want).then_some(())
            },
        )
        .await;
        let elapsed = saved.elapsed();
        assert!(
            elapsed <= ADOPTION_BOUND,
            "{key} took {elapsed:?} to reach the sidecar (bound {ADOPTION_BOUND:?})\n{}",
            m.logs()
        );
        took.push(elapsed);
    }
    println!(
        "constance save → sidecar: {}",
        crate::stack::percentiles(took)
    );

    // History: one adopted changeset per save, in the order made, nothing else.
    let history = m.history().await;
    assert_eq!(
        history.len(),
        saves.len(),
        "one changeset per save: {history:#?}"
    );
    for (changeset, (key, _, expr)) in history.iter().zip(saves) {
        assert_eq!(changeset["actor"], json!(DJANGO_ACTOR), "{changeset}");
        assert_eq!(changeset["comment"], json!(ADOPTED), "{changeset}");
        let changes = changes_of(changeset);
        assert_eq!(changes.len(), 1, "{changeset}");
        assert_eq!(changes[0].0, *key);
        let want = dj.eval(expr);
        assert!(
            same_value(key_type(key), &changes[0].1, &want),
            "{key}: history shows {} for {}",
            changes[0].1,
            want["repr"]
        );
    }
}

#[tokio::test]
async fn a_redis_restart_during_the_migration_loses_neither_sides_values() {
    let redis = RedisServer::start();
    let m = Migration::start(&redis).await;
    let url = redis.url();
    let mut dj = Driver::start(&url);

    m.patch(json!({"SITE_NAME": "set in rtconfig"})).await;
    dj.set("PRICE", "Decimal('7.25')");
    eventually(SETTLE, "both values on both sides", || async {
        let v = m.sidecar_values().await?;
        (v["PRICE"] == json!("7.25") && v["SITE_NAME"] == json!("set in rtconfig")).then_some(())
    })
    .await;
    let both = |dj: &mut Driver| {
        let r = dj.peek(&["SITE_NAME", "PRICE", "ITEMS_PER_PAGE"]);
        (
            r["SITE_NAME"]["json"].clone(),
            r["PRICE"]["repr"].clone(),
            r["ITEMS_PER_PAGE"]["json"].clone(),
        )
    };
    assert_eq!(both(&mut dj).0, json!("set in rtconfig"));

    // Redis goes away. rtconfig still takes writes (the ledger has them); a save in the Django
    // admin fails visibly (constance raises), so nothing is silently lost on that side either.
    redis.kill();
    m.patch(json!({"ITEMS_PER_PAGE": 33})).await;
    let refused = dj.call(json!({"op": "set", "key": "SITE_NAME", "expr": "'lost?'"}));
    assert!(refused.is_err(), "constance cannot save without Redis");

    // Redis comes back empty (no persistence: the worst case). Django workers keep reading
    // through constance.config meanwhile — which writes each missing key's default back.
    redis.restart();
    let _ = dj.call(json!({"op": "get"}));
    eventually(SETTLE, "constance holds both sides' values again", || {
        let got = both(&mut dj);
        async move {
            (got == (
                json!("set in rtconfig"),
                json!("Decimal('7.25')"),
                json!(33),
            ))
                .then_some(())
        }
    })
    .await;
    eventually(SETTLE, "the sidecar serves both sides' values", || async {
        let v = m.sidecar_values().await?;
        (v["PRICE"] == json!("7.25")
            && v["SITE_NAME"] == json!("set in rtconfig")
            && v["ITEMS_PER_PAGE"] == json!(33))
        .then_some(())
    })
    .await;
    // And the defaults constance wrote back were not adopted over the ledger's values.
    let history = m.history().await;
    let last: std::collections::BTreeMap<String, Value> =
        history.iter().flat_map(changes_of).collect();
    assert_eq!(last.get("PRICE"), Some(&json!("7.25")), "{history:#?}");
    assert_eq!(last.get("SITE_NAME"), Some(&json!("set in rtconfig")));
    assert_eq!(last.get("ITEMS_PER_PAGE"), Some(&json!(33)));
    let _ = m.mirror_status().await;
}

#[tokio::test]
async fn a_thousand_alternating_writes_lose_and_reorder_nothing() {
    // Keyspace notifications on (the mirror's fast path) and a short compare interval (the
    // safety net), so a thousand round trips fit the test budget either way.
    let redis = RedisServer::start_with_args(&["--notify-keyspace-events", "KA"]);
    let m = Migration::start_with(&redis, &["--constance-poll-interval", "0.05"]).await;
    let mut dj = Driver::start(&redis.url());
    let n: i64 = 1000;
    let mut to_constance = Vec::new();
    let mut to_sidecar = Vec::new();
    let started = Instant::now();
    for i in 1..=n {
        if i % 2 == 1 {
            // rtconfig writes i; the next Django write comes after constance has read it.
            let t = Instant::now();
            m.patch(json!({ "ITEMS_PER_PAGE": i })).await;
            let want = format!("{{\"__type__\": \"default\", \"__value__\": {i}}}");
            while dj.raw("ITEMS_PER_PAGE").as_deref() != Some(want.as_bytes()) {
                assert!(
                    t.elapsed() < SETTLE,
                    "write {i} never reached constance\n{}",
                    m.logs()
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            to_constance.push(t.elapsed());
        } else {
            // Django writes i; the next rtconfig write comes after the sidecar serves it.
            let t = Instant::now();
            dj.set("ITEMS_PER_PAGE", &i.to_string());
            loop {
                if let Some(v) = m.sidecar_values().await {
                    if v["ITEMS_PER_PAGE"] == json!(i) {
                        break;
                    }
                }
                assert!(
                    t.elapsed() < SETTLE,
                    "write {i} never reached the sidecar\n{}",
                    m.logs()
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            to_sidecar.push(t.elapsed());
        }
    }
    let elapsed = started.elapsed();
    println!("{n} alternating writes in {elapsed:?}");
    println!(
        "rtconfig → constance: {}",
        crate::stack::percentiles(to_constance)
    );
    println!(
        "constance → sidecar: {}",
        crate::stack::percentiles(to_sidecar)
    );

    let final_read = dj.peek(&["ITEMS_PER_PAGE"]);
    assert_eq!(final_read["ITEMS_PER_PAGE"]["json"], json!(n));
    assert_eq!(
        m.sidecar_values().await.expect("sidecar")["ITEMS_PER_PAGE"],
        json!(n)
    );

    // History: exactly 1..=n in order, rtconfig and Django alternating.
    let history = m.history().await;
    let seen: Vec<(i64, bool)> = history
        .iter()
        .map(|c| {
            let changes = changes_of(c);
            assert_eq!(changes.len(), 1, "{c}");
            assert_eq!(changes[0].0, "ITEMS_PER_PAGE", "{c}");
            (
                changes[0].1.as_i64().expect("int"),
                c["actor"] == json!(DJANGO_ACTOR),
            )
        })
        .collect();
    let want: Vec<(i64, bool)> = (1..=n).map(|i| (i, i % 2 == 0)).collect();
    assert_eq!(seen.len(), want.len(), "one changeset per write");
    let first_bad = seen.iter().zip(&want).position(|(a, b)| a != b);
    assert_eq!(first_bad, None, "history out of order at {first_bad:?}");
}

#[test]
fn same_value_compares_what_the_values_mean() {
    let py = |json: Value, aware: Option<bool>| {
        let mut v = json!({ "json": json });
        if let Some(a) = aware {
            v["aware"] = json!(a);
        }
        v
    };
    let cases: &[(&str, Value, Value, bool)] = &[
        ("duration", json!("90m"), py(json!(5400.0), None), true),
        ("duration", json!("5400s"), py(json!(5400.0), None), true),
        (
            "duration",
            json!("7200500ms"),
            py(json!(7200.5), None),
            true,
        ),
        ("duration", json!("90s"), py(json!(5400.0), None), false),
        (
            "datetime",
            json!("2026-01-01T09:30:00-05:00"),
            py(json!("2026-01-01T09:30:00-05:00"), Some(true)),
            true,
        ),
        (
            "datetime",
            json!("2026-01-01T14:30:00Z"),
            py(json!("2026-01-01T09:30:00-05:00"), Some(true)),
            false, // same instant, offset lost
        ),
        (
            "datetime",
            json!("2026-01-01T09:30:00Z"),
            py(json!("2026-01-01T09:30:00"), Some(false)),
            true,
        ),
        ("time", json!("07:45"), py(json!("07:45:00"), None), true),
        (
            "time",
            json!("07:45:00.5"),
            py(json!("07:45:00.500000"), None),
            true,
        ),
        ("decimal", json!("9.990"), py(json!("9.990"), None), true),
        ("decimal", json!("9.99"), py(json!("9.990"), None), false),
        ("float", json!(1e-05), py(json!(0.00001), None), true),
        ("json", json!({"a": [1]}), py(json!({"a": [1]}), None), true),
    ];
    for (ty, rt, py, want) in cases {
        assert_eq!(same_value(ty, rt, py), *want, "{ty} {rt} vs {py}");
    }
}
