//! A whole deployment in one test: a spawned `redis-server`, the real admin (embedded ledger +
//! relay) and N real sidecars, each through the production composition roots, plus a reader
//! that checks every answer the sidecars give (etcd-style validators: no failed read once
//! ready, versions never go back, every value seen at version V equals the ledger's state at V).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtconfig::app::{self, AdminParts, AdminSettings, Running, SidecarParts, SidecarSettings};
use rtconfig::ledger::Ledger;
use rtconfig::schema::SchemaSet;
use rtconfig::snapshot::{Position, Snapshot, Source};
use serde_json::{json, Value};

use crate::harness::eventually;

pub const TOKEN: &str = "test-token-0123456789";
/// Short intervals so fault windows of seconds suffice.
pub const RESYNC: Duration = Duration::from_millis(500);

pub fn schema_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .pool_max_idle_per_host(4)
        .build()
        .expect("http client")
}

/// What one sidecar answered to `GET /v1/configs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub epoch: u64,
    pub version: u64,
    pub stale: bool,
    pub source: String,
    pub values: BTreeMap<String, Value>,
}

pub async fn read_doc(
    client: &reqwest::Client,
    sidecar: &Running<SidecarParts>,
) -> Result<Doc, String> {
    read_doc_at(client, sidecar.read_addr).await
}

