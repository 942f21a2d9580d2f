//! The PostgreSQL ledger: the production source of truth, shared by every admin replica.
//!
//! Schema (`migrations/`, applied at admin start and by `rtconfig admin migrate`, under an
//! advisory lock so replicas starting together are safe): `rtconfig_cluster` (the deployment's
//! `cluster_id`, the relay leaders' term counter, the secret-mask key), `rtconfig_namespaces`
//! (epoch and the version counter row), `rtconfig_values` (current state), `rtconfig_changesets`
//! and `rtconfig_history` (append-only: a trigger refuses UPDATE, DELETE and TRUNCATE), and
//! `rtconfig_idempotency_keys`; and (V2) the access layer's `rtconfig_users`, `rtconfig_sessions`,
//! `rtconfig_tokens` and `rtconfig_audit` (used by `auth::postgres`, on this ledger's pool);
//! (V3) `rtconfig_idempotency_keys.noop`: a write that changed nothing keeps its key too.
//! (V5) no foreign key from `rtconfig_history` to `rtconfig_changesets` (one statement writes
//! both; its check scanned the namespace's changesets, see the migration).
//!
//! A commit is one transaction (DESIGN §4) that bumps the namespace's version counter under its
//! row lock (gap-free and commit-ordered: the lock is held until the commit; never a sequence),
//! upserts the values, inserts the changeset, one history row per key and the `Idempotency-Key`,
//! and `NOTIFY`s the relay leader; it is acknowledged only once committed. To cost one writer
//! two round trips and one WAL flush, it is first tried optimistically in autocommit: one read
//! (namespace row, the key's first outcome, the touched keys' values: one snapshot), the checks
//! (`plan_commit`), then ONE write statement whose version bump applies only if the namespace is
//! still at the epoch and version read and not behind Redis, and whose other parts insert only
//! if it did (data-modifying CTEs, `COMMIT_WRITE`). When another writer got there first,
//! nothing was written, and the commit is redone in a transaction that takes the row lock
//! (`SELECT … FOR UPDATE`) before reading, so concurrent writers queue instead of racing.
//!
//! Every call is bounded: waiting for a pooled connection, connecting and the statements all
//! share one deadline (`op_timeout`, 1.5 s by default), so a PostgreSQL that is down or paused
//! (SIGSTOP: TCP connects, nothing answers) yields [`LedgerError::Unavailable`] in time. A
//! connection that timed out or broke is discarded, never reused. When that happens after COMMIT
//! was sent the outcome is unknown ([`LedgerError::OutcomeUnknown`]): a retry with the same
//! `Idempotency-Key` settles it (it waits for the namespace row, then finds the key or not).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(feature = "test-support")]
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime,
};
use serde_json::Value;
use tokio::time::Instant;
use tokio_postgres::Row;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::pg_tls::{self, PgTlsError};

use super::{
    adopted_changeset, plan_commit, Change, ChangeMeta, Changeset, CommitRequest, Committed,
    CurrentValues, HistoryPage, HistoryQuery, Ledger, LedgerError, NamespaceState, Result,
    StoredValue,
};
use crate::telemetry::Chain;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The `NOTIFY` channel a commit wakes the relay leader on (payload `"<namespace>:<version>"`).
pub const COMMIT_CHANNEL: &str = "rtconfig_commits";
/// `pg_advisory_lock` key held while migrating ("rtconf" + 1).
pub const MIGRATION_LOCK: i64 = 0x7274_636f_6e66_0001;
/// `pg_try_advisory_lock` key the relay leader holds ("rtconf" + 2).
pub const LEADER_LOCK: i64 = 0x7274_636f_6e66_0002;
/// Refinery's bookkeeping table.
const MIGRATION_TABLE: &str = "rtconfig_schema_history";
/// How long a migration may wait for another replica's migration and run.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(120);
/// PostgreSQL ends a session idle inside a transaction for this long (a paused or vanished
/// admin must not hold a namespace row lock for ever).
const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(5);

