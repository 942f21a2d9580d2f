//! Settings in one place: the flags every role shares (flattened clap `Args`), the value parser
//! for durations, the typed settings of each role, and one `TryFrom<XArgs> for XSettings` per
//! role that checks everything at once and reports every problem (exit 64). The checks are pure
//! functions; `app`'s composition roots run the same checks on settings built in code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use crate::cli::{
    AdminArgs, ConstanceArgs, DevArgs, LedgerArgs, MigrateArgs, ReconcileArgs, SidecarArgs,
};
pub use crate::http::host::allowed_host_problem;
pub use crate::http::tls::TlsFiles;
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
    /// Serve beyond localhost: the read API on a non-loopback --listen address (sidecar and
    /// dev) and, in dev, the admin (--admin-listen) and the probes (--probe-listen) too.
    #[arg(long, env = "RTCONFIG_ALLOW_NON_LOOPBACK")]
    pub allow_non_loopback: bool,
    /// Most long-polls and SSE streams open at once; more get 503 with Retry-After.
    #[arg(long, env = "RTCONFIG_MAX_WATCHERS", default_value_t = 1024)]
    pub max_watchers: usize,
}

/// Flags of the admin API that dev shares.
#[derive(Debug, Clone, Args)]
pub struct AdminApiArgs {
    /// Most admin event streams (GET /api/v1/namespaces/{ns}/events) open at once; more get
    /// 503 with Retry-After.
    #[arg(long, env = "RTCONFIG_MAX_EVENT_STREAMS", default_value_t = crate::admin::events::DEFAULT_MAX_STREAMS)]
    pub max_event_streams: usize,
}

/// `--max-event-streams` must allow at least one stream.
fn max_event_streams_problem(n: usize) -> Option<String> {
    (n == 0).then(|| "--max-event-streams must be at least 1".to_owned())
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
    /// Single sign-on: the OpenID provider's issuer URL (enables `GET /auth/oidc/login`; needs
    /// --oidc-client-id, --oidc-role-map and --public-url).
    #[arg(long, env = "RTCONFIG_OIDC_ISSUER", value_name = "URL")]
    pub oidc_issuer: Option<String>,
    /// The client id registered at the provider.
    #[arg(long, env = "RTCONFIG_OIDC_CLIENT_ID", value_name = "ID")]
    pub oidc_client_id: Option<String>,
    /// A file holding the client secret (none: a public client, PKCE only).
    #[arg(long, env = "RTCONFIG_OIDC_CLIENT_SECRET_FILE", value_name = "FILE")]
    pub oidc_client_secret_file: Option<PathBuf>,
    /// The claim whose values map to roles (the role map's table name).
    #[arg(
        long,
        env = "RTCONFIG_OIDC_ROLE_CLAIM",
        default_value = "groups",
        value_name = "NAME"
    )]
    pub oidc_role_claim: String,
    /// A TOML file mapping claim values to roles (`[groups] "platform-admins" = ["admin"]`).
    #[arg(long, env = "RTCONFIG_OIDC_ROLE_MAP", value_name = "FILE")]
    pub oidc_role_map: Option<PathBuf>,
}

/// Single sign-on settings (`--oidc-*`); the files are read when the admin starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcFlags {
    pub issuer: String,
    pub client_id: String,
    pub client_secret_file: Option<PathBuf>,
    pub role_claim: String,
    pub role_map: PathBuf,
}

/// The `--oidc-*` flags as one choice: all that is needed, or none, or what is missing.
fn oidc_choice(a: &AuthArgs) -> Result<Option<OidcFlags>, Vec<String>> {
    let Some(issuer) = a.oidc_issuer.clone() else {
        let stray = [
            ("--oidc-client-id", a.oidc_client_id.is_some()),
            (
                "--oidc-client-secret-file",
                a.oidc_client_secret_file.is_some(),
            ),
            ("--oidc-role-map", a.oidc_role_map.is_some()),
        ];
        let problems: Vec<String> = stray
            .iter()
            .filter(|(_, given)| *given)
            .map(|(flag, _)| format!("{flag} needs --oidc-issuer"))
            .collect();
        return if problems.is_empty() {
            Ok(None)
        } else {
            Err(problems)
        };
    };
    let mut problems = Vec::new();
    if a.oidc_client_id.is_none() {
        problems.push("--oidc-issuer needs --oidc-client-id".to_owned());
    }
    if a.oidc_role_map.is_none() {
        problems.push(
            "--oidc-issuer needs --oidc-role-map FILE (which provider groups get which roles)"
                .to_owned(),
        );
    }
    if a.public_url.is_none() {
        problems.push(
            "--oidc-issuer needs --public-url (the redirect URI is --public-url + /auth/oidc/callback)"
                .to_owned(),
        );
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Some(OidcFlags {
        issuer,
        client_id: a.oidc_client_id.clone().unwrap_or_default(),
        client_secret_file: a.oidc_client_secret_file.clone(),
        role_claim: a.oidc_role_claim.clone(),
        role_map: a.oidc_role_map.clone().unwrap_or_default(),
    }))
}

