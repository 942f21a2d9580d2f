//! The command line: `rtconfig dev | sidecar | admin | check | health`. Every flag also reads `RTCONFIG_<FLAG>`.
//!
//! Exit codes: 0 success, 64 (`EX_USAGE`) for bad flags, settings or schema files, 1 for
//! failures at run time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::app::{self, DevSettings};
use crate::ledger::postgres::PgSettings;
use crate::schema::SchemaSet;
use crate::telemetry::{self, Chain, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "rtconfig",
    version,
    about = "Realtime configuration: a per-pod sidecar serving every value from memory, and an admin service with a change ledger"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format: auto (JSON unless on a terminal), json, pretty. Level: RUST_LOG.
    #[arg(long, env = "RTCONFIG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
pub enum Command {
    /// Admin + sidecar in one process on the embedded store (no Redis, no PostgreSQL).
    Dev(DevArgs),
    /// The per-pod read service for one namespace, synced from Redis.
    Sidecar(SidecarArgs),
    /// The shared write service: JSON API and the relay that projects the ledger into Redis
    /// (`admin migrate`, `admin reconcile --force`: maintenance).
    Admin(AdminArgs),
    /// Validate schema files; prints every problem and exits 64, or 0 when all is well.
    Check(CheckArgs),
    /// Probe a URL (for images without curl): exit 0 on a 2xx answer, 1 otherwise.
    Health(HealthArgs),
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Directory of namespace schema files (*.toml).
    #[arg(long, env = "RTCONFIG_SCHEMA_DIR", default_value = "config")]
    pub schema_dir: PathBuf,
    /// Directory of the embedded ledger (created if missing).
    #[arg(long, env = "RTCONFIG_DATA_DIR", default_value = ".rtconfig")]
    pub data_dir: PathBuf,
    /// Namespace the sidecar read API serves (the admin serves every namespace).
    #[arg(long, env = "RTCONFIG_NAMESPACE", default_value = "demo")]
    pub namespace: String,
    /// This deployment's name; recorded in the ledger, which refuses another.
    #[arg(long, env = "RTCONFIG_CLUSTER_ID", default_value = "default")]
    pub cluster_id: String,
    /// Sidecar read API address (loopback only unless --allow-non-loopback).
    #[arg(long, env = "RTCONFIG_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Admin API address.
    #[arg(long, env = "RTCONFIG_ADMIN_LISTEN", default_value = "127.0.0.1:8080")]
    pub admin_listen: SocketAddr,
    /// Probe and metrics address of the sidecar.
    #[arg(long, env = "RTCONFIG_PROBE_LISTEN", default_value = "127.0.0.1:7071")]
    pub probe_listen: SocketAddr,
    /// Serve the read API on a non-loopback --listen address.
    #[arg(long, env = "RTCONFIG_ALLOW_NON_LOOPBACK")]
    pub allow_non_loopback: bool,
    /// Most long-polls and SSE streams open at once; more get 503 with Retry-After.
    #[arg(long, env = "RTCONFIG_MAX_WATCHERS", default_value_t = 1024)]
    pub max_watchers: usize,
    /// Seconds to let in-flight requests finish on SIGTERM/SIGINT.
    #[arg(long, env = "RTCONFIG_DRAIN_TIMEOUT", default_value_t = 10.0)]
    pub drain_timeout: f64,
    /// Require `Authorization: Bearer <token>` on the admin API.
    #[arg(long, env = "RTCONFIG_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct SidecarArgs {
    /// Directory of namespace schema files (*.toml); gives types and defaults.
    #[arg(long, env = "RTCONFIG_SCHEMA_DIR", default_value = "config")]
    pub schema_dir: PathBuf,
    /// The namespace this sidecar serves.
    #[arg(long, env = "RTCONFIG_NAMESPACE")]
    pub namespace: String,
    /// redis://, rediss:// (TLS), redis-sentinel:// or redis-cluster:// URL.
    #[arg(long, env = "RTCONFIG_REDIS_URL", hide_env_values = true)]
    pub redis_url: String,
    /// This deployment's name: data of another cluster id in Redis is never applied.
    #[arg(long, env = "RTCONFIG_CLUSTER_ID", default_value = "default")]
    pub cluster_id: String,
    /// Read API address (loopback only unless --allow-non-loopback).
    #[arg(long, env = "RTCONFIG_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Probe and metrics address.
    #[arg(long, env = "RTCONFIG_PROBE_LISTEN", default_value = "0.0.0.0:7071")]
    pub probe_listen: SocketAddr,
    /// Serve the read API on a non-loopback --listen address.
    #[arg(long, env = "RTCONFIG_ALLOW_NON_LOOPBACK")]
    pub allow_non_loopback: bool,
    /// Disk snapshot file: written after every change, served at a cold start without Redis.
    #[arg(long, env = "RTCONFIG_SNAPSHOT_PATH")]
    pub snapshot_path: Option<PathBuf>,
    /// Seconds between resyncs with Redis (fractions allowed; ±20 % jitter).
    #[arg(long, env = "RTCONFIG_RESYNC_INTERVAL", default_value_t = 5.0)]
    pub resync_interval: f64,
    /// Stay not-ready until a real snapshot (Redis or disk) is loaded, instead of serving defaults.
    #[arg(long, env = "RTCONFIG_REQUIRE_SNAPSHOT")]
    pub require_snapshot: bool,
    /// Most long-polls and SSE streams open at once.
    #[arg(long, env = "RTCONFIG_MAX_WATCHERS", default_value_t = 1024)]
    pub max_watchers: usize,
    /// Seconds to let in-flight requests finish on SIGTERM/SIGINT.
    #[arg(long, env = "RTCONFIG_DRAIN_TIMEOUT", default_value_t = 10.0)]
    pub drain_timeout: f64,
    /// Name in the fleet view (default: $HOSTNAME-pid).
    #[arg(long, env = "RTCONFIG_INSTANCE_ID")]
    pub instance_id: Option<String>,
}

/// Where the admin's ledger is: exactly one of `--database-url` and `--data-dir`.
#[derive(Debug, Args)]
pub struct LedgerArgs {
    /// PostgreSQL ledger: postgres://user:password@host:port/db (any number of admins).
    #[arg(
        long,
        env = "RTCONFIG_DATABASE_URL",
        hide_env_values = true,
        conflicts_with = "data_dir"
    )]
    pub database_url: Option<String>,
    /// Embedded ledger directory (one admin only; guarded by a lock file).
    #[arg(long, env = "RTCONFIG_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl LedgerArgs {
    fn ledger(self) -> Result<app::AdminLedger, String> {
        match (self.database_url, self.data_dir) {
            (Some(url), None) => {
                crate::ledger::postgres::parse_url(&url).map_err(|e| Chain(&e).to_string())?;
                Ok(app::AdminLedger::Postgres(PgSettings::new(&url)))
            }
            (None, Some(data_dir)) => Ok(app::AdminLedger::Embedded { data_dir }),
            (Some(_), Some(_)) => Err("give --database-url or --data-dir, not both".into()),
            (None, None) => Err(
                "the admin needs a ledger: --database-url (PostgreSQL) or --data-dir (embedded)"
                    .into(),
            ),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Apply the PostgreSQL migrations and exit (the admin also applies them at start).
    Migrate(MigrateArgs),
    /// After restoring the ledger from a backup: raise the epoch so the relay rebuilds a Redis
    /// that is ahead of the ledger (writes answer 503 ledger_behind until then).
    Reconcile(ReconcileArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// postgres://user:password@host:port/db
    #[arg(long, env = "RTCONFIG_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// Really bump the epoch (sidecars then take the ledger's image, dropping what only Redis had).
    #[arg(long)]
    pub force: bool,
    /// This deployment's name (must match the ledger's).
    #[arg(long, env = "RTCONFIG_CLUSTER_ID", default_value = "default")]
    pub cluster_id: String,
    /// Directory of namespace schema files: every namespace in it, unless --namespace is given.
    #[arg(long, env = "RTCONFIG_SCHEMA_DIR", default_value = "config")]
    pub schema_dir: PathBuf,
    /// Only these namespaces (repeatable).
    #[arg(long = "namespace")]
    pub namespaces: Vec<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: Option<AdminCommand>,
    /// Directory of namespace schema files (*.toml).
    #[arg(long, env = "RTCONFIG_SCHEMA_DIR", default_value = "config")]
    pub schema_dir: PathBuf,
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// redis://, rediss:// (TLS), redis-sentinel:// or redis-cluster:// URL.
    #[arg(long, env = "RTCONFIG_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// This deployment's name, recorded in the ledger and in Redis.
    #[arg(long, env = "RTCONFIG_CLUSTER_ID", default_value = "default")]
    pub cluster_id: String,
    /// Admin API address.
    #[arg(long, env = "RTCONFIG_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Bearer token every API call must carry (at least 16 characters). Required.
    #[arg(long, env = "RTCONFIG_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Seconds to let in-flight requests finish on SIGTERM/SIGINT.
    #[arg(long, env = "RTCONFIG_DRAIN_TIMEOUT", default_value_t = 10.0)]
    pub drain_timeout: f64,
    /// Seconds between relay rounds (also kicked after every commit).
    #[arg(long, env = "RTCONFIG_RELAY_INTERVAL", default_value_t = 1.0)]
    pub relay_interval: f64,
    /// Seconds between anti-entropy comparisons of Redis with the ledger.
    #[arg(long, env = "RTCONFIG_ANTI_ENTROPY_INTERVAL", default_value_t = 30.0)]
    pub anti_entropy_interval: f64,
    /// Seconds any PostgreSQL call may take (waiting for a connection included); PostgreSQL down
    /// or paused → writes answer 503 after at most this long.
    #[arg(long, env = "RTCONFIG_DATABASE_TIMEOUT", default_value_t = 1.5)]
    pub database_timeout: f64,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Directory of namespace schema files (*.toml).
    #[arg(long, env = "RTCONFIG_SCHEMA_DIR", default_value = "config")]
    pub schema_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// URL to probe, e.g. http://127.0.0.1:7071/readyz
    pub url: String,
    /// Give up after this many seconds.
    #[arg(long, env = "RTCONFIG_HEALTH_TIMEOUT", default_value_t = 2.0)]
    pub timeout: f64,
}

fn seconds(value: f64, flag: &str) -> Result<Duration, String> {
    if value.is_finite() && (0.0..1e9).contains(&value) {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!("{flag} must be a non-negative number of seconds"))
    }
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Check(args) => check(&args),
        Command::Health(args) => runtime().block_on(health(&args)),
        Command::Dev(args) => runtime().block_on(dev(args)),
        Command::Sidecar(args) => runtime().block_on(sidecar(args)),
        Command::Admin(args) => runtime().block_on(admin(args)),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtconfig: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    }
}