/// A PostgreSQL failure: what the ledger was doing, and the client's or the server's error as
/// the source (tokio-postgres's own message is often just "db error"; the server's message is
/// its source, so print the whole chain).
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("invalid --database-url")]
    Url(#[source] tokio_postgres::Error),
    #[error(transparent)]
    Tls(#[from] PgTlsError),
    #[error("PostgreSQL: cannot {what}")]
    Query {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("PostgreSQL did not answer within {timeout:?}: cannot {what}")]
    Timeout {
        what: &'static str,
        timeout: Duration,
    },
    #[error("no PostgreSQL connection")]
    Pool(#[source] deadpool_postgres::PoolError),
    #[error("cannot build the PostgreSQL connection pool")]
    BuildPool(#[source] deadpool_postgres::BuildError),
    #[error("the database migrations failed")]
    Migration(#[source] refinery::Error),
}

/// `map_err` for a failed statement or connection while doing `what`.
pub(crate) fn failed(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> LedgerError {
    move |source| PgError::Query { what, source }.into()
}

/// PostgreSQL gave no answer within `timeout` while doing `what`.
pub(crate) fn timed_out(what: &'static str, timeout: Duration) -> LedgerError {
    PgError::Timeout { what, timeout }.into()
}

/// Connection settings of the PostgreSQL ledger.
#[derive(Clone, Debug)]
pub struct PgSettings {
    /// `postgres://user:password@host:port/db?…` (libpq-style key=value strings work too).
    pub url: String,
    /// Every ledger call — waiting for a connection, connecting, every statement — ends within
    /// this; PostgreSQL down or paused → `Unavailable` after at most this long.
    pub op_timeout: Duration,
    /// TCP connect + startup handshake.
    pub connect_timeout: Duration,
    /// Pooled connections.
    pub pool_size: usize,
    /// Test-only fault injection (also `RTCONFIG_FAILPOINTS`).
    #[cfg(feature = "test-support")]
    pub failpoints: Arc<Failpoints>,
}

impl PgSettings {
    pub fn new(url: &str) -> PgSettings {
        PgSettings {
            url: url.to_owned(),
            op_timeout: Duration::from_millis(1500),
            connect_timeout: Duration::from_secs(1),
            pool_size: 16,
            #[cfg(feature = "test-support")]
            failpoints: Arc::new(Failpoints::from_env()),
        }
    }

    /// The TLS connector every connection of this ledger uses (`sslmode`, `sslrootcert` of the
    /// URL; reads the CA file). With `sslmode=disable` it is never used.
    pub fn tls(&self) -> Result<MakeRustlsConnect> {
        let (_, params) = pg_tls::split(&self.url).map_err(PgError::from)?;
        Ok(pg_tls::connector(&params).map_err(PgError::from)?)
    }

    /// The connection config with rtconfig's session settings (`statement_timeout` = the
    /// operation timeout unless `statement_timeout` is `None`).
    pub fn connect_config(
        &self,
        application_name: &str,
        statement_timeout: Option<Duration>,
    ) -> Result<tokio_postgres::Config> {
        let mut config = parse_url(&self.url)?;
        config
            .connect_timeout(self.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3);
        if config.get_application_name().is_none() {
            config.application_name(application_name);
        }
        let mut options = config.get_options().unwrap_or_default().to_owned();
        let statement_ms = statement_timeout.map_or(0, |t| t.as_millis());
        options.push_str(&format!(
            " -c statement_timeout={statement_ms} -c idle_in_transaction_session_timeout={}",
            IDLE_IN_TRANSACTION_TIMEOUT.as_millis()
        ));
        config.options(options.trim());
        Ok(config)
    }
}

/// Checks a `--database-url` without connecting: the connection string, and its TLS
/// parameters (`sslmode`, `sslrootcert`: [`pg_tls`]), which tokio-postgres does not see.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, PgError> {
    let (url, _) = pg_tls::split(url)?;
    tokio_postgres::Config::from_str(&url).map_err(PgError::Url)
}

#[cfg(feature = "test-support")]
type Hook = Arc<dyn Fn() + Send + Sync>;

/// Fault injection for the failure tests (reliability.md S14, S16), built only with the
/// `test-support` feature (so never into a release binary). Off unless a test sets it or
/// `RTCONFIG_FAILPOINTS` names it (comma-separated): `crash_after_commit` ends the process right
/// after a COMMIT returned, before the response and the relay kick.
#[cfg(feature = "test-support")]
#[derive(Default)]
pub struct Failpoints {
    crash_after_commit: AtomicBool,
    before_commit: parking_lot::Mutex<Option<Hook>>,
}

#[cfg(feature = "test-support")]
impl std::fmt::Debug for Failpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failpoints")
            .field(
                "crash_after_commit",
                &self.crash_after_commit.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "test-support")]
impl Failpoints {
    /// Reads `RTCONFIG_FAILPOINTS`.
    pub fn from_env() -> Failpoints {
        let f = Failpoints::default();
        if let Ok(list) = std::env::var("RTCONFIG_FAILPOINTS") {
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                match name {
                    "crash_after_commit" => f.set_crash_after_commit(true),
                    other => tracing::warn!(failpoint = other, "unknown failpoint ignored"),
                }
            }
        }
        f
    }

    pub fn set_crash_after_commit(&self, on: bool) {
        if on {
            tracing::warn!("failpoint crash_after_commit is on: the process exits after a commit");
        }
        self.crash_after_commit.store(on, Ordering::SeqCst);
    }

    /// Runs `hook` right before COMMIT is sent (e.g. to pause PostgreSQL "mid-commit").
    pub fn set_before_commit(&self, hook: Option<Hook>) {
        *self.before_commit.lock() = hook;
    }

    fn before_commit(&self) {
        let hook = self.before_commit.lock().clone();
        if let Some(hook) = hook {
            hook();
        }
    }

    fn after_commit(&self) {
        if self.crash_after_commit.load(Ordering::SeqCst) {
            tracing::error!("failpoint crash_after_commit: exiting right after COMMIT");
            std::process::exit(86);
        }
    }
}

/// Applies the embedded migrations, holding `pg_advisory_lock` so replicas starting together
/// migrate one at a time. Returns the names of the migrations applied now.
pub async fn migrate(settings: &PgSettings) -> Result<Vec<String>> {
    let config = settings.connect_config("rtconfig-migrate", None)?;
    let tls = settings.tls()?;
    let work = async {
        let (mut client, connection) = config
            .connect(tls)
            .await
            .map_err(failed("connect to migrate the database"))?;
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %Chain(&e), "migration connection ended");
            }
        });
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(failed("take the migration lock"))?;
        let report = embedded::migrations::runner()
            .set_migration_table_name(MIGRATION_TABLE)
            .run_async(&mut client)
            .await;
        let _ = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        drop(client);
        driver.abort();
        let report = report.map_err(PgError::Migration)?;
        Ok(report
            .applied_migrations()
            .iter()
            .map(|m| m.to_string())
            .collect())
    };
    match tokio::time::timeout(MIGRATION_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => Err(timed_out("finish the migrations", MIGRATION_TIMEOUT)),
    }
}

/// The connection pool of `settings` (bounded waits, `statement_timeout` = `op_timeout`).
/// Does not connect: connections are made on first use.
pub fn build_pool(settings: &PgSettings, application_name: &str) -> Result<Pool> {
    let config = settings.connect_config(application_name, Some(settings.op_timeout))?;
    let manager = Manager::from_config(
        config,
        settings.tls()?,
        ManagerConfig {
            // Broken connections are discarded where the failure is seen.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(settings.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.op_timeout))
        .create_timeout(Some(settings.op_timeout))
        .recycle_timeout(Some(settings.op_timeout))
        .build()
        .map_err(PgError::BuildPool)?)
}

/// The PostgreSQL ledger. Cheap to share (`Arc`).
pub struct PgLedger {
    cluster_id: String,
    pool: Pool,
    settings: PgSettings,
    mask_key: [u8; 32],
}

impl std::fmt::Debug for PgLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLedger")
            .field("cluster_id", &self.cluster_id)
            .field("op_timeout", &self.settings.op_timeout)
            .finish_non_exhaustive()
    }
}

/// A failure inside one call: the database's, or a ledger answer (conflict, unknown namespace).
enum Fail {
    Db(tokio_postgres::Error),
    Ledger(LedgerError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<LedgerError> for Fail {
    fn from(e: LedgerError) -> Self {
        Fail::Ledger(e)
    }
}

type Step<'c, T> = Pin<Box<dyn Future<Output = Result<T, Fail>> + Send + 'c>>;

/// Whether the connection must not be reused after `e`.
pub(crate) fn broken(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        None => true,
        // 08: connection exception; 57: operator intervention (terminated, shutting down).
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08") || (code.starts_with("57") && code != "57014")
        }
    }
}