/// clap value parser for `--trusted-proxy` (`auth::client_ip::parse_trusted_proxy`).
pub fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    crate::auth::client_ip::parse_trusted_proxy(text).map_err(|e| e.to_string())
}

/// The access layer's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub session_idle_timeout: Duration,
    pub session_lifetime: Duration,
    pub require_mfa_for_admins: bool,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub public_url: Option<String>,
    /// Single sign-on (`--oidc-*`), when configured.
    pub oidc: Option<OidcFlags>,
    /// Problems of the `--oidc-*` flags found while reading them.
    oidc_problems: Vec<String>,
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
            oidc: None,
            oidc_problems: Vec::new(),
        }
    }

    fn from_args(a: AuthArgs, dev: bool) -> AuthSettings {
        let (oidc, oidc_problems) = match oidc_choice(&a) {
            Ok(o) => (o, Vec::new()),
            Err(p) => (None, p),
        };
        AuthSettings {
            oidc,
            oidc_problems,
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
        out.extend(self.oidc_problems.iter().cloned());
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

/// The `Host` check of every listener (against DNS rebinding).
#[derive(Debug, Clone, Default, Args)]
pub struct HostArgs {
    /// A host name (or IP address) this service is reached by; repeatable, or comma-separated
    /// in the variable. Requests for any other Host get 421 host_not_allowed. Always allowed:
    /// the listen address, and localhost on a loopback listener. A listener on 0.0.0.0 or ::
    /// without this flag answers every host; set it in production.
    #[arg(
        long = "allowed-host",
        env = "RTCONFIG_ALLOWED_HOST",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub allowed_hosts: Vec<String>,
}

/// TLS for the admin listener.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// Serve the admin over HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "RTCONFIG_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "RTCONFIG_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
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

/// A flag that carries a secret, and its `_FILE` variant (`--NAME-file`, `RTCONFIG_NAME_FILE`),
/// so the secret need not appear in `ps` or the environment.
#[derive(Debug, Clone, Copy)]
pub struct SecretFlag {
    /// `--admin-token`
    pub flag: &'static str,
    /// `RTCONFIG_ADMIN_TOKEN`
    pub var: &'static str,
}

pub const ADMIN_TOKEN: SecretFlag = SecretFlag {
    flag: "--admin-token",
    var: "RTCONFIG_ADMIN_TOKEN",
};
pub const DATABASE_URL: SecretFlag = SecretFlag {
    flag: "--database-url",
    var: "RTCONFIG_DATABASE_URL",
};
pub const REDIS_URL: SecretFlag = SecretFlag {
    flag: "--redis-url",
    var: "RTCONFIG_REDIS_URL",
};

/// A secret from its flag/variable or from its `_FILE` variant (read now; trailing line breaks
/// trimmed). Both given, an unreadable file or an empty one is a problem naming the flag, the
/// variable and the file.
pub fn read_secret(
    secret: SecretFlag,
    value: Option<String>,
    file: Option<&Path>,
) -> Result<Option<String>, String> {
    let SecretFlag { flag, var } = secret;
    match (value, file) {
        (Some(_), Some(_)) => Err(format!(
            "give {flag} ({var}) or {flag}-file ({var}_FILE), not both"
        )),
        (Some(v), None) => Ok(Some(v)),
        (None, None) => Ok(None),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "cannot read {flag}-file ({var}_FILE) {}: {}",
                    path.display(),
                    io_reason(&e)
                )
            })?;
            let text = text.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                return Err(format!(
                    "{flag}-file ({var}_FILE) {} is empty",
                    path.display()
                ));
            }
            Ok(Some(text.to_owned()))
        }
    }
}

