//! What the access layer remembers — users, sessions, API tokens, login failures and the audit
//! log — behind the [`AuthStore`] trait.
//!
//! Implementations (both pass the one conformance suite in `auth::conformance`):
//! - the embedded store: a checksummed, fsynced, append-only journal in the data dir, next to
//!   the embedded ledger (`rtconfig dev`, `rtconfig admin --data-dir`);
//! - the PostgreSQL store: tables from a refinery migration, shared by every admin replica.
//!
//! The store keeps the invariants that must hold across replicas, so no caller can forget them:
//! a password change, a grant change or disabling a user deletes all of that user's sessions in
//! the same write; a TOTP time step is accepted at most once; a recovery code works once; a
//! revoked token stays revoked. Secrets are stored only as hashes (session ids, API tokens,
//! recovery codes, passwords) or encrypted (TOTP secrets): the store never sees one in clear.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::role::Grants;

/// A SHA-256 digest, hex-encoded: how session ids, API tokens and recovery codes are stored.
pub type Digest = String;

/// Where an SSO user comes from: the provider's issuer and the user's subject there. An SSO
/// user is found by this pair only, never by name or e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcLink {
    pub issuer: String,
    pub subject: String,
}

/// A user's TOTP second factor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpState {
    /// The shared secret, encrypted with the deployment's key (never stored in clear).
    pub secret_encrypted: String,
    /// `false` while enrolling: set up but its first code not yet confirmed.
    pub confirmed: bool,
    /// The last time step (unix time / 30 s) accepted; a step is never accepted twice.
    pub last_step: Option<u64>,
    /// Digests of the unused recovery codes.
    pub recovery_codes: Vec<Digest>,
}

/// Consecutive and hourly failed sign-ins of one account (for the throttle).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginFailures {
    /// Failures since the last successful sign-in.
    pub consecutive: u32,
    pub last_at: Option<DateTime<Utc>>,
    /// Start of the current one-hour window and the failures counted in it.
    pub window_start: Option<DateTime<Utc>>,
    pub in_window: u32,
}

/// An admin user: local (with a password) or from SSO (with an [`OidcLink`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Opaque, stable, random (`u_…`); never reused.
    pub id: String,
    /// Unique among users (case-sensitive).
    pub username: String,
    pub grants: Grants,
    pub disabled: bool,
    /// The argon2id PHC string; `None` for SSO users.
    pub password_hash: Option<String>,
    pub oidc: Option<OidcLink>,
    pub totp: Option<TotpState>,
    pub failures: LoginFailures,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewUser {
    pub username: String,
    pub grants: Grants,
    pub password_hash: Option<String>,
    pub oidc: Option<OidcLink>,
}

/// One change to a user. Changes marked *revokes sessions* also delete all of the user's
/// sessions in the same write.
#[derive(Debug, Clone, PartialEq)]
pub enum UserUpdate {
    /// A new password hash (*revokes sessions*; also clears the login failures).
    Password(String),
    /// New grants (*revokes sessions*).
    Grants(Grants),
    /// Disable (*revokes sessions*) or enable.
    Disabled(bool),
    /// Set up, confirm or remove (`None`: reset MFA, *revokes sessions*) the TOTP factor.
    Totp(Option<TotpState>),
}

/// A server-side session. The cookie carries a random 256-bit id; only its digest is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id_digest: Digest,
    pub user_id: String,
    /// The synchronizer CSRF token of this session (random; sent back in `X-CSRF-Token` or the
    /// `csrf_token` form field).
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    /// Last request seen (idle timeout); refreshed at most once a minute.
    pub last_seen_at: DateTime<Utc>,
    /// The absolute end of the session, whatever its activity.
    pub expires_at: DateTime<Utc>,
    /// A half-finished sign-in: the password was right, the second factor is still owed.
    pub pending: Option<Pending>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// What a half-finished sign-in still owes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pending {
    /// A TOTP code (or a recovery code).
    Totp,
    /// Enrolment: the user must set up TOTP before anything else.
    TotpEnrolment,
}

/// An API token (`Authorization: Bearer rtc_…`). Only its digest is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiToken {
    /// Opaque, stable, random (`tok_…`).
    pub id: String,
    pub name: String,
    pub digest: Digest,
    /// The token's scope. Its effective rights are this limited by its creator's current grants.
    pub grants: Grants,
    /// The user who created it; `None` when made with the CLI (`rtconfig token create`), whose
    /// tokens have their scope alone.
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// An audit event to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEvent {
    pub at: DateTime<Utc>,
    /// What happened: `login_ok`, `login_failed`, `logout`, `lockout`, `token_created`,
    /// `token_first_use`, `token_revoked`, `bootstrap_token_used`, `user_created`,
    /// `roles_changed`, `password_changed`, `user_disabled`, `user_enabled`, `mfa_enrolled`,
    /// `mfa_reset`, `forbidden`, … (see docs/SECURITY.md).
    pub action: String,
    /// Who did it: a user name, `token:NAME`, `admin-token`, `cli`, or the name tried.
    pub actor: String,
    /// What it was done to (a user name, token id, route), when not the actor itself.
    pub target: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// Anything else worth keeping (never a password, token or secret value).
    pub details: Value,
}

/// A recorded audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Rising, gap-free per store.
    pub id: u64,
    #[serde(flatten)]
    pub event: NewAuditEvent,
}

