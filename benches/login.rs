//! The login benchmark (issue 8, "Measure"): sign-in latency and sign-ins/s under 32
//! concurrent attempts, and whether the sidecar read API and the admin's reads slow down during
//! such a flood (password hashing runs on the blocking pool behind a small semaphore,
//! `auth::password::Hasher`, so it must not starve the async workers). The figures are recorded
//! in `docs/PERFORMANCE.md` under "Sign-in".
//!
//! Only the real code over real sockets: `rtconfig dev` (`app::start_dev`: the embedded ledger
//! and auth store in a temp dir, the sidecar read API, the admin) on its own tokio runtime with
//! the production worker count (one per core), as if it were another process; the load runs on
//! a second runtime. A user `bench` (role viewer) is created in the store with a real argon2id
//! hash; every sign-in is `POST /api/v1/session` with the right password (a wrong one would be
//! throttled after 10 failures and refused *without* hashing: no flood at all), so each costs
//! one full argon2id verification and one fsynced session write.
//!
//! Phases alternate `quiet` (readers only) and `flood` (the same readers plus N sign-in tasks in a
//! closed loop), each for the same time, `rounds` times, so a drift in the shared machine's load
//! does not favour one side. Readers are paced (open loop: a request every `--read-every-ms`
//! per reader, the next one starting on time or at once when late), so their latency measures
//! responsiveness, not how much CPU they can grab:
//! - 4 sidecar readers: `GET /v1/configs/SITE_NAME` on the read port;
//! - 2 admin readers: `GET /api/v1/namespaces/demo/configs` with the dev token.
//!
//! Printed: per phase kind (all rounds together) p50/p99/max and requests/s of each class, the
//! flood/quiet ratios, and sign-ins/s with their p50/p99/max.
//!
//! ```text
//! CARGO_PROFILE_BENCH_LTO=false CARGO_PROFILE_BENCH_CODEGEN_UNITS=16 cargo bench --bench login -- --full
//! ```
//!
//! `cargo test --all-targets` and a plain `cargo bench` run the quick profile (1 s phases, one
//! round, 8 sign-in tasks); `--full` is 10 s phases, 3 rounds, 32 tasks. Overrides:
//! `--seconds N`, `--rounds N`, `--logins N`, `--read-every-ms N`. Other `-…` flags are ignored.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use parking_lot::Mutex;
use rtconfig::app::{self, DevSettings};
use rtconfig::auth::store::NewUser;
use rtconfig::auth::{Grant, Grants, Role};
use serde_json::json;

const PASSWORD: &str = "correct horse battery staple 42";
const SIDECAR_READERS: usize = 4;
const ADMIN_READERS: usize = 2;

#[derive(Debug, Clone)]
struct Opts {
    seconds: u64,
    rounds: usize,
    logins: usize,
    read_every: Duration,
}

impl Opts {
    fn parse(args: Vec<String>) -> Result<Opts> {
        let mut o = Opts {
            seconds: 1,
            rounds: 1,
            logins: 8,
            read_every: Duration::from_millis(10),
        };
        let full = args.iter().any(|a| a == "--full");
        if full {
            o.seconds = 10;
            o.rounds = 3;
            o.logins = 32;
        }
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let mut num = |name: &str| -> Result<u64> {
                it.next()
                    .with_context(|| format!("{name} needs a number"))?
                    .parse()
                    .with_context(|| format!("{name} needs a number"))
            };
            match a.as_str() {
                "--seconds" => o.seconds = num("--seconds")?,
                "--rounds" => o.rounds = num("--rounds")? as usize,
                "--logins" => o.logins = num("--logins")? as usize,
                "--read-every-ms" => o.read_every = Duration::from_millis(num("--read-every-ms")?),
                _ => {} // --full, --bench and libtest's flags
            }
        }
        if o.seconds == 0 || o.rounds == 0 || o.logins == 0 {
            bail!("--seconds, --rounds and --logins must be at least 1");
        }
        Ok(o)
    }
}

/// Latencies of one class of request.
#[derive(Default)]
struct Samples {
    ok: Vec<Duration>,
    failed: usize,
    elapsed: Duration,
}

impl Samples {
    fn add(&mut self, other: Samples) {
        self.ok.extend(other.ok);
        self.failed += other.failed;
        self.elapsed += other.elapsed;
    }

