//! Sign-in and one's own session: `POST/GET/DELETE /api/v1/session`, `GET/DELETE
//! /api/v1/sessions`, `POST /api/v1/session/password`, and the TOTP enrolment of a signed-in
//! user (`POST /api/v1/session/totp`, `…/totp/confirm`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::AdminState;
use crate::auth::audit::Action;
use crate::auth::guard::{store_error, RequestInfo};
use crate::auth::login::{sign_in, Attempt, LoginError};
use crate::auth::password::{PasswordError, PasswordPolicy};
use crate::auth::secrets::digest;
use crate::auth::store::{Pending, Session, TotpState, User, UserUpdate};
use crate::auth::totp::{self, Enrolment};
use crate::auth::{cookie, Auth, Principal};
use crate::http::error::JsonBody;
use crate::http::NoQuery;
use crate::http::{ApiError, ApiJson};
use crate::telemetry::Chain;

type ApiResult = Result<Response, ApiError>;

/// 401 `invalid_credentials`: the one answer to every failed sign-in (and a wrong password
/// where one is asked again).
pub fn invalid_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "wrong user name or password",
    )
}

fn mfa_required() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "mfa_required",
        "this account has a second factor: send the current TOTP code (or a recovery code) in \"totp\"",
    )
}

fn timestamp(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `{"user","roles","csrf_token"}` with the cookie of a new session.
pub fn session_response(
    auth: &Auth,
    status: StatusCode,
    user: &User,
    cookie_id: &str,
    session: &Session,
    extra: Value,
) -> Response {
    let mut body = json!({
        "user": user.username,
        "roles": user.grants,
        "csrf_token": session.csrf_token,
        "expires_at": timestamp(session.expires_at),
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        cookie::set(
            cookie_id,
            auth.config.sessions.cookie_max_age(session.pending),
        ),
    );
    resp
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: String,
    password: String,
    totp: Option<String>,
}

impl JsonBody for LoginBody {
    const SHAPE: &'static str = "the body must be a JSON object with \"username\" and \"password\" (strings) and optionally \"totp\" (a string: the current code or a recovery code)";
}

/// `POST /api/v1/session`: signs in.
pub async fn login(
    State(state): State<Arc<AdminState>>,
    info: RequestInfo,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult {
    let auth = &state.auth;
    let previous = cookie::find(&headers).map(|id| digest(&id));
    let attempt = Attempt {
        username: body.username,
        password: body.password,
        totp: body.totp,
    };
    match sign_in(auth, attempt, &info, previous, Utc::now()).await {
        Ok(signed_in) => {
            let s = &signed_in;
            if s.pending == Some(Pending::TotpEnrolment) {
                // A session that may only enrol: the cookie, and the way on.
                let err = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "mfa_required",
                    "admins need a second factor: enrol one with POST /api/v1/session/totp, then confirm a code with POST /api/v1/session/totp/confirm",
                )
                .with_details(json!({
                    "enrolment": true,
                    "csrf_token": s.session.csrf_token,
                }));
                let mut resp = err.into_response();
                resp.headers_mut().insert(
                    header::SET_COOKIE,
                    cookie::set(
                        &s.cookie_id,
                        auth.config.sessions.cookie_max_age(s.session.pending),
                    ),
                );
                return Ok(resp);
            }
            Ok(session_response(
                auth,
                StatusCode::OK,
                &s.user,
                &s.cookie_id,
                &s.session,
                json!({}),
            ))
        }
        Err(LoginError::Invalid) => Err(invalid_credentials()),
        Err(LoginError::MfaRequired) => Err(mfa_required()),
        Err(LoginError::Store(e)) => Err(store_error(e)),
        Err(LoginError::Password(e)) => Err(hash_error(e)),
    }
}

/// `GET /api/v1/session`: who am I.
pub async fn whoami(_: NoQuery, principal: Principal) -> ApiResult {
    let mut body = json!({
        "user": principal.actor(),
        "kind": principal.kind(),
        "roles": principal.grants(),
    });
    match &principal {
        Principal::User { session, user } => {
            body["csrf_token"] = json!(session.csrf_token);
            body["expires_at"] = json!(timestamp(session.expires_at));
            body["mfa"] = json!(user.totp.as_ref().is_some_and(|t| t.confirmed));
        }
        Principal::Token { token, .. } => {
            body["token_id"] = json!(token.id);
            body["scope"] = json!(token.grants);
            if let Some(at) = token.expires_at {
                body["expires_at"] = json!(timestamp(at));
            }
        }
        Principal::Bootstrap => {}
    }
    Ok(Json(body).into_response())
}

/// `DELETE /api/v1/session`: signs out.
pub async fn logout(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    info: RequestInfo,
) -> ApiResult {
    if let Principal::User { session, user } = &principal {
        state
            .auth
            .store
            .delete_session(&session.id_digest)
            .await
            .map_err(store_error)?;
        state
            .auth
            .audit
            .record(Action::Logout, &user.username, None, &info, json!({}))
            .await;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, cookie::clear());
    Ok(resp)
}

/// A session as its owner sees it: never the id, only a short handle of its digest.
fn session_json(s: &Session, current: &str) -> Value {
    json!({
        "id": &s.id_digest[..16.min(s.id_digest.len())],
        "current": s.id_digest == current,
        "created_at": timestamp(s.created_at),
        "last_seen_at": timestamp(s.last_seen_at),
        "expires_at": timestamp(s.expires_at),
        "ip": s.ip,
        "user_agent": s.user_agent,
    })
}

fn session_of(principal: &Principal) -> Result<(&User, &Session), ApiError> {
    principal.session_user().ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "needs a signed-in user's session (not an API token)",
        )
    })
}

