//! The command line: `rtconfig dev | sidecar | admin | check | health | user | token`. Every flag also reads `RTCONFIG_<FLAG>`.
//!
//! Exit codes: 0 success, 64 (`EX_USAGE`) for bad flags, settings or schema files, 1 for
//! failures at run time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::app;
use crate::auth::bootstrap::DevToken;
use crate::schema::SchemaSet;
use crate::settings::{
    parse_seconds, AdminApiArgs, AdminSettings, AuthArgs, CommonArgs, DevSettings, DrainArgs,
    HostArgs, MigrateSettings, ReadApiArgs, ReconcileSettings, SettingsError, SidecarSettings,
    TlsArgs,
};
use crate::telemetry::{self, Chain, LogFormat};

/// `rtconfig --version`: the package version and the git revision it was built from
/// (`build.rs`: `RTCONFIG_GIT_REVISION` at build time, else `git rev-parse`, else `unknown`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (rev ",
    env!("RTCONFIG_GIT_REVISION"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "rtconfig",
    version = VERSION,
    propagate_version = true,
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
    /// Turn a Django project's CONSTANCE_CONFIG / CONSTANCE_CONFIG_FIELDSETS into a schema file.
    /// Exit 0: all imported; 2: written, some fields unsupported (listed on stderr); 64: input
    /// unreadable; 73: output unwritable.
    ImportConstance(ImportConstanceArgs),
    /// Probe a URL (for images without curl): exit 0 on a 2xx answer, 1 otherwise.
    Health(HealthArgs),
    /// Manage admin users in the store (--data-dir with the admin stopped, or --database-url).
    #[command(subcommand)]
    User(crate::auth::cli::UserCommand),
    /// Manage API tokens in the store (--data-dir with the admin stopped, or --database-url).
    #[command(subcommand)]
    Token(crate::auth::cli::TokenCommand),
}

#[derive(Debug, Args)]
pub struct DevArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Directory of the embedded ledger (created if missing).
    #[arg(long, env = "RTCONFIG_DATA_DIR", default_value = ".rtconfig")]
    pub data_dir: PathBuf,
    /// Namespace the sidecar read API serves (the admin serves every namespace).
    #[arg(long, env = "RTCONFIG_NAMESPACE", default_value = "demo")]
    pub namespace: String,
    /// Sidecar read API address (loopback only unless --allow-non-loopback).
    #[arg(long, env = "RTCONFIG_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Admin API address (loopback only unless --allow-non-loopback).
    #[arg(long, env = "RTCONFIG_ADMIN_LISTEN", default_value = "127.0.0.1:8080")]
    pub admin_listen: SocketAddr,
    /// Probe and metrics address of the sidecar (loopback only unless --allow-non-loopback).
    #[arg(long, env = "RTCONFIG_PROBE_LISTEN", default_value = "127.0.0.1:7071")]
    pub probe_listen: SocketAddr,
    #[command(flatten)]
    pub read_api: ReadApiArgs,
    #[command(flatten)]
    pub admin_api: AdminApiArgs,
    #[command(flatten)]
    pub hosts: HostArgs,
    #[command(flatten)]
    pub drain: DrainArgs,
    /// A bootstrap admin token (`Authorization: Bearer <token>`, at least 16 characters),
    /// besides the dev token in <data-dir>/dev-token.
    #[arg(long, env = "RTCONFIG_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Read --admin-token from this file (a trailing newline is trimmed).
    #[arg(long, env = "RTCONFIG_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
}

