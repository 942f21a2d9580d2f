//! The admin web UI (issue 9): server-rendered HTML pages (askama templates in `templates/`),
//! with CSS and a small vanilla script embedded in the binary ([`assets`]).
//!
//! | page | what | needs |
//! |---|---|---|
//! | `GET /`, `GET /signin`, `POST /signin` | sign-in (password, TOTP step, SSO button) | public |
//! | `GET, POST /signin/mfa` | enrol the second factor a role needs (secret, first code, recovery codes) | a session that may enrol |
//! | `POST /signout` | sign out (form with the CSRF token) | a session |
//! | `GET /namespaces` | the landing page: namespaces with version and last change | viewer somewhere |
//! | `GET /namespaces/{ns}` | the configs of a namespace: groups, search, typed editors | viewer of ns |
//! | `POST /namespaces/{ns}/review` | the review of pending changes: diff, comment | editor of ns |
//! | `POST /namespaces/{ns}/commit` | writes the reviewed changeset | editor of ns |
//! | `GET /namespaces/{ns}/keys/{key}` | the single-key edit page | viewer of ns |
//! | `GET /namespaces/{ns}/history` | changesets newest first, filters (a GET form), paging, "Roll back" | viewer of ns |
//! | `GET /namespaces/{ns}/changesets/{v}` | one changeset's diff | viewer of ns |
//! | `GET /namespaces/{ns}/compare?from=&to=` | the keys that differ between two versions | viewer of ns |
//! | `GET, POST /namespaces/{ns}/rollback` | the rollback preview (`?to_version=`); "Confirm roll back" | editor of ns |
//! | `GET /namespaces/{ns}/fleet`, `GET /fleet` | the fleet: sidecars by version, stale and why, drift, lag; live ([`pages::fleet`]) | viewer of ns |
//! | `GET, POST /users`, `GET, POST /users/{name}` | users: list, create, roles per namespace, disable/enable, unlock, reset MFA, new password ([`pages::users`]) | admin (global) |
//! | `GET, POST /tokens`, `GET, POST /tokens/{id}/revoke` | API tokens: list, create (the token shown once), revoke after a confirm ([`pages::tokens`]) | admin (global) |
//! | `GET /namespaces/{ns}/export` | the API's export as a download (`ns-vN.json`) ([`pages::data`]) | viewer of ns |
//! | `GET, POST /namespaces/{ns}/import` | upload an export, its dry-run diff, "Apply import" ([`pages::data`]) | editor of ns |
//! | `GET /audit` | the audit log newest first, filters (a GET form), paging ([`pages::audit`]) | global admin |
//! | `GET /assets/{file}` | embedded CSS/JS ([`assets`]) | public |
//!
//! Pages are routes of the admin's ONE route table (`admin::routes`), declared with their
//! [`Needs`] like the API's, so the same guard authenticates and authorizes them; [`pages`]
//! returns them and the admin merges them in. Around each page's guard sits [`html_denials`]:
//! an unauthenticated page request is redirected to `/signin?next=…` (instead of the API's
//! 401 JSON), a forbidden one or a handler's error gets an HTML error page. Pages call the same
//! Rust code as the JSON handlers (`admin::write::WritePath`, the ledger, `auth::login`),
//! never HTTP to ourselves. Forms post the session's CSRF token in the `csrf_token` field; the
//! guard checks it and the `Origin`/`Sec-Fetch-Site` headers.
//!
//! Every page carries [`PAGE_CSP`]: scripts, styles and images from this origin only, no inline
//! script or style.

pub mod assets;
pub mod edit;
pub mod form;
pub mod layout;
pub mod pages;
pub mod time;

use std::sync::Arc;

use askama::Template;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use crate::admin::AdminState;
use crate::auth::guard::{Access, Needs};
use crate::auth::Role;
use crate::http::routes::Routes;
use crate::http::ApiError;