/// Takes the connection out of the pool and closes it.
pub(crate) fn discard(conn: Object) {
    drop(Object::take(conn));
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl PgLedger {
    /// Migrates the database, builds the pool, and records `cluster_id` (or checks it: a
    /// database of another cluster is refused with [`LedgerError::ForeignCluster`]).
    pub async fn open(cluster_id: &str, settings: PgSettings) -> Result<PgLedger> {
        let applied = migrate(&settings).await?;
        if !applied.is_empty() {
            tracing::info!(migrations = ?applied, "database migrated");
        }
        let pool = build_pool(&settings, "rtconfig-admin")?;
        let mut ledger = PgLedger {
            cluster_id: cluster_id.to_owned(),
            pool,
            settings,
            mask_key: [0; 32],
        };
        let proposed: [u8; 32] = rand::random();
        let id = cluster_id.to_owned();
        let (found, key) = ledger
            .run("record the cluster id", move |c| {
                Box::pin(async move {
                    let key = proposed.to_vec();
                    c.execute(
                        "INSERT INTO rtconfig_cluster (cluster_id, mask_key) VALUES ($1, $2) \
                         ON CONFLICT (singleton) DO NOTHING",
                        &[&id, &key],
                    )
                    .await?;
                    let row = c
                        .query_one("SELECT cluster_id, mask_key FROM rtconfig_cluster", &[])
                        .await?;
                    Ok((row.get::<_, String>(0), row.get::<_, Vec<u8>>(1)))
                })
            })
            .await?;
        if found != cluster_id {
            return Err(LedgerError::ForeignCluster {
                expected: cluster_id.to_owned(),
                found,
            });
        }
        ledger.mask_key = <[u8; 32]>::try_from(key.as_slice()).map_err(|_| {
            LedgerError::Corrupt("rtconfig_cluster.mask_key is not 32 bytes".into())
        })?;
        Ok(ledger)
    }

    pub fn settings(&self) -> &PgSettings {
        &self.settings
    }

    /// The ledger's connection pool, for the other stores in the same database (the auth
    /// store): their calls share its connections and its `op_timeout`.
    pub fn pool(&self) -> Pool {
        self.pool.clone()
    }

    /// The deployment's key for secret fingerprints (the same on every replica).
    pub fn mask_key(&self) -> [u8; 32] {
        self.mask_key
    }

    /// A pooled connection, waiting until `deadline` at most.
    async fn connection(&self, deadline: Instant) -> Result<Object> {
        match tokio::time::timeout_at(deadline, self.pool.get()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(PgError::Pool(e).into()),
            Err(_) => Err(timed_out("get a connection", self.settings.op_timeout)),
        }
    }

    /// Runs `step` on a pooled connection under the operation deadline.
    async fn run<T, F>(&self, what: &'static str, step: F) -> Result<T>
    where
        F: for<'c> FnOnce(&'c mut Object) -> Step<'c, T>,
    {
        let deadline = Instant::now() + self.settings.op_timeout;
        let mut conn = self.connection(deadline).await?;
        let outcome = tokio::time::timeout_at(deadline, step(&mut conn)).await;
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(Fail::Ledger(e))) => Err(e),
            Ok(Err(Fail::Db(e))) => {
                if broken(&e) {
                    discard(conn);
                }
                Err(failed(what)(e))
            }
            Err(_) => {
                discard(conn);
                Err(timed_out(what, self.settings.op_timeout))
            }
        }
    }

    /// The relay leader's next fencing term: above every earlier term and, so that terms also
    /// order after an embedded admin's clock-based ones, at least the current time in ms.
    pub async fn next_term(&self) -> Result<u64> {
        self.run("take a relay term", |c| {
            Box::pin(async move {
                let row = c
                    .query_one(
                        "UPDATE rtconfig_cluster SET relay_term = GREATEST(relay_term + 1, \
                         (extract(epoch FROM clock_timestamp()) * 1000)::bigint) \
                         RETURNING relay_term",
                        &[],
                    )
                    .await?;
                Ok(u(row.get(0)))
            })
        })
        .await
    }
}

async fn prepared_query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let statement = c.prepare_cached(sql).await?;
    c.query(&statement, params).await
}

/// `(epoch, version, first_version)` of a namespace.
async fn ns_row<C: GenericClient>(c: &C, namespace: &str) -> Result<(u64, u64, u64), Fail> {
    let rows = prepared_query(
        c,
        "SELECT epoch, version, first_version FROM rtconfig_namespaces WHERE name = $1",
        &[&namespace],
    )
    .await?;
    let row = rows
        .first()
        .ok_or_else(|| LedgerError::UnknownNamespace(namespace.to_owned()))?;
    Ok((u(row.get(0)), u(row.get(1)), u(row.get(2))))
}

/// Changesets with `after < version <= until`, oldest first, at most `limit`, with their changes:
/// one statement (the relay's feed reads this after every commit).
async fn load_changesets<C: GenericClient>(
    c: &C,
    namespace: &str,
    after: u64,
    until: u64,
    limit: usize,
) -> Result<Vec<Changeset>, Fail> {
    let rows = prepared_query(
        c,
        "WITH cs AS (SELECT version, epoch, actor, token_id, comment, request_id, client_ip, \
         user_agent, created_at FROM rtconfig_changesets \
         WHERE namespace = $1 AND version > $2 AND version <= $3 ORDER BY version LIMIT $4) \
         SELECT cs.version, cs.epoch, cs.actor, cs.token_id, cs.comment, cs.request_id, \
         cs.client_ip, cs.user_agent, cs.created_at, h.key, h.old, h.new, h.default_value \
         FROM cs LEFT JOIN rtconfig_history h ON h.namespace = $1 AND h.version = cs.version \
         ORDER BY cs.version, h.ord",
        &[&namespace, &i(after), &i(until), &i(limit as u64)],
    )
    .await?;
    let mut out: Vec<Changeset> = Vec::new();
    for r in &rows {
        let version = u(r.get(0));
        if out.last().is_none_or(|cs| cs.version != version) {
            out.push(changeset_row(namespace, r));
        }
        if let (Some(cs), Some(key)) = (out.last_mut(), r.get::<_, Option<String>>(9)) {
            cs.changes.push(Change {
                key,
                old: r.get::<_, Option<Value>>(10),
                new: r.get::<_, Option<Value>>(11),
                default: r.get::<_, Option<Value>>(12),
            });
        }
    }
    Ok(out)
}

