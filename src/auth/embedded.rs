//! The embedded auth store: users, sessions, tokens and the audit log in memory, persisted as an
//! append-only journal `<data-dir>/auth.log` with the crash-safety of the embedded ledger
//! (`crate::journal`: one checksummed record a line, fsynced before a write returns, a torn last
//! record cut off at open, damage before the end refuses the open, created 0600).
//!
//! Records are operations (`user_created`, `user_updated`, `session_created`,
//! `session_touched`, …; see `auth::memory::Record`), replayed at open through the same pure
//! `validate`/`apply` functions a write uses.
//!
//! - **Touches are cheap.** `touch_session` and `token_used` write (and fsync) only when the new
//!   time is at least a minute after the stored one (`memory::TOUCH_INTERVAL`); in between the
//!   call changes nothing. A session's `last_seen_at` is therefore up to a minute old, so it may
//!   idle out up to a minute early — never late.
//! - **Bounded.** Deleted sessions, used TOTP steps and superseded updates leave dead records;
//!   when the journal holds more than twice the live state (and at least
//!   [`COMPACT_MIN_RECORDS`]), it is rewritten as the current state (tmp file, fsync, rename), at
//!   open and after a write. `purge_sessions` (run periodically by the admin) drops ended
//!   sessions. The audit log is kept whole.
//! - **One process.** The store takes `<data-dir>/auth.lock` (the ledger has its own `lock`, so
//!   one process holds both); a second process — `rtconfig user …` while the admin runs — gets
//!   [`AuthStoreError::DataDirInUse`]: stop the admin, or use the API.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use super::memory::{worth_persisting, Record, State};
use super::store::{
    ApiToken, AuditEvent, AuditPage, AuditQuery, AuthStore, AuthStoreError, LoginFailures,
    NewAuditEvent, NewUser, OidcLink, Result, Session, User, UserUpdate,
};
use crate::journal::{self, Journal, JournalError, LockError};
use crate::telemetry::Chain;

/// The journal's file name in the data dir.
pub const LOG_FILE: &str = "auth.log";
/// The lock file that keeps a second process out.
pub const LOCK_FILE: &str = "auth.lock";
/// A journal shorter than this is never compacted.
pub const COMPACT_MIN_RECORDS: usize = 1000;

impl From<JournalError> for AuthStoreError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Io { what, path, source } => AuthStoreError::Io { what, path, source },
            JournalError::Corrupt(why) => AuthStoreError::Corrupt(why),
            poisoned @ JournalError::Poisoned(_) => AuthStoreError::Unavailable(Box::new(poisoned)),
        }
    }
}

/// The writer's side: the journal, behind one mutex that serializes writers. The state is
/// behind its own lock, taken by a writer only for the in-memory `validate` and `apply` — never
/// while it waits for an fsync — so readers (every authenticated request looks up its session
/// or token) never wait for the disk, however busy sign-ins keep the journal.
struct Inner {
    journal: Journal,
    state: Arc<RwLock<State>>,
    /// Records in the journal (live and dead).
    records: usize,
}

impl Inner {
    /// The state as it is (only writers change it, and they are serialized by the mutex this
    /// `Inner` is behind, so it does not change under a writer between two looks).
    fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read()
    }

    /// Validates, appends (durably) and applies one record; returns what `apply` returned.
    /// Readers see the record only once it is durable.
    fn write(&mut self, record: Record) -> Result<u64> {
        self.state.read().validate(&record)?;
        self.journal.append(&record)?;
        self.records += 1;
        let n = self.state.write().apply(record);
        self.compact_if_due();
        Ok(n)
    }

    fn compact_if_due(&mut self) {
        let live = self.state.read().live_records();
        if self.records < COMPACT_MIN_RECORDS || self.records <= 2 * live {
            return;
        }
        let snapshot = self.state.read().snapshot();
        match self.journal.replace(&snapshot) {
            Ok(()) => {
                tracing::info!(
                    path = %self.journal.path().display(),
                    records_before = self.records,
                    records_after = snapshot.len(),
                    "auth log compacted"
                );
                self.records = snapshot.len();
            }
            // The old journal is intact and still in use; the next write tries again.
            Err(e) => tracing::warn!(error = %Chain(&e), "cannot compact the auth log"),
        }
    }
}

/// The file-backed auth store. Cheap to share (`Arc`); file I/O runs on the blocking pool.
pub struct EmbeddedAuthStore {
    dir: PathBuf,
    inner: Arc<Mutex<Inner>>,
    /// The same state `inner` writes, for readers.
    state: Arc<RwLock<State>>,
    _lock: File,
}

