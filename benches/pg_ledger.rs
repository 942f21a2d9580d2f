//! PostgreSQL ledger commit benchmark: changesets/s and commit latency (p50/p99/max) with
//! `fsync=on`, for 1 and 8 concurrent writers over 1 and 8 namespaces.
//!
//! Spawns its own PostgreSQL cluster (like the test harness: `initdb` + `postgres` on a free
//! loopback port, as `postgres` when run as root) in a temporary directory, so it never touches
//! another server's data. Each scenario gets a fresh database and runs for
//! `RTCONFIG_BENCH_SECONDS` (default 5) after a short warm-up. Under `cargo test` (no `--bench`
//! argument) it only smoke-tests each scenario for 0.1 s.
//!
//! ```text
//! cargo bench --bench pg_ledger
//! ```

#[allow(unused_imports)]
#[path = "../tests/it/harness/mod.rs"]
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::postgres::{PgCluster, PgOptions};
use rtconfig::ledger::postgres::{PgLedger, PgSettings};
use rtconfig::ledger::{ChangeMeta, CommitRequest, Ledger};
use serde_json::json;

struct Outcome {
    commits: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

async fn scenario(
    url: &str,
    writers: usize,
    namespaces: usize,
    warmup: Duration,
    run: Duration,
) -> Outcome {
    let ledger = Arc::new(
        PgLedger::open("bench", PgSettings::new(url))
            .await
            .expect("open the ledger"),
    );
    let names: Vec<String> = (0..namespaces).map(|n| format!("ns{n}")).collect();
    for ns in &names {
        ledger.ensure_namespace(ns).await.expect("namespace");
    }
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + run;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let ledger = ledger.clone();
        let names = names.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            loop {
                let now = Instant::now();
                if now >= end {
                    return latencies;
                }
                i += 1;
                // Each writer goes round the namespaces.
                let ns = &names[(w + i as usize) % names.len()];
                let request = CommitRequest {
                    namespace: ns.clone(),
                    changes: vec![
                        ("SITE_NAME".into(), Some(json!(format!("w{w}-{i}")))),
                        ("ITEMS_PER_PAGE".into(), Some(json!(i % 100 + 1))),
                    ],
                    meta: ChangeMeta {
                        actor: "bench".into(),
                        comment: "benchmark".into(),
                        request_id: format!("req-{w}-{i}"),
                        client_ip: Some("127.0.0.1".into()),
                        ..ChangeMeta::default()
                    },
                    idempotency_key: Some(format!("{w}-{i}")),
                    fingerprint: format!("fp-{w}-{i}"),
                    ..CommitRequest::default()
                };
                let t = Instant::now();
                ledger.commit(request).await.expect("commit");
                if t >= measure_from {
                    latencies.push(t.elapsed());
                }
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("writer"));
    }
    latencies.sort_unstable();
    Outcome {
        commits: latencies.len(),
        elapsed: run,
        latencies,
    }
}

fn main() {
    // `cargo test --all-targets` runs this without `--bench`: a short smoke run then.
    let measuring = std::env::args().any(|a| a == "--bench");
    let seconds: f64 = std::env::var("RTCONFIG_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if measuring { 5.0 } else { 0.1 });
    let run = Duration::from_secs_f64(seconds);
    let warmup = Duration::from_millis(if measuring { 500 } else { 0 });
    let pg = PgCluster::start_with(PgOptions {
        fsync: true,
        ..PgOptions::default()
    });
    let fsync = pg.psql("postgres", "SHOW fsync");
    let sync_commit = pg.psql("postgres", "SHOW synchronous_commit");
    let version = pg.psql("postgres", "SHOW server_version");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "PostgreSQL {version}, fsync={fsync}, synchronous_commit={sync_commit}; {seconds} s per scenario after a {warmup:?} warm-up; each changeset sets 2 keys with an Idempotency-Key\n"
    );
    println!("| writers | namespaces | changesets/s | p50 ms | p99 ms | max ms |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (writers, namespaces) in [(1, 1), (1, 8), (8, 1), (8, 8)] {
        let db = pg.create_database();
        let url = pg.url(&db);
        let out = runtime.block_on(scenario(&url, writers, namespaces, warmup, run));
        println!(
            "| {writers} | {namespaces} | {:.0} | {} | {} | {} |",
            out.commits as f64 / out.elapsed.as_secs_f64(),
            ms(percentile(&out.latencies, 50.0)),
            ms(percentile(&out.latencies, 99.0)),
            ms(out.latencies.last().copied().unwrap_or_default()),
        );
    }
}
