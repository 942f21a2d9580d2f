//! Composition roots: build every part of a role from its settings, bind the listeners, and run
//! until stopped. `main` and the integration tests use exactly these functions (tests bind
//! port 0 and read the bound addresses back).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::admin::events::CommitEvents;
use crate::admin::fleet::LocalFleet;
use crate::admin::mask::Masker;
use crate::admin::write::{AfterCommits, WritePath};
use crate::admin::{self, AdminState};
use crate::auth::bootstrap::{bootstrap_dev, DevBootstrap, DevToken};
use crate::auth::embedded::EmbeddedAuthStore;
use crate::auth::purge::{purge_ended_sessions, PURGE_INTERVAL};
use crate::auth::secret_box::SecretBox;
use crate::auth::{Auth, AuthConfig, AuthStore};
use crate::http::host::HostPolicy;
use crate::http::server::{serve, serve_with, Transport};
use crate::http::tls::{self, TlsError, TlsFiles};
use crate::leader::{Election, PgElection, SoleLeader};
use crate::ledger::embedded::EmbeddedLedger;
use crate::ledger::postgres::{CommitNotice, PgLedger, PgSettings};
use crate::ledger::{Ledger, LedgerError, NamespaceState};
use crate::local::LocalPublisher;
use crate::metrics::{
    AdminMetrics, Exposition, HttpMetrics, RelayMetrics, SnapshotMetrics, SyncMetrics,
};
use crate::schema::{Schema, SchemaProblem, SchemaSet, Strictness};
pub use crate::settings::{
    AdminLedger, AdminSettings, AuthSettings, DevSettings, SettingsError, SidecarSettings,
};
use crate::shutdown::{self, Shutdown};
use crate::sidecar::{self, LocalSync, SidecarState};
use crate::snapshot::{Snapshot, SnapshotStore};
use crate::telemetry::Chain;

