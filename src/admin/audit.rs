//! `GET /api/v1/audit?action=&actor=&target=&since=&until=&before=&limit=` (global admins): the
//! audit log, newest first; `next` is the `before` of the next page (it keeps the filters).
//! `since` and `until` take RFC 3339 times or dates (`2026-01-31`, UTC): `since` is inclusive,
//! `until` exclusive, and a date as `until` includes that whole day.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::AdminState;
use crate::auth::guard::store_error;
use crate::auth::store::{AuditEvent, AuditQuery};
use crate::http::{ApiError, ApiQuery};

/// The filters and paging of the audit log, as the API and the `/audit` page take them.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    pub action: Option<String>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub before: Option<u64>,
    pub limit: Option<usize>,
}

/// Which end of a time window a parameter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Since,
    Until,
}

/// `since`/`until`: an RFC 3339 time, or a date (UTC) — as `until`, a date means the end of
/// that day. `None` for an empty value.
pub fn parse_time_bound(text: &str, end: End) -> Result<Option<DateTime<Utc>>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        format!(
            "{text:?} is neither an RFC 3339 time (2026-01-31T12:00:00Z) nor a date (2026-01-31)"
        )
    })?;
    let day = match end {
        End::Since => Some(date),
        End::Until => date.succ_opt(),
    }
    .ok_or_else(|| format!("{text:?} is out of range"))?;
    Ok(Some(day.and_time(NaiveTime::MIN).and_utc()))
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

/// The store query of `q` (empty filters are no filters), or why `q` is refused
/// (`invalid_query`); one reading for the API and the page.
pub fn audit_query(q: &AuditParams) -> Result<AuditQuery, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be between 1 and 1000",
        ));
    }
    let bound = |name: &str, value: Option<&str>, end: End| {
        value
            .map(|v| parse_time_bound(v, end))
            .transpose()
            .map(Option::flatten)
            .map_err(|why| ApiError::bad_request("invalid_query", format!("{name}: {why}")))
    };
    let since = bound("since", q.since.as_deref(), End::Since)?;
    let until = bound("until", q.until.as_deref(), End::Until)?;
    if let (Some(s), Some(u)) = (since, until) {
        if s >= u {
            return Err(ApiError::bad_request(
                "invalid_query",
                "since must be before until",
            ));
        }
    }
    let filter = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Ok(AuditQuery {
        action: filter(&q.action),
        actor: filter(&q.actor),
        target: filter(&q.target),
        since,
        until,
        before: q.before,
        limit,
    })
}

/// `GET /api/v1/audit`
pub async fn list(
    State(state): State<Arc<AdminState>>,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> Result<Response, ApiError> {
    let query = audit_query(&q)?;
    let page = state.auth.store.audit(&query).await.map_err(store_error)?;
    let events: Vec<Value> = page.events.iter().map(event_json).collect();
    let mut body = json!({ "events": events });
    if let Some(next) = page.next {
        body["next"] = json!(next);
    }
    Ok(Json(body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_take_times_and_dates() {
        let t = |s: &str| {
            Some(
                DateTime::parse_from_rfc3339(s)
                    .expect("t")
                    .with_timezone(&Utc),
            )
        };
        type Want = Result<Option<DateTime<Utc>>, ()>;
        let rows: Vec<(&str, End, Want)> = vec![
            ("", End::Since, Ok(None)),
            ("  ", End::Until, Ok(None)),
            (
                "2026-01-31T12:30:00Z",
                End::Since,
                Ok(t("2026-01-31T12:30:00Z")),
            ),
            (
                "2026-01-31T12:30:00+02:00",
                End::Until,
                Ok(t("2026-01-31T10:30:00Z")),
            ),
            ("2026-01-31", End::Since, Ok(t("2026-01-31T00:00:00Z"))),
            ("2026-01-31", End::Until, Ok(t("2026-02-01T00:00:00Z"))),
            ("2024-02-28", End::Until, Ok(t("2024-02-29T00:00:00Z"))),
            ("2026-02-30", End::Since, Err(())),
            ("yesterday", End::Since, Err(())),
            ("2026-01-31 12:00", End::Until, Err(())),
            ("+262143-12-31", End::Until, Err(())),
        ];
        for (text, end, want) in rows {
            let got = parse_time_bound(text, end).map_err(|_| ());
            assert_eq!(got, want, "{text:?} as {end:?}");
        }
        let why = parse_time_bound("soon", End::Since).expect_err("bad");
        assert!(
            why.contains("RFC 3339") && why.contains("2026-01-31"),
            "{why}"
        );
    }
}
