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
//! With `--admin-token`, every `/api` call needs `Authorization: Bearer <token>`.

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
use crate::http::routes::Routes;
use crate::http::server::{limit_uri, method_not_allowed, not_found};
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

/// The admin router: API, probes, and the middleware every request passes.
pub fn router(state: Arc<AdminState>) -> Router {
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
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| <[u8; 32]>::from(Sha256::digest(t.trim().as_bytes())));
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

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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
