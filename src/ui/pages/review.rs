//! `POST /namespaces/{ns}/review`: the pending changes of the configs form as a diff (old →
//! new per key, type-aware, defaults marked), a "Comment" field and the "Commit" button; and
//! `POST /namespaces/{ns}/commit`, which writes them through the API's write path
//! (`WritePath::write`: validation, per-key `expected`, idempotency, distribution).
//!
//! Invalid values send the user back to the configs page with each error next to its key,
//! and nothing is written. If someone changed one of the keys since the page was rendered
//! (the per-key `expected` versions), the review is shown again with their change beside
//! each such key; "Commit" then re-applies the user's values on top. Keys not touched by both
//! never conflict. A pending secret travels sealed (`auth::SecretBox`, bound to the session
//! and key), never in plain text in the page.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use serde_json::Value;

use crate::admin::api::WriteContext;
use crate::admin::write::{ledger_error, WriteRequest};
use crate::admin::AdminState;
use crate::auth::Principal;
use crate::http::ApiError;
use crate::ledger::CurrentValues;
use crate::schema::Schema;
use crate::ui::edit::{expected_versions, pending_changes, text_of, Pending};
use crate::ui::form::Form;
use crate::ui::layout::{Layout, Section};
use crate::ui::time::When;
use crate::ui::{error_page, render, see_other};

use super::configs;

/// One row of the diff.
pub struct DiffRow {
    pub key: String,
    pub ty: &'static str,
    pub old: String,
    pub old_is_default: bool,
    pub new: String,
    pub new_is_default: bool,
    pub secret: bool,
    pub multiline: bool,
    /// The `c.KEY` field: the new value as JSON (`null`: reset), or `sealed:…` for a secret.
    pub field: String,
    /// The `e.KEY` field: the key's version the change is based on.
    pub expected: u64,
    /// Someone else's change since the user's page: who, when, at which version.
    pub conflict: Option<Conflict>,
}

pub struct Conflict {
    pub actor: String,
    pub when: Option<When>,
    pub version: u64,
    /// The value the user's page showed (the conflicting change's old side).
    pub was: String,
}

#[derive(Template)]
#[template(path = "review.html")]
pub struct ReviewPage {
    pub layout: Layout,
    pub ns: String,
    pub rows: Vec<DiffRow>,
    pub comment: String,
    pub idempotency_key: String,
    pub error: String,
    pub conflicts: bool,
    /// The schema's `require_comment`: the Comment field is required.
    pub require_comment: bool,
}

fn seal_context(principal: &Principal, ns: &str, key: &str) -> String {
    let session = principal
        .session_user()
        .map(|(_, s)| s.id_digest.as_str())
        .unwrap_or_default();
    format!("ui-pending:{session}:{ns}:{key}")
}

fn shown(state: &AdminState, schema: &Schema, key: &str, value: Option<&Value>) -> (String, bool) {
    let Some(def) = schema.key(key) else {
        return (String::new(), false);
    };
    match (def.secret, value) {
        (true, None) => ("default".into(), true),
        (true, Some(v)) => (
            format!(
                "secret · fingerprint {}",
                state.masker.fingerprint(&schema.namespace, key, v)
            ),
            false,
        ),
        (false, None) => (text_of(def.ty, &def.default.value()), true),
        (false, Some(v)) => (text_of(def.ty, v), false),
    }
}

