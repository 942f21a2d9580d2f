//! PostgreSQL ledger commit benchmark: changesets/s and commit latency (p50/p99/max) with
//! `fsync=on`, for 1 and 8 concurrent writers over 1 and 8 namespaces at the `Ledger` API, and
//! one writer through the whole admin over HTTP (issue 12 item 6: ≥ 500 changesets/s).
//!
//! Spawns its own PostgreSQL cluster (like the test harness: `initdb` + `postgres` on a free
//! loopback port, as `postgres` when run as root) in a temporary directory, so it never touches
//! another server's data. Each scenario gets a fresh database and runs for
//! `RTCONFIG_BENCH_SECONDS` (default 5) after a short warm-up. Under `cargo test` (no `--bench`
//! argument) it only smoke-tests each scenario for 0.1 s.
//!
//! The HTTP scenario runs the real admin (`app::start_admin` on PostgreSQL, its relay on a
//! spawned `redis-server`) on its own tokio runtime, as if it were another process, and one
//! client that sends `PATCH /api/v1/namespaces/demo/configs` (two keys, an `Idempotency-Key`)
//! back to back with an editor API token, each after the previous answer. `--pg-url URL` runs it against an existing
//! server instead (e.g. `postgres://postgres@127.0.0.1:5432`): a fresh database is created
//! there and dropped after. Sections (substring filter on the arguments): `ledger`, `http`.
//!
//! The spawned cluster preloads `pg_stat_statements`: after each 1-writer scenario (and the
//! HTTP one) the bench prints every statement PostgreSQL executed per commit or per PATCH, with
//! its mean server time: on the admin's connections each statement is one round trip.
//!
//! ```text
//! cargo bench --bench pg_ledger
//! cargo bench --bench pg_ledger -- http --pg-url postgres://postgres@127.0.0.1:5432
//! ```

#[allow(unused_imports)]
#[path = "../tests/it/harness/mod.rs"]
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::postgres::{pg_bins, PgCluster, PgOptions};
use harness::redis::RedisServer;
use rtconfig::app::{self, AdminSettings};
use rtconfig::ledger::postgres::{PgLedger, PgSettings};
use rtconfig::ledger::{ChangeMeta, CommitRequest, Ledger};
use serde_json::{json, Value};

const TOKEN: &str = "bench-admin-token-0123456789";

struct Outcome {
    commits: usize,
    /// What PostgreSQL executed per commit (`Statements::report`), when counted.
    statements: Option<String>,
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
    statements: Option<&Statements<'_>>,
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
    if let Some(s) = statements {
        s.reset();
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
                    return (latencies, i as usize);
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
    let mut total = 0;
    for t in tasks {
        let (l, n) = t.await.expect("writer");
        latencies.extend(l);
        total += n;
    }
    let statements = statements.map(|s| s.report("commit", total));
    latencies.sort_unstable();
    Outcome {
        commits: latencies.len(),
        statements,
        elapsed: run,
        latencies,
    }
}

/// One writer through the admin's HTTP API: PATCH after PATCH, each sent when the previous
/// answer is in. The admin runs on `admin_rt` (its own worker threads), the client here.
async fn http_scenario(
    admin_rt: &tokio::runtime::Handle,
    database_url: &str,
    redis_url: &str,
    warmup: Duration,
    run: Duration,
    statements: Option<&Statements<'_>>,
) -> Outcome {
    let schema_dir = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config"));
    let mut settings = AdminSettings::for_tests_pg(schema_dir, database_url, redis_url);
    settings.admin_token = Some(TOKEN.into());
    settings.relay_interval = Duration::from_secs(1);
    let running = admin_rt
        .spawn(app::start_admin(settings))
        .await
        .expect("admin start task")
        .expect("the admin starts");
    let url = format!("http://{}/api/v1/namespaces/demo/configs", running.addr);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    // A writer uses an API token (as CI does): every use of the bootstrap token is audited,
    // which would add a second fsynced INSERT per request; an API token's use is booked at
    // most once a minute.
    let created: Value = http
        .post(format!("http://{}/api/v1/tokens", running.addr))
        .bearer_auth(TOKEN)
        .json(&json!({ "name": "bench-writer", "role": "editor" }))
        .send()
        .await
        .expect("POST /api/v1/tokens")
        .json()
        .await
        .expect("token answer");
    let token = created["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {created}"))
        .to_owned();
    let mut measure_from = Instant::now() + warmup;
    let mut end = measure_from + run;
    let mut latencies = Vec::new();
    let mut i = 0u64;
    let mut counting = false;
    while Instant::now() < end {
        if !counting && Instant::now() >= measure_from {
            // The statement counters start with the measured PATCHes.
            counting = true;
            if let Some(s) = statements {
                s.reset();
            }
            measure_from = Instant::now();
            end = measure_from + run;
        }
        i += 1;
        let t = Instant::now();
        let resp = http
            .patch(&url)
            .bearer_auth(&token)
            .header("Idempotency-Key", format!("http-{i}"))
            .json(&json!({
                "changes": { "SITE_NAME": format!("http write {i}"), "ITEMS_PER_PAGE": i % 100 + 1 },
                "comment": "benchmark",
            }))
            .send()
            .await
            .expect("PATCH");
        let status = resp.status();
        let body: Value = resp.json().await.expect("admin answer");
        assert!(status.is_success(), "admin answered {status}: {body}");
        assert!(body["version"].as_u64().is_some(), "no version in {body}");
        if t >= measure_from {
            latencies.push(t.elapsed());
        }
    }
    let statements = statements.map(|s| s.report("PATCH", latencies.len()));
    let _ = admin_rt.spawn(running.stop()).await;
    latencies.sort_unstable();
    Outcome {
        commits: latencies.len(),
        statements,
        elapsed: run,
        latencies,
    }
}

