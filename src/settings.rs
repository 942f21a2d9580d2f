//! Settings in one place: the flags every role shares (flattened clap `Args`), the value parser
//! for durations, the typed settings of each role, and one `TryFrom<XArgs> for XSettings` per
//! role that checks everything at once and reports every problem (exit 64). The checks are pure
//! functions; `app`'s composition roots run the same checks on settings built in code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::cli::{AdminArgs, DevArgs, LedgerArgs, ReconcileArgs, SidecarArgs};
use crate::ledger::postgres::PgSettings;

/// Flags of every role that reads the schema dir and belongs to a deployment.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Directory of namespace schema files (*.toml); gives types and defaults.
    #[arg(long, env = "RTCONFIG_SCHEMA_DIR", default_value = "config")]
    pub schema_dir: PathBuf,
    /// This deployment's name, recorded in the ledger and in Redis: data of another cluster id
    /// is never applied, and the ledger refuses another.
    #[arg(long, env = "RTCONFIG_CLUSTER_ID", default_value = "default")]
    pub cluster_id: String,
}

/// Flags of every role that serves HTTP.
#[derive(Debug, Clone, Args)]
pub struct DrainArgs {
    /// Seconds to let in-flight requests finish on SIGTERM/SIGINT (fractions allowed).
    #[arg(long, env = "RTCONFIG_DRAIN_TIMEOUT", default_value = "10", value_parser = parse_seconds, allow_negative_numbers = true, value_name = "SECONDS")]
    pub drain_timeout: Duration,
}

/// Flags of every role that serves the read API (dev and sidecar).
#[derive(Debug, Clone, Args)]
pub struct ReadApiArgs {
    /// Serve the read API on a non-loopback --listen address.
    #[arg(long, env = "RTCONFIG_ALLOW_NON_LOOPBACK")]
    pub allow_non_loopback: bool,
    /// Most long-polls and SSE streams open at once; more get 503 with Retry-After.
    #[arg(long, env = "RTCONFIG_MAX_WATCHERS", default_value_t = 1024)]
    pub max_watchers: usize,
}

/// Flags of the access layer (admin and dev).
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// Seconds a session may go unused before it ends (default 30 minutes).
    #[arg(long, env = "RTCONFIG_SESSION_IDLE_TIMEOUT", default_value = "1800", value_parser = parse_seconds, allow_negative_numbers = true, value_name = "SECONDS")]
    pub session_idle_timeout: Duration,
    /// Seconds a session lasts at most, however busy (default 12 hours).
    #[arg(long, env = "RTCONFIG_SESSION_LIFETIME", default_value = "43200", value_parser = parse_seconds, allow_negative_numbers = true, value_name = "SECONDS")]
    pub session_lifetime: Duration,
    /// Users with the admin role must sign in with a second factor (TOTP), enrolled at their
    /// first sign-in [default: true; false in dev].
    #[arg(long, env = "RTCONFIG_REQUIRE_MFA_FOR_ADMINS", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub require_mfa_for_admins: Option<bool>,
    /// A proxy (CIDR or address) whose X-Forwarded-For is believed for the client IP (audit,
    /// sign-in throttle); repeatable, or comma-separated in the variable.
    #[arg(long = "trusted-proxy", env = "RTCONFIG_TRUSTED_PROXY", value_delimiter = ',', value_parser = parse_cidr, value_name = "CIDR")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The URL browsers use to reach the admin (e.g. https://config.example.com): the origin
    /// sign-in and forms are accepted from (besides the admin's own), and the base of the OIDC
    /// redirect URI.
    #[arg(long, env = "RTCONFIG_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
}

/// clap value parser for `--trusted-proxy`: a CIDR (`10.0.0.0/8`) or one address.
pub fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| "not a CIDR (10.0.0.0/8) or an IP address".to_owned())
}

/// The access layer's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub session_idle_timeout: Duration,
    pub session_lifetime: Duration,
    pub require_mfa_for_admins: bool,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub public_url: Option<String>,
}