/// The `Content-Security-Policy` of every HTML page: everything from this origin only, no
/// inline script or style (`unsafe-inline` never), no frames, forms post back here only.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The `Referrer-Policy` of every HTML page: `same-origin`, so a form post carries this
/// origin in `Origin` (under the admin's usual `no-referrer`, browsers send `Origin: null`,
/// which the CSRF origin check refuses); no referrer ever leaves for another site.
pub const PAGE_REFERRER_POLICY: &str = "same-origin";

/// The web UI's routes with what each needs (merged into the admin's route table).
pub fn pages() -> Routes<Arc<AdminState>, Needs> {
    use Access::{Enrol, Global, Namespace, Public, Somewhere};
    use Role::{Admin, Editor, Viewer};
    let n = Needs::new;
    Routes::new()
        .route("/", get(pages::signin::index), n().get(Public))
        .route(
            "/signin",
            get(pages::signin::form).post(pages::signin::submit),
            n().get(Public).post(Public),
        )
        .route(
            "/signin/mfa",
            get(pages::mfa::form).post(pages::mfa::confirm),
            n().get(Enrol).post(Enrol),
        )
        .route("/signout", post(pages::signin::signout), n().post(Enrol))
        .route(
            "/namespaces",
            get(pages::namespaces::list),
            n().get(Somewhere(Viewer)),
        )
        .route(
            "/namespaces/{ns}",
            get(pages::configs::page),
            n().get(Namespace(Viewer)),
        )
        .route(
            "/namespaces/{ns}/review",
            post(pages::review::review),
            n().post(Namespace(Editor)),
        )
        .route(
            "/namespaces/{ns}/commit",
            post(pages::review::commit),
            n().post(Namespace(Editor)),
        )
        .route(
            "/namespaces/{ns}/keys/{key}",
            get(pages::key::page),
            n().get(Namespace(Viewer)),
        )
        .route(
            "/namespaces/{ns}/history",
            get(pages::history::page),
            n().get(Namespace(Viewer)),
        )
        .route(
            "/namespaces/{ns}/changesets/{version}",
            get(pages::history::changeset),
            n().get(Namespace(Viewer)),
        )
        .route(
            "/namespaces/{ns}/compare",
            get(pages::history::compare),
            n().get(Namespace(Viewer)),
        )
        .route(
            "/namespaces/{ns}/rollback",
            get(pages::history::rollback_preview).post(pages::history::rollback_confirm),
            n().get(Namespace(Editor)).post(Namespace(Editor)),
        )
        .route(
            "/fleet",
            get(pages::fleet::first),
            n().get(Somewhere(Viewer)),
        )
        .route(
            "/namespaces/{ns}/fleet",
            get(pages::fleet::page),
            n().get(Namespace(Viewer)),
        )
        .route(
            "/users",
            get(pages::users::list).post(pages::users::create),
            n().get(Global(Admin)).post(Global(Admin)),
        )
        .route(
            "/users/{name}",
            get(pages::users::page).post(pages::users::update),
            n().get(Global(Admin)).post(Global(Admin)),
        )
        .route(
            "/tokens",
            get(pages::tokens::list).post(pages::tokens::create),
            n().get(Global(Admin)).post(Global(Admin)),
        )
        .route(
            "/tokens/{id}/revoke",
            get(pages::tokens::revoke_confirm).post(pages::tokens::revoke),
            n().get(Global(Admin)).post(Global(Admin)),
        )
        .route(
            "/namespaces/{ns}/export",
            get(pages::data::export),
            n().get(Namespace(Viewer)),
        )
        .route(
            "/namespaces/{ns}/import",
            get(pages::data::import_form).post(pages::data::import_submit),
            n().get(Namespace(Editor)).post(Namespace(Editor)),
        )
        .route("/audit", get(pages::audit::page), n().get(Global(Admin)))
        .route("/assets/{file}", get(assets::serve), n().get(Public))
}

/// Whether `pattern` is a web UI route (an HTML page or asset, not the JSON API).
pub fn is_page(pattern: &str) -> bool {
    pages().table().iter().any(|(p, _)| *p == pattern)
}

/// Renders a page: HTML with [`PAGE_CSP`]. A template that fails to render (it cannot, short
/// of a bug) gives a plain 500 page.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => {
            let mut resp = (status, Html(html)).into_response();
            page_headers(&mut resp);
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "a page template failed to render");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "internal error: the page could not be rendered",
            )
        }
    }
}

