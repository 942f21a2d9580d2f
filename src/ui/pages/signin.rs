//! Sign-in (`/`, `/signin`) and sign-out (`POST /signout`): the password form, the TOTP step,
//! the SSO button when OIDC is configured, and the plain-HTTP notice of issue 8 (a
//! `__Host-` cookie is kept by browsers only over HTTPS or on loopback).

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use crate::admin::AdminState;
use crate::auth::audit::Action;
use crate::auth::guard::{authenticate, RequestInfo, Via};
use crate::auth::login::{sign_in, Attempt, LoginError};
use crate::auth::secrets::digest;
use crate::auth::store::Pending;
use crate::auth::{cookie, Principal};
use crate::http::server::ServedOverTls;
use crate::ui::form::{safe_next, Form};
use crate::ui::{assets, render, see_other};

#[derive(Template)]
#[template(path = "signin.html")]
pub struct SigninPage {
    pub title: String,
    pub css: String,
    pub js: String,
    pub favicon: String,
    /// An error to announce (`role=alert`).
    pub error: String,
    /// A neutral notice ("You are signed out.").
    pub info: String,
    /// Why sign-in cannot work here (plain HTTP reached by a non-loopback name); empty when
    /// it can.
    pub cookie_notice: String,
    pub username: String,
    pub next: String,
    /// The second step: the account has a second factor.
    pub totp_step: bool,
    /// Single sign-on is configured.
    pub sso: bool,
}

impl SigninPage {
    fn new(next: &str) -> SigninPage {
        SigninPage {
            title: "Sign in · rtconfig".into(),
            css: assets::href("app.css"),
            js: assets::href("app.js"),
            favicon: assets::href("favicon.svg"),
            error: String::new(),
            info: String::new(),
            cookie_notice: String::new(),
            username: String::new(),
            next: if safe_next(next) {
                next.to_owned()
            } else {
                String::new()
            },
            totp_step: false,
            sso: false,
        }
    }
}