impl AuthSettings {
    /// The defaults: `dev` does not require a second factor of admins; `admin` does.
    pub fn defaults(dev: bool) -> AuthSettings {
        let policy = crate::auth::session_policy::SessionPolicy::default();
        AuthSettings {
            session_idle_timeout: policy.idle_timeout,
            session_lifetime: policy.lifetime,
            require_mfa_for_admins: !dev,
            trusted_proxies: Vec::new(),
            public_url: None,
        }
    }

    fn from_args(a: AuthArgs, dev: bool) -> AuthSettings {
        AuthSettings {
            session_idle_timeout: a.session_idle_timeout,
            session_lifetime: a.session_lifetime,
            require_mfa_for_admins: a.require_mfa_for_admins.unwrap_or(!dev),
            trusted_proxies: a.trusted_proxies,
            public_url: a.public_url,
        }
    }

    /// `--public-url`'s origin (`https://host[:port]`), when it is a usable URL.
    pub fn public_origin(&self) -> Option<String> {
        self.public_url
            .as_deref()
            .and_then(|u| public_origin(u).ok())
    }

    /// Every problem of these settings.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.session_idle_timeout < Duration::from_secs(1) {
            out.push("--session-idle-timeout must be at least 1 second".into());
        }
        if self.session_lifetime < self.session_idle_timeout {
            out.push("--session-lifetime must be at least --session-idle-timeout".into());
        }
        if let Some(url) = &self.public_url {
            if let Err(p) = public_origin(url) {
                out.push(p);
            }
        }
        out
    }
}

/// The origin of a `--public-url`: `scheme://host[:port]`, lower-case, default port left out.
pub fn public_origin(url: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "--public-url {url:?} is not an http(s) URL with a host, like https://config.example.com"
        )
    };
    let parsed = url::Url::parse(url).map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(bad());
    }
    Ok(parsed.origin().ascii_serialization())
}

/// The longest duration a flag takes: about 31 years.
const MAX_SECONDS: f64 = 1e9;

/// Why a flag's value is not a usable number of seconds (clap prefixes the flag's name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecondsError {
    #[error("not a number of seconds (e.g. 10 or 0.5)")]
    NotANumber,
    #[error("must be a non-negative number of seconds")]
    Negative,
    #[error("must be at most {MAX_SECONDS:.0} seconds")]
    TooLarge,
}

/// clap value parser for a number of seconds (fractions allowed: `0.5`). clap names the flag
/// in its error: "invalid value '-1' for '--drain-timeout `<SECONDS>`': …".
pub fn parse_seconds(text: &str) -> Result<Duration, SecondsError> {
    let value: f64 = text.trim().parse().map_err(|_| SecondsError::NotANumber)?;
    if !value.is_finite() || value < 0.0 {
        return Err(SecondsError::Negative);
    }
    if value > MAX_SECONDS {
        return Err(SecondsError::TooLarge);
    }
    Ok(Duration::from_secs_f64(value))
}

/// Every problem found in a role's settings; printed one per line, exit 64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct SettingsError(pub Vec<String>);

impl SettingsError {
    pub fn one(problem: impl Into<String>) -> SettingsError {
        SettingsError(vec![problem.into()])
    }

    /// `Ok` when nothing was found.
    pub fn check(problems: Vec<String>) -> Result<(), SettingsError> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SettingsError(problems))
        }
    }
}

/// `rtconfig dev`: admin + sidecar in one process on the embedded ledger.
#[derive(Debug, Clone)]
pub struct DevSettings {
    pub schema_dir: PathBuf,
    pub data_dir: PathBuf,
    pub namespace: String,
    pub cluster_id: String,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub probe_listen: SocketAddr,
    /// Allow `listen` on a non-loopback address.
    pub allow_non_loopback: bool,
    pub max_watchers: usize,
    pub drain_timeout: Duration,
    pub admin_token: Option<String>,
    pub auth: AuthSettings,
}

