//! Propagation and scale of the Redis distribution (issue 3, item 6). The figures are recorded in
//! `docs/PERFORMANCE.md` under "Propagation and scale (Redis)".
//!
//! Everything is the real code, nothing is mocked: a `redis-server` spawned on a free loopback port
//! (never 6379, through the integration tests' harness), the real admin (`app::start_admin`: the
//! embedded ledger in a temp dir and the relay) on its own one-thread runtime, as if it were
//! another process, and sidecar sync loops started with `rtconfig::sync::start`, each with its own
//! `SnapshotStore`. A change is *visible* in a loop when its store publishes a snapshot at the
//! committed version (the snapshot's `built_at`, taken just before the swap; an observer task
//! per store, woken by its `subscribe()` watch channel, records it, and how late it woke is
//! reported apart), so no HTTP polling noise; one section compares with a real sidecar read
//! through an HTTP long-poll. The committing client runs on its own runtime, like the admin, so
//! its "ack" is stamped when the answer is in, not when the loops' runtime gets to it.
//!
//! Sections (a positional argument keeps the sections whose name contains it, like libtest):
//! - `propagation::latency` — commit → visible p50/p99/max with 1, 10 and 100 sync loops;
//! - `propagation::http` — one `start_sidecar` read through `GET /v1/configs?index=…&wait=30s`;
//! - `propagation::swarm` — ≥ 1,000 loops: cold start, fan-out of one change, the reconnect herd
//!   after Redis restarts empty, and steady-state Redis cost per sidecar (demo schema, 8 keys);
//! - `propagation::keys` — cold start, fan-out and steady-state cost with a 1,000-key schema.
//!
//! How it is run: `cargo test --all-targets` runs this binary with no arguments and `cargo bench`
//! passes `--bench`; both get the quick profile (small counts; seconds, even in a debug build).
//! The recorded figures come from the full profile:
//!
//! ```text
//! cargo bench --bench propagation -- --full
//! ```
//!
//! Overrides: `--sizes 1,10,100`, `--commits N`, `--pace-ms N`, `--swarm N`, `--fanout N`,
//! `--outages-ms 1000,3000,7000`, `--idle-secs N`, `--resync-ms N`, `--keys N`. Other `-…` flags (libtest's,
//! passed on by `cargo test -- …`) are ignored. `RUST_LOG=…` turns on the crate's logs.
//!
//! Each sync loop holds two Redis connections, so the swarm needs about 2 × N file descriptors
//! here and in Redis (started with `--maxclients 10000`); the soft `RLIMIT_NOFILE` is checked at
//! the start and the run stops with a clear message when it is too low (`ulimit -n 20000`).

#[path = "../tests/it/harness/mod.rs"]
mod harness;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use parking_lot::Mutex;
use rtconfig::app::{self, AdminParts, AdminSettings, Running, SidecarSettings};
use rtconfig::metrics::{Exposition, RelayMetrics, SnapshotMetrics, SyncMetrics};
use rtconfig::schema::{Schema, SchemaSet};
use rtconfig::shutdown::Shutdown;
use rtconfig::snapshot::{Snapshot, SnapshotStore};
use rtconfig::sync::{self, SyncSettings, SyncStatus};
use serde_json::{json, Value};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use harness::redis::RedisServer;

const TOKEN: &str = "bench-admin-token-0123456789";
const NS: &str = "demo";
const CLUSTER: &str = "default";
/// The production default of `--relay-interval`.
const RELAY_INTERVAL: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Opts {
    full: bool,
    filters: Vec<String>,
    /// Sync loops in the latency section.
    sizes: Vec<usize>,
    commits: usize,
    pace: Duration,
    swarm: usize,
    fanout: usize,
    outages: Vec<Duration>,
    idle: Duration,
    resync: Duration,
    many_keys: usize,
    /// Latency section: start the loops spread over one resync interval.
    spread: bool,
}

impl Opts {
    fn quick() -> Opts {
        Opts {
            full: false,
            filters: Vec::new(),
            sizes: vec![1, 10],
            commits: 20,
            pace: Duration::from_millis(5),
            swarm: 50,
            fanout: 3,
            outages: vec![Duration::from_millis(500)],
            idle: Duration::from_secs(2),
            resync: Duration::from_millis(500),
            many_keys: 100,
            spread: true,
        }
    }

    fn full() -> Opts {
        Opts {
            full: true,
            filters: Vec::new(),
            sizes: vec![1, 10, 100],
            commits: 200,
            pace: Duration::from_millis(5),
            swarm: 1000,
            fanout: 20,
            outages: vec![
                Duration::from_secs(1),
                Duration::from_secs(3),
                Duration::from_secs(7),
            ],
            idle: Duration::from_secs(10),
            resync: Duration::from_secs(1),
            many_keys: 1000,
            spread: true,
        }
    }

    fn parse(args: Vec<String>) -> Result<Opts> {
        let mut o = if args.iter().any(|a| a == "--full") {
            Opts::full()
        } else {
            Opts::quick()
        };
        let mut it = args.into_iter();
        let value = |name: &str, it: &mut std::vec::IntoIter<String>| -> Result<u64> {
            it.next()
                .ok_or_else(|| anyhow!("{name} needs a value"))?
                .parse::<u64>()
                .with_context(|| format!("{name} needs a number"))
        };
        while let Some(a) = it.next() {
            match a.as_str() {
                "--full" | "--quick" | "--bench" => {}
                "--no-spread" => o.spread = false,
                "--sizes" => {
                    let list = it.next().ok_or_else(|| anyhow!("--sizes needs a value"))?;
                    o.sizes = list
                        .split(',')
                        .map(|s| s.trim().parse::<usize>())
                        .collect::<Result<_, _>>()
                        .context("--sizes needs numbers like 1,10,100")?;
                }
                "--commits" => o.commits = value(&a, &mut it)? as usize,
                "--pace-ms" => o.pace = Duration::from_millis(value(&a, &mut it)?),
                "--swarm" => o.swarm = value(&a, &mut it)? as usize,
                "--fanout" => o.fanout = value(&a, &mut it)? as usize,
                "--outages-ms" => {
                    let list = it
                        .next()
                        .ok_or_else(|| anyhow!("--outages-ms needs a value"))?;
                    o.outages = list
                        .split(',')
                        .map(|s| s.trim().parse::<u64>().map(Duration::from_millis))
                        .collect::<Result<_, _>>()
                        .context("--outages-ms needs numbers like 1000,3000")?;
                }
                "--idle-secs" => o.idle = Duration::from_secs(value(&a, &mut it)?),
                "--resync-ms" => o.resync = Duration::from_millis(value(&a, &mut it)?),
                "--keys" => o.many_keys = value(&a, &mut it)? as usize,
                flag if flag.starts_with('-') => {}
                filter => o.filters.push(filter.to_owned()),
            }
        }
        if o.commits == 0 || o.swarm == 0 || o.fanout == 0 || o.many_keys == 0 {
            bail!("--commits, --swarm, --fanout and --keys must be at least 1");
        }
        Ok(o)
    }