fn changeset_row(namespace: &str, r: &Row) -> Changeset {
    Changeset {
        namespace: namespace.to_owned(),
        version: u(r.get(0)),
        epoch: u(r.get(1)),
        meta: ChangeMeta {
            actor: r.get(2),
            token_id: r.get(3),
            comment: r.get(4),
            request_id: r.get(5),
            client_ip: r.get(6),
            user_agent: r.get(7),
        },
        created_at: r.get::<_, DateTime<Utc>>(8),
        changes: Vec::new(),
    }
}

/// Distributes history rows `(version, key, old, new, default_value)` (ordered) to their
/// changesets.
fn attach_changes(changesets: &mut [Changeset], rows: &[Row]) {
    let index: HashMap<u64, usize> = changesets
        .iter()
        .enumerate()
        .map(|(n, cs)| (cs.version, n))
        .collect();
    for r in rows {
        if let Some(&n) = index.get(&u(r.get(0))) {
            changesets[n].changes.push(Change {
                key: r.get(1),
                old: r.get::<_, Option<Value>>(2),
                new: r.get::<_, Option<Value>>(3),
                default: r.get::<_, Option<Value>>(4),
            });
        }
    }
}

/// A commit's read (one statement, so one snapshot): the namespace row, the `Idempotency-Key`'s
/// row if any, and the stored values of the keys the request touches or expects.
const COMMIT_READ: &str = "SELECT n.epoch, n.version, n.ledger_behind, \
     i.fingerprint, i.version, i.noop, v.key, v.value, v.version \
     FROM rtconfig_namespaces n \
     LEFT JOIN rtconfig_idempotency_keys i ON i.namespace = n.name AND i.key = $2 \
     LEFT JOIN rtconfig_values v ON v.namespace = n.name AND v.key = ANY($3) \
     WHERE n.name = $1";

/// A commit's write, one statement: bump the version counter if the namespace is still at the
/// (epoch, version) the read saw and not behind Redis, and only then insert the changeset, its
/// history rows and the idempotency row, upsert the values and `NOTIFY` the relay leader. The
/// version moved (another writer committed first) → no row, nothing written. Sub-statements of
/// one statement cannot see each other's rows, but the foreign keys are checked at its end.
const COMMIT_WRITE: &str = "WITH bump AS ( \
     UPDATE rtconfig_namespaces SET version = version + 1, updated_at = now() \
     WHERE name = $1 AND epoch = $2 AND version = $3 AND NOT ledger_behind \
     RETURNING name, epoch, version \
   ), changeset AS ( \
     INSERT INTO rtconfig_changesets (namespace, version, epoch, actor, token_id, comment, \
     request_id, client_ip, user_agent) \
     SELECT b.name, b.version, b.epoch, $4, $5, $6, $7, $8, $9 FROM bump b \
   ), history AS ( \
     INSERT INTO rtconfig_history (namespace, version, ord, key, op, old, new, default_value) \
     SELECT b.name, b.version, t.ord, t.key, t.op, t.old, t.new, t.dflt FROM bump b, \
     unnest($10::int[], $11::text[], $12::text[], $13::jsonb[], $14::jsonb[], $15::jsonb[]) \
     AS t(ord, key, op, old, new, dflt) \
   ), current AS ( \
     INSERT INTO rtconfig_values (namespace, key, value, version) \
     SELECT b.name, t.key, t.value, b.version FROM bump b, \
     unnest($11::text[], $14::jsonb[]) AS t(key, value) \
     ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version \
   ), idempotency AS ( \
     INSERT INTO rtconfig_idempotency_keys (namespace, key, fingerprint, version) \
     SELECT b.name, $16::text, $17, b.version FROM bump b WHERE $16::text IS NOT NULL \
   ) \
   SELECT b.version, pg_notify($18, b.name || ':' || b.version) FROM bump b";

/// A write that changed nothing, remembered under its `Idempotency-Key` (no version, no
/// `NOTIFY`) if the namespace is still at the (epoch, version) the read saw.
const COMMIT_NOOP: &str = "INSERT INTO rtconfig_idempotency_keys \
     (namespace, key, fingerprint, version, noop) \
     SELECT n.name, $4, $5, n.version, true FROM rtconfig_namespaces n \
     WHERE n.name = $1 AND n.epoch = $2 AND n.version = $3 AND NOT n.ledger_behind \
     FOR SHARE";

/// What one attempt at a commit came to.
enum Attempt {
    Done(Committed),
    /// The namespace moved between the read and the write (another writer committed, an epoch
    /// bump, `ledger_behind` set, or a concurrent request with the same `Idempotency-Key`):
    /// nothing was written.
    Moved,
}

