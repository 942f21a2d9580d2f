//! Enrolling a second factor at sign-in (`/signin/mfa`): an account whose role needs one (the
//! admin role under `--require-mfa-for-admins`) signs in with its password into a session that
//! may only enrol, and lands here: the secret for the authenticator app, then the first code.
//! The same code as `POST /api/v1/session/totp` and `…/totp/confirm` (`admin::session`); the
//! recovery codes are shown once, on the page that confirms.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::Response;

use crate::admin::session::{begin_totp, confirm_totp, pending_totp, rotated};
use crate::admin::AdminState;
use crate::auth::guard::RequestInfo;
use crate::auth::Principal;
use crate::http::ApiError;
use crate::ui::form::Form;
use crate::ui::{assets, render};

#[derive(Template)]
#[template(path = "mfa.html")]
pub struct MfaPage {
    pub title: String,
    pub css: String,
    pub js: String,
    pub favicon: String,
    pub csrf: String,
    pub user: String,
    /// The secret in base32, to type into the app.
    pub secret: String,
    /// The `otpauth://` URI (a link: phones open it in their authenticator app).
    pub otpauth_uri: String,
    pub error: String,
    /// After confirming: the recovery codes (shown this once); empty before.
    pub recovery_codes: Vec<String>,
}

impl MfaPage {
    fn new(principal: &Principal) -> MfaPage {
        let csrf = principal
            .session_user()
            .map(|(_, s)| s.csrf_token.clone())
            .unwrap_or_default();
        MfaPage {
            title: "Set up a second factor · rtconfig".into(),
            css: assets::href("app.css"),
            js: assets::href("app.js"),
            favicon: assets::href("favicon.svg"),
            csrf,
            user: principal.actor(),
            secret: String::new(),
            otpauth_uri: String::new(),
            error: String::new(),
            recovery_codes: Vec::new(),
        }
    }
}

/// `GET /signin/mfa`: the secret to add to the authenticator app (the one already begun, or a
/// new one) and the field for its first code.
pub async fn form(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let enrolment = match pending_totp(&state, &principal) {
        Some(e) => e,
        None => begin_totp(&state, &principal).await?,
    };
    let mut page = MfaPage::new(&principal);
    page.secret = enrolment.secret_base32();
    page.otpauth_uri = enrolment.otpauth_uri();
    Ok(render(StatusCode::OK, &page))
}

/// `POST /signin/mfa` (`code`): confirms the enrolment, starts the full session and shows the
/// recovery codes; a wrong code shows the same secret again with the reason.
pub async fn confirm(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    info: RequestInfo,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form = Form::parse(&body);
    let code = form.get("code").unwrap_or_default().trim().to_owned();
    match confirm_totp(&state, &principal, &info, &code).await {
        Ok((user, codes)) => {
            // The new session's cookie, exactly as the JSON API sets it.
            let api = rotated(&state.auth, &user, &info, serde_json::json!({})).await?;
            let mut page = MfaPage::new(&principal);
            page.user = user.username.clone();
            page.recovery_codes = codes;
            let mut resp = render(StatusCode::OK, &page);
            if let Some(cookie) = api.headers().get(header::SET_COOKIE) {
                resp.headers_mut()
                    .insert(header::SET_COOKIE, cookie.clone());
            }
            Ok(resp)
        }
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let mut page = MfaPage::new(&principal);
            if let Some(enrolment) = pending_totp(&state, &principal) {
                page.secret = enrolment.secret_base32();
                page.otpauth_uri = enrolment.otpauth_uri();
            }
            page.error = e.message;
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
        Err(e) => Err(e),
    }
}