impl DevSettings {
    /// Defaults for tests: every listener on an ephemeral loopback port.
    #[cfg(any(test, feature = "test-support"))]
    pub fn for_tests(schema_dir: PathBuf, data_dir: PathBuf) -> DevSettings {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        DevSettings {
            schema_dir,
            data_dir,
            namespace: "demo".into(),
            cluster_id: "default".into(),
            listen: any,
            admin_listen: any,
            probe_listen: any,
            allow_non_loopback: false,
            max_watchers: 1024,
            drain_timeout: Duration::from_secs(5),
            admin_token: None,
            auth: AuthSettings::defaults(true),
        }
    }

    /// Every problem of these settings (none: empty).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(loopback_problem(self.listen, self.allow_non_loopback));
        out.extend(name_problem("--namespace", &self.namespace));
        out.extend(name_problem("--cluster-id", &self.cluster_id));
        out.extend(self.auth.problems());
        out
    }
}

impl TryFrom<DevArgs> for DevSettings {
    type Error = SettingsError;

    fn try_from(a: DevArgs) -> Result<DevSettings, SettingsError> {
        let s = DevSettings {
            schema_dir: a.common.schema_dir,
            data_dir: a.data_dir,
            namespace: a.namespace,
            cluster_id: a.common.cluster_id,
            listen: a.listen,
            admin_listen: a.admin_listen,
            probe_listen: a.probe_listen,
            allow_non_loopback: a.read_api.allow_non_loopback,
            max_watchers: a.read_api.max_watchers,
            drain_timeout: a.drain.drain_timeout,
            admin_token: a.admin_token,
            auth: AuthSettings::from_args(a.auth, true),
        };
        SettingsError::check(s.problems())?;
        Ok(s)
    }
}

/// `rtconfig sidecar`: the per-pod read service for one namespace, synced from Redis.
#[derive(Debug, Clone)]
pub struct SidecarSettings {
    pub schema_dir: PathBuf,
    pub namespace: String,
    pub cluster_id: String,
    pub redis_url: String,
    /// Fault tests only: a separate URL (proxy) for the Pub/Sub connection.
    pub subscriber_redis_url: Option<String>,
    pub listen: SocketAddr,
    pub probe_listen: SocketAddr,
    pub allow_non_loopback: bool,
    pub snapshot_path: Option<PathBuf>,
    pub resync_interval: Duration,
    pub require_snapshot: bool,
    pub max_watchers: usize,
    pub drain_timeout: Duration,
    pub instance_id: Option<String>,
}

/// The shortest `--resync-interval`.
const MIN_RESYNC: Duration = Duration::from_millis(50);

impl SidecarSettings {
    /// Defaults for tests: ephemeral loopback ports, short intervals.
    #[cfg(any(test, feature = "test-support"))]
    pub fn for_tests(schema_dir: PathBuf, redis_url: &str) -> SidecarSettings {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        SidecarSettings {
            schema_dir,
            namespace: "demo".into(),
            cluster_id: "default".into(),
            redis_url: redis_url.to_owned(),
            subscriber_redis_url: None,
            listen: any,
            probe_listen: any,
            allow_non_loopback: false,
            snapshot_path: None,
            resync_interval: Duration::from_millis(500),
            require_snapshot: false,
            max_watchers: 1024,
            drain_timeout: Duration::from_secs(2),
            instance_id: None,
        }
    }

    /// Every problem of these settings (none: empty).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(loopback_problem(self.listen, self.allow_non_loopback));
        out.extend(name_problem("--namespace", &self.namespace));
        out.extend(name_problem("--cluster-id", &self.cluster_id));
        out.extend(redis_url_problem(&self.redis_url));
        if self.resync_interval < MIN_RESYNC {
            out.push("--resync-interval must be at least 0.05 seconds".into());
        }
        out
    }
}

