//! Single sign-on routes: `GET /auth/oidc/login` (→ the provider) and `GET
//! /auth/oidc/callback` (← the provider: a session), on `auth::oidc`'s relying party.
//!
//! The sign-in in progress (`auth::oidc::PendingLogin`: the PKCE verifier, `state`, `nonce`)
//! travels in a short-lived cookie sealed with the deployment's key (`auth::secret_box`), so
//! any replica can finish it and the browser can neither read nor forge it; it is cleared at the
//! callback (one use). Users are found by (issuer, subject) only and created at their first
//! sign-in; their grants are re-derived from the provider's claim at every sign-in (a removed
//! group removes the grant, and the store then ends the user's other sessions).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::AdminState;
use crate::auth::audit::Action;
use crate::auth::guard::{store_error, RequestInfo};
use crate::auth::oidc::{OidcIdentity, PendingLogin, PENDING_LOGIN_TTL};
use crate::auth::store::{NewUser, User, UserUpdate};
use crate::auth::{cookie, Auth};
use crate::http::{ApiError, ApiQuery};
use crate::telemetry::Chain;

type ApiResult = Result<Response, ApiError>;

/// The context the pending-login cookie is sealed under.
const SEAL_CONTEXT: &str = "rtconfig oidc pending login";

fn not_configured() -> ApiError {
    ApiError::not_found("single sign-on is not configured (--oidc-issuer)")
}

fn sso_failed(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "sso_failed", message)
}

fn redirect(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// `GET /auth/oidc/login`: to the provider's sign-in page.
pub async fn login(State(state): State<Arc<AdminState>>) -> ApiResult {
    let auth = &state.auth;
    let oidc = auth.oidc.as_ref().ok_or_else(not_configured)?;
    let (url, pending) = oidc.begin();
    let json = serde_json::to_vec(&pending).map_err(|_| sso_failed("cannot start the sign-in"))?;
    let sealed = auth.secret_box.seal(&json, SEAL_CONTEXT);
    let mut resp = redirect(url.as_str());
    resp.headers_mut().insert(
        header::SET_COOKIE,
        cookie::set_oidc(&sealed, PENDING_LOGIN_TTL),
    );
    Ok(resp)
}

#[derive(Deserialize, Default)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    /// RFC 9207's `iss` (checked by the provider library through the ID token's `iss`).
    #[serde(default, rename = "iss")]
    _iss: Option<String>,
    #[serde(default, rename = "session_state")]
    _session_state: Option<String>,
}

/// `GET /auth/oidc/callback?code=…&state=…`: finishes the sign-in; a session and a redirect
/// to `/`.
pub async fn callback(
    State(state): State<Arc<AdminState>>,
    info: RequestInfo,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<CallbackQuery>,
) -> ApiResult {
    let auth = &state.auth;
    let result = finish(auth, &info, &headers, q).await;
    let mut resp = match result {
        Ok(resp) => resp,
        Err(err) => err.into_response(),
    };
    // The pending login is used once, whatever happened.
    resp.headers_mut()
        .append(header::SET_COOKIE, cookie::clear_oidc());
    Ok(resp)
}

