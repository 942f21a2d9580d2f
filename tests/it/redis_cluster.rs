//! Redis Cluster survives one node (issue 11, item 2): a harness-spawned 3-primary + 3-replica
//! cluster, two namespaces whose slots are owned by different primaries, the real admin (embedded
//! ledger + relay) and one sidecar per namespace, all on the `redis-cluster://` URL.
//!
//! (a) Killing — or freezing (SIGSTOP) — the primary that owns neither namespace stalls neither: every acknowledged write
//! reaches its sidecar within one resync interval plus a relay round (with margin), although the
//! cluster needs seconds to fail over. (b) Killing the owner of namespace A leaves B flowing the
//! same way; A catches up with every write acknowledged meanwhile once its replica is promoted.
//! Both assert 0 failed reads, no version regression, and that each value served at version V is
//! the one written at V. Hints travel by sharded Pub/Sub (`SPUBLISH`/`SSUBSCRIBE` on the slot's
//! own node), asserted before the kill.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtconfig::app::{self, AdminParts, AdminSettings, Running, SidecarParts, SidecarSettings};
use rtconfig::redis::cluster::slot_of;
use rtconfig::sidecar::SyncReport;
use serde_json::{json, Value};

use crate::harness::eventually;
use crate::harness::redis::RedisServer;
use crate::harness::redis_cluster::RedisCluster;
use crate::stack::{http, schema_dir, RESYNC, TOKEN};

/// Longest a write may take to reach a sidecar on a healthy slot: a resync interval (the timer
/// catches what a hint missed), a relay round and a command timeout's worth of margin — well
/// under the cluster's failover time, which is what a stall would cost.
const NO_STALL: Duration = Duration::from_millis(3500);

/// Two namespace names whose slots belong to different primaries, and the port of the third
/// primary, which owns neither.
fn pick_namespaces(cluster: &RedisCluster) -> (String, String, u16) {
    let primaries: Vec<u16> = cluster.primaries().iter().map(|p| p.port()).collect();
    assert_eq!(primaries.len(), 3, "three primaries");
    let owner = |ns: &str| {
        cluster
            .owner_of_slot(slot_of(&format!("rtconfig:{{{ns}}}:meta")))
            .port()
    };
    let mut a = None;
    let mut b = None;
    for i in 0..200 {
        let ns = format!("ns{i}");
        let o = owner(&ns);
        match (&a, &b) {
            (None, _) => a = Some((ns, o)),
            (Some((_, oa)), None) if *oa != o => b = Some((ns, o)),
            _ => {}
        }
        if b.is_some() {
            break;
        }
    }
    let (a, oa) = a.expect("a namespace");
    let (b, ob) = b.expect("a second namespace on another primary");
    let third = *primaries
        .iter()
        .find(|p| **p != oa && **p != ob)
        .expect("a third primary");
    (a, b, third)
}

/// The demo schema under each namespace name, in `dir`.
fn write_schemas(dir: &Path, names: &[&str]) {
    let demo = std::fs::read_to_string(schema_dir().join("demo.toml")).expect("demo schema");
    for n in names {
        let text = demo.replace("namespace = \"demo\"", &format!("namespace = \"{n}\""));
        std::fs::write(dir.join(format!("{n}.toml")), text).expect("schema written");
    }
}