    fn pct(&self, p: f64) -> f64 {
        let mut v: Vec<f64> = self.ok.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i.min(v.len() - 1)]
    }

    fn per_sec(&self) -> f64 {
        self.ok.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn row(&self, name: &str) -> String {
        format!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
            self.per_sec(),
            self.pct(0.5),
            self.pct(0.99),
            self.pct(1.0),
            self.failed
        )
    }
}

/// One timed request; `Err` when it failed or answered something else than `want`.
async fn timed(rb: reqwest::RequestBuilder, want: u16) -> Result<Duration, ()> {
    let start = Instant::now();
    let resp = rb.send().await.map_err(|_| ())?;
    let status = resp.status().as_u16();
    resp.bytes().await.map_err(|_| ())?;
    (status == want).then(|| start.elapsed()).ok_or(())
}

/// A paced reader until `stop`: a request every `every`.
async fn reader(
    make: impl Fn() -> reqwest::RequestBuilder,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> Samples {
    let mut s = Samples::default();
    let start = Instant::now();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        match timed(make(), 200).await {
            Ok(d) => s.ok.push(d),
            Err(()) => s.failed += 1,
        }
    }
    s.elapsed = start.elapsed();
    s
}

/// A sign-in task in a closed loop until `stop`.
async fn signer(client: reqwest::Client, admin: SocketAddr, stop: Arc<AtomicBool>) -> Samples {
    let mut s = Samples::default();
    let start = Instant::now();
    let url = format!("http://{admin}/api/v1/session");
    let origin = format!("http://{admin}");
    while !stop.load(Ordering::Relaxed) {
        let rb = client
            .post(&url)
            .header("origin", &origin)
            .json(&json!({"username": "bench", "password": PASSWORD}));
        match timed(rb, 200).await {
            Ok(d) => s.ok.push(d),
            Err(()) => s.failed += 1,
        }
    }
    s.elapsed = start.elapsed();
    s
}

struct Phase {
    sidecar: Samples,
    admin: Samples,
    logins: Samples,
}

