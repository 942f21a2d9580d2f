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
    use axum::http::{header, Request};
    use http_body_util::BodyExt;
    use serde_json::json;
    use tower::ServiceExt;

    use super::*;
    use std::net::SocketAddr;

    use crate::http::server::{serve, FastPath, FastRequest};
    use crate::schema::{Schema, ValueType};
    use crate::snapshot::{Position, Snapshot, Source};

    fn demo_schema() -> Schema {
        Schema::from_keys(
            "demo",
            &[
                ("SITE_NAME", ValueType::String, json!("Config Manager")),
                ("ITEMS_PER_PAGE", ValueType::Int, json!(5)),
            ],
        )
    }

    fn demo_snapshot(version: u64, source: Source) -> Snapshot {
        Snapshot::build(
            &demo_schema(),
            Position::new(1, version),
            source,
            [("ITEMS_PER_PAGE", json!(7))],
        )
    }

    fn state() -> Arc<SidecarState> {
        state_of(Arc::new(SnapshotStore::new(
            demo_snapshot(4, Source::Local),
            None,
            false,
        )))
    }

    fn state_of(store: Arc<SnapshotStore>) -> Arc<SidecarState> {
        let mut registry = crate::metrics::registry();
        let http = HttpMetrics::register(&mut registry);
        let snapshot = SnapshotMetrics::register(&mut registry);
        SidecarState::new(
            store,
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

    /// Two read listeners on free loopback ports over one state: the sidecar's own (the fast
    /// path on the wire, then hyper and the router) and one with the router alone.
    struct Listeners {
        fast: SocketAddr,
        routed: SocketAddr,
        stop: Shutdown,
    }

    impl Listeners {
        async fn start(state: &Arc<SidecarState>) -> Listeners {
            let stop = Shutdown::new();
            let drain = Duration::from_secs(1);
            let bind = || tokio::net::TcpListener::bind(("127.0.0.1", 0));
            let (fast_listener, routed_listener) =
                (bind().await.expect("bind"), bind().await.expect("bind"));
            let fast = fast_listener.local_addr().expect("addr");
            let routed = routed_listener.local_addr().expect("addr");
            let app = read_router(state.clone(), HostPolicy::new(fast, &[]));
            tokio::spawn(serve(fast_listener, app, stop.clone(), drain));
            let app = App::from(read_routes(
                state.clone(),
                Arc::new(HostPolicy::new(routed, &[])),
            ));
            tokio::spawn(serve(routed_listener, app, stop.clone(), drain));
            Listeners { fast, routed, stop }
        }

        /// What each listener writes back for `requests` (`{host}` → its own address) on one
        /// connection, read until it closes; they must be the same bytes, which are returned.
        async fn same_bytes(&self, requests: &str) -> String {
            let fast = wire(self.fast, requests).await;
            let routed = wire(self.routed, requests).await;
            assert_eq!(fast, routed, "for {requests:?}");
            fast
        }
    }

    impl Drop for Listeners {
        fn drop(&mut self) {
            self.stop.trigger();
        }
    }

    /// `requests` sent to `addr` at once, and everything it answers until it closes, with the
    /// `date` values blanked (the two listeners may answer in different seconds).
    async fn wire(addr: SocketAddr, requests: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let requests = requests.replace("{host}", &addr.to_string());
        stream.write_all(requests.as_bytes()).await.expect("write");
        let mut bytes = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
            .await
            .expect("the server closes the connection")
            .expect("read");
        let mut text = String::from_utf8(bytes).expect("utf-8");
        let mut at = 0;
        while let Some(found) = text[at..].find("\r\ndate: ") {
            let value = at + found + "\r\ndate: ".len();
            text.replace_range(value..value + 29, "(date)");
            at = value;
        }
        text
    }

    /// A key read.
    fn key_read(target: &str) -> String {
        format!("GET /v1/configs/{target} HTTP/1.1\r\nHost: {{host}}\r\n\r\n")
    }

    /// The last request of a connection: a key read that asks to close.
    const CLOSE: &str =
        "GET /v1/configs/SITE_NAME HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n";

    /// What [`read::FastKeyRead`] itself writes for `GET path?query` from a loopback client.
    fn direct(
        fast: &read::FastKeyRead,
        path: &str,
        query: Option<&str>,
        host: &str,
    ) -> Option<String> {
        const DATE: &str = "Thu, 03 Dec 2026 12:00:00 GMT";
        let req = FastRequest {
            path,
            query,
            host: Some(host.as_bytes()),
        };
        let mut out = Vec::new();
        if !fast.answer(&req, DATE.as_bytes(), &mut out) {
            assert!(out.is_empty(), "a refusal writes nothing");
            return None;
        }
        Some(
            String::from_utf8(out)
                .expect("utf-8")
                .replace(DATE, "(date)"),
        )
    }

    #[tokio::test]
    async fn the_fast_path_writes_the_router_s_bytes_in_every_state() {
        // A sidecar's store: never confirmed (age -1, stale), confirmed, cut off, new snapshots.
        let store = Arc::new(SnapshotStore::new(
            demo_snapshot(3, Source::Disk),
            Some(Duration::from_secs(60)),
            false,
        ));
        let state = state_of(store.clone());
        let listeners = Listeners::start(&state).await;
        let fast = fast(&state);
        let requests = [
            key_read("SITE_NAME"),
            key_read("SITE_NAME?format=raw"),
            key_read("ITEMS_PER_PAGE?"),
            "GET /v1/configs/ITEMS_PER_PAGE?format=raw HTTP/1.1\r\nUser-Agent: t\r\nHost: {host}\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n".to_owned(),
            CLOSE.to_owned(),
        ]
        .concat();
        let mut reads = 0;
        let check = |what: &'static str| {
            let (listeners, fast, requests) = (&listeners, &fast, &requests);
            async move {
                let text = listeners.same_bytes(requests).await;
                assert_eq!(
                    text.matches("HTTP/1.1 200 OK\r\n").count(),
                    5,
                    "{what}: {text}"
                );
                for (path, query) in [
                    ("/v1/configs/SITE_NAME", None),
                    ("/v1/configs/SITE_NAME", Some("format=raw")),
                    ("/v1/configs/ITEMS_PER_PAGE", Some("")),
                ] {
                    let answer = direct(fast, path, query, LOCAL_HOST).expect(what);
                    assert!(
                        text.starts_with(&answer) || text.contains(&answer),
                        "{what}: {answer} in {text}"
                    );
                }
                text
            }
        };
        check("never confirmed").await;
        reads += 2 * 5 + 3;
        store.confirm();
        check("confirmed").await;
        reads += 2 * 5 + 3;
        store.mark_cut_off();
        let text = check("cut off").await;
        reads += 2 * 5 + 3;
        assert!(text.contains("x-config-stale: true\r\n"), "{text}");
        store.confirm();
        // A new snapshot (version, then source) must not be served with the old headers.
        store
            .publish(demo_snapshot(4, Source::Disk))
            .expect("publish");
        let text = check("new version").await;
        reads += 2 * 5 + 3;
        assert!(text.contains("x-config-version: 4\r\n"), "{text}");
        store
            .publish(demo_snapshot(4, Source::Redis))
            .expect("publish");
        let text = check("new source").await;
        reads += 2 * 5 + 3;
        assert!(text.contains("x-config-source: redis\r\n"), "{text}");
        // Both paths count into the same series.
        let metrics = state.metrics.encode();
        assert!(
            metrics.contains(&format!(
                "rtconfig_http_requests_total{{route=\"/v1/configs/{{key}}\",status=\"200\"}} {reads}"
            )),
            "{metrics}"
        );
        assert!(metrics.contains(&format!(
            "rtconfig_http_request_duration_seconds_count{{route=\"/v1/configs/{{key}}\"}} {reads}"
        )));
    }

    #[tokio::test]
    async fn everything_else_is_left_to_hyper_and_the_router() {
        let state = state();
        let listeners = Listeners::start(&state).await;
        let fast = fast(&state);
        let long = format!("SITE_NAME?pad={}", "x".repeat(9000));
        // Each on its own connection, followed by a key read (now hyper's) that closes it.
        for (what, head, fast_refuses) in [
            ("unknown key", key_read("NO_SUCH_KEY"), Some(("/v1/configs/NO_SUCH_KEY", None))),
            ("percent-encoded key", key_read("SITE%5FNAME"), Some(("/v1/configs/SITE%5FNAME", None))),
            ("empty key", key_read(""), Some(("/v1/configs/", None))),
            ("two segments", key_read("SITE_NAME/x"), Some(("/v1/configs/SITE_NAME/x", None))),
            ("another query", key_read("SITE_NAME?x=1&format=raw"), Some(("/v1/configs/SITE_NAME", Some("x=1&format=raw")))),
            ("format=RAW", key_read("SITE_NAME?format=RAW"), Some(("/v1/configs/SITE_NAME", Some("format=RAW")))),
            ("long URI", key_read(&long), Some(("/v1/configs/SITE_NAME", Some(&long["SITE_NAME?".len()..])))),
            ("the document", "GET /v1/configs HTTP/1.1\r\nHost: {host}\r\n\r\n".to_owned(), Some(("/v1/configs", None))),
            ("HEAD", "HEAD /v1/configs/SITE_NAME HTTP/1.1\r\nHost: {host}\r\n\r\n".to_owned(), None),
            ("POST with a body", "POST /v1/configs/SITE_NAME HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\n\r\n{}".to_owned(), None),
            ("OFREP, chunked", "POST /ofrep/v1/evaluate/flags/SITE_NAME HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n".to_owned(), None),
            ("GET with Content-Length: 0", "GET /v1/configs/SITE_NAME HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n".to_owned(), None),
            ("absolute form", "GET http://{host}/v1/configs/SITE_NAME HTTP/1.1\r\nHost: {host}\r\n\r\n".to_owned(), None),
            ("Connection: close first", "GET /v1/configs/SITE_NAME HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".to_owned(), None),
            ("foreign host", "GET /v1/configs/SITE_NAME HTTP/1.1\r\nHost: evil.example\r\n\r\n".to_owned(), None),
        ] {
            let text = listeners.same_bytes(&format!("{head}{CLOSE}")).await;
            assert!(text.starts_with("HTTP/1.1 "), "{what}: {text}");
            if let Some((path, query)) = fast_refuses {
                assert_eq!(direct(&fast, path, query, LOCAL_HOST), None, "{what}");
            }
        }
        // Heads hyper refuses or answers and then closes.
        for (what, head, status) in [
            (
                "HTTP/1.0",
                "GET /v1/configs/SITE_NAME HTTP/1.0\r\nHost: {host}\r\n\r\n".to_owned(),
                "HTTP/1.0 200 OK",
            ),
            (
                "bad header",
                "GET /v1/configs/SITE_NAME HTTP/1.1\r\nBad Header: x\r\n\r\n".to_owned(),
                "HTTP/1.1 400 Bad Request",
            ),
            (
                "too many headers",
                format!(
                    "GET /v1/configs/SITE_NAME HTTP/1.1\r\nHost: {{host}}\r\n{}\r\n",
                    "X-A: 1\r\n".repeat(70)
                ),
                "HTTP/1.1 431 Request Header Fields Too Large",
            ),
            (
                "head over 16 KiB",
                format!(
                    "GET /v1/configs/SITE_NAME HTTP/1.1\r\nHost: {{host}}\r\nX-Pad: {}\r\n\r\n",
                    "p".repeat(17 * 1024)
                ),
                "HTTP/1.1 431 Request Header Fields Too Large",
            ),
        ] {
            let text = listeners.same_bytes(&head).await;
            assert!(text.starts_with(status), "{what}: {text}");
        }
        // The router decodes what the fast path leaves alone.
        let text = listeners
            .same_bytes(&format!("{}{CLOSE}", key_read("SITE%5FNAME")))
            .await;
        assert!(text.contains("Config Manager"), "{text}");
        // Pipelined: fast answers, the hand-over in the middle, hyper's answers after it.
        let text = listeners
            .same_bytes(
                &[
                    key_read("SITE_NAME"),
                    key_read("ITEMS_PER_PAGE"),
                    key_read("NO_SUCH_KEY"),
                    key_read("SITE_NAME?format=raw"),
                    CLOSE.to_owned(),
                ]
                .concat(),
            )
            .await;
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 4, "{text}");
        assert_eq!(text.matches("HTTP/1.1 404 Not Found").count(), 1, "{text}");
    }

    #[tokio::test]
    async fn a_foreign_host_gets_421_from_both_paths_and_the_probes() {
        let state = state();
        let fast = fast(&state);
        // The fast path leaves a refused Host to the router, which answers 421.
        assert_eq!(
            direct(&fast, "/v1/configs/SITE_NAME", None, "evil.example:7070"),
            None
        );
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