fn check(args: &CheckArgs) -> ExitCode {
    match SchemaSet::load_dir(&args.schema_dir) {
        Ok(set) => {
            let keys: usize = set.iter().map(|s| s.len()).sum();
            println!(
                "ok: {} namespace(s), {keys} key(s) in {}",
                set.len(),
                args.schema_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            eprintln!("{} problem(s) found", problems.len());
            ExitCode::from(64)
        }
    }
}

async fn health(args: &HealthArgs) -> ExitCode {
    let timeout = match seconds(args.timeout, "--timeout") {
        Ok(t) => t,
        Err(e) => {
            eprintln!("rtconfig health: {e}");
            return ExitCode::from(64);
        }
    };
    let uri: hyper::Uri = match args.url.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("rtconfig health: invalid URL {:?}: {e}", args.url);
            return ExitCode::from(64);
        }
    };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    match tokio::time::timeout(timeout, client.get(uri)).await {
        Ok(Ok(resp)) if resp.status().is_success() => {
            println!("{}", resp.status());
            ExitCode::SUCCESS
        }
        Ok(Ok(resp)) => {
            eprintln!("{}", resp.status());
            ExitCode::from(1)
        }
        Ok(Err(e)) => {
            eprintln!("rtconfig health: {e}");
            ExitCode::from(1)
        }
        Err(_) => {
            eprintln!("rtconfig health: no answer within {timeout:?}");
            ExitCode::from(1)
        }
    }
}

