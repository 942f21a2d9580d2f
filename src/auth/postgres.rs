//! The PostgreSQL auth store: users, sessions, tokens and the audit log in the admin's database
//! (tables of `migrations/V2__auth.sql`), shared by every admin replica.
//!
//! It runs on the ledger's pool ([`PgAuthStore::new`] with `PgLedger::pool()`), so it shares its
//! bounds: every call — waiting for a connection included — ends within `op_timeout`, and a
//! PostgreSQL that is down or paused answers [`AuthStoreError::Unavailable`] in time. The CLI,
//! which has no ledger, uses [`PgAuthStore::open`] (migrates first, own small pool).
//!
//! What must hold across replicas is decided by PostgreSQL, in one statement or one
//! transaction, never by a read and a later write:
//! - a TOTP step: `UPDATE … SET totp_last_step = $step WHERE totp_last_step < $step` (the row
//!   lock makes concurrent uses of one step wait; the loser re-checks and matches nothing);
//! - a recovery code: `array_remove … WHERE $code = ANY(totp_recovery)`, the same way;
//! - a login failure: `SELECT … FOR UPDATE`, the throttle's pure rule
//!   (`memory::record_failure`), `UPDATE`, in one transaction;
//! - a user change and the deletion of the user's sessions: one transaction;
//! - audit ids: a counter row bumped in the same statement that inserts the event (gap-free
//!   and commit-ordered; a sequence would leave gaps on rollback);
//! - the first use of a token: `SELECT … FOR UPDATE` then `UPDATE`, one transaction.
//!
//! `touch_session` and `token_used` write only when the new time is at least a minute after
//! the stored one (`memory::TOUCH_INTERVAL`), like the embedded store.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Object, Pool};
use tokio::time::Instant;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::Row;

use super::memory::{self, record_failure, TOUCH_INTERVAL};
use super::role::Grants;
use super::store::{
    ApiToken, AuditEvent, AuditPage, AuditQuery, AuthStore, AuthStoreError, LoginFailures,
    NewAuditEvent, NewUser, OidcLink, Pending, Result, Session, TotpState, User, UserUpdate,
};
use crate::ledger::postgres::{broken, build_pool, discard, migrate, PgError, PgSettings};

/// A failure inside one call: the database's, or a store answer (unknown user, name taken).
enum Fail {
    Db(tokio_postgres::Error),
    Store(AuthStoreError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<AuthStoreError> for Fail {
    fn from(e: AuthStoreError) -> Self {
        Fail::Store(e)
    }
}

type Step<'c, T> = Pin<Box<dyn Future<Output = Result<T, Fail>> + Send + 'c>>;

fn unavailable(e: PgError) -> AuthStoreError {
    AuthStoreError::Unavailable(Box::new(e))
}

/// The violated constraint, when `e` is a unique (`23505`) or foreign-key (`23503`) violation.
fn violated<'e>(e: &'e tokio_postgres::Error, code: &str) -> Option<&'e str> {
    let db = e.as_db_error()?;
    (db.code().code() == code).then(|| db.constraint().unwrap_or(""))
}

const UNIQUE: &str = "23505";
const FOREIGN_KEY: &str = "23503";

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn count(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn pending_text(p: Option<Pending>) -> Option<&'static str> {
    p.map(|p| match p {
        Pending::Totp => "totp",
        Pending::TotpEnrolment => "totp_enrolment",
    })
}

fn pending_of(text: Option<&str>) -> Option<Pending> {
    match text? {
        "totp" => Some(Pending::Totp),
        "totp_enrolment" => Some(Pending::TotpEnrolment),
        _ => None,
    }
}

const USER_COLS: &str =
    "id, username, grants, disabled, password_hash, oidc_issuer, oidc_subject, \
     totp_secret, totp_confirmed, totp_last_step, totp_recovery, fail_consecutive, fail_last_at, \
     fail_window_start, fail_in_window, created_at, updated_at";