/// `GET /api/v1/sessions`: one's own sessions.
pub async fn sessions(
    State(state): State<Arc<AdminState>>,
    _: NoQuery,
    principal: Principal,
) -> ApiResult {
    let (user, current) = session_of(&principal)?;
    let now = Utc::now();
    let policy = state.auth.config.sessions;
    let list = state
        .auth
        .store
        .sessions_of(&user.id)
        .await
        .map_err(store_error)?;
    let list: Vec<Value> = list
        .iter()
        .filter(|s| policy.state(s, now) == crate::auth::session_policy::SessionState::Live)
        .map(|s| session_json(s, &current.id_digest))
        .collect();
    Ok(Json(json!({ "sessions": list })).into_response())
}

/// `DELETE /api/v1/sessions`: signs out everywhere else.
pub async fn end_other_sessions(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    info: RequestInfo,
) -> ApiResult {
    let (user, current) = session_of(&principal)?;
    let ended = state
        .auth
        .store
        .delete_sessions_of(&user.id, Some(&current.id_digest))
        .await
        .map_err(store_error)?;
    state
        .auth
        .audit
        .record(
            Action::SessionsRevoked,
            &user.username,
            None,
            &info,
            json!({ "ended": ended }),
        )
        .await;
    Ok(Json(json!({ "ended": ended })).into_response())
}

/// Checks a signed-in user's password again (ASVS V3.7.1: before creating a token, changing
/// roles, resetting MFA, changing the password). A wrong one counts as a failed sign-in.
pub async fn confirm_password(
    auth: &Auth,
    principal: &Principal,
    password: Option<String>,
    info: &RequestInfo,
) -> Result<(), ApiError> {
    let Some((user, _)) = principal.session_user() else {
        // Tokens and the bootstrap token have no password to ask for.
        return Ok(());
    };
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "send your current password in \"password\" to confirm this change",
        ));
    };
    let ok = match user.password_hash.as_deref() {
        Some(hash) => auth
            .hasher
            .verify(&password, hash)
            .await
            .map_err(hash_error)?,
        None => false,
    };
    if ok {
        return Ok(());
    }
    auth.store
        .record_login_failure(&user.id, Utc::now())
        .await
        .map_err(store_error)?;
    auth.audit
        .record(
            Action::LoginFailed,
            &user.username,
            None,
            info,
            json!({"reason": "wrong password on re-authentication"}),
        )
        .await;
    Err(invalid_credentials())
}

