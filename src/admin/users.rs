//! User management (global admins): `GET/POST /api/v1/users`, `PATCH /api/v1/users/{name}`
//! (roles, disable/enable, unlock, reset MFA), `POST /api/v1/users/{name}/password` (an
//! admin's reset). Role changes and MFA resets by a signed-in admin need their password again
//! (ASVS V3.7.1).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::session::{check_password_policy, confirm_password, hash_password, rotated};
use super::AdminState;
use crate::auth::audit::Action;
use crate::auth::guard::{store_error, RequestInfo};
use crate::auth::store::{NewUser, User, UserUpdate};
use crate::auth::throttle::{decide, ThrottlePolicy, Verdict};
use crate::auth::{Auth, Grant, Grants, Principal};
use crate::http::error::JsonBody;
use crate::http::NoQuery;
use crate::http::{ApiError, ApiJson};

type ApiResult = Result<Response, ApiError>;

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Whether a user name is acceptable: 1 to 64 of `A-Z a-z 0-9 . _ @ -`.
pub fn valid_username(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
}

pub(crate) fn user_json(u: &User) -> Value {
    let lock = decide(
        &u.failures,
        chrono::Utc::now(),
        &ThrottlePolicy::PER_ACCOUNT,
    );
    json!({
        "username": u.username,
        "roles": u.grants,
        "disabled": u.disabled,
        "sso": u.oidc.is_some(),
        "mfa": u.totp.as_ref().is_some_and(|t| t.confirmed),
        "locked": !lock.is_allowed(),
        "locked_for_secs": match lock {
            Verdict::Refuse { retry_after } => Some(retry_after.as_secs_f64().ceil() as u64),
            Verdict::Allow => None,
        },
        "failed_logins": u.failures.consecutive,
        "failed_logins_this_hour": u.failures.in_window,
        "created_at": timestamp(u.created_at),
        "updated_at": timestamp(u.updated_at),
    })
}

fn parse_roles(roles: &[String]) -> Result<Grants, ApiError> {
    let mut out = Vec::new();
    for r in roles {
        let g: Grant = r.parse().map_err(|e: crate::auth::role::GrantError| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_role",
                e.to_string(),
            )
        })?;
        out.push(g);
    }
    Ok(Grants::new(out))
}

pub(crate) async fn find(auth: &Auth, name: &str) -> Result<User, ApiError> {
    auth.store
        .user_by_name(name)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("no user named {name:?}")))
}

/// `GET /api/v1/users`
pub async fn list(State(state): State<Arc<AdminState>>, _: NoQuery) -> ApiResult {
    let users = state.auth.store.users().await.map_err(store_error)?;
    let users: Vec<Value> = users.iter().map(user_json).collect();
    Ok(Json(json!({ "users": users })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

impl JsonBody for CreateUser {
    const SHAPE: &'static str = "the body must be a JSON object with \"username\" and \"password\" (strings) and \"roles\" (a list like [\"editor:demo\", \"viewer\"])";
}

/// `POST /api/v1/users`
pub async fn create(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    info: RequestInfo,
    ApiJson(body): ApiJson<CreateUser>,
) -> ApiResult {
    let user = create_user(&state, &principal, &info, body).await?;
    Ok((StatusCode::CREATED, Json(user_json(&user))).into_response())
}

/// Creates a user (name, policy-checked password, roles) and audits it: what
/// `POST /api/v1/users` and the web UI's `/users` form do.
pub(crate) async fn create_user(
    state: &AdminState,
    principal: &Principal,
    info: &RequestInfo,
    body: CreateUser,
) -> Result<User, ApiError> {
    let auth = &state.auth;
    if !valid_username(&body.username) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_username",
            "a user name is 1 to 64 of the characters A-Z a-z 0-9 . _ @ -",
        ));
    }
    let grants = parse_roles(&body.roles)?;
    check_password_policy(&body.password, &body.username)?;
    let hash = hash_password(auth, &body.password).await?;
    let user = auth
        .store
        .create_user(NewUser {
            username: body.username,
            grants,
            password_hash: Some(hash),
            oidc: None,
        })
        .await
        .map_err(store_error)?;
    auth.audit
        .record(
            Action::UserCreated,
            &principal.actor(),
            Some(&user.username),
            info,
            json!({ "roles": user.grants }),
        )
        .await;
    Ok(user)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(Default)]
pub struct PatchUser {
    pub roles: Option<Vec<String>>,
    pub disabled: Option<bool>,
    #[serde(default)]
    pub unlock: bool,
    #[serde(default)]
    pub reset_mfa: bool,
    /// The acting admin's own password (needed for `roles` and `reset_mfa`).
    pub password: Option<String>,
}

impl JsonBody for PatchUser {
    const SHAPE: &'static str = "the body must be a JSON object with any of \"roles\" (a list like [\"editor:demo\"]), \"disabled\" (true or false), \"unlock\" (true), \"reset_mfa\" (true), and \"password\" (your own password, needed for roles and reset_mfa)";
}

/// `PATCH /api/v1/users/{name}`
pub async fn patch(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    principal: Principal,
    info: RequestInfo,
    ApiJson(body): ApiJson<PatchUser>,
) -> ApiResult {
    let updated = update_user(&state, &name, &principal, &info, body).await?;
    let body = user_json(&updated.user);
    if updated.own_sessions_ended {
        // The change ended this admin's own sessions too: a fresh one (a privilege change
        // rotates the session id).
        return rotated(
            &state.auth,
            &updated.user,
            &info,
            json!({ "updated": body }),
        )
        .await;
    }
    Ok(Json(body).into_response())
}