    fn wants(&self, section: &str) -> bool {
        let name = format!("propagation::{section}");
        self.filters.is_empty() || self.filters.iter().any(|f| name.contains(f.as_str()))
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics and reporting
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// Nearest-rank percentiles.
fn stats(mut xs: Vec<Duration>) -> Stats {
    if xs.is_empty() {
        return Stats::default();
    }
    xs.sort();
    let at = |q: f64| {
        let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
        xs[rank - 1]
    };
    Stats {
        n: xs.len(),
        p50: at(0.50),
        p99: at(0.99),
        max: xs[xs.len() - 1],
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} p50={} ms p99={} ms max={} ms",
            self.n,
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// Lines of the final summary (markdown), printed once at the end.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
}

impl Report {
    fn add(&mut self, line: impl Into<String>) {
        let line = line.into();
        println!("{line}");
        self.lines.push(line);
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// This process's resident set size in MiB (Linux), for the per-loop memory figure.
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// CPU time (user + system) this process has used, from `/proc/self/stat` (Linux).
fn process_cpu() -> Option<Duration> {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    });
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) / ticks))
}

/// The soft limit on open files (`ulimit -n`), read from `/proc` (no `unsafe` in this crate).
fn nofile_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// The admin, on its own runtime
// ---------------------------------------------------------------------------------------------

/// One committed changeset as the client saw it.
#[derive(Debug, Clone, Copy)]
struct Commit {
    version: u64,
    sent: Instant,
    acked: Instant,
}

/// The runtimes besides the loops' own: the admin's, and the committing client's (each as if
/// it were another process, so neither queues behind the loops' work on the main runtime).
#[derive(Clone)]
struct Runtimes {
    admin: Handle,
    client: Handle,
}

struct Admin {
    running: Option<Running<AdminParts>>,
    addr: SocketAddr,
    metrics: RelayMetrics,
    rt: Handle,
    /// Where the PATCHes run and their answers are stamped.
    client_rt: Handle,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Admin {
    async fn start(rts: &Runtimes, schema_dir: &Path, redis_url: &str) -> Result<Admin> {
        let rt = &rts.admin;
        let dir = tempfile::Builder::new()
            .prefix("rtconfig-bench-ledger-")
            .tempdir()?;
        let mut s = AdminSettings::for_tests(
            schema_dir.to_path_buf(),
            dir.path().join("ledger"),
            redis_url,
        );
        s.admin_token = Some(TOKEN.into());
        s.relay_interval = RELAY_INTERVAL;
        // Started on the admin's runtime, so its tasks (relay, HTTP server) run there.
        let running = rt
            .spawn(app::start_admin(s))
            .await
            .context("admin start task")?
            .map_err(|e| anyhow!("admin does not start: {e}"))?;
        Ok(Admin {
            addr: running.addr,
            metrics: running.relay_metrics.clone(),
            running: Some(running),
            rt: rt.clone(),
            client_rt: rts.client.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            _dir: dir,
        })
    }

    /// PATCHes `changes`; times the request from send to the end of the answer. The request
    /// runs on the client's own runtime (its connection task too), so `acked` is stamped when
    /// the answer is in, not when the main runtime — busy with the loops' fan-out — gets to it
    /// (stamped there, the ack came late and ack→visible looked shorter than it was).
    async fn commit(&self, changes: Value) -> Result<Commit> {
        let url = format!("http://{}/api/v1/namespaces/{NS}/configs", self.addr);
        let http = self.http.clone();
        self.client_rt
            .spawn(async move {
                let sent = Instant::now();
                let resp = http
                    .patch(&url)
                    .bearer_auth(TOKEN)
                    .json(&json!({ "changes": changes }))
                    .send()
                    .await
                    .context("admin PATCH")?;
                let status = resp.status();
                let body: Value = resp.json().await.context("admin answer")?;
                let acked = Instant::now();
                if !status.is_success() {
                    bail!("admin answered {status}: {body}");
                }
                let version = body["version"]
                    .as_u64()
                    .ok_or_else(|| anyhow!("no version in {body}"))?;
                Ok(Commit {
                    version,
                    sent,
                    acked,
                })
            })
            .await
            .context("commit task")?
    }

    async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            let _ = self.rt.spawn(running.stop()).await;
        }
    }
}

/// Write number `i` of the demo schema: one key, a new value every time.
fn demo_change(i: usize) -> Value {
    json!({ "SITE_NAME": format!("bench write {i}") })
}

fn demo_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
}

fn load_schema(dir: &Path) -> Result<Arc<Schema>> {
    let set =
        SchemaSet::load_dir(dir).map_err(|p| anyhow!("schema in {}: {p:?}", dir.display()))?;
    set.get(NS)
        .cloned()
        .ok_or_else(|| anyhow!("no {NS} namespace in {}", dir.display()))
}

/// A `demo` namespace of `n` string keys `K0000…`, in a temp dir.
fn many_keys_schema(n: usize) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("rtconfig-bench-schema-")
        .tempdir()?;
    let names: Vec<String> = (0..n).map(|i| format!("K{i:04}")).collect();
    let mut text = format!(
        "namespace = \"{NS}\"\ndescription = \"{n} keys (propagation bench)\"\n\n[[group]]\nname = \"All\"\nkeys = ["
    );
    text.push_str(
        &names
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", "),
    );
    text.push_str("]\n");
    for k in &names {
        let _ = write!(
            text,
            "\n[keys.{k}]\ntype = \"string\"\ndefault = \"default value of {k}\"\nmax_length = 200\n"
        );
    }
    std::fs::write(dir.path().join(format!("{NS}.toml")), text)?;
    Ok(dir)
}

// ---------------------------------------------------------------------------------------------
// Sync loops and what they saw
// ---------------------------------------------------------------------------------------------

/// N in-process sidecar sync loops, each with its own store (one shared `Metrics`, so its
/// counters add up over the swarm).
struct Swarm {
    stores: Vec<Arc<SnapshotStore>>,
    statuses: Vec<Arc<SyncStatus>>,
    tasks: Vec<JoinHandle<()>>,
    shutdown: Shutdown,
    metrics: Arc<Exposition>,
}

