//! `GET /audit` (global admins): the audit log newest first, with the API's filters (actor,
//! action, target, date range) as a GET form so a filtered view is a URL, and paging by
//! "Older". It reads through the same `admin::audit::audit_query` and store call as
//! `GET /api/v1/audit`, under the same `Needs` (global admin).

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use serde_json::Value;

use crate::admin::audit::{audit_query, AuditParams};
use crate::admin::AdminState;
use crate::auth::guard::store_error;
use crate::auth::store::AuditEvent;
use crate::auth::Principal;
use crate::http::{ApiError, ApiQuery};
use crate::ui::layout::{Layout, Section};
use crate::ui::render;
use crate::ui::time::When;

/// Actions offered as suggestions in the filter (docs/SECURITY.md lists them all).
pub const KNOWN_ACTIONS: &[&str] = &[
    "login_ok",
    "login_failed",
    "logout",
    "lockout",
    "token_created",
    "token_first_use",
    "token_revoked",
    "bootstrap_token_used",
    "user_created",
    "roles_changed",
    "password_changed",
    "user_disabled",
    "user_enabled",
    "mfa_enrolled",
    "mfa_reset",
    "forbidden",
];

/// Whether an action records something refused or failed (shown with a "denied" badge).
pub fn is_denial(action: &str) -> bool {
    action == "forbidden"
        || action == "lockout"
        || action.ends_with("_failed")
        || action.ends_with("_denied")
        || action.ends_with("_refused")
}

/// `details` as one line of `key=value` pairs (strings unquoted); empty for none.
pub fn details_text(details: &Value) -> String {
    match details {
        Value::Null => String::new(),
        Value::Object(m) if m.is_empty() => String::new(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// One row of the log.
pub struct Row {
    pub id: u64,
    pub when: When,
    pub action: String,
    pub denial: bool,
    pub actor: String,
    pub target: String,
    pub ip: String,
    pub request_id: String,
    pub details: String,
}

fn row(e: &AuditEvent, now: chrono::DateTime<Utc>) -> Row {
    let ev = &e.event;
    Row {
        id: e.id,
        when: When::new(ev.at, now),
        denial: is_denial(&ev.action),
        action: ev.action.clone(),
        actor: ev.actor.clone(),
        target: ev.target.clone().unwrap_or_default(),
        ip: ev.ip.clone().unwrap_or_default(),
        request_id: ev.request_id.clone().unwrap_or_default(),
        details: details_text(&ev.details),
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub layout: Layout,
    pub rows: Vec<Row>,
    pub action: String,
    pub actor: String,
    pub target: String,
    pub since: String,
    pub until: String,
    pub limit: String,
    pub actions: &'static [&'static str],
    pub filtered: bool,
    pub older: Option<String>,
    pub paged: bool,
    pub newest: String,
    pub error: Option<String>,
}

/// `/audit?…` with the filters of `p` and `before` (empty filters left out).
pub fn audit_url(p: &AuditParams, before: Option<u64>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (name, v) in [
        ("action", &p.action),
        ("actor", &p.actor),
        ("target", &p.target),
        ("since", &p.since),
        ("until", &p.until),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.trim().is_empty()) {
            q.append_pair(name, v);
        }
    }
    if let Some(l) = p.limit {
        q.append_pair("limit", &l.to_string());
    }
    if let Some(b) = before {
        q.append_pair("before", &b.to_string());
    }
    let q = q.finish();
    if q.is_empty() {
        "/audit".to_owned()
    } else {
        format!("/audit?{q}")
    }
}

fn text(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

/// `GET /audit`
pub async fn page(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let (rows, older, error, status) = match audit_query(&p) {
        Err(e) => (Vec::new(), None, Some(e.message), StatusCode::BAD_REQUEST),
        Ok(query) => {
            let page = state.auth.store.audit(&query).await.map_err(store_error)?;
            let rows = page.events.iter().map(|e| row(e, now)).collect();
            let older = page.next.map(|n| audit_url(&p, Some(n)));
            (rows, older, None, StatusCode::OK)
        }
    };
    let filtered = [&p.action, &p.actor, &p.target, &p.since, &p.until]
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| !v.trim().is_empty()));
    let title = if filtered {
        "Audit log (filtered)"
    } else {
        "Audit log"
    };
    let page = AuditPage {
        layout: Layout::new(&principal, title, Section::Audit, None),
        rows,
        action: text(&p.action),
        actor: text(&p.actor),
        target: text(&p.target),
        since: text(&p.since),
        until: text(&p.until),
        limit: p.limit.map(|l| l.to_string()).unwrap_or_default(),
        actions: KNOWN_ACTIONS,
        filtered,
        paged: p.before.is_some(),
        newest: audit_url(&p, None),
        older,
        error,
    };
    Ok(render(status, &page))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn denials_are_the_refused_and_failed_actions() {
        for (action, want) in [
            ("login_failed", true),
            ("forbidden", true),
            ("lockout", true),
            ("login_ok", false),
            ("token_created", false),
            ("mfa_reset", false),
        ] {
            assert_eq!(is_denial(action), want, "{action}");
        }
    }

    #[test]
    fn details_read_as_one_line() {
        for (details, want) in [
            (json!(null), ""),
            (json!({}), ""),
            (
                json!({"route": "/api/v1/audit", "n": 3}),
                "route=/api/v1/audit n=3",
            ),
            (json!("x"), "\"x\""),
        ] {
            assert_eq!(details_text(&details), want, "{details}");
        }
    }

    #[test]
    fn urls_keep_the_filters_and_drop_empty_ones() {
        let p = AuditParams {
            action: Some("login_failed".into()),
            actor: Some(" ".into()),
            target: Some("bob smith".into()),
            limit: Some(20),
            ..AuditParams::default()
        };
        assert_eq!(
            audit_url(&p, Some(7)),
            "/audit?action=login_failed&target=bob+smith&limit=20&before=7"
        );
        assert_eq!(audit_url(&AuditParams::default(), None), "/audit");
    }
}
