//! The sidecar's HTTP side: the read API on loopback and the probe listener.
//!
//! Read API (`--listen`, default `127.0.0.1:7070`; [`read_router`]):
//! - `GET /v1/configs` — every value; `ETag`/`If-None-Match`; long-poll with `?index=E-V&wait=30s`
//! - `GET /v1/configs/{key}` — one value; `?format=raw` for the bare value as text
//! - `GET /v1/watch` — Server-Sent Events: `snapshot`, then `change` events; `Last-Event-ID`
//! - `POST /ofrep/v1/evaluate/flags[/{key}]` — OpenFeature Remote Evaluation Protocol 0.3
//! - `GET /` — a live status page
//!
//! Every listener checks `Host` against its address and `--allowed-host` (`http::host`: 421
//! `host_not_allowed`), so a DNS-rebinding page cannot read the app's secrets through a browser.
//!
//! Probe listener (`--probe-listen`, default `0.0.0.0:7071`; [`probe_router`]): `/healthz`,
//! `/readyz`, `/status`, `/metrics`.
//!
//! Every handler reads the [`SnapshotStore`] and nothing else: no read waits on Redis, a lock
//! or an allocation beyond its response. Long-polls and SSE streams are capped
//! (`--max-watchers`) and end on shutdown.

mod ofrep;
mod page;
mod probe;
mod read;
mod watch;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tower_http::timeout::TimeoutLayer;

use crate::http::host::{check_host, HostPolicy};
use crate::http::routes::Routes;
use crate::http::server::{limit_uri, method_not_allowed, not_found, App};
use crate::http::ApiError;
use crate::metrics::{Exposition, HttpMetrics, SnapshotMetrics};
use crate::shutdown::Shutdown;
use crate::snapshot::SnapshotStore;

/// Reports the state of whatever keeps the snapshot fresh (the sync loop, or `local` in dev),
/// for `/status` and `/readyz`.
pub trait SyncReport: Send + Sync + 'static {
    /// A JSON object describing the sync state (connection, last resync, cause of staleness).
    fn status(&self) -> Value;
}

/// `dev`: the snapshot is published in-process by the ledger; there is nothing to sync.
pub struct LocalSync;

impl SyncReport for LocalSync {
    fn status(&self) -> Value {
        serde_json::json!({"mode": "local", "cause": "published in-process by the embedded ledger"})
    }
}

/// What every sidecar handler shares.
pub struct SidecarState {
    pub store: Arc<SnapshotStore>,
    /// What `/metrics` encodes.
    pub metrics: Arc<Exposition>,
    pub http_metrics: HttpMetrics,
    pub snapshot_metrics: SnapshotMetrics,
    pub shutdown: Shutdown,
    pub sync: Arc<dyn SyncReport>,
    /// Open long-polls and SSE streams, and their cap.
    watchers: AtomicUsize,
    max_watchers: usize,
}

impl SidecarState {
    pub fn new(
        store: Arc<SnapshotStore>,
        metrics: Arc<Exposition>,
        http_metrics: HttpMetrics,
        snapshot_metrics: SnapshotMetrics,
        shutdown: Shutdown,
        sync: Arc<dyn SyncReport>,
        max_watchers: usize,
    ) -> Arc<SidecarState> {
        Arc::new(SidecarState {
            store,
            metrics,
            http_metrics,
            snapshot_metrics,
            shutdown,
            sync,
            watchers: AtomicUsize::new(0),
            max_watchers,
        })
    }

    /// Takes a watcher slot, or refuses with 503 when all are taken.
    /// With `--require-snapshot`, until a real snapshot (Redis or disk) is loaded, reads answer
    /// 503 `no_snapshot` instead of the schema defaults (the store is not ready).
    fn require_snapshot(&self) -> Result<(), ApiError> {
        if self.store.is_ready() {
            return Ok(());
        }
        Err(no_snapshot())
    }

