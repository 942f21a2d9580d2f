//! `/tokens` (global admins, like `/api/v1/tokens`): every API token (id, name, creator,
//! scope, created, last used, expiry, revoked) and the create form; the new token is shown
//! once, on the page that answers the create (`Cache-Control: no-store`), and never again;
//! `/tokens/{id}/revoke` confirms, then revokes. Writes go through `admin::tokens`
//! (`create_token`, `revoke_token`): the same checks and audit as the JSON API.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use chrono::Utc;

use crate::admin::tokens::{create_token, revoke_token, CreateToken};
use crate::admin::AdminState;
use crate::auth::guard::{store_error, RequestInfo};
use crate::auth::store::ApiToken;
use crate::auth::{Principal, Role};
use crate::http::ApiError;
use crate::ui::form::Form;
use crate::ui::layout::{Layout, Section};
use crate::ui::pages::users::{Done, FieldError, ROLE_NAMES};
use crate::ui::time::When;
use crate::ui::{render, see_other};

/// The expiry choices of the create form: `(field value, label, seconds)`.
pub const EXPIRIES: [(&str, &str, Option<u64>); 6] = [
    ("1d", "1 day", Some(86_400)),
    ("7d", "7 days", Some(7 * 86_400)),
    ("30d", "30 days", Some(30 * 86_400)),
    ("90d", "90 days", Some(90 * 86_400)),
    ("365d", "1 year", Some(365 * 86_400)),
    ("never", "never", None),
];

/// One token in the list.
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub creator: String,
    pub roles: Vec<String>,
    pub created: When,
    pub last_used: Option<When>,
    pub expires: Option<When>,
    pub expired: bool,
    pub revoked: Option<When>,
}

#[derive(Template)]
#[template(path = "tokens.html")]
pub struct TokensPage {
    pub layout: Layout,
    pub rows: Vec<TokenRow>,
    pub notice: String,
    pub error: FieldError,
    pub name: String,
    pub role: String,
    pub chosen: Vec<String>,
    pub expiry: String,
    pub namespaces: Vec<String>,
    pub role_names: [&'static str; 3],
    pub expiries: Vec<(&'static str, &'static str)>,
}

#[derive(Template)]
#[template(path = "token_created.html")]
pub struct CreatedPage {
    pub layout: Layout,
    pub row: TokenRow,
    /// The token itself: on this page only.
    pub secret: String,
}

#[derive(Template)]
#[template(path = "token_revoke.html")]
pub struct RevokePage {
    pub layout: Layout,
    pub row: TokenRow,
}

/// Which input an API error of the create belongs to.
pub fn field_of(code: &str) -> &'static str {
    match code {
        "invalid_name" | "token_exists" => "name",
        "invalid_role" => "role",
        "invalid_expiry" => "expiry",
        "invalid_credentials" => "admin-password",
        _ => "",
    }
}

/// The create request a form asks for (`name`, `role`, `namespace` repeated — none: every
/// namespace —, `expiry`, `admin_password`). An unknown expiry is refused like the API's
/// out-of-range one. Pure.
pub fn request_of(form: &Form) -> Result<CreateToken, FieldError> {
    let expiry = form.get("expiry").unwrap_or("30d");
    let Some((_, _, expires_in)) = EXPIRIES.iter().find(|(v, _, _)| *v == expiry) else {
        return Err(FieldError {
            field: "expiry",
            message: "choose one of the listed expiries".into(),
        });
    };
    let namespaces: Vec<String> = form
        .0
        .iter()
        .filter(|(k, v)| k == "namespace" && !v.is_empty())
        .map(|(_, v)| v.clone())
        .collect();
    Ok(CreateToken {
        name: form.get("name").unwrap_or_default().trim().to_owned(),
        role: form.get("role").unwrap_or_default().to_owned(),
        namespaces: (!namespaces.is_empty()).then_some(namespaces),
        expires_in: *expires_in,
        password: form
            .get("admin_password")
            .filter(|p| !p.is_empty())
            .map(str::to_owned),
    })
}

fn row(t: &ApiToken, names: &HashMap<String, String>) -> TokenRow {
    let now = Utc::now();
    TokenRow {
        id: t.id.clone(),
        name: t.name.clone(),
        creator: t
            .created_by
            .as_ref()
            .map(|id| names.get(id).cloned().unwrap_or_else(|| id.clone()))
            .unwrap_or_else(|| "the admin token".into()),
        roles: t.grants.iter().map(|g| g.to_string()).collect(),
        created: When::new(t.created_at, now),
        last_used: t.last_used_at.map(|at| When::new(at, now)),
        expires: t.expires_at.map(|at| When::new(at, now)),
        expired: t.expires_at.is_some_and(|at| at <= now),
        revoked: t.revoked_at.map(|at| When::new(at, now)),
    }
}

async fn user_names(state: &AdminState) -> Result<HashMap<String, String>, ApiError> {
    Ok(state
        .auth
        .store
        .users()
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|u| (u.id, u.username))
        .collect())
}

