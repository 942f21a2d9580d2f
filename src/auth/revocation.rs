//! Revocation notices: when a credential stops being good — a session ends, a user's
//! password, grants or second factor change, a user is disabled, a token is revoked — this
//! process says so at once to whatever holds a long-lived response open on it (the admin's SSE
//! streams, `admin::events`), so those close without waiting for their periodic re-check.
//!
//! [`Announcing`] wraps the [`AuthStore`] and announces after every write that revokes, so no
//! handler can forget to: the store already keeps the rule "a password, grant or disable
//! change ends the user's sessions" in the same write. A notice is only a wake-up: the stream
//! then re-authenticates its credential against the store, which decides. Revocations made by
//! other admin replicas (or the CLI) and expiries are found by that periodic re-check.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use super::store::{
    ApiToken, AuditPage, AuditQuery, AuthStore, LoginFailures, NewAuditEvent, NewUser, OidcLink,
    Result, Session, User, UserUpdate,
};

/// How many notices a slow listener may miss before it is told it lagged (and re-checks).
const CAPACITY: usize = 256;

/// What stopped being good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// One session (its id's digest): sign-out, `DELETE /api/v1/sessions/…`.
    Session(String),
    /// Every session of a user (by id), and the rights of the tokens they created: password,
    /// grants or second factor changed, disabled, signed out everywhere.
    User(String),
    /// One API token (by id).
    Token(String),
}

/// The notices of this process: one sender, a receiver per open stream.
#[derive(Debug, Clone)]
pub struct Revocations {
    tx: broadcast::Sender<Revoked>,
}

impl Default for Revocations {
    fn default() -> Self {
        Revocations::new()
    }
}