/// One attempt: read (one statement), plan, write (one statement). On `c` in autocommit this is
/// optimistic: the write only applies if the namespace is still where the read found it, and
/// the write is the commit. Inside a transaction holding the namespace row lock it cannot move.
/// `commit_sent` is raised right before the statement that commits (autocommit) goes out.
async fn commit_attempt<C: GenericClient>(
    c: &C,
    request: &CommitRequest,
    commit_sent: &AtomicBool,
    autocommit: bool,
    #[cfg(feature = "test-support")] failpoints: &Failpoints,
) -> Result<Attempt, Fail> {
    let ns = request.namespace.as_str();
    // Only the keys this request touches or expects matter to `plan_commit`.
    let keys: BTreeSet<&str> = request
        .changes
        .iter()
        .map(|(k, _)| k.as_str())
        .chain(request.expected_keys.keys().map(String::as_str))
        .collect();
    let keys: Vec<&str> = keys.into_iter().collect();
    let rows = prepared_query(c, COMMIT_READ, &[&ns, &request.idempotency_key, &keys]).await?;
    let first = rows
        .first()
        .ok_or_else(|| LedgerError::UnknownNamespace(ns.to_owned()))?;
    let state = NamespaceState {
        epoch: u(first.get(0)),
        version: u(first.get(1)),
    };
    let behind: bool = first.get(2);
    if let Some(fingerprint) = first.get::<_, Option<&str>>(3) {
        if fingerprint != request.fingerprint {
            return Err(LedgerError::IdempotencyKeyReused.into());
        }
        let version = u(first.get(4));
        if first.get::<_, bool>(5) {
            return Ok(Attempt::Done(Committed {
                state: NamespaceState {
                    epoch: state.epoch,
                    version,
                },
                changes: Vec::new(),
                replayed: true,
            }));
        }
        // History is append-only: reading it outside the read's snapshot is the same.
        let cs = load_changesets(c, ns, version - 1, version, 1)
            .await?
            .pop()
            .ok_or_else(|| {
                LedgerError::Corrupt(format!(
                    "Idempotency-Key names version {version}, which has no history"
                ))
            })?;
        return Ok(Attempt::Done(Committed::replay_of(&cs)));
    }
    if behind {
        return Err(LedgerError::LedgerBehind(ns.to_owned()).into());
    }
    let current = CurrentValues {
        state,
        values: rows
            .iter()
            .filter_map(|r| {
                let key = r.get::<_, Option<String>>(6)?;
                Some((
                    key,
                    StoredValue {
                        value: r.get(7),
                        version: u(r.get::<_, i64>(8)),
                    },
                ))
            })
            .collect(),
    };
    let changes = plan_commit(request, &current)?;
    let (epoch, seen) = (i(state.epoch), i(state.version));
    if changes.is_empty() {
        // Remembered under its key (no version, no NOTIFY), so the key cannot take another
        // request.
        if let Some(key) = &request.idempotency_key {
            let noop = c.prepare_cached(COMMIT_NOOP).await?;
            if autocommit {
                commit_sent.store(true, Ordering::SeqCst);
            }
            let n = c
                .execute(&noop, &[&ns, &epoch, &seen, key, &request.fingerprint])
                .await?;
            if n == 0 {
                return Ok(Attempt::Moved);
            }
        }
        return Ok(Attempt::Done(Committed {
            state,
            changes,
            replayed: false,
        }));
    }
    let meta = &request.meta;
    let ords: Vec<i32> = (0..changes.len())
        .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
        .collect();
    let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
    let ops: Vec<&str> = changes
        .iter()
        .map(|c| if c.new.is_some() { "set" } else { "reset" })
        .collect();
    let olds: Vec<Option<&Value>> = changes.iter().map(|c| c.old.as_ref()).collect();
    let news: Vec<Option<&Value>> = changes.iter().map(|c| c.new.as_ref()).collect();
    let defaults: Vec<Option<&Value>> = changes.iter().map(|c| c.default.as_ref()).collect();
    let write = c.prepare_cached(COMMIT_WRITE).await?;
    if autocommit {
        #[cfg(feature = "test-support")]
        failpoints.before_commit();
        commit_sent.store(true, Ordering::SeqCst);
    }
    let rows = c
        .query(
            &write,
            &[
                &ns,
                &epoch,
                &seen,
                &meta.actor,
                &meta.token_id,
                &meta.comment,
                &meta.request_id,
                &meta.client_ip,
                &meta.user_agent,
                &ords,
                &keys,
                &ops,
                &olds,
                &news,
                &defaults,
                &request.idempotency_key,
                &request.fingerprint,
                &COMMIT_CHANNEL,
            ],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(Attempt::Moved);
    };
    Ok(Attempt::Done(Committed {
        state: NamespaceState {
            epoch: state.epoch,
            version: u(row.get(0)),
        },
        changes,
        replayed: false,
    }))
}

/// Whether `e` is a unique violation (a concurrent request with the same `Idempotency-Key`
/// inserted its row first).
fn unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// The commit (DESIGN §4). First optimistically, in autocommit: one read, one write statement
/// that applies only if the namespace did not move in between; with one writer per namespace
/// that is the whole commit, two round trips and one WAL flush. If another writer got there
/// first, again in a transaction that holds the namespace row lock from the start (`SELECT …
/// FOR UPDATE`), so concurrent writers queue on the lock instead of racing again. Either way
/// the version is bumped under the row lock and acknowledged only once committed.
/// `commit_sent` is raised right before the statement or COMMIT that commits goes out.
async fn commit_tx(
    conn: &mut Object,
    request: &CommitRequest,
    commit_sent: &AtomicBool,
    #[cfg(feature = "test-support")] failpoints: &Failpoints,
) -> Result<Committed, Fail> {
    let ns = request.namespace.as_str();
    match commit_attempt(
        &*conn,
        request,
        commit_sent,
        true,
        #[cfg(feature = "test-support")]
        failpoints,
    )
    .await
    {
        Ok(Attempt::Done(committed)) => {
            #[cfg(feature = "test-support")]
            if !committed.changes.is_empty() {
                failpoints.after_commit();
            }
            return Ok(committed);
        }
        Ok(Attempt::Moved) => {}
        Err(Fail::Db(e)) if unique_violation(&e) => {}
        Err(e) => return Err(e),
    }
    // The optimistic write had a definite answer: nothing of it was committed.
    commit_sent.store(false, Ordering::SeqCst);
    let tx = conn.transaction().await?;
    let locked = prepared_query(
        &tx,
        "SELECT 1 FROM rtconfig_namespaces WHERE name = $1 FOR UPDATE",
        &[&ns],
    )
    .await?;
    if locked.is_empty() {
        return Err(LedgerError::UnknownNamespace(ns.to_owned()).into());
    }
    let attempt = commit_attempt(
        &tx,
        request,
        commit_sent,
        false,
        #[cfg(feature = "test-support")]
        failpoints,
    )
    .await?;
    let Attempt::Done(committed) = attempt else {
        return Err(LedgerError::Corrupt(format!(
            "namespace {ns} changed while its row was locked"
        ))
        .into());
    };
    if committed.replayed || (committed.changes.is_empty() && request.idempotency_key.is_none()) {
        // Nothing written: the transaction is dropped (rolled back).
        return Ok(committed);
    }
    #[cfg(feature = "test-support")]
    failpoints.before_commit();
    commit_sent.store(true, Ordering::SeqCst);
    tx.commit().await?;
    #[cfg(feature = "test-support")]
    if !committed.changes.is_empty() {
        failpoints.after_commit();
    }
    Ok(committed)
}