async fn finish(
    auth: &Auth,
    info: &RequestInfo,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Result<Response, ApiError> {
    let oidc = auth.oidc.as_ref().ok_or_else(not_configured)?;
    if let Some(error) = q.error {
        let why = q.error_description.unwrap_or_default();
        record_failure(auth, "", info, &format!("the provider answered {error}")).await;
        return Err(sso_failed(format!(
            "the identity provider refused the sign-in: {error} {why}"
        )));
    }
    let (Some(code), Some(returned_state)) = (q.code, q.state) else {
        return Err(sso_failed("the callback needs code and state"));
    };
    let pending: Option<PendingLogin> = cookie::find_named(headers, cookie::OIDC_NAME)
        .and_then(|sealed| auth.secret_box.open(&sealed, SEAL_CONTEXT).ok())
        .and_then(|json| serde_json::from_slice(&json).ok());
    let Some(pending) = pending else {
        record_failure(
            auth,
            "",
            info,
            "no sign-in in progress (no or a bad pending-login cookie)",
        )
        .await;
        return Err(sso_failed(
            "no sign-in in progress in this browser (or it expired): start again at /auth/oidc/login",
        ));
    };
    let identity = match oidc.finish(pending, &code, &returned_state).await {
        Ok(identity) => identity,
        Err(e) => {
            let reason = Chain(&e).to_string();
            record_failure(auth, "", info, &reason).await;
            return Err(sso_failed(format!("single sign-on failed: {reason}")));
        }
    };
    let grants = oidc.grants(&identity);
    if grants.0.is_empty() {
        record_failure(
            auth,
            &identity.username,
            info,
            "no rtconfig role for this account",
        )
        .await;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this account has no rtconfig role: ask an admin to map one of your groups (--oidc-role-map)",
        ));
    }
    let user = user_for(auth, &identity, grants, info).await?;
    if user.disabled {
        record_failure(auth, &user.username, info, "disabled").await;
        return Err(sso_failed("this account is disabled"));
    }
    let (cookie_id, session) = auth.config.sessions.new_session(
        &user.id,
        None,
        info.ip.map(|ip| ip.to_string()),
        info.user_agent.clone(),
        Utc::now(),
    );
    if let Some(previous) = cookie::find(headers) {
        auth.store
            .delete_session(&crate::auth::secrets::digest(&previous))
            .await
            .map_err(store_error)?;
    }
    auth.store
        .create_session(session.clone())
        .await
        .map_err(store_error)?;
    auth.audit
        .record(
            Action::LoginOk,
            &user.username,
            None,
            info,
            json!({"sso": true, "issuer": identity.issuer}),
        )
        .await;
    let mut resp = redirect("/");
    resp.headers_mut().insert(
        header::SET_COOKIE,
        cookie::set(&cookie_id, auth.config.sessions.cookie_max_age(None)),
    );
    Ok(resp)
}

/// The user of an identity: found by (issuer, subject), its grants replaced by the mapped
/// ones when they differ; or created at the first sign-in (never merged with a local user of
/// the same name).
async fn user_for(
    auth: &Auth,
    identity: &OidcIdentity,
    grants: crate::auth::Grants,
    info: &RequestInfo,
) -> Result<User, ApiError> {
    let link = identity.link();
    if let Some(user) = auth.store.user_by_oidc(&link).await.map_err(store_error)? {
        if user.grants == grants {
            return Ok(user);
        }
        let before = user.grants.clone();
        let user = auth
            .store
            .update_user(&user.id, UserUpdate::Grants(grants))
            .await
            .map_err(store_error)?;
        auth.audit
            .record(
                Action::RolesChanged,
                "sso",
                Some(&user.username),
                info,
                json!({"before": before, "after": user.grants}),
            )
            .await;
        return Ok(user);
    }
    let created = auth
        .store
        .create_user(NewUser {
            username: identity.username.clone(),
            grants,
            password_hash: None,
            oidc: Some(link),
        })
        .await;
    let user = match created {
        Ok(user) => user,
        Err(crate::auth::store::AuthStoreError::UserExists(name)) => {
            record_failure(auth, &name, info, "the name is taken by another user").await;
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "user_exists",
                format!(
                    "another user is already named {name:?}; SSO accounts are never merged with \
                     existing ones: ask an admin to rename or remove that user"
                ),
            ));
        }
        Err(e) => return Err(store_error(e)),
    };
    auth.audit
        .record(
            Action::UserCreated,
            "sso",
            Some(&user.username),
            info,
            json!({"roles": user.grants, "issuer": identity.issuer}),
        )
        .await;
    Ok(user)
}

async fn record_failure(auth: &Auth, name: &str, info: &RequestInfo, reason: &str) {
    let actor = if name.is_empty() { "sso" } else { name };
    auth.audit
        .record(
            Action::LoginFailed,
            actor,
            None,
            info,
            json!({"sso": true, "reason": reason}),
        )
        .await;
}
