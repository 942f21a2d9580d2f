//! The audit trail: every auth decision that matters, appended to the store's audit log and
//! written to the structured log — with actor, IP, user agent and request id, never a
//! password, token, session id or secret.

use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;

use super::guard::RequestInfo;
use super::store::{AuthStore, NewAuditEvent};
use crate::telemetry::Chain;

/// What an audit event records (`action`). Listed in docs/REFERENCE.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    LoginOk,
    LoginFailed,
    /// A sign-in refused by the throttle (back-off or the hourly cap) without checking it.
    LoginThrottled,
    /// An account reached the back-off threshold.
    Lockout,
    Logout,
    /// A user ended their other sessions.
    SessionsRevoked,
    TokenCreated,
    TokenFirstUse,
    TokenRevoked,
    BootstrapTokenUsed,
    UserCreated,
    RolesChanged,
    PasswordChanged,
    PasswordReset,
    UserDisabled,
    UserEnabled,
    UserUnlocked,
    MfaEnrolled,
    MfaReset,
    RecoveryCodeUsed,
    Forbidden,
    CsrfFailed,
}

impl Action {
    pub const ALL: [Action; 22] = [
        Action::LoginOk,
        Action::LoginFailed,
        Action::LoginThrottled,
        Action::Lockout,
        Action::Logout,
        Action::SessionsRevoked,
        Action::TokenCreated,
        Action::TokenFirstUse,
        Action::TokenRevoked,
        Action::BootstrapTokenUsed,
        Action::UserCreated,
        Action::RolesChanged,
        Action::PasswordChanged,
        Action::PasswordReset,
        Action::UserDisabled,
        Action::UserEnabled,
        Action::UserUnlocked,
        Action::MfaEnrolled,
        Action::MfaReset,
        Action::RecoveryCodeUsed,
        Action::Forbidden,
        Action::CsrfFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::LoginOk => "login_ok",
            Action::LoginFailed => "login_failed",
            Action::LoginThrottled => "login_throttled",
            Action::Lockout => "lockout",
            Action::Logout => "logout",
            Action::SessionsRevoked => "sessions_revoked",
            Action::TokenCreated => "token_created",
            Action::TokenFirstUse => "token_first_use",
            Action::TokenRevoked => "token_revoked",
            Action::BootstrapTokenUsed => "bootstrap_token_used",
            Action::UserCreated => "user_created",
            Action::RolesChanged => "roles_changed",
            Action::PasswordChanged => "password_changed",
            Action::PasswordReset => "password_reset",
            Action::UserDisabled => "user_disabled",
            Action::UserEnabled => "user_enabled",
            Action::UserUnlocked => "user_unlocked",
            Action::MfaEnrolled => "mfa_enrolled",
            Action::MfaReset => "mfa_reset",
            Action::RecoveryCodeUsed => "recovery_code_used",
            Action::Forbidden => "forbidden",
            Action::CsrfFailed => "csrf_failed",
        }
    }
}

/// Writes audit events to the store and the log.
#[derive(Clone)]
pub struct Audit {
    store: Arc<dyn AuthStore>,
}

impl Audit {
    pub fn new(store: Arc<dyn AuthStore>) -> Audit {
        Audit { store }
    }

    /// Records one event. A store failure is logged (with the event) and otherwise ignored:
    /// the decision it records has already been taken.
    pub async fn record(
        &self,
        action: Action,
        actor: &str,
        target: Option<&str>,
        info: &RequestInfo,
        details: Value,
    ) {
        let event = NewAuditEvent {
            at: Utc::now(),
            action: action.as_str().to_owned(),
            actor: actor.to_owned(),
            target: target.map(str::to_owned),
            ip: info.ip.map(|ip| ip.to_string()),
            user_agent: info.user_agent.clone(),
            request_id: info.request_id.clone(),
            details,
        };
        let details = event.details.to_string();
        match self.store.append_audit(event).await {
            Ok(id) => tracing::info!(
                target: "rtconfig::audit",
                audit_id = id,
                action = action.as_str(),
                actor,
                target = target.unwrap_or(""),
                ip = info.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                request_id = info.request_id.as_deref().unwrap_or(""),
                details = %details,
                "audit"
            ),
            Err(e) => tracing::error!(
                target: "rtconfig::audit",
                action = action.as_str(),
                actor,
                target = target.unwrap_or(""),
                ip = info.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                request_id = info.request_id.as_deref().unwrap_or(""),
                details = %details,
                error = %Chain(&e),
                "audit event not stored"
            ),
        }
    }
}

/// Records an action taken outside a request (`rtconfig user …`, `rtconfig token …`: actor
/// `cli`; `rtconfig dev`'s first start: actor `dev`) in the store and the log. Unlike
/// [`Audit::record`] a failure is returned: the command reports it.
pub async fn record_local(
    store: &dyn AuthStore,
    actor: &str,
    action: Action,
    target: &str,
    details: Value,
) -> Result<u64, super::store::AuthStoreError> {
    let id = store
        .append_audit(NewAuditEvent {
            at: super::memory::now(),
            action: action.as_str().to_owned(),
            actor: actor.to_owned(),
            target: Some(target.to_owned()),
            ip: None,
            user_agent: None,
            request_id: None,
            details: details.clone(),
        })
        .await?;
    tracing::info!(
        target: "rtconfig::audit",
        audit_id = id,
        action = action.as_str(),
        actor,
        // Not `target`: JSON log lines already carry the log target under that name.
        audit_target = target,
        details = %details,
        "audit"
    );
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_are_unique_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for a in Action::ALL {
            let s = a.as_str();
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s}"
            );
            assert!(seen.insert(s), "{s} twice");
        }
    }
}