    fn watcher(self: &Arc<Self>) -> Result<WatcherSlot, ApiError> {
        let taken = self.watchers.fetch_add(1, Ordering::AcqRel);
        if taken >= self.max_watchers {
            self.watchers.fetch_sub(1, Ordering::AcqRel);
            self.snapshot_metrics.watchers_rejected.inc();
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_watchers",
                format!(
                    "{} long-polls and streams are open already (--max-watchers)",
                    self.max_watchers
                ),
            )
            .retry_after(1));
        }
        self.snapshot_metrics.watchers.inc();
        Ok(WatcherSlot(self.clone()))
    }
}

/// A held watcher slot; released on drop.
struct WatcherSlot(Arc<SidecarState>);

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::AcqRel);
        self.0.snapshot_metrics.watchers.dec();
    }
}

/// Requests that are not streams must finish in this time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// OFREP request bodies are small contexts.
const OFREP_BODY_LIMIT: usize = 64 * 1024;

/// 503 `no_snapshot` (`Retry-After: 1`): `--require-snapshot` and no real snapshot yet.
pub fn no_snapshot() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_snapshot",
        "no snapshot yet: this sidecar runs with --require-snapshot and has neither reached Redis nor loaded a valid disk snapshot, so it answers nothing rather than the schema defaults",
    )
    .retry_after(1)
}

/// The read API: the router, behind the fast path for `GET /v1/configs/{key}`
/// (`read::FastKeyRead`).
/// `hosts` is the read listener's `Host` check (`http::host`), applied by both.
pub fn read_router(state: Arc<SidecarState>, hosts: HostPolicy) -> App {
    let hosts = Arc::new(hosts);
    let fast = Arc::new(read::FastKeyRead::new(state.clone(), hosts.clone()));
    App::with_fast_path(read_routes(state, hosts), fast)
}

/// The read API's routes, without the fast path.
fn read_routes(state: Arc<SidecarState>, hosts: Arc<HostPolicy>) -> Router {
    let timed = Routes::new()
        .route(
            read::KEY_ROUTE,
            get(read::one).fallback(method_not_allowed),
            (),
        )
        .route(
            "/ofrep/v1/evaluate/flags",
            post(ofrep::bulk).fallback(method_not_allowed),
            (),
        )
        .route(
            "/ofrep/v1/evaluate/flags/{key}",
            post(ofrep::single).fallback(method_not_allowed),
            (),
        )
        .route("/", get(page::page).fallback(method_not_allowed), ())
        .map(|route| {
            route
                .layer::<_, Infallible>(axum::extract::DefaultBodyLimit::max(OFREP_BODY_LIMIT))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    REQUEST_TIMEOUT,
                ))
        });
    // Streams and long-polls bound their own time.
    let streaming = Routes::new()
        .route(
            "/v1/configs",
            get(read::all).fallback(method_not_allowed),
            (),
        )
        .route(
            "/v1/watch",
            get(watch::watch).fallback(method_not_allowed),
            (),
        );
    timed
        .merge(streaming)
        .metered(&state.http_metrics)
        .fallback(not_found)
        .layer(axum::middleware::from_fn(limit_uri))
        .layer(axum::middleware::from_fn_with_state(hosts, check_host))
        .with_state(state)
}