fn user_row(r: &Row) -> User {
    let issuer: Option<String> = r.get(5);
    let subject: Option<String> = r.get(6);
    let secret: Option<String> = r.get(7);
    User {
        id: r.get(0),
        username: r.get(1),
        grants: r.get::<_, Json<Grants>>(2).0,
        disabled: r.get(3),
        password_hash: r.get(4),
        oidc: issuer
            .zip(subject)
            .map(|(issuer, subject)| OidcLink { issuer, subject }),
        totp: secret.map(|secret_encrypted| TotpState {
            secret_encrypted,
            confirmed: r.get(8),
            last_step: r.get::<_, Option<i64>>(9).map(u),
            recovery_codes: r.get(10),
        }),
        failures: LoginFailures {
            consecutive: count(r.get(11)),
            last_at: r.get(12),
            window_start: r.get(13),
            in_window: count(r.get(14)),
        },
        created_at: r.get(15),
        updated_at: r.get(16),
    }
}

const SESSION_COLS: &str =
    "id_digest, user_id, csrf_token, created_at, last_seen_at, expires_at, pending, ip, user_agent";

fn session_row(r: &Row) -> Session {
    Session {
        id_digest: r.get(0),
        user_id: r.get(1),
        csrf_token: r.get(2),
        created_at: r.get(3),
        last_seen_at: r.get(4),
        expires_at: r.get(5),
        pending: pending_of(r.get(6)),
        ip: r.get(7),
        user_agent: r.get(8),
    }
}

const TOKEN_COLS: &str =
    "id, name, digest, grants, created_by, created_at, expires_at, last_used_at, revoked_at";

fn token_row(r: &Row) -> ApiToken {
    ApiToken {
        id: r.get(0),
        name: r.get(1),
        digest: r.get(2),
        grants: r.get::<_, Json<Grants>>(3).0,
        created_by: r.get(4),
        created_at: r.get(5),
        expires_at: r.get(6),
        last_used_at: r.get(7),
        revoked_at: r.get(8),
    }
}

fn audit_row(r: &Row) -> AuditEvent {
    AuditEvent {
        id: u(r.get(0)),
        event: NewAuditEvent {
            at: r.get(1),
            action: r.get(2),
            actor: r.get(3),
            target: r.get(4),
            ip: r.get(5),
            user_agent: r.get(6),
            request_id: r.get(7),
            details: r.get(8),
        },
    }
}

async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let statement = c.prepare_cached(sql).await?;
    c.query(&statement, params).await
}

async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let statement = c.prepare_cached(sql).await?;
    c.execute(&statement, params).await
}

async fn user_exists<C: GenericClient>(c: &C, id: &str) -> Result<bool, Fail> {
    Ok(
        !query(c, "SELECT 1 FROM rtconfig_users WHERE id = $1", &[&id])
            .await?
            .is_empty(),
    )
}

/// `Ok(())` if the user exists, `NoSuchUser` otherwise.
async fn need_user<C: GenericClient>(c: &C, id: &str) -> Result<(), Fail> {
    if user_exists(c, id).await? {
        Ok(())
    } else {
        Err(AuthStoreError::NoSuchUser(id.to_owned()).into())
    }
}

/// The PostgreSQL auth store. Cheap to share (`Arc`).
pub struct PgAuthStore {
    pool: Pool,
    op_timeout: Duration,
}

impl std::fmt::Debug for PgAuthStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgAuthStore")
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

impl PgAuthStore {
    /// The store on an existing pool (the ledger's: `PgLedger::pool()`, whose open ran the
    /// migrations), every call bounded by `op_timeout`.
    pub fn new(pool: Pool, op_timeout: Duration) -> PgAuthStore {
        PgAuthStore { pool, op_timeout }
    }