impl Swarm {
    /// Starts `n` loops evenly over `spread` (zero: all at once). Independent sidecars start at
    /// unrelated moments, so their ping and heartbeat timers (not jittered, unlike the resync
    /// timer) are out of phase; loops started in the same millisecond would fire them in lockstep.
    async fn start(
        n: usize,
        schema: &Arc<Schema>,
        redis_url: &str,
        resync: Duration,
        prefix: &str,
        spread: Duration,
    ) -> Result<Swarm> {
        let shutdown = Shutdown::new();
        let mut registry = rtconfig::metrics::registry();
        let sync_metrics = SyncMetrics::register(&mut registry);
        let snapshot_metrics = SnapshotMetrics::register(&mut registry);
        let metrics = Arc::new(Exposition::new(registry));
        let mut swarm = Swarm {
            stores: Vec::with_capacity(n),
            statuses: Vec::with_capacity(n),
            tasks: Vec::with_capacity(n),
            shutdown: shutdown.clone(),
            metrics: metrics.clone(),
        };
        for i in 0..n {
            // As `app::start_sidecar` builds it.
            let store = Arc::new(SnapshotStore::new(
                Snapshot::defaults(schema),
                Some(resync * 2),
                false,
            ));
            let mut settings = SyncSettings::new(NS, CLUSTER, redis_url, resync);
            settings.instance_id = format!("{prefix}-{i:04}");
            let handle = sync::start(
                settings,
                schema.clone(),
                store.clone(),
                sync_metrics.clone(),
                snapshot_metrics.clone(),
                shutdown.clone(),
            )
            .map_err(|e| anyhow!("sync loop {i}: {e}"))?;
            swarm.stores.push(store);
            swarm.statuses.push(handle.status);
            swarm.tasks.push(handle.task);
            if !spread.is_zero() {
                tokio::time::sleep(spread / n as u32).await;
            }
        }
        Ok(swarm)
    }

    fn len(&self) -> usize {
        self.stores.len()
    }

    /// Loops not yet serving `version` confirmed in sync, with their causes.
    fn laggards(&self, version: u64) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (store, status) in self.stores.iter().zip(&self.statuses) {
            let at = store.load().position.version;
            let why = match status.cause() {
                _ if at < version => Some(format!("at v{at} < v{version}")),
                Some(cause) => Some(cause.to_owned()),
                None => None,
            };
            if let Some(why) = why {
                *out.entry(why).or_default() += 1;
            }
        }
        out
    }

    /// Polls (every 5 ms) until every loop serves `version` or later, confirmed in sync
    /// (`SyncStatus::cause()` is none); returns the elapsed time.
    async fn wait_synced(&self, version: u64, deadline: Duration) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let laggards = self.laggards(version);
            if laggards.is_empty() {
                return Ok(started.elapsed());
            }
            if started.elapsed() > deadline {
                bail!(
                    "after {:?}, {} of {} loops are not in sync at v{version}: {laggards:?}",
                    started.elapsed(),
                    laggards.values().sum::<usize>(),
                    self.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// (full fetches, log catch-ups) summed over the swarm (`SyncStatus::counts`).
    fn counts(&self) -> (u64, u64) {
        self.statuses.iter().fold((0, 0), |(f, c), s| {
            let (sf, sc) = s.counts();
            (f + sf, c + sc)
        })
    }

    /// `rtconfig_sync_messages_total` (Pub/Sub hints) by result, summed over the swarm.
    fn hints(&self) -> BTreeMap<String, u64> {
        metric_by_label(
            &self.metrics.encode(),
            "rtconfig_sync_messages_total",
            "result",
        )
    }

    /// `rtconfig_sync_resyncs_total` by reason, summed over the swarm.
    fn resyncs(&self) -> BTreeMap<String, u64> {
        metric_by_label(
            &self.metrics.encode(),
            "rtconfig_sync_resyncs_total",
            "reason",
        )
    }

    async fn stop(self) {
        self.shutdown.trigger();
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(Duration::from_secs(15), all)
            .await
            .is_err()
        {
            eprintln!("warning: some sync loops did not stop within 15 s");
        }
    }
}

/// `name{label="x"} value` lines of a Prometheus text exposition, by label value.
fn metric_by_label(text: &str, name: &str, label: &str) -> BTreeMap<String, u64> {
    let prefix = format!("{name}{{{label}=\"");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (value_of_label, tail) = rest.split_once('"')?;
            let n: f64 = tail.rsplit(' ').next()?.parse().ok()?;
            Some((value_of_label.to_owned(), n as u64))
        })
        .collect()
}

fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// One position a store announced: its version, when the snapshot that carries it was
/// published (its `built_at`, taken just before the swap: from then on every read of the store
/// sees it) and when the observer task got to it (the watch channel woke it; that task runs on
/// the loops' runtime, so it can queue behind other loops' work).
#[derive(Debug, Clone, Copy)]
struct Seen {
    version: u64,
    published: Instant,
    observed: Instant,
}

type Track = Arc<Mutex<Vec<Seen>>>;

/// `Instant` and `SystemTime` read together once, to carry a snapshot's `built_at` (a
/// `SystemTime`) to this bench's `Instant`s.
fn instant_of(t: std::time::SystemTime) -> Instant {
    static ANCHOR: std::sync::OnceLock<(Instant, std::time::SystemTime)> =
        std::sync::OnceLock::new();
    let (i0, s0) = *ANCHOR.get_or_init(|| (Instant::now(), std::time::SystemTime::now()));
    match t.duration_since(s0) {
        Ok(d) => i0 + d,
        Err(e) => i0.checked_sub(e.duration()).unwrap_or(i0),
    }
}

/// Records, per store, every position its watch channel announced: when it was published and
/// when the observer saw it. "Visible" is the publication: the observer's wake-up is the
/// bench's own queueing (with N loops in one process, N observer tasks share the loops'
/// runtime), reported apart.
struct Recorder {
    tracks: Vec<Track>,
    tasks: Vec<JoinHandle<()>>,
}