impl std::fmt::Debug for EmbeddedAuthStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedAuthStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl EmbeddedAuthStore {
    /// Opens (or creates) the store in `data_dir`. Fails if another process holds it
    /// ([`AuthStoreError::DataDirInUse`]) or if its journal is damaged beyond a torn tail.
    pub fn open(data_dir: &Path) -> Result<EmbeddedAuthStore> {
        let lock = journal::lock_dir(data_dir, LOCK_FILE).map_err(|e| match e {
            LockError::InUse { pid } => AuthStoreError::DataDirInUse {
                dir: data_dir.to_owned(),
                pid,
            },
            LockError::Io(e) => e.into(),
        })?;
        let (journal, records) = Journal::open::<Record>(data_dir, LOG_FILE)?;
        let mut state = State::default();
        let count = records.len();
        for (i, record) in records.into_iter().enumerate() {
            state.validate(&record).map_err(|e| {
                AuthStoreError::Corrupt(format!("record {} of {LOG_FILE}: {e}", i + 1))
            })?;
            state.apply(record);
        }
        let state = Arc::new(RwLock::new(state));
        let mut inner = Inner {
            journal,
            state: state.clone(),
            records: count,
        };
        inner.compact_if_due();
        Ok(EmbeddedAuthStore {
            dir: data_dir.to_owned(),
            inner: Arc::new(Mutex::new(inner)),
            state,
            _lock: lock,
        })
    }