/// Why a file could not be read, in words (no `os error` numbers).
pub fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => "no such file".into(),
        ErrorKind::PermissionDenied => "permission denied".into(),
        ErrorKind::InvalidData => "it is not UTF-8 text".into(),
        ErrorKind::IsADirectory => "it is a directory".into(),
        kind => kind.to_string(),
    }
}

/// `--tls-cert` and `--tls-key`: both or neither.
pub fn tls_choice(a: TlsArgs) -> Result<Option<TlsFiles>, String> {
    match (a.tls_cert, a.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        (Some(_), None) => Err("--tls-cert needs --tls-key (give both, or neither)".into()),
        (None, Some(_)) => Err("--tls-key needs --tls-cert (give both, or neither)".into()),
    }
}

/// Every unusable `--allowed-host` entry.
pub fn allowed_hosts_problems(hosts: &[String]) -> impl Iterator<Item = String> + '_ {
    hosts.iter().filter_map(|h| allowed_host_problem(h))
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
    /// Allow `listen`, `admin_listen` and `probe_listen` on non-loopback addresses.
    pub allow_non_loopback: bool,
    pub max_watchers: usize,
    /// `--max-event-streams` of the admin listener.
    pub max_event_streams: usize,
    pub drain_timeout: Duration,
    pub admin_token: Option<String>,
    pub auth: AuthSettings,
    /// `--allowed-host`, for all three listeners.
    pub allowed_hosts: Vec<String>,
    /// `--tls-cert`/`--tls-key` of the admin listener.
    pub tls: Option<TlsFiles>,
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
            max_event_streams: crate::admin::events::DEFAULT_MAX_STREAMS,
            drain_timeout: Duration::from_secs(5),
            admin_token: None,
            auth: AuthSettings::defaults(true),
            allowed_hosts: Vec::new(),
            tls: None,
        }
    }

    /// Every problem of these settings (none: empty).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(loopback_problem(self.listen, self.allow_non_loopback));
        out.extend(dev_loopback_problem(
            "--admin-listen",
            self.admin_listen,
            self.allow_non_loopback,
        ));
        out.extend(dev_loopback_problem(
            "--probe-listen",
            self.probe_listen,
            self.allow_non_loopback,
        ));
        out.extend(name_problem("--namespace", &self.namespace));
        out.extend(name_problem("--cluster-id", &self.cluster_id));
        out.extend(self.auth.problems());
        out.extend(self.admin_token.as_deref().and_then(token_problem));
        out.extend(allowed_hosts_problems(&self.allowed_hosts));
        out.extend(max_event_streams_problem(self.max_event_streams));
        out
    }

    /// Whether every listener is on loopback (what the banner may claim).
    pub fn loopback_only(&self) -> bool {
        [self.listen, self.admin_listen, self.probe_listen]
            .iter()
            .all(|a| a.ip().is_loopback())
    }
}

impl TryFrom<DevArgs> for DevSettings {
    type Error = SettingsError;

    fn try_from(a: DevArgs) -> Result<DevSettings, SettingsError> {
        let mut problems = Vec::new();
        let admin_token = read_secret(ADMIN_TOKEN, a.admin_token, a.admin_token_file.as_deref())
            .unwrap_or_else(|p| {
                problems.push(p);
                None
            });
        let tls = tls_choice(a.tls).unwrap_or_else(|p| {
            problems.push(p);
            None
        });
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
            max_event_streams: a.admin_api.max_event_streams,
            drain_timeout: a.drain.drain_timeout,
            admin_token,
            allowed_hosts: a.hosts.allowed_hosts,
            tls,
            auth: AuthSettings::from_args(a.auth, true),
        };
        problems.extend(s.problems());
        SettingsError::check(problems)?;
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
    /// `--allowed-host`, for the read API and the probe listener.
    pub allowed_hosts: Vec<String>,
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
            allowed_hosts: Vec::new(),
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
        out.extend(allowed_hosts_problems(&self.allowed_hosts));
        out
    }
}

impl TryFrom<SidecarArgs> for SidecarSettings {
    type Error = SettingsError;