/// Why a role could not start. `Settings` and `Schema` are the operator's to fix (exit 64).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid settings: {0}")]
    Settings(#[from] SettingsError),
    #[error("{addr} is in use or not available: pass another {flag}")]
    Bind {
        addr: SocketAddr,
        flag: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid schema ({} problem(s))", .0.len())]
    Schema(Vec<SchemaProblem>),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    KeyFile(#[from] crate::key_file::KeyFileError),
    #[error(transparent)]
    AuthStore(#[from] crate::auth::store::AuthStoreError),
    #[error("dev's first-start setup failed")]
    Bootstrap(#[from] crate::auth::bootstrap::BootstrapError),
    /// `--tls-cert` / `--tls-key` cannot be read or used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// `--oidc-issuer` cannot be used (discovery failed, or the settings are wrong).
    #[error("single sign-on (--oidc-issuer) cannot start")]
    Oidc(#[from] crate::auth::oidc::OidcError),
}

impl StartError {
    /// `EX_USAGE` (64) for what the operator must fix, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Settings(_) | StartError::Schema(_) | StartError::Tls(_) => 64,
            StartError::Ledger(LedgerError::ForeignCluster { .. }) => 64,
            StartError::Oidc(crate::auth::oidc::OidcError::InvalidSettings { .. }) => 64,
            _ => 1,
        }
    }
}

/// A started role: the parts it exposes (`DevParts`, `SidecarParts`, `AdminParts`: bound
/// addresses, stores, metrics; reached through `Deref`) and the handle to stop it.
pub struct Running<P> {
    parts: P,
    tasks: Tasks,
}

impl<P> std::ops::Deref for Running<P> {
    type Target = P;

    fn deref(&self) -> &P {
        &self.parts
    }
}

impl<P> Running<P> {
    pub fn shutdown_handle(&self) -> Shutdown {
        self.tasks.shutdown.clone()
    }

    /// Stops accepting, ends streams, waits for in-flight requests (bounded by the drain
    /// timeout plus a second of grace).
    pub async fn stop(self) {
        self.tasks.stop().await;
    }

    /// Runs until SIGTERM/SIGINT or until something triggers the shutdown handle.
    pub async fn run_until_stopped(self) {
        self.tasks.run_until_stopped().await;
    }
}

/// What a running `rtconfig dev` exposes.
pub struct DevParts {
    pub read_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub probe_addr: SocketAddr,
    pub store: Arc<SnapshotStore>,
    pub ledger: Arc<dyn Ledger>,
    pub metrics: Arc<Exposition>,
    /// The access layer (its store: users, sessions, tokens, audit).
    pub auth: Arc<Auth>,
    /// `<data-dir>/dev-token`: the admin API token for scripts, and what happened to it now.
    pub dev_token: DevToken,
    pub dev_token_path: std::path::PathBuf,
    /// The `admin` user's one-time password, at the first start only
    /// ([`Running::take_one_time_password`]).
    one_time_password: Option<String>,
}

impl Running<DevParts> {
    /// The `admin` user's password if it was created at this start (first start only); `None`
    /// after the first call, so it is shown once.
    pub fn take_one_time_password(&mut self) -> Option<String> {
        self.parts.one_time_password.take()
    }
}

/// What a running sidecar exposes.
pub struct SidecarParts {
    pub read_addr: SocketAddr,
    pub probe_addr: SocketAddr,
    pub store: Arc<SnapshotStore>,
    pub sync: Arc<crate::sync::SyncStatus>,
    pub metrics: Arc<Exposition>,
}

/// What a running admin exposes.
pub struct AdminParts {
    pub addr: SocketAddr,
    pub ledger: Arc<dyn Ledger>,
    pub metrics: Arc<Exposition>,
    /// The relay's leadership gauges, for tests and embedders.
    pub relay_metrics: RelayMetrics,
    pub gate: Arc<crate::admin::write::WriteGate>,
    /// The access layer (its store: users, sessions, tokens, audit).
    pub auth: Arc<Auth>,
}

/// Single sign-on from the `--oidc-*` flags: the files read, the provider discovered.
async fn start_oidc(s: &AuthSettings) -> Result<Option<crate::auth::oidc::Oidc>, StartError> {
    use crate::auth::oidc::{Oidc, OidcSettings, RoleMap};
    let Some(flags) = &s.oidc else {
        return Ok(None);
    };
    let problem = |p: String| StartError::Settings(SettingsError::one(p));
    let url = |flag: &str, text: &str| {
        url::Url::parse(text).map_err(|_| problem(format!("{flag} {text:?} is not a URL")))
    };
    let issuer = url("--oidc-issuer", &flags.issuer)?;
    let public_url = url("--public-url", s.public_url.as_deref().unwrap_or_default())?;
    let role_map = RoleMap::load(&flags.role_map)
        .map_err(|e| problem(format!("--oidc-role-map: {}", Chain(&e))))?;
    let client_secret = match &flags.client_secret_file {
        None => None,
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| {
                    problem(format!(
                        "cannot read --oidc-client-secret-file {}: {}",
                        path.display(),
                        crate::settings::io_reason(&e)
                    ))
                })?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        ),
    };
    let mut settings = OidcSettings::new(issuer, flags.client_id.clone(), public_url);
    settings.client_secret = client_secret;
    settings.role_claim = flags.role_claim.clone();
    settings.role_map = role_map;
    let oidc = Oidc::discover(settings).await?;
    tracing::info!(issuer = oidc.issuer(), redirect_uri = %oidc.redirect_uri(), "single sign-on ready");
    Ok(Some(oidc))
}

/// Whether browsers can keep the (`Secure`) session cookie of an admin listening on `addr`:
/// over TLS, on loopback, or behind a TLS proxy (`--public-url https://…`). Pure.
pub fn session_cookies_work(addr: SocketAddr, tls: bool, public_url: Option<&str>) -> bool {
    tls || addr.ip().is_loopback() || public_url.is_some_and(|u| u.starts_with("https://"))
}

fn warn_if_cookies_cannot_work(addr: SocketAddr, tls: bool, auth: &AuthSettings) {
    if !session_cookies_work(addr, tls, auth.public_url.as_deref()) {
        tracing::warn!(
            %addr,
            "the admin serves plain HTTP beyond loopback: browsers keep its Secure session cookie \
             only over HTTPS or on loopback, so signing in from a browser that reaches it by \
             another name cannot work; serve it with --tls-cert/--tls-key, or behind a TLS proxy \
             with --public-url https://…, or reach it on loopback (API tokens work regardless)"
        );
    }
}

/// The access layer's runtime settings.
fn auth_config(s: &AuthSettings, bootstrap_token: Option<String>, tls: bool) -> AuthConfig {
    AuthConfig {
        sessions: crate::auth::session_policy::SessionPolicy {
            idle_timeout: s.session_idle_timeout,
            lifetime: s.session_lifetime,
        },
        require_mfa_for_admins: s.require_mfa_for_admins,
        origins: crate::auth::csrf::Origins {
            public: s.public_origin(),
            tls,
        },
        trusted_proxies: s.trusted_proxies.clone(),
        bootstrap_token,
    }
}

/// Binds `addr`; in use or refused, the error names the flag to change.
async fn bind_flag(addr: SocketAddr, flag: &'static str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, flag, source })
}

/// The admin listener's transport: TLS when `--tls-cert`/`--tls-key` are given.
fn admin_transport(files: Option<&TlsFiles>) -> Result<Transport, StartError> {
    Ok(match files {
        Some(files) => Transport::Tls(tls::load(files)?),
        None => Transport::Plain,
    })
}

/// Loads the schema dir strictly (admin, dev); a missing one says which flag points at it.
fn load_schemas(dir: &Path) -> Result<SchemaSet, StartError> {
    load_schemas_with(dir, Strictness::Strict)
}

/// Loads the schema dir as `strictness` says; the warnings it allows are logged (a sidecar
/// meeting a schema-level field it does not know goes on).
fn load_schemas_with(dir: &Path, strictness: Strictness) -> Result<SchemaSet, StartError> {
    if !dir.is_dir() {
        return Err(StartError::Settings(SettingsError::one(format!(
            "the schema dir {} does not exist: pass --schema-dir with the directory of your \
             namespace schema files (*.toml)",
            dir.display()
        ))));
    }
    let (set, warnings) = SchemaSet::load_dir_with(dir, strictness).map_err(StartError::Schema)?;
    for w in &warnings {
        tracing::warn!(file = %w.file.display(), reason = %w.reason, "schema file: ignoring what this version does not know");
    }
    Ok(set)
}

/// The sidecar's namespace schema. With `--snapshot-path`, through the compact schema saved
/// beside the disk snapshot (`schema::compact`): taken only when every schema file is byte for
/// byte what it was made from, so the result is the full load's, without the TOML parse.
fn load_sidecar_schema(s: &SidecarSettings) -> Result<Arc<Schema>, StartError> {
    let missing = || {
        StartError::Settings(SettingsError::one(format!(
            "--namespace {:?} has no schema file in {}",
            s.namespace,
            s.schema_dir.display()
        )))
    };
    let Some(snapshot_path) = &s.snapshot_path else {
        let schemas = load_schemas_with(&s.schema_dir, Strictness::Sidecar)?;
        return schemas.get(&s.namespace).cloned().ok_or_else(missing);
    };
    if !s.schema_dir.is_dir() {
        // The same error as the full load's.
        load_schemas_with(&s.schema_dir, Strictness::Sidecar)?;
    }
    let compact = crate::schema::compact::compact_path(snapshot_path);
    let (schema, warnings, how) = crate::schema::compact::load_namespace(
        &s.schema_dir,
        Strictness::Sidecar,
        &s.namespace,
        &compact,
    )
    .map_err(StartError::Schema)?
    .ok_or_else(missing)?;
    for w in &warnings {
        tracing::warn!(file = %w.file.display(), reason = %w.reason, "schema file: ignoring what this version does not know");
    }
    tracing::debug!(keys = schema.len(), from = ?how, "schema loaded");
    Ok(schema)
}

/// Starts `rtconfig dev`.
pub async fn start_dev(s: DevSettings) -> Result<Running<DevParts>, StartError> {
    SettingsError::check(s.problems())?;
    let schemas = load_schemas(&s.schema_dir)?;
    let schema = schemas.get(&s.namespace).cloned().ok_or_else(|| {
        StartError::Settings(SettingsError::one(format!(
            "--namespace {:?} has no schema file in {}",
            s.namespace,
            s.schema_dir.display()
        )))
    })?;
    let admin_transport = admin_transport(s.tls.as_ref())?;
    let ledger: Arc<dyn Ledger> = Arc::new(EmbeddedLedger::open(&s.data_dir, &s.cluster_id)?);
    for ns in schemas.iter() {
        ledger.ensure_namespace(&ns.namespace).await?;
    }
    let auth_store: Arc<dyn AuthStore> = Arc::new(EmbeddedAuthStore::open(&s.data_dir)?);
    let DevBootstrap {
        admin_password: one_time_password,
        token: dev_token,
        token_path: dev_token_path,
    } = bootstrap_dev(&*auth_store, &s.data_dir).await?;
    let secret_box =
        SecretBox::load_or_create(&s.data_dir.join(crate::auth::secret_box::KEY_FILE))?;
    let oidc = start_oidc(&s.auth).await?;
    let auth = Auth::new(
        auth_store,
        secret_box,
        oidc,
        auth_config(&s.auth, s.admin_token.clone(), s.tls.is_some()),
    );
    // dev serves a snapshot and the admin API; it runs no sync loop and no relay.
    let mut registry = crate::metrics::registry();
    let http_metrics = HttpMetrics::register(&mut registry);
    let snapshot_metrics = SnapshotMetrics::register(&mut registry);
    let admin_metrics = AdminMetrics::register(&mut registry);
    let metrics = Arc::new(Exposition::new(registry));
    let store = Arc::new(SnapshotStore::new(Snapshot::defaults(&schema), None, false));
    let publisher = Arc::new(LocalPublisher {
        ledger: ledger.clone(),
        schema: schema.clone(),
        store: store.clone(),
        metrics: snapshot_metrics.clone(),
    });
    publisher.publish_current().await?;
    store.confirm();

    let shutdown = Shutdown::new();
    let events = CommitEvents::new(
        ledger.clone(),
        s.max_event_streams,
        admin_metrics.clone(),
        shutdown.clone(),
    );
    let sidecar_state = SidecarState::new(
        store.clone(),
        metrics.clone(),
        http_metrics.clone(),
        snapshot_metrics,
        shutdown.clone(),
        Arc::new(LocalSync),
        s.max_watchers,
    );
    let admin_state = AdminState::new(
        WritePath {
            schemas,
            ledger: ledger.clone(),
            after_commit: Arc::new(AfterCommits(vec![publisher, events.feed()])),
            metrics: admin_metrics,
            gate: Arc::default(),
        },
        Masker::load_or_create(&s.data_dir.join("secret.key"))?,
        Arc::new(LocalFleet {
            store: store.clone(),
        }),
        metrics.clone(),
        http_metrics,
        auth.clone(),
        events,
    );

    let read = bind_flag(s.listen, "--listen").await?;
    let admin = bind_flag(s.admin_listen, "--admin-listen").await?;
    let probe = bind_flag(s.probe_listen, "--probe-listen").await?;
    let read_addr = read.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let probe_addr = probe.local_addr()?;
    let hosts = |addr| HostPolicy::new(addr, &s.allowed_hosts);
    let mut tasks = vec![
        tokio::spawn(serve(
            read,
            sidecar::read_router(sidecar_state.clone(), hosts(read_addr)),
            shutdown.clone(),
            s.drain_timeout,
        )),
        tokio::spawn(serve(
            probe,
            sidecar::probe_router(sidecar_state, hosts(probe_addr)),
            shutdown.clone(),
            s.drain_timeout,
        )),
        tokio::spawn(serve_with(
            admin,
            admin::router(admin_state, hosts(admin_addr)),
            admin_transport,
            shutdown.clone(),
            s.drain_timeout,
        )),
    ];
    warn_if_cookies_cannot_work(admin_addr, s.tls.is_some(), &s.auth);
    tasks.push(tokio::spawn(purge_ended_sessions(
        auth.store.clone(),
        s.auth.session_idle_timeout,
        PURGE_INTERVAL,
        shutdown.clone(),
    )));
    tracing::info!(%read_addr, %admin_addr, %probe_addr, namespace = %s.namespace, data_dir = %s.data_dir.display(), tls = s.tls.is_some(), "rtconfig dev started");
    Ok(Running {
        parts: DevParts {
            read_addr,
            admin_addr,
            probe_addr,
            store,
            ledger,
            metrics,
            auth,
            dev_token,
            dev_token_path,
            one_time_password,
        },
        tasks: Tasks {
            shutdown,
            handles: tasks,
            drain_timeout: s.drain_timeout,
        },
    })
}

/// Starts `rtconfig sidecar`. Never waits for Redis: it serves the disk snapshot or the schema
/// defaults until the first sync.
pub async fn start_sidecar(s: SidecarSettings) -> Result<Running<SidecarParts>, StartError> {
    SettingsError::check(s.problems())?;
    let schema = load_sidecar_schema(&s)?;
    // A sidecar serves a snapshot synced from Redis: no admin or relay series.
    let mut registry = crate::metrics::registry();
    let http_metrics = HttpMetrics::register(&mut registry);
    let snapshot_metrics = SnapshotMetrics::register(&mut registry);
    let sync_metrics = SyncMetrics::register(&mut registry);
    let metrics = Arc::new(Exposition::new(registry));
    let store = Arc::new(SnapshotStore::new(
        Snapshot::defaults(&schema),
        // The staleness bound B (docs/OPERATIONS.md); the sync loop refines it with the
        // relay interval Redis reports.
        Some(
            crate::sync::SyncSettings::new(
                &s.namespace,
                &s.cluster_id,
                &s.redis_url,
                s.resync_interval,
            )
            .staleness_bound(crate::sync::DEFAULT_RELAY_INTERVAL),
        ),
        s.require_snapshot,
    ));
    let shutdown = Shutdown::new();
    let mut sync_settings = crate::sync::SyncSettings::new(
        &s.namespace,
        &s.cluster_id,
        &s.redis_url,
        s.resync_interval,
    );
    sync_settings.snapshot_path = s.snapshot_path.clone();
    sync_settings.subscriber_redis_url = s.subscriber_redis_url.clone();
    if let Some(id) = &s.instance_id {
        sync_settings.instance_id = id.clone();
    }
    let sync = crate::sync::start(
        sync_settings,
        schema,
        store.clone(),
        sync_metrics,
        snapshot_metrics.clone(),
        shutdown.clone(),
    )
    .map_err(|e| StartError::Settings(SettingsError::one(Chain(&e).to_string())))?;
    let state = SidecarState::new(
        store.clone(),
        metrics.clone(),
        http_metrics,
        snapshot_metrics,
        shutdown.clone(),
        sync.status.clone(),
        s.max_watchers,
    );
    let read = bind_flag(s.listen, "--listen").await?;
    let probe = bind_flag(s.probe_listen, "--probe-listen").await?;
    let read_addr = read.local_addr()?;
    let probe_addr = probe.local_addr()?;
    let hosts = |addr| HostPolicy::new(addr, &s.allowed_hosts);
    let handles = vec![
        tokio::spawn(serve(
            read,
            sidecar::read_router(state.clone(), hosts(read_addr)),
            shutdown.clone(),
            s.drain_timeout,
        )),
        tokio::spawn(serve(
            probe,
            sidecar::probe_router(state, hosts(probe_addr)),
            shutdown.clone(),
            s.drain_timeout,
        )),
        sync.task,
    ];
    tracing::info!(%read_addr, %probe_addr, namespace = %s.namespace, "rtconfig sidecar started");
    Ok(Running {
        parts: SidecarParts {
            read_addr,
            probe_addr,
            store,
            sync: sync.status,
            metrics,
        },
        tasks: Tasks {
            shutdown,
            handles,
            drain_timeout: s.drain_timeout,
        },
    })
}

/// What [`AdminLedger::open`] opens.
struct Opened {
    ledger: Arc<dyn Ledger>,
    masker: Masker,
    election: Arc<dyn Election>,
    /// The access layer's store: the data dir's, or tables in the ledger's database (sharing
    /// its connection pool).
    auth_store: Arc<dyn AuthStore>,
    /// Seals TOTP secrets (embedded: `<data-dir>/auth.key`; PostgreSQL: derived from the
    /// cluster's stored key, so every replica has the same).
    secret_box: SecretBox,
    /// PostgreSQL: the ledger whose `NOTIFY`s tell this admin's event streams about the
    /// commits of every replica.
    commit_follower: Option<Arc<PgLedger>>,
}

impl AdminLedger {
    /// Opens the ledger (migrating PostgreSQL first), with the key for secret fingerprints and
    /// the way this admin becomes relay leader.
    async fn open(&self, cluster_id: &str) -> Result<Opened, StartError> {
        match self {
            AdminLedger::Embedded { data_dir } => Ok(Opened {
                ledger: Arc::new(EmbeddedLedger::open(data_dir, cluster_id)?),
                masker: Masker::load_or_create(&data_dir.join("secret.key"))?,
                election: Arc::new(SoleLeader::default()),
                auth_store: Arc::new(EmbeddedAuthStore::open(data_dir)?),
                secret_box: SecretBox::load_or_create(
                    &data_dir.join(crate::auth::secret_box::KEY_FILE),
                )?,
                commit_follower: None,
            }),
            AdminLedger::Postgres(settings) => {
                let ledger = Arc::new(PgLedger::open(cluster_id, settings.clone()).await?);
                Ok(Opened {
                    masker: Masker::new(ledger.mask_key()),
                    secret_box: SecretBox::derive(
                        &ledger.mask_key(),
                        crate::auth::secret_box::TOTP_KEY_PURPOSE,
                    ),
                    election: Arc::new(PgElection::new(ledger.clone())),
                    auth_store: Arc::new(crate::auth::postgres::PgAuthStore::new(
                        ledger.pool(),
                        settings.op_timeout,
                    )),
                    commit_follower: Some(ledger.clone()),
                    ledger,
                })
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            AdminLedger::Embedded { data_dir } => format!("embedded ({})", data_dir.display()),
            AdminLedger::Postgres(_) => "postgresql".into(),
        }
    }
}

/// Starts `rtconfig admin`: the API, and a relay while this admin is the relay leader.
pub async fn start_admin(s: AdminSettings) -> Result<Running<AdminParts>, StartError> {
    SettingsError::check(s.problems())?;
    let schemas = load_schemas(&s.schema_dir)?;
    let mirror_settings = match &s.constance {
        Some(c) => {
            let names: Vec<&str> = schemas.iter().map(|n| n.namespace.as_str()).collect();
            let namespace = c
                .resolve_namespace(&names)
                .map_err(|p| StartError::Settings(SettingsError::one(p)))?;
            Some(crate::constance::mirror::MirrorSettings {
                prefix: c.prefix.clone(),
                namespace,
                redis_url: c.redis_url_or(&s.redis_url).to_owned(),
                channel: c.channel.clone(),
                poll_interval: c.poll_interval,
            })
        }
        None => None,
    };
    let transport = admin_transport(s.tls.as_ref())?;
    let opts = crate::redis::ConnectOptions::default();
    // Checks the Redis URL before anything is opened.
    let fleet_redis = crate::redis::Redis::new(&s.redis_url, &opts)
        .map_err(|e| StartError::Settings(SettingsError::one(Chain(&e).to_string())))?;
    let Opened {
        ledger,
        masker,
        election,
        auth_store,
        secret_box,
        commit_follower,
    } = s.ledger.open(&s.cluster_id).await?;
    for ns in schemas.iter() {
        ledger.ensure_namespace(&ns.namespace).await?;
    }
    if s.admin_token.is_none() && !auth_store.has_admin().await? {
        return Err(StartError::Settings(SettingsError::one(
            "no admin user exists yet and no --admin-token was given: create the first admin \
             with `rtconfig user add NAME --role admin --password-stdin` (with the same \
             --data-dir or --database-url), or start with --admin-token (or \
             --admin-token-file)",
        )));
    }
    let oidc = start_oidc(&s.auth).await?;
    let auth = Auth::new(
        auth_store,
        secret_box,
        oidc,
        auth_config(&s.auth, s.admin_token.clone(), s.tls.is_some()),
    );
    // An admin runs the API and (while leading) the relay: no snapshot or sync series.
    let mut registry = crate::metrics::registry();
    let http_metrics = HttpMetrics::register(&mut registry);
    let admin_metrics = AdminMetrics::register(&mut registry);
    let relay_metrics = RelayMetrics::register(&mut registry);
    let constance_metrics = mirror_settings
        .as_ref()
        .map(|_| crate::metrics::ConstanceMetrics::register(&mut registry));
    let metrics = Arc::new(Exposition::new(registry));
    fleet_redis.start();
    let namespaces: Vec<String> = schemas.iter().map(|n| n.namespace.clone()).collect();
    let namespaces_for_events = namespaces.clone();
    crate::relay::mark_if_redis_ahead(
        &*ledger,
        &fleet_redis,
        &s.cluster_id,
        &namespaces,
        Duration::from_secs(2),
    )
    .await;
    let kick = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::new(crate::admin::write::WriteGate::default());
    let mirror_kick = Arc::new(tokio::sync::Notify::new());
    let shutdown = Shutdown::new();
    let events = CommitEvents::new(
        ledger.clone(),
        s.max_event_streams,
        admin_metrics.clone(),
        shutdown.clone(),
    );
    let admin_state = AdminState::new(
        WritePath {
            schemas,
            ledger: ledger.clone(),
            after_commit: Arc::new(AfterCommits(vec![
                Arc::new(crate::relay::RelayKick(kick.clone())),
                Arc::new(crate::constance::mirror::MirrorKick(mirror_kick.clone())),
                events.feed(),
            ])),
            metrics: admin_metrics,
            gate: gate.clone(),
        },
        masker,
        Arc::new(crate::relay::RedisFleet { redis: fleet_redis }),
        metrics.clone(),
        http_metrics,
        auth.clone(),
        events.clone(),
    );
    if let Some(m) = &mirror_settings {
        let mut status = admin_state.constance.write();
        status.enabled = true;
        status.namespace = Some(m.namespace.clone());
        status.prefix = Some(m.prefix.clone());
        status.channel = m.channel.clone();
    }
    let make_relay = {
        let (ledger, metrics, kick, gate) = (
            ledger.clone(),
            relay_metrics.clone(),
            kick.clone(),
            gate.clone(),
        );
        let schemas: Vec<_> = admin_state.write.schemas.iter().cloned().collect();
        let mirror = mirror_settings.clone().zip(constance_metrics);
        let (mirror_state, mirror_kick) = (admin_state.clone(), mirror_kick.clone());
        let (redis_url, cluster_id) = (s.redis_url.clone(), s.cluster_id.clone());
        let (interval, anti_entropy) = (s.relay_interval, s.anti_entropy_interval);
        let hint_payload_max_bytes = s.hint_payload_max_bytes;
        move |term: u64| {
            let redis = crate::redis::Redis::new(&redis_url, &opts)?;
            let mut settings = crate::relay::RelaySettings::new(&cluster_id, term);
            settings.interval = interval;
            settings.anti_entropy_interval = anti_entropy;
            settings.hint_payload_max_bytes = hint_payload_max_bytes;
            let mirror = match &mirror {
                Some((settings, metrics)) => schemas
                    .iter()
                    .find(|n| n.namespace == settings.namespace)
                    .map(|schema| {
                        crate::constance::mirror::Mirror::new(
                            settings.clone(),
                            schema.clone(),
                            ledger.clone(),
                            mirror_state.clone(),
                            mirror_kick.clone(),
                            metrics.clone(),
                            mirror_state.constance.clone(),
                        )
                    })
                    .transpose()?,
                None => None,
            };
            Ok(crate::relay::Relay::new(
                ledger.clone(),
                redis,
                schemas.clone(),
                settings,
                metrics.clone(),
                kick.clone(),
                gate.clone(),
            )
            .with_mirror(mirror))
        }
    };
    let listener = bind_flag(s.listen, "--listen").await?;
    let addr = listener.local_addr()?;
    let mut handles = vec![
        tokio::spawn(crate::leader::run(
            election,
            make_relay,
            kick,
            gate.clone(),
            namespaces,
            relay_metrics.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(serve_with(
            listener,
            admin::router(admin_state, HostPolicy::new(addr, &s.allowed_hosts)),
            transport,
            shutdown.clone(),
            s.drain_timeout,
        )),
        tokio::spawn(purge_ended_sessions(
            auth.store.clone(),
            s.auth.session_idle_timeout,
            PURGE_INTERVAL,
            shutdown.clone(),
        )),
    ];
    if let Some(pg) = commit_follower {
        handles.push(tokio::spawn(follow_commits(
            pg,
            events,
            namespaces_for_events,
            shutdown.clone(),
        )));
    }
    warn_if_cookies_cannot_work(addr, s.tls.is_some(), &s.auth);
    tracing::info!(%addr, ledger = %s.ledger.describe(), tls = s.tls.is_some(), "rtconfig admin started");
    Ok(Running {
        parts: AdminParts {
            addr,
            ledger,
            metrics,
            relay_metrics,
            gate,
            auth,
        },
        tasks: Tasks {
            shutdown,
            handles,
            drain_timeout: s.drain_timeout,
        },
    })
}

/// `rtconfig admin migrate`: applies the PostgreSQL migrations; returns those applied now.
pub async fn migrate(settings: &PgSettings) -> Result<Vec<String>, StartError> {
    if let Some(p) = crate::settings::database_url_problem(&settings.url) {
        return Err(StartError::Settings(SettingsError::one(p)));
    }
    Ok(crate::ledger::postgres::migrate(settings).await?)
}

/// `rtconfig admin reconcile --force`: raises the epoch of `namespaces` (every namespace in the
/// schema dir when empty), after the ledger was restored from a backup, so the relay rebuilds a
/// Redis that is ahead of it and sidecars take the rebuilt image. Returns the new states.
pub async fn reconcile(
    ledger: &AdminLedger,
    cluster_id: &str,
    schema_dir: &std::path::Path,
    namespaces: &[String],
) -> Result<Vec<(String, NamespaceState)>, StartError> {
    let names: Vec<String> = if namespaces.is_empty() {
        let schemas = load_schemas(schema_dir)?;
        schemas.iter().map(|s| s.namespace.clone()).collect()
    } else {
        namespaces.to_vec()
    };
    let ledger = ledger.open(cluster_id).await?.ledger;
    let mut out = Vec::with_capacity(names.len());
    for ns in names {
        let state = ledger.bump_epoch(&ns).await?;
        tracing::warn!(namespace = %ns, epoch = state.epoch, version = state.version, "epoch bumped: the relay rebuilds redis from the ledger");
        out.push((ns, state));
    }
    Ok(out)
}

/// Feeds the event streams with the commits of every admin replica (PostgreSQL `NOTIFY`),
/// catching up from the ledger whenever the listener (re)connects.
async fn follow_commits(
    pg: Arc<PgLedger>,
    events: Arc<CommitEvents>,
    namespaces: Vec<String>,
    shutdown: Shutdown,
) {
    pg.follow_commits(shutdown.wait(), |notice| match notice {
        CommitNotice::Listening => {
            for ns in &namespaces {
                let (events, ns) = (events.clone(), ns.clone());
                tokio::spawn(async move { events.advance_to_current(&ns).await });
            }
        }
        CommitNotice::Committed { namespace, version } => {
            let events = events.clone();
            tokio::spawn(async move { events.advance(&namespace, version).await });
        }
    })
    .await;
}

/// Background tasks of a role and how to stop them.
struct Tasks {
    shutdown: Shutdown,
    handles: Vec<JoinHandle<()>>,
    drain_timeout: Duration,
}

impl Tasks {
    async fn stop(self) {
        self.shutdown.trigger();
        let all = futures_util::future::join_all(self.handles);
        if tokio::time::timeout(self.drain_timeout + Duration::from_secs(1), all)
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not stop before the deadline");
        }
    }

    async fn run_until_stopped(self) {
        let wait = self.shutdown.wait();
        tokio::select! {
            () = shutdown::signal() => {}
            () = wait => {}
        }
        self.stop().await;
        tracing::info!("stopped");
    }
}

#[cfg(test)]
mod cookie_tests {
    use super::session_cookies_work;

    #[test]
    fn secure_cookies_need_tls_loopback_or_a_tls_proxy() {
        let addr = |s: &str| s.parse().expect("addr");
        for (a, tls, public, want) in [
            ("127.0.0.1:8080", false, None, true),
            ("[::1]:8080", false, None, true),
            ("0.0.0.0:8080", true, None, true),
            ("0.0.0.0:8080", false, None, false),
            (
                "10.0.0.5:8080",
                false,
                Some("http://config.example.com"),
                false,
            ),
            (
                "0.0.0.0:8080",
                false,
                Some("https://config.example.com"),
                true,
            ),
        ] {
            assert_eq!(
                session_cookies_work(addr(a), tls, public),
                want,
                "{a} {tls} {public:?}"
            );
        }
    }
}
