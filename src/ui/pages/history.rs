//! The history pages of a namespace: `GET /namespaces/{ns}/history` (changesets newest first,
//! filters as a GET form so a filtered view is a URL, paging, a "Roll back" button per row),
//! `GET /namespaces/{ns}/changesets/{v}` (one changeset's diff), `GET …/compare?from=&to=`
//! (two versions), and the rollback: `GET …/rollback?to_version=N` previews exactly what it
//! will change, `POST …/rollback` (Comment, "Confirm roll back") writes it as a new changeset.
//! They call the same code as the JSON API (`AdminState::history_page`, `changeset_at`,
//! `compare_versions`, `WritePath::plan_rollback` / `rollback`): one write path, one guard.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;

use crate::admin::api::WriteContext;
use crate::admin::diff::{self, HistoryParams, Shown, Side};
use crate::admin::history::rollback_comment;
use crate::admin::AdminState;
use crate::auth::role::Need;
use crate::auth::{Principal, Role};
use crate::http::{ApiError, ApiQuery};
use crate::ledger::Changeset;
use crate::schema::Schema;
use crate::ui::form::Form;
use crate::ui::layout::{Layout, Section};
use crate::ui::time::When;
use crate::ui::{render, see_other};

/// One side of a change as a page shows it.
pub struct Cell {
    /// The value as text: a string as it is, anything else as compact JSON, a secret as its
    /// fingerprint.
    pub text: String,
    pub is_default: bool,
    /// A masked secret (shown as "secret · fingerprint …").
    pub secret: bool,
}

/// One key's change.
pub struct DiffRow {
    pub key: String,
    pub old: Cell,
    pub new: Cell,
}

/// Text of a value shown on a page (already masked if secret).
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) if s.is_empty() => "(empty)".to_owned(),
        Value::String(s) => s.clone(),
        Value::Object(m) if m.get("masked") == Some(&Value::Bool(true)) => {
            let fp = m.get("fingerprint").and_then(Value::as_str).unwrap_or("");
            format!("fingerprint {fp}")
        }
        other => other.to_string(),
    }
}

pub fn cell(state: &AdminState, schema: &Schema, key: &str, side: &Side) -> Cell {
    let secret = schema.key(key).is_some_and(|d| d.secret);
    let text = match &side.value {
        None => "(unknown default)".to_owned(),
        Some(_) => value_text(&state.mask(schema, key, side.value.as_ref())),
    };
    Cell {
        text,
        is_default: side.is_default,
        secret,
    }
}

pub fn rows(state: &AdminState, schema: &Schema, shown: &[Shown]) -> Vec<DiffRow> {
    shown
        .iter()
        .map(|s| DiffRow {
            key: s.key.clone(),
            old: cell(state, schema, &s.key, &s.old),
            new: cell(state, schema, &s.key, &s.new),
        })
        .collect()
}

fn changeset_rows(state: &AdminState, schema: &Schema, cs: &Changeset) -> Vec<DiffRow> {
    let shown: Vec<Shown> = cs.changes.iter().map(|c| diff::shown(schema, c)).collect();
    rows(state, schema, &shown)
}

/// Whether `principal` may write to `ns` (so the page shows "Roll back").
fn can_edit(principal: &Principal, ns: &str) -> bool {
    principal
        .grants()
        .allows(&Need::InNamespace(Role::Editor, ns.to_owned()))
}

/// One changeset in the list.
pub struct Entry {
    pub version: u64,
    pub actor: String,
    pub when: When,
    pub comment: String,
    pub changes: Vec<DiffRow>,
}

#[derive(Template)]
#[template(path = "history.html")]
pub struct HistoryPage {
    pub layout: Layout,
    pub ns: String,
    pub entries: Vec<Entry>,
    /// The filters as given (to refill the form).
    pub key: String,
    pub actor: String,
    pub q: String,
    pub since: String,
    pub until: String,
    pub limit: String,
    pub keys: Vec<String>,
    pub filtered: bool,
    /// The URL of the next (older) page, keeping the filters.
    pub older: Option<String>,
    /// Not the first page: a link back to the newest.
    pub paged: bool,
    pub newest: String,
    pub error: Option<String>,
    pub can_edit: bool,
    pub version: u64,
}