/// The history page's statement, built for the filters given (so each combination gets a plan
/// that uses its index: `rtconfig_changesets_actor`, `…_created`, `…_comment_trgm`, and
/// `rtconfig_history_key` for the key) and its parameters. One more row than `limit` is asked
/// for, to know whether there is a next page.
struct HistorySelect {
    sql: String,
    namespace: String,
    before: i64,
    limit: i64,
    actor: Option<String>,
    pattern: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    key: Option<String>,
}

impl HistorySelect {
    fn new(namespace: &str, query: &HistoryQuery, limit: usize) -> HistorySelect {
        let mut sql = String::from(
            "SELECT c.version, c.epoch, c.actor, c.token_id, c.comment, c.request_id, \
             c.client_ip, c.user_agent, c.created_at FROM rtconfig_changesets c \
             WHERE c.namespace = $1 AND c.version < $2",
        );
        let mut n = 3;
        let mut add = |clause: &str| {
            sql.push_str(&clause.replace('#', &format!("${n}")));
            n += 1;
        };
        if query.actor.is_some() {
            add(" AND c.actor = #");
        }
        if query.text.is_some() {
            add(" AND c.comment ILIKE # ESCAPE '\\'");
        }
        if query.since.is_some() {
            add(" AND c.created_at >= #");
        }
        if query.until.is_some() {
            add(" AND c.created_at < #");
        }
        if query.key.is_some() {
            add(
                " AND EXISTS (SELECT 1 FROM rtconfig_history h WHERE h.namespace = c.namespace \
                 AND h.version = c.version AND h.key = #)",
            );
        }
        add(" ORDER BY c.version DESC LIMIT #");
        HistorySelect {
            sql,
            namespace: namespace.to_owned(),
            before: query.before.map_or(i64::MAX, i),
            limit: i(limit as u64 + 1),
            actor: query.actor.clone(),
            pattern: query.text.as_deref().map(like_pattern),
            since: query.since,
            until: query.until,
            key: query.key.clone(),
        }
    }

    /// The parameters in the order the statement numbers them.
    fn params(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        let mut p: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            vec![&self.namespace, &self.before];
        if let Some(a) = &self.actor {
            p.push(a);
        }
        if let Some(t) = &self.pattern {
            p.push(t);
        }
        if let Some(t) = &self.since {
            p.push(t);
        }
        if let Some(t) = &self.until {
            p.push(t);
        }
        if let Some(k) = &self.key {
            p.push(k);
        }
        p.push(&self.limit);
        p
    }
}

/// `%text%` for `ILIKE … ESCAPE '\'`, with the text's own `%`, `_` and `\` taken literally.
fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for ch in text.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('%');
    out
}

#[async_trait]
impl Ledger for PgLedger {
    fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    async fn ensure_namespace(&self, namespace: &str) -> Result<NamespaceState> {
        let ns = namespace.to_owned();
        self.run("create the namespace", move |c| {
            Box::pin(async move {
                let insert = c
                    .prepare_cached(
                        "INSERT INTO rtconfig_namespaces (name) VALUES ($1) \
                         ON CONFLICT (name) DO NOTHING",
                    )
                    .await?;
                c.execute(&insert, &[&ns]).await?;
                let (epoch, version, _) = ns_row(&*c, &ns).await?;
                Ok(NamespaceState { epoch, version })
            })
        })
        .await
    }

    async fn namespace_state(&self, namespace: &str) -> Result<NamespaceState> {
        let ns = namespace.to_owned();
        self.run("read the namespace", move |c| {
            Box::pin(async move {
                let (epoch, version, _) = ns_row(&*c, &ns).await?;
                Ok(NamespaceState { epoch, version })
            })
        })
        .await
    }

    async fn current(&self, namespace: &str) -> Result<CurrentValues> {
        let ns = namespace.to_owned();
        self.run("read the current values", move |c| {
            Box::pin(async move {
                // One statement: one snapshot, so the image is exactly the state at `version`.
                let rows = prepared_query(
                    &*c,
                    "SELECT n.epoch, n.version, v.key, v.value, v.version \
                     FROM rtconfig_namespaces n \
                     LEFT JOIN rtconfig_values v ON v.namespace = n.name \
                     WHERE n.name = $1",
                    &[&ns],
                )
                .await?;
                let first = rows
                    .first()
                    .ok_or_else(|| LedgerError::UnknownNamespace(ns.clone()))?;
                let state = NamespaceState {
                    epoch: u(first.get(0)),
                    version: u(first.get(1)),
                };
                let mut values = BTreeMap::new();
                for r in &rows {
                    if let Some(key) = r.get::<_, Option<String>>(2) {
                        values.insert(
                            key,
                            StoredValue {
                                value: r.get(3),
                                version: u(r.get::<_, i64>(4)),
                            },
                        );
                    }
                }
                Ok(CurrentValues { state, values })
            })
        })
        .await
    }

    async fn commit(&self, request: CommitRequest) -> Result<Committed> {
        let deadline = Instant::now() + self.settings.op_timeout;
        let mut conn = self.connection(deadline).await?;
        let commit_sent = AtomicBool::new(false);
        let outcome = tokio::time::timeout_at(
            deadline,
            commit_tx(
                &mut conn,
                &request,
                &commit_sent,
                #[cfg(feature = "test-support")]
                &self.settings.failpoints,
            ),
        )
        .await;
        let sent = commit_sent.load(Ordering::SeqCst);
        match outcome {
            Ok(Ok(committed)) => Ok(committed),
            Ok(Err(Fail::Ledger(e))) => Err(e),
            Ok(Err(Fail::Db(e))) => {
                // A COMMIT that failed with a definite answer (serialization, constraint) rolled
                // back; any other failure after it was sent leaves the outcome unknown.
                let definite = e.as_db_error().is_some_and(|db| {
                    let code = db.code().code();
                    code.starts_with("40") || code.starts_with("23") || code.starts_with("25")
                });
                if broken(&e) || (sent && !definite) {
                    discard(conn);
                }
                if sent && !definite {
                    tracing::warn!(namespace = %request.namespace, error = %Chain(&e), "the connection failed during COMMIT; the outcome is unknown");
                    Err(LedgerError::OutcomeUnknown)
                } else {
                    Err(failed("commit")(e))
                }
            }
            Err(_) => {
                discard(conn);
                if sent {
                    tracing::warn!(namespace = %request.namespace, timeout = ?self.settings.op_timeout, "COMMIT got no answer in time; the outcome is unknown");
                    Err(LedgerError::OutcomeUnknown)
                } else {
                    Err(timed_out("commit", self.settings.op_timeout))
                }
            }
        }
    }