struct Deployment {
    admin: Running<AdminParts>,
    sidecars: Vec<(String, Running<SidecarParts>)>,
    client: reqwest::Client,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Deployment {
    async fn start(url: &str, names: &[&str]) -> Deployment {
        let schemas = tempfile::tempdir().expect("tempdir");
        write_schemas(schemas.path(), names);
        let data = tempfile::tempdir().expect("tempdir");
        let mut settings = AdminSettings::for_tests(
            schemas.path().to_path_buf(),
            data.path().join("ledger"),
            url,
        );
        settings.admin_token = Some(TOKEN.into());
        let admin = app::start_admin(settings).await.expect("admin starts");
        let mut sidecars = Vec::new();
        for n in names {
            let s = SidecarSettings {
                namespace: (*n).to_owned(),
                resync_interval: RESYNC,
                ..SidecarSettings::for_tests(schemas.path().to_path_buf(), url)
            };
            sidecars.push((
                (*n).to_owned(),
                app::start_sidecar(s).await.expect("sidecar starts"),
            ));
        }
        Deployment {
            admin,
            sidecars,
            client: http(),
            _dirs: (schemas, data),
        }
    }

    /// Sets SITE_NAME of `ns`; the acknowledged version.
    async fn write(&self, ns: &str, value: &str) -> u64 {
        let url = format!("http://{}/api/v1/namespaces/{ns}/configs", self.admin.addr);
        let resp = self
            .client
            .patch(&url)
            .bearer_auth(TOKEN)
            .json(&json!({ "changes": { "SITE_NAME": value } }))
            .send()
            .await
            .expect("admin answers");
        assert_eq!(resp.status(), 200, "write to {ns} acknowledged");
        let body: Value = resp.json().await.expect("json");
        body["version"].as_u64().expect("version")
    }

    fn sidecar(&self, ns: &str) -> &Running<SidecarParts> {
        &self
            .sidecars
            .iter()
            .find(|(n, _)| n == ns)
            .expect("sidecar")
            .1
    }

    /// (version, SITE_NAME, stale) a sidecar serves.
    async fn read(&self, ns: &str) -> Result<(u64, String, bool), String> {
        read(&self.client, self.sidecar(ns)).await
    }

    async fn wait_for(&self, ns: &str, version: u64, deadline: Duration) -> Duration {
        let started = Instant::now();
        eventually(
            deadline,
            &format!("{ns} serves version {version}"),
            || async {
                let (v, _, stale) = self.read(ns).await.ok()?;
                (v >= version && !stale).then_some(())
            },
        )
        .await;
        started.elapsed()
    }

    async fn stop(self) {
        for (_, s) in self.sidecars {
            s.stop().await;
        }
        self.admin.stop().await;
    }
}

async fn read(
    client: &reqwest::Client,
    sidecar: &Running<SidecarParts>,
) -> Result<(u64, String, bool), String> {
    let url = format!("http://{}/v1/configs", sidecar.read_addr);
    let resp = client.get(&url).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let v: Value = resp.json().await.map_err(|e| e.to_string())?;
    Ok((
        v["version"].as_u64().ok_or("version")?,
        v["values"]["SITE_NAME"]
            .as_str()
            .ok_or("SITE_NAME")?
            .to_owned(),
        v["stale"].as_bool().ok_or("stale")?,
    ))
}

/// What a reader saw: reads, failures, every distinct (namespace, version, SITE_NAME).
type ReadLog = (u64, Vec<String>, Vec<(String, u64, String)>);

/// Reads every sidecar in a loop; fails on any failed read or version going back.
struct Reader {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<ReadLog>,
}

impl Reader {
    fn start(d: &Deployment) -> Reader {
        let targets: Vec<(String, std::net::SocketAddr)> = d
            .sidecars
            .iter()
            .map(|(n, s)| (n.clone(), s.read_addr))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let client = http();
            let (mut reads, mut failures, mut seen) = (0u64, Vec::new(), Vec::new());
            let mut last: BTreeMap<String, u64> = BTreeMap::new();
            while !flag.load(Ordering::Relaxed) {
                for (ns, addr) in &targets {
                    reads += 1;
                    let url = format!("http://{addr}/v1/configs");
                    let r = async {
                        let v: Value = client
                            .get(&url)
                            .send()
                            .await
                            .map_err(|e| e.to_string())?
                            .error_for_status()
                            .map_err(|e| e.to_string())?
                            .json()
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok::<_, String>((
                            v["version"].as_u64().unwrap_or(0),
                            v["values"]["SITE_NAME"].as_str().unwrap_or("").to_owned(),
                        ))
                    }
                    .await;
                    match r {
                        Ok((v, site)) => {
                            let prev = last.insert(ns.clone(), v).unwrap_or(0);
                            if v < prev {
                                failures.push(format!("{ns} went back from {prev} to {v}"));
                            }
                            if v != prev {
                                seen.push((ns.clone(), v, site));
                            }
                        }
                        Err(e) => failures.push(format!("{ns}: {e}")),
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (reads, failures, seen)
        });
        Reader { stop, task }
    }

    /// Asserts no failed read, no regression, and every value seen at a version is the one
    /// acknowledged for that version (`written`: ns → version → SITE_NAME).
    async fn check(self, written: &BTreeMap<String, BTreeMap<u64, String>>) {
        self.stop.store(true, Ordering::Relaxed);
        let (reads, failures, seen) = self.task.await.expect("reader");
        assert!(
            failures.is_empty(),
            "{} of {reads} reads failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        for (ns, v, site) in &seen {
            if let Some(want) = written.get(ns).and_then(|w| w.get(v)) {
                assert_eq!(site, want, "{ns} at version {v} served another value");
            }
        }
        println!(
            "reads: {reads}, distinct answers: {}, failures: 0",
            seen.len()
        );
    }
}

/// Writes to each namespace in turn for `for_`; for those in `must_flow`, waits for each write
/// to be served and returns the worst delay. Records every acknowledged write.
async fn write_through(
    d: &Deployment,
    names: &[&str],
    must_flow: &[&str],
    for_: Duration,
    written: &mut BTreeMap<String, BTreeMap<u64, String>>,
    tag: &str,
) -> Duration {
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    let mut i = 0;
    while started.elapsed() < for_ {
        for ns in names {
            i += 1;
            let value = format!("{tag} {i}");
            let v = d.write(ns, &value).await;
            written
                .entry((*ns).to_owned())
                .or_default()
                .insert(v, value);
            if must_flow.contains(ns) {
                worst = worst.max(d.wait_for(ns, v, Duration::from_secs(30)).await);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worst
}

/// Sharded Pub/Sub (Redis ≥ 7, which the harness runs): each sidecar listens with
/// `SSUBSCRIBE` on its slot's owner, and the relay's scripts published every hint with
/// `SPUBLISH` on that node — never a plain `PUBLISH`, which the cluster bus would copy to every
/// node.
async fn assert_hints_are_sharded(cluster: &RedisCluster, d: &Deployment) {
    for (ns, sidecar) in &d.sidecars {
        assert_eq!(
            sidecar.sync.status()["pubsub"],
            json!("sharded"),
            "{ns}'s sidecar subscribes with SSUBSCRIBE"
        );
        let channel = format!("rtconfig:{{{ns}}}:changes");
        let owner = cluster.owner_of(&format!("{{{ns}}}"));
        eventually(
            Duration::from_secs(5),
            &format!("one shard subscriber of {channel} on its owner"),
            || async {
                let listeners = owner.cmd(&["PUBSUB", "SHARDNUMSUB", &channel]);
                (listeners.lines().nth(1) == Some("1")).then_some(())
            },
        )
        .await;
        let stats = owner.cmd(&["INFO", "commandstats"]);
        assert!(
            stats.contains("cmdstat_spublish:"),
            "the relay published {ns}'s hints with SPUBLISH on its owner"
        );
        assert!(
            !stats.contains("cmdstat_publish:"),
            "no plain PUBLISH on {ns}'s owner"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_primary_owning_neither_namespace_killed_stalls_neither() {
    a_fault_on_the_primary_owning_neither_stalls_neither(RedisServer::kill, "killed").await;
}

/// The same with the primary SIGSTOPped: its TCP connections stay open and nothing answers
/// until the unresponsive check (3 s) closes them and the cluster fails it over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_primary_owning_neither_namespace_frozen_stalls_neither() {
    a_fault_on_the_primary_owning_neither_stalls_neither(RedisServer::pause, "frozen").await;
}

async fn a_fault_on_the_primary_owning_neither_stalls_neither(fault: fn(&RedisServer), what: &str) {
    let cluster = RedisCluster::start();
    let (a, b, third) = pick_namespaces(&cluster);
    let names = [a.as_str(), b.as_str()];
    let d = Deployment::start(&cluster.url(), &names).await;
    let mut written = BTreeMap::new();
    write_through(
        &d,
        &names,
        &names,
        Duration::from_millis(500),
        &mut written,
        "warm",
    )
    .await;
    assert_hints_are_sharded(&cluster, &d).await;
    let reader = Reader::start(&d);
    let victim = cluster.by_port(third);
    fault(victim);
    let faulted = Instant::now();
    // Write through the whole failover window and a little after.
    let worst = write_through(
        &d,
        &names,
        &names,
        Duration::from_secs(6),
        &mut written,
        "during",
    )
    .await;
    let failover = cluster.wait_failover(&format!("{{{a}}}"), third, Duration::from_secs(30));
    println!(
        "{what} primary {third} (owns neither {a} nor {b}); worst write→served delay {worst:?}; \
         cluster healthy again {:?} after the fault",
        faulted.elapsed().saturating_sub(failover).max(failover)
    );
    assert!(
        worst < NO_STALL,
        "a write took {worst:?} to reach its sidecar while an unrelated primary was {what}"
    );
    reader.check(&written).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_owner_of_one_namespace_killed_the_other_flows_and_it_recovers() {
    let cluster = RedisCluster::start();
    let (a, b, _) = pick_namespaces(&cluster);
    let names = [a.as_str(), b.as_str()];
    let d = Deployment::start(&cluster.url(), &names).await;
    let mut written = BTreeMap::new();
    write_through(
        &d,
        &names,
        &names,
        Duration::from_millis(500),
        &mut written,
        "warm",
    )
    .await;
    let reader = Reader::start(&d);
    let owner = cluster.owner_of(&format!("{{{a}}}")).port();
    cluster.by_port(owner).kill();
    let killed = Instant::now();
    // B keeps flowing; A's writes are acknowledged (the ledger is the truth) and wait.
    let worst_b = write_through(
        &d,
        &names,
        &[b.as_str()],
        Duration::from_secs(4),
        &mut written,
        "during",
    )
    .await;
    assert!(
        worst_b < NO_STALL,
        "{b} took {worst_b:?} to serve a write while {a}'s primary was down"
    );
    cluster.wait_failover(&format!("{{{a}}}"), owner, Duration::from_secs(30));
    let failed_over = killed.elapsed();
    let last_a = *written[&a].keys().last().expect("writes to a");
    // Failover + one resync interval + the slot table refresh and a relay round, with margin.
    let caught_up = d.wait_for(&a, last_a, Duration::from_secs(10)).await;
    let (v, site, _) = d.read(&a).await.expect("read a");
    assert_eq!(v, last_a);
    assert_eq!(
        &site, &written[&a][&last_a],
        "{a} serves its last acknowledged write"
    );
    // The recovered namespace listens sharded on its new owner, which got its hints sharded.
    assert_hints_are_sharded(&cluster, &d).await;
    println!(
        "killed {a}'s primary {owner}: {b} worst delay {worst_b:?}; failover after {failed_over:?}; \
         {a} caught up {caught_up:?} later"
    );
    reader.check(&written).await;
    d.stop().await;
}