/// The password rules (`auth::password::PasswordPolicy`), as a 422 `weak_password`.
pub fn check_password_policy(password: &str, username: &str) -> Result<(), ApiError> {
    PasswordPolicy::check(password, username).map_err(|problem| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak_password",
            problem.to_string(),
        )
    })
}

/// A password hashing failure as the API answers it (never showing the password).
pub fn hash_error(e: PasswordError) -> ApiError {
    tracing::error!(error = %Chain(&e), "password hashing failed");
    match e {
        PasswordError::Malformed(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "this account's stored password hash is damaged; an admin can reset the password",
        ),
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "cannot check the password just now; retry",
        )
        .retry_after(1),
    }
}

pub async fn hash_password(auth: &Auth, password: &str) -> Result<String, ApiError> {
    auth.hasher.hash(password).await.map_err(hash_error)
}

/// Starts a fresh session for `user` (after a privilege change ended the old ones) and
/// answers with its cookie.
pub async fn rotated(
    auth: &Auth,
    user: &User,
    info: &RequestInfo,
    extra: Value,
) -> Result<Response, ApiError> {
    let (cookie_id, session) = auth.config.sessions.new_session(
        &user.id,
        None,
        info.ip.map(|ip| ip.to_string()),
        info.user_agent.clone(),
        Utc::now(),
    );
    auth.store
        .create_session(session.clone())
        .await
        .map_err(store_error)?;
    Ok(session_response(
        auth,
        StatusCode::OK,
        user,
        &cookie_id,
        &session,
        extra,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

impl JsonBody for PasswordChange {
    const SHAPE: &'static str =
        "the body must be a JSON object with \"current_password\" and \"new_password\" (strings)";
}

/// `POST /api/v1/session/password`: changes one's own password (the current one required);
/// ends every session and starts a new one for this client.
pub async fn change_password(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    info: RequestInfo,
    ApiJson(body): ApiJson<PasswordChange>,
) -> ApiResult {
    let auth = &state.auth;
    let (user, _) = session_of(&principal)?;
    confirm_password(auth, &principal, Some(body.current_password), &info).await?;
    check_password_policy(&body.new_password, &user.username)?;
    let hash = hash_password(auth, &body.new_password).await?;
    let user = auth
        .store
        .update_user(&user.id, UserUpdate::Password(hash))
        .await
        .map_err(store_error)?;
    auth.audit
        .record(
            Action::PasswordChanged,
            &user.username,
            Some(&user.username),
            &info,
            json!({}),
        )
        .await;
    rotated(auth, &user, &info, json!({})).await
}

/// `POST /api/v1/session/totp`: starts enrolling a TOTP second factor (also from a session
/// that may only enrol). Answers the secret and the `otpauth://` URI for the authenticator
/// app; nothing counts until a code is confirmed.
pub async fn totp_begin(State(state): State<Arc<AdminState>>, principal: Principal) -> ApiResult {
    let enrolment = begin_totp(&state, &principal).await?;
    Ok(Json(json!({
        "otpauth_uri": enrolment.otpauth_uri(),
        "secret": enrolment.secret_base32(),
        "confirm": "/api/v1/session/totp/confirm",
    }))
    .into_response())
}

/// Starts enrolling a TOTP factor for the session's user (a new secret, sealed in the store):
/// what `POST /api/v1/session/totp` and the web UI's enrolment page do.
pub(crate) async fn begin_totp(
    state: &AdminState,
    principal: &Principal,
) -> Result<Enrolment, ApiError> {
    let auth = &state.auth;
    let (user, _) = session_of(principal)?;
    if user.totp.as_ref().is_some_and(|t| t.confirmed) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "mfa_already_enrolled",
            "this account already has a second factor; an admin can reset it (PATCH /api/v1/users/{name} with reset_mfa)",
        ));
    }
    if user.oidc.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "sso_user",
            "this user signs in with SSO: the identity provider handles the second factor",
        ));
    }
    let enrolment = Enrolment::new(&user.username);
    let sealed = auth.secret_box.seal(enrolment.secret(), &user.id);
    auth.store
        .update_user(
            &user.id,
            UserUpdate::Totp(Some(TotpState::new_enrolment(sealed))),
        )
        .await
        .map_err(store_error)?;
    Ok(enrolment)
}