/// `GET /v1/configs` from the read API at `addr` (a sidecar of a `Stack` or a spawned binary).
pub async fn read_doc_at(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
) -> Result<Doc, String> {
    let resp = client
        .get(format!("http://{addr}/v1/configs"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status() != 200 {
        return Err(format!("status {}", resp.status()));
    }
    let v: Value = resp.json().await.map_err(|e| e.to_string())?;
    Ok(Doc {
        epoch: v["epoch"].as_u64().ok_or("epoch")?,
        version: v["version"].as_u64().ok_or("version")?,
        stale: v["stale"].as_bool().ok_or("stale")?,
        source: v["source"].as_str().ok_or("source")?.to_owned(),
        values: serde_json::from_value(v["values"].clone()).map_err(|e| e.to_string())?,
    })
}

pub struct Stack {
    pub admin: Option<Running<AdminParts>>,
    pub admin_settings: AdminSettings,
    pub sidecars: Vec<Running<SidecarParts>>,
    pub client: reqwest::Client,
    /// Holds the ledger directory for the life of the stack.
    pub _admin_dir: tempfile::TempDir,
}

impl Stack {
    /// An admin on `redis_url` (its relay) and one sidecar per entry of `sidecar_urls`.
    pub async fn start(redis_url: &str, sidecar_urls: &[String]) -> Stack {
        Stack::start_with(redis_url, sidecar_urls, |_| {}).await
    }

    /// As `start`, with the admin's settings adjusted first.
    pub async fn start_with(
        redis_url: &str,
        sidecar_urls: &[String],
        adjust: impl FnOnce(&mut AdminSettings),
    ) -> Stack {
        let admin_dir = tempfile::tempdir().expect("tempdir");
        let mut admin_settings =
            AdminSettings::for_tests(schema_dir(), admin_dir.path().join("ledger"), redis_url);
        admin_settings.admin_token = Some(TOKEN.into());
        adjust(&mut admin_settings);
        let admin = app::start_admin(admin_settings.clone())
            .await
            .expect("admin starts");
        let mut stack = Stack {
            admin: Some(admin),
            admin_settings,
            sidecars: Vec::new(),
            client: http(),
            _admin_dir: admin_dir,
        };
        for url in sidecar_urls {
            let s = SidecarSettings {
                resync_interval: RESYNC,
                ..SidecarSettings::for_tests(schema_dir(), url)
            };
            stack.add_sidecar(s).await;
        }
        stack
    }

    pub async fn add_sidecar(&mut self, settings: SidecarSettings) -> usize {
        let sidecar = app::start_sidecar(settings).await.expect("sidecar starts");
        self.sidecars.push(sidecar);
        self.sidecars.len() - 1
    }

    pub fn admin(&self) -> &Running<AdminParts> {
        self.admin.as_ref().expect("admin running")
    }

    pub fn ledger(&self) -> Arc<dyn Ledger> {
        self.admin().ledger.clone()
    }

    /// PATCHes through the admin API; returns the new version.
    pub async fn write(&self, changes: Value) -> u64 {
        let url = format!(
            "http://{}/api/v1/namespaces/demo/configs",
            self.admin().addr
        );
        let resp = self
            .client
            .patch(&url)
            .bearer_auth(TOKEN)
            .json(&json!({ "changes": changes }))
            .send()
            .await
            .expect("admin answers");
        assert_eq!(resp.status(), 200, "write accepted");
        let body: Value = resp.json().await.expect("json");
        body["version"].as_u64().expect("version")
    }

    /// The admin dies right after a commit: stops it, then commits `SITE_NAME = value` straight
    /// to its embedded ledger (durable, never relayed). Returns the committed version.
    pub async fn stop_admin_then_commit_unrelayed(&mut self, value: &str, actor: &str) -> u64 {
        self.admin.take().expect("admin").stop().await;
        let app::AdminLedger::Embedded { data_dir } = &self.admin_settings.ledger else {
            panic!("the stack runs the embedded ledger");
        };
        let ledger =
            rtconfig::ledger::embedded::EmbeddedLedger::open(data_dir, "default").expect("ledger");
        ledger
            .commit(rtconfig::ledger::CommitRequest {
                namespace: "demo".into(),
                changes: vec![("SITE_NAME".into(), Some(json!(value)))],
                meta: rtconfig::ledger::conformance::meta(actor, ""),
                ..Default::default()
            })
            .await
            .expect("commit")
            .state
            .version
    }

    /// Write number `i`: always changes SITE_NAME, sometimes more keys.
    pub async fn write_n(&self, i: u64) -> u64 {
        let mut changes = json!({ "SITE_NAME": format!("write {i}") });
        if i.is_multiple_of(3) {
            changes["ITEMS_PER_PAGE"] = json!(i % 100 + 1);
        }
        if i.is_multiple_of(7) {
            changes["MAINTENANCE_MODE"] = json!(i.is_multiple_of(2));
        }
        self.write(changes).await
    }

    /// Waits until every sidecar serves at least `version`, in sync (not stale).
    pub async fn converge(&self, version: u64, deadline: Duration) -> Duration {
        let started = Instant::now();
        for (i, s) in self.sidecars.iter().enumerate() {
            eventually(
                deadline.saturating_sub(started.elapsed()),
                &format!("sidecar {i} serves version {version} in sync"),
                || async {
                    let d = read_doc(&self.client, s).await.ok()?;
                    (d.version >= version && !d.stale && d.source == "redis").then_some(())
                },
            )
            .await;
        }
        started.elapsed()
    }

    pub async fn stop(mut self) {
        for s in self.sidecars.drain(..) {
            s.stop().await;
        }
        if let Some(a) = self.admin.take() {
            a.stop().await;
        }
    }
}

/// The values a sidecar must serve at each version, computed from the ledger.
pub struct Expected {
    schema: Arc<rtconfig::schema::Schema>,
    ledger: Arc<dyn Ledger>,
    cache: HashMap<u64, BTreeMap<String, Value>>,
}

impl Expected {
    pub fn new(ledger: Arc<dyn Ledger>) -> Expected {
        let set = SchemaSet::load_dir(&schema_dir()).expect("schema");
        Expected {
            schema: set.get("demo").expect("demo").clone(),
            ledger,
            cache: HashMap::new(),
        }
    }

    pub async fn at(&mut self, version: u64) -> BTreeMap<String, Value> {
        if let Some(v) = self.cache.get(&version) {
            return v.clone();
        }
        let stored = self
            .ledger
            .state_at("demo", version)
            .await
            .expect("ledger has the version");
        let snap = Snapshot::build(
            &self.schema,
            Position::new(1, version),
            Source::Local,
            stored,
        );
        let values: BTreeMap<String, Value> =
            serde_json::from_slice(&snap.values_json()).expect("values json");
        self.cache.insert(version, values.clone());
        values
    }
}

/// Reads every sidecar in a loop and records what it saw.
pub struct Reader {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<ReadLog>,
}

#[derive(Debug, Default)]
pub struct ReadLog {
    pub reads: u64,
    pub failures: Vec<String>,
    /// (sidecar, doc) of every distinct answer.
    pub seen: Vec<(usize, Doc)>,
    pub first_stale_at: Option<Instant>,
}

impl Reader {
    pub fn start(addrs: Vec<std::net::SocketAddr>) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let client = http();
            let mut log = ReadLog::default();
            let mut last: Vec<Option<Doc>> = vec![None; addrs.len()];
            while !flag.load(Ordering::Relaxed) {
                for (i, addr) in addrs.iter().enumerate() {
                    let url = format!("http://{addr}/v1/configs");
                    log.reads += 1;
                    let doc = async {
                        let resp = client.get(&url).send().await.map_err(|e| e.to_string())?;
                        if !resp.status().is_success() {
                            return Err(format!("status {}", resp.status()));
                        }
                        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
                        Ok::<Doc, String>(Doc {
                            epoch: v["epoch"].as_u64().unwrap_or(0),
                            version: v["version"].as_u64().unwrap_or(0),
                            stale: v["stale"].as_bool().unwrap_or(false),
                            source: v["source"].as_str().unwrap_or("").to_owned(),
                            values: serde_json::from_value(v["values"].clone()).unwrap_or_default(),
                        })
                    }
                    .await;
                    match doc {
                        Ok(d) => {
                            if d.stale && log.first_stale_at.is_none() {
                                log.first_stale_at = Some(Instant::now());
                            }
                            if last[i].as_ref() != Some(&d) {
                                log.seen.push((i, d.clone()));
                                last[i] = Some(d);
                            }
                        }
                        Err(e) => log.failures.push(format!("sidecar {i}: {e}")),
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            log
        });
        Reader { stop, task }
    }

    pub async fn finish(self) -> ReadLog {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("reader task")
    }
}

impl ReadLog {
    /// The promises: no failed read, versions never go back per sidecar, every value seen at a
    /// version is the ledger's value at that version (no torn or partial snapshot).
    pub async fn check(&self, expected: &mut Expected) {
        assert!(
            self.failures.is_empty(),
            "{} failed reads of {}: {:?}",
            self.failures.len(),
            self.reads,
            &self.failures[..self.failures.len().min(5)]
        );
        let mut highest: HashMap<usize, (u64, u64)> = HashMap::new();
        for (i, d) in &self.seen {
            if d.source == "defaults" {
                continue;
            }
            let prev = highest.entry(*i).or_insert((d.epoch, d.version));
            assert!(
                (d.epoch, d.version) >= *prev,
                "sidecar {i} went back from {prev:?} to {:?}",
                (d.epoch, d.version)
            );
            *prev = (d.epoch, d.version);
            let want = expected.at(d.version).await;
            assert_eq!(
                d.values, want,
                "sidecar {i} served values at version {} that differ from the ledger's",
                d.version
            );
        }
        println!(
            "reads: {}, distinct answers: {}, failures: 0",
            self.reads,
            self.seen.len()
        );
    }
}

/// Summary statistics of durations, for the measured figures the tests print.
pub fn percentiles(mut xs: Vec<Duration>) -> String {
    if xs.is_empty() {
        return "n=0".into();
    }
    xs.sort();
    let p = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
    format!(
        "n={} p50={:?} p99={:?} max={:?}",
        xs.len(),
        p(0.5),
        p(0.99),
        xs[xs.len() - 1]
    )
}