    fn try_from(a: SidecarArgs) -> Result<SidecarSettings, SettingsError> {
        let mut problems = Vec::new();
        let redis_url = match read_secret(REDIS_URL, a.redis_url, a.redis_url_file.as_deref()) {
            Ok(Some(url)) => Some(url),
            Ok(None) => {
                problems.push(
                    "the sidecar needs --redis-url (or --redis-url-file / RTCONFIG_REDIS_URL_FILE)"
                        .into(),
                );
                None
            }
            Err(p) => {
                problems.push(p);
                None
            }
        };
        let missing_redis = redis_url.is_none();
        let s = SidecarSettings {
            schema_dir: a.common.schema_dir,
            namespace: a.namespace,
            cluster_id: a.common.cluster_id,
            redis_url: redis_url.unwrap_or_default(),
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
            allowed_hosts: a.hosts.allowed_hosts,
        };
        // A missing URL is reported once, not also as an invalid one.
        problems.extend(
            s.problems()
                .into_iter()
                .filter(|p| !(missing_redis && p.contains("--redis-url"))),
        );
        SettingsError::check(problems)?;
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
    let database_url = read_secret(DATABASE_URL, a.database_url, a.database_url_file.as_deref())?;
    match (database_url, a.data_dir) {
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
    /// `--hint-payload-max-bytes`.
    pub hint_payload_max_bytes: usize,
    /// `--allowed-host` of the admin listener.
    pub allowed_hosts: Vec<String>,
    /// `--tls-cert`/`--tls-key`.
    pub tls: Option<TlsFiles>,
    /// `--max-event-streams`.
    pub max_event_streams: usize,
    /// `--constance-mirror` and its companions; `None`: no mirror.
    pub constance: Option<ConstanceSettings>,
}

/// `--constance-*` as given (the namespace is resolved against the schema dir at start:
/// [`ConstanceSettings::resolve_namespace`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ConstanceSettings {
    pub prefix: String,
    pub namespace: Option<String>,
    pub redis_url: Option<String>,
    pub channel: Option<String>,
    pub poll_interval: Duration,
}

impl ConstanceSettings {
    /// From the flags: `Ok(None)` without `--constance-mirror`; every problem otherwise.
    pub fn from_args(a: ConstanceArgs) -> Result<Option<ConstanceSettings>, Vec<String>> {
        let Some(prefix) = a.prefix else {
            let stray: Vec<&str> = [
                a.namespace.as_ref().map(|_| "--constance-namespace"),
                a.redis_url.as_ref().map(|_| "--constance-redis-url"),
                a.channel.as_ref().map(|_| "--constance-channel"),
            ]
            .into_iter()
            .flatten()
            .collect();
            return if stray.is_empty() {
                Ok(None)
            } else {
                Err(vec![format!(
                    "{} mean nothing without --constance-mirror PREFIX",
                    stray.join(", ")
                )])
            };
        };
        let s = ConstanceSettings {
            prefix,
            namespace: a.namespace,
            redis_url: a.redis_url,
            channel: a.channel,
            poll_interval: a.poll_interval,
        };
        let problems = s.problems();
        if problems.is_empty() {
            Ok(Some(s))
        } else {
            Err(problems)
        }
    }

    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.prefix.is_empty() {
            out.push(
                "--constance-mirror needs constance's key prefix (CONSTANCE_REDIS_PREFIX, e.g. \
                 constance:)"
                    .to_owned(),
            );
        }
        if self.prefix.chars().any(char::is_whitespace) {
            out.push("--constance-mirror: the prefix must not contain spaces".to_owned());
        }
        if let Some(url) = &self.redis_url {
            if let Some(p) = redis_url_problem(url) {
                out.push(p.replace("--redis-url", "--constance-redis-url"));
            }
        }
        if let Some(url) = self.redis_url.as_deref() {
            if url.contains("-cluster://") {
                out.push(
                    "--constance-redis-url must be one Redis server (redis:// or rediss://), as \
                     constance's Redis backend is"
                        .to_owned(),
                );
            }
        }
        if self.channel.as_deref() == Some("") {
            out.push("--constance-channel must not be empty".to_owned());
        }
        if self.poll_interval.is_zero() {
            out.push("--constance-poll-interval must be above zero".to_owned());
        }
        out
    }

