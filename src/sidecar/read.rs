//! `GET /v1/configs` (with ETag and long-poll) and `GET /v1/configs/{key}`: the hot path.
//!
//! A read is: load the snapshot (lock-free), look the key up, clone pre-encoded `Bytes`, add
//! the `X-Config-*` headers. Query strings are parsed by hand to keep allocation off the path.
//!
//! `GET /v1/configs/{key}` for a known key is answered by [`FastKeyRead`] on the wire, before
//! hyper and routing (see `http::fast_conn`), with the same bytes and metrics as the routed
//! handler [`one`], which stays the reference (the tests compare the two over TCP) and still
//! answers everything the fast path leaves alone (unknown keys, `HEAD`, percent-encoded keys,
//! over-long URIs, other queries).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::SidecarState;
use crate::http::headers::{self as h, etag_matches};
use crate::http::host::HostPolicy;
use crate::http::query;
use crate::http::server::{FastPath, FastRequest, MAX_URI_BYTES};
use crate::http::ApiError;
use crate::metrics::RouteMetrics;
use crate::snapshot::{Position, Snapshot, SnapshotStore, Source};

/// Longest long-poll a client may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// Long-poll wait when `index` is given without `wait`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// `GET /v1/configs/{key}`
pub async fn one(
    State(state): State<Arc<SidecarState>>,
    Path(key): Path<String>,
    uri: Uri,
) -> Response {
    let raw = match key_query(&uri) {
        Ok(raw) => raw,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = state.require_snapshot() {
        return e.into_response();
    }
    let snap = state.store.guard();
    let Some(entry) = snap.get(&key) else {
        return ApiError::unknown_key(&key).into_response();
    };
    let stale = state.store.is_stale();
    let (body, content_type) = if raw {
        (snap.raw_body(entry), h::TEXT)
    } else {
        (snap.key_body(entry, stale), h::JSON)
    };
    let mut resp = Response::new(Body::from(body));
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    read_headers(headers, &snap, &state.store, stale);
    resp
}

/// The query of a key read: nothing, or `format=raw` (→ `true`); anything else is 400
/// `invalid_query`.
fn key_query(uri: &Uri) -> Result<bool, ApiError> {
    let query = query::parse(uri.query(), &["format"])?;
    match query.get("format") {
        None => Ok(false),
        Some("raw") => Ok(true),
        Some(other) => Err(query::invalid(format!(
            "format must be raw (the bare value as text; leave it out for JSON), got {other:?}"
        ))),
    }
}

/// The route of `GET /v1/configs/{key}`: the router's pattern, and so its label in
/// `rtconfig_http_*` metrics, which the fast path counts under too.
pub(super) const KEY_ROUTE: &str = "/v1/configs/{key}";
const KEY_PREFIX: &str = "/v1/configs/";

/// `GET /v1/configs/{key}` for a known key, answered on the wire before hyper and routing
/// (`http::fast_conn`): the bytes hyper writes for [`one`]'s response, and the same
/// `rtconfig_http_requests_total` / `rtconfig_http_request_duration_seconds` series as the route
/// table's counting middleware (`http::routes`). Anything else goes to the router.
pub(super) struct FastKeyRead {
    state: Arc<SidecarState>,
    /// The read listener's `Host` check: a request it refuses is left to the router, whose
    /// middleware answers 421 (so both paths answer alike).
    hosts: Arc<HostPolicy>,
    /// The series of [`KEY_ROUTE`] (the ones the middleware counts into), resolved on first
    /// use and then updated without the families' lock and hash.
    series: RouteMetrics,
    /// The encoded headers that depend only on the snapshot's position and source.
    template: ArcSwapOption<PositionHeaders>,
}

/// `x-config-version`, `x-config-epoch` and `x-config-source` of one snapshot, encoded as hyper
/// writes them (`name: value\r\n`).
struct PositionHeaders {
    position: Position,
    source: Source,
    bytes: Vec<u8>,
}

impl PositionHeaders {
    fn of(snap: &Snapshot) -> PositionHeaders {
        let mut bytes = Vec::with_capacity(96);
        for (name, value) in [
            (&h::X_CONFIG_VERSION, &snap.version_header),
            (&h::X_CONFIG_EPOCH, &snap.epoch_header),
            (&h::X_CONFIG_SOURCE, &h::source(snap.source)),
        ] {
            bytes.extend_from_slice(name.as_str().as_bytes());
            bytes.extend_from_slice(b": ");
            bytes.extend_from_slice(value.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        PositionHeaders {
            position: snap.position,
            source: snap.source,
            bytes,
        }
    }
}

/// The status line and `content-type` of a JSON and of a raw (`format=raw`) key read.
const HEAD_JSON: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n";
const HEAD_TEXT: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\n";

impl FastKeyRead {
    pub(super) fn new(state: Arc<SidecarState>, hosts: Arc<HostPolicy>) -> FastKeyRead {
        FastKeyRead {
            series: state.http_metrics.route(KEY_ROUTE),
            state,
            hosts,
            template: ArcSwapOption::empty(),
        }
    }

    /// Appends `snap`'s [`PositionHeaders`], encoding them once per snapshot.
    fn position_headers(&self, snap: &Snapshot, out: &mut Vec<u8>) {
        let template = self.template.load();
        match &*template {
            Some(t) if t.position == snap.position && t.source == snap.source => {
                out.extend_from_slice(&t.bytes);
            }
            _ => {
                let fresh = PositionHeaders::of(snap);
                out.extend_from_slice(&fresh.bytes);
                self.template.store(Some(Arc::new(fresh)));
            }
        }
    }
}

/// A key read's key: the schema's key names are `[A-Za-z][A-Za-z0-9_.-]*`, so anything else
/// (empty, `%XX`, another segment) is the router's, which decodes or refuses it.
fn plain_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl FastPath for FastKeyRead {
    fn answer(&self, req: &FastRequest<'_>, date: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(key) = req.path.strip_prefix(KEY_PREFIX) else {
            return false;
        };
        // The router refuses over-long URIs (414) and answers other queries (400).
        let uri_len = req.path.len() + req.query.map_or(0, |q| q.len() + 1);
        if !plain_key(key) || uri_len > MAX_URI_BYTES || !self.hosts.allows_host(req.host) {
            return false;
        }
        let raw = match req.query {
            None | Some("") => false,
            Some("format=raw") => true,
            Some(_) => return false,
        };
        let started = Instant::now();
        let store = &self.state.store;
        // Not ready (`--require-snapshot`, nothing loaded yet): the router answers 503.
        if !store.is_ready() {
            return false;
        }
        let snap = store.guard();
        let Some(entry) = snap.get(key) else {
            return false;
        };
        let stale = store.is_stale();
        let body = if raw {
            snap.raw_body(entry)
        } else {
            snap.key_body(entry, stale)
        };
        // In the order of `one`'s headers (hyper keeps the map's order), then hyper's own.
        out.extend_from_slice(if raw { HEAD_TEXT } else { HEAD_JSON });
        self.position_headers(&snap, out);
        out.extend_from_slice(b"x-config-age: ");
        match store.age() {
            Some(age) => {
                out.extend_from_slice(itoa::Buffer::new().format(age.as_secs()).as_bytes())
            }
            None => out.extend_from_slice(b"-1"),
        }
        out.extend_from_slice(if stale {
            b"\r\nx-config-stale: true\r\ncache-control: no-store\r\ncontent-length: "
        } else {
            b"\r\nx-config-stale: false\r\ncache-control: no-store\r\ncontent-length: "
        });
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\ndate: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&body);
        self.series.record(StatusCode::OK, started.elapsed());
        true
    }
}

/// `GET /v1/configs` — with `If-None-Match` → 304, and `?index=E-V&wait=30s` long-poll.
pub async fn all(
    State(state): State<Arc<SidecarState>>,
    uri: Uri,
    request_headers: HeaderMap,
) -> Response {
    let query = match query::parse(uri.query(), &["index", "wait"]) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = state.require_snapshot() {
        return e.into_response();
    }
    let index = match query.get("index") {
        Some(text) => match parse_index(text, state.store.guard().position.epoch) {
            Some(p) => Some(p),
            None => {
                return ApiError::bad_request(
                    "invalid_query",
                    format!("index must be <epoch>-<version> or <version>, got {text:?}"),
                )
                .into_response()
            }
        },
        None => None,
    };
    let wait = match query.get("wait") {
        Some(text) => match parse_wait(text) {
            Some(w) => w.min(MAX_WAIT),
            None => {
                return ApiError::bad_request(
                    "invalid_query",
                    format!("wait must be a duration such as 30s or 5m (max 300s), got {text:?}"),
                )
                .into_response()
            }
        },
        None => DEFAULT_WAIT,
    };
    if let Some(index) = index {
        let is_newer = |p: &Position| (p.epoch, p.version) > (index.epoch, index.version);
        if !is_newer(&state.store.guard().position) {
            let _slot = match state.watcher() {
                Ok(slot) => slot,
                Err(e) => return e.into_response(),
            };
            let mut changed = state.store.subscribe();
            let stop = state.shutdown.wait();
            // Either a newer snapshot, the wait ends, or the process stops: answer with the
            // current state in all three cases.
            tokio::select! {
                _ = changed.wait_for(is_newer) => {}
                () = tokio::time::sleep(wait) => {}
                () = stop => {}
            }
        }
    }
    let snap = state.store.guard();
    let stale = state.store.is_stale();
    let not_modified = request_headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| etag_matches(v, &snap.etag));
    let mut resp = if not_modified {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Body::from(snap.document(stale)));
        r.headers_mut().insert(header::CONTENT_TYPE, h::JSON);
        r
    };
    let headers = resp.headers_mut();
    headers.insert(header::ETAG, snap.etag.clone());
    read_headers(headers, &snap, &state.store, stale);
    resp
}