impl TryFrom<SidecarArgs> for SidecarSettings {
    type Error = SettingsError;

    fn try_from(a: SidecarArgs) -> Result<SidecarSettings, SettingsError> {
        let s = SidecarSettings {
            schema_dir: a.common.schema_dir,
            namespace: a.namespace,
            cluster_id: a.common.cluster_id,
            redis_url: a.redis_url,
            subscriber_redis_url: None,
            listen: a.listen,
            probe_listen: a.probe_listen,
            allow_non_loopback: a.read_api.allow_non_loopback,
            snapshot_path: a.snapshot_path,
            resync_interval: a.resync_interval,
            require_snapshot: a.require_snapshot,
            max_watchers: a.read_api.max_watchers,
            drain_timeout: a.drain.drain_timeout,
            instance_id: a.instance_id,
        };
        SettingsError::check(s.problems())?;
        Ok(s)
    }
}

/// Where the admin keeps its ledger.
#[derive(Debug, Clone)]
pub enum AdminLedger {
    /// The embedded ledger in a data dir (one admin only; guarded by a lock file).
    Embedded { data_dir: PathBuf },
    /// PostgreSQL (any number of admin replicas).
    Postgres(PgSettings),
}

impl AdminLedger {
    /// Every problem of this ledger choice (none: empty).
    pub fn problems(&self) -> Vec<String> {
        match self {
            AdminLedger::Embedded { .. } => Vec::new(),
            AdminLedger::Postgres(pg) => {
                let mut out: Vec<String> = database_url_problem(&pg.url).into_iter().collect();
                if pg.op_timeout < MIN_DATABASE_TIMEOUT {
                    out.push("--database-timeout must be at least 0.1 seconds".into());
                }
                out
            }
        }
    }
}

/// The shortest `--database-timeout`.
const MIN_DATABASE_TIMEOUT: Duration = Duration::from_millis(100);

/// The ledger chosen by `--database-url` / `--data-dir`: exactly one of them.
fn ledger_choice(a: LedgerArgs, database_timeout: Option<Duration>) -> Result<AdminLedger, String> {
    match (a.database_url, a.data_dir) {
        (Some(url), None) => {
            let mut pg = PgSettings::new(&url);
            if let Some(t) = database_timeout {
                pg.op_timeout = t;
            }
            Ok(AdminLedger::Postgres(pg))
        }
        (None, Some(data_dir)) => Ok(AdminLedger::Embedded { data_dir }),
        (Some(_), Some(_)) => Err("give --database-url or --data-dir, not both".into()),
        (None, None) => Err(
            "the admin needs a ledger: --database-url (PostgreSQL) or --data-dir (embedded)".into(),
        ),
    }
}

/// `rtconfig admin`: the shared write service with its Redis relay.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub schema_dir: PathBuf,
    pub ledger: AdminLedger,
    pub redis_url: String,
    pub cluster_id: String,
    pub listen: SocketAddr,
    /// The bootstrap admin token; optional once an admin user exists.
    pub admin_token: Option<String>,
    pub auth: AuthSettings,
    pub drain_timeout: Duration,
    pub relay_interval: Duration,
    pub anti_entropy_interval: Duration,
}

/// The shortest `--admin-token`.
const MIN_TOKEN_CHARS: usize = 16;

impl AdminSettings {
    /// An admin on the embedded ledger in `data_dir`, for tests.
    #[cfg(any(test, feature = "test-support"))]
    pub fn for_tests(schema_dir: PathBuf, data_dir: PathBuf, redis_url: &str) -> AdminSettings {
        AdminSettings {
            schema_dir,
            ledger: AdminLedger::Embedded { data_dir },
            redis_url: redis_url.to_owned(),
            cluster_id: "default".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_token: Some("test-token-0123456789".into()),
            auth: AuthSettings::defaults(false),
            drain_timeout: Duration::from_secs(2),
            relay_interval: Duration::from_millis(200),
            anti_entropy_interval: Duration::from_secs(30),
        }
    }