async fn dev(args: DevArgs) -> ExitCode {
    let drain_timeout = match seconds(args.drain_timeout, "--drain-timeout") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("rtconfig: {e}");
            return ExitCode::from(64);
        }
    };
    let first_start = !args.data_dir.join("ledger.log").exists();
    let settings = DevSettings {
        schema_dir: args.schema_dir,
        data_dir: args.data_dir,
        namespace: args.namespace,
        cluster_id: args.cluster_id,
        listen: args.listen,
        admin_listen: args.admin_listen,
        probe_listen: args.probe_listen,
        allow_non_loopback: args.allow_non_loopback,
        max_watchers: args.max_watchers,
        drain_timeout,
        admin_token: args.admin_token,
    };
    let data_dir = settings.data_dir.clone();
    let auth = settings.admin_token.is_some();
    let running = match app::start_dev(settings).await {
        Ok(r) => r,
        Err(e) => return report_start_error(&e),
    };
    println!(
        "rtconfig dev is running{}\n  \
         status page      http://{read}/\n  \
         read API         http://{read}/v1/configs\n  \
         admin API        http://{admin}/api/v1/namespaces\n  \
         probes, metrics  http://{probe}/readyz  http://{probe}/metrics\n  \
         data dir         {data}\n  \
         admin auth       {auth}\n\
         Stop with Ctrl-C.",
        if first_start {
            " (first start: new data dir)"
        } else {
            ""
        },
        read = running.read_addr,
        admin = running.admin_addr,
        probe = running.probe_addr,
        data = data_dir.display(),
        auth = if auth {
            "bearer token (--admin-token)"
        } else {
            "none: dev binds loopback only"
        },
    );
    running.run_until_stopped().await;
    ExitCode::SUCCESS
}