    /// Runs `f` on the locked state on the blocking pool (file I/O and fsync block).
    async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&mut inner.lock()))
            .await
            .map_err(|e| AuthStoreError::Unavailable(Box::new(e)))?
    }

    /// Reads the in-memory state without touching the file (nor waiting for a writer's fsync).
    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T> {
        Ok(f(&self.state.read()))
    }

    /// The data dir this store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl AuthStore for EmbeddedAuthStore {
    async fn create_user(&self, user: NewUser) -> Result<User> {
        let now = super::memory::now();
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
        self.with(move |inner| {
            inner.write(Record::UserCreated { user: user.clone() })?;
            Ok(user)
        })
        .await
    }

    async fn user(&self, id: &str) -> Result<Option<User>> {
        self.read(|s| s.user(id).cloned())
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        self.read(|s| s.user_by_name(username).cloned())
    }

    async fn user_by_oidc(&self, link: &OidcLink) -> Result<Option<User>> {
        self.read(|s| s.user_by_oidc(link).cloned())
    }

    async fn users(&self) -> Result<Vec<User>> {
        self.read(State::users)
    }

    async fn update_user(&self, id: &str, update: UserUpdate) -> Result<User> {
        let id = id.to_owned();
        self.with(move |inner| {
            inner.write(Record::UserUpdated {
                id: id.clone(),
                change: update.into(),
                at: super::memory::now(),
            })?;
            inner
                .state()
                .user(&id)
                .cloned()
                .ok_or(AuthStoreError::NoSuchUser(id))
        })
        .await
    }

    async fn has_admin(&self) -> Result<bool> {
        self.read(State::has_admin)
    }

    async fn use_totp_step(&self, user_id: &str, step: u64) -> Result<bool> {
        let user_id = user_id.to_owned();
        self.with(move |inner| {
            let fresh = {
                let state = inner.state();
                let user = state
                    .user(&user_id)
                    .ok_or_else(|| AuthStoreError::NoSuchUser(user_id.clone()))?;
                user.totp
                    .as_ref()
                    .is_some_and(|t| t.last_step.is_none_or(|last| step > last))
            };
            if !fresh {
                return Ok(false);
            }
            inner.write(Record::TotpStepUsed { user_id, step })?;
            Ok(true)
        })
        .await
    }

    async fn use_recovery_code(&self, user_id: &str, digest: &str) -> Result<bool> {
        let (user_id, digest) = (user_id.to_owned(), digest.to_owned());
        self.with(move |inner| {
            let known = {
                let state = inner.state();
                let user = state
                    .user(&user_id)
                    .ok_or_else(|| AuthStoreError::NoSuchUser(user_id.clone()))?;
                user.totp
                    .as_ref()
                    .is_some_and(|t| t.recovery_codes.contains(&digest))
            };
            if !known {
                return Ok(false);
            }
            inner.write(Record::RecoveryCodeUsed { user_id, digest })?;
            Ok(true)
        })
        .await
    }

    async fn record_login_failure(
        &self,
        user_id: &str,
        at: DateTime<Utc>,
    ) -> Result<LoginFailures> {
        let user_id = user_id.to_owned();
        self.with(move |inner| {
            inner.write(Record::LoginFailed {
                user_id: user_id.clone(),
                at,
            })?;
            Ok(inner
                .state()
                .user(&user_id)
                .map(|u| u.failures.clone())
                .unwrap_or_default())
        })
        .await
    }

    async fn clear_login_failures(&self, user_id: &str) -> Result<()> {
        let user_id = user_id.to_owned();
        let clear = self.read(|s| {
            s.user(&user_id)
                .map(|u| u.failures != LoginFailures::default())
        })?;
        match clear {
            None => Err(AuthStoreError::NoSuchUser(user_id)),
            // Nothing to clear: no write on every successful sign-in.
            Some(false) => Ok(()),
            Some(true) => {
                self.with(move |inner| {
                    inner.write(Record::LoginFailuresCleared { user_id })?;
                    Ok(())
                })
                .await
            }
        }
    }

    async fn create_session(&self, session: Session) -> Result<()> {
        self.with(move |inner| {
            inner.write(Record::SessionCreated { session })?;
            Ok(())
        })
        .await
    }

    async fn session(&self, id_digest: &str) -> Result<Option<Session>> {
        self.read(|s| s.session(id_digest).cloned())
    }

    async fn touch_session(&self, id_digest: &str, at: DateTime<Utc>) -> Result<()> {
        let due = self.read(|s| {
            s.session(id_digest)
                .is_some_and(|s| worth_persisting(Some(s.last_seen_at), at))
        })?;
        if !due {
            return Ok(());
        }
        let id_digest = id_digest.to_owned();
        self.with(move |inner| {
            // Checked again under the lock: a concurrent touch may have written it.
            let due = inner
                .state()
                .session(&id_digest)
                .is_some_and(|s| worth_persisting(Some(s.last_seen_at), at));
            if due {
                inner.write(Record::SessionTouched { id_digest, at })?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_session(&self, id_digest: &str) -> Result<bool> {
        if self.read(|s| s.session(id_digest).is_none())? {
            return Ok(false);
        }
        let id_digest = id_digest.to_owned();
        self.with(move |inner| {
            if inner.state().session(&id_digest).is_none() {
                return Ok(false);
            }
            Ok(inner.write(Record::SessionDeleted { id_digest })? > 0)
        })
        .await
    }

    async fn delete_sessions_of(&self, user_id: &str, keep: Option<&str>) -> Result<u64> {
        let (user_id, keep) = (user_id.to_owned(), keep.map(str::to_owned));
        self.with(move |inner| {
            let ending = inner
                .state()
                .sessions_of(&user_id)
                .iter()
                .filter(|s| keep.as_deref() != Some(s.id_digest.as_str()))
                .count();
            if ending == 0 {
                // Still an error for an unknown user, but no record for nothing.
                inner
                    .state()
                    .user(&user_id)
                    .ok_or_else(|| AuthStoreError::NoSuchUser(user_id.clone()))?;
                return Ok(0);
            }
            inner.write(Record::SessionsOfDeleted { user_id, keep })
        })
        .await
    }

    async fn sessions_of(&self, user_id: &str) -> Result<Vec<Session>> {
        self.read(|s| s.sessions_of(user_id))
    }

    async fn purge_sessions(&self, now: DateTime<Utc>, idle_before: DateTime<Utc>) -> Result<u64> {
        self.with(move |inner| {
            let due = inner.state().sessions_over(now, idle_before);
            if due == 0 {
                return Ok(0);
            }
            inner.write(Record::SessionsPurged { now, idle_before })
        })
        .await
    }

    async fn create_token(&self, token: ApiToken) -> Result<()> {
        self.with(move |inner| {
            inner.write(Record::TokenCreated { token })?;
            Ok(())
        })
        .await
    }

    async fn token_by_digest(&self, digest: &str) -> Result<Option<ApiToken>> {
        self.read(|s| s.token_by_digest(digest).cloned())
    }

    async fn token(&self, id: &str) -> Result<Option<ApiToken>> {
        self.read(|s| s.token(id).cloned())
    }

    async fn tokens(&self) -> Result<Vec<ApiToken>> {
        self.read(State::tokens)
    }

    async fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let id = id.to_owned();
        self.with(move |inner| {
            let live = inner
                .state()
                .token(&id)
                .is_some_and(|t| t.revoked_at.is_none());
            if !live {
                return Ok(false);
            }
            inner.write(Record::TokenRevoked { id, at })?;
            Ok(true)
        })
        .await
    }

    async fn token_used(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let due = self.read(|s| {
            s.token(id)
                .is_some_and(|t| worth_persisting(t.last_used_at, at))
        })?;
        if !due {
            return Ok(false);
        }
        let id = id.to_owned();
        self.with(move |inner| {
            let (first, due) = {
                let state = inner.state();
                let Some(token) = state.token(&id) else {
                    return Ok(false);
                };
                (
                    token.last_used_at.is_none(),
                    worth_persisting(token.last_used_at, at),
                )
            };
            if due {
                inner.write(Record::TokenUsed { id, at })?;
                return Ok(first);
            }
            Ok(false)
        })
        .await
    }

    async fn append_audit(&self, event: NewAuditEvent) -> Result<u64> {
        self.with(move |inner| {
            let id = inner.state().next_audit_id();
            inner.write(Record::Audit {
                event: AuditEvent { id, event },
            })?;
            Ok(id)
        })
        .await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<AuditPage> {
        self.read(|s| s.audit(query))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::auth::conformance;

    #[tokio::test]
    async fn the_embedded_store_passes_the_conformance_suite() {
        let dirs = Arc::new(Mutex::new(Vec::new()));
        conformance::run(|| {
            let dirs = dirs.clone();
            async move {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = EmbeddedAuthStore::open(dir.path()).expect("open");
                dirs.lock().push(dir);
                Arc::new(store) as Arc<dyn AuthStore>
            }
        })
        .await;
    }

    #[tokio::test]
    async fn a_reopen_keeps_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_owned();
        conformance::reopen_keeps_everything(|| async {
            Arc::new(EmbeddedAuthStore::open(&path).expect("open")) as Arc<dyn AuthStore>
        })
        .await;
    }

    #[tokio::test]
    async fn a_torn_last_record_is_cut_off_and_damage_before_the_end_refuses_to_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = EmbeddedAuthStore::open(dir.path()).expect("open");
            store
                .create_user(conformance::new_user("alice", &["admin"]))
                .await
                .expect("alice");
            store
                .create_user(conformance::new_user("bob", &["viewer"]))
                .await
                .expect("bob");
        }
        let path = dir.path().join(LOG_FILE);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open log");
        f.write_all(b"deadbeef {\"record\":\"user_crea")
            .expect("torn tail");
        drop(f);
        {
            let store = EmbeddedAuthStore::open(dir.path()).expect("reopen after a torn write");
            assert_eq!(store.users().await.expect("users").len(), 2);
        }
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, text.replacen("alice", "alicf", 1)).expect("damage");
        match EmbeddedAuthStore::open(dir.path()) {
            Err(AuthStoreError::Corrupt(why)) => assert!(why.contains("checksum"), "{why}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn the_journal_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        drop(EmbeddedAuthStore::open(dir.path()).expect("open"));
        let mode = std::fs::metadata(dir.path().join(LOG_FILE))
            .expect("log")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn a_second_process_is_told_to_stop_the_admin_or_use_the_api() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _held = EmbeddedAuthStore::open(dir.path()).expect("open");
        // The ledger's lock in the same dir is independent of the auth store's.
        let _ledger = crate::ledger::embedded::EmbeddedLedger::open(dir.path(), "default")
            .expect("the ledger opens beside the auth store");
        let e = EmbeddedAuthStore::open(dir.path()).expect_err("held");
        assert!(
            matches!(&e, AuthStoreError::DataDirInUse { pid: Some(p), .. } if *p == std::process::id()),
            "{e:?}"
        );
        let message = e.to_string();
        assert!(
            message.contains("stop the admin, or use the API"),
            "{message}"
        );
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_busy_session_writes_once_a_minute_and_the_journal_is_compacted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedAuthStore::open(dir.path()).expect("open");
        let user = store
            .create_user(conformance::new_user("alice", &["admin"]))
            .await
            .expect("user");
        let now = crate::auth::memory::now();
        let session = conformance::session(&user.id, "keep", now);
        store
            .create_session(session.clone())
            .await
            .expect("session");
        let records = || store.inner.lock().records;
        let before = records();
        for s in 1..=59 {
            store
                .touch_session("keep", now + chrono::Duration::seconds(s))
                .await
                .expect("touch");
        }
        assert_eq!(records(), before, "touches within a minute write nothing");
        store
            .touch_session("keep", now + chrono::Duration::seconds(61))
            .await
            .expect("touch");
        assert_eq!(records(), before + 1);

        // Many short sessions come and go: the journal is rewritten as the live state.
        for i in 0..COMPACT_MIN_RECORDS {
            let d = format!("s{i}");
            store
                .create_session(conformance::session(&user.id, &d, now))
                .await
                .expect("session");
            assert!(store.delete_session(&d).await.expect("delete"));
        }
        assert!(
            records() < COMPACT_MIN_RECORDS,
            "compacted: {} records",
            records()
        );
        drop(store);
        let store = EmbeddedAuthStore::open(dir.path()).expect("reopen");
        assert_eq!(store.users().await.expect("users").len(), 1);
        let kept = store.session("keep").await.expect("read").expect("kept");
        assert_eq!(kept.last_seen_at, now + chrono::Duration::seconds(61));
        assert!(store.session("s0").await.expect("read").is_none());
    }
}
