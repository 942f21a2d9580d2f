//! The admin service: the JSON API under `/api/v1` (DESIGN §6) and its probes.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/namespaces` | namespaces with their version (those the caller can see) |
//! | `GET, PATCH /api/v1/namespaces/{ns}/configs` | schema + values; write a changeset |
//! | `GET, PUT, DELETE /api/v1/namespaces/{ns}/configs/{key}` | one key; set; reset to default |
//! | `GET /api/v1/namespaces/{ns}/history` | changesets, newest first (`key`, `actor`, `q`, `since`, `until`, `before`, `limit`) ([`history`]) |
//! | `GET /api/v1/namespaces/{ns}/changesets/{version}` | one changeset |
//! | `GET /api/v1/namespaces/{ns}/compare?from=&to=` | the keys that differ between two versions |
//! | `POST /api/v1/namespaces/{ns}/rollback` | a new changeset restoring a version (`?dry_run=true`: the preview) |
//! | `GET /api/v1/namespaces/{ns}/sidecars` | the fleet: which sidecar serves which version |
//! | `GET /api/v1/namespaces/{ns}/constance` | the django-constance mirror: enabled, prefix, per-key state |
//! | `GET /api/v1/namespaces/{ns}/events` | Server-Sent Events: commits; closed on revocation ([`events`]) |
//! | `GET /api/v1/namespaces/{ns}/export`, `POST …/import?dry_run=true` | values out and in (with diff) |
//! | `POST, GET, DELETE /api/v1/session` | sign in, whoami, sign out ([`session`]) |
//! | `POST /api/v1/session/password`, `GET, DELETE /api/v1/sessions` | one's own password and sessions |
//! | `POST /api/v1/session/totp`, `…/totp/confirm` | enrol a second factor |
//! | `GET, POST /api/v1/users`, `PATCH /api/v1/users/{name}`, `POST …/{name}/password` | users ([`users`]) |
//! | `GET, POST /api/v1/tokens`, `DELETE /api/v1/tokens/{id}` | API tokens ([`tokens`]) |
//! | `GET /api/v1/audit` | the audit log ([`audit`]) |
//! | `GET /auth/oidc/login`, `/auth/oidc/callback` | single sign-on ([`oidc`]) |
//! | `GET /api/v1/openapi.yaml` | this API's OpenAPI document |
//! | `GET /healthz`, `/readyz`, `/metrics` | probes |
//!
//! What each route needs is declared next to it in [`routes`] and enforced by
//! [`crate::auth::guard`], the one place requests are authenticated and authorized. Writes go
//! through [`write::WritePath`]. Errors are always
//! `{"error":{"code","message","details"?,"request_id"}}`. Secrets are masked everywhere here.
//! Every response carries the security headers ([`CONTENT_SECURITY_POLICY`], nosniff,
//! `X-Frame-Options`, `Referrer-Policy`, `no-store`, and HSTS over TLS); a request for a `Host`
//! the listener does not serve gets 421.

pub(crate) mod api;
pub(crate) mod audit;
pub mod diff;
pub mod events;
pub mod fleet;
pub(crate) mod history;
pub mod mask;
mod oidc;
pub(crate) mod session;
pub(crate) mod tokens;
pub(crate) mod users;
pub mod write;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;

use crate::auth::guard::{guard, Access, Needs, RouteGuard};
use crate::auth::{Auth, Role};
use crate::http::error::BODY_LIMIT_BYTES;
use crate::http::headers::{request_id_usable, X_REQUEST_ID};
use crate::http::host::{check_host, HostPolicy};
use crate::http::routes::Routes;
use crate::http::server::{limit_uri, method_not_allowed, not_found, ServedOverTls};
use crate::http::ApiError;
use crate::metrics::{Exposition, HttpMetrics};
use events::CommitEvents;
use fleet::Fleet;
use mask::Masker;
use write::WritePath;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// What every admin handler shares.
pub struct AdminState {
    pub write: WritePath,
    pub masker: Masker,
    pub fleet: Arc<dyn Fleet>,
    /// What `/metrics` encodes.
    pub metrics: Arc<Exposition>,
    pub http_metrics: HttpMetrics,
    /// The access layer: users, sessions, tokens, audit.
    pub auth: Arc<Auth>,
    /// Commit events for the open SSE streams ([`events`]).
    pub events: Arc<CommitEvents>,
    /// The django-constance mirror's status (`enabled: false` without `--constance-mirror`).
    pub constance: crate::constance::mirror::StatusHandle,
}