    async fn history(&self, namespace: &str, query: &HistoryQuery) -> Result<HistoryPage> {
        let ns = namespace.to_owned();
        let query = query.clone();
        self.run("read the history", move |c| {
            Box::pin(async move {
                ns_row(&*c, &ns).await?;
                let limit = query.limit.clamp(1, 1000);
                let select = HistorySelect::new(&ns, &query, limit);
                // Not a cached statement: after five runs PostgreSQL may switch a prepared
                // statement to a generic plan, which cannot use the trigram index for a pattern
                // it does not know (100k changesets: 45 ms instead of 3 for a text no comment
                // has). A fresh statement is planned for its values every time.
                let rows = c.query(select.sql.as_str(), &select.params()).await?;
                let mut changesets: Vec<Changeset> =
                    rows.iter().map(|r| changeset_row(&ns, r)).collect();
                let next = if changesets.len() > limit {
                    changesets.truncate(limit);
                    changesets.last().map(|c| c.version)
                } else {
                    None
                };
                let versions: Vec<i64> = changesets.iter().map(|c| i(c.version)).collect();
                if !versions.is_empty() {
                    let changes = prepared_query(
                        &*c,
                        "SELECT version, key, old, new, default_value FROM rtconfig_history \
                         WHERE namespace = $1 AND version = ANY($2) \
                         AND ($3::text IS NULL OR key = $3) ORDER BY version, ord",
                        &[&ns, &versions, &query.key],
                    )
                    .await?;
                    attach_changes(&mut changesets, &changes);
                }
                Ok(HistoryPage { changesets, next })
            })
        })
        .await
    }

    async fn changeset(&self, namespace: &str, version: u64) -> Result<Option<Changeset>> {
        let ns = namespace.to_owned();
        self.run("read a changeset", move |c| {
            Box::pin(async move {
                let found = match version {
                    0 => None,
                    v => load_changesets(&*c, &ns, v - 1, v, 1).await?.pop(),
                };
                if found.is_none() {
                    // No such version, or no such namespace.
                    ns_row(&*c, &ns).await?;
                }
                Ok(found)
            })
        })
        .await
    }

    async fn changes_since(
        &self,
        namespace: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Changeset>> {
        let ns = namespace.to_owned();
        self.run("read changesets", move |c| {
            Box::pin(async move {
                let found = load_changesets(&*c, &ns, after, u64::MAX, limit).await?;
                if found.is_empty() {
                    // Nothing new, or no such namespace.
                    ns_row(&*c, &ns).await?;
                }
                Ok(found)
            })
        })
        .await
    }

    async fn state_at(&self, namespace: &str, version: u64) -> Result<BTreeMap<String, Value>> {
        let ns = namespace.to_owned();
        self.run("read a past state", move |c| {
            Box::pin(async move {
                let (_, current, first) = ns_row(&*c, &ns).await?;
                if version > current || (version != 0 && version < first) {
                    return Err(LedgerError::NoSuchVersion(version).into());
                }
                let rows = prepared_query(
                    &*c,
                    "SELECT DISTINCT ON (key) key, new FROM rtconfig_history \
                     WHERE namespace = $1 AND version <= $2 ORDER BY key, version DESC",
                    &[&ns, &i(version)],
                )
                .await?;
                Ok(rows
                    .iter()
                    .filter_map(|r| {
                        r.get::<_, Option<Value>>(1)
                            .map(|v| (r.get::<_, String>(0), v))
                    })
                    .collect())
            })
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.run("ping", |c| {
            Box::pin(async move {
                c.simple_query("SELECT 1").await?;
                Ok(())
            })
        })
        .await
    }

    async fn bump_epoch(&self, namespace: &str) -> Result<NamespaceState> {
        let ns = namespace.to_owned();
        self.run("bump the epoch", move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "UPDATE rtconfig_namespaces \
                         SET epoch = epoch + 1, ledger_behind = false, updated_at = now() \
                         WHERE name = $1 RETURNING epoch, version",
                        &[&ns],
                    )
                    .await?;
                let row = rows
                    .first()
                    .ok_or_else(|| LedgerError::UnknownNamespace(ns.clone()))?;
                Ok(NamespaceState {
                    epoch: u(row.get(0)),
                    version: u(row.get(1)),
                })
            })
        })
        .await
    }

    async fn set_ledger_behind(&self, namespace: &str, behind: bool) -> Result<()> {
        let ns = namespace.to_owned();
        self.run("mark the namespace", move |c| {
            Box::pin(async move {
                let n = c
                    .execute(
                        "UPDATE rtconfig_namespaces SET ledger_behind = $2 WHERE name = $1",
                        &[&ns, &behind],
                    )
                    .await?;
                if n == 0 {
                    return Err(LedgerError::UnknownNamespace(ns.clone()).into());
                }
                Ok(())
            })
        })
        .await
    }

    async fn adopt(
        &self,
        namespace: &str,
        image: &CurrentValues,
        meta: ChangeMeta,
    ) -> Result<bool> {
        let changeset = adopted_changeset(namespace, image, meta);
        let image = image.clone();
        self.run("adopt the Redis image", move |c| {
            Box::pin(async move {
                let ns = changeset.namespace.as_str();
                let tx = c.transaction().await?;
                let rows = tx
                    .query(
                        "SELECT epoch, version FROM rtconfig_namespaces WHERE name = $1 FOR UPDATE",
                        &[&ns],
                    )
                    .await?;
                let row = rows
                    .first()
                    .ok_or_else(|| LedgerError::UnknownNamespace(ns.to_owned()))?;
                let (epoch, version) = (u(row.get(0)), u(row.get(1)));
                if version != 0 || changeset.version == 0 || changeset.epoch < epoch {
                    return Ok(false);
                }
                let v = i(changeset.version);
                tx.execute(
                    "UPDATE rtconfig_namespaces SET epoch = $2, version = $3, first_version = $3, \
                     updated_at = now() WHERE name = $1",
                    &[&ns, &i(changeset.epoch), &v],
                )
                .await?;
                let m = &changeset.meta;
                tx.execute(
                    "INSERT INTO rtconfig_changesets (namespace, version, epoch, actor, token_id, \
                     comment, request_id, client_ip, user_agent) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[
                        &ns,
                        &v,
                        &i(changeset.epoch),
                        &m.actor,
                        &m.token_id,
                        &m.comment,
                        &m.request_id,
                        &m.client_ip,
                        &m.user_agent,
                    ],
                )
                .await?;
                let ords: Vec<i32> = (0..changeset.changes.len())
                    .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
                    .collect();
                let keys: Vec<&str> = changeset.changes.iter().map(|c| c.key.as_str()).collect();
                let news: Vec<Option<&Value>> =
                    changeset.changes.iter().map(|c| c.new.as_ref()).collect();
                tx.execute(
                    "INSERT INTO rtconfig_history (namespace, version, ord, key, op, old, new) \
                     SELECT $1, $2, t.ord, t.key, 'set', NULL, t.new \
                     FROM unnest($3::int[], $4::text[], $5::jsonb[]) AS t(ord, key, new)",
                    &[&ns, &v, &ords, &keys, &news],
                )
                .await?;
                let stored: Vec<(&str, &Value, i64)> = image
                    .values
                    .iter()
                    .filter_map(|(k, s)| s.value.as_ref().map(|v| (k.as_str(), v, i(s.version))))
                    .collect();
                let keys: Vec<&str> = stored.iter().map(|s| s.0).collect();
                let values: Vec<&Value> = stored.iter().map(|s| s.1).collect();
                let versions: Vec<i64> = stored.iter().map(|s| s.2).collect();
                tx.execute(
                    "INSERT INTO rtconfig_values (namespace, key, value, version) \
                     SELECT $1, t.key, t.value, t.version \
                     FROM unnest($2::text[], $3::jsonb[], $4::bigint[]) AS t(key, value, version)",
                    &[&ns, &keys, &values, &versions],
                )
                .await?;
                tx.commit().await?;
                Ok(true)
            })
        })
        .await
    }
}

