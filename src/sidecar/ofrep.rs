//! OpenFeature Remote Evaluation Protocol 0.3 (`/ofrep/v1/evaluate/flags[/{key}]`), so any
//! OpenFeature SDK with an OFREP provider reads our configs.
//!
//! Configs have no targeting: the evaluation context is accepted (and may be absent) and every
//! answer has `reason: "STATIC"`. `variant` is `default` when the schema default is served,
//! `configured` otherwise; `metadata` carries `version` — the key's own: the version of the
//! last changeset that changed that key, so a provider that compares it sees a flag change only
//! when that flag changed — `epoch`, `source` and `stale`. The bulk answer's `metadata.version`
//! is the namespace's (with its ETag).
//! Errors use OFREP's shapes: `{"key","errorCode","errorDetails"}` (`FLAG_NOT_FOUND`,
//! `PARSE_ERROR`). The bulk call supports `If-None-Match` → 304 with the snapshot's ETag.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::read::read_headers;
use super::SidecarState;
use crate::http::headers::{etag_matches, JSON};
use crate::http::NoQuery;
use crate::snapshot::{Entry, Snapshot};
use crate::telemetry::Chain;

/// A body that could not be read (over the size limit) answered in OFREP's error shape, not
/// axum's plain text.
fn unreadable_body(key: Option<&str>, rejection: &BytesRejection) -> Response {
    let mut body = json!({"errorCode": "INVALID_CONTEXT", "errorDetails": format!("cannot read the request body: {}", rejection.body_text())});
    if let Some(key) = key {
        body["key"] = json!(key);
    }
    json_response(rejection.status(), &body)
}

/// Why an evaluation request's body was refused (`PARSE_ERROR`; the chain is `errorDetails`).
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("the body is not JSON")]
    NotJson(#[source] serde_json::Error),
    #[error("the body must be a JSON object")]
    NotAnObject,
    #[error("\"context\" must be an object")]
    ContextNotAnObject,
}

/// The request body is optional; when present it must be a JSON object whose `context`, if
/// any, is an object.
fn check_body(body: &Bytes) -> Result<(), BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let v: Value = serde_json::from_slice(body).map_err(BodyError::NotJson)?;
    match v.get("context") {
        None | Some(Value::Object(_)) | Some(Value::Null) if v.is_object() => Ok(()),
        _ if !v.is_object() => Err(BodyError::NotAnObject),
        _ => Err(BodyError::ContextNotAnObject),
    }
}

/// 503 in OFREP's error shape (`GENERAL`): `--require-snapshot` and no real snapshot yet.
fn not_ready(key: Option<&str>) -> Response {
    let mut body = json!({"errorCode": "GENERAL", "errorDetails": super::no_snapshot().message});
    if let Some(key) = key {
        body["key"] = json!(key);
    }
    let mut resp = json_response(StatusCode::SERVICE_UNAVAILABLE, &body);
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    resp
}

fn evaluation(snap: &Snapshot, entry: &Entry, stale: bool) -> Value {
    json!({
        "key": &*entry.key,
        "value": entry.value(),
        "reason": "STATIC",
        "variant": if entry.is_default { "default" } else { "configured" },
        "metadata": {
            "version": entry.version,
            "epoch": snap.position.epoch,
            "source": snap.source.as_str(),
            "stale": stale,
        },
    })
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, JSON);
    resp
}

/// `POST /ofrep/v1/evaluate/flags/{key}`
pub async fn single(
    State(state): State<Arc<SidecarState>>,
    _: NoQuery,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => return unreadable_body(Some(&key), &rejection),
    };
    if let Err(e) = check_body(&body) {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"key": key, "errorCode": "PARSE_ERROR", "errorDetails": Chain(&e).to_string()}),
        );
    }
    if !state.store.is_ready() {
        return not_ready(Some(&key));
    }
    let snap = state.store.load();
    let Some(entry) = snap.get(&key) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"key": key, "errorCode": "FLAG_NOT_FOUND", "errorDetails": format!("no config key named {key:?}")}),
        );
    };
    let stale = state.store.is_stale();
    let mut resp = json_response(StatusCode::OK, &evaluation(&snap, entry, stale));
    read_headers(resp.headers_mut(), &snap, &state.store, stale);
    resp
}

/// `POST /ofrep/v1/evaluate/flags`
pub async fn bulk(
    State(state): State<Arc<SidecarState>>,
    _: NoQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => return unreadable_body(None, &rejection),
    };
    if let Err(e) = check_body(&body) {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"errorCode": "PARSE_ERROR", "errorDetails": Chain(&e).to_string()}),
        );
    }
    if !state.store.is_ready() {
        return not_ready(None);
    }
    let snap = state.store.load();
    let stale = state.store.is_stale();
    let mut resp = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| etag_matches(v, &snap.etag))
    {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let flags: Vec<Value> = snap
            .entries()
            .map(|e| evaluation(&snap, e, stale))
            .collect();
        json_response(
            StatusCode::OK,
            &json!({
                "flags": flags,
                "metadata": {"version": snap.position.version, "epoch": snap.position.epoch, "namespace": &*snap.namespace},
            }),
        )
    };
    resp.headers_mut().insert(header::ETAG, snap.etag.clone());
    read_headers(resp.headers_mut(), &snap, &state.store, stale);
    resp.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_may_be_empty_or_carry_an_object_context() {
        for ok in [
            "",
            "  ",
            "{}",
            "{\"context\":{}}",
            "{\"context\":{\"targetingKey\":\"u\"}}",
        ] {
            assert!(check_body(&Bytes::from(ok)).is_ok(), "{ok}");
        }
        for (bad, why) in [
            (
                "{",
                "the body is not JSON: EOF while parsing an object at line 1 column 1",
            ),
            ("[]", "the body must be a JSON object"),
            ("{\"context\":5}", "\"context\" must be an object"),
            ("null", "the body must be a JSON object"),
            ("\"x\"", "the body must be a JSON object"),
        ] {
            let e = check_body(&Bytes::from(bad)).expect_err(bad);
            assert_eq!(Chain(&e).to_string(), why, "{bad}");
        }
    }
}