impl Recorder {
    fn start(stores: &[Arc<SnapshotStore>]) -> Recorder {
        // Anchor the clocks before anything is recorded.
        let _ = instant_of(std::time::SystemTime::now());
        let mut rec = Recorder {
            tracks: Vec::with_capacity(stores.len()),
            tasks: Vec::with_capacity(stores.len()),
        };
        for store in stores {
            let mut rx = store.subscribe();
            let store = store.clone();
            let track: Track = Arc::default();
            let t = track.clone();
            rec.tasks.push(tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let observed = Instant::now();
                    let version = rx.borrow_and_update().version;
                    // The snapshot announced, or a newer one already (whose build time is
                    // later: the figure errs on the slow side).
                    let snap = store.load();
                    let published = if snap.position.version >= version {
                        instant_of(snap.built_at).min(observed)
                    } else {
                        observed
                    };
                    t.lock().push(Seen {
                        version,
                        published,
                        observed,
                    });
                }
            }));
            rec.tracks.push(track);
        }
        rec
    }

    /// The first announcement of `version` or later, per store (`None`: not yet).
    fn first(&self, version: u64) -> Vec<Option<Seen>> {
        self.tracks
            .iter()
            .map(|t| t.lock().iter().find(|s| s.version >= version).copied())
            .collect()
    }

    /// When each store published `version` or later (`None`: not yet).
    fn reached(&self, version: u64) -> Vec<Option<Instant>> {
        self.first(version)
            .into_iter()
            .map(|s| s.map(|s| s.published))
            .collect()
    }

    /// How long each store's observer took to see `version` after it was published.
    fn observer_delays(&self, version: u64) -> Vec<Duration> {
        self.first(version)
            .into_iter()
            .flatten()
            .map(|s| s.observed.saturating_duration_since(s.published))
            .collect()
    }

    async fn wait_reached(&self, version: u64, deadline: Duration) -> Result<Vec<Instant>> {
        let started = Instant::now();
        loop {
            let reached = self.reached(version);
            let missing = reached.iter().filter(|r| r.is_none()).count();
            if missing == 0 {
                return Ok(reached.into_iter().flatten().collect());
            }
            if started.elapsed() > deadline {
                bail!(
                    "{missing} of {} stores did not reach v{version} within {deadline:?}",
                    reached.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Redis INFO
// ---------------------------------------------------------------------------------------------

/// The counters of `INFO commandstats stats cpu` this bench uses.
#[derive(Debug, Clone, Default)]
struct Info {
    calls: BTreeMap<String, u64>,
    total_commands: u64,
    net_in: u64,
    net_out: u64,
    cpu_seconds: f64,
}

fn redis_info(redis: &RedisServer) -> Result<Info> {
    let text = redis
        .try_cmd(&["INFO", "commandstats", "stats", "cpu"])
        .map_err(|e| anyhow!("INFO: {e}"))?;
    let mut info = Info::default();
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once(':') else {
            continue;
        };
        if let Some(cmd) = k.strip_prefix("cmdstat_") {
            let calls = v
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            info.calls.insert(cmd.to_owned(), calls);
            continue;
        }
        match k {
            "total_commands_processed" => info.total_commands = v.parse().unwrap_or(0),
            "total_net_input_bytes" => info.net_in = v.parse().unwrap_or(0),
            "total_net_output_bytes" => info.net_out = v.parse().unwrap_or(0),
            "used_cpu_sys" | "used_cpu_user" => info.cpu_seconds += v.parse().unwrap_or(0.0),
            _ => {}
        }
    }
    Ok(info)
}

/// Commands a sidecar sends (the rest: the admin's relay and this bench's `INFO`).
const SIDECAR_COMMANDS: [&str; 6] = [
    "evalsha_ro",
    "hset",
    "ping",
    "subscribe",
    "script|load",
    "eval_ro",
];

/// What N idle sidecars cost Redis over a window.
struct SteadyCost {
    window: Duration,
    intervals: f64,
    sidecars: usize,
    by_command: BTreeMap<String, u64>,
    sidecar_commands: u64,
    total_commands: u64,
    net_bytes: u64,
    cpu_seconds: f64,
}

impl SteadyCost {
    fn per_sidecar_interval(&self, x: f64) -> f64 {
        x / self.sidecars as f64 / self.intervals
    }

    fn commands(&self) -> f64 {
        self.per_sidecar_interval(self.sidecar_commands as f64)
    }

    fn describe(&self) -> String {
        let per = |n: u64| format!("{:.2}", self.per_sidecar_interval(n as f64));
        let table = self
            .by_command
            .iter()
            .map(|(c, n)| format!("{c} {n} ({}/sidecar/interval)", per(*n)))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{} sidecars idle for {:.1} s = {:.1} resync intervals: sidecar commands {:.2} per sidecar per interval \
             (all commands {}: {table}); network in+out {:.0} B, Redis CPU {:.1} µs per sidecar per interval",
            self.sidecars,
            self.window.as_secs_f64(),
            self.intervals,
            self.commands(),
            self.total_commands,
            self.per_sidecar_interval(self.net_bytes as f64),
            self.per_sidecar_interval(self.cpu_seconds) * 1e6,
        )
    }
}

/// Measures Redis's counters over `idle` with nothing but the swarm's timers running.
async fn steady_cost(
    redis: &RedisServer,
    sidecars: usize,
    resync: Duration,
    idle: Duration,
) -> Result<SteadyCost> {
    let a = redis_info(redis)?;
    let started = Instant::now();
    tokio::time::sleep(idle).await;
    let b = redis_info(redis)?;
    let window = started.elapsed();
    let by_command: BTreeMap<String, u64> = b
        .calls
        .iter()
        .map(|(c, n)| (c.clone(), n - a.calls.get(c).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let sidecar_commands = by_command
        .iter()
        .filter(|(c, _)| SIDECAR_COMMANDS.contains(&c.as_str()))
        .map(|(_, n)| n)
        .sum();
    Ok(SteadyCost {
        window,
        intervals: window.as_secs_f64() / resync.as_secs_f64(),
        sidecars,
        by_command,
        sidecar_commands,
        total_commands: b.total_commands - a.total_commands,
        net_bytes: (b.net_in + b.net_out) - (a.net_in + a.net_out),
        cpu_seconds: b.cpu_seconds - a.cpu_seconds,
    })
}

fn start_redis() -> RedisServer {
    RedisServer::start_with_args(&["--maxclients", "10000"])
}

// ---------------------------------------------------------------------------------------------
// Sections
// ---------------------------------------------------------------------------------------------

/// 1. Commit → visible with 1, 10, 100 sync loops, then one real sidecar over HTTP long-poll.
async fn latency(o: &Opts, rts: &Runtimes, report: &mut Report) -> Result<()> {
    let redis = start_redis();
    let admin = Admin::start(rts, &demo_dir(), &redis.url()).await?;
    let schema = load_schema(&demo_dir())?;
    let resync = Duration::from_secs(1);
    let mut i = 0usize;
    report.add(format!(
        "\n### propagation::latency — {} commits paced {} ms apart, one redis-server, resync interval {resync:?}",
        o.commits,
        o.pace.as_millis()
    ));
    report.add("| sync loops | send→visible p50 | p99 | max | ack→visible p50 | p99 | max | last loop per commit, send→visible p50 / p99 | admin ack p50 / p99 | target ack→visible p99 (≤ 10 ms at 100 loops, ≤ 100 ms at 1,000) |");
    report.add("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut cpu_rows = Vec::new();
    let mut redis_rows = Vec::new();
    let mut observer_rows = Vec::new();
    if o.wants("latency") {
        for &n in &o.sizes {
            let base = admin.commit(demo_change(i)).await?;
            i += 1;
            let swarm = Swarm::start(
                n,
                &schema,
                &redis.url(),
                resync,
                &format!("lat{n}"),
                if o.spread { resync } else { Duration::ZERO },
            )
            .await?;
            swarm
                .wait_synced(base.version, Duration::from_secs(60))
                .await?;
            let rec = Recorder::start(&swarm.stores);
            let cpu0 = process_cpu();
            let redis0 = redis_info(&redis)?;
            let hints0 = swarm.hints();
            let resyncs0 = swarm.resyncs();
            let (full0, catchups0) = swarm.counts();
            let mut commits = Vec::with_capacity(o.commits);
            let started_commits = Instant::now();
            for _ in 0..o.commits {
                commits.push(admin.commit(demo_change(i)).await?);
                i += 1;
                tokio::time::sleep(o.pace).await;
            }
            let last = commits.last().map_or(base.version, |c| c.version);
            rec.wait_reached(last, Duration::from_secs(30)).await?;
            let phase = started_commits.elapsed();
            let redis1 = redis_info(&redis)?;
            let (full1, catchups1) = swarm.counts();
            let hints = delta(&swarm.hints(), &hints0);
            let resyncs = delta(&swarm.resyncs(), &resyncs0);
            let calls = |c: &str| {
                redis1.calls.get(c).copied().unwrap_or(0)
                    - redis0.calls.get(c).copied().unwrap_or(0)
            };
            let per = |x: u64| x as f64 / (n * commits.len()) as f64;
            redis_rows.push(format!(
                "| {n} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} s | {hints:?} |",
                per(calls("evalsha_ro")),
                per(calls("xrange")),
                per(*resyncs.get("message").unwrap_or(&0)),
                per(catchups1 - catchups0),
                per(full1 - full0),
                phase.as_secs_f64(),
            ));
            // CPU per commit: this process (loops, admin, bench) and Redis; includes the idle
            // timers of the run's ~1-2 s.
            let cpu = match (cpu0, process_cpu()) {
                (Some(a), Some(b)) => (b - a).as_secs_f64() * 1e3 / commits.len() as f64,
                _ => f64::NAN,
            };
            let redis_cpu = (redis1.cpu_seconds - redis0.cpu_seconds) * 1e3 / commits.len() as f64;
            cpu_rows.push(format!("| {n} | {cpu:.2} ms | {redis_cpu:.2} ms |"));
            let mut all = Vec::with_capacity(n * commits.len());
            let mut after_ack = Vec::with_capacity(n * commits.len());
            let mut slowest = Vec::with_capacity(commits.len());
            let mut acks = Vec::with_capacity(commits.len());
            let mut observer = Vec::with_capacity(n * commits.len());
            for c in &commits {
                observer.extend(rec.observer_delays(c.version));
                let reached: Vec<Instant> = rec.reached(c.version).into_iter().flatten().collect();
                let seen: Vec<Duration> = reached
                    .iter()
                    .map(|at| at.saturating_duration_since(c.sent))
                    .collect();
                // Visible before the answer reached the client counts as 0.
                after_ack.extend(
                    reached
                        .iter()
                        .map(|at| at.saturating_duration_since(c.acked)),
                );
                slowest.push(seen.iter().copied().max().unwrap_or_default());
                all.extend(seen);
                acks.push(c.acked - c.sent);
            }
            let (all, after_ack, slowest, acks, observer) = (
                stats(all),
                stats(after_ack),
                stats(slowest),
                stats(acks),
                stats(observer),
            );
            println!(
                "{n} loops: send→visible {all}; ack→visible {after_ack}; last loop per commit {slowest}; ack {acks}; observer woken after the publish {observer}"
            );
            observer_rows.push(format!(
                "| {n} | {} ms | {} ms | {} ms |",
                ms(observer.p50),
                ms(observer.p99),
                ms(observer.max)
            ));
            report.add(format!(
                "| {n} | {} ms | {} ms | {} ms | {} ms | {} ms | {} ms | {} / {} ms | {} / {} ms | {} |",
                ms(all.p50),
                ms(all.p99),
                ms(all.max),
                ms(after_ack.p50),
                ms(after_ack.p99),
                ms(after_ack.max),
                ms(slowest.p50),
                ms(slowest.p99),
                ms(acks.p50),
                ms(acks.p99),
                match n {
                    1000.. => verdict(after_ack.p99 <= Duration::from_millis(100)),
                    100.. => verdict(after_ack.p99 <= Duration::from_millis(10)),
                    _ => "—",
                }
            ));
            drop(rec);
            swarm.stop().await;
        }
    }
    if o.wants("http") {
        http_long_poll(o, &admin, &redis, &mut i, report).await?;
    }
    if !redis_rows.is_empty() {
        report.add(
            "\nRedis per change per sync loop over the commit phase (`INFO commandstats` deltas; a loop's \
             timers run meanwhile: 1 `EVALSHA_RO` per resync interval, pings and heartbeats, so the \
             change-caused reads are the `XRANGE`s and the resyncs woken by a message):",
        );
        // Not a sum over SIDECAR_COMMANDS: the relay's scripts run HSETs too, and commandstats
        // counts a script's commands under their own names.
        report.add("| sync loops | `evalsha_ro` (all reads, timers included) | `xrange` (log reads) | resyncs woken by a hint | log catch-ups | full fetches | phase | hints by result (all loops) |");
        report.add("|---:|---:|---:|---:|---:|---:|---:|---|");
        for row in redis_rows {
            report.add(row);
        }
    }
    if !observer_rows.is_empty() {
        report.add(
            "\nThe bench's own observer (not in the figures above: visible = published): how long after \
             the publish the observer task on the loops' runtime was woken by the store's watch channel:",
        );
        report.add("| sync loops | p50 | p99 | max |");
        report.add("|---:|---:|---:|---:|");
        for row in observer_rows {
            report.add(row);
        }
    }
    if !cpu_rows.is_empty() {
        report.add(
            "\nCPU per commit (from /proc/self/stat and Redis `INFO cpu`, over the commit phase):",
        );
        report.add("| sync loops | this process (loops + admin + bench) | redis-server |");
        report.add("|---:|---:|---:|");
        for row in cpu_rows {
            report.add(row);
        }
    }
    admin.stop().await;
    Ok(())
}

/// 1b. One real sidecar (`app::start_sidecar`) read through an HTTP long-poll, next to its own
/// store's watch channel.
async fn http_long_poll(
    o: &Opts,
    admin: &Admin,
    redis: &RedisServer,
    i: &mut usize,
    report: &mut Report,
) -> Result<()> {
    let base = admin.commit(demo_change(*i)).await?;
    *i += 1;
    let sidecar = app::start_sidecar(SidecarSettings {
        resync_interval: Duration::from_secs(1),
        ..SidecarSettings::for_tests(demo_dir(), &redis.url())
    })
    .await
    .map_err(|e| anyhow!("sidecar does not start: {e}"))?;
    let started = Instant::now();
    while sidecar.store.load().position.version < base.version || sidecar.sync.cause().is_some() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the HTTP sidecar did not sync within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rec = Recorder::start(std::slice::from_ref(&sidecar.store));
    let seen: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let poller = {
        let seen = seen.clone();
        let addr = sidecar.read_addr;
        let position = sidecar.store.load().position;
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut index = format!("{}-{}", position.epoch, position.version);
            loop {
                let url = format!("http://{addr}/v1/configs?index={index}&wait=30s");
                let Ok(resp) = client.get(&url).send().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let header = |name: &str| {
                    resp.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                };
                let (epoch, version) = (header("x-config-epoch"), header("x-config-version"));
                // The app has the value once the body is in.
                let _ = resp.bytes().await;
                let at = Instant::now();
                if let (Some(e), Some(v)) = (epoch, version) {
                    seen.lock().push((v, at));
                    index = format!("{e}-{v}");
                }
            }
        })
    };
    // Let the first long-poll request arrive and park.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut commits = Vec::with_capacity(o.commits);
    for _ in 0..o.commits {
        commits.push(admin.commit(demo_change(*i)).await?);
        *i += 1;
        tokio::time::sleep(o.pace).await;
    }
    let last = commits.last().map_or(base.version, |c| c.version);
    rec.wait_reached(last, Duration::from_secs(30)).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.lock().iter().any(|(v, _)| *v >= last) {
        if Instant::now() > deadline {
            bail!("the long-poll client never saw v{last}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    poller.abort();
    let seen = seen.lock().clone();
    let mut http = Vec::new();
    let mut http_ack = Vec::new();
    let mut store = Vec::new();
    let mut acks = Vec::new();
    for c in &commits {
        if let Some((_, at)) = seen.iter().find(|(v, _)| *v >= c.version) {
            http.push(at.saturating_duration_since(c.sent));
            http_ack.push(at.saturating_duration_since(c.acked));
        }
        if let Some(Some(at)) = rec.reached(c.version).first() {
            store.push(at.saturating_duration_since(c.sent));
        }
        acks.push(c.acked - c.sent);
    }
    let (http, http_ack, store, acks) = (stats(http), stats(http_ack), stats(store), stats(acks));
    println!(
        "HTTP sidecar: long-poll send→visible {http}, ack→visible {http_ack}; its store's watch channel {store}"
    );
    report.add(format!(
        "| 1 real sidecar, HTTP long-poll | {} ms | {} ms | {} ms | {} ms | {} ms | {} ms | (its own store, send→visible: {} / {} ms) | {} / {} ms | — |",
        ms(http.p50),
        ms(http.p99),
        ms(http.max),
        ms(http_ack.p50),
        ms(http_ack.p99),
        ms(http_ack.max),
        ms(store.p50),
        ms(store.p99),
        ms(acks.p50),
        ms(acks.p99),
    ));
    drop(rec);
    sidecar.stop().await;
    Ok(())
}

/// Fan-out of `changes` single-key changes to every loop, each awaited before the next.
async fn fan_out(
    admin: &Admin,
    swarm: &Swarm,
    redis: &RedisServer,
    changes: usize,
    change: impl Fn(usize) -> Value,
    report: &mut Report,
    label: &str,
) -> Result<()> {
    let rec = Recorder::start(&swarm.stores);
    let mut per_loop = Vec::new();
    let mut last_loop = Vec::new();
    let mut after_ack = Vec::new();
    let mut acks = Vec::new();
    let mut observer = Vec::new();
    let (f0, c0) = swarm.counts();
    let hints0 = swarm.hints();
    let info0 = redis_info(redis)?;
    for k in 0..changes {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let c = admin.commit(change(k)).await?;
        let seen = rec.wait_reached(c.version, Duration::from_secs(30)).await?;
        observer.extend(rec.observer_delays(c.version));
        let lat: Vec<Duration> = seen
            .iter()
            .map(|at| at.saturating_duration_since(c.sent))
            .collect();
        after_ack.extend(seen.iter().map(|at| at.saturating_duration_since(c.acked)));
        last_loop.push(lat.iter().copied().max().unwrap_or_default());
        per_loop.extend(lat);
        acks.push(c.acked - c.sent);
    }
    let (f1, c1) = swarm.counts();
    let info1 = redis_info(redis)?;
    let calls = |c: &str| {
        info1.calls.get(c).copied().unwrap_or(0) - info0.calls.get(c).copied().unwrap_or(0)
    };
    let hints = delta(&swarm.hints(), &hints0);
    let (per_loop, after_ack, last_loop, acks, observer) = (
        stats(per_loop),
        stats(after_ack),
        stats(last_loop),
        stats(acks),
        stats(observer),
    );
    println!(
        "{label} fan-out: per loop {per_loop}; ack→visible {after_ack}; last loop {last_loop}; ack {acks}; observer woken after the publish {observer}; full fetches {}, catch-ups {}; hints {hints:?}",
        f1 - f0,
        c1 - c0
    );
    let per_change_loop = |x: u64| x as f64 / (changes * swarm.len()) as f64;
    report.add(format!(
        "- fan-out of one change to all {} loops ({changes} changes, 200 ms apart): per loop send→visible p50 {} / p99 {} / max {} ms; \
         ack→visible p50 {} / **p99 {}** / max {} ms; \
         **last loop p50 {} / max {} ms** (target ≤ 1 s: {}; ≤ 0.3 s: {}); admin ack p50 {} ms; \
         the bench's observer woken p50 {} / p99 {} ms after the publish (not counted); full fetches {}, log catch-ups {}; \
         hints {hints:?}; in Redis meanwhile: XRANGE (log reads, inside SYNC_READ) {} ({:.3} per change per loop), \
         EVALSHA_RO {} ({:.3} per change per loop, timers included), HGETALL (full reads) {}",
        swarm.len(),
        ms(per_loop.p50),
        ms(per_loop.p99),
        ms(per_loop.max),
        ms(after_ack.p50),
        ms(after_ack.p99),
        ms(after_ack.max),
        ms(last_loop.p50),
        ms(last_loop.max),
        verdict(last_loop.max <= Duration::from_secs(1)),
        verdict(last_loop.max <= Duration::from_millis(300)),
        ms(acks.p50),
        ms(observer.p50),
        ms(observer.p99),
        f1 - f0,
        c1 - c0,
        calls("xrange"),
        per_change_loop(calls("xrange")),
        calls("evalsha_ro"),
        per_change_loop(calls("evalsha_ro")),
        calls("hgetall"),
    ));
    Ok(())
}

/// 2. The swarm: cold start, fan-out, reconnect herd, steady state (demo schema).
async fn swarm(o: &Opts, rts: &Runtimes, report: &mut Report) -> Result<SteadyCost> {
    let redis = start_redis();
    let admin = Admin::start(rts, &demo_dir(), &redis.url()).await?;
    let schema = load_schema(&demo_dir())?;
    let n = o.swarm;
    report.add(format!(
        "\n### propagation::swarm — {n} in-process sync loops, demo schema (8 keys), resync interval {:?}, relay interval {RELAY_INTERVAL:?}",
        o.resync
    ));
    let base = admin.commit(demo_change(0)).await?;
    let rss0 = rss_mib();
    let t0 = Instant::now();
    let swarm = Swarm::start(n, &schema, &redis.url(), o.resync, "swarm", Duration::ZERO).await?;
    let started = t0.elapsed();
    swarm
        .wait_synced(base.version, Duration::from_secs(120))
        .await?;
    let cold = t0.elapsed();
    let (full, catchups) = swarm.counts();
    let rss = match (rss0, rss_mib()) {
        (Some(a), Some(b)) => format!(
            "; process RSS +{:.0} MiB ({:.2} MiB per loop)",
            b - a,
            (b - a) / n as f64
        ),
        _ => String::new(),
    };
    report.add(format!(
        "- cold start of {n} loops started at once: all in sync {:.2} s after the first was started \
         (starting them — 2 fred clients each — took {:.2} s of it); full fetches {full}, catch-ups {catchups}{rss}",
        cold.as_secs_f64(),
        started.as_secs_f64()
    ));

    fan_out(
        &admin,
        &swarm,
        &redis,
        o.fanout,
        |k| demo_change(1000 + k),
        report,
        "swarm",
    )
    .await?;

    let mut version = base.version;
    let mut k = 0usize;
    for &outage in &o.outages {
        version = herd(&admin, &swarm, &redis, outage, &mut k, version, report).await?;
        // Let the loops settle (backoff counters reset, timers back in phase) before the next.
        tokio::time::sleep(o.resync * 3).await;
    }

    // Steady state: let the post-herd timers settle, then count.
    tokio::time::sleep(o.resync * 3).await;
    let cost = steady_cost(&redis, n, o.resync, o.idle).await?;
    report.add(format!("- steady state (8 keys): {}", cost.describe()));
    swarm.stop().await;
    admin.stop().await;
    Ok(cost)
}

/// The reconnect herd: Redis killed, changes committed meanwhile, Redis back EMPTY on the same
/// port after `outage`; the relay rebuilds it (image + log tail) and every loop must come back at
/// the current version. Returns that version.
async fn herd(
    admin: &Admin,
    swarm: &Swarm,
    redis: &RedisServer,
    outage: Duration,
    k: &mut usize,
    mut target: u64,
    report: &mut Report,
) -> Result<u64> {
    let n = swarm.len();
    let rec = Recorder::start(&swarm.stores);
    let (f0, c0) = swarm.counts();
    let resyncs0 = swarm.resyncs();
    let rebuilds0 = admin.metrics.rebuilds.get();
    let killed = Instant::now();
    redis.kill();
    let during = 3usize;
    for _ in 0..during {
        target = admin.commit(demo_change(2000 + *k)).await?.version;
        *k += 1;
        tokio::time::sleep(outage / (during as u32 + 1)).await;
    }
    tokio::time::sleep(outage.saturating_sub(killed.elapsed())).await;
    redis.restart();
    let up = Instant::now();
    // Timeline (sampled every 10 ms): when the relay rebuilt, when loops first read the new
    // (still empty) Redis, when they reached the target.
    let sampler = {
        let stores = swarm.stores.clone();
        let statuses = swarm.statuses.clone();
        let metrics = admin.metrics.clone();
        tokio::spawn(async move {
            let mut rebuilt = None;
            let mut saw_empty = 0usize;
            let mut first_empty = None;
            let mut half = None;
            loop {
                if rebuilt.is_none() && metrics.rebuilds.get() > rebuilds0 {
                    rebuilt = Some(up.elapsed());
                }
                let empty = statuses
                    .iter()
                    .filter(|s| s.cause() == Some("redis_empty"))
                    .count();
                saw_empty = saw_empty.max(empty);
                if empty > 0 && first_empty.is_none() {
                    first_empty = Some(up.elapsed());
                }
                let at = stores
                    .iter()
                    .filter(|s| s.load().position.version >= target)
                    .count();
                if half.is_none() && at * 2 >= stores.len() {
                    half = Some(up.elapsed());
                }
                if at == stores.len() && rebuilt.is_some() {
                    return (rebuilt, first_empty, saw_empty);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let synced = swarm.wait_synced(target, Duration::from_secs(60)).await?;
    let (rebuilt, first_empty, saw_empty) = tokio::time::timeout(Duration::from_secs(5), sampler)
        .await
        .context("herd sampler")?
        .context("herd sampler task")?;
    let seen = stats(
        rec.wait_reached(target, Duration::from_secs(5))
            .await?
            .iter()
            .map(|at| at.saturating_duration_since(up))
            .collect(),
    );
    let (f1, c1) = swarm.counts();
    let resyncs = delta(&swarm.resyncs(), &resyncs0);
    let secs =
        |d: Option<Duration>| d.map_or("—".into(), |d| format!("+{:.2} s", d.as_secs_f64()));
    report.add(format!(
        "- reconnect herd, Redis down {:.1} s ({during} changes committed meanwhile), back EMPTY on the same port: \
         **all {n} loops in sync at v{target} {:.2} s after Redis answered again** ({:.2} s after the kill; target ≤ 10 s: {}); \
         per loop, v{target} reached after Redis is back: p50 {} / p99 {} / max {} ms; \
         relay rebuilt Redis at {}; first loop read the empty Redis at {} (at most {saw_empty} loops saw it empty at once); \
         **full fetches {}, log catch-ups {}** (target: far fewer full fetches than sidecars: {}); resyncs by reason {:?}",
        (up - killed).as_secs_f64(),
        synced.as_secs_f64(),
        (synced + (up - killed)).as_secs_f64(),
        verdict(synced <= Duration::from_secs(10)),
        ms(seen.p50),
        ms(seen.p99),
        ms(seen.max),
        secs(rebuilt),
        secs(first_empty),
        f1 - f0,
        c1 - c0,
        verdict((f1 - f0) * 10 <= n as u64),
        resyncs
    ));
    Ok(target)
}

/// CPU one sidecar spends applying a one-key change, without Redis: `Snapshot::build` (every
/// key validated and encoded again: what the sync loop did per change before `Snapshot::apply`),
/// `Snapshot::apply` of the one changed key (what it does now) and `SnapshotStore::publish` of
/// the applied snapshot (the delta is carried by the snapshot; dropping the replaced one).
/// Means over ~0.3 s of repetitions.
fn apply_cost(schema: &Schema, stored: &BTreeMap<String, Value>) -> (Duration, Duration, Duration) {
    use rtconfig::snapshot::{Position, Source};
    let store = SnapshotStore::new(Snapshot::defaults(schema), None, false);
    let budget = Duration::from_millis(100);
    let first = schema
        .keys()
        .first()
        .map(|d| d.name.to_string())
        .unwrap_or_default();
    let mut values = stored.clone();
    let mut current = Arc::new(Snapshot::build(
        schema,
        Position::new(1, 1),
        Source::Redis,
        values.iter(),
    ));
    let _ = store.publish_shared(current.clone());
    let (mut build, mut apply, mut publish) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut rounds = 0u32;
    let started = Instant::now();
    while started.elapsed() < budget * 3 || rounds < 10 {
        rounds += 1;
        let version = u64::from(rounds) + 1;
        let value = Value::String(format!("change {rounds}"));
        values.insert(first.clone(), value.clone());
        let t = Instant::now();
        let whole = Snapshot::build(
            schema,
            Position::new(1, version),
            Source::Redis,
            values.iter(),
        );
        build += t.elapsed();
        drop(std::hint::black_box(whole));
        let t = Instant::now();
        let next = current.apply(
            schema,
            Position::new(1, version),
            Source::Redis,
            [(first.as_str(), Some(&value), version)],
        );
        apply += t.elapsed();
        let next = Arc::new(next);
        let t = Instant::now();
        let _ = store.publish_shared(next.clone());
        current = next;
        publish += t.elapsed();
    }
    (build / rounds, apply / rounds, publish / rounds)
}

/// 2b. The same swarm with a many-key schema: cold start, fan-out, steady-state cost.
async fn many_keys(o: &Opts, rts: &Runtimes, report: &mut Report) -> Result<SteadyCost> {
    let keys = o.many_keys;
    let dir = many_keys_schema(keys)?;
    let schema = load_schema(dir.path())?;
    let redis = start_redis();
    let admin = Admin::start(rts, dir.path(), &redis.url()).await?;
    let n = o.swarm;
    report.add(format!(
        "\n### propagation::keys — {n} in-process sync loops, a {keys}-key schema (every key set, ~60-byte values), resync interval {:?}",
        o.resync
    ));
    let mut version = 0;
    for chunk in (0..keys).collect::<Vec<_>>().chunks(250) {
        let changes: serde_json::Map<String, Value> = chunk
            .iter()
            .map(|k| {
                (
                    format!("K{k:04}"),
                    Value::String(format!("value of K{k:04}, set by the propagation bench")),
                )
            })
            .collect();
        version = admin.commit(Value::Object(changes)).await?.version;
    }
    // Why a many-key fan-out is slower in one process: per-change CPU in each sidecar grows
    // with the number of keys (the Redis side does not: one log entry per change). Measured
    // before the swarm starts, so its timers and memory do not disturb it.
    let demo = load_schema(&demo_dir())?;
    let demo_stored: BTreeMap<String, Value> = demo
        .keys()
        .iter()
        .map(|d| (d.name.to_string(), d.default.value()))
        .collect();
    let many_stored: BTreeMap<String, Value> = schema
        .keys()
        .iter()
        .map(|d| {
            (
                d.name.to_string(),
                Value::String(format!("value of {}, set by the propagation bench", d.name)),
            )
        })
        .collect();
    for (label, sch, stored) in [
        ("8", &demo, &demo_stored),
        (&*keys.to_string(), &schema, &many_stored),
    ] {
        let (build, apply, publish) = apply_cost(sch, stored);
        report.add(format!(
            "- CPU to apply one change in one sidecar, {label} keys (no Redis): Snapshot::build (whole, as before) {:.1} µs, \
             Snapshot::apply (the changed key) {:.1} µs, SnapshotStore::publish {:.1} µs",
            build.as_secs_f64() * 1e6,
            apply.as_secs_f64() * 1e6,
            publish.as_secs_f64() * 1e6
        ));
    }
    let rss0 = rss_mib();
    let t0 = Instant::now();
    let swarm = Swarm::start(n, &schema, &redis.url(), o.resync, "keys", Duration::ZERO).await?;
    let started = t0.elapsed();
    swarm.wait_synced(version, Duration::from_secs(180)).await?;
    let cold = t0.elapsed();
    let (full, catchups) = swarm.counts();
    let rss = match (rss0, rss_mib()) {
        (Some(a), Some(b)) => format!("; process RSS +{:.0} MiB", b - a),
        _ => String::new(),
    };
    report.add(format!(
        "- cold start of {n} loops started at once: all in sync {:.2} s after the first was started \
         (starting them took {:.2} s of it); full fetches {full}, catch-ups {catchups}{rss}",
        cold.as_secs_f64(),
        started.as_secs_f64()
    ));
    fan_out(
        &admin,
        &swarm,
        &redis,
        o.fanout.min(5),
        |k| json!({ "K0000": format!("changed {k}") }),
        report,
        "keys",
    )
    .await?;
    tokio::time::sleep(o.resync * 3).await;
    let cost = steady_cost(&redis, n, o.resync, o.idle).await?;
    report.add(format!("- steady state ({keys} keys): {}", cost.describe()));
    swarm.stop().await;
    admin.stop().await;
    Ok(cost)
}

async fn run(o: Opts, rts: Runtimes) -> Result<Report> {
    let mut report = Report::default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let redis_version = std::process::Command::new(harness::redis::redis_server_binary())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    report.add(format!(
        "## propagation bench ({} profile{}) — {cores} cores, load average {} at start, {redis_version}",
        if o.full { "full" } else { "quick" },
        if cfg!(debug_assertions) {
            ", DEBUG build: figures not meaningful"
        } else {
            ", release build"
        },
        loadavg()
    ));
    let needed = (o.swarm as u64) * 2 + 256;
    if o.wants("swarm") || o.wants("keys") {
        if let Some(limit) = nofile_limit() {
            if limit < needed {
                bail!(
                    "{} sync loops need about {needed} open files, `ulimit -n` is {limit}: raise it (ulimit -n 20000) or pass --swarm {}",
                    o.swarm,
                    (limit.saturating_sub(256)) / 2
                );
            }
        }
    }
    if o.wants("latency") || o.wants("http") {
        latency(&o, &rts, &mut report).await?;
    }
    let mut costs = Vec::new();
    if o.wants("swarm") {
        costs.push((8, swarm(&o, &rts, &mut report).await?));
    }
    if o.wants("keys") {
        costs.push((o.many_keys, many_keys(&o, &rts, &mut report).await?));
    }
    if !costs.is_empty() {
        report.add("\n### steady-state Redis cost per sidecar per resync interval");
        report.add("| schema keys | sidecars | commands | bytes in+out | Redis CPU µs | target: a few commands, independent of keys |");
        report.add("|---:|---:|---:|---:|---:|---|");
        for (keys, c) in &costs {
            report.add(format!(
                "| {keys} | {} | {:.2} | {:.0} | {:.1} | {} |",
                c.sidecars,
                c.commands(),
                c.per_sidecar_interval(c.net_bytes as f64),
                c.per_sidecar_interval(c.cpu_seconds) * 1e6,
                verdict(c.commands() <= 5.0)
            ));
        }
    }
    report.add(format!("\nload average at the end: {}", loadavg()));
    Ok(report)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match Opts::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("propagation: {e:#}");
            std::process::exit(2);
        }
    };
    if std::env::var_os("RUST_LOG").is_some() {
        rtconfig::telemetry::init(rtconfig::telemetry::LogFormat::Pretty);
    }
    // The admin on its own runtime, as if it were another process; the sync loops on the main one
    // (as many workers as cores).
    let admin_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("admin")
        .enable_all()
        .build()
        .expect("admin runtime");
    // The client that commits, likewise on its own thread.
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("client")
        .enable_all()
        .build()
        .expect("client runtime");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rts = Runtimes {
        admin: admin_rt.handle().clone(),
        client: client_rt.handle().clone(),
    };
    let result = rt.block_on(run(opts, rts));
    rt.shutdown_timeout(Duration::from_secs(5));
    client_rt.shutdown_timeout(Duration::from_secs(5));
    admin_rt.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(report) => {
            println!("\n---- summary ----");
            for line in &report.lines {
                println!("{line}");
            }
        }
        Err(e) => {
            eprintln!("propagation: FAILED: {e:#}");
            std::process::exit(1);
        }
    }
}