/// The diff of `changes` against `current`; `expected`: the versions the user's page had
/// (a key whose version moved since is a conflict, shown with who changed it).
async fn diff_rows(
    state: &AdminState,
    principal: &Principal,
    schema: &Schema,
    current: &CurrentValues,
    changes: &Pending,
    expected: &BTreeMap<String, u64>,
) -> Result<Vec<DiffRow>, ApiError> {
    let now = Utc::now();
    let mut rows = Vec::new();
    for (key, new) in changes {
        let Some(def) = schema.key(key) else { continue };
        let stored = current.values.get(key);
        let old_value = stored.and_then(|s| s.value.as_ref());
        let version = stored.map_or(0, |s| s.version);
        let (old, old_is_default) = shown(state, schema, key, old_value);
        let (new_text, new_is_default) = match (def.secret, new) {
            (true, Some(_)) => ("new secret value (hidden)".to_owned(), false),
            _ => shown(state, schema, key, new.as_ref()),
        };
        let field = match new {
            None => "null".to_owned(),
            Some(v) if def.secret => format!(
                "sealed:{}",
                state.auth.secret_box.seal(
                    v.to_string().as_bytes(),
                    &seal_context(principal, &schema.namespace, key)
                )
            ),
            Some(v) => v.to_string(),
        };
        let conflict = match expected.get(key) {
            Some(&was) if was != version => {
                let cs = state
                    .write
                    .ledger
                    .changeset(&schema.namespace, version)
                    .await
                    .map_err(ledger_error)?;
                let before = cs
                    .as_ref()
                    .and_then(|cs| cs.changes.iter().find(|c| c.key == *key))
                    .map(|c| shown(state, schema, key, c.old.as_ref()).0)
                    .unwrap_or_default();
                Some(Conflict {
                    actor: cs
                        .as_ref()
                        .map(|c| c.meta.actor.clone())
                        .unwrap_or_default(),
                    when: cs.as_ref().map(|c| When::new(c.created_at, now)),
                    version,
                    was: before,
                })
            }
            _ => None,
        };
        rows.push(DiffRow {
            key: key.clone(),
            ty: def.ty.as_str(),
            multiline: old.contains('\n') || new_text.contains('\n'),
            old,
            old_is_default,
            new: new_text,
            new_is_default,
            secret: def.secret,
            field,
            // The write is based on what is there now: after a conflict, Commit re-applies
            // the user's value on top of the other change.
            expected: version,
            conflict,
        });
    }
    Ok(rows)
}

fn new_idempotency_key() -> String {
    format!("ui-{}", crate::auth::secrets::new_id(""))
}

/// `POST /namespaces/{ns}/review`
pub async fn review(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    Path(ns): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form = Form::parse(&body);
    let schema = state.write.schema(&ns)?.clone();
    let current = state.current(&ns).await?;
    let changes = match pending_changes(&schema, &current.values, &form) {
        Ok(c) => c,
        Err(errors) => {
            let page = configs::build(&state, &principal, &ns, Some(&form), &errors).await?;
            return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
        }
    };
    if changes.is_empty() {
        let mut page = configs::build(&state, &principal, &ns, None, &Default::default()).await?;
        page.notice = "No changes to review: every value is as it was.".into();
        return Ok(render(StatusCode::OK, &page));
    }
    let expected = expected_versions(&form, &changes);
    let rows = diff_rows(&state, &principal, &schema, &current, &changes, &expected).await?;
    let conflicts = rows.iter().any(|r| r.conflict.is_some());
    let page = ReviewPage {
        layout: Layout::new(
            &principal,
            &format!("Review changes · {ns}"),
            Section::Namespaces,
            Some(&ns),
        ),
        ns: ns.clone(),
        rows,
        comment: String::new(),
        idempotency_key: new_idempotency_key(),
        error: String::new(),
        conflicts,
        require_comment: schema.require_comment,
    };
    Ok(render(StatusCode::OK, &page))
}