    /// The namespace to mirror: `--constance-namespace`, or the schema dir's only one.
    pub fn resolve_namespace(&self, namespaces: &[&str]) -> Result<String, String> {
        match (&self.namespace, namespaces) {
            (Some(ns), all) if all.contains(&ns.as_str()) => Ok(ns.clone()),
            (Some(ns), all) => Err(format!(
                "--constance-namespace {ns:?} is not a namespace of the schema dir (it has: {})",
                all.join(", ")
            )),
            (None, [one]) => Ok((*one).to_owned()),
            (None, all) => Err(format!(
                "the schema dir has {} namespaces ({}): name the one constance's keys map to with \
                 --constance-namespace NS",
                all.len(),
                all.join(", ")
            )),
        }
    }

    /// The URL of constance's Redis: `--constance-redis-url`, else the admin's `--redis-url`.
    pub fn redis_url_or<'a>(&'a self, admin_redis_url: &'a str) -> &'a str {
        self.redis_url.as_deref().unwrap_or(admin_redis_url)
    }
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
            hint_payload_max_bytes: crate::relay::DEFAULT_HINT_PAYLOAD_MAX_BYTES,
            allowed_hosts: Vec::new(),
            tls: None,
            max_event_streams: crate::admin::events::DEFAULT_MAX_STREAMS,
            constance: None,
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
        out.extend(allowed_hosts_problems(&self.allowed_hosts));
        out.extend(max_event_streams_problem(self.max_event_streams));
        if let Some(c) = &self.constance {
            out.extend(c.problems());
            if c.redis_url.is_none() && self.redis_url.contains("-cluster://") {
                out.push(
                    "--constance-mirror on a Redis Cluster --redis-url: give constance's own \
                     Redis with --constance-redis-url (one server, as constance's backend is)"
                        .to_owned(),
                );
            }
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
        let redis_url = read_secret(REDIS_URL, a.redis_url, a.redis_url_file.as_deref())
            .unwrap_or_else(|p| {
                problems.push(p);
                Some(String::new())
            });
        if redis_url.is_none() {
            problems.push("the admin needs --redis-url (or --redis-url-file)".into());
        }
        let admin_token = read_secret(ADMIN_TOKEN, a.admin_token, a.admin_token_file.as_deref())
            .unwrap_or_else(|p| {
                problems.push(p);
                None
            });
        let tls = tls_choice(a.tls).unwrap_or_else(|p| {
            problems.push(p);
            None
        });
        let constance = ConstanceSettings::from_args(a.constance).unwrap_or_else(|p| {
            problems.extend(p);
            None
        });
        let s = AdminSettings {
            schema_dir: a.common.schema_dir,
            // Placeholder while collecting problems; never returned.
            ledger: ledger.unwrap_or(AdminLedger::Embedded {
                data_dir: PathBuf::new(),
            }),
            redis_url: redis_url.unwrap_or_default(),
            cluster_id: a.common.cluster_id,
            listen: a.listen,
            admin_token,
            auth: AuthSettings::from_args(a.auth, false),
            drain_timeout: a.drain.drain_timeout,
            relay_interval: a.relay_interval,
            anti_entropy_interval: a.anti_entropy_interval,
            hint_payload_max_bytes: a.hint_payload_max_bytes,
            allowed_hosts: a.hosts.allowed_hosts,
            tls,
            max_event_streams: a.admin_api.max_event_streams,
            constance,
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

/// `rtconfig admin migrate`.
#[derive(Debug, Clone)]
pub struct MigrateSettings {
    pub pg: PgSettings,
}

impl TryFrom<MigrateArgs> for MigrateSettings {
    type Error = SettingsError;

    fn try_from(a: MigrateArgs) -> Result<MigrateSettings, SettingsError> {
        match read_secret(DATABASE_URL, a.database_url, a.database_url_file.as_deref()) {
            Ok(Some(url)) => Ok(MigrateSettings {
                pg: PgSettings::new(&url),
            }),
            Ok(None) => Err(SettingsError::one(
                "migrate needs --database-url (or --database-url-file / RTCONFIG_DATABASE_URL_FILE)",
            )),
            Err(p) => Err(SettingsError::one(p)),
        }
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

/// `dev` serves its admin without auth and its probes and metrics to anyone who reaches them:
/// loopback only, unless `--allow-non-loopback`.
pub fn dev_loopback_problem(
    flag: &str,
    addr: SocketAddr,
    allow_non_loopback: bool,
) -> Option<String> {
    (!addr.ip().is_loopback() && !allow_non_loopback).then(|| {
        format!(
            "{flag} {addr} is not a loopback address: dev binds loopback only (its probes and \
             read API need no credentials); pass --allow-non-loopback to serve it beyond \
             localhost"
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
    use crate::ledger::pg_tls;
    match crate::ledger::postgres::parse_url(url) {
        Err(e) => Some(crate::telemetry::Chain(&e).to_string()),
        // The TLS settings too: a missing or unusable `sslrootcert` file is named at start.
        Ok(_) => pg_tls::split(url)
            .and_then(|(_, params)| pg_tls::connector(&params))
            .err()
            .map(|e| crate::telemetry::Chain(&e).to_string()),
    }
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
            (vec![], vec!["needs a ledger", "needs --redis-url"]),
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

    fn dev(args: &[&str]) -> Result<DevSettings, SettingsError> {
        let mut all = vec!["dev"];
        all.extend_from_slice(args);
        match parse(&all).expect("parsed").command {
            Command::Dev(a) => DevSettings::try_from(a),
            _ => panic!("not dev"),
        }
    }

    fn sidecar(args: &[&str]) -> Result<SidecarSettings, SettingsError> {
        let mut all = vec!["sidecar", "--namespace", "demo"];
        all.extend_from_slice(args);
        match parse(&all).expect("parsed").command {
            Command::Sidecar(a) => SidecarSettings::try_from(a),
            _ => panic!("not sidecar"),
        }
    }

    /// Asserts `result` failed with exactly these problems (each a substring, in order).
    fn problems<T: std::fmt::Debug>(result: Result<T, SettingsError>, want: &[&str], what: &str) {
        match result {
            Ok(s) => assert!(want.is_empty(), "{what}: accepted ({s:?}); want {want:?}"),
            Err(SettingsError(got)) => {
                assert_eq!(got.len(), want.len(), "{what}: {got:?}");
                for (p, w) in got.iter().zip(want) {
                    assert!(p.contains(w), "{what}: {p:?} lacks {w:?}");
                }
            }
        }
    }

    #[test]
    fn dev_binds_loopback_only_unless_allowed_and_needs_a_strong_token() {
        let cases: &[(&[&str], &[&str])] = &[
            (&[], &[]),
            (
                &["--admin-listen", "0.0.0.0:8080"],
                &["--admin-listen 0.0.0.0:8080 is not a loopback address"],
            ),
            (
                &["--probe-listen", "0.0.0.0:7071"],
                &["--probe-listen 0.0.0.0:7071 is not a loopback address"],
            ),
            (
                &[
                    "--admin-listen",
                    "[::]:8080",
                    "--probe-listen",
                    "10.0.0.1:7071",
                    "--listen",
                    "0.0.0.0:7070",
                ],
                &[
                    "--listen 0.0.0.0:7070",
                    "--admin-listen [::]:8080",
                    "--probe-listen 10.0.0.1:7071",
                ],
            ),
            (
                &[
                    "--admin-listen",
                    "0.0.0.0:8080",
                    "--probe-listen",
                    "0.0.0.0:7071",
                    "--allow-non-loopback",
                ],
                &[],
            ),
            (&["--admin-listen", "[::1]:8080"], &[]),
            (
                &["--admin-token", "abc"],
                &["--admin-token must be at least 16"],
            ),
            (&["--admin-token", "0123456789abcdef"], &[]),
        ];
        for (args, want) in cases {
            problems(dev(args), want, &format!("{args:?}"));
        }
        let p = dev(&["--admin-listen", "0.0.0.0:8080"]).expect_err("refused");
        assert!(p.0[0].contains("--allow-non-loopback"), "{p:?}");
        let open = dev(&["--admin-listen", "0.0.0.0:8080", "--allow-non-loopback"]).expect("ok");
        assert!(!open.loopback_only());
        assert!(dev(&[]).expect("ok").loopback_only());
    }

    #[test]
    fn secret_files_are_read_trimmed_and_exclusive_with_their_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path.to_str().expect("utf-8").to_owned()
        };
        let token = file("token", "0123456789abcdef\n");
        let crlf = file("crlf", "0123456789abcdef\r\n");
        let empty = file("empty", "\n");
        let missing = dir
            .path()
            .join("missing")
            .to_str()
            .expect("utf-8")
            .to_owned();
        let redis = file("redis", "redis://127.0.0.1:6379\n");
        let pg = file("pg", "postgres://u:p@127.0.0.1/db\n");

        let s = dev(&["--admin-token-file", &token]).expect("token file");
        assert_eq!(s.admin_token.as_deref(), Some("0123456789abcdef"));
        let s = dev(&["--admin-token-file", &crlf]).expect("crlf");
        assert_eq!(s.admin_token.as_deref(), Some("0123456789abcdef"));
        problems(
            dev(&["--admin-token", "0123456789abcdef", "--admin-token-file", &token]),
            &["give --admin-token (RTCONFIG_ADMIN_TOKEN) or --admin-token-file (RTCONFIG_ADMIN_TOKEN_FILE), not both"],
            "both",
        );
        problems(
            dev(&["--admin-token-file", &missing]),
            &["cannot read --admin-token-file (RTCONFIG_ADMIN_TOKEN_FILE)"],
            "missing",
        );
        let err = dev(&["--admin-token-file", &missing]).expect_err("missing");
        assert!(
            err.0[0].contains(&missing) && err.0[0].ends_with("no such file"),
            "{err:?}"
        );
        assert!(!err.0[0].contains("os error"), "{err:?}");
        problems(dev(&["--admin-token-file", &empty]), &["is empty"], "empty");

        // The admin: token, Redis URL and database URL from files.
        let a = admin(&[
            "--admin-token-file",
            &token,
            "--redis-url-file",
            &redis,
            "--database-url-file",
            &pg,
        ])
        .expect("all from files");
        assert_eq!(a.admin_token.as_deref(), Some("0123456789abcdef"));
        assert_eq!(a.redis_url, "redis://127.0.0.1:6379");
        match &a.ledger {
            AdminLedger::Postgres(pg) => assert_eq!(pg.url, "postgres://u:p@127.0.0.1/db"),
            other => panic!("not postgres: {other:?}"),
        }
        problems(
            admin(&[
                "--admin-token-file", &missing,
                "--redis-url", "redis://x", "--redis-url-file", &redis,
                "--database-url-file", &missing,
            ]),
            &[
                "cannot read --database-url-file (RTCONFIG_DATABASE_URL_FILE)",
                "give --redis-url (RTCONFIG_REDIS_URL) or --redis-url-file (RTCONFIG_REDIS_URL_FILE), not both",
                "cannot read --admin-token-file (RTCONFIG_ADMIN_TOKEN_FILE)",
            ],
            "admin files",
        );
        assert!(admin(&["--data-dir", "d", "--redis-url", "redis://x"])
            .expect("the bootstrap token is optional")
            .admin_token
            .is_none());

        // The sidecar: the Redis URL from a file, or a clear "missing".
        let s = sidecar(&["--redis-url-file", &redis]).expect("redis file");
        assert_eq!(s.redis_url, "redis://127.0.0.1:6379");
        problems(sidecar(&[]), &["the sidecar needs --redis-url"], "no redis");
        problems(
            sidecar(&["--redis-url-file", &missing]),
            &["cannot read --redis-url-file (RTCONFIG_REDIS_URL_FILE)"],
            "missing redis file",
        );

        // admin migrate
        let migrate = |args: &[&str]| {
            let mut all = vec!["admin", "migrate"];
            all.extend_from_slice(args);
            match parse(&all).expect("parsed").command {
                Command::Admin(crate::cli::AdminArgs {
                    command: Some(crate::cli::AdminCommand::Migrate(m)),
                    ..
                }) => MigrateSettings::try_from(m),
                _ => panic!("not migrate"),
            }
        };
        assert_eq!(
            migrate(&["--database-url-file", &pg])
                .expect("migrate")
                .pg
                .url,
            "postgres://u:p@127.0.0.1/db"
        );
        problems(migrate(&[]), &["migrate needs --database-url"], "migrate");
    }

    #[test]
    fn tls_needs_both_files_and_allowed_hosts_must_be_names() {
        let token = ["--admin-token", "0123456789abcdef"];
        let base = [&["--data-dir", "d", "--redis-url", "redis://x"][..], &token].concat();
        let with = |extra: &[&str]| admin(&[&base[..], extra].concat());
        let a = with(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]).expect("both");
        assert_eq!(
            a.tls,
            Some(TlsFiles {
                cert: "c.pem".into(),
                key: "k.pem".into()
            })
        );
        problems(
            with(&["--tls-cert", "c.pem"]),
            &["--tls-cert needs --tls-key"],
            "cert only",
        );
        problems(
            with(&["--tls-key", "k.pem"]),
            &["--tls-key needs --tls-cert"],
            "key only",
        );
        problems(
            dev(&["--tls-key", "k.pem"]),
            &["--tls-key needs --tls-cert"],
            "dev key only",
        );
        assert!(dev(&["--tls-cert", "c", "--tls-key", "k"])
            .expect("dev tls")
            .tls
            .is_some());

        let a = with(&[
            "--allowed-host",
            "a.example,b.example",
            "--allowed-host",
            "10.0.0.5",
        ])
        .expect("hosts");
        assert_eq!(a.allowed_hosts, ["a.example", "b.example", "10.0.0.5"]);
        problems(
            with(&["--allowed-host", "https://a.example"]),
            &["--allowed-host \"https://a.example\" is not a host name"],
            "scheme",
        );
        problems(
            dev(&["--allowed-host", "a.example:8080"]),
            &["--allowed-host"],
            "dev port",
        );
        problems(
            sidecar(&["--redis-url", "redis://x", "--allowed-host", "a b"]),
            &["--allowed-host"],
            "sidecar",
        );
    }

    fn constance_args(
        prefix: Option<&str>,
        namespace: Option<&str>,
        url: Option<&str>,
        poll: f64,
    ) -> ConstanceArgs {
        ConstanceArgs {
            prefix: prefix.map(str::to_owned),
            namespace: namespace.map(str::to_owned),
            redis_url: url.map(str::to_owned),
            channel: None,
            poll_interval: Duration::from_secs_f64(poll),
        }
    }

    #[test]
    fn constance_flags_are_checked_together() {
        let ok = ConstanceSettings::from_args(constance_args(Some("constance:"), None, None, 1.0));
        assert!(
            matches!(ok, Ok(Some(ref c)) if c.prefix == "constance:"),
            "{ok:?}"
        );
        assert_eq!(
            ConstanceSettings::from_args(constance_args(None, None, None, 1.0)),
            Ok(None)
        );
        let cases: &[(ConstanceArgs, &str)] = &[
            (
                constance_args(None, Some("demo"), None, 1.0),
                "--constance-namespace mean nothing without --constance-mirror",
            ),
            (constance_args(Some(""), None, None, 1.0), "key prefix"),
            (
                constance_args(Some("c:"), None, Some("http://x"), 1.0),
                "--constance-redis-url",
            ),
            (
                constance_args(
                    Some("c:"),
                    None,
                    Some("redis-cluster://127.0.0.1:7000"),
                    1.0,
                ),
                "one Redis server",
            ),
            (
                constance_args(Some("c:"), None, None, 0.0),
                "--constance-poll-interval must be above zero",
            ),
        ];
        for (args, want) in cases {
            let got = ConstanceSettings::from_args(args.clone());
            assert!(
                matches!(&got, Err(p) if p.iter().any(|p| p.contains(want))),
                "{want}: {got:?}"
            );
        }
    }

    #[test]
    fn the_constance_namespace_is_the_only_one_or_named() {
        let c = |ns: Option<&str>| ConstanceSettings {
            prefix: "constance:".into(),
            namespace: ns.map(str::to_owned),
            redis_url: None,
            channel: None,
            poll_interval: Duration::from_secs(1),
        };
        assert_eq!(c(None).resolve_namespace(&["demo"]), Ok("demo".into()));
        assert_eq!(c(Some("b")).resolve_namespace(&["a", "b"]), Ok("b".into()));
        let several = c(None).resolve_namespace(&["a", "b"]);
        assert!(
            matches!(&several, Err(e) if e.contains("--constance-namespace NS")),
            "{several:?}"
        );
        let unknown = c(Some("z")).resolve_namespace(&["a"]);
        assert!(
            matches!(&unknown, Err(e) if e.contains("\"z\"")),
            "{unknown:?}"
        );
        assert_eq!(c(None).redis_url_or("redis://r"), "redis://r");
    }
}