/// The `X-Config-*` headers every read carries.
pub fn read_headers(headers: &mut HeaderMap, snap: &Snapshot, store: &SnapshotStore, stale: bool) {
    write_read_headers(headers, snap, store.age(), stale);
}

fn write_read_headers(
    headers: &mut HeaderMap,
    snap: &Snapshot,
    age: Option<Duration>,
    stale: bool,
) {
    headers.insert(h::X_CONFIG_VERSION, snap.version_header.clone());
    headers.insert(h::X_CONFIG_EPOCH, snap.epoch_header.clone());
    headers.insert(h::X_CONFIG_SOURCE, h::source(snap.source));
    headers.insert(h::X_CONFIG_AGE, age_header(age));
    headers.insert(h::X_CONFIG_STALE, if stale { h::TRUE } else { h::FALSE });
    headers.insert(header::CACHE_CONTROL, h::NO_STORE);
}

/// `X-Config-Age`: whole seconds since last confirmed in sync, `-1` when never confirmed.
fn age_header(age: Option<Duration>) -> HeaderValue {
    match age {
        Some(a) if a.as_secs() == 0 => HeaderValue::from_static("0"),
        Some(a) => HeaderValue::from(a.as_secs()),
        None => HeaderValue::from_static("-1"),
    }
}

