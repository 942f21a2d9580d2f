//! Sign-in with a password (and a second factor): the decision flow behind
//! `POST /api/v1/session`, independent of HTTP.
//!
//! Every refusal that could tell an attacker something is the same [`LoginError::Invalid`]:
//! an unknown user (a dummy hash is verified, so it takes as long), a wrong password, a
//! disabled or SSO-only account, an account or client IP in back-off or over its hourly cap
//! (`auth::throttle`: refused at once, without verifying). TOTP and recovery-code failures count
//! like wrong passwords. A right password without the owed TOTP code is
//! [`LoginError::MfaRequired`]; an admin who must have a second factor and has none gets a
//! session that may only enrol ([`SignedIn::pending`]).

use chrono::{DateTime, Utc};
use serde_json::json;

use super::audit::Action;
use super::guard::RequestInfo;
use super::password::PasswordError;
use super::role::Role;
use super::service::Auth;
use super::store::{AuthStoreError, Pending, Session, User};
use super::throttle::{decide, ThrottlePolicy, Verdict};
use super::totp;

/// What the client sent.
pub struct Attempt {
    pub username: String,
    pub password: String,
    pub totp: Option<String>,
}

/// A successful sign-in: the new session (and its id, for the cookie only).
pub struct SignedIn {
    pub user: User,
    pub cookie_id: String,
    pub session: Session,
    /// `Some(TotpEnrolment)`: the session may only enrol a second factor.
    pub pending: Option<Pending>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// 401 `invalid_credentials` (the same body for every cause).
    #[error("invalid credentials")]
    Invalid,
    /// 401 `mfa_required`: the password was right; send `totp` too.
    #[error("a second factor is required")]
    MfaRequired,
    #[error(transparent)]
    Store(#[from] AuthStoreError),
    /// The stored hash is damaged, or hashing could not run.
    #[error(transparent)]
    Password(#[from] PasswordError),
}

/// Whether an admin grant obliges this user to a second factor.
pub fn owes_mfa(auth: &Auth, user: &User) -> bool {
    auth.config.require_mfa_for_admins
        && user.grants.strongest() == Some(Role::Admin)
        && user.oidc.is_none()
}

fn has_totp(user: &User) -> bool {
    user.totp.as_ref().is_some_and(|t| t.confirmed)
}

/// Signs in. `previous`: the digest of a session the request already carried, which is
/// ended (a new id is always issued: no session fixation).
pub async fn sign_in(
    auth: &Auth,
    attempt: Attempt,
    info: &RequestInfo,
    previous: Option<String>,
    now: DateTime<Utc>,
) -> Result<SignedIn, LoginError> {
    if let Some(digest) = previous {
        auth.store.delete_session(&digest).await?;
    }
    // User names are at most 64 characters; what is recorded of a name tried is bounded too.
    let name: String = attempt.username.trim().chars().take(64).collect();
    // A client IP in back-off is refused at once, before anything is looked up.
    if let Some(ip) = info.ip {
        if let Verdict::Refuse { retry_after } = auth.ip_throttle.check(ip, now) {
            throttled(auth, &name, info, "client ip", retry_after).await;
            return Err(LoginError::Invalid);
        }
    }
    let user = auth.store.user_by_name(&name).await?;
    let Some(user) = user else {
        auth.hasher.verify_dummy(&attempt.password).await;
        failed(auth, &name, info, now, "unknown user").await;
        return Err(LoginError::Invalid);
    };
    if let Verdict::Refuse { retry_after } =
        decide(&user.failures, now, &ThrottlePolicy::PER_ACCOUNT)
    {
        throttled(auth, &name, info, "account", retry_after).await;
        return Err(LoginError::Invalid);
    }
    let Some(hash) = user.password_hash.clone() else {
        auth.hasher.verify_dummy(&attempt.password).await;
        failed(auth, &name, info, now, "no password (SSO user)").await;
        return Err(LoginError::Invalid);
    };
    if !auth.hasher.verify(&attempt.password, &hash).await? {
        let counts = auth.store.record_login_failure(&user.id, now).await?;
        failed(auth, &name, info, now, "wrong password").await;
        if counts.consecutive == ThrottlePolicy::PER_ACCOUNT.backoff_after
            || counts.in_window == ThrottlePolicy::PER_ACCOUNT.per_hour
        {
            auth.audit
                .record(
                    Action::Lockout,
                    &name,
                    None,
                    info,
                    json!({"consecutive_failures": counts.consecutive}),
                )
                .await;
        }
        return Err(LoginError::Invalid);
    }
    if user.disabled {
        failed(auth, &name, info, now, "disabled").await;
        return Err(LoginError::Invalid);
    }
    let mut pending = None;
    if has_totp(&user) {
        let Some(code) = attempt.totp.filter(|c| !c.trim().is_empty()) else {
            return Err(LoginError::MfaRequired);
        };
        match second_factor(auth, &user, &code, now).await? {
            Some(Factor::Totp) => {}
            Some(Factor::RecoveryCode) => {
                auth.audit
                    .record(Action::RecoveryCodeUsed, &name, None, info, json!({}))
                    .await;
            }
            None => {
                auth.store.record_login_failure(&user.id, now).await?;
                failed(auth, &name, info, now, "wrong second factor").await;
                return Err(LoginError::Invalid);
            }
        }
    } else if owes_mfa(auth, &user) {
        pending = Some(Pending::TotpEnrolment);
    }
    auth.store.clear_login_failures(&user.id).await?;
    if let Some(ip) = info.ip {
        auth.ip_throttle.succeeded(ip);
    }
    let (cookie_id, session) = auth.config.sessions.new_session(
        &user.id,
        pending,
        info.ip.map(|ip| ip.to_string()),
        info.user_agent.clone(),
        now,
    );
    auth.store.create_session(session.clone()).await?;
    auth.audit
        .record(
            Action::LoginOk,
            &user.username,
            None,
            info,
            json!({"mfa_enrolment_owed": pending.is_some()}),
        )
        .await;
    Ok(SignedIn {
        user,
        cookie_id,
        session,
        pending,
    })
}

/// An attempt refused by the throttle without being checked: audited.
async fn throttled(
    auth: &Auth,
    name: &str,
    info: &RequestInfo,
    by: &str,
    retry_after: std::time::Duration,
) {
    auth.audit
        .record(
            Action::LoginThrottled,
            name,
            None,
            info,
            json!({"by": by, "retry_after_secs": retry_after.as_secs_f64().ceil()}),
        )
        .await;
}

/// Which second factor was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    Totp,
    RecoveryCode,
}

/// Checks a TOTP code (its time step accepted once, atomically in the store) or a recovery
/// code (used up). `None`: neither.
pub async fn second_factor(
    auth: &Auth,
    user: &User,
    code: &str,
    now: DateTime<Utc>,
) -> Result<Option<Factor>, AuthStoreError> {
    let Some(state) = user.totp.as_ref().filter(|t| t.confirmed) else {
        return Ok(None);
    };
    let secret = match auth.secret_box.open(&state.secret_encrypted, &user.id) {
        Ok(secret) => secret,
        Err(e) => {
            tracing::error!(user = %user.username, error = %e, "cannot open a stored TOTP secret");
            return Ok(None);
        }
    };
    let unix = u64::try_from(now.timestamp()).unwrap_or(0);
    if let Some(step) = totp::verify(&secret, code, unix, state.last_step) {
        if auth.store.use_totp_step(&user.id, step).await? {
            return Ok(Some(Factor::Totp));
        }
        return Ok(None);
    }
    let digest = totp::recovery_digest(code);
    if state.recovery_codes.contains(&digest)
        && auth.store.use_recovery_code(&user.id, &digest).await?
    {
        return Ok(Some(Factor::RecoveryCode));
    }
    Ok(None)
}

/// A failed attempt: counted for the client IP, audited.
async fn failed(auth: &Auth, name: &str, info: &RequestInfo, now: DateTime<Utc>, reason: &str) {
    if let Some(ip) = info.ip {
        auth.ip_throttle.failed(ip, now);
    }
    auth.audit
        .record(
            Action::LoginFailed,
            name,
            None,
            info,
            json!({ "reason": reason }),
        )
        .await;
}