/// Counts the statements PostgreSQL executed in one database (`pg_stat_statements`, preloaded
/// in the spawned cluster, utility statements such as BEGIN and COMMIT included): on a
/// connection that waits for each answer before sending the next statement, as every
/// connection of the admin does, each is one round trip.
struct Statements<'a> {
    pg: &'a PgCluster,
    db: String,
}

impl Statements<'_> {
    fn new<'a>(pg: &'a PgCluster, db: &str) -> Statements<'a> {
        pg.psql(db, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
        Statements {
            pg,
            db: db.to_owned(),
        }
    }

    fn reset(&self) {
        self.pg.psql(&self.db, "SELECT pg_stat_statements_reset()");
    }

    /// The statements per `what` (`per` of them since the last reset), most frequent first, as
    /// a table.
    fn report(&self, what: &str, per: usize) -> String {
        use std::fmt::Write;
        let rows = self.pg.psql(
            &self.db,
            "SELECT calls, round(mean_exec_time::numeric * 1000), regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND query NOT LIKE '%pg_stat_statements%' ORDER BY calls DESC, query",
        );
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| per {what} ({per}) | µs each (server) | statement |\n|---:|---:|---|"
        );
        let per = per.max(1) as f64;
        let mut total = 0.0;
        for line in rows.lines() {
            let mut cols = line.splitn(3, '|');
            let (Some(calls), Some(micros), Some(query)) = (cols.next(), cols.next(), cols.next())
            else {
                continue;
            };
            let calls: f64 = calls.trim().parse().unwrap_or(0.0);
            total += calls / per;
            let query: String = query.chars().take(120).collect();
            let _ = writeln!(
                out,
                "| {:.2} | {micros} | `{}` |",
                calls / per,
                query.replace('|', "\\|")
            );
        }
        let _ = writeln!(out, "| **{total:.2}** | | all statements |");
        out
    }
}