/// `E-V`, or a bare `V` meaning the current epoch. Quotes (a copied ETag) are tolerated.
pub fn parse_index(text: &str, current_epoch: u64) -> Option<Position> {
    let text = text.trim_matches('"');
    let text = text.strip_prefix("%22").unwrap_or(text);
    let text = text.strip_suffix("%22").unwrap_or(text);
    // An ETag of a repaired snapshot carries `.generation`; the index is epoch and version.
    let text = text.split_once('.').map_or(text, |(ev, _)| ev);
    match text.split_once('-') {
        Some((e, v)) => Some(Position::new(e.parse().ok()?, v.parse().ok()?)),
        None => Some(Position::new(current_epoch, text.parse().ok()?)),
    }
}

/// `30s`, `5m`, `250ms`, or bare seconds (`30`, `0.5`).
pub fn parse_wait(text: &str) -> Option<Duration> {
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e6)));
    }
    humantime::parse_duration(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_keys_are_the_schema_names_and_nothing_the_router_would_decode() {
        for yes in ["A", "SITE_NAME", "a.b-c_9"] {
            assert!(plain_key(yes), "{yes}");
        }
        for no in ["", "SITE%5FNAME", "A/B", "A B", "A{B", "Ä"] {
            assert!(!plain_key(no), "{no}");
        }
    }

    #[test]
    fn age_is_whole_seconds_or_minus_one() {
        assert_eq!(age_header(None), "-1");
        assert_eq!(age_header(Some(Duration::ZERO)), "0");
        assert_eq!(age_header(Some(Duration::from_millis(999))), "0");
        assert_eq!(age_header(Some(Duration::from_millis(61_500))), "61");
    }

    #[test]
    fn index_accepts_epoch_version_bare_version_and_quoted_etags() {
        assert_eq!(parse_index("2-7", 1), Some(Position::new(2, 7)));
        assert_eq!(parse_index("7", 3), Some(Position::new(3, 7)));
        assert_eq!(parse_index("\"1-4\"", 1), Some(Position::new(1, 4)));
        assert_eq!(parse_index("%221-4%22", 1), Some(Position::new(1, 4)));
        assert_eq!(parse_index("\"1-4.2\"", 1), Some(Position::new(1, 4)));
        assert_eq!(parse_index("x", 1), None);
        assert_eq!(parse_index("1-", 1), None);
        assert_eq!(parse_index("-1", 1), None);
    }

    #[test]
    fn wait_accepts_units_and_bare_seconds() {
        assert_eq!(parse_wait("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_wait("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_wait("-1"), None);
        assert_eq!(parse_wait("soon"), None);
    }

    #[test]
    fn a_key_read_takes_format_raw_and_nothing_else() {
        let q = |text: &str| key_query(&text.parse::<Uri>().expect("uri")).map_err(|e| e.code);
        assert_eq!(q("/v1/configs/A"), Ok(false));
        assert_eq!(q("/v1/configs/A?format=raw"), Ok(true));
        for bad in [
            "?format=RAW",
            "?format=",
            "?format=raw&format=raw",
            "?fromat=raw",
            "?x",
        ] {
            assert_eq!(
                q(&format!("/v1/configs/A{bad}")),
                Err("invalid_query"),
                "{bad}"
            );
        }
    }
}