/// The probe listener, behind its `Host` check (on the default wildcard address with no
/// `--allowed-host` every host passes; kubelet probes by the pod IP, an IP literal, which
/// always passes on a wildcard listener).
pub fn probe_router(state: Arc<SidecarState>, hosts: HostPolicy) -> Router {
    Router::new()
        .route("/healthz", get(probe::healthz).fallback(method_not_allowed))
        .route("/readyz", get(probe::readyz).fallback(method_not_allowed))
        .route("/status", get(probe::status).fallback(method_not_allowed))
        .route("/metrics", get(probe::metrics).fallback(method_not_allowed))
        .fallback(not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(hosts),
            check_host,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, HeaderMap, Method, Request, Uri};
    use http_body_util::BodyExt;
    use serde_json::json;
    use tower::ServiceExt;

    use super::*;
    use crate::http::server::FastPath;
    use crate::schema::{Schema, ValueType};
    use crate::snapshot::{Position, Snapshot, Source};

    fn state() -> Arc<SidecarState> {
        let schema = Schema::from_keys(
            "demo",
            &[
                ("SITE_NAME", ValueType::String, json!("Config Manager")),
                ("ITEMS_PER_PAGE", ValueType::Int, json!(5)),
            ],
        );
        let snap = Snapshot::build(
            &schema,
            Position::new(1, 4),
            Source::Local,
            [("ITEMS_PER_PAGE", json!(7))],
        );
        let mut registry = crate::metrics::registry();
        let http = HttpMetrics::register(&mut registry);
        let snapshot = SnapshotMetrics::register(&mut registry);
        SidecarState::new(
            Arc::new(SnapshotStore::new(snap, None, false)),
            Arc::new(Exposition::new(registry)),
            http,
            snapshot,
            Shutdown::new(),
            Arc::new(LocalSync),
            8,
        )
    }

    /// A loopback read listener's `Host` check.
    fn loopback() -> HostPolicy {
        HostPolicy::new(([127, 0, 0, 1], 7070).into(), &[])
    }

    fn fast(state: &Arc<SidecarState>) -> read::FastKeyRead {
        read::FastKeyRead::new(state.clone(), Arc::new(loopback()))
    }

    /// A `Host` a loopback listener answers.
    const LOCAL_HOST: &str = "127.0.0.1:7070";

    async fn get(
        app: impl tower::Service<
            Request<Body>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        >,
        uri: &str,
    ) -> (StatusCode, axum::http::HeaderMap, bytes::Bytes) {
        get_host(app, uri, LOCAL_HOST).await
    }

    async fn get_host(
        app: impl tower::Service<
            Request<Body>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        >,
        uri: &str,
        host: &str,
    ) -> (StatusCode, axum::http::HeaderMap, bytes::Bytes) {
        let req = Request::get(uri)
            .header(header::HOST, host)
            .body(Body::empty())
            .expect("request");
        let resp = app.oneshot(req).await.expect("infallible");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        (parts.status, parts.headers, body)
    }

    fn host_headers(host: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, axum::http::HeaderValue::from_static(host));
        headers
    }
    #[tokio::test]
    async fn the_fast_path_answers_known_keys_exactly_as_the_router_does() {
        let state = state();
        for uri in [
            "/v1/configs/SITE_NAME",
            "/v1/configs/SITE_NAME?format=raw",
            "/v1/configs/ITEMS_PER_PAGE?format=raw",
        ] {
            let fast = fast(&state);
            let parsed: Uri = uri.parse().expect("uri");
            let local = host_headers(LOCAL_HOST);
            assert!(
                fast.answer(&Method::GET, &parsed, &local).is_some(),
                "{uri}"
            );
            let (status, mut headers, body) =
                get(read_router(state.clone(), loopback()), uri).await;
            let (r_status, mut r_headers, r_body) =
                get(read_routes(state.clone(), Arc::new(loopback())), uri).await;
            assert_eq!(status, r_status, "{uri}");
            assert_eq!(body, r_body, "{uri}");
            // The router sets content-length in the map; hyper writes the same from the body.
            assert_eq!(
                r_headers.remove(header::CONTENT_LENGTH),
                Some(body.len().into())
            );
            headers.remove(header::CONTENT_LENGTH);
            assert_eq!(headers, r_headers, "{uri}");
        }
        // Both paths count into the same series (3 direct answers + 3 fast + 3 routed).
        let text = state.metrics.encode();
        assert!(
            text.contains(
                "rtconfig_http_requests_total{route=\"/v1/configs/{key}\",status=\"200\"} 9"
            ),
            "{text}"
        );
        assert!(text.contains(
            "rtconfig_http_request_duration_seconds_count{route=\"/v1/configs/{key}\"} 9"
        ));
    }

    #[tokio::test]
    async fn everything_else_is_left_to_the_router() {
        let state = state();
        let fast = fast(&state);
        let local = host_headers(LOCAL_HOST);
        for (method, uri) in [
            (Method::GET, "/v1/configs/NO_SUCH_KEY"),
            (Method::HEAD, "/v1/configs/SITE_NAME"),
            (Method::POST, "/v1/configs/SITE_NAME"),
            (Method::GET, "/v1/configs/SITE%5FNAME"),
            (Method::GET, "/v1/configs/"),
            (Method::GET, "/v1/configs/SITE_NAME/x"),
            (Method::GET, "/v1/configs"),
            // A query other than `format=raw`: the router refuses it (400 invalid_query).
            (Method::GET, "/v1/configs/SITE_NAME?x=1&format=raw"),
            (Method::GET, "/v1/configs/SITE_NAME?format=RAW"),
        ] {
            let parsed: Uri = uri.parse().expect("uri");
            assert!(
                fast.answer(&method, &parsed, &local).is_none(),
                "{method} {uri}"
            );
        }
        let long = format!("/v1/configs/SITE_NAME?pad={}", "x".repeat(9000));
        assert!(fast
            .answer(&Method::GET, &long.parse().expect("uri"), &local)
            .is_none());
        let (status, _, body) = get(read_router(state.clone(), loopback()), &long).await;
        assert_eq!(status, StatusCode::URI_TOO_LONG);
        assert!(String::from_utf8_lossy(&body).contains("uri_too_long"));
        let (status, _, body) = get(
            read_router(state.clone(), loopback()),
            "/v1/configs/SITE_NAME?x=1",
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(&body).contains("invalid_query"));
        let (status, _, body) =
            get(read_router(state, loopback()), "/v1/configs/SITE%5FNAME").await;
        assert_eq!(status, StatusCode::OK, "the router decodes the key");
        assert!(String::from_utf8_lossy(&body).contains("Config Manager"));
    }

    #[tokio::test]
    async fn a_foreign_host_gets_421_from_both_paths_and_the_probes() {
        let state = state();
        let fast = fast(&state);
        let uri: Uri = "/v1/configs/SITE_NAME".parse().expect("uri");
        // The fast path leaves a refused Host to the router, which answers 421.
        assert!(fast
            .answer(&Method::GET, &uri, &host_headers("evil.example:7070"))
            .is_none());
        for path in [
            "/v1/configs/SITE_NAME",
            "/v1/configs",
            "/v1/watch",
            "/",
            "/nope",
        ] {
            let (status, headers, body) = get_host(
                read_router(state.clone(), loopback()),
                path,
                "evil.example:7070",
            )
            .await;
            let (r_status, r_headers, r_body) = get_host(
                read_routes(state.clone(), Arc::new(loopback())),
                path,
                "evil.example:7070",
            )
            .await;
            assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{path}");
            assert_eq!((status, &headers, &body), (r_status, &r_headers, &r_body));
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(v["error"]["code"], "host_not_allowed", "{path}");
            assert!(v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("--allowed-host")));
            assert!(!String::from_utf8_lossy(&body).contains("Config Manager"));
        }
        for host in ["localhost:7070", "127.0.0.1", "[::1]:7070"] {
            let (status, _, _) = get_host(
                read_router(state.clone(), loopback()),
                "/v1/configs/SITE_NAME",
                host,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{host}");
        }
        // The probe port: a loopback probe listener refuses a foreign name; a wildcard one with
        // --allowed-host still answers a pod IP (kubelet) but not another name.
        let (status, _, _) = get_host(
            probe_router(state.clone(), loopback()),
            "/healthz",
            "evil.example",
        )
        .await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
        let wildcard =
            || HostPolicy::new(([0, 0, 0, 0], 7071).into(), &["sidecar.example".to_owned()]);
        let (status, _, _) = get_host(
            probe_router(state.clone(), wildcard()),
            "/readyz",
            "10.1.2.3:7071",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = get_host(
            probe_router(state.clone(), wildcard()),
            "/metrics",
            "evil.example",
        )
        .await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
        // Refused requests are not answered by the fast path, so they count nowhere.
        assert!(!state.metrics.encode().contains("status=\"421\""));
    }
}