/// Filters and paging for [`AuthStore::audit`], newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub action: Option<String>,
    pub actor: Option<String>,
    /// The user, token or session the event is about (exact).
    pub target: Option<String>,
    /// Only events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only events with an id below this.
    pub before: Option<u64>,
    pub limit: usize,
}

impl AuditQuery {
    /// Whether `e` passes every filter (paging aside).
    pub fn matches(&self, e: &NewAuditEvent) -> bool {
        self.action.as_ref().is_none_or(|a| *a == e.action)
            && self.actor.as_ref().is_none_or(|a| *a == e.actor)
            && self
                .target
                .as_ref()
                .is_none_or(|t| e.target.as_ref() == Some(t))
            && self.since.is_none_or(|t| e.at >= t)
            && self.until.is_none_or(|t| e.at < t)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// The `before` of the next page.
    pub next: Option<u64>,
}

/// Why an auth store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthStoreError {
    #[error("a user named {0:?} already exists")]
    UserExists(String),
    #[error("no such user {0:?}")]
    NoSuchUser(String),
    #[error("a token named {0:?} already exists")]
    TokenExists(String),
    /// The store cannot be used just now (see the cause); nothing was written. Retry later.
    #[error("the user store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the user store is corrupt: {0}")]
    Corrupt(String),
    /// Another process holds the embedded store's data dir (`<data-dir>/auth.lock` names the
    /// pid): a running `rtconfig admin` or `rtconfig dev`.
    #[error("the data dir {} is in use by another rtconfig process ({}): stop the admin, or use the API", .dir.display(), holder(.pid))]
    DataDirInUse {
        dir: std::path::PathBuf,
        pid: Option<u32>,
    },
    /// The embedded store could not read or write one of its files.
    #[error("cannot {what} {}", .path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn holder(pid: &Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "its pid is not recorded".to_owned(),
    }
}

pub type Result<T, E = AuthStoreError> = std::result::Result<T, E>;

/// Users, sessions, tokens and the audit log. Every write is durable before it returns.
#[async_trait]
pub trait AuthStore: Send + Sync + 'static {
    // --- users ---
    async fn create_user(&self, user: NewUser) -> Result<User>;
    async fn user(&self, id: &str) -> Result<Option<User>>;
    async fn user_by_name(&self, username: &str) -> Result<Option<User>>;
    async fn user_by_oidc(&self, link: &OidcLink) -> Result<Option<User>>;
    /// Every user, by name.
    async fn users(&self) -> Result<Vec<User>>;
    /// Applies one change; returns the user after it. Errors with `NoSuchUser` for an unknown id.
    async fn update_user(&self, id: &str, update: UserUpdate) -> Result<User>;
    /// Whether an enabled user with a global `admin` grant exists (the bootstrap token and
    /// `dev`'s first start ask).
    async fn has_admin(&self) -> Result<bool>;

    // --- second factor ---
    /// Accepts TOTP `step` for the user only if it is above the last one accepted, atomically
    /// (`false`: replayed or older; the code must be refused).
    async fn use_totp_step(&self, user_id: &str, step: u64) -> Result<bool>;
    /// Removes a recovery code if the user has it (`false`: unknown or already used).
    async fn use_recovery_code(&self, user_id: &str, digest: &str) -> Result<bool>;

    // --- throttle ---
    /// Counts one failed sign-in at `at` (rolling the hourly window); returns the new counts.
    async fn record_login_failure(&self, user_id: &str, at: DateTime<Utc>)
        -> Result<LoginFailures>;
    /// A successful sign-in (or an admin's unlock) clears the counts.
    async fn clear_login_failures(&self, user_id: &str) -> Result<()>;

    // --- sessions ---
    async fn create_session(&self, session: Session) -> Result<()>;
    async fn session(&self, id_digest: &str) -> Result<Option<Session>>;
    /// Refreshes `last_seen_at`.
    async fn touch_session(&self, id_digest: &str, at: DateTime<Utc>) -> Result<()>;
    /// Ends one session (logout); `false` if there was none.
    async fn delete_session(&self, id_digest: &str) -> Result<bool>;
    /// Ends all of a user's sessions but `keep` (sign out everywhere); returns how many ended.
    async fn delete_sessions_of(&self, user_id: &str, keep: Option<&str>) -> Result<u64>;
    async fn sessions_of(&self, user_id: &str) -> Result<Vec<Session>>;
    /// Deletes sessions whose absolute or idle end is before `idle_before`/`now`.
    async fn purge_sessions(&self, now: DateTime<Utc>, idle_before: DateTime<Utc>) -> Result<u64>;

    // --- API tokens ---
    async fn create_token(&self, token: ApiToken) -> Result<()>;
    async fn token_by_digest(&self, digest: &str) -> Result<Option<ApiToken>>;
    async fn token(&self, id: &str) -> Result<Option<ApiToken>>;
    /// Every token (revoked ones included), newest first.
    async fn tokens(&self) -> Result<Vec<ApiToken>>;
    /// Revokes a token at `at`; `false` if unknown or already revoked.
    async fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool>;
    /// Records a use; returns `true` the first time the token is used (audited).
    async fn token_used(&self, id: &str, at: DateTime<Utc>) -> Result<bool>;

    // --- audit ---
    /// Appends an event; returns its id.
    async fn append_audit(&self, event: NewAuditEvent) -> Result<u64>;
    async fn audit(&self, query: &AuditQuery) -> Result<AuditPage>;
}
