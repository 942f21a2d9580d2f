//! The probe listener: `/healthz` (the process answers), `/readyz` (a usable snapshot is being
//! served; flips once), `/status` (the whole state as JSON, with the cause of any staleness),
//! `/metrics` (Prometheus text).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::SidecarState;

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<Arc<SidecarState>>) -> Response {
    if state.store.is_ready() {
        (StatusCode::OK, Json(json!({"ready": true}))).into_response()
    } else {
        let cause =
            "no usable snapshot yet (--require-snapshot: waiting for Redis or a disk snapshot)";
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "cause": cause, "sync": state.sync.status()})),
        )
            .into_response()
    }
}

pub async fn status(State(state): State<Arc<SidecarState>>) -> Json<serde_json::Value> {
    let snap = state.store.load();
    Json(json!({
        "namespace": &*snap.namespace,
        "epoch": snap.position.epoch,
        "version": snap.position.version,
        "generation": snap.position.generation,
        "source": snap.source,
        "stale": state.store.is_stale(),
        "age_seconds": state.store.age().map(|a| a.as_secs_f64()),
        "ready": state.store.is_ready(),
        "keys": snap.len(),
        "schema_hash": &*snap.schema_hash,
        "rejected_values": snap.rejected().collect::<Vec<_>>(),
        "unknown_keys": snap.unknown_keys(),
        "watchers": state.watchers.load(Ordering::Relaxed),
        "sync": state.sync.status(),
    }))
}

pub async fn metrics(State(state): State<Arc<SidecarState>>) -> Response {
    state.snapshot_metrics.observe_store(&state.store);
    let mut resp = state.metrics.encode().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}