impl AdminState {
    pub fn new(
        write: WritePath,
        masker: Masker,
        fleet: Arc<dyn Fleet>,
        metrics: Arc<Exposition>,
        http_metrics: HttpMetrics,
        auth: Arc<Auth>,
        events: Arc<CommitEvents>,
    ) -> Arc<AdminState> {
        Arc::new(AdminState {
            write,
            masker,
            fleet,
            metrics,
            http_metrics,
            auth,
            events,
            constance: Default::default(),
        })
    }
}

/// The admin's route table: every route, and next to it what each of its methods needs.
/// The guard enforces it; the RBAC matrix test (tests/it/rbac.rs) reads it through
/// [`route_table`].
fn api_routes() -> Routes<Arc<AdminState>, Needs> {
    use Access::{Enrol, Global, Namespace, Public, Session, SignedIn, Somewhere};
    use Role::{Admin, Editor, Viewer};
    let n = Needs::new;
    Routes::new()
        .route(
            "/api/v1/namespaces",
            get(api::namespaces),
            n().get(Somewhere(Viewer)),
        )
        .route(
            "/api/v1/namespaces/{ns}/configs",
            get(api::configs).patch(api::patch_configs),
            n().get(Namespace(Viewer)).patch(Namespace(Editor)),
        )
        .route(
            "/api/v1/namespaces/{ns}/configs/{key}",
            get(api::config)
                .put(api::put_config)
                .delete(api::delete_config),
            n().get(Namespace(Viewer))
                .put(Namespace(Editor))
                .delete(Namespace(Editor)),
        )
        .route(
            "/api/v1/namespaces/{ns}/history",
            get(history::history),
            n().get(Namespace(Viewer)),
        )
        .route(
            "/api/v1/namespaces/{ns}/changesets/{version}",
            get(history::changeset),
            n().get(Namespace(Viewer)),
        )
        .route(
            "/api/v1/namespaces/{ns}/compare",
            get(history::compare),
            n().get(Namespace(Viewer)),
        )
        .route(
            "/api/v1/namespaces/{ns}/rollback",
            post(history::rollback),
            n().post(Namespace(Editor)),
        )
        .route(
            "/api/v1/namespaces/{ns}/constance",
            get(api::constance),
            n().get(Namespace(Viewer)),
        )
        .route(
            "/api/v1/namespaces/{ns}/sidecars",
            get(api::sidecars),
            n().get(Namespace(Viewer)),
        )
        .route(
            "/api/v1/namespaces/{ns}/events",
            get(events::events),
            n().get(Namespace(Viewer)),
        )
        .route(
            "/api/v1/namespaces/{ns}/export",
            get(api::export),
            n().get(Namespace(Viewer)),
        )
        .route(
            "/api/v1/namespaces/{ns}/import",
            post(api::import),
            n().post(Namespace(Editor)),
        )
        .route(
            "/api/v1/session",
            post(session::login)
                .get(session::whoami)
                .delete(session::logout),
            n().post(Public).get(SignedIn).delete(Enrol),
        )
        .route(
            "/api/v1/session/totp",
            post(session::totp_begin),
            n().post(Enrol),
        )
        .route(
            "/api/v1/session/totp/confirm",
            post(session::totp_confirm),
            n().post(Enrol),
        )
        .route(
            "/api/v1/session/password",
            post(session::change_password),
            n().post(Session),
        )
        .route(
            "/api/v1/sessions",
            get(session::sessions).delete(session::end_other_sessions),
            n().get(Session).delete(Session),
        )
        .route(
            "/api/v1/users",
            get(users::list).post(users::create),
            n().get(Global(Admin)).post(Global(Admin)),
        )
        .route(
            "/api/v1/users/{name}",
            patch(users::patch),
            n().patch(Global(Admin)),
        )
        .route(
            "/api/v1/users/{name}/password",
            post(users::reset_password),
            n().post(Global(Admin)),
        )
        .route(
            "/api/v1/tokens",
            get(tokens::list).post(tokens::create),
            n().get(Global(Admin)).post(Global(Admin)),
        )
        .route(
            "/api/v1/tokens/{id}",
            delete(tokens::revoke),
            n().delete(Global(Admin)),
        )
        .route("/api/v1/audit", get(audit::list), n().get(Global(Admin)))
        .route("/auth/oidc/login", get(oidc::login), n().get(Public))
        .route("/auth/oidc/callback", get(oidc::callback), n().get(Public))
        .route("/api/v1/openapi.yaml", get(api::openapi), n().get(Public))
        .route("/healthz", get(|| async { "ok\n" }), n().get(Public))
        .route("/readyz", get(api::readyz), n().get(Public))
        .route("/metrics", get(api::metrics), n().get(Public))
}