    /// An admin on PostgreSQL at `database_url`, for tests.
    #[cfg(any(test, feature = "test-support"))]
    pub fn for_tests_pg(schema_dir: PathBuf, database_url: &str, redis_url: &str) -> AdminSettings {
        AdminSettings {
            ledger: AdminLedger::Postgres(PgSettings::new(database_url)),
            ..AdminSettings::for_tests(schema_dir, PathBuf::new(), redis_url)
        }
    }

    /// Every problem of these settings (none: empty).
    pub fn problems(&self) -> Vec<String> {
        let mut out = self.ledger.problems();
        out.extend(name_problem("--cluster-id", &self.cluster_id));
        out.extend(redis_url_problem(&self.redis_url));
        out.extend(self.admin_token.as_deref().and_then(token_problem));
        out.extend(self.auth.problems());
        if self.relay_interval.is_zero() {
            out.push("--relay-interval must be above zero".into());
        }
        if self.anti_entropy_interval.is_zero() {
            out.push("--anti-entropy-interval must be above zero".into());
        }
        out
    }
}

impl TryFrom<AdminArgs> for AdminSettings {
    type Error = SettingsError;

    fn try_from(a: AdminArgs) -> Result<AdminSettings, SettingsError> {
        let mut problems = Vec::new();
        let ledger = ledger_choice(a.ledger, Some(a.database_timeout))
            .map_err(|p| problems.push(p))
            .ok();
        if a.redis_url.is_none() {
            problems.push("the admin needs --redis-url".into());
        }
        let s = AdminSettings {
            schema_dir: a.common.schema_dir,
            // Placeholder while collecting problems; never returned.
            ledger: ledger.unwrap_or(AdminLedger::Embedded {
                data_dir: PathBuf::new(),
            }),
            redis_url: a.redis_url.unwrap_or_default(),
            cluster_id: a.common.cluster_id,
            listen: a.listen,
            admin_token: a.admin_token,
            auth: AuthSettings::from_args(a.auth, false),
            drain_timeout: a.drain.drain_timeout,
            relay_interval: a.relay_interval,
            anti_entropy_interval: a.anti_entropy_interval,
        };
        // Report the missing flag once, not also as an "empty" value.
        let missing_redis = s.redis_url.is_empty();
        problems.extend(
            s.problems()
                .into_iter()
                .filter(|p| !(missing_redis && p.contains("--redis-url"))),
        );
        SettingsError::check(problems)?;
        Ok(s)
    }
}

/// `rtconfig admin reconcile --force`.
#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    pub schema_dir: PathBuf,
    pub ledger: AdminLedger,
    pub cluster_id: String,
    pub namespaces: Vec<String>,
}

impl TryFrom<ReconcileArgs> for ReconcileSettings {
    type Error = SettingsError;

    fn try_from(a: ReconcileArgs) -> Result<ReconcileSettings, SettingsError> {
        let mut problems = Vec::new();
        if !a.force {
            problems.push(
                "reconcile raises the epoch of every namespace (or each --namespace): the relay \
                 then rebuilds Redis from the ledger and sidecars take that image, dropping \
                 versions only Redis had; run it with --force after restoring the ledger"
                    .into(),
            );
        }
        let ledger = match ledger_choice(a.ledger, None) {
            Ok(l) => {
                problems.extend(l.problems());
                Some(l)
            }
            Err(p) => {
                problems.push(p);
                None
            }
        };
        problems.extend(name_problem("--cluster-id", &a.common.cluster_id));
        for ns in &a.namespaces {
            problems.extend(name_problem("--namespace", ns));
        }
        SettingsError::check(problems)?;
        Ok(ReconcileSettings {
            schema_dir: a.common.schema_dir,
            ledger: ledger.ok_or_else(|| SettingsError::one("no ledger"))?,
            cluster_id: a.common.cluster_id,
            namespaces: a.namespaces,
        })
    }
}