/// What [`update_user`] did.
pub(crate) struct Updated {
    pub user: User,
    /// The change was to the acting admin's own account and ended its sessions: the caller
    /// starts a fresh one ([`rotated`]).
    pub own_sessions_ended: bool,
}

/// Applies a [`PatchUser`] (roles, disable/enable, unlock, reset MFA; the acting admin's
/// password for roles and MFA; never disabling oneself) and audits each change: what
/// `PATCH /api/v1/users/{name}` and the web UI's `/users/{name}` forms do.
pub(crate) async fn update_user(
    state: &AdminState,
    name: &str,
    principal: &Principal,
    info: &RequestInfo,
    body: PatchUser,
) -> Result<Updated, ApiError> {
    let auth = &state.auth;
    let mut user = find(auth, name).await?;
    let actor = principal.actor();
    let is_self =
        principal.user_id() == Some(user.id.as_str()) && principal.session_user().is_some();
    let grants = body.roles.as_deref().map(parse_roles).transpose()?;
    if grants.is_some() || body.reset_mfa {
        confirm_password(auth, principal, body.password, info).await?;
    }
    if body.disabled == Some(true) && is_self {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cannot_disable_self",
            "you cannot disable your own account",
        ));
    }
    let mut sessions_ended = false;
    if let Some(grants) = grants {
        if grants != user.grants {
            let before = user.grants.clone();
            user = auth
                .store
                .update_user(&user.id, UserUpdate::Grants(grants))
                .await
                .map_err(store_error)?;
            sessions_ended = true;
            auth.audit
                .record(
                    Action::RolesChanged,
                    &actor,
                    Some(&user.username),
                    info,
                    json!({ "before": before, "after": user.grants }),
                )
                .await;
        }
    }
    if let Some(disabled) = body.disabled {
        if disabled != user.disabled {
            user = auth
                .store
                .update_user(&user.id, UserUpdate::Disabled(disabled))
                .await
                .map_err(store_error)?;
            sessions_ended |= disabled;
            let action = if disabled {
                Action::UserDisabled
            } else {
                Action::UserEnabled
            };
            auth.audit
                .record(action, &actor, Some(&user.username), info, json!({}))
                .await;
        }
    }
    if body.unlock {
        auth.store
            .clear_login_failures(&user.id)
            .await
            .map_err(store_error)?;
        auth.audit
            .record(
                Action::UserUnlocked,
                &actor,
                Some(&user.username),
                info,
                json!({}),
            )
            .await;
        user = find(auth, name).await?;
    }
    if body.reset_mfa {
        user = auth
            .store
            .update_user(&user.id, UserUpdate::Totp(None))
            .await
            .map_err(store_error)?;
        sessions_ended = true;
        auth.audit
            .record(
                Action::MfaReset,
                &actor,
                Some(&user.username),
                info,
                json!({}),
            )
            .await;
    }
    Ok(Updated {
        user,
        own_sessions_ended: is_self && sessions_ended,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    password: String,
}

impl JsonBody for ResetPassword {
    const SHAPE: &'static str =
        "the body must be a JSON object with \"password\" (the user's new password)";
}

/// `POST /api/v1/users/{name}/password`: an admin sets a user's password (ending the user's
/// sessions and clearing the lock).
pub async fn reset_password(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    principal: Principal,
    info: RequestInfo,
    ApiJson(body): ApiJson<ResetPassword>,
) -> ApiResult {
    let updated = set_password(&state, &name, &principal, &info, &body.password).await?;
    if updated.own_sessions_ended {
        return rotated(&state.auth, &updated.user, &info, json!({})).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An admin sets `name`'s password (policy-checked; not for an SSO user), ending the user's
/// sessions and clearing the lock, audited: what `POST /api/v1/users/{name}/password` and
/// the web UI's `/users/{name}` form do.
pub(crate) async fn set_password(
    state: &AdminState,
    name: &str,
    principal: &Principal,
    info: &RequestInfo,
    password: &str,
) -> Result<Updated, ApiError> {
    let auth = &state.auth;
    let user = find(auth, name).await?;
    if user.oidc.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "sso_user",
            "this user signs in with SSO and has no password",
        ));
    }
    check_password_policy(password, &user.username)?;
    let hash = hash_password(auth, password).await?;
    let user = auth
        .store
        .update_user(&user.id, UserUpdate::Password(hash))
        .await
        .map_err(store_error)?;
    auth.audit
        .record(
            Action::PasswordReset,
            &principal.actor(),
            Some(&user.username),
            info,
            json!({}),
        )
        .await;
    let own_sessions_ended =
        principal.user_id() == Some(user.id.as_str()) && principal.session_user().is_some();
    Ok(Updated {
        user,
        own_sessions_ended,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        for (name, ok) in [
            ("alice", true),
            ("a.b_c-d@example.com", true),
            ("", false),
            ("a b", false),
            ("ä", false),
            (&"x".repeat(64), true),
            (&"x".repeat(65), false),
        ] {
            assert_eq!(valid_username(name), ok, "{name}");
        }
    }
}