async fn list_page(state: &AdminState, principal: &Principal) -> Result<TokensPage, ApiError> {
    let tokens = state.auth.store.tokens().await.map_err(store_error)?;
    let names = user_names(state).await?;
    Ok(TokensPage {
        layout: Layout::new(principal, "API tokens", Section::Tokens, None),
        rows: tokens.iter().map(|t| row(t, &names)).collect(),
        notice: String::new(),
        error: FieldError::default(),
        name: String::new(),
        role: Role::Viewer.to_string(),
        chosen: Vec::new(),
        expiry: "30d".into(),
        namespaces: state
            .write
            .schemas
            .iter()
            .map(|s| s.namespace.clone())
            .collect(),
        role_names: ROLE_NAMES,
        expiries: EXPIRIES.iter().map(|(v, l, _)| (*v, *l)).collect(),
    })
}

/// The notice for a `?done=` code.
fn notice(done: &str) -> &'static str {
    match done {
        "revoked" => "Token revoked: it is refused from now on.",
        _ => "",
    }
}

/// `GET /tokens`
pub async fn list(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    Query(done): Query<Done>,
) -> Result<Response, ApiError> {
    let mut page = list_page(&state, &principal).await?;
    page.notice = notice(&done.done).to_owned();
    Ok(render(StatusCode::OK, &page))
}

/// `POST /tokens`: creates through `admin::tokens::create_token`; the answer is the page that
/// shows the token, once (not a redirect: the token is kept nowhere to show again).
pub async fn create(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    info: RequestInfo,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form = Form::parse(&body);
    let refused = |error: FieldError, status: StatusCode| {
        let state = state.clone();
        let principal = principal.clone();
        let form = form.clone();
        async move {
            let mut page = list_page(&state, &principal).await?;
            page.error = error;
            page.name = form.get("name").unwrap_or_default().to_owned();
            page.role = form.get("role").unwrap_or_default().to_owned();
            page.expiry = form.get("expiry").unwrap_or_default().to_owned();
            page.chosen = form
                .0
                .iter()
                .filter(|(k, _)| k == "namespace")
                .map(|(_, v)| v.clone())
                .collect();
            Ok::<_, ApiError>(render(status, &page))
        }
    };
    let request = match request_of(&form) {
        Ok(r) => r,
        Err(e) => return refused(e, StatusCode::UNPROCESSABLE_ENTITY).await,
    };
    match create_token(&state, &principal, &info, request).await {
        Ok((record, secret)) => {
            let names = user_names(&state).await?;
            let page = CreatedPage {
                layout: Layout::new(&principal, "Token created", Section::Tokens, None),
                row: row(&record, &names),
                secret,
            };
            let mut resp = render(StatusCode::CREATED, &page);
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(resp)
        }
        Err(e) if e.status.is_client_error() => {
            let error = FieldError {
                field: field_of(e.code),
                message: e.message.clone(),
            };
            refused(error, e.status).await
        }
        Err(e) => Err(e),
    }
}

async fn one(state: &AdminState, id: &str) -> Result<TokenRow, ApiError> {
    let token = state
        .auth
        .store
        .token(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("no token with id {id:?}")))?;
    Ok(row(&token, &user_names(state).await?))
}

/// `GET /tokens/{id}/revoke`: what is about to be revoked, and the button that does it.
pub async fn revoke_confirm(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let row = one(&state, &id).await?;
    let page = RevokePage {
        layout: Layout::new(
            &principal,
            &format!("Revoke {} · API tokens", row.name),
            Section::Tokens,
            None,
        ),
        row,
    };
    Ok(render(StatusCode::OK, &page))
}

/// `POST /tokens/{id}/revoke`: revokes through `admin::tokens::revoke_token`, back to the list.
pub async fn revoke(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    principal: Principal,
    info: RequestInfo,
) -> Result<Response, ApiError> {
    revoke_token(&state, &id, &principal, &info).await?;
    Ok(see_other("/tokens?done=revoked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_requests_from_the_form() {
        let f = Form::parse(
            b"name=ci&role=editor&namespace=demo&namespace=shop&expiry=7d&admin_password=pw",
        );
        let r = request_of(&f).expect("ok");
        assert_eq!(r.name, "ci");
        assert_eq!(r.role, "editor");
        assert_eq!(
            r.namespaces,
            Some(vec!["demo".to_owned(), "shop".to_owned()])
        );
        assert_eq!(r.expires_in, Some(7 * 86_400));
        assert_eq!(r.password.as_deref(), Some("pw"));
        let every = request_of(&Form::parse(b"name=x&role=viewer&expiry=never")).expect("ok");
        assert_eq!(every.namespaces, None);
        assert_eq!(every.expires_in, None);
        let bad = request_of(&Form::parse(b"name=x&role=viewer&expiry=forever"));
        assert_eq!(bad.err().map(|e| e.field), Some("expiry"));
    }

    #[test]
    fn errors_go_next_to_their_field() {
        for (code, field) in [
            ("invalid_name", "name"),
            ("token_exists", "name"),
            ("invalid_role", "role"),
            ("invalid_expiry", "expiry"),
            ("invalid_credentials", "admin-password"),
            ("unavailable", ""),
        ] {
            assert_eq!(field_of(code), field, "{code}");
        }
    }
}