    /// Migrates the database and opens the store on a pool of its own (`rtconfig user …`).
    pub async fn open(settings: &PgSettings) -> Result<PgAuthStore> {
        migrate(settings)
            .await
            .map_err(|e| AuthStoreError::Unavailable(Box::new(e)))?;
        let mut settings = settings.clone();
        settings.pool_size = settings.pool_size.min(4);
        let pool = build_pool(&settings, "rtconfig-cli")
            .map_err(|e| AuthStoreError::Unavailable(Box::new(e)))?;
        Ok(PgAuthStore::new(pool, settings.op_timeout))
    }

    /// Runs `step` on a pooled connection under the operation deadline.
    async fn run<T, F>(&self, what: &'static str, step: F) -> Result<T>
    where
        F: for<'c> FnOnce(&'c mut Object) -> Step<'c, T>,
    {
        let deadline = Instant::now() + self.op_timeout;
        let mut conn = match tokio::time::timeout_at(deadline, self.pool.get()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(unavailable(PgError::Pool(e))),
            Err(_) => {
                return Err(unavailable(PgError::Timeout {
                    what: "get a connection",
                    timeout: self.op_timeout,
                }))
            }
        };
        match tokio::time::timeout_at(deadline, step(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(Fail::Store(e))) => Err(e),
            Ok(Err(Fail::Db(e))) => {
                if broken(&e) {
                    discard(conn);
                }
                Err(unavailable(PgError::Query { what, source: e }))
            }
            Err(_) => {
                discard(conn);
                Err(unavailable(PgError::Timeout {
                    what,
                    timeout: self.op_timeout,
                }))
            }
        }
    }

    async fn one_user(
        &self,
        what: &'static str,
        sql: String,
        key: Vec<String>,
    ) -> Result<Option<User>> {
        self.run(what, move |c| {
            Box::pin(async move {
                let params: Vec<&(dyn ToSql + Sync)> =
                    key.iter().map(|k| k as &(dyn ToSql + Sync)).collect();
                Ok(query(c, &sql, &params).await?.first().map(user_row))
            })
        })
        .await
    }
}