/// What [`PgLedger::follow_commits`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitNotice {
    /// Listening (again): commits made while not listening were not announced, so the caller
    /// catches up from the ledger.
    Listening,
    /// A commit of any admin sharing this database (`NOTIFY` payload `"<namespace>:<version>"`).
    Committed { namespace: String, version: u64 },
}

/// Parses a [`COMMIT_CHANNEL`] payload, `"<namespace>:<version>"` (namespaces have no `:`).
pub fn parse_commit_payload(payload: &str) -> Option<(String, u64)> {
    let (namespace, version) = payload.rsplit_once(':')?;
    if namespace.is_empty() {
        return None;
    }
    Some((namespace.to_owned(), version.parse().ok()?))
}

/// How long [`PgLedger::follow_commits`] waits before listening again after its connection
/// failed.
const FOLLOW_RETRY: Duration = Duration::from_secs(1);

impl PgLedger {
    /// Listens for the commits of every admin replica on a dedicated connection (one per
    /// process, whatever the number of listeners behind `on`) until `stop` resolves: `LISTEN`
    /// on [`COMMIT_CHANNEL`], [`CommitNotice::Listening`] after each (re)connect, then one
    /// [`CommitNotice::Committed`] per `NOTIFY`. A failed connection is logged once per outage
    /// and retried every second.
    pub async fn follow_commits<F>(&self, stop: impl Future<Output = ()>, mut on: F)
    where
        F: FnMut(CommitNotice) + Send,
    {
        use futures_util::StreamExt;
        tokio::pin!(stop);
        let mut failing = false;
        loop {
            let attempt = async {
                let timeout = self.settings.op_timeout;
                let config = self
                    .settings
                    .connect_config("rtconfig-events", Some(timeout))?;
                let tls = self.settings.tls()?;
                let (client, mut connection) = tokio::time::timeout(
                    self.settings.connect_timeout + timeout,
                    config.connect(tls),
                )
                .await
                .map_err(|_| timed_out("open the commit listener", timeout))?
                .map_err(failed("open the commit listener"))?;
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                if tx.send(n.payload().to_owned()).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::debug!(error = %Chain(&e), "commit listener connection failed");
                                break;
                            }
                        }
                    }
                });
                let listen = format!("LISTEN {COMMIT_CHANNEL}");
                match tokio::time::timeout(timeout, client.batch_execute(&listen)).await {
                    Ok(Ok(())) => Ok((client, driver, rx)),
                    Ok(Err(e)) => {
                        driver.abort();
                        Err(failed("listen for commits")(e))
                    }
                    Err(_) => {
                        driver.abort();
                        Err(timed_out("listen for commits", timeout))
                    }
                }
            };
            let connected = tokio::select! {
                r = attempt => r,
                () = &mut stop => return,
            };
            match connected {
                Ok((client, driver, mut rx)) => {
                    if failing {
                        tracing::info!("listening for commits again");
                    }
                    failing = false;
                    on(CommitNotice::Listening);
                    loop {
                        tokio::select! {
                            payload = rx.recv() => match payload {
                                Some(p) => match parse_commit_payload(&p) {
                                    Some((namespace, version)) => {
                                        on(CommitNotice::Committed { namespace, version });
                                    }
                                    None => tracing::warn!(payload = %p, "ignoring a commit notice of an unknown shape"),
                                },
                                // The connection ended.
                                None => break,
                            },
                            () = &mut stop => {
                                driver.abort();
                                return;
                            }
                        }
                    }
                    driver.abort();
                    drop(client);
                    tracing::warn!("the commit listener's connection ended; listening again");
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %Chain(&e), "cannot listen for commits; retrying every second");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(FOLLOW_RETRY) => {}
                () = &mut stop => return,
            }
        }
    }
}

#[cfg(test)]
mod commit_payload_tests {
    use super::parse_commit_payload;

    #[test]
    fn commit_payloads() {
        let table = [
            ("demo:42", Some(("demo", 42))),
            ("my.ns-1:0", Some(("my.ns-1", 0))),
            ("demo", None),
            (":3", None),
            ("demo:x", None),
            ("demo:-1", None),
        ];
        for (payload, want) in table {
            assert_eq!(
                parse_commit_payload(payload),
                want.map(|(n, v)| (n.to_owned(), v)),
                "{payload}"
            );
        }
    }
}