/// The reviewed changes carried by the review form (`c.KEY`), secrets unsealed.
fn reviewed_changes(
    state: &AdminState,
    principal: &Principal,
    schema: &Schema,
    form: &Form,
) -> Result<Vec<(String, Value)>, ApiError> {
    let bad = |key: &str| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("the reviewed change of {key} is damaged: review your changes again"),
        )
    };
    let mut out = Vec::new();
    for (key, field) in form.with_prefix("c.") {
        if schema.key(key).is_none() {
            return Err(ApiError::unknown_key(key));
        }
        let text = match field.strip_prefix("sealed:") {
            Some(sealed) => {
                let bytes = state
                    .auth
                    .secret_box
                    .open(sealed, &seal_context(principal, &schema.namespace, key))
                    .map_err(|_| bad(key))?;
                String::from_utf8(bytes).map_err(|_| bad(key))?
            }
            None => field.to_owned(),
        };
        let value: Value = serde_json::from_str(&text).map_err(|_| bad(key))?;
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

/// `POST /namespaces/{ns}/commit`
pub async fn commit(
    State(state): State<Arc<AdminState>>,
    principal: Principal,
    ctx: WriteContext,
    Path(ns): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form = Form::parse(&body);
    let schema = state.write.schema(&ns)?.clone();
    let changes = reviewed_changes(&state, &principal, &schema, &form)?;
    if changes.is_empty() {
        return Ok(see_other(&format!("/namespaces/{ns}")));
    }
    let comment = form.get("comment").unwrap_or_default().trim().to_owned();
    let mut ctx = ctx.with_comment(Some(comment.clone()))?;
    if let Some(k) = form
        .get("idempotency_key")
        .filter(|k| !k.is_empty() && k.len() <= 255)
    {
        ctx.idempotency_key = Some(k.to_owned());
    }
    let expected: BTreeMap<String, u64> = changes
        .iter()
        .filter_map(|(key, _)| {
            form.get(&format!("e.{key}"))
                .and_then(|v| v.parse().ok())
                .map(|v| (key.clone(), v))
        })
        .collect();
    let request = WriteRequest {
        changes: changes.clone(),
        expected_version: None,
        expected_keys: expected.clone(),
        meta: ctx.meta,
        idempotency_key: ctx.idempotency_key,
    };
    match state.write.write(&ns, request).await {
        Ok(committed) => Ok(see_other(&format!(
            "/namespaces/{ns}?committed={}",
            committed.state.version
        ))),
        Err(e) if e.code == "version_conflict" || e.code == "comment_required" => {
            // Nothing was written: the review again, with the reason above it. Either someone
            // changed one of these keys (their change is shown, Commit re-applies on top), or
            // the schema's `require_comment` wants a comment.
            let conflict = e.code == "version_conflict";
            let current = state.current(&ns).await?;
            let pending: Pending = changes
                .into_iter()
                .map(|(k, v)| (k, if v.is_null() { None } else { Some(v) }))
                .collect();
            let rows =
                diff_rows(&state, &principal, &schema, &current, &pending, &expected).await?;
            let (title, error, status) = if conflict {
                (
                    "Conflict",
                    "Someone else changed some of these keys after you opened the page: their change is shown next to each. Nothing was written. Commit applies your values on top of theirs.".to_owned(),
                    StatusCode::CONFLICT,
                )
            } else {
                (
                    "Review changes",
                    format!(
                        "{}: say why in the Comment field, then Commit. Nothing was written.",
                        e.message
                    ),
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
            };
            let page = ReviewPage {
                layout: Layout::new(
                    &principal,
                    &format!("{title} · {ns}"),
                    Section::Namespaces,
                    Some(&ns),
                ),
                ns: ns.clone(),
                conflicts: conflict || rows.iter().any(|r| r.conflict.is_some()),
                rows,
                comment,
                idempotency_key: new_idempotency_key(),
                error,
                require_comment: schema.require_comment,
            };
            Ok(render(status, &page))
        }
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            // Values the schema refuses (the review let them through only if the schema
            // changed meanwhile): back to the configs page with the errors by key.
            let mut errors = crate::ui::edit::KeyErrors::new();
            if let Some(list) = e.details.as_ref().and_then(|d| d["errors"].as_array()) {
                for item in list {
                    if let (Some(k), Some(m)) = (item["key"].as_str(), item["message"].as_str()) {
                        errors.insert(k.to_owned(), m.to_owned());
                    }
                }
            }
            if errors.is_empty() {
                return Ok(error_page(e.status, "Cannot commit", &e.message));
            }
            let page = configs::build(&state, &principal, &ns, None, &errors).await?;
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
        Err(e) => Err(e),
    }
}