async fn phase(
    o: &Opts,
    read: SocketAddr,
    admin: SocketAddr,
    token: &str,
    flood: bool,
) -> Result<Phase> {
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let every = o.read_every;
    let mut sidecar = Vec::new();
    for _ in 0..SIDECAR_READERS {
        let (c, stop) = (client.clone(), stop.clone());
        let url = format!("http://{read}/v1/configs/SITE_NAME");
        sidecar.push(tokio::spawn(async move {
            reader(|| c.get(&url), every, stop).await
        }));
    }
    let mut admins = Vec::new();
    for _ in 0..ADMIN_READERS {
        let (c, stop) = (client.clone(), stop.clone());
        let url = format!("http://{admin}/api/v1/namespaces/demo/configs");
        let auth = format!("Bearer {token}");
        admins.push(tokio::spawn(async move {
            reader(
                || c.get(&url).header("authorization", &auth),
                every * 5,
                stop,
            )
            .await
        }));
    }
    let mut signers = Vec::new();
    if flood {
        for _ in 0..o.logins {
            // Each sign-in task is its own browser: no shared cookie jar.
            let c = reqwest::Client::new();
            signers.push(tokio::spawn(signer(c, admin, stop.clone())));
        }
    }
    tokio::time::sleep(Duration::from_secs(o.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut p = Phase {
        sidecar: Samples::default(),
        admin: Samples::default(),
        logins: Samples::default(),
    };
    for h in sidecar {
        p.sidecar.add(h.await?);
    }
    for h in admins {
        p.admin.add(h.await?);
    }
    for h in signers {
        p.logins.add(h.await?);
    }
    // Elapsed is summed over tasks; per-second rates are over the phase's wall time.
    let wall = Duration::from_secs(o.seconds);
    p.sidecar.elapsed = wall;
    p.admin.elapsed = wall;
    p.logins.elapsed = wall;
    Ok(p)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

async fn run(o: Opts, dev_rt: tokio::runtime::Handle) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let schema_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let settings = DevSettings::for_tests(schema_dir, dir.path().join("data"));
    let running = dev_rt
        .spawn(async move { app::start_dev(settings).await })
        .await?
        .context("start rtconfig dev")?;
    let (read, admin) = (running.read_addr, running.admin_addr);
    let token = std::fs::read_to_string(&running.dev_token_path)?
        .trim()
        .to_owned();
    let auth = running.auth.clone();
    dev_rt
        .spawn(async move {
            let hash = auth.hasher.hash(PASSWORD).await?;
            auth.store
                .create_user(NewUser {
                    username: "bench".into(),
                    grants: Grants::new(vec![Grant::global(Role::Viewer)]),
                    password_hash: Some(hash),
                    oidc: None,
                })
                .await?;
            anyhow::Ok(())
        })
        .await??;
    println!(
        "login bench: {} s phases, {} round(s), {} sign-in tasks, readers: {SIDECAR_READERS} sidecar every {:?}, {ADMIN_READERS} admin every {:?}; {} cores; load average {}",
        o.seconds,
        o.rounds,
        o.logins,
        o.read_every,
        o.read_every * 5,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    // Warm-up, not counted: one sign-in and a few reads.
    phase(
        &Opts {
            seconds: 1,
            logins: 1,
            ..o.clone()
        },
        read,
        admin,
        &token,
        true,
    )
    .await?;
    let mut quiet = Phase {
        sidecar: Samples::default(),
        admin: Samples::default(),
        logins: Samples::default(),
    };
    let mut flood = Phase {
        sidecar: Samples::default(),
        admin: Samples::default(),
        logins: Samples::default(),
    };
    for round in 0..o.rounds {
        // quiet, flood | flood, quiet | …
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for is_flood in order {
            let p = phase(&o, read, admin, &token, is_flood).await?;
            println!(
                "round {} {}: sidecar p99 {:.2} ms, admin p99 {:.2} ms, sign-ins/s {:.1}",
                round + 1,
                if is_flood { "flood" } else { "quiet" },
                p.sidecar.pct(0.99),
                p.admin.pct(0.99),
                p.logins.per_sec()
            );
            let into = if is_flood { &mut flood } else { &mut quiet };
            into.sidecar.add(p.sidecar);
            into.admin.add(p.admin);
            into.logins.add(p.logins);
        }
    }
    let report = Mutex::new(Vec::<String>::new());
    let out = |l: String| report.lock().push(l);
    out(String::new());
    out("| phase / class | req/s | p50 ms | p99 ms | max ms | failed |".into());
    out("|---|---:|---:|---:|---:|---:|".into());
    out(quiet
        .sidecar
        .row("quiet: sidecar GET /v1/configs/SITE_NAME"));
    out(flood
        .sidecar
        .row("flood: sidecar GET /v1/configs/SITE_NAME"));
    out(quiet.admin.row("quiet: admin GET …/configs"));
    out(flood.admin.row("flood: admin GET …/configs"));
    out(flood.logins.row(&format!(
        "flood: POST /api/v1/session ({} concurrent)",
        o.logins
    )));
    out(String::new());
    out(format!(
        "flood/quiet p99: sidecar {:.2}x, admin {:.2}x; p50: sidecar {:.2}x, admin {:.2}x",
        flood.sidecar.pct(0.99) / quiet.sidecar.pct(0.99),
        flood.admin.pct(0.99) / quiet.admin.pct(0.99),
        flood.sidecar.pct(0.5) / quiet.sidecar.pct(0.5),
        flood.admin.pct(0.5) / quiet.admin.pct(0.5),
    ));
    out(format!("load average at the end: {}", loadavg()));
    for l in report.lock().iter() {
        println!("{l}");
    }
    if flood.logins.ok.is_empty() {
        bail!("no sign-in succeeded ({} failed)", flood.logins.failed);
    }
    if quiet.sidecar.ok.is_empty() || flood.sidecar.ok.is_empty() {
        bail!("the sidecar readers got no answer");
    }
    dev_rt.spawn(async move { running.stop().await }).await?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match Opts::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("login: {e:#}");
            std::process::exit(2);
        }
    };
    // `rtconfig dev` on its own runtime with the production worker count, as if it were
    // another process; the load on a second one.
    let dev_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("dev")
        .enable_all()
        .build()
        .expect("dev runtime");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()
        .expect("load runtime");
    let result = rt.block_on(run(opts, dev_rt.handle().clone()));
    rt.shutdown_timeout(Duration::from_secs(5));
    dev_rt.shutdown_timeout(Duration::from_secs(5));
    if let Err(e) = result {
        eprintln!("login: FAILED: {e:#}");
        std::process::exit(1);
    }
}