#[derive(Debug, Args)]
pub struct SidecarArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The namespace this sidecar serves.
    #[arg(long, env = "RTCONFIG_NAMESPACE")]
    pub namespace: String,
    /// redis://, rediss:// (TLS), redis-sentinel:// or redis-cluster:// URL. Required (or
    /// --redis-url-file).
    #[arg(long, env = "RTCONFIG_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Read --redis-url from this file (a trailing newline is trimmed).
    #[arg(long, env = "RTCONFIG_REDIS_URL_FILE", value_name = "FILE")]
    pub redis_url_file: Option<PathBuf>,
    /// Read API address (loopback only unless --allow-non-loopback).
    #[arg(long, env = "RTCONFIG_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Probe and metrics address.
    #[arg(long, env = "RTCONFIG_PROBE_LISTEN", default_value = "0.0.0.0:7071")]
    pub probe_listen: SocketAddr,
    #[command(flatten)]
    pub read_api: ReadApiArgs,
    #[command(flatten)]
    pub hosts: HostArgs,
    /// Disk snapshot file: written after every change (the one before kept as FILE.prev), served
    /// at a cold start without Redis.
    #[arg(long, env = "RTCONFIG_SNAPSHOT_PATH")]
    pub snapshot_path: Option<PathBuf>,
    /// Seconds between resyncs with Redis (fractions allowed; ±20 % jitter; at least 0.05).
    #[arg(long, env = "RTCONFIG_RESYNC_INTERVAL", default_value = "5", value_parser = parse_seconds, allow_negative_numbers = true, value_name = "SECONDS")]
    pub resync_interval: Duration,
    /// Until a real snapshot (Redis or disk) is loaded: not ready, and reads answer 503
    /// no_snapshot, instead of serving the schema defaults.
    #[arg(long, env = "RTCONFIG_REQUIRE_SNAPSHOT")]
    pub require_snapshot: bool,
    #[command(flatten)]
    pub drain: DrainArgs,
    /// Name in the fleet view (default: $HOSTNAME-pid).
    #[arg(long, env = "RTCONFIG_INSTANCE_ID")]
    pub instance_id: Option<String>,
}

/// Where the admin's ledger is: exactly one of `--database-url` and `--data-dir` (also the
/// store flags of `rtconfig user …` and `rtconfig token …`).
#[derive(Debug, Args)]
pub struct LedgerArgs {
    /// PostgreSQL ledger: postgres://user:password@host:port/db (any number of admins); TLS with
    /// ?sslmode=require|verify-ca|verify-full&sslrootcert=CA.pem.
    #[arg(
        long,
        env = "RTCONFIG_DATABASE_URL",
        hide_env_values = true,
        conflicts_with = "data_dir"
    )]
    pub database_url: Option<String>,
    /// Read --database-url from this file (a trailing newline is trimmed).
    #[arg(
        long,
        env = "RTCONFIG_DATABASE_URL_FILE",
        value_name = "FILE",
        conflicts_with = "data_dir"
    )]
    pub database_url_file: Option<PathBuf>,
    /// Embedded ledger directory (one admin only; guarded by a lock file).
    #[arg(long, env = "RTCONFIG_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
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
    /// postgres://user:password@host:port/db (or --database-url-file).
    #[arg(long, env = "RTCONFIG_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Read --database-url from this file (a trailing newline is trimmed).
    #[arg(long, env = "RTCONFIG_DATABASE_URL_FILE", value_name = "FILE")]
    pub database_url_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// Really bump the epoch (sidecars then take the ledger's image, dropping what only Redis had).
    #[arg(long)]
    pub force: bool,
    /// Schema dir (every namespace in it, unless --namespace is given) and cluster id (must
    /// match the ledger's).
    #[command(flatten)]
    pub common: CommonArgs,
    /// Only these namespaces (repeatable).
    #[arg(long = "namespace")]
    pub namespaces: Vec<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: Option<AdminCommand>,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// redis://, rediss:// (TLS), redis-sentinel:// or redis-cluster:// URL.
    #[arg(long, env = "RTCONFIG_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Read --redis-url from this file (a trailing newline is trimmed).
    #[arg(long, env = "RTCONFIG_REDIS_URL_FILE", value_name = "FILE")]
    pub redis_url_file: Option<PathBuf>,
    /// Admin API address.
    #[arg(long, env = "RTCONFIG_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub hosts: HostArgs,
    #[command(flatten)]
    pub admin_api: AdminApiArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// A bootstrap admin token (`Authorization: Bearer <token>`, at least 16 characters; every
    /// use audited). Needed until an admin user exists (`rtconfig user add`).
    #[arg(long, env = "RTCONFIG_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Read --admin-token from this file (a trailing newline is trimmed), so the token is not
    /// visible in `ps` or the environment.
    #[arg(long, env = "RTCONFIG_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub drain: DrainArgs,
    /// Seconds between relay rounds (also kicked after every commit).
    #[arg(long, env = "RTCONFIG_RELAY_INTERVAL", default_value = "1", value_parser = parse_seconds, allow_negative_numbers = true, value_name = "SECONDS")]
    pub relay_interval: Duration,
    /// Seconds between anti-entropy comparisons of Redis with the ledger.
    #[arg(long, env = "RTCONFIG_ANTI_ENTROPY_INTERVAL", default_value = "30", value_parser = parse_seconds, allow_negative_numbers = true, value_name = "SECONDS")]
    pub anti_entropy_interval: Duration,
    /// The largest changeset, in bytes of its JSON, the relay inlines in the Pub/Sub hint so
    /// a sidecar exactly one version behind applies it without reading Redis (0 = never;
    /// larger changesets are read from the log as before).
    #[arg(long, env = "RTCONFIG_HINT_PAYLOAD_MAX_BYTES", default_value_t = crate::relay::DEFAULT_HINT_PAYLOAD_MAX_BYTES, value_name = "BYTES")]
    pub hint_payload_max_bytes: usize,
    /// Seconds any PostgreSQL call may take (waiting for a connection included); PostgreSQL down
    /// or paused → writes answer 503 after at most this long (at least 0.1).
    #[arg(long, env = "RTCONFIG_DATABASE_TIMEOUT", default_value = "1.5", value_parser = parse_seconds, allow_negative_numbers = true, value_name = "SECONDS")]
    pub database_timeout: Duration,
    #[command(flatten)]
    pub constance: ConstanceArgs,
}

