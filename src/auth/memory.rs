//! The embedded auth store's state in memory and the records that change it — pure functions,
//! no I/O. A write builds a [`Record`], [`State::validate`]s it, appends it to the journal, then
//! [`State::apply`]s it; opening the store replays the journal through the same two functions,
//! so the state after a restart is exactly the state before it.
//!
//! The invariants of [`AuthStore`](super::store::AuthStore) live here, in `apply`: a password,
//! grant, disable or MFA-reset change deletes the user's sessions in the same record.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::role::{Grants, Role};
use super::store::{
    ApiToken, AuditEvent, AuditPage, AuditQuery, AuthStoreError, Digest, LoginFailures, OidcLink,
    Result, Session, TotpState, User, UserUpdate,
};

/// `touch_session` and `token_used` persist a new time only when it is at least this much
/// newer than the stored one (so a busy session costs one write a minute, not one a request).
pub const TOUCH_INTERVAL: Duration = Duration::seconds(60);

/// The current time to microseconds (what PostgreSQL keeps), so both stores hand back the
/// times they stored.
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// The throttle's rule for one more failed sign-in (`auth::throttle`), applied by both stores.
pub use super::throttle::record_failure;

/// A [`UserUpdate`] as the journal stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", content = "value", rename_all = "snake_case")]
pub enum UserChange {
    Password(String),
    Grants(Grants),
    Disabled(bool),
    Totp(Option<TotpState>),
}

impl From<UserUpdate> for UserChange {
    fn from(u: UserUpdate) -> UserChange {
        match u {
            UserUpdate::Password(h) => UserChange::Password(h),
            UserUpdate::Grants(g) => UserChange::Grants(g),
            UserUpdate::Disabled(d) => UserChange::Disabled(d),
            UserUpdate::Totp(t) => UserChange::Totp(t),
        }
    }
}

/// One operation on the store, as the journal (`auth.log`) records it.
// Records are transient (encoded or decoded one at a time), so variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// A new user (also how compaction writes a user's whole current state).
    UserCreated {
        user: User,
    },
    UserUpdated {
        id: String,
        change: UserChange,
        at: DateTime<Utc>,
    },
    TotpStepUsed {
        user_id: String,
        step: u64,
    },
    RecoveryCodeUsed {
        user_id: String,
        digest: Digest,
    },
    LoginFailed {
        user_id: String,
        at: DateTime<Utc>,
    },
    LoginFailuresCleared {
        user_id: String,
    },
    SessionCreated {
        session: Session,
    },
    SessionTouched {
        id_digest: Digest,
        at: DateTime<Utc>,
    },
    SessionDeleted {
        id_digest: Digest,
    },
    SessionsOfDeleted {
        user_id: String,
        keep: Option<Digest>,
    },
    SessionsPurged {
        now: DateTime<Utc>,
        idle_before: DateTime<Utc>,
    },
    TokenCreated {
        token: ApiToken,
    },
    TokenRevoked {
        id: String,
        at: DateTime<Utc>,
    },
    TokenUsed {
        id: String,
        at: DateTime<Utc>,
    },
    Audit {
        event: AuditEvent,
    },
}

/// Everything the store holds, with its lookup indexes.
#[derive(Debug, Default)]
pub struct State {
    users: HashMap<String, User>,
    /// username → id (ordered: `users()` lists by name).
    by_name: BTreeMap<String, String>,
    by_oidc: HashMap<(String, String), String>,
    sessions: HashMap<Digest, Session>,
    tokens: HashMap<String, ApiToken>,
    token_by_digest: HashMap<Digest, String>,
    /// `audit[i].id == i + 1`: ids rise without gaps.
    audit: Vec<AuditEvent>,
}

fn corrupt(what: String) -> AuthStoreError {
    AuthStoreError::Corrupt(what)
}

fn oidc_key(link: &OidcLink) -> (String, String) {
    (link.issuer.clone(), link.subject.clone())
}