impl Revocations {
    pub fn new() -> Revocations {
        Revocations {
            tx: broadcast::Sender::new(CAPACITY),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Revoked> {
        self.tx.subscribe()
    }

    pub fn announce(&self, what: Revoked) {
        // No receiver (no stream open) is fine.
        let _ = self.tx.send(what);
    }
}

/// Which notices a user update sends: those that end sessions (see [`UserUpdate`]), and
/// disabling, which also suspends the user's tokens.
pub fn update_revokes(update: &UserUpdate) -> bool {
    match update {
        UserUpdate::Password(_) | UserUpdate::Grants(_) | UserUpdate::Totp(None) => true,
        UserUpdate::Disabled(disabled) => *disabled,
        UserUpdate::Totp(Some(_)) => false,
    }
}

/// The store, announcing every revoking write after it succeeded.
pub struct Announcing {
    inner: Arc<dyn AuthStore>,
    revocations: Revocations,
}

impl Announcing {
    pub fn new(inner: Arc<dyn AuthStore>, revocations: Revocations) -> Announcing {
        Announcing { inner, revocations }
    }
}

#[async_trait]
impl AuthStore for Announcing {
    async fn create_user(&self, user: NewUser) -> Result<User> {
        self.inner.create_user(user).await
    }
    async fn user(&self, id: &str) -> Result<Option<User>> {
        self.inner.user(id).await
    }
    async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        self.inner.user_by_name(username).await
    }
    async fn user_by_oidc(&self, link: &OidcLink) -> Result<Option<User>> {
        self.inner.user_by_oidc(link).await
    }
    async fn users(&self) -> Result<Vec<User>> {
        self.inner.users().await
    }
    async fn update_user(&self, id: &str, update: UserUpdate) -> Result<User> {
        let revokes = update_revokes(&update);
        let user = self.inner.update_user(id, update).await?;
        if revokes {
            self.revocations.announce(Revoked::User(id.to_owned()));
        }
        Ok(user)
    }
    async fn has_admin(&self) -> Result<bool> {
        self.inner.has_admin().await
    }
    async fn use_totp_step(&self, user_id: &str, step: u64) -> Result<bool> {
        self.inner.use_totp_step(user_id, step).await
    }
    async fn use_recovery_code(&self, user_id: &str, digest: &str) -> Result<bool> {
        self.inner.use_recovery_code(user_id, digest).await
    }
    async fn record_login_failure(
        &self,
        user_id: &str,
        at: DateTime<Utc>,
    ) -> Result<LoginFailures> {
        self.inner.record_login_failure(user_id, at).await
    }
    async fn clear_login_failures(&self, user_id: &str) -> Result<()> {
        self.inner.clear_login_failures(user_id).await
    }
    async fn create_session(&self, session: Session) -> Result<()> {
        self.inner.create_session(session).await
    }
    async fn session(&self, id_digest: &str) -> Result<Option<Session>> {
        self.inner.session(id_digest).await
    }
    async fn touch_session(&self, id_digest: &str, at: DateTime<Utc>) -> Result<()> {
        self.inner.touch_session(id_digest, at).await
    }
    async fn delete_session(&self, id_digest: &str) -> Result<bool> {
        let deleted = self.inner.delete_session(id_digest).await?;
        if deleted {
            self.revocations
                .announce(Revoked::Session(id_digest.to_owned()));
        }
        Ok(deleted)
    }
    async fn delete_sessions_of(&self, user_id: &str, keep: Option<&str>) -> Result<u64> {
        let ended = self.inner.delete_sessions_of(user_id, keep).await?;
        if ended > 0 {
            // The kept session re-checks too, and finds itself alive.
            self.revocations.announce(Revoked::User(user_id.to_owned()));
        }
        Ok(ended)
    }
    async fn sessions_of(&self, user_id: &str) -> Result<Vec<Session>> {
        self.inner.sessions_of(user_id).await
    }
    async fn purge_sessions(&self, now: DateTime<Utc>, idle_before: DateTime<Utc>) -> Result<u64> {
        // Ended sessions only: their streams found that out by their own deadline.
        self.inner.purge_sessions(now, idle_before).await
    }
    async fn create_token(&self, token: ApiToken) -> Result<()> {
        self.inner.create_token(token).await
    }
    async fn token_by_digest(&self, digest: &str) -> Result<Option<ApiToken>> {
        self.inner.token_by_digest(digest).await
    }
    async fn token(&self, id: &str) -> Result<Option<ApiToken>> {
        self.inner.token(id).await
    }
    async fn tokens(&self) -> Result<Vec<ApiToken>> {
        self.inner.tokens().await
    }
    async fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let revoked = self.inner.revoke_token(id, at).await?;
        if revoked {
            self.revocations.announce(Revoked::Token(id.to_owned()));
        }
        Ok(revoked)
    }
    async fn token_used(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        self.inner.token_used(id, at).await
    }
    async fn append_audit(&self, event: NewAuditEvent) -> Result<u64> {
        self.inner.append_audit(event).await
    }
    async fn audit(&self, query: &AuditQuery) -> Result<AuditPage> {
        self.inner.audit(query).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::store::TotpState;
    use crate::auth::Grants;

    #[test]
    fn which_user_updates_revoke() {
        let totp = TotpState {
            secret_encrypted: "x".into(),
            confirmed: true,
            last_step: None,
            recovery_codes: Vec::new(),
        };
        let table = [
            (UserUpdate::Password("h".into()), true),
            (UserUpdate::Grants(Grants::default()), true),
            (UserUpdate::Disabled(true), true),
            (UserUpdate::Disabled(false), false),
            (UserUpdate::Totp(None), true),
            (UserUpdate::Totp(Some(totp)), false),
        ];
        for (update, want) in table {
            assert_eq!(update_revokes(&update), want, "{update:?}");
        }
    }

    #[tokio::test]
    async fn revoking_writes_are_announced_after_they_succeed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner: Arc<dyn AuthStore> =
            Arc::new(crate::auth::embedded::EmbeddedAuthStore::open(dir.path()).expect("open"));
        let revocations = Revocations::new();
        let store = Announcing::new(inner, revocations.clone());
        let mut rx = revocations.subscribe();
        let user = store
            .create_user(NewUser {
                username: "alice".into(),
                grants: Grants::default(),
                password_hash: Some("h".into()),
                oidc: None,
            })
            .await
            .expect("user");
        store
            .update_user(&user.id, UserUpdate::Disabled(true))
            .await
            .expect("disable");
        assert_eq!(rx.try_recv().ok(), Some(Revoked::User(user.id.clone())));
        // Nothing to delete, nothing announced.
        assert!(!store.delete_session("nope").await.expect("delete"));
        assert!(!store
            .revoke_token("tok_nope", Utc::now())
            .await
            .expect("revoke"));
        assert!(rx.try_recv().is_err());
    }
}
