//! The sidecar's HTTP side: the read API on loopback and the probe listener.
//!
//! Read API (`--listen`, default `127.0.0.1:7070`; [`read_router`]):
//! - `GET /v1/configs` — every value; `ETag`/`If-None-Match`; long-poll with `?index=E-V&wait=30s`
//! - `GET /v1/configs/{key}` — one value; `?format=raw` for the bare value as text
//! - `GET /v1/watch` — Server-Sent Events: `snapshot`, then `change` events; `Last-Event-ID`
//! - `POST /ofrep/v1/evaluate/flags[/{key}]` — OpenFeature Remote Evaluation Protocol 0.3
//! - `GET /` — a live status page
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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tower_http::timeout::TimeoutLayer;

use crate::http::server::{limit_uri, method_not_allowed, not_found, record_metrics};
use crate::http::ApiError;
use crate::metrics::Metrics;
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
    pub metrics: Arc<Metrics>,
    pub shutdown: Shutdown,
    pub sync: Arc<dyn SyncReport>,
    /// Open long-polls and SSE streams, and their cap.
    watchers: AtomicUsize,
    max_watchers: usize,
}

impl SidecarState {
    pub fn new(
        store: Arc<SnapshotStore>,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
        sync: Arc<dyn SyncReport>,
        max_watchers: usize,
    ) -> Arc<SidecarState> {
        Arc::new(SidecarState {
            store,
            metrics,
            shutdown,
            sync,
            watchers: AtomicUsize::new(0),
            max_watchers,
        })
    }

    /// Takes a watcher slot, or refuses with 503 when all are taken.
    fn watcher(self: &Arc<Self>) -> Result<WatcherSlot, ApiError> {
        let taken = self.watchers.fetch_add(1, Ordering::AcqRel);
        if taken >= self.max_watchers {
            self.watchers.fetch_sub(1, Ordering::AcqRel);
            self.metrics.watchers_rejected.inc();
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
        self.metrics.watchers.inc();
        Ok(WatcherSlot(self.clone()))
    }
}

/// A held watcher slot; released on drop.
struct WatcherSlot(Arc<SidecarState>);

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.watchers.dec();
    }
}

/// Requests that are not streams must finish in this time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// OFREP request bodies are small contexts.
const OFREP_BODY_LIMIT: usize = 64 * 1024;

/// The read API.
pub fn read_router(state: Arc<SidecarState>) -> Router {
    let timed = Router::new()
        .route(
            "/v1/configs/{key}",
            get(read::one).fallback(method_not_allowed),
        )
        .route(
            "/ofrep/v1/evaluate/flags",
            post(ofrep::bulk).fallback(method_not_allowed),
        )
        .route(
            "/ofrep/v1/evaluate/flags/{key}",
            post(ofrep::single).fallback(method_not_allowed),
        )
        .route("/", get(page::page).fallback(method_not_allowed))
        .layer(axum::extract::DefaultBodyLimit::max(OFREP_BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ));
    // Streams and long-polls bound their own time.
    let streaming = Router::new()
        .route("/v1/configs", get(read::all).fallback(method_not_allowed))
        .route("/v1/watch", get(watch::watch).fallback(method_not_allowed));
    timed
        .merge(streaming)
        .fallback(not_found)
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            record_metrics,
        ))
        .layer(axum::middleware::from_fn(limit_uri))
        .with_state(state)
}

/// The probe listener.
pub fn probe_router(state: Arc<SidecarState>) -> Router {
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
        .with_state(state)
}
