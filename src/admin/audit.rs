//! `GET /api/v1/audit?action=&actor=&before=&limit=` (global admins): the audit log, newest
//! first; `next` is the `before` of the next page.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::AdminState;
use crate::auth::guard::store_error;
use crate::auth::store::{AuditEvent, AuditQuery};
use crate::http::{ApiError, ApiQuery};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    action: Option<String>,
    actor: Option<String>,
    before: Option<u64>,
    limit: Option<usize>,
}

fn event_json(e: &AuditEvent) -> Value {
    let ev = &e.event;
    json!({
        "id": e.id,
        "at": ev.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "action": ev.action,
        "actor": ev.actor,
        "target": ev.target,
        "ip": ev.ip,
        "user_agent": ev.user_agent,
        "request_id": ev.request_id,
        "details": ev.details,
    })
}

/// `GET /api/v1/audit`
pub async fn list(
    State(state): State<Arc<AdminState>>,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be between 1 and 1000",
        ));
    }
    let page = state
        .auth
        .store
        .audit(&AuditQuery {
            action: q.action.filter(|a| !a.is_empty()),
            actor: q.actor.filter(|a| !a.is_empty()),
            before: q.before,
            limit,
        })
        .await
        .map_err(store_error)?;
    let events: Vec<Value> = page.events.iter().map(event_json).collect();
    let mut body = json!({ "events": events });
    if let Some(next) = page.next {
        body["next"] = json!(next);
    }
    Ok(Json(body).into_response())
}