/// The headers of every HTML page ([`PAGE_CSP`], [`PAGE_REFERRER_POLICY`]).
fn page_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static(PAGE_REFERRER_POLICY),
    );
}

/// A 303 to `location` (after a form post, and to the sign-in page).
pub fn see_other(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
    status: u16,
    css: String,
    favicon: String,
}

/// A standalone HTML error page (it needs no principal: it also answers denials).
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let page = ErrorPage {
        title,
        message,
        status: status.as_u16(),
        css: assets::href("app.css"),
        favicon: assets::href("favicon.svg"),
    };
    match page.render() {
        Ok(html) => {
            let mut resp = (status, Html(html)).into_response();
            page_headers(&mut resp);
            resp
        }
        Err(_) => (status, message.to_owned()).into_response(),
    }
}

/// Where an unauthenticated page request is sent: `/signin?next=<path and query>` (for a
/// `GET`; a form post goes back to plain `/signin`).
pub fn signin_location(method: &Method, path_and_query: &str) -> String {
    if *method != Method::GET || path_and_query == "/" || !form::safe_next(path_and_query) {
        return "/signin".to_owned();
    }
    format!(
        "/signin?next={}",
        url::form_urlencoded::byte_serialize(path_and_query.as_bytes()).collect::<String>()
    )
}

/// Middleware around each page's guard: the API's JSON denials and errors as pages.
/// 401 → 303 to the sign-in page (keeping the guard's cookie-clearing `Set-Cookie`); any other
/// [`ApiError`] (403 `forbidden`, 403 `csrf_failed`, 404, 503) → an HTML error page with
/// the same status.
pub async fn html_denials(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let resp = next.run(req).await;
    let Some(err) = resp.extensions().get::<ApiError>().cloned() else {
        return resp;
    };
    let mut page = if err.status == StatusCode::UNAUTHORIZED {
        see_other(&signin_location(&method, &target))
    } else {
        let title = match err.status {
            StatusCode::FORBIDDEN if err.code == "csrf_failed" => "Request refused",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            s if s.is_server_error() => "Unavailable",
            _ => "Cannot do that",
        };
        let message = match err.code {
            "csrf_failed" => {
                "This form is out of date or came from another site. Reload the page and try again."
                    .to_owned()
            }
            "forbidden" => format!("You cannot open this page: it {}.", err.message),
            _ => err.message.clone(),
        };
        error_page(err.status, title, &message)
    };
    if let Some(cookie) = resp.headers().get(header::SET_COOKIE) {
        page.headers_mut()
            .insert(header::SET_COOKIE, cookie.clone());
    }
    if let Some(retry) = resp.headers().get(header::RETRY_AFTER) {
        page.headers_mut()
            .insert(header::RETRY_AFTER, retry.clone());
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signin_location_keeps_only_safe_local_targets() {
        for (method, target, want) in [
            (
                Method::GET,
                "/namespaces/demo",
                "/signin?next=%2Fnamespaces%2Fdemo",
            ),
            (
                Method::GET,
                "/namespaces/demo?q=SITE",
                "/signin?next=%2Fnamespaces%2Fdemo%3Fq%3DSITE",
            ),
            (Method::GET, "/", "/signin"),
            (Method::POST, "/namespaces/demo/commit", "/signin"),
            (Method::GET, "//evil.example/x", "/signin"),
        ] {
            assert_eq!(signin_location(&method, target), want, "{method} {target}");
        }
    }

    #[test]
    fn page_csp_allows_no_inline_script() {
        assert!(PAGE_CSP.contains("script-src 'self'"));
        assert!(!PAGE_CSP.contains("unsafe"));
        assert!(PAGE_CSP.contains("frame-ancestors 'none'"));
    }

    #[test]
    fn every_page_is_known_as_a_page() {
        assert!(is_page("/namespaces"));
        assert!(is_page("/assets/{file}"));
        assert!(!is_page("/api/v1/namespaces"));
    }
}