/// Every route's pattern, methods and what each needs, in table order (for the RBAC matrix
/// test and the docs).
pub fn route_table() -> Vec<(&'static str, Method, Access)> {
    api_routes()
        .merge(crate::ui::pages())
        .table()
        .into_iter()
        .flat_map(|(pattern, needs)| {
            needs
                .0
                .iter()
                .map(move |(method, access)| (pattern, method.clone(), *access))
        })
        .collect()
}

/// The admin router: API, probes, and the middleware every request passes. `hosts` is the
/// listener's `Host` check (`http::host`: 421 `host_not_allowed`, against DNS rebinding).
pub fn router(state: Arc<AdminState>, hosts: HostPolicy) -> Router {
    let auth = state.auth.clone();
    let guarded = |route: axum::routing::MethodRouter<Arc<AdminState>>,
                   pattern: &'static str,
                   needs: &Needs| {
        route.layer(axum::middleware::from_fn_with_state(
            RouteGuard {
                auth: auth.clone(),
                pattern,
                needs: Arc::new(needs.clone()),
            },
            guard,
        ))
    };
    // The web UI's pages are routes of the same table, behind the same guard; around it,
    // `ui::html_denials` turns the guard's JSON denials into a redirect to the sign-in page
    // or an HTML error page.
    let pages = crate::ui::pages()
        .map_with(guarded)
        .map(|route| route.layer(axum::middleware::from_fn(crate::ui::html_denials)));
    api_routes()
        .map_with(guarded)
        .merge(pages)
        // Known paths answer other methods with 405 (counted under their route, as before).
        .map(|route| route.fallback(method_not_allowed))
        .metered(&state.http_metrics)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(hosts),
            check_host,
        ))
        .layer(axum::middleware::from_fn(errors_carry_request_id))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid))
        .layer(axum::middleware::from_fn(drop_unusable_request_id))
        .layer(axum::middleware::from_fn(limit_uri))
        .with_state(state)
}

/// A client `X-Request-Id` that is too long, not UTF-8 or holds control characters is
/// dropped, so `SetRequestIdLayer` gives the request a fresh one: what is echoed, logged and
/// stored with a changeset is always the same, bounded id.
async fn drop_unusable_request_id(mut req: Request, next: Next) -> Response {
    if req
        .headers()
        .get(X_REQUEST_ID)
        .is_some_and(|v| !request_id_usable(v))
    {
        req.headers_mut().remove(X_REQUEST_ID);
    }
    next.run(req).await
}

/// Re-renders [`ApiError`] bodies with the request's id, so a user can quote it.
async fn errors_carry_request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(crate::http::headers::text)
        .map(str::to_owned);
    let resp = next.run(req).await;
    match resp.extensions().get::<ApiError>() {
        Some(err) => {
            let mut fresh = err.to_response(id.as_deref());
            for (name, value) in resp.headers() {
                if name != header::CONTENT_LENGTH && !fresh.headers().contains_key(name) {
                    fresh.headers_mut().insert(name.clone(), value.clone());
                }
            }
            fresh
        }
        None => resp,
    }
}

/// The `Content-Security-Policy` of every admin response: JSON and YAML need nothing, so
/// nothing is allowed — no scripts, styles, frames or plugins, no embedding in another site's
/// frame, no `<base>`, and forms may only post back here. This is the one place the policy is
/// written. The web UI's pages will need `script-src 'self'; style-src 'self'; img-src 'self'
/// data:; connect-src 'self'` added (never `unsafe-inline` for scripts); a handler that sets
/// its own `Content-Security-Policy` keeps it.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// `Strict-Transport-Security` on responses served over TLS: browsers use only HTTPS for this
/// host for a year. Never sent over plain HTTP (RFC 6797 §7.2: browsers ignore it there).
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// The headers every admin response carries (errors, probes, 404s and 421s included).
async fn security_headers(req: Request, next: Next) -> Response {
    let tls = req.extensions().get::<ServedOverTls>().is_some();
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // HTML pages send `same-origin` (`ui::PAGE_REFERRER_POLICY`): under `no-referrer` a
    // browser sends `Origin: null` on a form post, which the CSRF origin check refuses.
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    // A handler may allow caching (the UI's content-hashed assets); the guard sets
    // `no-store` on every authenticated answer itself.
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    if tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
        );
    }
    resp
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; nothing was written unless a version was returned",
    )
    .into_response()
}
