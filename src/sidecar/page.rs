//! `GET /`: a small live status page, the demo page of the system rtconfig replaces.
//!
//! Server-rendered with the current state embedded (secrets masked), then kept live by an
//! `EventSource` on `/v1/watch?mask=secrets` — no polling. When the namespace has the demo
//! keys, the page uses them the way the original demo did: `SITE_NAME` as the title,
//! `THEME_COLOR`, `WELCOME_MESSAGE`, the `MAINTENANCE_MODE` banner, and `SHOW_LOGS` /
//! `LOGS_COUNT` for the list of recent changes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::read::read_headers;
use super::SidecarState;
use crate::http::headers::HTML;
use crate::http::NoQuery;

const TEMPLATE: &str = include_str!("page.html");

pub async fn page(State(state): State<Arc<SidecarState>>, _: NoQuery) -> Response {
    if let Err(e) = state.require_snapshot() {
        return e.into_response();
    }
    let snap = state.store.load();
    let stale = state.store.is_stale();
    let mut initial = snap.masked_document(stale);
    initial["recent"] = json!(state.store.recent_changes());
    // Safe inside <script>: no "</" can close the tag, and U+2028/9 are escaped.
    let data = initial
        .to_string()
        .replace("</", "<\\/")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    let html = TEMPLATE.replace("__INITIAL_STATE__", &data);
    let mut resp = ([(header::CONTENT_TYPE, HTML)], html).into_response();
    read_headers(resp.headers_mut(), &snap, &state.store, stale);
    resp
}