fn text(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

/// `/namespaces/{ns}/history?…` with the filters of `p` and `before`.
fn history_url(ns: &str, p: &HistoryParams, before: Option<u64>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (name, v) in [
        ("key", &p.key),
        ("actor", &p.actor),
        ("q", &p.q),
        ("since", &p.since),
        ("until", &p.until),
        ("limit", &p.limit),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.trim().is_empty()) {
            q.append_pair(name, v);
        }
    }
    if let Some(b) = before {
        q.append_pair("before", &b.to_string());
    }
    let q = q.finish();
    if q.is_empty() {
        format!("/namespaces/{ns}/history")
    } else {
        format!("/namespaces/{ns}/history?{q}")
    }
}

/// `GET /namespaces/{ns}/history`
pub async fn page(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    Path(ns): Path<String>,
    ApiQuery(p): ApiQuery<HistoryParams>,
) -> Result<Response, ApiError> {
    let schema = state.write.schema(&ns)?.clone();
    let version = state
        .write
        .ledger
        .namespace_state(&ns)
        .await
        .map_err(crate::admin::write::ledger_error)?
        .version;
    let now = Utc::now();
    let (entries, older, error, status) = match diff::history_query(&p) {
        Err(e) => (
            Vec::new(),
            None,
            Some(e.to_string()),
            StatusCode::BAD_REQUEST,
        ),
        Ok(query) => {
            let page = state.history_page(&ns, &query).await?;
            let entries = page
                .changesets
                .iter()
                .map(|cs| Entry {
                    version: cs.version,
                    actor: cs.meta.actor.clone(),
                    when: When::new(cs.created_at, now),
                    comment: cs.meta.comment.clone(),
                    changes: changeset_rows(&state, &schema, cs),
                })
                .collect();
            let older = page.next.map(|n| history_url(&ns, &p, Some(n)));
            (entries, older, None, StatusCode::OK)
        }
    };
    let filtered = [&p.key, &p.actor, &p.q, &p.since, &p.until]
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| !v.trim().is_empty()));
    let title = if filtered {
        format!("History (filtered) · {ns}")
    } else {
        format!("History · {ns}")
    };
    let page = HistoryPage {
        layout: Layout::new(&principal, &title, Section::History, Some(&ns)),
        key: text(&p.key),
        actor: text(&p.actor),
        q: text(&p.q),
        since: text(&p.since),
        until: text(&p.until),
        limit: text(&p.limit),
        keys: schema.keys().iter().map(|d| d.name.to_string()).collect(),
        filtered,
        paged: p.before.as_deref().is_some_and(|b| !b.trim().is_empty()),
        newest: history_url(&ns, &p, None),
        older,
        error,
        can_edit: can_edit(&principal, &ns),
        entries,
        version,
        ns,
    };
    Ok(render(status, &page))
}

#[derive(Template)]
#[template(path = "changeset.html")]
pub struct ChangesetPage {
    pub layout: Layout,
    pub ns: String,
    pub version: u64,
    pub epoch: u64,
    pub actor: String,
    pub when: When,
    pub comment: String,
    pub request_id: String,
    pub changes: Vec<DiffRow>,
    pub can_edit: bool,
    /// The namespace's current version (for "compare with now" and the next link).
    pub current: u64,
    pub notice: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct ChangesetQuery {
    /// Set after a rollback that wrote this changeset (`?rolled_back=N`).
    rolled_back: Option<u64>,
}

/// `GET /namespaces/{ns}/changesets/{version}`
pub async fn changeset(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    Path((ns, version)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ChangesetQuery>,
) -> Result<Response, ApiError> {
    let schema = state.write.schema(&ns)?.clone();
    let version: u64 = version.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_version",
            format!("{version:?} is not a version number"),
        )
    })?;
    let cs = state.changeset_at(&ns, version).await?;
    let current = state
        .write
        .ledger
        .namespace_state(&ns)
        .await
        .map_err(crate::admin::write::ledger_error)?
        .version;
    let page = ChangesetPage {
        layout: Layout::new(
            &principal,
            &format!("Version {version} · {ns}"),
            Section::History,
            Some(&ns),
        ),
        version,
        epoch: cs.epoch,
        actor: cs.meta.actor.clone(),
        when: When::new(cs.created_at, Utc::now()),
        comment: cs.meta.comment.clone(),
        request_id: cs.meta.request_id.clone(),
        changes: changeset_rows(&state, &schema, &cs),
        can_edit: can_edit(&principal, &ns),
        current,
        notice: q
            .rolled_back
            .map(|to| format!("Rolled back to version {to}: this is the new changeset.")),
        ns,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "compare.html")]