/// The read API is meant for the pod's own app: loopback unless explicitly allowed.
pub fn loopback_problem(listen: SocketAddr, allow_non_loopback: bool) -> Option<String> {
    (!listen.ip().is_loopback() && !allow_non_loopback).then(|| {
        format!(
            "--listen {listen} is not a loopback address: the read API is meant for the pod's own \
             app; pass --allow-non-loopback to serve it beyond localhost"
        )
    })
}

/// A name (namespace, cluster id) must not be empty or blank.
pub fn name_problem(flag: &str, value: &str) -> Option<String> {
    value
        .trim()
        .is_empty()
        .then(|| format!("{flag} must not be empty"))
}

/// The admin never runs without auth outside dev.
pub fn token_problem(token: &str) -> Option<String> {
    (token.trim().chars().count() < MIN_TOKEN_CHARS).then(|| {
        format!(
            "--admin-token must be at least {MIN_TOKEN_CHARS} characters (the admin never runs \
             without auth outside dev)"
        )
    })
}

/// A Redis URL the client accepts (scheme and shape; nothing is connected).
pub fn redis_url_problem(url: &str) -> Option<String> {
    crate::redis::builder(url, &crate::redis::ConnectOptions::default())
        .err()
        .map(|e| format!("invalid --redis-url: {e}"))
}