/// The enrolment the session's user has begun and not confirmed yet, if any (the web UI shows
/// it again after a wrong code or a reload, instead of a new secret each time).
pub(crate) fn pending_totp(state: &AdminState, principal: &Principal) -> Option<Enrolment> {
    let (user, _) = session_of(principal).ok()?;
    let enrolling = user.totp.as_ref().filter(|t| !t.confirmed)?;
    let secret = state
        .auth
        .secret_box
        .open(&enrolling.secret_encrypted, &user.id)
        .ok()?;
    Enrolment::resume(&secret, &user.username)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpConfirm {
    code: String,
}

impl JsonBody for TotpConfirm {
    const SHAPE: &'static str =
        "the body must be a JSON object with \"code\" (the 6 digits the authenticator app shows)";
}

/// `POST /api/v1/session/totp/confirm`: the first code confirms the enrolment. Answers the
/// recovery codes (the only time they are shown) and a new, full session.
pub async fn totp_confirm(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    info: RequestInfo,
    ApiJson(body): ApiJson<TotpConfirm>,
) -> ApiResult {
    let (user, codes) = confirm_totp(&state, &principal, &info, &body.code).await?;
    rotated(
        &state.auth,
        &user,
        &info,
        json!({ "recovery_codes": codes }),
    )
    .await
}

/// Confirms the session user's TOTP enrolment with its first `code`: the factor counts from now
/// on, the old session ends (a privilege change). Returns the user and the recovery codes
/// (shown this once); the caller starts the new session ([`rotated`]).
pub(crate) async fn confirm_totp(
    state: &AdminState,
    principal: &Principal,
    info: &RequestInfo,
    code: &str,
) -> Result<(User, Vec<String>), ApiError> {
    let auth = &state.auth;
    let (user, session) = session_of(principal)?;
    let Some(enrolling) = user.totp.clone().filter(|t| !t.confirmed) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_enrolment",
            "no second factor is being enrolled: start with POST /api/v1/session/totp",
        ));
    };
    let now = Utc::now();
    let step = auth
        .secret_box
        .open(&enrolling.secret_encrypted, &user.id)
        .ok()
        .and_then(|secret| {
            totp::verify(
                &secret,
                code,
                u64::try_from(now.timestamp()).unwrap_or(0),
                None,
            )
        });
    let Some(step) = step else {
        auth.store
            .record_login_failure(&user.id, now)
            .await
            .map_err(store_error)?;
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_code",
            "that is not the current code of the authenticator app; check its clock and try the next code",
        ));
    };
    let (codes, digests) = totp::recovery_codes();
    let user = auth
        .store
        .update_user(
            &user.id,
            UserUpdate::Totp(Some(enrolling.confirmed(step, digests))),
        )
        .await
        .map_err(store_error)?;
    // A privilege change: the half-finished (or old) session ends, a new one starts.
    auth.store
        .delete_session(&session.id_digest)
        .await
        .map_err(store_error)?;
    auth.audit
        .record(Action::MfaEnrolled, &user.username, None, info, json!({}))
        .await;
    Ok((user, codes))
}
