//! The history routes of the admin API: history with filters and paging, one changeset, a
//! compare of two versions, and rollback (with a preview). Every change shows the value in
//! effect on each side ([`super::diff`]), secrets masked.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::WriteContext;
use super::diff::{self, HistoryParams, Shown, Side};
use super::write::ledger_error;
use super::AdminState;
use crate::http::error::JsonBody;
use crate::http::{ApiError, ApiJson, ApiQuery, NoQuery};
use crate::ledger::{Changeset, HistoryPage, HistoryQuery};
use crate::schema::Schema;

type ApiResult = Result<Response, ApiError>;

impl AdminState {
    fn side_json(&self, schema: &Schema, key: &str, side: &Side) -> Value {
        self.mask(schema, key, side.value.as_ref())
    }

    /// One change as history shows it: `old`/`new` in effect, `old_is_default`/`new_is_default`.
    pub(crate) fn shown_json(&self, schema: &Schema, s: &Shown) -> Value {
        json!({
            "key": s.key,
            "old": self.side_json(schema, &s.key, &s.old),
            "new": self.side_json(schema, &s.key, &s.new),
            "old_is_default": s.old.is_default,
            "new_is_default": s.new.is_default,
        })
    }

    pub(crate) fn changeset_json(&self, schema: &Schema, cs: &Changeset) -> Value {
        let changes: Vec<Value> = cs
            .changes
            .iter()
            .map(|c| self.shown_json(schema, &diff::shown(schema, c)))
            .collect();
        let mut v = json!({
            "version": cs.version,
            "epoch": cs.epoch,
            "actor": cs.meta.actor,
            "comment": cs.meta.comment,
            "created_at": cs.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "request_id": cs.meta.request_id,
            "changes": changes,
        });
        if let Some(ip) = &cs.meta.client_ip {
            v["client_ip"] = json!(ip);
        }
        if let Some(ua) = &cs.meta.user_agent {
            v["user_agent"] = json!(ua);
        }
        v
    }

    /// One page of history (the JSON route and the history page share it).
    pub(crate) async fn history_page(
        &self,
        ns: &str,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, ApiError> {
        self.write.schema(ns)?;
        self.write
            .ledger
            .history(ns, query)
            .await
            .map_err(ledger_error)
    }

    /// One changeset, 404 `unknown_version` when there is none.
    pub(crate) async fn changeset_at(&self, ns: &str, version: u64) -> Result<Changeset, ApiError> {
        self.write.schema(ns)?;
        self.write
            .ledger
            .changeset(ns, version)
            .await
            .map_err(ledger_error)?
            .ok_or_else(|| unknown_version(version))
    }

    /// The keys that differ between versions `from` and `to` (`None`: the current version).
    pub(crate) async fn compare_versions(
        &self,
        ns: &str,
        from: u64,
        to: Option<u64>,
    ) -> Result<Comparison, ApiError> {
        let schema = self.write.schema(ns)?.clone();
        let ledger = &self.write.ledger;
        let to = match to {
            Some(v) => v,
            None => {
                ledger
                    .namespace_state(ns)
                    .await
                    .map_err(ledger_error)?
                    .version
            }
        };
        let a = ledger.state_at(ns, from).await.map_err(ledger_error)?;
        let b = ledger.state_at(ns, to).await.map_err(ledger_error)?;
        Ok(Comparison {
            from,
            to,
            changes: diff::compare(&schema, &a, &b),
        })
    }
}

/// Two versions' difference (see [`diff::compare`]).
pub(crate) struct Comparison {
    pub from: u64,
    pub to: u64,
    pub changes: Vec<Shown>,
}

fn unknown_version(version: u64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_version",
        format!("version {version} does not exist"),
    )
}

fn invalid_query(e: diff::BadParam) -> ApiError {
    ApiError::bad_request("invalid_query", e.to_string())
        .with_details(json!({"parameter": e.param}))
}

fn ok(body: Value) -> Response {
    Json(body).into_response()
}

/// `GET /api/v1/namespaces/{ns}/history?key=&actor=&q=&since=&until=&before=&limit=`
pub async fn history(
    State(state): State<Arc<AdminState>>,
    Path(ns): Path<String>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> ApiResult {
    let schema = state.write.schema(&ns)?.clone();
    let query = diff::history_query(&params).map_err(invalid_query)?;
    let page = state.history_page(&ns, &query).await?;
    let changesets: Vec<Value> = page
        .changesets
        .iter()
        .map(|cs| state.changeset_json(&schema, cs))
        .collect();
    let mut body = json!({ "changesets": changesets });
    if let Some(next) = page.next {
        body["next"] = json!(next);
    }
    Ok(ok(body))
}

/// A version number from a path or query parameter.
fn version_param(param: &'static str, text: &str) -> Result<u64, ApiError> {
    text.trim().parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_version",
            format!("{param}: {text:?} is not a version number"),
        )
        .with_details(json!({"parameter": param}))
    })
}