/// A PostgreSQL URL the client accepts (nothing is connected).
pub fn database_url_problem(url: &str) -> Option<String> {
    crate::ledger::postgres::parse_url(url)
        .err()
        .map(|e| crate::telemetry::Chain(&e).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    use crate::cli::{Cli, Command};

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds_parse_fractions_and_refuse_the_rest() {
        for (text, want) in [
            ("0", Some(Duration::ZERO)),
            ("10", Some(Duration::from_secs(10))),
            ("0.5", Some(Duration::from_millis(500))),
            (" 1.25 ", Some(Duration::from_millis(1250))),
            ("1e9", Some(Duration::from_secs(1_000_000_000))),
            ("-1", None),
            ("-0.5", None),
            ("NaN", None),
            ("inf", None),
            ("1e10", None),
            ("ten", None),
            ("", None),
        ] {
            assert_eq!(parse_seconds(text).ok(), want, "{text:?}");
        }
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("rtconfig").chain(args.iter().copied()))
    }

    #[test]
    fn a_bad_duration_names_its_flag() {
        for (args, flag) in [
            (&["dev", "--drain-timeout", "-1"][..], "--drain-timeout"),
            (&["dev", "--drain-timeout=NaN"][..], "--drain-timeout"),
            (
                &[
                    "sidecar",
                    "--namespace",
                    "a",
                    "--redis-url",
                    "redis://x",
                    "--resync-interval",
                    "1e12",
                ][..],
                "--resync-interval",
            ),
        ] {
            let err = parse(args).expect_err("refused").to_string();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
        let cli = parse(&["dev", "--drain-timeout", "0.5"]).expect("parsed");
        let Command::Dev(dev) = cli.command else {
            panic!("not dev")
        };
        assert_eq!(dev.drain.drain_timeout, Duration::from_millis(500));
    }

    fn admin(args: &[&str]) -> Result<AdminSettings, SettingsError> {
        let mut all = vec!["admin"];
        all.extend_from_slice(args);
        match parse(&all).expect("parsed").command {
            Command::Admin(a) => AdminSettings::try_from(a),
            _ => panic!("not admin"),
        }
    }

    #[test]
    fn admin_settings_report_every_problem_at_once() {
        let token = ["--admin-token", "0123456789abcdef"];
        let redis = ["--redis-url", "redis://127.0.0.1:6379"];
        let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
            (
                vec![],
                vec!["needs a ledger", "needs --redis-url", "needs --admin-token"],
            ),
            (
                vec![
                    "--data-dir",
                    "d",
                    "--admin-token",
                    "short",
                    "--redis-url",
                    "http://x",
                    "--relay-interval",
                    "0",
                ],
                vec![
                    "invalid --redis-url",
                    "--admin-token must be at least 16",
                    "--relay-interval must be above zero",
                ],
            ),
            (
                [
                    &[
                        "--database-url",
                        "postgres://u@h/db",
                        "--database-timeout",
                        "0.01",
                    ][..],
                    &token,
                    &redis,
                ]
                .concat(),
                vec!["--database-timeout must be at least 0.1"],
            ),
            (
                [
                    &[
                        "--database-url",
                        "not a url",
                        "--anti-entropy-interval",
                        "0",
                    ][..],
                    &token,
                    &redis,
                ]
                .concat(),
                vec![
                    "invalid --database-url",
                    "--anti-entropy-interval must be above zero",
                ],
            ),
            ([&["--data-dir", "d"][..], &token, &redis].concat(), vec![]),
        ];
        for (args, want) in cases {
            match admin(&args) {
                Ok(_) => assert!(want.is_empty(), "{args:?} accepted; want {want:?}"),
                Err(SettingsError(problems)) => {
                    assert_eq!(problems.len(), want.len(), "{args:?}: {problems:?}");
                    for (p, w) in problems.iter().zip(&want) {
                        assert!(p.contains(w), "{args:?}: {p:?} lacks {w:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn read_api_settings_refuse_non_loopback_and_short_resync() {
        let base = SidecarSettings::for_tests(PathBuf::from("config"), "redis://127.0.0.1:6379");
        let cases: Vec<(SidecarSettings, Vec<&str>)> = vec![
            (base.clone(), vec![]),
            (
                SidecarSettings {
                    listen: "0.0.0.0:7070".parse().expect("addr"),
                    ..base.clone()
                },
                vec!["is not a loopback address"],
            ),
            (
                SidecarSettings {
                    listen: "0.0.0.0:7070".parse().expect("addr"),
                    allow_non_loopback: true,
                    ..base.clone()
                },
                vec![],
            ),
            (
                SidecarSettings {
                    listen: "10.0.0.1:7070".parse().expect("addr"),
                    resync_interval: Duration::from_millis(10),
                    redis_url: "localhost:6379".into(),
                    namespace: " ".into(),
                    ..base.clone()
                },
                vec![
                    "loopback",
                    "--namespace must not be empty",
                    "invalid --redis-url",
                    "--resync-interval",
                ],
            ),
        ];
        for (s, want) in cases {
            let problems = s.problems();
            assert_eq!(problems.len(), want.len(), "{problems:?}");
            for (p, w) in problems.iter().zip(&want) {
                assert!(p.contains(w), "{p:?} lacks {w:?}");
            }
        }
        let dev = DevSettings {
            listen: "0.0.0.0:7070".parse().expect("addr"),
            ..DevSettings::for_tests(PathBuf::new(), PathBuf::new())
        };
        assert_eq!(dev.problems().len(), 1);
    }

    #[test]
    fn reconcile_needs_force_and_one_ledger() {
        let reconcile = |args: &[&str]| {
            let mut all = vec!["admin", "reconcile"];
            all.extend_from_slice(args);
            match parse(&all).expect("parsed").command {
                Command::Admin(crate::cli::AdminArgs {
                    command: Some(crate::cli::AdminCommand::Reconcile(r)),
                    ..
                }) => ReconcileSettings::try_from(r),
                _ => panic!("not reconcile"),
            }
        };
        let err = reconcile(&[]).expect_err("refused");
        assert_eq!(err.0.len(), 2, "{err:?}");
        assert!(reconcile(&["--force", "--data-dir", "d"]).is_ok());
    }

    #[test]
    fn tokens_count_characters_not_bytes() {
        assert!(token_problem("0123456789abcdef").is_none());
        assert!(token_problem("  0123456789abcde  ").is_some());
        assert!(token_problem("ééééééééééééééé").is_some());
    }
}
