//! The admin service: the JSON API under `/api/v1` (DESIGN §6) and its probes.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/namespaces` | namespaces with their version |
//! | `GET, PATCH /api/v1/namespaces/{ns}/configs` | schema + values; write a changeset |
//! | `GET, PUT, DELETE /api/v1/namespaces/{ns}/configs/{key}` | one key; set; reset to default |
//! | `GET /api/v1/namespaces/{ns}/history` | changesets, newest first (`key`, `actor`, `before`, `limit`) |
//! | `GET /api/v1/namespaces/{ns}/changesets/{version}` | one changeset |
//! | `POST /api/v1/namespaces/{ns}/rollback` | a new changeset restoring a version |
//! | `GET /api/v1/namespaces/{ns}/sidecars` | the fleet: which sidecar serves which version |
//! | `GET /api/v1/namespaces/{ns}/export`, `POST …/import?dry_run=true` | values out and in (with diff) |
//! | `GET /api/v1/openapi.yaml` | this API's OpenAPI document |
//! | `GET /healthz`, `/readyz`, `/metrics` | probes |
//!
//! Writes go through [`write::WritePath`]. Errors are always
//! `{"error":{"code","message","details"?,"request_id"}}`. Secrets are masked everywhere here.
//! With `--admin-token`, every `/api` call needs `Authorization: Bearer <token>` (the scheme
//! is case-insensitive: `auth::bearer`). Every response carries the security headers
//! ([`CONTENT_SECURITY_POLICY`], nosniff, `X-Frame-Options`, `Referrer-Policy`, `no-store`, and
//! HSTS over TLS); a request for a `Host` the listener does not serve gets 421.

mod api;
pub mod fleet;
pub mod mask;
pub mod write;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;

use crate::http::error::BODY_LIMIT_BYTES;
use crate::http::headers::X_REQUEST_ID;
use crate::http::host::{check_host, HostPolicy};
use crate::http::routes::Routes;
use crate::http::server::{limit_uri, method_not_allowed, not_found, ServedOverTls};
use crate::http::ApiError;
use crate::metrics::{Exposition, HttpMetrics};
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
    /// SHA-256 of the bearer token every API call must carry (`None`: no auth, `dev` only).
    token_digest: Option<[u8; 32]>,
}

impl AdminState {
    pub fn new(
        write: WritePath,
        masker: Masker,
        fleet: Arc<dyn Fleet>,
        metrics: Arc<Exposition>,
        http_metrics: HttpMetrics,
        admin_token: Option<&str>,
    ) -> Arc<AdminState> {
        Arc::new(AdminState {
            write,
            masker,
            fleet,
            metrics,
            http_metrics,
            token_digest: admin_token.map(|t| Sha256::digest(t.as_bytes()).into()),
        })
    }

    /// The actor recorded on changesets made through this request.
    fn actor(&self) -> &'static str {
        if self.token_digest.is_some() {
            "admin-token"
        } else {
            "dev"
        }
    }
}

/// The admin router: API, probes, and the middleware every request passes. `hosts` is the
/// listener's `Host` check (`http::host`: 421 `host_not_allowed`, against DNS rebinding).
pub fn router(state: Arc<AdminState>, hosts: HostPolicy) -> Router {
    use axum::routing::{get as g, post};
    let api = Routes::new()
        .route("/api/v1/namespaces", g(api::namespaces))
        .route(
            "/api/v1/namespaces/{ns}/configs",
            g(api::configs).patch(api::patch_configs),
        )
        .route(
            "/api/v1/namespaces/{ns}/configs/{key}",
            g(api::config)
                .put(api::put_config)
                .delete(api::delete_config),
        )
        .route("/api/v1/namespaces/{ns}/history", g(api::history))
        .route(
            "/api/v1/namespaces/{ns}/changesets/{version}",
            g(api::changeset),
        )
        .route("/api/v1/namespaces/{ns}/rollback", post(api::rollback))
        .route("/api/v1/namespaces/{ns}/sidecars", g(api::sidecars))
        .route("/api/v1/namespaces/{ns}/export", g(api::export))
        .route("/api/v1/namespaces/{ns}/import", post(api::import))
        .map(|route| {
            route.layer(axum::middleware::from_fn_with_state(
                state.clone(),
                require_token,
            ))
        });
    let open = Routes::new()
        .route("/api/v1/openapi.yaml", get(api::openapi))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/", get(api::index));
    // Known paths answer other methods with 405 (counted under their route, as before).
    api.merge(open)
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
        .layer(axum::middleware::from_fn(limit_uri))
        .with_state(state)
}

/// Refuses API calls without the configured bearer token (constant-time comparison of digests).
async fn require_token(State(state): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    let Some(want) = state.token_digest else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(crate::auth::bearer::bearer_token)
        .map(|t| <[u8; 32]>::from(Sha256::digest(t.as_bytes())));
    let ok = given.is_some_and(|g| {
        g.iter()
            .zip(want.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    });
    if !ok {
        let mut resp = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <admin token>",
        )
        .into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"rtconfig\""),
        );
        return resp;
    }
    next.run(req).await
}

/// Re-renders [`ApiError`] bodies with the request's id, so a user can quote it.
async fn errors_carry_request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
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
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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