/// `psql` against an existing server (`--pg-url`), database `postgres`; panics on error.
fn external_psql(base_url: &str, sql: &str) {
    let psql = pg_bins().psql;
    let out = std::process::Command::new(&psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(format!("{}/postgres", base_url.trim_end_matches('/')))
        .args(["-c", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn print_row(label: &str, out: &Outcome) {
    println!(
        "| {label} | {:.0} | {} | {} | {} |",
        out.commits as f64 / out.elapsed.as_secs_f64(),
        ms(percentile(&out.latencies, 50.0)),
        ms(percentile(&out.latencies, 99.0)),
        ms(out.latencies.last().copied().unwrap_or_default()),
    );
}

fn main() {
    // `cargo test --all-targets` runs this without `--bench`: a short smoke run then.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let measuring = args.iter().any(|a| a == "--bench");
    let pg_url = args
        .iter()
        .position(|a| a == "--pg-url")
        .and_then(|i| args.get(i + 1).cloned());
    let filters: Vec<&String> = args
        .iter()
        .filter(|a| !a.starts_with("--") && Some(*a) != pg_url.as_ref())
        .collect();
    let wanted =
        |section: &str| filters.is_empty() || filters.iter().any(|f| section.contains(f.as_str()));
    let seconds: f64 = std::env::var("RTCONFIG_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if measuring { 5.0 } else { 0.1 });
    let run = Duration::from_secs_f64(seconds);
    let warmup = Duration::from_millis(if measuring { 500 } else { 0 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pg = (wanted("ledger") || pg_url.is_none()).then(|| {
        PgCluster::start_with(PgOptions {
            fsync: true,
            // Counts the statements of the 1-writer scenarios (`Statements`).
            settings: vec![(
                "shared_preload_libraries".into(),
                "pg_stat_statements".into(),
            )],
            ..PgOptions::default()
        })
    });
    if let Some(pg) = &pg {
        let fsync = pg.psql("postgres", "SHOW fsync");
        let sync_commit = pg.psql("postgres", "SHOW synchronous_commit");
        let version = pg.psql("postgres", "SHOW server_version");
        println!(
            "Spawned PostgreSQL {version}, fsync={fsync}, synchronous_commit={sync_commit}; {seconds} s per scenario after a {warmup:?} warm-up; each changeset sets 2 keys with an Idempotency-Key\n"
        );
    }
    if let (true, Some(pg)) = (wanted("ledger"), &pg) {
        println!("At the `Ledger` API:\n");
        println!("| writers | namespaces | changesets/s | p50 ms | p99 ms | max ms |");
        println!("|---:|---:|---:|---:|---:|---:|");
        let mut counts = Vec::new();
        // 1 | 1 again at the end: is one namespace slower than eight, or only the first run of a
        // fresh cluster?
        for (writers, namespaces) in [(1, 1), (1, 8), (8, 1), (8, 8), (1, 1)] {
            let db = pg.create_database();
            let url = pg.url(&db);
            let statements = (writers == 1).then(|| Statements::new(pg, &db));
            let out = runtime.block_on(scenario(
                &url,
                writers,
                namespaces,
                warmup,
                run,
                statements.as_ref(),
            ));
            print_row(&format!("{writers} | {namespaces}"), &out);
            if let Some(s) = out.statements {
                counts.push((format!("{writers} writer, {namespaces} namespace(s)"), s));
            }
        }
        for (label, table) in counts {
            println!("\nStatements PostgreSQL executed per commit, {label} (pg_stat_statements):\n\n{table}");
        }
        println!();
    }
    if wanted("http") {
        let redis = RedisServer::start();
        // The admin's runtime: the production worker count (one per core), as another process.
        let admin_rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("admin")
            .build()
            .expect("admin runtime");
        let mut http_statements = None;
        let (database_url, drop_after) = match (&pg_url, &pg) {
            (Some(base), _) => {
                let name = format!("rtconfig_bench_http_{}", std::process::id());
                external_psql(base, &format!("CREATE DATABASE \"{name}\""));
                (
                    format!("{}/{name}", base.trim_end_matches('/')),
                    Some((base.clone(), name)),
                )
            }
            (None, Some(pg)) => {
                let db = pg.create_database();
                http_statements = Some(Statements::new(pg, &db));
                (pg.url(&db), None)
            }
            (None, None) => unreachable!("a cluster is spawned when no --pg-url is given"),
        };
        let where_ = pg_url.as_deref().unwrap_or("the spawned cluster");
        println!("Through the admin over HTTP (PostgreSQL: {where_}, fresh database):\n");
        println!("| writers | changesets/s | p50 ms | p99 ms | max ms |");
        println!("|---:|---:|---:|---:|---:|");
        let out = runtime.block_on(http_scenario(
            admin_rt.handle(),
            &database_url,
            &redis.url(),
            warmup,
            run,
            http_statements.as_ref(),
        ));
        assert!(out.commits > 0, "no changeset committed");
        print_row("1", &out);
        if let Some(s) = &out.statements {
            println!("\nStatements PostgreSQL executed per PATCH (pg_stat_statements, every connection of the admin: request path and relay):\n\n{s}");
        }
        admin_rt.shutdown_timeout(Duration::from_secs(5));
        if let Some((base, name)) = drop_after {
            external_psql(&base, &format!("DROP DATABASE \"{name}\" WITH (FORCE)"));
        }
    }
}