impl State {
    // --- reads ---

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id)
    }

    pub fn user_by_name(&self, name: &str) -> Option<&User> {
        self.by_name.get(name).and_then(|id| self.users.get(id))
    }

    pub fn user_by_oidc(&self, link: &OidcLink) -> Option<&User> {
        self.by_oidc
            .get(&oidc_key(link))
            .and_then(|id| self.users.get(id))
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<User> {
        self.by_name
            .values()
            .filter_map(|id| self.users.get(id))
            .cloned()
            .collect()
    }

    pub fn has_admin(&self) -> bool {
        self.users
            .values()
            .any(|u| !u.disabled && u.grants.global() == Some(Role::Admin))
    }

    pub fn session(&self, digest: &str) -> Option<&Session> {
        self.sessions.get(digest)
    }

    /// A user's sessions, oldest first.
    pub fn sessions_of(&self, user_id: &str) -> Vec<Session> {
        let mut out: Vec<Session> = self
            .sessions
            .values()
            .filter(|s| s.user_id == user_id)
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.id_digest).cmp(&(b.created_at, &b.id_digest)));
        out
    }

    /// How many sessions are over at `now` ([`session_over`]).
    pub fn sessions_over(&self, now: DateTime<Utc>, idle_before: DateTime<Utc>) -> usize {
        self.sessions
            .values()
            .filter(|s| session_over(s, now, idle_before))
            .count()
    }

    pub fn token(&self, id: &str) -> Option<&ApiToken> {
        self.tokens.get(id)
    }

    pub fn token_by_digest(&self, digest: &str) -> Option<&ApiToken> {
        self.token_by_digest
            .get(digest)
            .and_then(|id| self.tokens.get(id))
    }

    /// Every token, newest first.
    pub fn tokens(&self) -> Vec<ApiToken> {
        let mut out: Vec<ApiToken> = self.tokens.values().cloned().collect();
        out.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        out
    }

    /// The id the next audit event gets.
    pub fn next_audit_id(&self) -> u64 {
        self.audit.len() as u64 + 1
    }

    pub fn audit(&self, query: &AuditQuery) -> AuditPage {
        let limit = query.limit.clamp(1, 1000);
        let end = query.before.map_or(self.audit.len(), |b| {
            usize::try_from(b.saturating_sub(1))
                .map_or(self.audit.len(), |b| b.min(self.audit.len()))
        });
        let mut events = Vec::new();
        let mut next = None;
        for e in self.audit[..end].iter().rev() {
            if !query.matches(&e.event) {
                continue;
            }
            if events.len() == limit {
                next = events.last().map(|e: &AuditEvent| e.id);
                break;
            }
            events.push(e.clone());
        }
        AuditPage { events, next }
    }

    /// How many records a compacted journal of this state holds ([`State::snapshot`]).
    pub fn live_records(&self) -> usize {
        self.users.len() + self.sessions.len() + self.tokens.len() + self.audit.len()
    }

    /// The current state as records that rebuild it (a compacted journal).
    pub fn snapshot(&self) -> Vec<Record> {
        let mut out = Vec::with_capacity(self.live_records());
        out.extend(
            self.by_name
                .values()
                .filter_map(|id| self.users.get(id))
                .map(|u| Record::UserCreated { user: u.clone() }),
        );
        let mut tokens = self.tokens();
        tokens.reverse();
        out.extend(
            tokens
                .into_iter()
                .map(|t| Record::TokenCreated { token: t }),
        );
        let mut sessions: Vec<&Session> = self.sessions.values().collect();
        sessions.sort_by(|a, b| (a.created_at, &a.id_digest).cmp(&(b.created_at, &b.id_digest)));
        out.extend(
            sessions
                .into_iter()
                .map(|s| Record::SessionCreated { session: s.clone() }),
        );
        out.extend(
            self.audit
                .iter()
                .map(|e| Record::Audit { event: e.clone() }),
        );
        out
    }

    // --- writes ---

    fn need_user(&self, id: &str) -> Result<&User> {
        self.users
            .get(id)
            .ok_or_else(|| AuthStoreError::NoSuchUser(id.to_owned()))
    }

    /// Whether `record` may be applied to this state (a write refused here writes nothing; a
    /// replayed record refused here means the journal is corrupt).
    pub fn validate(&self, record: &Record) -> Result<()> {
        match record {
            Record::UserCreated { user } => {
                if self.by_name.contains_key(&user.username) {
                    return Err(AuthStoreError::UserExists(user.username.clone()));
                }
                if let Some(link) = &user.oidc {
                    if self.by_oidc.contains_key(&oidc_key(link)) {
                        return Err(AuthStoreError::UserExists(user.username.clone()));
                    }
                }
                if self.users.contains_key(&user.id) {
                    return Err(corrupt(format!("user id {} used twice", user.id)));
                }
                Ok(())
            }
            Record::UserUpdated { id, .. }
            | Record::LoginFailed { user_id: id, .. }
            | Record::LoginFailuresCleared { user_id: id }
            | Record::SessionsOfDeleted { user_id: id, .. } => self.need_user(id).map(|_| ()),
            Record::TotpStepUsed { user_id, step } => {
                let user = self.need_user(user_id)?;
                match &user.totp {
                    Some(t) if t.last_step.is_none_or(|last| *step > last) => Ok(()),
                    _ => Err(corrupt(format!(
                        "TOTP step {step} accepted twice or without a factor"
                    ))),
                }
            }
            Record::RecoveryCodeUsed { user_id, digest } => {
                let user = self.need_user(user_id)?;
                match &user.totp {
                    Some(t) if t.recovery_codes.contains(digest) => Ok(()),
                    _ => Err(corrupt("a recovery code used twice".into())),
                }
            }
            Record::SessionCreated { session } => {
                self.need_user(&session.user_id)?;
                if self.sessions.contains_key(&session.id_digest) {
                    return Err(corrupt("a session id used twice".into()));
                }
                Ok(())
            }
            Record::SessionTouched { .. }
            | Record::SessionDeleted { .. }
            | Record::SessionsPurged { .. }
            | Record::TokenRevoked { .. }
            | Record::TokenUsed { .. } => Ok(()),
            Record::TokenCreated { token } => {
                if let Some(creator) = &token.created_by {
                    self.need_user(creator)?;
                }
                if self
                    .tokens
                    .values()
                    .any(|t| t.name == token.name && t.revoked_at.is_none())
                    && token.revoked_at.is_none()
                {
                    return Err(AuthStoreError::TokenExists(token.name.clone()));
                }
                if self.tokens.contains_key(&token.id)
                    || self.token_by_digest.contains_key(&token.digest)
                {
                    return Err(corrupt(format!("token id {} used twice", token.id)));
                }
                Ok(())
            }
            Record::Audit { event } => {
                if event.id != self.next_audit_id() {
                    return Err(corrupt(format!(
                        "audit event {} follows {} (gap or repeat)",
                        event.id,
                        self.audit.len()
                    )));
                }
                Ok(())
            }
        }
    }

    fn end_sessions_of(&mut self, user_id: &str, keep: Option<&str>) -> u64 {
        let before = self.sessions.len();
        self.sessions
            .retain(|d, s| s.user_id != user_id || keep == Some(d.as_str()));
        (before - self.sessions.len()) as u64
    }

    /// Applies a validated record. Returns how many things it ended (sessions deleted), where
    /// that is the answer.
    pub fn apply(&mut self, record: Record) -> u64 {
        match record {
            Record::UserCreated { user } => {
                self.by_name.insert(user.username.clone(), user.id.clone());
                if let Some(link) = &user.oidc {
                    self.by_oidc.insert(oidc_key(link), user.id.clone());
                }
                self.users.insert(user.id.clone(), user);
                0
            }
            Record::UserUpdated { id, change, at } => {
                let Some(user) = self.users.get_mut(&id) else {
                    return 0;
                };
                user.updated_at = at;
                let revoke = match change {
                    UserChange::Password(hash) => {
                        user.password_hash = Some(hash);
                        user.failures = LoginFailures::default();
                        true
                    }
                    UserChange::Grants(grants) => {
                        user.grants = grants;
                        true
                    }
                    UserChange::Disabled(disabled) => {
                        user.disabled = disabled;
                        disabled
                    }
                    UserChange::Totp(totp) => {
                        let reset = totp.is_none();
                        user.totp = totp;
                        reset
                    }
                };
                if revoke {
                    self.end_sessions_of(&id, None)
                } else {
                    0
                }
            }
            Record::TotpStepUsed { user_id, step } => {
                if let Some(t) = self.users.get_mut(&user_id).and_then(|u| u.totp.as_mut()) {
                    t.last_step = Some(step);
                }
                0
            }
            Record::RecoveryCodeUsed { user_id, digest } => {
                if let Some(t) = self.users.get_mut(&user_id).and_then(|u| u.totp.as_mut()) {
                    t.recovery_codes.retain(|c| *c != digest);
                }
                0
            }
            Record::LoginFailed { user_id, at } => {
                if let Some(u) = self.users.get_mut(&user_id) {
                    u.failures = record_failure(&u.failures, at);
                }
                0
            }
            Record::LoginFailuresCleared { user_id } => {
                if let Some(u) = self.users.get_mut(&user_id) {
                    u.failures = LoginFailures::default();
                }
                0
            }
            Record::SessionCreated { session } => {
                self.sessions.insert(session.id_digest.clone(), session);
                0
            }
            Record::SessionTouched { id_digest, at } => {
                if let Some(s) = self.sessions.get_mut(&id_digest) {
                    s.last_seen_at = s.last_seen_at.max(at);
                }
                0
            }
            Record::SessionDeleted { id_digest } => {
                u64::from(self.sessions.remove(&id_digest).is_some())
            }
            Record::SessionsOfDeleted { user_id, keep } => {
                self.end_sessions_of(&user_id, keep.as_deref())
            }
            Record::SessionsPurged { now, idle_before } => {
                let before = self.sessions.len();
                self.sessions
                    .retain(|_, s| !session_over(s, now, idle_before));
                (before - self.sessions.len()) as u64
            }
            Record::TokenCreated { token } => {
                self.token_by_digest
                    .insert(token.digest.clone(), token.id.clone());
                self.tokens.insert(token.id.clone(), token);
                0
            }
            Record::TokenRevoked { id, at } => {
                if let Some(t) = self.tokens.get_mut(&id) {
                    t.revoked_at.get_or_insert(at);
                }
                0
            }
            Record::TokenUsed { id, at } => {
                if let Some(t) = self.tokens.get_mut(&id) {
                    t.last_used_at = Some(t.last_used_at.map_or(at, |l| l.max(at)));
                }
                0
            }
            Record::Audit { event } => {
                self.audit.push(event);
                0
            }
        }
    }
}