/// Whether a browser keeps a `Secure` cookie for this request: over TLS, or on a loopback
/// name (`localhost`, `127.0.0.0/8`, `[::1]`), or behind a TLS proxy (`--public-url https://`).
pub fn cookie_can_work(tls: bool, host: Option<&str>, public_url: Option<&str>) -> bool {
    if tls || public_url.is_some_and(|u| u.starts_with("https://")) {
        return true;
    }
    let Some(host) = host else { return true };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

const COOKIE_NOTICE: &str = "Sign-in cannot work at this address: this admin serves plain HTTP \
    and you reached it by a name other than loopback, so your browser will not keep the \
    session cookie (a __Host- cookie needs HTTPS or localhost). Serve the admin over HTTPS \
    (--tls-cert and --tls-key, or a TLS proxy with --public-url https://…), or open it on \
    localhost / 127.0.0.1.";

fn base_page(state: &AdminState, headers: &HeaderMap, tls: bool, next: &str) -> SigninPage {
    let mut page = SigninPage::new(next);
    page.sso = state.auth.oidc.is_some();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !cookie_can_work(tls, host, state.auth.config.origins.public.as_deref()) {
        page.cookie_notice = COOKIE_NOTICE.to_owned();
    }
    page
}

async fn signed_in(state: &AdminState, headers: &HeaderMap) -> bool {
    matches!(
        authenticate(&state.auth, headers, Utc::now()).await,
        Ok((Principal::User { session, .. }, Via::Cookie)) if session.pending.is_none()
    )
}

/// `GET /`: the sign-in form, or the namespaces list when signed in.
pub async fn index(State(state): State<Arc<AdminState>>, req: Request) -> Response {
    let headers = req.headers();
    if signed_in(&state, headers).await {
        return see_other("/namespaces");
    }
    let tls = req.extensions().get::<ServedOverTls>().is_some();
    render(StatusCode::OK, &base_page(&state, headers, tls, ""))
}

#[derive(Deserialize, Default)]
pub struct SigninQuery {
    next: Option<String>,
    signed_out: Option<String>,
}

/// `GET /signin?next=…`: the sign-in form (a signed-in user goes on to `next`).
pub async fn form(
    State(state): State<Arc<AdminState>>,
    Query(q): Query<SigninQuery>,
    req: Request,
) -> Response {
    let next = q.next.unwrap_or_default();
    if signed_in(&state, req.headers()).await {
        return see_other(if safe_next(&next) {
            &next
        } else {
            "/namespaces"
        });
    }
    let tls = req.extensions().get::<ServedOverTls>().is_some();
    let mut page = base_page(&state, req.headers(), tls, &next);
    if q.signed_out.is_some() {
        page.info = "You are signed out.".into();
    }
    render(StatusCode::OK, &page)
}

/// `POST /signin` (`username`, `password`, `totp`?, `next`?): signs in, like
/// `POST /api/v1/session` (the same `auth::login::sign_in`: throttle, audit, no enumeration).
pub async fn submit(
    State(state): State<Arc<AdminState>>,
    info: RequestInfo,
    headers: HeaderMap,
    tls: Option<axum::Extension<ServedOverTls>>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let next = form.get("next").unwrap_or_default().to_owned();
    let mut page = base_page(&state, &headers, tls.is_some(), &next);
    let username = form.get("username").unwrap_or_default().trim().to_owned();
    let password = form.get("password").unwrap_or_default().to_owned();
    let totp = form
        .get("totp")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    page.username = username.clone();
    if username.is_empty() || password.is_empty() {
        page.error = "Enter your username and password.".into();
        return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let previous = cookie::find(&headers).map(|id| digest(&id));
    let had_totp = totp.is_some();
    let attempt = Attempt {
        username,
        password,
        totp,
    };
    let auth = &state.auth;
    match sign_in(auth, attempt, &info, previous, Utc::now()).await {
        Ok(s) if s.pending == Some(Pending::TotpEnrolment) => {
            // The role needs a second factor: the session may only enrol one (`/signin/mfa`).
            let mut resp = see_other("/signin/mfa");
            resp.headers_mut().insert(
                header::SET_COOKIE,
                cookie::set(&s.cookie_id, auth.config.sessions.cookie_max_age(s.pending)),
            );
            resp
        }
        Ok(s) => {
            let to = if safe_next(&next) {
                next.as_str()
            } else {
                "/namespaces"
            };
            let mut resp = see_other(to);
            resp.headers_mut().insert(
                header::SET_COOKIE,
                cookie::set(
                    &s.cookie_id,
                    auth.config.sessions.cookie_max_age(s.session.pending),
                ),
            );
            resp
        }
        Err(LoginError::Invalid) => {
            page.error = if had_totp {
                "Wrong username, password or code.".into()
            } else {
                "Wrong username or password.".into()
            };
            page.totp_step = had_totp;
            render(StatusCode::UNAUTHORIZED, &page)
        }
        Err(LoginError::MfaRequired) => {
            page.totp_step = true;
            page.error = if had_totp {
                "That code is not valid. Enter your password and the current code again.".into()
            } else {
                "This account has a second factor: enter your password again and the 6-digit code from your authenticator app (or a recovery code).".into()
            };
            render(StatusCode::UNAUTHORIZED, &page)
        }
        Err(LoginError::Store(e)) => {
            tracing::warn!(error = %crate::telemetry::Chain(&e), "sign-in: the user store is unavailable");
            page.error = "The user store is unavailable; try again in a moment.".into();
            let mut resp = render(StatusCode::SERVICE_UNAVAILABLE, &page);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
        Err(LoginError::Password(e)) => {
            tracing::error!(error = %crate::telemetry::Chain(&e), "sign-in: cannot verify a password");
            page.error = "Sign-in failed on the server; see the admin's logs.".into();
            render(StatusCode::INTERNAL_SERVER_ERROR, &page)
        }
    }
}

/// `POST /signout`: ends the session (like `DELETE /api/v1/session`) and shows the sign-in
/// page.
pub async fn signout(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    info: RequestInfo,
) -> Response {
    if let Principal::User { session, user } = &principal {
        if let Err(e) = state.auth.store.delete_session(&session.id_digest).await {
            tracing::warn!(error = %crate::telemetry::Chain(&e), "sign-out: cannot end the session");
            return crate::ui::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The user store is unavailable, so you are still signed in; try again in a moment.",
            );
        }
        state
            .auth
            .audit
            .record(Action::Logout, &user.username, None, &info, json!({}))
            .await;
    }
    let mut resp = see_other("/signin?signed_out=1");
    resp.headers_mut()
        .insert(header::SET_COOKIE, cookie::clear());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_cookies_work_over_tls_or_on_loopback_names() {
        for (tls, host, public, ok) in [
            (false, Some("127.0.0.1:8080"), None, true),
            (false, Some("localhost:8080"), None, true),
            (false, Some("app.localhost"), None, true),
            (false, Some("[::1]:8080"), None, true),
            (false, Some("10.0.0.5:8080"), None, false),
            (false, Some("config.internal:8080"), None, false),
            (false, Some("[fd00::1]:8080"), None, false),
            (true, Some("config.internal"), None, true),
            (
                false,
                Some("config.internal"),
                Some("https://config.example"),
                true,
            ),
            (false, None, None, true),
        ] {
            assert_eq!(cookie_can_work(tls, host, public), ok, "{host:?} tls={tls}");
        }
    }
}