pub struct ComparePage {
    pub layout: Layout,
    pub ns: String,
    pub from: String,
    pub to: String,
    /// The versions compared, once both are known.
    pub compared: Option<(u64, u64)>,
    pub changes: Vec<DiffRow>,
    pub error: Option<String>,
    pub current: u64,
}

#[derive(Deserialize, Default)]
pub struct CompareQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /namespaces/{ns}/compare?from=A&to=B` (`to` empty: the current version).
pub async fn compare(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    Path(ns): Path<String>,
    ApiQuery(q): ApiQuery<CompareQuery>,
) -> Result<Response, ApiError> {
    let schema = state.write.schema(&ns)?.clone();
    let current = state
        .write
        .ledger
        .namespace_state(&ns)
        .await
        .map_err(crate::admin::write::ledger_error)?
        .version;
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let (from, to) = (given(&q.from), given(&q.to));
    let mut page = ComparePage {
        layout: Layout::new(
            &principal,
            &format!("Compare · {ns}"),
            Section::History,
            Some(&ns),
        ),
        from: from.clone().unwrap_or_default(),
        to: to.clone().unwrap_or_default(),
        compared: None,
        changes: Vec::new(),
        error: None,
        current,
        ns: ns.clone(),
    };
    let mut status = StatusCode::OK;
    if let Some(from) = from {
        let parse = |name: &str, v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: {v:?} is not a version number"))
        };
        let versions = parse("From", &from).and_then(|f| {
            to.as_deref()
                .map(|t| parse("To", t))
                .transpose()
                .map(|t| (f, t))
        });
        match versions {
            Err(e) => {
                page.error = Some(e);
                status = StatusCode::BAD_REQUEST;
            }
            Ok((f, t)) => match state.compare_versions(&ns, f, t).await {
                Ok(cmp) => {
                    page.compared = Some((cmp.from, cmp.to));
                    page.changes = rows(&state, &schema, &cmp.changes);
                }
                Err(e) if e.status == StatusCode::NOT_FOUND => {
                    page.error = Some(format!(
                        "{}; versions go from 0 (every key at its default) to {current}",
                        e.message
                    ));
                    status = StatusCode::NOT_FOUND;
                }
                Err(e) => return Err(e),
            },
        }
    }
    Ok(render(status, &page))
}

#[derive(Template)]
#[template(path = "rollback.html")]
pub struct RollbackPage {
    pub layout: Layout,
    pub ns: String,
    pub to_version: u64,
    /// The changeset this undoes (`to_version + 1`), when the preview came from its button.
    pub undoes: Option<u64>,
    /// The version the preview was computed at (sent back as `expected_version`).
    pub version: u64,
    pub changes: Vec<DiffRow>,
    pub comment: String,
    pub error: Option<String>,
    /// The schema's `require_comment`: the Comment field is required and not pre-filled.
    pub require_comment: bool,
}

#[derive(Deserialize, Default)]
pub struct RollbackQuery {
    to_version: Option<String>,
}

fn bad_version(text: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_version",
        format!("to_version: {text:?} is not a version number"),
    )
}

/// The preview page of a rollback to `to_version`, with `error` above it.
async fn preview(
    state: &AdminState,
    principal: &Principal,
    ns: &str,
    to_version: u64,
    comment: String,
    error: Option<String>,
) -> Result<RollbackPage, ApiError> {
    let schema = state.write.schema(ns)?.clone();
    let plan = state.write.plan_rollback(ns, to_version, None).await?;
    let shown: Vec<Shown> = plan
        .as_changes()
        .iter()
        .map(|c| diff::shown(&schema, c))
        .collect();
    let undoes = (to_version < plan.current.state.version).then_some(to_version + 1);
    Ok(RollbackPage {
        layout: Layout::new(
            principal,
            &format!("Roll back to version {to_version} · {ns}"),
            Section::History,
            Some(ns),
        ),
        ns: ns.to_owned(),
        to_version,
        undoes,
        version: plan.current.state.version,
        changes: rows(state, &schema, &shown),
        comment: if comment.is_empty() && !schema.require_comment {
            match undoes {
                Some(v) if v == plan.current.state.version => {
                    format!("Roll back version {v}")
                }
                _ => format!("Roll back to version {to_version}"),
            }
        } else {
            comment
        },
        error,
        require_comment: schema.require_comment,
    })
}

/// `GET /namespaces/{ns}/rollback?to_version=N`: what the rollback will change.
pub async fn rollback_preview(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    Path(ns): Path<String>,
    ApiQuery(q): ApiQuery<RollbackQuery>,
) -> Result<Response, ApiError> {
    let text = q.to_version.unwrap_or_default();
    let to_version: u64 = text.trim().parse().map_err(|_| bad_version(&text))?;
    let page = preview(&state, &principal, &ns, to_version, String::new(), None).await?;
    Ok(render(StatusCode::OK, &page))
}

/// `POST /namespaces/{ns}/rollback` (`to_version`, `expected_version`, `comment`): writes the
/// previewed rollback through the write path, then shows its changeset. A commit in between
/// (409) shows the new preview instead; a refused write shows its reason above the preview.
pub async fn rollback_confirm(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    Path(ns): Path<String>,
    ctx: WriteContext,
    body: Bytes,
) -> Result<Response, ApiError> {
    let require_comment = state.write.schema(&ns)?.require_comment;
    let form = Form::parse(&body);
    let field = |name: &str| form.get(name).unwrap_or_default().trim().to_owned();
    let to_text = field("to_version");
    let to_version: u64 = to_text.parse().map_err(|_| bad_version(&to_text))?;
    let expected = field("expected_version");
    let expected: Option<u64> = if expected.is_empty() {
        None
    } else {
        Some(expected.parse().map_err(|_| {
            ApiError::bad_request(
                "invalid_version",
                format!("expected_version: {expected:?} is not a version number"),
            )
        })?)
    };
    let typed = field("comment");
    let comment = rollback_comment(Some(typed.clone()), to_version, require_comment);
    let ctx = match ctx.with_comment(Some(comment)) {
        Ok(ctx) => ctx,
        Err(e) => {
            let page = preview(&state, &principal, &ns, to_version, typed, Some(e.message)).await?;
            return Ok(render(e.status, &page));
        }
    };
    let (meta, idempotency_key) = ctx.into_parts();
    match state
        .write
        .rollback(&ns, to_version, expected, meta, idempotency_key)
        .await
    {
        Ok(done) => Ok(see_other(&format!(
            "/namespaces/{ns}/changesets/{}?rolled_back={to_version}",
            done.state.version
        ))),
        Err(e) if e.status == StatusCode::CONFLICT => {
            let message = "Someone committed a change since this preview: here is the rollback as it stands now. Check it and confirm again.".to_owned();
            let page = preview(&state, &principal, &ns, to_version, typed, Some(message)).await?;
            Ok(render(StatusCode::CONFLICT, &page))
        }
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let page = preview(&state, &principal, &ns, to_version, typed, Some(e.message)).await?;
            Ok(render(e.status, &page))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_read_as_text() {
        for (v, want) in [
            (json!("Config Manager"), "Config Manager"),
            (json!(""), "(empty)"),
            (json!(5), "5"),
            (json!(true), "true"),
            (json!({"a": [1]}), r#"{"a":[1]}"#),
            (
                json!({"masked": true, "fingerprint": "abc123"}),
                "fingerprint abc123",
            ),
        ] {
            assert_eq!(value_text(&v), want, "{v}");
        }
    }

    #[test]
    fn history_urls_keep_the_filters_and_drop_empty_ones() {
        let p = HistoryParams {
            key: Some("SITE_NAME".into()),
            q: Some("launch day".into()),
            actor: Some(String::new()),
            ..HistoryParams::default()
        };
        assert_eq!(
            history_url("demo", &p, Some(7)),
            "/namespaces/demo/history?key=SITE_NAME&q=launch+day&before=7"
        );
        assert_eq!(
            history_url("demo", &HistoryParams::default(), None),
            "/namespaces/demo/history"
        );
    }
}