/// The live mirror between rtconfig and django-constance's Redis keys (docs/MIGRATING_FROM_CONSTANCE.md).
#[derive(Debug, Clone, Args)]
pub struct ConstanceArgs {
    /// Mirror the namespace to django-constance's Redis keys PREFIX+KEY (CONSTANCE_REDIS_PREFIX,
    /// e.g. `constance:`) in constance's own format, and adopt values saved through constance as
    /// changesets (actor django-constance). At start, constance's values are adopted first.
    #[arg(
        id = "constance_mirror",
        long = "constance-mirror",
        env = "RTCONFIG_CONSTANCE_MIRROR",
        value_name = "PREFIX"
    )]
    pub prefix: Option<String>,
    /// The rtconfig namespace that maps to constance's flat keys (optional when the schema dir
    /// has one namespace).
    #[arg(
        id = "constance_namespace",
        long = "constance-namespace",
        env = "RTCONFIG_CONSTANCE_NAMESPACE",
        value_name = "NS"
    )]
    pub namespace: Option<String>,
    /// constance's Redis when it is not --redis-url (one server: redis:// or rediss://).
    #[arg(
        id = "constance_redis_url",
        long = "constance-redis-url",
        env = "RTCONFIG_CONSTANCE_REDIS_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub redis_url: Option<String>,
    /// Publish the name of every key the mirror writes on this Pub/Sub channel (for workers that
    /// cache constance's values locally).
    #[arg(
        id = "constance_channel",
        long = "constance-channel",
        env = "RTCONFIG_CONSTANCE_CHANNEL",
        value_name = "NAME"
    )]
    pub channel: Option<String>,
    /// Seconds between the mirror's full compares of constance's keys with the ledger (the
    /// safety net beside keyspace notifications; fractions allowed).
    #[arg(id = "constance_poll_interval", long = "constance-poll-interval", env = "RTCONFIG_CONSTANCE_POLL_INTERVAL", default_value = "1", value_parser = parse_seconds, allow_negative_numbers = true, value_name = "SECONDS")]
    pub poll_interval: Duration,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Directory of namespace schema files (*.toml).
    #[arg(long, env = "RTCONFIG_SCHEMA_DIR", default_value = "config")]
    pub schema_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportConstanceArgs {
    /// Python interpreter of the Django project (its virtualenv's `python`).
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// The Django project directory (holds manage.py); put on PYTHONPATH and used as cwd.
    #[arg(long, default_value = ".")]
    pub project_dir: PathBuf,
    /// The Django settings module (DJANGO_SETTINGS_MODULE), e.g. `mysite.settings`.
    #[arg(long, env = "DJANGO_SETTINGS_MODULE")]
    pub settings: Option<String>,
    /// Read a saved `python -m rtconfig_client.export_constance` output instead of running Python.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["settings"])]
    pub from_json: Option<PathBuf>,
    /// Namespace name of the schema written.
    #[arg(long, default_value = "constance")]
    pub namespace: String,
    /// Schema file to write (`-` = stdout), e.g. config/constance.toml.
    #[arg(long, default_value = "-", value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// URL to probe, e.g. http://127.0.0.1:7071/readyz or https://admin.example:8080/healthz
    pub url: String,
    /// Trust this PEM CA certificate (or self-signed certificate) for an https:// URL, besides
    /// the public roots.
    #[arg(long, env = "RTCONFIG_HEALTH_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, env = "RTCONFIG_HEALTH_TIMEOUT", default_value = "2", value_parser = parse_seconds, allow_negative_numbers = true, value_name = "SECONDS")]
    pub timeout: Duration,
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
        Command::ImportConstance(args) => import_constance(&args),
        Command::Health(args) => runtime().block_on(health(&args)),
        Command::Dev(args) => runtime().block_on(dev(args)),
        Command::Sidecar(args) => {
            // Before the runtime's threads exist: an arena is bound to the thread that takes it.
            crate::heap::limit_arenas();
            runtime().block_on(sidecar(args))
        }
        Command::Admin(args) => runtime().block_on(admin(args)),
        Command::User(command) => runtime().block_on(crate::auth::cli::user(command)),
        Command::Token(command) => runtime().block_on(crate::auth::cli::token(command)),
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

fn import_constance(args: &ImportConstanceArgs) -> ExitCode {
    use crate::constance::run::{import_constance, Source};
    let source = match (&args.from_json, &args.settings) {
        (Some(path), _) => Source::Json(path),
        (None, Some(settings)) => Source::Django {
            python: &args.python,
            project_dir: &args.project_dir,
            settings,
        },
        (None, None) => {
            eprintln!(
                "rtconfig import-constance: {}",
                crate::constance::run::ImportError::NoInput
            );
            return ExitCode::from(64);
        }
    };
    import_constance(&source, &args.namespace, &args.out)
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

/// An `http://` or `https://host[:port]/path` URL `health` can probe.
fn health_uri(url: &str) -> Result<hyper::Uri, String> {
    let example = "give one like http://127.0.0.1:7071/readyz";
    let uri: hyper::Uri = url
        .parse()
        .map_err(|_| format!("{url:?} is not a URL; {example}"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err(format!(
            "{url:?} is not an http:// or https:// URL with a host; {example}"
        )),
    }
}

/// The probe client: no proxies (a probe asks this host), no redirects (a 3xx is not healthy),
/// rustls with the public roots plus `--ca-cert`.
fn health_client(args: &HealthArgs) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = &args.ca_cert {
        let pem = std::fs::read(path).map_err(|e| {
            format!(
                "cannot read --ca-cert {}: {}",
                path.display(),
                crate::settings::io_reason(&e)
            )
        })?;
        let ca = reqwest::Certificate::from_pem(&pem)
            .map_err(|_| format!("--ca-cert {} is not a PEM certificate", path.display()))?;
        builder = builder.add_root_certificate(ca);
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", Chain(&e)))
}

async fn health(args: &HealthArgs) -> ExitCode {
    let checked = health_uri(&args.url).and_then(|uri| Ok((uri, health_client(args)?)));
    let (uri, client) = match checked {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rtconfig health: {e}");
            return ExitCode::from(64);
        }
    };
    let timeout = args.timeout;
    match tokio::time::timeout(timeout, client.get(uri.to_string()).send()).await {
        Ok(Ok(resp)) if resp.status().is_success() => {
            println!("{}", resp.status());
            ExitCode::SUCCESS
        }
        Ok(Ok(resp)) => {
            eprintln!("{}", resp.status());
            ExitCode::from(1)
        }
        Ok(Err(e)) => {
            eprintln!(
                "rtconfig health: no answer from {}: {}",
                args.url,
                Chain(&e)
            );
            ExitCode::from(1)
        }
        Err(_) => {
            eprintln!("rtconfig health: no answer within {timeout:?}");
            ExitCode::from(1)
        }
    }
}

/// Prints every settings problem, one a line; exit 64.
fn report_settings(e: &SettingsError) -> ExitCode {
    for p in &e.0 {
        eprintln!("rtconfig: {p}");
    }
    if e.0.len() > 1 {
        eprintln!("rtconfig: {} problem(s) in the settings", e.0.len());
    }
    ExitCode::from(64)
}

async fn dev(args: DevArgs) -> ExitCode {
    let first_start = !args.data_dir.join("ledger.log").exists();
    let settings = match DevSettings::try_from(args) {
        Ok(s) => s,
        Err(e) => return report_settings(&e),
    };
    let data_dir = settings.data_dir.clone();
    let bootstrap_token = settings.admin_token.is_some();
    let admin_scheme = if settings.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut running = match app::start_dev(settings).await {
        Ok(r) => r,
        Err(e) => return report_start_error(&e),
    };
    let sign_in = match running.take_one_time_password() {
        Some(password) => format!(
            "sign in as admin with password {password}; shown once; change it with \
             `rtconfig user passwd admin`"
        ),
        None => "POST /api/v1/session as an existing user (`rtconfig user list`)".to_owned(),
    };
    let token = running.dev_token_path.display().to_string();
    let token_note = match running.dev_token {
        DevToken::Kept => "",
        DevToken::Created => " (new)",
        DevToken::Replaced => " (new: the old file was missing or its token revoked)",
    };
    println!(
        "rtconfig dev is running{}\n  \
         status page      http://{read}/\n  \
         read API         http://{read}/v1/configs\n  \
         web UI           {admin_scheme}://{admin}/\n  \
         admin API        {admin_scheme}://{admin}/api/v1/namespaces\n  \
         probes, metrics  http://{probe}/readyz  http://{probe}/metrics\n  \
         data dir         {data}\n  \
         admin sign-in    {sign_in}\n  \
         admin API token  {token}{token_note}: -H \"Authorization: Bearer $(cat {token})\"{bootstrap}\n\
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
        bootstrap = if bootstrap_token {
            " (or --admin-token)"
        } else {
            ""
        },
    );
    running.run_until_stopped().await;
    ExitCode::SUCCESS
}

async fn sidecar(args: SidecarArgs) -> ExitCode {
    let settings = match SidecarSettings::try_from(args) {
        Ok(s) => s,
        Err(e) => return report_settings(&e),
    };
    match app::start_sidecar(settings).await {
        Ok(running) => {
            running.run_until_stopped().await;
            ExitCode::SUCCESS
        }
        Err(e) => report_start_error(&e),
    }
}

async fn admin_command(command: AdminCommand) -> ExitCode {
    match command {
        AdminCommand::Migrate(args) => {
            let s = match MigrateSettings::try_from(args) {
                Ok(s) => s,
                Err(e) => return report_settings(&e),
            };
            match app::migrate(&s.pg).await {
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
            let s = match ReconcileSettings::try_from(args) {
                Ok(s) => s,
                Err(e) => return report_settings(&e),
            };
            match app::reconcile(&s.ledger, &s.cluster_id, &s.schema_dir, &s.namespaces).await {
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
    let settings = match AdminSettings::try_from(args) {
        Ok(s) => s,
        Err(e) => return report_settings(&e),
    };
    let scheme = if settings.tls.is_some() {
        "https"
    } else {
        "http"
    };
    match app::start_admin(settings).await {
        Ok(running) => {
            println!(
                "rtconfig admin is running on {scheme}://{}/api/v1/namespaces",
                running.addr
            );
            running.run_until_stopped().await;
            ExitCode::SUCCESS
        }
        Err(e) => report_start_error(&e),
    }
}

/// Prints a start error once, on stderr (the log line would repeat it on the same stream).
fn report_start_error(e: &app::StartError) -> ExitCode {
    match e {
        app::StartError::Schema(problems) => {
            for p in problems {
                eprintln!("{p}");
            }
            eprintln!("rtconfig: {e}");
        }
        app::StartError::Settings(problems) => return report_settings(problems),
        _ => eprintln!("rtconfig: {}", Chain(e)),
    }
    ExitCode::from(e.exit_code())
}

#[cfg(test)]
mod tests {
    use super::health_uri;

    #[test]
    fn health_takes_only_http_urls_with_a_host() {
        for (url, ok) in [
            ("http://127.0.0.1:7071/readyz", true),
            ("http://localhost/healthz", true),
            ("notaurl", false),
            ("/readyz", false),
            ("https://127.0.0.1:7071/readyz", true),
            ("ftp://127.0.0.1/x", false),
            ("127.0.0.1:7071", false),
            ("http://", false),
        ] {
            assert_eq!(health_uri(url).is_ok(), ok, "{url}");
        }
    }
}