async fn sidecar(args: SidecarArgs) -> ExitCode {
    let durations = (
        seconds(args.resync_interval, "--resync-interval"),
        seconds(args.drain_timeout, "--drain-timeout"),
    );
    let (resync_interval, drain_timeout) = match durations {
        (Ok(r), Ok(d)) => (r, d),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("rtconfig: {e}");
            return ExitCode::from(64);
        }
    };
    let settings = app::SidecarSettings {
        schema_dir: args.schema_dir,
        namespace: args.namespace,
        cluster_id: args.cluster_id,
        redis_url: args.redis_url,
        subscriber_redis_url: None,
        listen: args.listen,
        probe_listen: args.probe_listen,
        allow_non_loopback: args.allow_non_loopback,
        snapshot_path: args.snapshot_path,
        resync_interval,
        require_snapshot: args.require_snapshot,
        max_watchers: args.max_watchers,
        drain_timeout,
        instance_id: args.instance_id,
    };
    match app::start_sidecar(settings).await {
        Ok(running) => {
            running.run_until_stopped().await;
            ExitCode::SUCCESS
        }
        Err(e) => report_start_error(&e),
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("rtconfig: {message}");
    ExitCode::from(64)
}

async fn admin_command(command: AdminCommand) -> ExitCode {
    match command {
        AdminCommand::Migrate(args) => {
            match app::migrate(&PgSettings::new(&args.database_url)).await {
                Ok(applied) if applied.is_empty() => {
                    println!("the database is up to date");
                    ExitCode::SUCCESS
                }
                Ok(applied) => {
                    println!(
                        "applied {} migration(s): {}",
                        applied.len(),
                        applied.join(", ")
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => report_start_error(&e),
            }
        }
        AdminCommand::Reconcile(args) => {
            if !args.force {
                return usage(
                    "reconcile raises the epoch of every namespace (or each --namespace): the relay \
                     then rebuilds Redis from the ledger and sidecars take that image, dropping \
                     versions only Redis had; run it with --force after restoring the ledger",
                );
            }
            let ledger = match args.ledger.ledger() {
                Ok(l) => l,
                Err(e) => return usage(&e),
            };
            match app::reconcile(
                &ledger,
                &args.cluster_id,
                &args.schema_dir,
                &args.namespaces,
            )
            .await
            {
                Ok(states) => {
                    for (ns, state) in states {
                        println!(
                            "{ns}: epoch {} (version {}); the relay leader rebuilds redis within a second",
                            state.epoch, state.version
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => report_start_error(&e),
            }
        }
    }
}

async fn admin(args: AdminArgs) -> ExitCode {
    if let Some(command) = args.command {
        return admin_command(command).await;
    }
    let mut ledger = match args.ledger.ledger() {
        Ok(l) => l,
        Err(e) => return usage(&e),
    };
    if let app::AdminLedger::Postgres(pg) = &mut ledger {
        match seconds(args.database_timeout, "--database-timeout") {
            Ok(t) if t >= Duration::from_millis(100) => pg.op_timeout = t,
            _ => return usage("--database-timeout must be at least 0.1 seconds"),
        }
    }
    let Some(redis_url) = args.redis_url else {
        return usage("the admin needs --redis-url");
    };
    let Some(admin_token) = args.admin_token else {
        return usage("the admin needs --admin-token (at least 16 characters)");
    };
    let durations = (
        seconds(args.drain_timeout, "--drain-timeout"),
        seconds(args.relay_interval, "--relay-interval"),
        seconds(args.anti_entropy_interval, "--anti-entropy-interval"),
    );
    let (drain_timeout, relay_interval, anti_entropy_interval) = match durations {
        (Ok(d), Ok(r), Ok(a)) if r > Duration::ZERO && a > Duration::ZERO => (d, r, a),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            eprintln!("rtconfig: {e}");
            return ExitCode::from(64);
        }
        _ => {
            eprintln!("rtconfig: relay and anti-entropy intervals must be above zero");
            return ExitCode::from(64);
        }
    };
    let settings = app::AdminSettings {
        schema_dir: args.schema_dir,
        ledger,
        redis_url,
        cluster_id: args.cluster_id,
        listen: args.listen,
        admin_token,
        drain_timeout,
        relay_interval,
        anti_entropy_interval,
    };
    match app::start_admin(settings).await {
        Ok(running) => {
            println!(
                "rtconfig admin is running on http://{}/api/v1/namespaces",
                running.addr
            );
            running.run_until_stopped().await;
            ExitCode::SUCCESS
        }
        Err(e) => report_start_error(&e),
    }
}

fn report_start_error(e: &app::StartError) -> ExitCode {
    if let app::StartError::Schema(problems) = e {
        for p in problems {
            eprintln!("{p}");
        }
    }
    eprintln!("rtconfig: {}", Chain(e));
    tracing::error!(error = %Chain(e), "cannot start");
    ExitCode::from(e.exit_code())
}