#[async_trait]
impl AuthStore for PgAuthStore {
    async fn create_user(&self, user: NewUser) -> Result<User> {
        let now = memory::now();
        let user = User {
            id: super::secrets::new_id("u_"),
            username: user.username,
            grants: user.grants,
            disabled: false,
            password_hash: user.password_hash,
            oidc: user.oidc,
            totp: None,
            failures: LoginFailures::default(),
            created_at: now,
            updated_at: now,
        };
        self.run("create a user", move |c| {
            Box::pin(async move {
                let issuer = user.oidc.as_ref().map(|l| l.issuer.as_str());
                let subject = user.oidc.as_ref().map(|l| l.subject.as_str());
                let inserted = execute(
                    c,
                    "INSERT INTO rtconfig_users (id, username, grants, password_hash, oidc_issuer, \
                     oidc_subject, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                    &[
                        &user.id,
                        &user.username,
                        &Json(&user.grants),
                        &user.password_hash,
                        &issuer,
                        &subject,
                        &user.created_at,
                    ],
                )
                .await;
                match inserted {
                    Ok(_) => Ok(user),
                    Err(e) => match violated(&e, UNIQUE) {
                        Some(c) if c.contains("username") || c.contains("oidc") => {
                            Err(AuthStoreError::UserExists(user.username).into())
                        }
                        _ => Err(e.into()),
                    },
                }
            })
        })
        .await
    }

    async fn user(&self, id: &str) -> Result<Option<User>> {
        self.one_user(
            "read a user",
            format!("SELECT {USER_COLS} FROM rtconfig_users WHERE id = $1"),
            vec![id.to_owned()],
        )
        .await
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        self.one_user(
            "read a user",
            format!("SELECT {USER_COLS} FROM rtconfig_users WHERE username = $1"),
            vec![username.to_owned()],
        )
        .await
    }

    async fn user_by_oidc(&self, link: &OidcLink) -> Result<Option<User>> {
        self.one_user(
            "read a user",
            format!(
                "SELECT {USER_COLS} FROM rtconfig_users WHERE oidc_issuer = $1 AND oidc_subject = $2"
            ),
            vec![link.issuer.clone(), link.subject.clone()],
        )
        .await
    }

    async fn users(&self) -> Result<Vec<User>> {
        self.run("list the users", |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {USER_COLS} FROM rtconfig_users ORDER BY username COLLATE \"C\""
                );
                Ok(query(c, &sql, &[]).await?.iter().map(user_row).collect())
            })
        })
        .await
    }

    async fn update_user(&self, id: &str, update: UserUpdate) -> Result<User> {
        let id = id.to_owned();
        let at = memory::now();
        self.run("update a user", move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                let (set, revoke) = match &update {
                    UserUpdate::Password(_) => (
                        "password_hash = $3, fail_consecutive = 0, fail_last_at = NULL, \
                         fail_window_start = NULL, fail_in_window = 0",
                        true,
                    ),
                    UserUpdate::Grants(_) => ("grants = $3", true),
                    UserUpdate::Disabled(d) => ("disabled = $3", *d),
                    UserUpdate::Totp(Some(_)) => (
                        "totp_secret = $3, totp_confirmed = $4, totp_last_step = $5, \
                         totp_recovery = $6",
                        false,
                    ),
                    UserUpdate::Totp(None) => (
                        "totp_secret = NULL, totp_confirmed = false, totp_last_step = NULL, \
                         totp_recovery = '{}'",
                        true,
                    ),
                };
                let sql = format!(
                    "UPDATE rtconfig_users SET updated_at = $2, {set} WHERE id = $1 RETURNING {USER_COLS}"
                );
                let rows = match &update {
                    UserUpdate::Password(hash) => query(&tx, &sql, &[&id, &at, hash]).await?,
                    UserUpdate::Grants(g) => query(&tx, &sql, &[&id, &at, &Json(g)]).await?,
                    UserUpdate::Disabled(d) => query(&tx, &sql, &[&id, &at, d]).await?,
                    UserUpdate::Totp(Some(t)) => {
                        let step = t.last_step.map(i);
                        query(
                            &tx,
                            &sql,
                            &[&id, &at, &t.secret_encrypted, &t.confirmed, &step, &t.recovery_codes],
                        )
                        .await?
                    }
                    UserUpdate::Totp(None) => query(&tx, &sql, &[&id, &at]).await?,
                };
                let user = rows
                    .first()
                    .map(user_row)
                    .ok_or_else(|| AuthStoreError::NoSuchUser(id.clone()))?;
                if revoke {
                    execute(&tx, "DELETE FROM rtconfig_sessions WHERE user_id = $1", &[&id])
                        .await?;
                }
                tx.commit().await?;
                Ok(user)
            })
        })
        .await
    }

    async fn has_admin(&self) -> Result<bool> {
        self.run("look for an admin", |c| {
            Box::pin(async move {
                let rows = query(
                    c,
                    "SELECT EXISTS (SELECT 1 FROM rtconfig_users \
                     WHERE NOT disabled AND grants @> '[\"admin\"]'::jsonb)",
                    &[],
                )
                .await?;
                Ok(rows.first().is_some_and(|r| r.get(0)))
            })
        })
        .await
    }

    async fn use_totp_step(&self, user_id: &str, step: u64) -> Result<bool> {
        let user_id = user_id.to_owned();
        self.run("accept a TOTP step", move |c| {
            Box::pin(async move {
                let n = execute(
                    c,
                    "UPDATE rtconfig_users SET totp_last_step = $2 WHERE id = $1 \
                     AND totp_secret IS NOT NULL \
                     AND (totp_last_step IS NULL OR totp_last_step < $2)",
                    &[&user_id, &i(step)],
                )
                .await?;
                if n == 0 {
                    need_user(c, &user_id).await?;
                }
                Ok(n == 1)
            })
        })
        .await
    }

    async fn use_recovery_code(&self, user_id: &str, digest: &str) -> Result<bool> {
        let (user_id, digest) = (user_id.to_owned(), digest.to_owned());
        self.run("use a recovery code", move |c| {
            Box::pin(async move {
                let n = execute(
                    c,
                    "UPDATE rtconfig_users SET totp_recovery = array_remove(totp_recovery, $2) \
                     WHERE id = $1 AND totp_secret IS NOT NULL AND $2 = ANY (totp_recovery)",
                    &[&user_id, &digest],
                )
                .await?;
                if n == 0 {
                    need_user(c, &user_id).await?;
                }
                Ok(n == 1)
            })
        })
        .await
    }

    async fn record_login_failure(
        &self,
        user_id: &str,
        at: DateTime<Utc>,
    ) -> Result<LoginFailures> {
        let user_id = user_id.to_owned();
        self.run("count a failed sign-in", move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                let rows = query(
                    &tx,
                    "SELECT fail_consecutive, fail_last_at, fail_window_start, fail_in_window \
                     FROM rtconfig_users WHERE id = $1 FOR UPDATE",
                    &[&user_id],
                )
                .await?;
                let row = rows
                    .first()
                    .ok_or_else(|| AuthStoreError::NoSuchUser(user_id.clone()))?;
                let prev = LoginFailures {
                    consecutive: count(row.get(0)),
                    last_at: row.get(1),
                    window_start: row.get(2),
                    in_window: count(row.get(3)),
                };
                let next = record_failure(&prev, at);
                let consecutive = i32::try_from(next.consecutive).unwrap_or(i32::MAX);
                let in_window = i32::try_from(next.in_window).unwrap_or(i32::MAX);
                execute(
                    &tx,
                    "UPDATE rtconfig_users SET fail_consecutive = $2, fail_last_at = $3, \
                     fail_window_start = $4, fail_in_window = $5 WHERE id = $1",
                    &[
                        &user_id,
                        &consecutive,
                        &next.last_at,
                        &next.window_start,
                        &in_window,
                    ],
                )
                .await?;
                tx.commit().await?;
                Ok(next)
            })
        })
        .await
    }

    async fn clear_login_failures(&self, user_id: &str) -> Result<()> {
        let user_id = user_id.to_owned();
        self.run("clear the failed sign-ins", move |c| {
            Box::pin(async move {
                let n = execute(
                    c,
                    "UPDATE rtconfig_users SET fail_consecutive = 0, fail_last_at = NULL, \
                     fail_window_start = NULL, fail_in_window = 0 WHERE id = $1 \
                     AND (fail_consecutive <> 0 OR fail_in_window <> 0 OR fail_last_at IS NOT NULL)",
                    &[&user_id],
                )
                .await?;
                if n == 0 {
                    need_user(c, &user_id).await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn create_session(&self, session: Session) -> Result<()> {
        self.run("create a session", move |c| {
            Box::pin(async move {
                let pending = pending_text(session.pending);
                let inserted = execute(
                    c,
                    "INSERT INTO rtconfig_sessions (id_digest, user_id, csrf_token, created_at, \
                     last_seen_at, expires_at, pending, ip, user_agent) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[
                        &session.id_digest,
                        &session.user_id,
                        &session.csrf_token,
                        &session.created_at,
                        &session.last_seen_at,
                        &session.expires_at,
                        &pending,
                        &session.ip,
                        &session.user_agent,
                    ],
                )
                .await;
                match inserted {
                    Ok(_) => Ok(()),
                    Err(e) if violated(&e, FOREIGN_KEY).is_some() => {
                        Err(AuthStoreError::NoSuchUser(session.user_id).into())
                    }
                    Err(e) => Err(e.into()),
                }
            })
        })
        .await
    }

    async fn session(&self, id_digest: &str) -> Result<Option<Session>> {
        let id_digest = id_digest.to_owned();
        self.run("read a session", move |c| {
            Box::pin(async move {
                let sql =
                    format!("SELECT {SESSION_COLS} FROM rtconfig_sessions WHERE id_digest = $1");
                Ok(query(c, &sql, &[&id_digest])
                    .await?
                    .first()
                    .map(session_row))
            })
        })
        .await
    }

    async fn touch_session(&self, id_digest: &str, at: DateTime<Utc>) -> Result<()> {
        let id_digest = id_digest.to_owned();
        let due_before = at - TOUCH_INTERVAL;
        self.run("refresh a session", move |c| {
            Box::pin(async move {
                execute(
                    c,
                    "UPDATE rtconfig_sessions SET last_seen_at = $2 \
                     WHERE id_digest = $1 AND last_seen_at <= $3",
                    &[&id_digest, &at, &due_before],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn delete_session(&self, id_digest: &str) -> Result<bool> {
        let id_digest = id_digest.to_owned();
        self.run("end a session", move |c| {
            Box::pin(async move {
                let n = execute(
                    c,
                    "DELETE FROM rtconfig_sessions WHERE id_digest = $1",
                    &[&id_digest],
                )
                .await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn delete_sessions_of(&self, user_id: &str, keep: Option<&str>) -> Result<u64> {
        let (user_id, keep) = (user_id.to_owned(), keep.map(str::to_owned));
        self.run("end a user's sessions", move |c| {
            Box::pin(async move {
                let n = execute(
                    c,
                    "DELETE FROM rtconfig_sessions WHERE user_id = $1 \
                     AND ($2::text IS NULL OR id_digest <> $2)",
                    &[&user_id, &keep],
                )
                .await?;
                if n == 0 {
                    need_user(c, &user_id).await?;
                }
                Ok(n)
            })
        })
        .await
    }

    async fn sessions_of(&self, user_id: &str) -> Result<Vec<Session>> {
        let user_id = user_id.to_owned();
        self.run("list a user's sessions", move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {SESSION_COLS} FROM rtconfig_sessions WHERE user_id = $1 \
                     ORDER BY created_at, id_digest COLLATE \"C\""
                );
                Ok(query(c, &sql, &[&user_id])
                    .await?
                    .iter()
                    .map(session_row)
                    .collect())
            })
        })
        .await
    }

    async fn purge_sessions(&self, now: DateTime<Utc>, idle_before: DateTime<Utc>) -> Result<u64> {
        self.run("purge ended sessions", move |c| {
            Box::pin(async move {
                Ok(execute(
                    c,
                    "DELETE FROM rtconfig_sessions WHERE expires_at <= $1 OR last_seen_at <= $2",
                    &[&now, &idle_before],
                )
                .await?)
            })
        })
        .await
    }

    async fn create_token(&self, token: ApiToken) -> Result<()> {
        self.run("create a token", move |c| {
            Box::pin(async move {
                let inserted = execute(
                    c,
                    "INSERT INTO rtconfig_tokens (id, name, digest, grants, created_by, created_at, \
                     expires_at, last_used_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[
                        &token.id,
                        &token.name,
                        &token.digest,
                        &Json(&token.grants),
                        &token.created_by,
                        &token.created_at,
                        &token.expires_at,
                        &token.last_used_at,
                        &token.revoked_at,
                    ],
                )
                .await;
                match inserted {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        if violated(&e, UNIQUE).is_some_and(|c| c == "rtconfig_tokens_live_name") {
                            return Err(AuthStoreError::TokenExists(token.name).into());
                        }
                        if violated(&e, FOREIGN_KEY).is_some() {
                            let creator = token.created_by.unwrap_or_default();
                            return Err(AuthStoreError::NoSuchUser(creator).into());
                        }
                        Err(e.into())
                    }
                }
            })
        })
        .await
    }

    async fn token_by_digest(&self, digest: &str) -> Result<Option<ApiToken>> {
        let digest = digest.to_owned();
        self.run("read a token", move |c| {
            Box::pin(async move {
                let sql = format!("SELECT {TOKEN_COLS} FROM rtconfig_tokens WHERE digest = $1");
                Ok(query(c, &sql, &[&digest]).await?.first().map(token_row))
            })
        })
        .await
    }

    async fn token(&self, id: &str) -> Result<Option<ApiToken>> {
        let id = id.to_owned();
        self.run("read a token", move |c| {
            Box::pin(async move {
                let sql = format!("SELECT {TOKEN_COLS} FROM rtconfig_tokens WHERE id = $1");
                Ok(query(c, &sql, &[&id]).await?.first().map(token_row))
            })
        })
        .await
    }

    async fn tokens(&self) -> Result<Vec<ApiToken>> {
        self.run("list the tokens", |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {TOKEN_COLS} FROM rtconfig_tokens ORDER BY created_at DESC, id COLLATE \"C\" DESC"
                );
                Ok(query(c, &sql, &[]).await?.iter().map(token_row).collect())
            })
        })
        .await
    }

    async fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let id = id.to_owned();
        self.run("revoke a token", move |c| {
            Box::pin(async move {
                let n = execute(
                    c,
                    "UPDATE rtconfig_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                    &[&id, &at],
                )
                .await?;
                Ok(n == 1)
            })
        })
        .await
    }

    async fn token_used(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let id = id.to_owned();
        let due_before = at - TOUCH_INTERVAL;
        self.run("record a token's use", move |c| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                let rows = query(
                    &tx,
                    "SELECT last_used_at FROM rtconfig_tokens WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await?;
                let Some(row) = rows.first() else {
                    return Ok(false);
                };
                let last: Option<DateTime<Utc>> = row.get(0);
                if last.is_some_and(|l| l > due_before) {
                    return Ok(false);
                }
                execute(
                    &tx,
                    "UPDATE rtconfig_tokens SET last_used_at = $2 WHERE id = $1",
                    &[&id, &at],
                )
                .await?;
                tx.commit().await?;
                Ok(last.is_none())
            })
        })
        .await
    }

    async fn append_audit(&self, event: NewAuditEvent) -> Result<u64> {
        self.run("append to the audit log", move |c| {
            Box::pin(async move {
                let rows = query(
                    c,
                    "WITH n AS (UPDATE rtconfig_audit_counter SET last_id = last_id + 1 \
                     RETURNING last_id) \
                     INSERT INTO rtconfig_audit (id, at, action, actor, target, ip, user_agent, \
                     request_id, details) \
                     SELECT last_id, $1, $2, $3, $4, $5, $6, $7, $8 FROM n RETURNING id",
                    &[
                        &event.at,
                        &event.action,
                        &event.actor,
                        &event.target,
                        &event.ip,
                        &event.user_agent,
                        &event.request_id,
                        &event.details,
                    ],
                )
                .await?;
                let row = rows.first().ok_or_else(|| {
                    AuthStoreError::Corrupt("rtconfig_audit_counter has no row".into())
                })?;
                Ok(u(row.get(0)))
            })
        })
        .await
    }

    async fn audit(&self, query_: &AuditQuery) -> Result<AuditPage> {
        let q = query_.clone();
        let limit = q.limit.clamp(1, 1000);
        self.run("read the audit log", move |c| {
            Box::pin(async move {
                let before = q.before.map(i);
                let fetch = i(limit as u64 + 1);
                let rows = query(
                    c,
                    "SELECT id, at, action, actor, target, ip, user_agent, request_id, details \
                     FROM rtconfig_audit \
                     WHERE ($1::text IS NULL OR action = $1) AND ($2::text IS NULL OR actor = $2) \
                     AND ($3::bigint IS NULL OR id < $3) AND ($5::text IS NULL OR target = $5) \
                     AND ($6::timestamptz IS NULL OR at >= $6) AND ($7::timestamptz IS NULL OR at < $7) \
                     ORDER BY id DESC LIMIT $4",
                    &[&q.action, &q.actor, &before, &fetch, &q.target, &q.since, &q.until],
                )
                .await?;
                let mut events: Vec<AuditEvent> = rows.iter().map(audit_row).collect();
                let next = if events.len() > limit {
                    events.truncate(limit);
                    events.last().map(|e| e.id)
                } else {
                    None
                };
                Ok(AuditPage { events, next })
            })
        })
        .await
    }
}