/// Whether a session is over at `now`: its absolute end has come, or it was last seen at or
/// before `idle_before` (`now` minus the idle timeout).
pub fn session_over(s: &Session, now: DateTime<Utc>, idle_before: DateTime<Utc>) -> bool {
    s.expires_at <= now || s.last_seen_at <= idle_before
}

/// Whether a touch at `at` must be persisted: it is at least [`TOUCH_INTERVAL`] after the
/// stored time (or there is none yet).
pub fn worth_persisting(stored: Option<DateTime<Utc>>, at: DateTime<Utc>) -> bool {
    stored.is_none_or(|s| at - s >= TOUCH_INTERVAL)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn touches_are_persisted_at_most_once_a_minute() {
        for (stored, at, want) in [
            (None, 0, true),
            (Some(0), 59, false),
            (Some(0), 60, true),
            (Some(100), 50, false),
        ] {
            assert_eq!(
                worth_persisting(stored.map(t), t(at)),
                want,
                "{stored:?} {at}"
            );
        }
    }

    #[test]
    fn sessions_end_at_their_absolute_or_idle_end() {
        let s = Session {
            id_digest: "d".into(),
            user_id: "u".into(),
            csrf_token: "c".into(),
            created_at: t(0),
            last_seen_at: t(100),
            expires_at: t(1000),
            pending: None,
            ip: None,
            user_agent: None,
        };
        for (now, idle_before, over) in [
            (200, 50, false),
            (200, 100, true),
            (1000, 0, true),
            (999, 99, false),
        ] {
            assert_eq!(
                session_over(&s, t(now), t(idle_before)),
                over,
                "{now} {idle_before}"
            );
        }
    }
}
