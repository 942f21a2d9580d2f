//! `GET /v1/watch`: Server-Sent Events.
//!
//! On connect: `event: snapshot` with the whole `/v1/configs` document — unless the client's
//! `Last-Event-ID` is the current `<epoch>-<version>`, in which case it is already up to date.
//! Then one `event: change` per swap, `data: {"epoch","version","changes":{KEY: value}}` (a
//! client that fell behind gets the combined changes; a new epoch gets a fresh `snapshot`).
//! `event: status` reports staleness and source when they change. Every event's `id` is
//! `<epoch>-<version>`. `?mask=secrets` masks secret values (the status page uses it).
//! Streams end when the process shuts down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::read::{parse_index, read_headers};
use super::SidecarState;
use crate::http::query;
use crate::http::ApiError;
use crate::snapshot::Snapshot;

const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often a stream checks whether staleness changed.
const STATUS_TICK: Duration = Duration::from_secs(1);

pub async fn watch(
    State(state): State<Arc<SidecarState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    // Checked before a watcher slot is taken; an unknown `mask` fails closed.
    let mask = match watch_query(&uri) {
        Ok(mask) => mask,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = state.require_snapshot() {
        return e.into_response();
    }
    let slot = match state.watcher() {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let mut changed = state.store.subscribe();
    changed.borrow_and_update();
    let first = state.store.load();
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|text| parse_index(text, first.position.epoch));
    let up_to_date = resume
        .is_some_and(|p| (p.epoch, p.version) == (first.position.epoch, first.position.version));
    let stop = state.shutdown.wait();
    // The stream starts at `first`: its headers say so, like every read's.
    let mut headers_out = axum::http::HeaderMap::new();
    read_headers(
        &mut headers_out,
        &first,
        &state.store,
        state.store.is_stale(),
    );

    let stream = async_stream::stream! {
        let _slot = slot;
        tokio::pin!(stop);
        let mut last = first;
        let mut last_status = (state.store.is_stale(), last.source);
        if !up_to_date {
            yield Ok::<Event, Infallible>(snapshot_event(&last, last_status.0, mask));
        }
        let mut tick = tokio::time::interval(STATUS_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                res = changed.changed() => {
                    if res.is_err() {
                        break;
                    }
                    let current = state.store.load();
                    let stale = state.store.is_stale();
                    if current.position.epoch != last.position.epoch {
                        yield Ok(snapshot_event(&current, stale, mask));
                    } else if current.position != last.position {
                        let changes = current
                            .delta_changes(last.position)
                            .unwrap_or_else(|| current.diff(&last));
                        yield Ok(change_event(&current, &changes, mask));
                    }
                    if (stale, current.source) != last_status {
                        last_status = (stale, current.source);
                        yield Ok(status_event(&current, stale));
                    }
                    last = current;
                }
                _ = tick.tick() => {
                    let stale = state.store.is_stale();
                    if (stale, last.source) != last_status {
                        last_status = (stale, last.source);
                        yield Ok(status_event(&last, stale));
                    }
                }
                () = &mut stop => break,
            }
        }
    };
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    resp.headers_mut().extend(headers_out);
    resp
}

/// The query of `/v1/watch`: nothing, or `mask=secrets` (→ `true`). Any other value of `mask`
/// is refused, never taken as "no masking": a typo must not stream secrets in clear.
fn watch_query(uri: &Uri) -> Result<bool, ApiError> {
    let query = query::parse(uri.query(), &["mask"])?;
    match query.get("mask") {
        None => Ok(false),
        Some("secrets") => Ok(true),
        Some(other) => Err(query::invalid(format!(
            "mask must be secrets (the only thing that can be masked), got {other:?}"
        ))),
    }
}

fn snapshot_event(snap: &Snapshot, stale: bool, mask: bool) -> Event {
    let event = Event::default().event("snapshot").id(snap.position.tag());
    if mask {
        return event.data(snap.masked_document(stale).to_string());
    }
    // The event copies what it is given into its own buffer: give it the document's bytes as
    // they are (UTF-8, written by `serde_json`), not a `String` copy of them first (7 MB at
    // 100k keys).
    let document = snap.document(stale);
    match std::str::from_utf8(&document) {
        Ok(text) => event.data(text),
        Err(_) => event.data(String::from_utf8_lossy(&document)),
    }
}

fn change_event(snap: &Snapshot, changes: &[(Box<str>, Value)], mask: bool) -> Event {
    Event::default()
        .event("change")
        .id(snap.position.tag())
        .data(
            json!({
                "epoch": snap.position.epoch,
                "version": snap.position.version,
                "changes": snap.changes_json(changes, mask),
            })
            .to_string(),
        )
}

fn status_event(snap: &Snapshot, stale: bool) -> Event {
    Event::default()
        .event("status")
        .id(snap.position.tag())
        .data(json!({"stale": stale, "source": snap.source, "version": snap.position.version, "epoch": snap.position.epoch}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_fails_closed() {
        let q = |text: &str| watch_query(&text.parse::<Uri>().expect("uri")).map_err(|e| e.code);
        assert_eq!(q("/v1/watch"), Ok(false));
        assert_eq!(q("/v1/watch?mask=secrets"), Ok(true));
        assert_eq!(q("/v1/watch?mask=%73ecrets"), Ok(true));
        for bad in [
            "mask=secret",
            "mask=",
            "mask",
            "mask=SECRETS",
            "mask=secrets&mask=secrets",
            "x=1",
        ] {
            assert_eq!(
                q(&format!("/v1/watch?{bad}")),
                Err("invalid_query"),
                "{bad}"
            );
        }
    }
}