/// `GET /api/v1/namespaces/{ns}/changesets/{version}`
pub async fn changeset(
    State(state): State<Arc<AdminState>>,
    _: NoQuery,
    Path((ns, version)): Path<(String, String)>,
) -> ApiResult {
    let schema = state.write.schema(&ns)?.clone();
    let version = version_param("version", &version)?;
    let cs = state.changeset_at(&ns, version).await?;
    Ok(ok(state.changeset_json(&schema, &cs)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CompareParams {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /api/v1/namespaces/{ns}/compare?from=A&to=B`: per key that differs, the value in
/// effect at A (`old`) and at B (`new`); `to` defaults to the current version.
pub async fn compare(
    State(state): State<Arc<AdminState>>,
    Path(ns): Path<String>,
    ApiQuery(p): ApiQuery<CompareParams>,
) -> ApiResult {
    let schema = state.write.schema(&ns)?.clone();
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let number = |param: &'static str, v: String| {
        v.parse::<u64>().map_err(|_| {
            invalid_query(diff::BadParam {
                param,
                reason: format!("{v:?} is not a version number"),
            })
        })
    };
    let from = given(&p.from).ok_or_else(|| {
        invalid_query(diff::BadParam {
            param: "from",
            reason: "is required (a version number; 0 is every key at its default)".into(),
        })
    })?;
    let from = number("from", from)?;
    let to = given(&p.to).map(|v| number("to", v)).transpose()?;
    let cmp = state.compare_versions(&ns, from, to).await?;
    let changes: Vec<Value> = cmp
        .changes
        .iter()
        .map(|s| {
            let mut v = state.shown_json(&schema, s);
            if let Some(def) = schema.key(&s.key) {
                v["type"] = json!(def.ty.as_str());
                v["secret"] = json!(def.secret);
            }
            v
        })
        .collect();
    Ok(ok(json!({
        "namespace": ns,
        "from": cmp.from,
        "to": cmp.to,
        "changes": changes,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    to_version: u64,
    comment: Option<String>,
    expected_version: Option<u64>,
}

impl JsonBody for RollbackBody {
    const SHAPE: &'static str = "the body must be a JSON object with \"to_version\" (a number) and optionally \"comment\" (a string) and \"expected_version\" (a number)";
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RollbackQuery {
    #[serde(default)]
    dry_run: bool,
}

/// The comment of a rollback: the one given, or `rollback to version N` — none when the schema
/// sets `require_comment` (the write path then refuses it: the user must say why).
pub(crate) fn rollback_comment(
    comment: Option<String>,
    to_version: u64,
    require_comment: bool,
) -> String {
    match comment.filter(|c| !c.trim().is_empty()) {
        Some(c) => c,
        None if require_comment => String::new(),
        None => format!("rollback to version {to_version}"),
    }
}

/// `POST /api/v1/namespaces/{ns}/rollback` (`?dry_run=true`: the changes it would make, nothing
/// written).
pub async fn rollback(
    State(state): State<Arc<AdminState>>,
    Path(ns): Path<String>,
    ApiQuery(q): ApiQuery<RollbackQuery>,
    ctx: WriteContext,
    ApiJson(body): ApiJson<RollbackBody>,
) -> ApiResult {
    let schema = state.write.schema(&ns)?.clone();
    let comment = rollback_comment(body.comment, body.to_version, schema.require_comment);
    // Checked before the dry run, so a preview refuses what the rollback would.
    let ctx = ctx.with_comment(Some(comment))?;
    if q.dry_run {
        let plan = state
            .write
            .plan_rollback(&ns, body.to_version, body.expected_version)
            .await?;
        let changes: Vec<Value> = plan
            .as_changes()
            .iter()
            .map(|c| state.shown_json(&schema, &diff::shown(&schema, c)))
            .collect();
        return Ok(ok(json!({
            "dry_run": true,
            "version": plan.current.state.version,
            "epoch": plan.current.state.epoch,
            "to_version": plan.to_version,
            "changes": changes,
        })));
    }
    let (meta, idempotency_key) = ctx.into_parts();
    let committed = state
        .write
        .rollback(
            &ns,
            body.to_version,
            body.expected_version,
            meta,
            idempotency_key,
        )
        .await?;
    let mut v = state.committed_json(&schema, &committed);
    v["rolled_back_to"] = json!(body.to_version);
    Ok(ok(v))
}
